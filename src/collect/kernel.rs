//! `kernel`: boot_time (seconds since the epoch), context_switches,
//! interrupts and processes_forked (cumulative) from /proc/stat, and
//! entropy_avail from /proc/sys/kernel/random/entropy_avail where the kernel
//! has it, as Telegraf's kernel plugin.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial, stat};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("kernel", |ctx| match ctx.names {
    Names::Telegraf => Box::new(Kernel),
    Names::NodeExporter => Box::new(KernelNode),
})
.node_help(NODE_HELP);

/// node_exporter's stat (and entropy) collectors' series.
const NODE_HELP: &[Help] = &[
    ("node_boot_time_seconds", "Node boot time, in unixtime."),
    (
        "node_context_switches_total",
        "Total number of context switches.",
    ),
    ("node_forks_total", "Total number of forks."),
    ("node_intr_total", "Total number of interrupts serviced."),
    (
        "node_procs_running",
        "Number of processes in runnable state.",
    ),
    (
        "node_procs_blocked",
        "Number of processes blocked waiting for I/O to complete.",
    ),
    ("node_entropy_available_bits", "Bits of available entropy."),
    ("node_entropy_pool_size_bits", "Bits of entropy pool."),
];

const ENTROPY: &str = "sys/kernel/random/entropy_avail";

/// The number a one-number file under /proc holds; a kernel without the
/// file gives nothing, a file that is not a number is noted.
fn number(files: &mut Files, partial: &mut Partial, rel: &'static str) -> Option<u64> {
    let path = files.proc_path(rel);
    let text = files.proc(rel).ok()?;
    let what = rel.rsplit('/').next().unwrap_or(rel);
    partial.keep(super::num(
        &path,
        what,
        text.split_ascii_whitespace().next(),
    ))
}

/// `kernel` with node_exporter's names: one series per line of /proc/stat
/// it reads, and entropy_avail; a line the kernel does not print loses
/// only its series.
pub struct KernelNode;

impl Collector for KernelNode {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("stat");
        let st = stat::read(files, stat::Cpus::Count)?;
        let mut missing = Vec::new();
        let gauges = [
            ("node_boot_time_seconds", st.btime, "btime"),
            ("node_procs_running", st.procs_running, "procs_running"),
            ("node_procs_blocked", st.procs_blocked, "procs_blocked"),
        ];
        for (name, v, line) in gauges {
            match v {
                Some(v) => out.push(Point::new(name, now).uint(WHOLE, v)),
                None => missing.push(line),
            }
        }
        let counters = [
            ("node_context_switches_total", st.ctxt, "ctxt"),
            ("node_intr_total", st.intr, "intr"),
            ("node_forks_total", st.processes, "processes"),
        ];
        for (name, v, line) in counters {
            match v {
                Some(v) => out.push(Point::new(name, now).counter(WHOLE, v)),
                None => missing.push(line),
            }
        }
        let mut partial = Partial::default();
        if !missing.is_empty() {
            partial.note(|| CollectError::parse(&path, format!("no {} line", missing.join(", "))));
        }
        for (rel, name) in [
            (ENTROPY, "node_entropy_available_bits"),
            ("sys/kernel/random/poolsize", "node_entropy_pool_size_bits"),
        ] {
            if let Some(v) = number(files, &mut partial, rel) {
                out.push(Point::new(name, now).uint(WHOLE, v));
            }
        }
        partial.result()
    }
}

pub struct Kernel;

impl Collector for Kernel {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("stat");
        let st = stat::read(files, stat::Cpus::Count)?;
        // A line the kernel does not print loses only its field, named.
        let mut missing = Vec::new();
        let mut p = Point::new("kernel", now);
        match st.btime {
            Some(v) => p = p.uint("boot_time", v),
            None => missing.push("btime"),
        }
        for (field, v, line) in [
            ("context_switches", st.ctxt, "ctxt"),
            ("interrupts", st.intr, "intr"),
            ("processes_forked", st.processes, "processes"),
        ] {
            match v {
                Some(v) => p = p.counter(field, v),
                None => missing.push(line),
            }
        }
        let mut partial = Partial::default();
        if !missing.is_empty() {
            partial.note(|| CollectError::parse(&path, format!("no {} line", missing.join(", "))));
        }
        if let Some(v) = number(files, &mut partial, ENTROPY) {
            p = p.uint("entropy_avail", v);
        }
        partial.push(p, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Int};

    #[test]
    fn node_exporter_stat_and_entropy() {
        let pts = run(&mut KernelNode, "basic").unwrap();
        let get = |name: &str| {
            pts.iter()
                .find(|p| p.measurement == name)
                .and_then(|p| p.field(WHOLE))
        };
        assert_eq!(get("node_boot_time_seconds"), Some(Int(1_763_700_000)));
        assert_eq!(
            get("node_context_switches_total"),
            Some(Counter(987_654_321))
        );
        assert_eq!(get("node_forks_total"), Some(Counter(424_242)));
        assert_eq!(get("node_entropy_available_bits"), Some(Int(256)));
    }

    #[test]
    fn kernel_counters() {
        let p = &run(&mut Kernel, "basic").unwrap()[0];
        assert_eq!(p.field("boot_time"), Some(Int(1_763_700_000)));
        assert_eq!(p.field("context_switches"), Some(Counter(987_654_321)));
        assert_eq!(p.field("interrupts"), Some(Counter(123_456_789)));
        assert_eq!(p.field("processes_forked"), Some(Counter(424_242)));
        assert_eq!(p.field("entropy_avail"), Some(Int(256)));
    }

    #[test]
    fn missing_lines_lose_only_their_fields_and_are_named() {
        let (pts, e) = run_on_partial(
            &mut Kernel,
            &[
                ("proc/stat", b"cpu 1 2 3 4\nctxt 5\nintr 7 0 0\n"),
                ("proc/sys/kernel/random/entropy_avail", b""),
            ],
        );
        assert_eq!(pts[0].field("context_switches"), Some(Counter(5)));
        assert_eq!(pts[0].field("interrupts"), Some(Counter(7)));
        assert_eq!(pts[0].fields.len(), 2, "no boot_time, processes or entropy");
        let e = e.unwrap().to_string();
        assert!(e.contains("proc/stat: no btime, processes line"), "{e}");
    }
}
