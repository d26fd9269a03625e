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

use super::{CollectError, Collector, Entry, Files};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("timex", |_| Box::new(Timex));

pub struct Timex;

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
    })
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
        out.push(point(&r, now));
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
        Timex.collect(&mut files, 1, &mut out).unwrap();
        assert!(matches!(out[0].field("sync_status"), Some(Int(0 | 1))));
    }
}
