//! The bounded memory queue between collection and the shipper. It is
//! bounded in encoded bytes (`PROCSHIP_QUEUE_MAX_BYTES`); a push that would
//! exceed the bound drops the oldest batches first and counts their points,
//! so collection never blocks on the network. Closing it (shutdown) gives the
//! shipper a deadline.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::encode::Encoded;
use crate::stats::{Drop, Stats};

struct Inner {
    items: VecDeque<Encoded>,
    bytes: usize,
    /// Set on shutdown: deliver what is queued until then.
    deadline: Option<Instant>,
    /// True while an overflow episode is going on (logged once per episode).
    overflowing: bool,
}

pub struct Queue {
    inner: Mutex<Inner>,
    cv: Condvar,
    max_bytes: usize,
    stats: Arc<Stats>,
}

pub enum Pop {
    Batch(Encoded),
    /// Closed and empty, or past the shutdown deadline.
    Done,
}

impl Queue {
    pub fn new(max_bytes: usize, stats: Arc<Stats>) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                deadline: None,
                overflowing: false,
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

    /// Adds a batch, dropping the oldest ones while it would not fit. A
    /// batch larger than the whole bound is still kept, alone.
    pub fn push(&self, e: Encoded) {
        let mut q = self.lock();
        let mut dropped = (0u64, 0u64);
        while q.bytes + e.size() > self.max_bytes {
            let Some(old) = q.items.pop_front() else {
                break;
            };
            q.bytes -= old.size();
            self.stats.drop_points(Drop::QueueFull, old.points);
            dropped.0 += 1;
            dropped.1 += old.points;
        }
        if dropped.0 > 0 && !q.overflowing {
            tracing::error!(
                batches = dropped.0,
                points = dropped.1,
                max_bytes = self.max_bytes,
                "queue full: dropping the oldest batches (raise PROCSHIP_QUEUE_MAX_BYTES to hold a longer outage)"
            );
            q.overflowing = true;
        } else if dropped.0 == 0 && q.overflowing && q.bytes + e.size() <= self.max_bytes / 2 {
            q.overflowing = false;
        }
        q.bytes += e.size();
        q.items.push_back(e);
        self.cv.notify_all();
    }

    /// Waits for the next batch; `Done` once closed and empty or past the deadline.
    pub fn pop(&self) -> Pop {
        let mut q = self.lock();
        loop {
            if q.deadline.is_some_and(|d| Instant::now() >= d) {
                return Pop::Done;
            }
            if let Some(e) = q.items.pop_front() {
                q.bytes -= e.size();
                return Pop::Batch(e);
            }
            if q.deadline.is_some() {
                return Pop::Done;
            }
            q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
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

    /// Removes everything still queued (at shutdown, to count it).
    pub fn drain(&self) -> Vec<Encoded> {
        let mut q = self.lock();
        q.bytes = 0;
        q.items.drain(..).collect()
    }

    /// (batches, bytes) waiting.
    pub fn depth(&self) -> (usize, usize) {
        let q = self.lock();
        (q.items.len(), q.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64, len: usize) -> Encoded {
        Encoded {
            seq,
            points: 10,
            oldest: 0,
            body: vec![0; len],
        }
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let stats = Arc::new(Stats::default());
        let one = batch(0, 1000).size();
        let q = Queue::new(one * 3, stats.clone());
        for seq in 1..=5 {
            q.push(batch(seq, 1000));
        }
        assert_eq!(q.depth(), (3, one * 3));
        assert_eq!(stats.dropped(Drop::QueueFull), 20);
        let seqs: Vec<u64> = q.drain().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
    }

    #[test]
    fn oversize_batch_is_kept_alone() {
        let q = Queue::new(100, Arc::new(Stats::default()));
        q.push(batch(1, 10));
        q.push(batch(2, 500));
        assert_eq!(q.depth().0, 1);
        assert!(matches!(q.pop(), Pop::Batch(e) if e.seq == 2));
    }

    #[test]
    fn close_ends_pop_and_sleep() {
        let q = Arc::new(Queue::new(1 << 20, Arc::new(Stats::default())));
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
