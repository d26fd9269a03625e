//! The agent's main loop: tick, collect, batch, encode, enqueue; flush on
//! the flush timer; a summary line every minute; and on a stop request, a
//! bounded flush and a final account of every point. Also `--once`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::collect::{self, Context, Runner};
use crate::config::{ConfigError, PREFIX};
use crate::deliver::batch::Batcher;
use crate::deliver::queue::Queue;
use crate::deliver::ship::{self, Shipper};
use crate::deliver::spool::Spool;
use crate::encode::{Encoder, Identity};
use crate::host::Facts;
use crate::operate::footprint::release_start_up_pages;
use crate::operate::log::{self, SetLevel};
use crate::operate::notify::Notifier;
use crate::operate::status;
use crate::operate::telemetry::{self, SelfStats};
use crate::point::{Batch, Point, now_ns};
use crate::schedule::{self, FlushTimer, Ticker, aligned, phase, splay};
use crate::settings::{Plan, Settings};
use crate::stats::{DropReason, Stats};

/// Messages from the signal thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stop,
    Reload,
}

const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// How often the TLS files are looked at for a renewal on disk.
const TLS_CHECK_EVERY: Duration = Duration::from_secs(60);
/// How often systemd's STATUS= line is refreshed (at most).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Who this run is: the host, the run id (its start, ns) and the boot time.
pub fn identity(s: &Settings) -> Identity {
    Identity {
        host: s.host.hostname.clone(),
        run: u64::try_from(now_ns()).unwrap_or(0),
        boot: collect::stat::boot_ns(&s.host.paths),
    }
}

/// The chosen collectors, watching the configured host paths.
pub fn runner(s: &Settings, facts: Facts) -> Runner {
    let ctx = Context {
        paths: s.host.paths.clone(),
        facts,
        rates: s.collect.rates,
        names: s.collect.names.names,
    };
    Runner::new(s.collect.build(&ctx), s.host.paths.clone())
}

/// The tags every point of a batch carries besides `host`: `PROCSHIP_TAGS`,
/// and `job` and `instance` with node_exporter's names.
fn common_tags(s: &Settings, tags: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = tags.to_vec();
    all.extend(s.collect.names.labels(&s.host.hostname));
    all
}

/// `--once`: one complete snapshot (deltas primed internally, over
/// min(interval, 1 s)) encoded as one batch, without compression.
pub fn once(s: &Settings) -> std::io::Result<Vec<u8>> {
    let mut runner = runner(s, Facts::of_this_host());
    let mut points = Vec::new();
    runner.collect(now_ns(), &mut points);
    points.clear();
    std::thread::sleep(s.schedule.interval.min(Duration::from_secs(1)));
    runner.collect(now_ns(), &mut points);
    let mut batcher = Batcher::new(&s.host.hostname, &common_tags(s, &s.batch.tags), usize::MAX);
    batcher.add(&mut points);
    let batch = batcher.flush().unwrap_or_else(|| Batch {
        seq: 1,
        common_tags: Arc::new(Vec::new()),
        points: Vec::new(),
    });
    let mut enc = Encoder::stdout(s.encode.format, identity(s));
    Ok(enc.encode(&batch)?.body)
}

/// What happened to the points of one run, logged at exit:
/// `collected + recovered = sent + dropped + spooled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub collected: u64,
    /// Found in the spool at start (collected by an earlier run).
    pub recovered: u64,
    pub sent: u64,
    pub dropped: u64,
    /// Left in the spool for the next run.
    pub spooled: u64,
}

/// What SIGHUP needs: how to build the configuration again (the env file
/// is read anew) and how to change the log level.
pub struct Reload {
    pub load: Box<dyn Fn() -> Result<Settings, ConfigError>>,
    pub set_level: SetLevel,
}

/// Why the agent could not run.
#[derive(Debug)]
pub enum RunError {
    /// A problem the operator must fix (exit 78), such as an unusable spool.
    Config(String),
    Io(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(m) => f.write_str(m),
            RunError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        RunError::Io(e)
    }
}

