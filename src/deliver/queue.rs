//! The queue between collection and the shipper. With a spool
//! (`PROCSHIP_SPOOL_DIR`) every batch is written to disk first and the
//! shipper reads it back from there, oldest first; the memory part then only
//! holds batches while spool writes fail (full disk, I/O error), and they
//! move to the spool, in order, once it works again (retried every minute).
//! Without a spool, memory is all there is: bounded in encoded bytes
//! (`PROCSHIP_QUEUE_MAX_BYTES`), dropping the oldest batches first and
//! counting their points, so collection never blocks on the network.
//! Closing it (shutdown) gives the shipper a deadline.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Values, Var, parse_bytes};
use crate::deliver::spool::{Pending, Pos, Spool};
use crate::encode::Encoded;
use crate::stats::{DropReason, Stats};

pub const VARS: &[Var] = &[Var::new(
    "QUEUE_MAX_BYTES",
    "8MiB",
    "memory queue bound (encoded bytes); when full the oldest batch is dropped",
)];

/// `PROCSHIP_QUEUE_MAX_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub max_bytes: usize,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let max_bytes = v.get("QUEUE_MAX_BYTES", |s| {
            parse_bytes(s).filter(|n| *n >= 64 * 1024).ok_or_else(|| {
                "a size of at least 64KiB, such as 8MiB, 512KiB or 1048576 (bytes)".to_string()
            })
        })?;
        Ok(Options { max_bytes })
    }
}

/// How long the queue stays memory-only after a spool write failed.
const SPOOL_RETRY: Duration = Duration::from_secs(60);

struct Inner {
    items: VecDeque<Encoded>,
    bytes: usize,
    /// Set on shutdown: deliver what is queued until then.
    deadline: Option<Instant>,
    /// True while an overflow episode is going on (logged once per episode).
    overflowing: bool,
    spool: Option<Spool>,
    /// Set while spool writes fail: memory only until then.
    spool_retry: Option<Instant>,
}

pub struct Queue {
    inner: Mutex<Inner>,
    cv: Condvar,
    max_bytes: usize,
    stats: Arc<Stats>,
}

/// A batch handed to the shipper, and where it lies in the spool (if it
/// does): the spool keeps it until `done`.
#[derive(Debug)]
pub struct Queued {
    pub batch: Encoded,
    pub spooled: Option<Pos>,
}

/// What the queue holds: batches and bytes in memory, and the spool's pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub batches: usize,
    pub bytes: usize,
    pub spool: Option<Pending>,
}

pub enum Pop {
    Batch(Queued),
    /// Closed and empty, or past the shutdown deadline.
    Done,
}

impl Inner {
    /// Writes `e` to the spool, after whatever waits in memory (so order
    /// holds). False when there is no spool or it cannot take writes now.
    fn spool_write(&mut self, e: &Encoded, force: bool) -> bool {
        let Some(spool) = self.spool.as_mut() else {
            return false;
        };
        if !force && self.spool_retry.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let mut result = Ok(());
        while let Some(m) = self.items.front() {
            result = spool.append(m);
            if result.is_err() {
                break;
            }
            tracing::debug!(seq = m.seq, points = m.points, "spool: appended");
            self.bytes -= m.size();
            self.items.pop_front();
        }
        let result = result.and_then(|_| spool.append(e));
        match result {
            Ok(()) => {
                tracing::debug!(seq = e.seq, points = e.points, "spool: appended");
                if self.spool_retry.take().is_some() {
                    tracing::info!(dir = %spool.dir().display(), "spool: writable again; batches go to disk as before");
                }
                true
            }
            Err(err) => {
                if self.spool_retry.is_none() {
                    tracing::error!(
                        dir = %spool.dir().display(),
                        "spool: cannot write ({err}); batches are kept in memory (PROCSHIP_QUEUE_MAX_BYTES) and the spool is tried again every minute"
                    );
                }
                self.spool_retry = Some(Instant::now() + SPOOL_RETRY);
                false
            }
        }
    }
}

