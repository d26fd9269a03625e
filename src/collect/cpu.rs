//! `cpu`: CPU usage in percent from deltas of /proc/stat, for the whole host
//! (`cpu=cpu-total`) and each CPU (`cpu=cpu0`, …), fields as Telegraf's cpu
//! plugin: usage_user, usage_system, usage_idle, usage_nice, usage_iowait,
//! usage_irq, usage_softirq, usage_steal, usage_guest, usage_guest_nice.
//! The first cycle only primes. Guest time is already counted in user (and
//! guest_nice in nice) by the kernel, so it is subtracted there, as Telegraf does.
//! A CPU whose counters go backwards (hotplug) is skipped for one cycle.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, stat};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("cpu", |ctx| match ctx.names {
    Names::Telegraf => Box::new(Cpu::default()),
    Names::NodeExporter => Box::new(CpuNode::new(ctx.facts.ticks_per_sec.max(1) as f64)),
})
.node_help(NODE_HELP);

/// node_exporter's cpu collector: cumulative seconds per CPU (`cpu="0"`,
/// no total: a dashboard sums) and mode, as the kernel counts them (user
/// includes guest), and guest time on its own.
const NODE_HELP: &[Help] = &[
    (
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    ),
    (
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    ),
];

/// The modes of /proc/stat's first eight columns, as node_exporter names them.
const NODE_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// `cpu` with node_exporter's names: no deltas, nothing to prime.
pub struct CpuNode {
    /// USER_HZ.
    hz: f64,
    /// The last cycle's parsed lines' memory (`stat::read_into`).
    lines: Vec<stat::CpuLine<'static>>,
}

impl CpuNode {
    pub fn new(hz: f64) -> Self {
        CpuNode {
            hz,
            lines: Vec::new(),
        }
    }
}

impl Collector for CpuNode {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let lines = std::mem::take(&mut self.lines);
        let st = stat::read_into(files, stat::Cpus::Parse, lines)?;
        for line in st.cpus.iter().filter(|c| c.name != "cpu") {
            let cpu = line.name.trim_start_matches("cpu");
            let series = |name: &'static str, mode: &'static str, ticks: u64| {
                Point::new(name, now)
                    .tag("cpu", cpu)
                    .tag("mode", mode)
                    .total(WHOLE, ticks as f64 / self.hz)
            };
            for (mode, ticks) in NODE_MODES.iter().zip(line.ticks) {
                out.push(series("node_cpu_seconds_total", mode, ticks));
            }
            for (mode, ticks) in ["user", "nice"].iter().zip(&line.ticks[8..]) {
                out.push(series("node_cpu_guest_seconds_total", mode, *ticks));
            }
        }
        self.lines = super::recycle_vec(st.cpus);
        Ok(())
    }
}

const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_nice",
    "usage_system",
    "usage_idle",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

#[derive(Default)]
pub struct Cpu {
    /// Last cycle's counters by CPU name.
    last: Vec<(String, [u64; 10])>,
    /// The last cycle's parsed lines' memory (`stat::read_into`).
    lines: Vec<stat::CpuLine<'static>>,
}