/// Opens the spool when one is configured and there is a backend to
/// spool for, and says what it found there.
fn open_spool(s: &Settings, stats: &Arc<Stats>) -> Result<Option<Spool>, RunError> {
    let Some(sc) = &s.spool else {
        return Ok(None);
    };
    if s.ship.url.is_none() {
        tracing::info!("PROCSHIP_SPOOL_DIR is not used: the output is stdout");
        return Ok(None);
    }
    let (spool, found) = Spool::open(sc, stats.clone()).map_err(RunError::Config)?;
    if found.batches > 0 || found.damaged_ranges > 0 {
        tracing::info!(
            batches = found.batches,
            points = found.points,
            damaged_ranges = found.damaged_ranges,
            damaged_bytes = found.damaged_bytes,
            dir = %sc.dir.display(),
            "spool: undelivered batches from an earlier run are sent first, oldest first"
        );
    }
    Ok(Some(spool))
}

/// The collection side of a run: what a cycle, a flush and a reload touch.
pub struct Loop {
    s: Settings,
    facts: Facts,
    stats: Arc<Stats>,
    queue: Arc<Queue>,
    runner: Runner,
    batcher: Batcher,
    encoder: Encoder,
    points: Vec<Point>,
    telemetry: SelfStats,
    /// Which cycles ship the agent's own points (`PROCSHIP_SELF_INTERVAL`).
    cadence: telemetry::Cadence,
    started: Instant,
    status: Option<Arc<status::Shared>>,
    target: Arc<ship::Target>,
    /// The last TLS reload error logged (again only when it changes).
    tls_error: Option<String>,
    /// Cycles slower than the interval, and stalls: on a loaded host they
    /// come every cycle, so they are said every ten minutes with how many
    /// (`Notice::tally`), not a line each.
    slow: collect::Notice,
    stalled: collect::Notice,
}

impl Loop {
    /// The collection side of a run on this host, delivering into `queue`
    /// through `encoder`, its batches numbered from `first_seq`.
    pub fn new(
        s: Settings,
        stats: Arc<Stats>,
        queue: Arc<Queue>,
        encoder: Encoder,
        first_seq: u64,
    ) -> Loop {
        let facts = Facts::of_this_host();
        Loop {
            runner: runner(&s, facts).report_to(stats.clone()),
            batcher: Batcher::new(
                &s.host.hostname,
                &common_tags(&s, &s.batch.tags),
                s.batch.max_points.get(),
            )
            .first_seq(first_seq),
            encoder,
            stats,
            queue,
            points: Vec::new(),
            telemetry: SelfStats::new(facts.page_size),
            cadence: telemetry::Cadence::new(s.telemetry.cycles(s.schedule.interval)),
            started: Instant::now(),
            status: None,
            target: Arc::new(ship::Target::default()),
            tls_error: None,
            slow: Default::default(),
            stalled: Default::default(),
            facts,
            s,
        }
    }

    fn enqueue(&mut self, batch: Batch) {
        if let Some(body) = self.queue.spare_body() {
            self.encoder.reuse(body);
        }
        match self.encoder.encode(&batch) {
            Ok(e) => self.queue.push(e),
            Err(err) => {
                tracing::error!(seq = batch.seq, "cannot encode batch, dropped: {err}");
                self.stats
                    .drop_points(DropReason::OutputError, batch.points.len() as u64);
            }
        }
        self.batcher.reuse(batch.points);
    }

    /// One collection; returns how many points it took.
    pub fn cycle(&mut self) -> usize {
        let started = Instant::now();
        let now = now_ns();
        let failed = self.runner.collect(now, &mut self.points);
        Stats::add(&self.stats.cycles, 1);
        Stats::add(&self.stats.collector_errors, failed as u64);
        let host_points = self.points.len();
        let ship_self = self.cadence.due(self.runner.outcomes());
        if ship_self || self.status.is_some() {
            self.self_points(started.elapsed(), now);
        }
        if let Some(s) = &self.status {
            s.set_snapshot(self.batcher.common(), &self.points);
        }
        if !ship_self {
            // Last made, first given back: the point pool hands them out
            // again in the order the next cycle makes them.
            while self.points.len() > host_points {
                self.points.pop();
            }
        }
        let (taken, full) = self.batcher.add(&mut self.points);
        Stats::add(&self.stats.collected, taken as u64);
        for b in full {
            self.enqueue(b);
        }
        let took = started.elapsed();
        let interval = self.s.schedule.interval;
        if took > interval {
            if let Some(times) = self.slow.tally(1) {
                tracing::warn!(
                    took = ?took,
                    interval = ?interval,
                    times,
                    "collection took longer than the interval; the next tick is skipped (said again at most every 10 minutes, with how many times)"
                );
            }
        }
        taken
    }