impl Queue {
    pub fn new(max_bytes: usize, stats: Arc<Stats>, spool: Option<Spool>) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                deadline: None,
                overflowing: false,
                spool,
                spool_retry: None,
            }),
            cv: Condvar::new(),
            max_bytes,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code holding this lock can panic halfway through an update.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a batch: to the spool if there is one that works, otherwise to
    /// memory, dropping the oldest there while it would not fit. A batch
    /// larger than the whole bound is still kept, alone.
    pub fn push(&self, e: Encoded) {
        let mut q = self.lock();
        if q.spool_write(&e, false) {
            self.cv.notify_all();
            return;
        }
        let mut dropped = (0u64, 0u64);
        while q.bytes + e.size() > self.max_bytes {
            let Some(old) = q.items.pop_front() else {
                break;
            };
            q.bytes -= old.size();
            self.stats.drop_points(DropReason::QueueFull, old.points);
            dropped.0 += 1;
            dropped.1 += old.points;
        }
        if dropped.0 > 0 && !q.overflowing {
            tracing::error!(
                batches = dropped.0,
                points = dropped.1,
                max_bytes = self.max_bytes,
                "queue full: dropping the oldest batches (raise PROCSHIP_QUEUE_MAX_BYTES, or set PROCSHIP_SPOOL_DIR, to hold a longer outage)"
            );
            q.overflowing = true;
        } else if dropped.0 == 0 && q.overflowing && q.bytes + e.size() <= self.max_bytes / 2 {
            q.overflowing = false;
        }
        q.bytes += e.size();
        q.items.push_back(e);
        self.cv.notify_all();
    }

    /// Waits for the next batch, spooled ones first (they are older);
    /// `Done` once closed and empty or past the deadline.
    pub fn pop(&self) -> Pop {
        let mut q = self.lock();
        loop {
            if q.deadline.is_some_and(|d| Instant::now() >= d) {
                return Pop::Done;
            }
            if let Some((batch, pos)) = q.spool.as_mut().and_then(Spool::read_next) {
                return Pop::Batch(Queued {
                    batch,
                    spooled: Some(pos),
                });
            }
            if let Some(batch) = q.items.pop_front() {
                q.bytes -= batch.size();
                return Pop::Batch(Queued {
                    batch,
                    spooled: None,
                });
            }
            if q.deadline.is_some() {
                return Pop::Done;
            }
            q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The shipper is finished with a batch (delivered, or dropped for a
    /// counted reason): the spool forgets it.
    pub fn done(&self, item: &Queued) {
        let Some(pos) = item.spooled else { return };
        let mut q = self.lock();
        if let Some(spool) = q.spool.as_mut()
            && let Err(e) = spool.ack(pos)
        {
            tracing::warn!(
                seq = item.batch.seq,
                "spool: cannot record the delivery ({e}); this batch may be sent again after a restart"
            );
        }
    }

    /// At shutdown, a batch the shipper could not deliver in time: kept in
    /// the spool for the next run if possible, otherwise dropped.
    pub fn abandon(&self, item: Queued) {
        if item.spooled.is_some() {
            return;
        }
        if !self.lock().spool_write(&item.batch, true) {
            self.stats
                .drop_points(DropReason::Shutdown, item.batch.points);
        }
    }

    /// At the very end: what is still in memory goes to the spool, or is
    /// dropped; the spool is synced. Returns the points the spool holds
    /// for the next run.
    pub fn finish(&self) -> u64 {
        let mut q = self.lock();
        let left: Vec<Encoded> = q.items.drain(..).collect();
        q.bytes = 0;
        for e in left {
            if !q.spool_write(&e, true) {
                self.stats.drop_points(DropReason::Shutdown, e.points);
            }
        }
        let Some(spool) = q.spool.as_mut() else {
            return 0;
        };
        if let Err(e) = spool.sync() {
            tracing::error!("spool: cannot sync at exit: {e}");
        }
        spool.pending().points
    }

    /// Starts shutdown: what is queued may be delivered until `deadline`.
    pub fn close(&self, deadline: Instant) {
        self.lock().deadline = Some(deadline);
        self.cv.notify_all();
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// Sleeps up to `d`, waking early when the queue is closed. Returns false
    /// when the shutdown deadline comes before `d` is over.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut q = self.lock();
        loop {
            let now = Instant::now();
            let stop = q.deadline.map_or(until, |dl| dl.min(until));
            if now >= stop {
                return q.deadline.is_none_or(|dl| until <= dl);
            }
            q = self
                .cv
                .wait_timeout(q, stop - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What is waiting, in memory and in the spool.
    pub fn depth(&self) -> Depth {
        let q = self.lock();
        Depth {
            batches: q.items.len(),
            bytes: q.bytes,
            spool: q.spool.as_ref().map(Spool::pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::spool::{Options, SyncMode};
    use crate::encode::{Compression, Format};

    fn batch(seq: u64, len: usize) -> Encoded {
        Encoded {
            seq,
            points: 10,
            oldest: 0,
            format: Format::Json,
            compression: Compression::None,
            body: vec![0; len],
        }
    }

    fn seq_of(p: Pop) -> Option<(u64, bool)> {
        match p {
            Pop::Batch(q) => Some((q.batch.seq, q.spooled.is_some())),
            Pop::Done => None,
        }
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let stats = Arc::new(Stats::default());
        let one = batch(0, 1000).size();
        let q = Queue::new(one * 3, stats.clone(), None);
        for seq in 1..=5 {
            q.push(batch(seq, 1000));
        }
        assert_eq!((q.depth().batches, q.depth().bytes), (3, one * 3));
        assert_eq!(stats.dropped(DropReason::QueueFull), 20);
        q.close(Instant::now() + Duration::from_secs(60));
        let seqs: Vec<u64> = std::iter::from_fn(|| seq_of(q.pop()).map(|s| s.0)).collect();
        assert_eq!(seqs, [3, 4, 5]);
    }

    #[test]
    fn oversize_batch_is_kept_alone() {
        let q = Queue::new(100, Arc::new(Stats::default()), None);
        q.push(batch(1, 10));
        q.push(batch(2, 500));
        assert_eq!(q.depth().batches, 1);
        assert_eq!(seq_of(q.pop()), Some((2, false)));
    }

    #[test]
    fn failing_spool_falls_back_to_memory_in_order() {
        let dir = crate::collect::testutil::tempdir();
        let stats = Arc::new(Stats::default());
        let cfg = Options {
            dir: dir.clone(),
            max_bytes: 128 << 10,
            sync: SyncMode::Batch,
        };
        let (spool, _) = Spool::open(&cfg, stats.clone()).unwrap();
        let q = Queue::new(1 << 20, stats.clone(), Some(spool));
        // Fills the first 16 KiB segment: the next batch needs a new one.
        q.push(batch(1, 20_000));
        let Pop::Batch(first) = q.pop() else { panic!() };
        assert!(first.spooled.is_some());
        q.done(&first);
        std::fs::remove_dir_all(&dir).unwrap();
        q.push(batch(2, 100));
        q.push(batch(3, 100));
        assert_eq!(q.depth().batches, 2, "kept in memory while the spool fails");
        assert_eq!(seq_of(q.pop()), Some((2, false)));
        std::fs::create_dir_all(&dir).unwrap();
        q.push(batch(4, 100));
        q.push(batch(5, 100));
        assert_eq!(q.depth().batches, 3, "not retried before a minute");
        assert_eq!(q.finish(), 30, "at exit memory goes to the spool");
        assert_eq!(stats.dropped_total(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn close_ends_pop_and_sleep() {
        let q = Arc::new(Queue::new(1 << 20, Arc::new(Stats::default()), None));
        q.push(batch(1, 1));
        q.close(Instant::now() + Duration::from_secs(60));
        assert!(
            matches!(q.pop(), Pop::Batch(_)),
            "queued batches are still delivered"
        );
        assert!(matches!(q.pop(), Pop::Done));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.sleep(Duration::from_millis(50)));
        assert!(
            t.join().unwrap(),
            "a sleep shorter than the deadline completes"
        );
        q.close(Instant::now() + Duration::from_millis(50));
        let t0 = Instant::now();
        assert!(!q.sleep(Duration::from_secs(30)));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
