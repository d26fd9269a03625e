//! The agent's own counters, shared by the collection loop and the shipper:
//! every point collected ends up sent or dropped with a reason, so
//! `collected = sent + dropped + (still queued)` at any time and
//! `collected = sent + dropped` after shutdown; with a spool,
//! `collected + recovered = sent + dropped + spooled` (what the spool still
//! holds for the next run).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    pub cycles: AtomicU64,
    pub skipped_ticks: AtomicU64,
    pub collector_errors: AtomicU64,
    pub collected: AtomicU64,
    pub sent_points: AtomicU64,
    pub sent_batches: AtomicU64,
    pub retries: AtomicU64,
    /// Attempts that did not deliver: retried ones and permanent rejections.
    pub send_failures: AtomicU64,
    /// When the last batch was delivered (ns since the epoch; 0: never).
    pub last_success_ns: AtomicI64,
    /// Since when the backend refuses the credentials (ns since the epoch; 0: it does not).
    pub refused_since_ns: AtomicI64,
    /// Batches the shipper holds right now (0 or 1).
    pub in_flight: AtomicU64,
    /// The last delivery error, for the status endpoint ("" when none yet).
    pub last_error: Mutex<String>,
    /// Points found pending in the spool at start (collected by an earlier run).
    pub spool_recovered: AtomicU64,
    /// Damaged spool ranges skipped (torn tails, bad checksums).
    pub spool_damaged_ranges: AtomicU64,
    pub dropped: [AtomicU64; DropReason::ALL.len()],
    /// The collector running now, and since when.
    pub collecting: Collecting,
}

/// Which collector runs now and since when: the status endpoint tells a
/// stalled collection (a hung mount, a kernel that does not answer) from a
/// slow one by it.
#[derive(Debug, Default)]
pub struct Collecting {
    /// ns since the epoch; 0: no collector runs.
    since_ns: AtomicI64,
    name: Mutex<&'static str>,
}

impl Collecting {
    pub fn start(&self, name: &'static str, now_ns: i64) {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = name;
        self.since_ns.store(now_ns, Relaxed);
    }

    pub fn done(&self) {
        self.since_ns.store(0, Relaxed);
    }

    /// The collector running and since when, if one is.
    pub fn current(&self) -> Option<(&'static str, i64)> {
        let since = self.since_ns.load(Relaxed);
        (since != 0).then(|| (*self.name.lock().unwrap_or_else(|e| e.into_inner()), since))
    }
}

/// Why points were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The memory queue was full; the oldest batch went.
    QueueFull = 0,
    /// The backend answered with a permanent error (4xx other than 408/429).
    Rejected = 1,
    /// Still undelivered when the shutdown timeout ran out.
    Shutdown = 2,
    /// Writing to stdout failed, or the batch could not be encoded.
    OutputError = 3,
    /// Older than `PROCSHIP_MAX_BATCH_AGE`.
    TooOld = 4,
    /// The spool's disk budget was full; its oldest segment went.
    SpoolFull = 5,
    /// Spooled, but the spool file could not be read back.
    SpoolDamaged = 6,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::Shutdown,
        DropReason::OutputError,
        DropReason::TooOld,
        DropReason::SpoolFull,
        DropReason::SpoolDamaged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
            DropReason::OutputError => "output_error",
            DropReason::TooOld => "too_old",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolDamaged => "spool_damaged",
        }
    }

    /// The self-telemetry field counting this reason: `dropped_<name>`.
    pub fn field(self) -> &'static str {
        match self {
            DropReason::QueueFull => "dropped_queue_full",
            DropReason::Rejected => "dropped_rejected",
            DropReason::Shutdown => "dropped_shutdown",
            DropReason::OutputError => "dropped_output_error",
            DropReason::TooOld => "dropped_too_old",
            DropReason::SpoolFull => "dropped_spool_full",
            DropReason::SpoolDamaged => "dropped_spool_damaged",
        }
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn drop_points(&self, why: DropReason, n: u64) {
        self.dropped[why as usize].fetch_add(n, Relaxed);
    }

    pub fn dropped(&self, why: DropReason) -> u64 {
        self.dropped[why as usize].load(Relaxed)
    }

    /// `reason=n` for every reason, space-separated (the final log line).
    pub fn dropped_by_reason(&self) -> String {
        DropReason::ALL
            .iter()
            .map(|r| format!("{}={}", r.name(), self.dropped(*r)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|d| self.dropped(*d)).sum()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn set_last_error(&self, msg: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = msg;
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn last_success_ns(&self) -> i64 {
        self.last_success_ns.load(Relaxed)
    }

    pub fn refused_since_ns(&self) -> i64 {
        self.refused_since_ns.load(Relaxed)
    }

    pub fn set_refused_since(&self, ns: i64) {
        self.refused_since_ns.store(ns, Relaxed);
    }
}