    /// The `agent` point and the `agent_collector` points, last in the cycle.
    fn self_points(&mut self, collect_took: Duration, now: i64) {
        let mut agent = self.telemetry.point(
            &self.stats,
            &self.queue.depth(),
            collect_took,
            self.started.elapsed(),
            now,
        );
        if self.s.collect.names.names == collect::names::Names::NodeExporter {
            telemetry::counters_total(&mut agent);
        }
        self.points.push(agent);
        telemetry::collector_points(self.runner.outcomes(), now, &mut self.points);
    }

    /// SIGHUP: builds the configuration again and applies what the rows
    /// say can change live, from the next cycle on; an invalid one is
    /// refused and the running one stays. Queued batches are kept whatever
    /// changes.
    fn reload(&mut self, r: &Reload, ticker: &mut Ticker) {
        let new = match (r.load)() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: the new configuration is invalid, keeping the running one: {e}"
                );
                return;
            }
        };
        let plan = self.s.plan(&new);
        for v in &plan.later {
            tracing::warn!(
                "SIGHUP: {PREFIX}{} changed; it applies after a restart",
                v.name
            );
        }
        if plan.live.is_empty() {
            tracing::info!("SIGHUP: nothing to apply live");
            return;
        }
        self.s.effective = self.s.effective.merged(&new.effective, &plan.live);
        self.apply(new, &plan, r, ticker);
        if let Some(s) = &self.status {
            s.set_config(self.s.effective.clone());
        }
        let mut applied: Vec<&str> = plan.live.iter().map(|v| v.name).collect();
        applied.sort_unstable();
        tracing::info!(applied = %applied.join(","), "SIGHUP: configuration reloaded");
    }

    /// Each feature's live step, run when the plan touches its rows.
    fn apply(&mut self, new: Settings, plan: &Plan, r: &Reload, ticker: &mut Ticker) {
        if plan.touches(schedule::VARS) {
            self.s.schedule.interval = new.schedule.interval;
            *ticker = Ticker::new(self.phase_start(), new.schedule.interval);
        }
        if plan.touches(schedule::VARS) || plan.touches(telemetry::VARS) {
            self.s.telemetry = new.telemetry;
            self.cadence
                .set_every(self.s.telemetry.cycles(self.s.schedule.interval));
        }
        if plan.touches(crate::deliver::batch::VARS) {
            // What is pending was collected under the old tags.
            self.flush();
            self.batcher.set_tags(
                &self.s.host.hostname,
                &common_tags(&self.s, &new.batch.tags),
            );
            self.s.batch.tags = new.batch.tags;
        }
        if plan.touches_collectors() {
            self.s.collect = new.collect;
            self.runner = runner(&self.s, self.facts).report_to(self.stats.clone());
        }
        if plan.touches(log::VARS) {
            self.s.log.level = new.log.level;
            (r.set_level)(new.log.level);
        }
        if plan.touches(ship::VARS) || plan.touches(crate::deliver::tls::VARS) {
            self.target.offer(&new.ship, &new.tls);
            self.s.tls = new.tls;
        }
    }

    /// A certificate renewed on disk (new files renamed over the old) is
    /// loaded for the next connection without a signal; files that no
    /// longer load keep the pair in use, loudly (once per change).
    fn check_tls(&mut self) {
        match self.s.tls.reread() {
            None => {}
            Some(Ok(new)) => {
                tracing::info!(
                    "TLS: the certificate files changed on disk; the next connection uses them"
                );
                self.target.offer(&self.s.ship, &new);
                self.s.tls = new;
                self.tls_error = None;
            }
            Some(Err(e)) if self.tls_error.as_deref() != Some(e.as_str()) => {
                tracing::error!("TLS: the changed files do not load, keeping the ones in use: {e}");
                self.tls_error = Some(e);
            }
            Some(Err(_)) => {}
        }
    }

    /// The next moment of this host's phase within the interval.
    fn phase_start(&self) -> Instant {
        let interval = self.s.schedule.interval;
        aligned(
            now_ns(),
            Instant::now(),
            interval,
            phase(&self.s.host.hostname, interval),
        )
    }

    /// One line of counters for systemd's STATUS=.
    fn status_line(&self) -> String {
        let s = &self.stats;
        let depth = self.queue.depth();
        let mut line = format!(
            "collected={} sent={} dropped={} queued={} retries={}",
            Stats::get(&s.collected),
            Stats::get(&s.sent_points),
            s.dropped_total(),
            depth.batches,
            Stats::get(&s.retries),
        );
        if let Some(p) = depth.spool {
            line.push_str(&format!(" spooled={}", p.batches));
        }
        line
    }

    /// Cuts, encodes and queues what is pending.
    pub fn flush(&mut self) {
        if let Some(b) = self.batcher.flush() {
            self.enqueue(b);
        }
    }

    fn summary(&self) {
        let s = &self.stats;
        let depth = self.queue.depth();
        let spool = depth.spool.unwrap_or_default();
        tracing::info!(
            cycles = Stats::get(&s.cycles),
            collected = Stats::get(&s.collected),
            sent = Stats::get(&s.sent_points),
            dropped = s.dropped_total(),
            queue_batches = depth.batches,
            queue_bytes = depth.bytes,
            spool_batches = spool.batches,
            spool_bytes = spool.bytes,
            retries = Stats::get(&s.retries),
            skipped_ticks = Stats::get(&s.skipped_ticks),
            collector_errors = Stats::get(&s.collector_errors),
            "summary"
        );
    }
}

