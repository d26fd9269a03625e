//! The queue between collection and the shipper: the collection thread
//! pushes, the shipper pops, oldest first, and acknowledges what it is done
//! with. With a spool (`PROCSHIP_SPOOL_DIR`) every batch is written through
//! to disk at push and the shipper reads it back from there; the memory part
//! then only holds batches while spool writes fail (full disk, I/O error),
//! and they move to the spool, in order, once it works again (retried every
//! minute). Without a spool, memory is all there is: bounded in encoded
//! bytes (`PROCSHIP_QUEUE_MAX_BYTES`), dropping the oldest batches first and
//! counting their points, so collection never blocks on the network.
//!
//! Two locks: one for the memory part, one for the spool (which appends and
//! fsyncs under it). What waits is published in atomics after every change,
//! so `depth()` (the status endpoint, the agent's own point) takes neither
//! lock and never waits behind a disk sync. Closing the queue (shutdown)
//! means no more pushes: `pop` then returns what is left, then `None`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
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

/// The memory part.
#[derive(Default)]
struct Mem {
    items: VecDeque<Encoded>,
    bytes: usize,
    /// No more pushes: `pop` drains what is left.
    closed: bool,
    /// True while an overflow episode is going on (logged once per episode).
    overflowing: bool,
    /// Counts pushes, so a waiting `pop` sees one made while it looked at the spool.
    pushes: u64,
}

/// The disk part: the spool, and whether it takes writes now.
struct Store {
    spool: Spool,
    /// Set while spool writes fail: memory only until then.
    retry_at: Option<Instant>,
}

/// What waits, published after every change and read without a lock.
#[derive(Default)]
struct Gauge {
    batches: AtomicUsize,
    bytes: AtomicUsize,
    spool_batches: AtomicU64,
    spool_points: AtomicU64,
    spool_bytes: AtomicU64,
    spool_disk_bytes: AtomicU64,
}

pub struct Queue {
    mem: Mutex<Mem>,
    cv: Condvar,
    store: Option<Mutex<Store>>,
    gauge: Gauge,
    max_bytes: usize,
    stats: Arc<Stats>,
    /// Bodies of delivered batches, for the encoder to write the next ones
    /// into (`recycle`, `spare_body`): a steady cycle allocates none.
    bodies: Mutex<Vec<Vec<u8>>>,
}

/// At most this many delivered bodies wait for reuse.
const SPARE_BODIES: usize = 2;

