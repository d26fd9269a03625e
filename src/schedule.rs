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

/// This host's stable place within a period: a hash of its identity (its
/// host name) spread uniformly over [0, period). A fleet started together
/// then ticks and flushes spread over the whole interval instead of in
/// lock-step, each host at the same offset after every restart, as
/// Prometheus spreads its scrape targets by a hash of the target.
pub fn phase(identity: &str, period: Duration) -> Duration {
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's last byte reaches only its middle bits, and the phase is read
    // from the top ones: web-01, web-02, … would share a phase. The
    // finalizer of MurmurHash3 (fmix64) spreads every bit over all of them.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    period.mul_f64(h as f64 / (u64::MAX as f64 + 1.0))
}

/// The first instant at or after `now` whose wall-clock time (`wall_ns`
/// at `now`) is `phase` past a multiple of `period`.
pub fn aligned(wall_ns: i64, now: Instant, period: Duration, phase: Duration) -> Instant {
    let period_ns = i128::try_from(period.as_nanos())
        .unwrap_or(i128::MAX)
        .max(1);
    let phase_ns = i128::try_from(phase.as_nanos()).unwrap_or(0) % period_ns;
    let offset = (i128::from(wall_ns) - phase_ns).rem_euclid(period_ns);
    let wait = if offset == 0 { 0 } else { period_ns - offset };
    now + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
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

    #[test]
    fn phases_are_stable_and_spread_over_the_period() {
        let period = Duration::from_secs(10);
        assert_eq!(phase("web-1", period), phase("web-1", period), "stable");
        assert!(phase("web-1", period) < period);
        // 1,000 hosts: every tenth of the period holds 100 ± 30 of them,
        // also when the names differ only in their last characters.
        let names: [fn(u32) -> String; 3] = [
            |i| format!("host-{i:04}.example.net"),
            |i| format!("sim-{i:04}"),
            |i| format!("web{i}"),
        ];
        for name in names {
            let mut buckets = [0u32; 10];
            for i in 0..1000 {
                let p = phase(&name(i), period);
                buckets[(p.as_millis() / 1000) as usize] += 1;
            }
            assert!(
                buckets.iter().all(|n| (70..=130).contains(n)),
                "{}…: {buckets:?}",
                name(0)
            );
        }
        // Neighbours by name are not neighbours in time: the 20 hosts
        // sim-0000…sim-0019 leave no tenth of the period with more than 6.
        let mut tenths = [0u32; 10];
        for i in 0..20 {
            tenths[(phase(&format!("sim-{i:04}"), period).as_millis() / 1000) as usize] += 1;
        }
        assert!(tenths.iter().all(|n| *n <= 6), "{tenths:?}");
    }

    #[test]
    fn aligned_is_the_next_wall_clock_moment_of_the_phase() {
        let now = Instant::now();
        let s = 1_000_000_000i64;
        // Wall time 103.25 s, period 10 s, phase 4 s: next is 104 s.
        let at = aligned(
            103 * s + s / 4,
            now,
            Duration::from_secs(10),
            Duration::from_secs(4),
        );
        assert_eq!(at - now, MS(750));
        // Exactly on it: now.
        assert_eq!(
            aligned(
                104 * s,
                now,
                Duration::from_secs(10),
                Duration::from_secs(4)
            ),
            now
        );
        // Just past it: a whole period less a nanosecond.
        let at = aligned(
            104 * s + 1,
            now,
            Duration::from_secs(10),
            Duration::from_secs(4),
        );
        assert_eq!(at - now, Duration::from_nanos(10 * s as u64 - 1));
    }
}
