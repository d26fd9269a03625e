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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::collect::Outcome;
use crate::deliver::queue::Depth;
use crate::point::{Point, Timestamp};
use crate::stats::{DropReason, Stats};

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