/// A batch handed to the shipper, and where it lies in the spool (if it
/// does): the spool keeps it until it is acknowledged.
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code holding these locks can panic halfway through an update.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    pub fn new(max_bytes: usize, stats: Arc<Stats>, spool: Option<Spool>) -> Self {
        let q = Queue {
            mem: Mutex::new(Mem::default()),
            cv: Condvar::new(),
            store: spool.map(|spool| {
                Mutex::new(Store {
                    spool,
                    retry_at: None,
                })
            }),
            gauge: Gauge::default(),
            max_bytes,
            stats,
            bodies: Mutex::new(Vec::new()),
        };
        if let Some(store) = &q.store {
            q.publish_spool(&lock(store).spool);
        }
        q
    }

    /// Adds a batch: to the spool if there is one that works, otherwise to
    /// memory, dropping the oldest there while it would not fit. A batch
    /// larger than the whole bound is still kept, alone.
    pub fn push(&self, e: Encoded) {
        if let Some(store) = &self.store
            && self.write_through(&mut lock(store), &e, false)
        {
            self.signal(lock(&self.mem));
            return;
        }
        self.push_memory(e);
    }

    fn push_memory(&self, e: Encoded) {
        let mut m = lock(&self.mem);
        let (mut batches, mut points) = (0u64, 0u64);
        while m.bytes + e.size() > self.max_bytes {
            let Some(old) = m.items.pop_front() else {
                break;
            };
            m.bytes -= old.size();
            self.stats.drop_points(DropReason::QueueFull, old.points);
            batches += 1;
            points += old.points;
        }
        if batches > 0 && !m.overflowing {
            tracing::error!(
                batches,
                points,
                max_bytes = self.max_bytes,
                "queue full: dropping the oldest batches (raise PROCSHIP_QUEUE_MAX_BYTES, or set PROCSHIP_SPOOL_DIR, to hold a longer outage)"
            );
            m.overflowing = true;
        } else if batches == 0 && m.overflowing && m.bytes + e.size() <= self.max_bytes / 2 {
            m.overflowing = false;
        }
        m.bytes += e.size();
        m.items.push_back(e);
        self.publish_memory(&m);
        self.signal(m);
    }

    /// Wakes a waiting `pop`.
    fn signal(&self, mut m: MutexGuard<'_, Mem>) {
        m.pushes += 1;
        drop(m);
        self.cv.notify_all();
    }

    /// Writes `e` to the spool, after whatever waits in memory (so order
    /// holds). False when the spool cannot take writes now; `force` tries
    /// even then (shutdown).
    fn write_through(&self, st: &mut Store, e: &Encoded, force: bool) -> bool {
        let now = Instant::now();
        if !force && st.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        let result = self.move_backlog(st).and_then(|()| st.spool.append(e));
        self.publish_spool(&st.spool);
        match result {
            Ok(()) => {
                tracing::debug!(seq = e.seq, points = e.points, "spool: appended");
                if st.retry_at.take().is_some() {
                    tracing::info!(dir = %st.spool.dir().display(), "spool: writable again; batches go to disk as before");
                }
                true
            }
            Err(err) => {
                if st.retry_at.is_none() {
                    tracing::error!(
                        dir = %st.spool.dir().display(),
                        "spool: cannot write ({err}); batches are kept in memory (PROCSHIP_QUEUE_MAX_BYTES) and the spool is tried again every minute"
                    );
                }
                st.retry_at = Some(now + SPOOL_RETRY);
                false
            }
        }
    }

    /// Moves what waits in memory (while the spool failed) to the spool, oldest first.
    fn move_backlog(&self, st: &mut Store) -> std::io::Result<()> {
        loop {
            let Some(old) = self.pop_memory() else {
                return Ok(());
            };
            if let Err(e) = st.spool.append(&old) {
                let mut m = lock(&self.mem);
                m.bytes += old.size();
                m.items.push_front(old);
                self.publish_memory(&m);
                return Err(e);
            }
            tracing::debug!(seq = old.seq, points = old.points, "spool: appended");
        }
    }

    fn pop_memory(&self) -> Option<Encoded> {
        let mut m = lock(&self.mem);
        let e = m.items.pop_front()?;
        m.bytes -= e.size();
        self.publish_memory(&m);
        Some(e)
    }

    /// Waits for the next batch, spooled ones first (they are older);
    /// `None` once closed and empty.
    pub fn pop(&self) -> Option<Queued> {
        loop {
            let ticket = lock(&self.mem).pushes;
            if let Some(store) = &self.store {
                let mut st = lock(store);
                if let Some((batch, pos)) = st.spool.read_next() {
                    self.publish_spool(&st.spool);
                    return Some(Queued {
                        batch,
                        spooled: Some(pos),
                    });
                }
            }
            if let Some(batch) = self.pop_memory() {
                return Some(Queued {
                    batch,
                    spooled: None,
                });
            }
            let mut m = lock(&self.mem);
            if m.closed && m.pushes == ticket {
                // Both parts were found empty after the last push.
                return None;
            }
            while m.pushes == ticket && !m.closed {
                m = self.cv.wait(m).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// The next batch if one waits now (no waiting) and it can join `like`
    /// in one request: from the same part of the queue (spool or memory),
    /// of the same format and compression, at most `room` bytes, and
    /// `fit` (the shipper's own test, such as its age limit).
    pub fn pop_like(
        &self,
        like: &Queued,
        room: usize,
        fit: impl Fn(&Encoded) -> bool,
    ) -> Option<Queued> {
        let kind = (like.batch.format, like.batch.compression);
        let joins = |e: &Encoded, bytes: usize| {
            (e.format, e.compression) == kind && bytes <= room && fit(e)
        };
        if like.spooled.is_some() {
            let mut st = lock(self.store.as_ref()?);
            let (batch, pos) = st
                .spool
                .read_next_if(|e, bytes| joins(e, usize::try_from(bytes).unwrap_or(usize::MAX)))?;
            self.publish_spool(&st.spool);
            return Some(Queued {
                batch,
                spooled: Some(pos),
            });
        }
        let mut m = lock(&self.mem);
        let next = m.items.front()?;
        if !joins(next, next.size()) {
            return None;
        }
        let batch = m.items.pop_front()?;
        m.bytes -= batch.size();
        self.publish_memory(&m);
        Some(Queued {
            batch,
            spooled: None,
        })
    }

    /// The shipper is finished with a batch (delivered, or dropped for a
    /// counted reason): the spool forgets it, and every batch before it.
    pub fn ack(&self, item: &Queued) {
        let (Some(pos), Some(store)) = (item.spooled, &self.store) else {
            return;
        };
        let mut st = lock(store);
        if let Err(e) = st.spool.ack(pos) {
            tracing::warn!(
                seq = item.batch.seq,
                "spool: cannot record the delivery ({e}); this batch may be sent again after a restart"
            );
        }
        self.publish_spool(&st.spool);
    }

    /// A delivered batch's body, kept for `spare_body` (a few at most).
    pub fn recycle(&self, mut body: Vec<u8>) {
        let mut spare = lock(&self.bodies);
        if spare.len() < SPARE_BODIES {
            body.clear();
            spare.push(body);
        }
    }

    /// An empty buffer with the capacity of a delivered body, if one is kept.
    pub fn spare_body(&self) -> Option<Vec<u8>> {
        lock(&self.bodies).pop()
    }

    /// At shutdown, a batch the shipper could not deliver in time: kept in
    /// the spool for the next run if possible, otherwise dropped.
    pub fn abandon(&self, item: Queued) {
        if item.spooled.is_none() {
            self.keep_or_drop(&item.batch);
        }
    }

    fn keep_or_drop(&self, e: &Encoded) {
        let kept = self
            .store
            .as_ref()
            .is_some_and(|store| self.write_through(&mut lock(store), e, true));
        if !kept {
            self.stats.drop_points(DropReason::Shutdown, e.points);
        }
    }

    /// At the very end: what is still in memory goes to the spool, or is
    /// dropped; the spool is synced. Returns the points the spool holds
    /// for the next run.
    pub fn finish(&self) -> u64 {
        while let Some(e) = self.pop_memory() {
            self.keep_or_drop(&e);
        }
        let Some(store) = &self.store else {
            return 0;
        };
        let mut st = lock(store);
        if let Err(e) = st.spool.sync() {
            tracing::error!("spool: cannot sync at exit: {e}");
        }
        self.publish_spool(&st.spool);
        st.spool.pending().points
    }

    /// No more pushes: `pop` returns what is left, then `None`.
    pub fn close(&self) {
        lock(&self.mem).closed = true;
        self.cv.notify_all();
    }

    fn publish_memory(&self, m: &Mem) {
        self.gauge.batches.store(m.items.len(), Relaxed);
        self.gauge.bytes.store(m.bytes, Relaxed);
    }

    fn publish_spool(&self, spool: &Spool) {
        let p = spool.pending();
        self.gauge.spool_batches.store(p.batches, Relaxed);
        self.gauge.spool_points.store(p.points, Relaxed);
        self.gauge.spool_bytes.store(p.bytes, Relaxed);
        self.gauge.spool_disk_bytes.store(p.disk_bytes, Relaxed);
    }

    /// What is waiting, in memory and in the spool (no lock taken).
    pub fn depth(&self) -> Depth {
        let g = &self.gauge;
        Depth {
            batches: g.batches.load(Relaxed),
            bytes: g.bytes.load(Relaxed),
            spool: self.store.as_ref().map(|_| Pending {
                batches: g.spool_batches.load(Relaxed),
                points: g.spool_points.load(Relaxed),
                bytes: g.spool_bytes.load(Relaxed),
                disk_bytes: g.spool_disk_bytes.load(Relaxed),
            }),
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
            born: Default::default(),
            body: vec![0; len],
        }
    }

    /// A queue over a fresh 128 KiB spool: (its directory, the stats, the queue).
    fn spooling() -> (std::path::PathBuf, Arc<Stats>, Queue) {
        let dir = crate::collect::testutil::tempdir();
        let stats = Arc::new(Stats::default());
        let cfg = Options {
            dir: dir.clone(),
            max_bytes: 128 << 10,
            sync: SyncMode::Batch,
        };
        let (spool, _) = Spool::open(&cfg, stats.clone()).unwrap();
        (dir, stats.clone(), Queue::new(1 << 20, stats, Some(spool)))
    }

    fn seq_of(p: Option<Queued>) -> Option<(u64, bool)> {
        p.map(|q| (q.batch.seq, q.spooled.is_some()))
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
        q.close();
        let seqs: Vec<u64> = std::iter::from_fn(|| seq_of(q.pop()).map(|s| s.0)).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(q.depth().batches, 0);
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
        let (dir, stats, q) = spooling();
        // Fills the first 16 KiB segment: the next batch needs a new one.
        q.push(batch(1, 20_000));
        assert_eq!(q.depth().spool.map(|p| p.batches), Some(1));
        let first = q.pop().unwrap();
        assert!(first.spooled.is_some());
        q.ack(&first);
        assert_eq!(q.depth().spool.map(|p| p.batches), Some(0));
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
    fn depth_never_waits_for_the_spool_or_memory_locks() {
        let (dir, _, q) = spooling();
        let q = Arc::new(q);
        q.push(batch(1, 100));
        // Both locks held, as by an append waiting for its fdatasync.
        let store = lock(q.store.as_ref().unwrap());
        let mem = lock(&q.mem);
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        std::thread::spawn(move || tx.send(q2.depth()).unwrap());
        let depth = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("depth() blocked");
        assert_eq!(depth.spool.map(|p| p.batches), Some(1));
        drop((store, mem));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_waiting_pop_wakes_for_a_push_and_for_close() {
        let q = Arc::new(Queue::new(1 << 20, Arc::new(Stats::default()), None));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let first = seq_of(q2.pop());
            (first, seq_of(q2.pop()))
        });
        q.push(batch(7, 1));
        q.close();
        let (first, second) = t.join().unwrap();
        assert_eq!(
            first,
            Some((7, false)),
            "queued batches are still delivered"
        );
        assert_eq!(second, None, "closed and empty");
    }
}
