//! Heap allocations of a steady cycle (issue: the cost of one delivery).
//!
//! A global allocator counts every allocation and reallocation made by the
//! thread it is made on (a thread-local counter: the other tests of this
//! binary run on their own threads and are not counted). Each test runs the
//! agent's own code on its thread, as the agent runs it on its main thread
//! and its shipper thread: after a warm-up, a steady cycle must allocate
//! nothing. What must allocate is listed below with the reason, and a test
//! fails both when something not listed allocates and when a listed one no
//! longer does (so the list stays true).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use procship::agent::{Loop, identity, runner};
use procship::collect;
use procship::deliver::queue::Queue;
use procship::deliver::ship::{self, Shipper};
use procship::host::Facts;
use procship::point;
use procship::settings::Settings;
use procship::stats::Stats;

use crate::util::{Listener, always, fixture};

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Print where each counted allocation is made (`PROCSHIP_ALLOC_TRACE=1`).
    static TRACE: Cell<bool> = const { Cell::new(false) };
}

/// The counting allocator (installed in `main.rs`): `System`, plus one
/// count per `alloc`, `alloc_zeroed` and `realloc` on the calling thread.
pub struct Counting;

fn bump() {
    // During a thread's teardown the counter may be gone: not counted.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    if TRACE.try_with(|t| t.replace(false)).unwrap_or(false) {
        // Off while the backtrace itself allocates.
        eprintln!("{}", std::backtrace::Backtrace::force_capture());
        TRACE.set(true);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(p, l, size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

/// Allocations `f` makes on this thread. With `PROCSHIP_ALLOC_TRACE=1`
/// (and `--nocapture`), each one's backtrace is printed: where to look.
fn counted(f: impl FnOnce()) -> u64 {
    let trace = std::env::var_os("PROCSHIP_ALLOC_TRACE").is_some_and(|v| v == "1");
    let before = COUNT.with(Cell::get);
    TRACE.set(trace);
    f();
    TRACE.set(false);
    COUNT.with(Cell::get) - before
}

const WARM_UP: usize = 5;
const CYCLES: u64 = 20;

/// The default collectors that allocate in a steady cycle, and why.
const COLLECTORS_THAT_ALLOCATE: &[(&str, &str)] = &[(
    "diskio",
    "procfs-core's DiskStat::from_line returns each disk's name as an owned String \
     (one allocation per disk per cycle); the project leaves parsing diskstats to procfs-core",
)];

/// The configuration of a test run: the default collectors, this host.
fn settings(vars: &[(&str, &str)]) -> Settings {
    let flags: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (format!("PROCSHIP_{k}"), v.to_string()))
        .collect();
    match Settings::from_sources(&flags, &[], &[]) {
        Ok(s) => s,
        Err(e) => panic!("{vars:?}: {e}"),
    }
}

/// One collector alone, as the agent builds it (on this host, or on the
/// tree `vars` point at), its points given back every cycle.
fn collector_allocations(name: &str, vars: &[(&str, &str)]) -> u64 {
    let mut all = vec![("COLLECTORS", name)];
    all.extend_from_slice(vars);
    let mut r = runner(&settings(&all), Facts::of_this_host());
    let mut out = Vec::new();
    let mut cycle = |now: i64| {
        r.collect(now, &mut out);
        point::recycle(&mut out);
    };
    for i in 0..WARM_UP {
        cycle(i as i64);
    }
    counted(|| {
        for i in 0..CYCLES {
            cycle(1000 + i as i64);
        }
    }) / CYCLES
}

#[test]
fn no_default_collector_allocates_in_a_steady_cycle() {
    let mut wrong = Vec::new();
    let only = std::env::var("PROCSHIP_ALLOC_ONLY").unwrap_or_default();
    // This host, and a fixture tree with what it may lack (sensors,
    // thermal zones, several disks and interfaces).
    let tree = fixture("basic");
    let (proc, sys, root) = (tree.join("proc"), tree.join("sys"), tree.join("root"));
    let on_tree = [
        ("HOST_PROC", proc.to_str().unwrap_or_default()),
        ("HOST_SYS", sys.to_str().unwrap_or_default()),
        ("HOST_ROOT", root.to_str().unwrap_or_default()),
    ];
    for name in collect::defaults() {
        if !only.is_empty() && only != name {
            continue;
        }
        let listed = COLLECTORS_THAT_ALLOCATE.iter().any(|(c, _)| *c == name);
        for (place, vars) in [("this host", &[][..]), ("the basic tree", &on_tree[..])] {
            let n = collector_allocations(name, vars);
            match (n > 0, listed) {
                (true, false) => {
                    wrong.push(format!("{name} on {place}: {n} allocations per cycle"))
                }
                (false, true) => {
                    wrong.push(format!("{name} on {place}: listed, but allocates nothing"))
                }
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `cgroup` is off by default, and scales with the host: a steady cycle
/// (the same groups listed again, their kept files read) allocates
/// nothing, on a unified hierarchy (services, containers with io.stat, a
/// VM) and on the v1 hierarchies.
#[test]
fn the_cgroup_collector_allocates_nothing_in_a_steady_cycle() {
    for name in ["basic", "cgroup-v1"] {
        let sys = fixture(name).join("sys");
        let sys = sys.to_str().unwrap_or_default();
        let n = collector_allocations("cgroup", &[("HOST_SYS", sys), ("CGROUP_DEPTH", "2")]);
        assert_eq!(n, 0, "cgroup on the {name} tree: {n} allocations per cycle");
    }
}

/// Waits (bounded) until every CPU's counters in /proc/stat have moved, as
/// they always have between two real cycles: back to back, the cpu
/// collector would find no time passed and make fewer points, and the
/// count of points per cycle would depend on when the kernel's tick fell.
fn cpu_time_passes() {
    let cpus = || -> Vec<String> {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        stat.lines()
            .filter(|l| l.starts_with("cpu"))
            .map(str::to_string)
            .collect()
    };
    let before = cpus();
    for _ in 0..1000 {
        let now = cpus();
        if now.len() == before.len() && now.iter().zip(&before).all(|(a, b)| a != b) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The main thread's cycle in one format: collect, the agent's own points,
/// batch, encode, queue; then what the shipper does with the queue around
/// a POST (pop, acknowledge, give the body back). Counted cycle by cycle,
/// with CPU time passing in between (outside the count).
fn cycle_allocations(vars: &[(&str, &str)]) -> u64 {
    let s = settings(vars);
    let stats = Arc::new(Stats::default());
    let queue = Arc::new(Queue::new(s.queue.max_bytes, stats.clone(), None));
    let (encoder, _) = ship::sink_for(&s.ship, &s.tls, s.encode, identity(&s));
    let mut l = Loop::new(s, stats, queue.clone(), encoder, 1);
    let mut cycle = || {
        l.cycle();
        l.flush();
        while queue.depth().batches > 0 {
            if let Some(q) = queue.pop() {
                queue.ack(&q);
                queue.recycle(q.batch.body);
            }
        }
    };
    for _ in 0..WARM_UP {
        cpu_time_passes();
        cycle();
    }
    let mut n = 0;
    for _ in 0..CYCLES {
        cpu_time_passes();
        n += counted(&mut cycle);
    }
    n / CYCLES
}

#[test]
fn a_steady_cycle_allocates_nothing_in_any_format() {
    let url = "http://127.0.0.1:9/write"; // never contacted: the queue is drained here
    // What the listed collectors allocate is allowed in the whole cycle too.
    let collectors: u64 = COLLECTORS_THAT_ALLOCATE
        .iter()
        .map(|(c, _)| collector_allocations(c, &[]))
        .sum();
    let mut wrong = Vec::new();
    // At a 1 s interval the agent's own points go out every tenth cycle
    // (PROCSHIP_SELF_INTERVAL): the counted cycles hold both kinds; at the
    // default 10 s, every cycle ships them.
    for (format, compression, names, interval) in [
        ("json", "gzip", "telegraf", "1"),
        ("json", "gzip", "telegraf", "10"),
        ("json", "none", "telegraf", "1"),
        ("influx", "gzip", "telegraf", "1"),
        ("influx", "none", "telegraf", "1"),
        ("prometheus", "gzip", "telegraf", "1"),
        ("otlp", "gzip", "telegraf", "1"),
        ("otlp", "none", "telegraf", "1"),
        ("prometheus", "gzip", "node_exporter", "1"),
    ] {
        let only = std::env::var("PROCSHIP_ALLOC_ONLY").unwrap_or_default();
        if !only.is_empty() && only != format!("{format} {compression} {names}") {
            continue;
        }
        let n = cycle_allocations(&[
            ("INGEST_URL", url),
            ("FORMAT", format),
            ("COMPRESSION", compression),
            ("NAMES", names),
            ("INTERVAL", interval),
        ]);
        if n > collectors {
            wrong.push(format!(
                "{format} {compression} {names} at {interval} s: {n} allocations per cycle ({collectors} of them the listed collectors')"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// ureq's own per call (32 with ureq 3.5: the request's header map and
/// extensions, the headers it adds, the call's state, the response and its
/// header map): allocations that only an HTTP client of our own could
/// avoid, which the project does not write. The shipper hands ureq a URL
/// and headers parsed once (cloned by reference count: 40 a POST before).
/// This bounds them per POST.
const UREQ_PER_POST: u64 = 36;

/// Allocations of the shipper's thread for `batches` POSTs of one cycle's
/// batch each to `url`, start to end (one connection).
fn shipper_allocations(url: &str, batches: usize) -> u64 {
    let s = settings(&[("INGEST_URL", url)]);
    let stats = Arc::new(Stats::default());
    let queue = Arc::new(Queue::new(s.queue.max_bytes, stats.clone(), None));
    let (encoder, sink) = ship::sink_for(&s.ship, &s.tls, s.encode, identity(&s));
    let mut shipper = Shipper::new(
        &s.ship,
        s.retry,
        sink,
        queue.clone(),
        stats.clone(),
        Arc::new(ship::Target::default()),
        1,
    );
    let mut l = Loop::new(s, stats.clone(), queue.clone(), encoder, 1);
    for _ in 0..batches {
        l.cycle();
        l.flush();
    }
    queue.close();
    let n = counted(|| shipper.run());
    assert_eq!(
        Stats::get(&stats.sent_batches),
        batches as u64,
        "every batch delivered"
    );
    n
}

#[test]
fn a_steady_post_allocates_only_what_ureq_does() {
    let sink = Listener::start(always(204));
    let url = sink.url();
    let few = shipper_allocations(&url, WARM_UP);
    let more = shipper_allocations(&url, WARM_UP + CYCLES as usize);
    let per_post = more.saturating_sub(few) / CYCLES;
    assert!(
        (1..=UREQ_PER_POST).contains(&per_post),
        "{per_post} allocations per POST (ureq's own are expected, at most {UREQ_PER_POST})"
    );
}