/// Starts the status endpoint when one is configured.
fn start_status(
    s: &Settings,
    stats: &Arc<Stats>,
    queue: &Arc<Queue>,
) -> Result<Option<Arc<status::Shared>>, RunError> {
    let Some(addr) = s.status.addr else {
        return Ok(None);
    };
    let shared = Arc::new(status::Shared::new(
        &s.status,
        s.effective.clone(),
        stats.clone(),
        queue.clone(),
        now_ns(),
    ));
    let bound = status::spawn(addr, shared.clone()).map_err(|e| {
        RunError::Config(format!(
            "PROCSHIP_STATUS_ADDR={addr}: cannot listen there: {e}"
        ))
    })?;
    tracing::info!(addr = %bound, "status endpoint: /healthz /status /metrics");
    Ok(Some(shared))
}

fn log_start(s: &Settings) {
    let spool = match (&s.spool, &s.ship.url) {
        (Some(sp), Some(_)) => sp.dir.display().to_string(),
        _ => "off".into(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        host = %s.host.hostname,
        output = %s.ship.url_masked(),
        format = s.encode.format.name(),
        spool = %spool,
        interval = ?s.schedule.interval,
        collectors = %s.collect.names().join(","),
        "procship started"
    );
}

/// What the main loop waits for: the control channel, with a deadline.
struct Waiter<'a> {
    control: &'a Receiver<Control>,
    stop: bool,
    hup: bool,
}