/// Usage percentages between two readings of one CPU, or `None` when no
/// time passed or a counter went backwards.
pub fn usage(prev: &[u64; 10], cur: &[u64; 10]) -> Option<[f64; 10]> {
    let mut d = [0u64; 10];
    for i in 0..10 {
        d[i] = cur[i].checked_sub(prev[i])?;
    }
    // user..steal; guest and guest_nice are inside user and nice.
    let total: u64 = d[..8].iter().sum();
    if total == 0 {
        return None;
    }
    let pct = |v: u64| 100.0 * v as f64 / total as f64;
    let mut out = [0.0; 10];
    for i in 0..10 {
        out[i] = pct(d[i]);
    }
    out[0] = pct(d[0].saturating_sub(d[8]));
    out[1] = pct(d[1].saturating_sub(d[9]));
    Some(out)
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let lines = std::mem::take(&mut self.lines);
        let st = stat::read_into(files, stat::Cpus::Parse, lines)?;
        for line in &st.cpus {
            let prev = self.last.iter_mut().find(|(n, _)| n == line.name);
            let Some((_, prev)) = prev else {
                self.last.push((line.name.to_string(), line.ticks));
                continue;
            };
            if let Some(u) = usage(prev, &line.ticks) {
                let tag = if line.name == "cpu" {
                    "cpu-total"
                } else {
                    line.name
                };
                let mut p = Point::new("cpu", now).tag("cpu", tag);
                for (name, v) in FIELDS.iter().zip(u) {
                    p = p.gauge(*name, v);
                }
                out.push(p);
            }
            *prev = line.ticks;
        }
        // Forget CPUs that went away (hotplug), so a returning one primes again.
        self.last
            .retain(|(n, _)| st.cpus.iter().any(|c| c.name == n));
        self.lines = super::recycle_vec(st.cpus);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;

    #[test]
    fn node_exporter_seconds_per_cpu_and_mode() {
        let pts = run(&mut CpuNode::new(100.0), "cpu-t0").unwrap();
        let find = |name: &str, cpu: &str, mode: &str| {
            pts.iter()
                .find(|p| {
                    p.measurement == name
                        && p.tag_value("cpu") == Some(cpu)
                        && p.tag_value("mode") == Some(mode)
                })
                .and_then(|p| p.field(WHOLE))
        };
        use crate::point::Value::Total;
        assert!(find("node_cpu_seconds_total", "0", "user").is_some());
        assert!(
            pts.iter().all(|p| p.tag_value("cpu") != Some("")),
            "no total"
        );
        assert_eq!(pts.len() % 10, 0, "8 modes and 2 guest modes per CPU");
        let user = find("node_cpu_seconds_total", "3", "idle");
        assert!(matches!(user, Some(Total(s)) if s > 0.0), "{user:?}");
    }

    #[test]
    fn first_cycle_primes_then_deltas() {
        let mut c = Cpu::default();
        assert!(run(&mut c, "cpu-t0").unwrap().is_empty());
        let pts = run(&mut c, "cpu-t1").unwrap();
        assert_eq!(pts.len(), 3, "total + 2 cpus");
        let total = &pts[0];
        assert_eq!(total.tag_value("cpu"), Some("cpu-total"));
        // t0 -> t1 total: user +60 (guest +10), system +20, idle +100, iowait +20: 200 ticks
        use crate::point::Value::Gauge;
        assert_eq!(total.field("usage_user"), Some(Gauge(25.0)));
        assert_eq!(total.field("usage_guest"), Some(Gauge(5.0)));
        assert_eq!(total.field("usage_system"), Some(Gauge(10.0)));
        assert_eq!(total.field("usage_idle"), Some(Gauge(50.0)));
        assert_eq!(total.field("usage_iowait"), Some(Gauge(10.0)));
        assert_eq!(
            pts[2].tag_value("cpu"),
            Some("cpu3"),
            "offline cpu1/cpu2 keep real names"
        );
    }

    #[test]
    fn backwards_counters_and_no_time_give_nothing() {
        let a = [5, 0, 5, 5, 0, 0, 0, 0, 0, 0];
        let b = [4, 0, 6, 6, 0, 0, 0, 0, 0, 0];
        assert!(usage(&a, &b).is_none());
        assert!(usage(&a, &a).is_none());
    }

    #[test]
    fn truncated_stat_is_an_error() {
        let e = err_text(run(&mut Cpu::default(), "truncated"));
        assert!(
            e.contains("proc/stat") && e.contains("expected at least 4"),
            "{e}"
        );
        let e = err_text(run(&mut Cpu::default(), "empty"));
        assert!(e.contains("no aggregate"), "{e}");
    }
}
