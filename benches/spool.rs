//! Criterion benches of the disk spool: appending a batch (as cut each
//! flush) and draining one (read back, checksum, acknowledge), with
//! `PROCSHIP_SPOOL_SYNC=off` (the CPU cost) and `batch` (an fdatasync per
//! write: the disk's latency). Batches of 1.3 KB (one gzip'd cycle) and
//! 64 KiB. The spool lives under `PROCSHIP_BENCH_DIR` (default: the system
//! temporary directory; it must be on a real disk for `batch` to mean
//! anything). `cargo bench --bench spool`; the README lists the figures.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use procship::deliver::spool::Spool;
use procship::deliver::spool::{Options, SyncMode};
use procship::encode::Encoded;
use procship::encode::{Compression, Format};
use procship::stats::Stats;

fn dir(tag: &str) -> PathBuf {
    let base =
        std::env::var_os("PROCSHIP_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let d = base.join(format!("procship-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench directory");
    d
}

fn open(d: &std::path::Path, sync: SyncMode) -> Spool {
    let cfg = Options {
        dir: d.to_path_buf(),
        max_bytes: 4 << 30,
        sync,
    };
    Spool::open(&cfg, Arc::new(Stats::default()))
        .expect("open spool")
        .0
}

fn batch(len: usize) -> Encoded {
    Encoded {
        seq: 1,
        points: 60,
        oldest: 0,
        format: Format::Json,
        compression: Compression::Gzip,
        born: Default::default(),
        body: (0..len).map(|i| (i * 7 % 251) as u8).collect(),
    }
}

fn spool(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for (sync_name, sync) in [("off", SyncMode::Off), ("batch", SyncMode::Batch)] {
        for len in [1300usize, 64 << 10] {
            let e = batch(len);
            g.throughput(Throughput::Bytes(len as u64));
            let d = dir("append");
            let mut s = open(&d, sync);
            g.bench_function(format!("append_{len}B_sync_{sync_name}"), |b| {
                b.iter(|| s.append(black_box(&e)).expect("append"))
            });
            drop(s);
            let _ = std::fs::remove_dir_all(&d);

            g.bench_function(format!("drain_{len}B_sync_{sync_name}"), |b| {
                b.iter_custom(|iters| {
                    let d = dir("drain");
                    let mut s = open(&d, sync);
                    for _ in 0..iters {
                        s.append(&e).expect("append");
                    }
                    let t = Instant::now();
                    for _ in 0..iters {
                        let (got, pos) = s.read_next().expect("a record");
                        black_box(got);
                        s.ack(pos).expect("ack");
                    }
                    let took = t.elapsed();
                    drop(s);
                    let _ = std::fs::remove_dir_all(&d);
                    took
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, spool);
criterion_main!(benches);
