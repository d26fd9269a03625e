//! `timex`: the kernel clock's synchronisation state, from `adjtimex(2)`
//! in read-only mode (what `timedatectl` and node_exporter's timex
//! collector read; no NTP daemon is asked, so it works with chrony,
//! ntpd, systemd-timesyncd or PTP alike): `timex` → sync_status (1 when
//! the kernel counts the clock synchronised: `STA_UNSYNC` clear and the
//! state not `TIME_ERROR`), offset_seconds, maxerror_seconds,
//! esterror_seconds, frequency_ppm (the applied adjustment), tai_offset_seconds,
//! loop_time_constant, status (the raw `STA_*` bits). Telegraf has no such
//! measurement; names in its style, units in the name as node_exporter's.
//!
//! The call reads the clock of the kernel the agent runs on, which is the
//! host's in a container too (Linux has one system clock); it ignores
//! `PROCSHIP_HOST_PROC`. The syscall is the module's only `unsafe`; what
//! it returns is turned into a point by a pure function, tested on values.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("timex", |ctx| {
    Box::new(Timex {
        node: ctx.names == Names::NodeExporter,
    })
})
.node_help(NODE_HELP);

/// node_exporter's timex collector, every series of it (its formulas:
/// frequencies are scaled ppm, 2^-16 ppm, as ratios or hertz).
const NODE_HELP: &[Help] = &[
    (
        "node_timex_offset_seconds",
        "Time offset in between local system and reference clock.",
    ),
    (
        "node_timex_frequency_adjustment_ratio",
        "Local clock frequency adjustment.",
    ),
    ("node_timex_maxerror_seconds", "Maximum error in seconds."),
    (
        "node_timex_estimated_error_seconds",
        "Estimated error in seconds.",
    ),
    ("node_timex_status", "Value of the status array bits."),
    (
        "node_timex_loop_time_constant",
        "Phase-locked loop time constant.",
    ),
    ("node_timex_tick_seconds", "Seconds between clock ticks."),
    (
        "node_timex_pps_frequency_hertz",
        "Pulse per second frequency.",
    ),
    ("node_timex_pps_jitter_seconds", "Pulse per second jitter."),
    (
        "node_timex_pps_shift_seconds",
        "Pulse per second interval duration.",
    ),
    (
        "node_timex_pps_stability_hertz",
        "Pulse per second stability, average of recent frequency changes.",
    ),
    (
        "node_timex_pps_jitter_total",
        "Pulse per second count of jitter limit exceeded events.",
    ),
    (
        "node_timex_pps_calibration_total",
        "Pulse per second count of calibration intervals.",
    ),
    (
        "node_timex_pps_error_total",
        "Pulse per second count of calibration errors.",
    ),
    (
        "node_timex_pps_stability_exceeded_total",
        "Pulse per second count of stability limit exceeded events.",
    ),
    (
        "node_timex_tai_offset_seconds",
        "International Atomic Time (TAI) offset.",
    ),
    (
        "node_timex_sync_status",
        "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
    ),
];

pub struct Timex {
    /// node_exporter's names.
    node: bool,
}

/// `STA_UNSYNC`: the clock is not synchronised.
const STA_UNSYNC: i64 = 0x0040;
/// `STA_NANO`: `offset` is in nanoseconds, not microseconds.
const STA_NANO: i64 = 0x2000;
/// `TIME_ERROR`: adjtimex's return when the clock is not synchronised.
const TIME_ERROR: i64 = 5;

/// What `adjtimex` says, in the kernel's units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// The call's return: the clock state (`TIME_OK` … `TIME_ERROR`).
    pub state: i64,
    pub status: i64,
    /// µs, or ns with `STA_NANO`.
    pub offset: i64,
    /// Scaled ppm: 2^-16 ppm.
    pub freq: i64,
    /// µs.
    pub maxerror: i64,
    /// µs.
    pub esterror: i64,
    pub constant: i64,
    /// s.
    pub tai: i64,
    /// µs between ticks.
    pub tick: i64,
    /// The PPS signal's: frequency (scaled ppm), jitter (µs or ns),
    /// interval (log2 s), stability (scaled ppm), and its event counts.
    pub ppsfreq: i64,
    pub jitter: i64,
    pub shift: i64,
    pub stabil: i64,
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
}

/// The kernel's clock state now (read only: `modes` is 0).
fn read() -> std::io::Result<Reading> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a
    // valid value, and `adjtimex` only writes into the struct it is given;
    // with `modes` 0 it changes nothing.
    let mut t: nix::libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { nix::libc::adjtimex(&mut t) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Reading {
        state: i64::from(state),
        status: i64::from(t.status),
        offset: t.offset as i64,
        freq: t.freq as i64,
        maxerror: t.maxerror as i64,
        esterror: t.esterror as i64,
        constant: t.constant as i64,
        tai: i64::from(t.tai),
        tick: t.tick as i64,
        ppsfreq: t.ppsfreq as i64,
        jitter: t.jitter as i64,
        shift: i64::from(t.shift),
        stabil: t.stabil as i64,
        jitcnt: t.jitcnt as i64,
        calcnt: t.calcnt as i64,
        errcnt: t.errcnt as i64,
        stbcnt: t.stbcnt as i64,
    })
}

/// node_exporter's timex series are `<NODE_MEASUREMENT>_<field>`.
const NODE_MEASUREMENT: &str = "node_timex";

