//! The monotonic ticker and the flush timer. Ticks fall at start + k ×
//! interval on the monotonic clock, so there is no drift however long the
//! agent runs; after a stall (a slow cycle, a suspended VM) the missed ticks
//! are skipped and counted, never run in a burst. Each flush gets a fresh
//! random jitter, and the start gets an optional splay, so a fleet started
//! together does not reach the backend in lock-step. Time is passed in.

use std::time::{Duration, Instant};

use crate::config::{ConfigError, Values, Var, parse_duration, parse_positive_duration};

pub const VARS: &[Var] = &[
    Var::new(
        "INTERVAL",
        "10",
        "collection interval (seconds, fractions allowed, or 500ms/10s/1m)",
    )
    .live(),
    Var::new(
        "JITTER",
        "0",
        "random start-up splay, up to this long, before the first cycle",
    ),
];

/// `PROCSHIP_INTERVAL` and `PROCSHIP_JITTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub interval: Duration,
    pub jitter: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            interval: v.get("INTERVAL", parse_positive_duration)?,
            jitter: v.get("JITTER", parse_duration)?,
        })
    }
}

pub struct Ticker {
    start: Instant,
    interval: Duration,
    /// Index of the next tick.
    next: u64,
}

impl Ticker {
    pub fn new(start: Instant, interval: Duration) -> Self {
        Ticker {
            start,
            interval,
            next: 0,
        }
    }

    fn at(&self, k: u64) -> Instant {
        let ns = self.interval.as_nanos().saturating_mul(u128::from(k));
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    pub fn deadline(&self) -> Instant {
        self.at(self.next)
    }

    /// Takes the tick that is due at `now` (`now >= deadline()`); returns how
    /// many earlier ticks were missed and are skipped.
    pub fn fire(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let due = u64::try_from(elapsed / self.interval.as_nanos().max(1)).unwrap_or(u64::MAX);
        let skipped = due.saturating_sub(self.next);
        self.next = due.max(self.next) + 1;
        skipped
    }
}

/// When pending points are cut into a batch: every `every`, on a grid from
/// the start (no drift), each time plus a fresh uniform jitter in [0, jitter].
pub struct FlushTimer {
    base: Instant,
    every: Duration,
    jitter: Duration,
    deadline: Instant,
}

impl FlushTimer {
    /// The first flush is due at `start`: the first cycle's points go out at once.
    pub fn new(start: Instant, every: Duration, jitter: Duration) -> Self {
        FlushTimer {
            base: start,
            every,
            jitter,
            deadline: start,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// After a flush at `now`: the next grid point after `now`, plus jitter
    /// drawn from `rand01` (a number in [0, 1)).
    pub fn flushed(&mut self, now: Instant, rand01: f64) {
        while self.base <= now {
            self.base += self.every;
        }
        self.deadline = self.base + self.jitter.mul_f64(rand01);
    }
}

/// The start-up splay: uniform in [0, max].
pub fn splay(max: Duration, rand01: f64) -> Duration {
    max.mul_f64(rand01)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ticks_do_not_drift() {
        let t0 = Instant::now();
        let mut t = Ticker::new(t0, MS(100));
        assert_eq!(t.deadline(), t0);
        // Fire each tick late by 7 ms: deadlines stay on the grid.
        for k in 0..1000u64 {
            let now = t.deadline() + MS(7);
            assert_eq!(t.fire(now), 0);
            assert_eq!(t.deadline(), t0 + MS(100) * (k as u32 + 1));
        }
    }

    #[test]
    fn a_stall_skips_ticks_without_a_burst() {
        let t0 = Instant::now();
        let mut t = Ticker::new(t0, MS(100));
        t.fire(t0);
        // The cycle took 350 ms: ticks at 100, 200, 300 are missed.
        assert_eq!(
            t.fire(t0 + MS(350)),
            2,
            "ticks 1 and 2 skipped, tick 3 runs now"
        );
        assert_eq!(t.deadline(), t0 + MS(400));
    }

    #[test]
    fn flush_grid_with_jitter() {
        let t0 = Instant::now();
        let mut f = FlushTimer::new(t0, MS(1000), MS(200));
        assert_eq!(f.deadline(), t0);
        f.flushed(t0 + MS(5), 0.5);
        assert_eq!(f.deadline(), t0 + MS(1100));
        f.flushed(t0 + MS(1100), 0.0);
        assert_eq!(f.deadline(), t0 + MS(2000));
        // A long stall: the next flush is on the grid after now, not a burst.
        f.flushed(t0 + MS(9500), 0.25);
        assert_eq!(f.deadline(), t0 + MS(10050));
        assert_eq!(splay(MS(1000), 0.3), MS(300));
    }
}
