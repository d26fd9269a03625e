//! Self-telemetry: the `agent` measurement, one point per cycle shipped
//! with the host's, so a fleet dashboard shows every agent's health: what
//! it collected, sent and dropped (by reason), retries and failed attempts,
//! what waits in memory and in the spool, when it last delivered, how long
//! collection took, and its own resident memory and CPU time.
//!
//! Fields (counters are cumulative since start):
//! `cycles`, `skipped_ticks` (ticks a slow cycle overran), `collector_errors`,
//! `collected`, `sent`, `batches_sent`, `retries`, `send_failures`,
//! `dropped`, `dropped_<reason>` for every drop reason (counters);
//! `queue_batches`, `queue_bytes`, `spool_batches`, `spool_bytes` (what
//! waits), `spool_disk_bytes` (the spool's use of the disk),
//! `last_success` (Unix seconds, 0 before the first delivery),
//! `collect_seconds`, `rss_bytes`, `cpu_seconds`, `uptime_seconds` (gauges).
//!
//! And one `agent_collector` point per collector that ran, tagged
//! `collector`: `success` (1 or 0: its last cycle returned without an
//! error), `skipped` (pieces it lost that cycle: sensors, lines, devices,
//! fields; a collector that failed whole counts 1) and `duration_seconds`,
//! so an alert can say which collector is broken on which host. Three
//! series per collector (about 45 by default), as node_exporter's
//! `node_scrape_collector_*` pair.
//!
//! These points go out every `PROCSHIP_SELF_INTERVAL` (rounded to whole
//! cycles; default 10 s, so every cycle at the default interval), and at
//! once on the cycle a collector starts or stops failing or skipping: at a
//! 1 s cadence they were a third of every batch, for series an alert reads
//! over minutes. `/metrics` and `/status` show them every cycle.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::collect::Outcome;
use crate::config::{ConfigError, Values, Var, parse_duration};
use crate::deliver::queue::Depth;
use crate::point::{Point, Timestamp};
use crate::stats::{DropReason, Stats};

pub const VARS: &[Var] = &[Var::new(
    "SELF_INTERVAL",
    "10",
    "how often the agent's own points (agent, agent_collector) are shipped, rounded to whole cycles; also at once when a collector starts or stops failing or skipping; 0: every cycle",
)
.live()];

/// `PROCSHIP_SELF_INTERVAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub every: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            every: v.get("SELF_INTERVAL", parse_duration)?,
        })
    }

    /// Every how many cycles of `interval` the points go out (at least 1).
    pub fn cycles(&self, interval: Duration) -> u32 {
        let n = self.every.as_secs_f64() / interval.as_secs_f64().max(1e-9);
        // Float to int saturates; NaN is 0.
        (n.round() as u32).max(1)
    }
}

/// Decides, cycle by cycle, whether the agent's own points are shipped:
/// on the first cycle, every `every` cycles, and when a collector's health
/// changed (success flipped, or skipping started or stopped) — facts in,
/// a yes or no out.
#[derive(Debug, Default)]
pub struct Cadence {
    every: u32,
    /// Cycles since the points last went out; `None` before the first.
    since: Option<u32>,
    /// Each collector's (success, skipped any) when last shipped.
    health: Vec<(bool, bool)>,
}

impl Cadence {
    pub fn new(every: u32) -> Self {
        Cadence {
            every: every.max(1),
            ..Cadence::default()
        }
    }

    pub fn set_every(&mut self, every: u32) {
        self.every = every.max(1);
    }

    /// Whether this cycle, whose collectors ended as `outcomes`, ships them.
    pub fn due(&mut self, outcomes: &[Outcome]) -> bool {
        let health = outcomes.iter().map(|o| (o.ok, o.skipped > 0));
        let changed = !health.clone().eq(self.health.iter().copied());
        let since = self.since.map_or(u32::MAX, |n| n.saturating_add(1));
        let due = changed || since >= self.every;
        if due {
            self.health.clear();
            self.health.extend(health);
            self.since = Some(0);
        } else {
            self.since = Some(since);
        }
        due
    }
}