impl Waiter<'_> {
    fn until(&mut self, deadline: Instant) {
        let d = deadline.saturating_duration_since(Instant::now());
        match self.control.recv_timeout(d) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => self.stop = true,
            Ok(Control::Reload) => self.hup = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Whether a stop asked at `asked` has waited too long: the main loop has
/// not begun stopping (it is stuck in a collector) `timeout` later.
pub fn stuck(asked: Instant, now: Instant, timeout: Duration, stopping: bool) -> bool {
    !stopping && now.duration_since(asked) >= timeout
}

/// Passes the control channel on to the main loop, and watches a stop: a
/// main loop that has not begun stopping `timeout` after the stop was
/// asked (a collector that does not return: a hung mount, a kernel that
/// does not answer) gets `on_stuck` called, from this thread. The shipper
/// goes on meanwhile, so what is queued keeps being delivered.
pub fn guard(
    control: Receiver<Control>,
    stopping: Arc<AtomicBool>,
    timeout: Duration,
    on_stuck: impl FnOnce() + Send + 'static,
) -> std::io::Result<Receiver<Control>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("procship-guard".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let asked = loop {
                let Ok(msg) = control.recv() else { return };
                if tx.send(msg).is_err() {
                    return;
                }
                if msg == Control::Stop {
                    break Instant::now();
                }
            };
            loop {
                let now = Instant::now();
                let done = stopping.load(Ordering::Acquire);
                if done {
                    return;
                }
                if stuck(asked, now, timeout, done) {
                    on_stuck();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })?;
    Ok(rx)
}

/// A main loop stuck after a stop: says where, and exits, since no
/// collector can be interrupted. The spool (if any) keeps what waits; what
/// only the memory queue holds is lost, and said.
fn exit_stuck(stats: &Stats, queue: &Queue, timeout: Duration) {
    let collector = stats.collecting.current().map_or("none", |(name, _)| name);
    let stalled_s = stats
        .collecting
        .current()
        .map_or(0, |(_, since)| (now_ns() - since) / 1_000_000_000);
    let depth = queue.depth();
    tracing::error!(
        collector,
        stalled_s,
        timeout = ?timeout,
        queued_batches = depth.batches,
        spooled_batches = depth.spool.map_or(0, |sp| sp.batches),
        "stop asked, but the collection has not returned within the shutdown timeout: exiting now; \
         what the spool holds is sent at the next start, what only memory held is lost"
    );
    std::process::exit(1);
}

/// Runs the agent until `Control::Stop` (or the control channel closes);
/// returns the account of every point. A stop that a stuck collector keeps
/// from being seen still ends the process after `PROCSHIP_SHUTDOWN_TIMEOUT`
/// (`guard`).
pub fn run(s: Settings, control: Receiver<Control>, reload: Reload) -> Result<Account, RunError> {
    let stats = Arc::new(Stats::default());
    let spool = open_spool(&s, &stats)?;
    let first_seq = spool.as_ref().map_or(1, Spool::next_seq);
    let queue = Arc::new(Queue::new(s.queue.max_bytes, stats.clone(), spool));
    let id = identity(&s);
    let run = id.run;
    let (encoder, sink) = ship::sink_for(&s.ship, &s.tls, s.encode, id);
    let status = start_status(&s, &stats, &queue)?;
    let target = Arc::new(ship::Target::default());
    let shipper = Shipper::new(
        &s.ship,
        s.retry,
        sink,
        queue.clone(),
        stats.clone(),
        target.clone(),
        run,
    )
    .drain(s.drain)
    .spawn()?;
    log_start(&s);
    let stopping = Arc::new(AtomicBool::new(false));
    let control = {
        let (stats, queue, timeout) = (stats.clone(), queue.clone(), s.ship.shutdown_timeout);
        guard(control, stopping.clone(), timeout, move || {
            exit_stuck(&stats, &queue, timeout)
        })?
    };
    let mut l = Loop::new(s, stats.clone(), queue.clone(), encoder, first_seq);
    l.status = status;
    l.target = target;
    let mut wait = Waiter {
        control: &control,
        stop: false,
        hup: false,
    };
    let mut notify = Notifier::from_env();
    let first = splay_start(&l, &mut wait, &mut notify);
    main_loop(&mut l, first, &mut wait, &mut notify, &reload);
    stopping.store(true, Ordering::Release);
    notify.stopping();
    Ok(stop(l, shipper))
}

/// The start-up splay (`PROCSHIP_JITTER`), then this host's phase within
/// the interval, still answering the watchdog.
fn splay_start(l: &Loop, wait: &mut Waiter, notify: &mut Notifier) -> Instant {
    let splayed = Instant::now() + splay(l.s.schedule.jitter, fastrand::f64());
    let interval = l.s.schedule.interval;
    let first = aligned(
        now_ns() + i64::try_from((splayed - Instant::now()).as_nanos()).unwrap_or(0),
        splayed,
        interval,
        phase(&l.s.host.hostname, interval),
    );
    while !wait.stop && Instant::now() < first {
        notify.ping(Instant::now());
        wait.until(notify.next_ping().map_or(first, |p| p.min(first)));
    }
    first
}

/// Ticks, flushes, reloads and the minute's summary until a stop request.
fn main_loop(
    l: &mut Loop,
    start: Instant,
    wait: &mut Waiter,
    notify: &mut Notifier,
    reload: &Reload,
) {
    let mut ticker = Ticker::new(start, l.s.schedule.interval);
    let mut flush = FlushTimer::new(start, l.s.batch.flush_interval, l.s.batch.flush_jitter);
    let mut next_summary = start + SUMMARY_EVERY;
    let mut next_tls = start + TLS_CHECK_EVERY;
    let mut ready = false;
    let mut last_status = Instant::now();
    while !wait.stop {
        if std::mem::take(&mut wait.hup) {
            notify.reloading();
            l.reload(reload, &mut ticker);
            notify.ready(&l.status_line());
        }
        let now = Instant::now();
        if now >= ticker.deadline() {
            let skipped = ticker.fire(now);
            if skipped > 0 {
                Stats::add(&l.stats.skipped_ticks, skipped);
                if let Some(skipped) = l.stalled.tally(skipped) {
                    tracing::warn!(
                        skipped,
                        "missed collection ticks were skipped (the agent was stalled; said again at most every 10 minutes)"
                    );
                }
            }
            if l.cycle() > 0 && !ready {
                ready = true;
                let released = release_start_up_pages();
                tracing::debug!(bytes = released, "start-up's file pages handed back");
                notify.ready(&l.status_line());
            }
        }
        let now = Instant::now();
        if now >= flush.deadline() {
            l.flush();
            flush.flushed(now, fastrand::f64());
            if ready && now.duration_since(last_status) >= STATUS_EVERY {
                notify.status(&l.status_line());
                last_status = now;
            }
        }
        notify.ping(now);
        if now >= next_summary {
            l.summary();
            next_summary += SUMMARY_EVERY;
        }
        if now >= next_tls {
            l.check_tls();
            next_tls += TLS_CHECK_EVERY;
        }
        let wake = ticker
            .deadline()
            .min(flush.deadline())
            .min(next_summary)
            .min(next_tls);
        wait.until(notify.next_ping().map_or(wake, |p| wake.min(p)));
    }
}

/// The bounded final flush, and the account of every point.
fn stop(mut l: Loop, shipper: ship::Handle) -> Account {
    let timeout = l.s.ship.shutdown_timeout;
    tracing::info!(timeout = ?timeout, "stopping: collection ended, delivering what is queued");
    l.flush();
    shipper.stop(Instant::now() + timeout);
    let stats = &l.stats;
    let account = Account {
        collected: Stats::get(&stats.collected),
        recovered: Stats::get(&stats.spool_recovered),
        sent: Stats::get(&stats.sent_points),
        dropped: stats.dropped_total(),
        spooled: l.queue.depth().spool.map_or(0, |p| p.points),
    };
    tracing::info!(
        cycles = Stats::get(&stats.cycles),
        collected = account.collected,
        sent = account.sent,
        batches = Stats::get(&stats.sent_batches),
        dropped = account.dropped,
        recovered = account.recovered,
        spooled = account.spooled,
        retries = Stats::get(&stats.retries),
        "stopped; dropped by reason: {}",
        stats.dropped_by_reason()
    );
    account
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_stuck_only_past_the_timeout_and_before_the_loop_stops() {
        let asked = Instant::now();
        let t = Duration::from_secs(10);
        assert!(!stuck(asked, asked + Duration::from_secs(9), t, false));
        assert!(stuck(asked, asked + t, t, false));
        assert!(!stuck(asked, asked + Duration::from_secs(60), t, true));
    }

    /// The guard with a stuck main loop (nobody sets `stopping`) and with
    /// one that stops; `on_stuck` reports on a channel instead of exiting.
    fn guarded(stop_in_time: bool) -> (Receiver<Control>, bool) {
        let (tx, rx) = mpsc::channel();
        let (called_tx, called) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let forwarded = guard(
            rx,
            stopping.clone(),
            Duration::from_millis(200),
            move || {
                let _ = called_tx.send(());
            },
        )
        .unwrap();
        tx.send(Control::Reload).unwrap();
        assert_eq!(
            forwarded.recv_timeout(Duration::from_secs(5)),
            Ok(Control::Reload)
        );
        tx.send(Control::Stop).unwrap();
        assert_eq!(
            forwarded.recv_timeout(Duration::from_secs(5)),
            Ok(Control::Stop)
        );
        if stop_in_time {
            stopping.store(true, Ordering::Release);
        }
        let was_called = called.recv_timeout(Duration::from_secs(2)).is_ok();
        (forwarded, was_called)
    }

    #[test]
    fn a_main_loop_stuck_after_a_stop_is_ended_after_the_timeout() {
        let (_, called) = guarded(false);
        assert!(called, "on_stuck was not called");
    }

    #[test]
    fn a_main_loop_that_stops_in_time_is_left_alone() {
        let (forwarded, called) = guarded(true);
        assert!(!called, "on_stuck called for a loop that stopped");
        assert_eq!(
            forwarded.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected),
            "the guard has ended"
        );
    }
}
