//! Criterion benches of the per-cycle work: one full collection cycle on
//! this host's /proc and /sys (every default collector, and without the
//! process walk), one cycle on the fixture tree (repeatable anywhere), and
//! encoding one cycle's batch in each format, with and without gzip; the
//! `cgroup` collector on a generated tree of 300 groups and the JSON of
//! their points (what a group costs beyond its reads).
//! `cargo bench --bench cycle`; the README lists the figures.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use procship::collect::{self, Context, Runner};
use procship::encode::{Compression, Encoder, Format, Identity};
use procship::host::{Facts, HostPaths};
use procship::point::Batch;
use procship::settings::Settings;

/// Every collector's name, in the registry's order.
fn every_collector() -> Vec<&'static str> {
    collect::REGISTRY.iter().map(|e| e.name).collect()
}

/// The named collectors, every option at its default, watching `paths`.
fn runner(names: &[&str], paths: HostPaths) -> Runner {
    runner_with(names, paths, &[])
}

/// The same, with some variables set (`NAME`, value).
fn runner_with(names: &[&str], paths: HostPaths, vars: &[(&str, String)]) -> Runner {
    let mut flags = vec![("PROCSHIP_COLLECTORS".to_string(), names.join(","))];
    flags.extend(
        vars.iter()
            .map(|(k, v)| (format!("PROCSHIP_{k}"), v.clone())),
    );
    let s = Settings::from_sources(&flags, &[], &[]).expect("default configuration");
    let ctx = Context {
        paths: paths.clone(),
        facts: Facts::of_this_host(),
        rates: s.collect.rates,
        names: s.collect.names.names,
    };
    let mut r = Runner::new(s.collect.build(&ctx), paths);
    // Prime the delta-based collectors so every iteration is a full cycle.
    r.collect(0, &mut Vec::new());
    r
}

fn cycles(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycle");
    let host = HostPaths::default();
    let mut points = Vec::with_capacity(256);
    let mut all = runner(&collect::defaults(), host.clone());
    g.bench_function("host_all_collectors", |b| {
        b.iter(|| {
            points.clear();
            black_box(all.collect(1, &mut points));
        })
    });
    let without: Vec<&str> = collect::defaults()
        .into_iter()
        .filter(|n| *n != "processes")
        .collect();
    let mut lean = runner(&without, host);
    g.bench_function("host_without_processes", |b| {
        b.iter(|| {
            points.clear();
            black_box(lean.collect(1, &mut points));
        })
    });
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/basic");
    let fx = HostPaths {
        proc: base.join("proc"),
        sys: base.join("sys"),
        root: base.join("root"),
    };
    let mut fixture = runner(&every_collector(), fx);
    g.bench_function("fixture_all_collectors", |b| {
        b.iter(|| {
            points.clear();
            black_box(fixture.collect(1, &mut points));
        })
    });
    g.finish();
}

/// Each collector alone on this host: what it adds to a cycle.
fn per_collector(c: &mut Criterion) {
    let mut g = c.benchmark_group("collector");
    let mut points = Vec::with_capacity(256);
    // textfile and exec do nothing without their directory: see `site`.
    for name in every_collector() {
        let mut one = runner(&[name], HostPaths::default());
        g.bench_function(name, |b| {
            b.iter(|| {
                points.clear();
                black_box(one.collect(1, &mut points));
            })
        });
    }
    // Sources this VM lacks, on the fixture tree: 3 cgroups (v2), 6 sensors.
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/basic");
    let fx = HostPaths {
        proc: base.join("proc"),
        sys: base.join("sys"),
        root: base.join("root"),
    };
    for name in ["cgroup", "temp"] {
        let mut one = runner(&[name], fx.clone());
        g.bench_function(format!("{name}_on_fixture"), |b| {
            b.iter(|| {
                points.clear();
                black_box(one.collect(1, &mut points));
            })
        });
    }
    g.finish();
}