/// Reads the agent's own resident size and CPU time.
pub struct SelfStats {
    statm: Option<File>,
    page_size: u64,
    buf: [u8; 128],
}

impl SelfStats {
    pub fn new(page_size: u64) -> Self {
        SelfStats {
            statm: File::open("/proc/self/statm").ok(),
            page_size,
            buf: [0; 128],
        }
    }

    /// Resident bytes from /proc/self/statm (second field, in pages).
    fn rss_bytes(&mut self) -> Option<u64> {
        let n = self.statm.as_ref()?.read_at(&mut self.buf, 0).ok()?;
        let text = std::str::from_utf8(&self.buf[..n]).ok()?;
        let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(pages * self.page_size)
    }

    /// User plus system CPU time of the whole process.
    fn cpu_seconds() -> Option<f64> {
        use nix::sys::resource::{UsageWho, getrusage};
        let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        Some(secs(u.user_time()) + secs(u.system_time()))
    }

    /// The `agent` point for this cycle.
    pub fn point(
        &mut self,
        stats: &Stats,
        depth: &Depth,
        collect_took: Duration,
        uptime: Duration,
        now: Timestamp,
    ) -> Point {
        let spool = depth.spool.unwrap_or_default();
        let mut p = Point::new("agent", now)
            .counter("cycles", Stats::get(&stats.cycles))
            .counter("skipped_ticks", Stats::get(&stats.skipped_ticks))
            .counter("collector_errors", Stats::get(&stats.collector_errors))
            .counter("collected", Stats::get(&stats.collected))
            .counter("sent", Stats::get(&stats.sent_points))
            .counter("batches_sent", Stats::get(&stats.sent_batches))
            .counter("retries", Stats::get(&stats.retries))
            .counter("send_failures", Stats::get(&stats.send_failures))
            .counter("dropped", stats.dropped_total());
        for reason in DropReason::ALL {
            p = p.counter(reason.field(), stats.dropped(reason));
        }
        p = p
            .uint("queue_batches", depth.batches as u64)
            .uint("queue_bytes", depth.bytes as u64)
            .uint("spool_batches", spool.batches)
            .uint("spool_bytes", spool.bytes)
            .uint("spool_disk_bytes", spool.disk_bytes)
            .int("last_success", stats.last_success_ns() / 1_000_000_000)
            .gauge("collect_seconds", collect_took.as_secs_f64())
            .gauge("uptime_seconds", uptime.as_secs_f64());
        if let Some(rss) = self.rss_bytes() {
            p = p.uint("rss_bytes", rss);
        }
        if let Some(cpu) = Self::cpu_seconds() {
            p = p.gauge("cpu_seconds", cpu);
        }
        p
    }
}

/// With node_exporter's names (`PROCSHIP_NAMES`), the agent's counters end
/// in `_total` as Prometheus' conventions (and `promtool check metrics`)
/// want: `agent_sent_total`, `agent_dropped_queue_full_total`, ….
pub fn counters_total(p: &mut Point) {
    for (name, v) in &mut p.fields {
        if matches!(v, crate::point::Value::Counter(_)) {
            *name = crate::point::intern_concat(&[name, "_total"]);
        }
    }
}