/// A reading's series in node_exporter's names, in `NODE_HELP`'s order: one
/// point, a field each.
pub fn node_points(r: &Reading, now: Timestamp, out: &mut Vec<Point>) {
    const PPM16: f64 = 1e6 * 65_536.0;
    let unit = if r.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let synced = r.status & STA_UNSYNC == 0 && r.state != TIME_ERROR;
    let gauges = [
        r.offset as f64 / unit,
        1.0 + r.freq as f64 / PPM16,
        r.maxerror as f64 / 1e6,
        r.esterror as f64 / 1e6,
        r.status as f64,
        r.constant as f64,
        r.tick as f64 / 1e6,
        r.ppsfreq as f64 / PPM16,
        r.jitter as f64 / unit,
        r.shift as f64,
        r.stabil as f64 / PPM16,
    ];
    let counters = [r.jitcnt, r.calcnt, r.errcnt, r.stbcnt];
    let (g, rest) = NODE_HELP.split_at(gauges.len());
    let (c, ints) = rest.split_at(counters.len());
    let field = |name| super::names::field_of(NODE_MEASUREMENT, name);
    let mut p = Point::new(NODE_MEASUREMENT, now);
    for ((name, _), v) in g.iter().zip(gauges) {
        p = p.gauge(field(name), v);
    }
    for ((name, _), v) in c.iter().zip(counters) {
        p = p.counter(field(name), u64::try_from(v).unwrap_or(0));
    }
    for ((name, _), v) in ints.iter().zip([r.tai, i64::from(synced)]) {
        p = p.int(field(name), v);
    }
    out.push(p);
}

/// The `timex` point of a reading.
pub fn point(r: &Reading, now: Timestamp) -> Point {
    let synced = r.status & STA_UNSYNC == 0 && r.state != TIME_ERROR;
    let offset_unit = if r.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    Point::new("timex", now)
        .int("sync_status", i64::from(synced))
        .gauge("offset_seconds", r.offset as f64 / offset_unit)
        .gauge("maxerror_seconds", r.maxerror as f64 / 1e6)
        .gauge("esterror_seconds", r.esterror as f64 / 1e6)
        .gauge("frequency_ppm", r.freq as f64 / 65_536.0)
        .int("tai_offset_seconds", r.tai)
        .int("loop_time_constant", r.constant)
        .int("status", r.status)
}

impl Collector for Timex {
    fn name(&self) -> &'static str {
        "timex"
    }

    fn collect(
        &mut self,
        _: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let r = read().map_err(|e| CollectError::io("adjtimex(2)", e))?;
        if self.node {
            node_points(&r, now, out);
        } else {
            out.push(point(&r, now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Value::{Gauge, Int};

    #[test]
    fn offsets_in_nanoseconds_or_microseconds_and_the_rest_in_their_units() {
        let r = Reading {
            state: 0,
            status: 0x2001, // STA_PLL | STA_NANO
            offset: -250_000,
            freq: 65_536 * 12,
            maxerror: 16_000,
            esterror: 500,
            constant: 7,
            tai: 37,
            tick: 10_000,
            ..Reading::default()
        };
        let p = point(&r, 1);
        assert_eq!(p.field("sync_status"), Some(Int(1)));
        assert_eq!(p.field("offset_seconds"), Some(Gauge(-0.000_25)));
        assert_eq!(p.field("frequency_ppm"), Some(Gauge(12.0)));
        assert_eq!(p.field("maxerror_seconds"), Some(Gauge(0.016)));
        assert_eq!(p.field("tai_offset_seconds"), Some(Int(37)));
        let micro = point(&Reading { status: 1, ..r }, 1);
        assert_eq!(micro.field("offset_seconds"), Some(Gauge(-0.25)));
    }

    #[test]
    fn node_exporter_every_series_in_its_units() {
        let r = Reading {
            status: 0x2001,
            offset: 1_500_000,
            freq: 65_536 * 2,
            tick: 10_000,
            jitcnt: 4,
            tai: 37,
            ..Reading::default()
        };
        let mut out = Vec::new();
        node_points(&r, 1, &mut out);
        assert_eq!(
            crate::collect::testutil::series_count(&out),
            NODE_HELP.len()
        );
        assert_eq!(out.len(), 1, "one point");
        let get = |n: &str| crate::collect::testutil::series(&out, n, &[]);
        assert_eq!(get("node_timex_offset_seconds"), Some(Gauge(0.0015)));
        assert_eq!(
            get("node_timex_frequency_adjustment_ratio"),
            Some(Gauge(1.000_002))
        );
        assert_eq!(get("node_timex_tick_seconds"), Some(Gauge(0.01)));
        assert_eq!(
            get("node_timex_pps_jitter_total"),
            Some(crate::point::Value::Counter(4))
        );
        assert_eq!(get("node_timex_sync_status"), Some(Int(1)));
    }

    #[test]
    fn unsync_bit_or_time_error_is_not_synchronised() {
        let unsync = Reading {
            status: STA_UNSYNC,
            ..Reading::default()
        };
        assert_eq!(point(&unsync, 1).field("sync_status"), Some(Int(0)));
        let error = Reading {
            state: TIME_ERROR,
            ..Reading::default()
        };
        assert_eq!(point(&error, 1).field("sync_status"), Some(Int(0)));
    }

    #[test]
    fn the_running_kernel_answers() {
        let mut out = Vec::new();
        let mut files = Files::new(crate::host::HostPaths::default());
        Timex { node: false }
            .collect(&mut files, 1, &mut out)
            .unwrap();
        assert!(matches!(out[0].field("sync_status"), Some(Int(0 | 1))));
    }
}