/// The textfile collector on 100 files of 5 series each (a temporary directory).
fn site(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("procship-bench-textfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for f in 0..100 {
        let text: String = (0..5)
            .map(|i| format!("# TYPE site_metric_{i} gauge\nsite_metric_{i}{{file=\"{f}\",kind=\"x\"}} {f}.5\n"))
            .collect();
        std::fs::write(dir.join(format!("{f}.prom")), text).expect("a .prom file");
    }
    let mut g = c.benchmark_group("collector");
    let mut points = Vec::with_capacity(1024);
    let vars = [("TEXTFILE_DIR", dir.display().to_string())];
    let mut one = runner_with(&["textfile"], HostPaths::default(), &vars);
    g.bench_function("textfile_100_files", |b| {
        b.iter(|| {
            points.clear();
            black_box(one.collect(1, &mut points));
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn encoding(c: &mut Criterion) {
    let mut r = runner(&every_collector(), HostPaths::default());
    let mut points = Vec::new();
    r.collect(1, &mut points);
    let batch = Batch {
        seq: 1,
        common_tags: Arc::new(vec![("host".into(), "bench-host".into())]),
        points,
    };
    let id = identity();
    let mut g = c.benchmark_group("encode");
    for (name, format, compression) in [
        ("json", Format::Json, Compression::None),
        ("json_gzip", Format::Json, Compression::Gzip),
        ("influx", Format::Influx, Compression::None),
        ("influx_gzip", Format::Influx, Compression::Gzip),
        ("prometheus_snappy", Format::Prometheus, Compression::Snappy),
        ("otlp", Format::Otlp, Compression::None),
        ("otlp_gzip", Format::Otlp, Compression::Gzip),
    ] {
        let mut enc = Encoder::new(format, compression, id.clone());
        g.bench_function(name, |b| {
            b.iter(|| black_box(enc.encode(&batch).map(|e| e.body.len())))
        });
    }
    // Bytes against CPU for each gzip level (printed once, timed by criterion).
    for level in [1, 2, 4, 6, 9] {
        let mut enc = Encoder::new(Format::Json, Compression::Gzip, id.clone()).gzip_level(level);
        if let Ok(e) = enc.encode(&batch) {
            eprintln!("json gzip level {level}: {} bytes", e.body.len());
        }
        g.bench_function(format!("json_gzip_level_{level}"), |b| {
            b.iter(|| black_box(enc.encode(&batch).map(|e| e.body.len())))
        });
    }
    // Remote write before snappy: what building and encoding the protobuf costs.
    g.bench_function("prometheus_protobuf", |b| {
        let mut out = Vec::new();
        let mut scratch = procship::encode::remote_write::Scratch::default();
        b.iter(|| {
            out.clear();
            procship::encode::remote_write::write(&mut out, &batch, &mut scratch);
            black_box(out.len())
        })
    });
    g.finish();
}

/// A cgroup v2 tree of `n` services under `system.slice`, each with the
/// files a real group has (cpu.stat, memory.current and .peak,
/// pids.current, io.stat with one disk), in a temporary directory.
fn cgroup_tree(n: usize) -> std::path::PathBuf {
    let base = std::env::temp_dir().join(format!("procship-bench-cgroup-{}", std::process::id()));
    let root = base.join("sys/fs/cgroup");
    std::fs::create_dir_all(&root).expect("a temporary directory");
    std::fs::write(root.join("cgroup.controllers"), "cpu io memory pids\n").expect("a file");
    let files = [
        (
            "cpu.stat",
            "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\nnr_periods 0\n\
             nr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
        ),
        ("memory.current", "123456789\n"),
        ("memory.peak", "234567890\n"),
        ("pids.current", "12\n"),
        (
            "io.stat",
            "8:0 rbytes=1234567 wbytes=7654321 rios=1234 wios=4321 dbytes=0 dios=0\n",
        ),
    ];
    for i in 0..n {
        let dir = root.join(format!("system.slice/service-{i}.service"));
        std::fs::create_dir_all(&dir).expect("a group's directory");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("a group's file");
        }
    }
    base
}

/// The cgroup collector on 300 groups, and the JSON of their points: what
/// a group costs a cycle beyond its reads.
fn cgroups(c: &mut Criterion) {
    let base = cgroup_tree(300);
    let paths = HostPaths {
        proc: base.join("proc"),
        sys: base.join("sys"),
        root: base.join("root"),
    };
    // Every group: the default maximum (200) would cut the tree.
    let mut one = runner_with(&["cgroup"], paths, &[("CGROUP_MAX", "300".to_string())]);
    let mut points = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("collector");
    g.bench_function("cgroup_300_groups", |b| {
        b.iter(|| {
            procship::point::recycle(&mut points);
            black_box(one.collect(1, &mut points));
        })
    });
    g.finish();
    // One cycle's points of its own: the bench above may have been
    // filtered out.
    procship::point::recycle(&mut points);
    one.collect(1, &mut points);
    assert_eq!(points.len(), 600, "a cgroup and a cgroup_io point a group");
    let batch = Batch {
        seq: 1,
        common_tags: Arc::new(vec![("host".into(), "bench-host".into())]),
        points,
    };
    let mut enc = Encoder::new(Format::Json, Compression::None, identity());
    let mut g = c.benchmark_group("encode");
    g.bench_function("json_cgroup_300_groups", |b| {
        b.iter(|| black_box(enc.encode(&batch).map(|e| e.body.len())))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&base);
}

fn identity() -> Identity {
    Identity {
        host: "bench-host".into(),
        run: 1,
        boot: 0,
    }
}

criterion_group!(benches, cycles, per_collector, site, encoding, cgroups);
criterion_main!(benches);