/// One `agent_collector` point per collector of the last cycle.
pub fn collector_points(outcomes: &[Outcome], now: Timestamp, out: &mut Vec<Point>) {
    out.extend(outcomes.iter().map(|o| {
        Point::new("agent_collector", now)
            .tag("collector", o.name)
            .int("success", i64::from(o.ok))
            .int("skipped", i64::from(o.skipped))
            .gauge("duration_seconds", o.took.as_secs_f64())
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Value;

    #[test]
    fn each_collector_reports_success_skipped_and_duration() {
        let outcomes = [
            Outcome {
                name: "cpu",
                ok: true,
                skipped: 0,
                points: 3,
                took: Duration::from_micros(250),
            },
            Outcome {
                name: "temp",
                ok: false,
                skipped: 2,
                points: 1,
                took: Duration::from_micros(40),
            },
        ];
        let mut out = Vec::new();
        collector_points(&outcomes, 7, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].tag_value("collector"), Some("temp"));
        assert_eq!(out[1].field("success"), Some(Value::Int(0)));
        assert_eq!(out[1].field("skipped"), Some(Value::Int(2)));
        assert_eq!(out[0].field("success"), Some(Value::Int(1)));
        assert_eq!(
            out[0].field("duration_seconds"),
            Some(Value::Gauge(0.00025))
        );
    }

    fn outcome(ok: bool, skipped: u32) -> Outcome {
        Outcome {
            name: "x",
            ok,
            skipped,
            points: 1,
            took: Duration::ZERO,
        }
    }

    #[test]
    fn the_points_go_out_first_then_every_n_cycles_and_when_health_changes() {
        let mut c = Cadence::new(3);
        let fine = [outcome(true, 0), outcome(true, 0)];
        let got: Vec<bool> = (0..7).map(|_| c.due(&fine)).collect();
        assert_eq!(got, [true, false, false, true, false, false, true]);
        assert!(
            c.due(&[outcome(false, 1), outcome(true, 0)]),
            "a failure at once"
        );
        assert!(
            !c.due(&[outcome(false, 4), outcome(true, 0)]),
            "more skipped: not news"
        );
        assert!(
            c.due(&[outcome(true, 0), outcome(true, 0)]),
            "a recovery at once"
        );
        assert!(c.due(&[outcome(true, 0)]), "a collector fewer (a reload)");
        let mut every = Cadence::new(0);
        assert!((0..4).all(|_| every.due(&fine)), "0 or 1: every cycle");
    }

    #[test]
    fn the_self_interval_is_rounded_to_whole_cycles() {
        let o = |s: f64| Options {
            every: Duration::from_secs_f64(s),
        };
        let secs = Duration::from_secs_f64;
        assert_eq!(o(10.0).cycles(secs(10.0)), 1);
        assert_eq!(o(10.0).cycles(secs(1.0)), 10);
        assert_eq!(o(10.0).cycles(secs(3.0)), 3);
        assert_eq!(o(10.0).cycles(secs(60.0)), 1);
        assert_eq!(o(0.0).cycles(secs(1.0)), 1);
        assert_eq!(o(10.0).cycles(secs(0.001)), 10_000);
    }

    #[test]
    fn every_drop_reason_has_its_field() {
        for reason in DropReason::ALL {
            assert_eq!(reason.field(), format!("dropped_{}", reason.name()));
        }
    }

    #[test]
    fn the_agent_point_reports_counters_depth_and_itself() {
        let stats = Stats::default();
        Stats::add(&stats.collected, 70);
        Stats::add(&stats.sent_points, 60);
        stats.drop_points(DropReason::Rejected, 10);
        let depth = Depth {
            batches: 2,
            bytes: 300,
            spool: None,
        };
        let mut s = SelfStats::new(4096);
        let p = s.point(
            &stats,
            &depth,
            Duration::from_millis(3),
            Duration::from_secs(9),
            5,
        );
        let f = |k: &str| p.fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(f("collected"), Some(Value::Counter(70)));
        assert_eq!(f("dropped"), Some(Value::Counter(10)));
        assert_eq!(f("dropped_rejected"), Some(Value::Counter(10)));
        assert_eq!(f("queue_batches"), Some(Value::Int(2)));
        assert_eq!(f("last_success"), Some(Value::Int(0)));
        assert!(matches!(f("rss_bytes"), Some(Value::Int(n)) if n > 100_000));
        assert!(matches!(f("cpu_seconds"), Some(Value::Gauge(c)) if c > 0.0));
    }
}
