//! The agent's main loop: tick, collect, batch, encode, enqueue; flush on
//! the flush timer; a summary line every minute; and on a stop request, a
//! bounded flush and a final account of every point. Also `--once`.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::batch::Batcher;
use crate::collect::{self, Context, Runner};
use crate::config::Config;
use crate::encode::{Encoder, Identity};
use crate::notify::Notifier;
use crate::point::{Batch, Point, Timestamp};
use crate::queue::Queue;
use crate::schedule::{FlushTimer, Ticker, splay};
use crate::ship::{self, Shipper};
use crate::spool::Spool;
use crate::stats::{Drop, Stats};
use crate::status;
use crate::telemetry::SelfStats;

/// Messages from the signal thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stop,
    Reload,
}

const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// How often systemd's STATUS= line is refreshed (at most).
const STATUS_EVERY: Duration = Duration::from_secs(10);

pub fn now_ns() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn identity(cfg: &Config) -> Identity {
    Identity {
        host: cfg.hostname.clone(),
        run: u64::try_from(now_ns()).unwrap_or(0),
        boot: boot_ns(&cfg.paths.proc),
    }
}

/// The host's boot time from `<proc>/stat` (ns since the epoch), 0 when it
/// cannot be read: OTLP then starts counters at the agent's start.
fn boot_ns(proc_: &std::path::Path) -> i64 {
    let path = proc_.join("stat");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| {
            crate::collect::stat::parse(&path, &text, crate::collect::stat::Cpus::Count)
                .ok()?
                .btime
        })
        .and_then(|s| i64::try_from(s).ok()?.checked_mul(1_000_000_000))
        .unwrap_or(0)
}

fn runner(cfg: &Config) -> Runner {
    let ctx = Context::from_config(cfg);
    Runner::new(collect::build(&cfg.collectors, &ctx), cfg.paths.clone())
}

/// `--once`: one complete snapshot (deltas primed internally, over
/// min(interval, 1 s)) encoded as one batch, without compression.
pub fn once(cfg: &Config) -> std::io::Result<Vec<u8>> {
    let mut runner = runner(cfg);
    let mut points = Vec::new();
    runner.collect(now_ns(), &mut points);
    points.clear();
    std::thread::sleep(cfg.interval.min(Duration::from_secs(1)));
    runner.collect(now_ns(), &mut points);
    let mut batcher = Batcher::new(&cfg.hostname, &cfg.tags, usize::MAX);
    batcher.add(&mut points);
    let batch = batcher.flush().unwrap_or_else(|| Batch {
        seq: 1,
        common_tags: Arc::new(Vec::new()),
        points: Vec::new(),
    });
    let mut enc = Encoder::stdout(cfg.format, identity(cfg));
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

/// Changes the log level of the running process.
pub type SetLevel = Box<dyn Fn(tracing::Level) + Send>;

/// What SIGHUP needs: how to build the configuration again (the env file
/// is read anew) and how to change the log level.
pub struct Reload {
    pub load: Box<dyn Fn() -> Result<Config, crate::config::ConfigError>>,
    pub set_level: SetLevel,
}

/// Variables a reload applies at the next cycle; any other change waits
/// for a restart (and is logged as such).
const LIVE: &[&str] = &[
    "INTERVAL",
    "TAGS",
    "COLLECTORS",
    "LOG_LEVEL",
    "INGEST_URL",
    "AUTH_TOKEN",
    "HEADERS",
];

/// The variables whose values differ between two configurations, secrets
/// compared by value (their printed form is masked).
fn changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let raw = |c: &Config, name: &str| -> Option<String> {
        match name {
            "AUTH_TOKEN" => Some(
                c.auth_token
                    .as_ref()
                    .map(|t| t.expose().to_string())
                    .unwrap_or_default(),
            ),
            "HEADERS" => Some(
                c.headers
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.expose()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            "INGEST_URL" => Some(
                c.ingest_url
                    .as_ref()
                    .map(|u| u.expose().to_string())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for var in crate::config::VARS {
        let name = format!("{}{}", crate::config::PREFIX, var.name);
        let value = |c: &Config| {
            raw(c, var.name).or_else(|| {
                c.effective()
                    .find(|(k, _, _)| *k == name)
                    .map(|(_, v, _)| v.to_string())
            })
        };
        if value(old) != value(new) {
            out.push(var.name);
        }
    }
    out
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
fn open_spool(cfg: &Config, stats: &Arc<Stats>) -> Result<Option<Spool>, RunError> {
    let Some(sc) = &cfg.spool else {
        return Ok(None);
    };
    if cfg.ingest_url.is_none() {
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

struct Loop {
    cfg: Config,
    stats: Arc<Stats>,
    queue: Arc<Queue>,
    runner: Runner,
    batcher: Batcher,
    encoder: Encoder,
    points: Vec<Point>,
    telemetry: SelfStats,
    started: Instant,
    status: Option<Arc<status::Shared>>,
    swap: Arc<ship::Swap>,
}

impl Loop {
    fn enqueue(&mut self, batch: Batch) {
        match self.encoder.encode(&batch) {
            Ok(e) => self.queue.push(e),
            Err(err) => {
                tracing::error!(seq = batch.seq, "cannot encode batch, dropped: {err}");
                self.stats
                    .drop_points(Drop::OutputError, batch.points.len() as u64);
            }
        }
    }

    /// One collection; returns how many points it took.
    fn cycle(&mut self) -> usize {
        let started = Instant::now();
        let now = now_ns();
        let failed = self.runner.collect(now, &mut self.points);
        Stats::add(&self.stats.cycles, 1);
        Stats::add(&self.stats.collector_errors, failed as u64);
        let agent = self.telemetry.point(
            &self.stats,
            &self.queue.depth(),
            started.elapsed(),
            self.started.elapsed(),
            now,
        );
        self.points.push(agent);
        if let Some(s) = &self.status {
            s.set_snapshot(self.batcher.common(), &self.points);
        }
        let (taken, full) = self.batcher.add(&mut self.points);
        Stats::add(&self.stats.collected, taken as u64);
        for b in full {
            self.enqueue(b);
        }
        let took = started.elapsed();
        if took > self.cfg.interval {
            tracing::warn!(
                took = ?took,
                interval = ?self.cfg.interval,
                "collection took longer than the interval; the next tick is skipped"
            );
        }
        taken
    }

    /// SIGHUP: builds the configuration again and applies what can change
    /// live at the next cycle; an invalid one is refused and the running one
    /// stays. Queued batches are kept whatever changes.
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
        let mut changes = changed(&self.cfg, &new);
        // Between stdout and a URL the encoding changes too: restart.
        let url_live = self.cfg.ingest_url.is_some() && new.ingest_url.is_some();
        let (mut live, later): (Vec<&str>, Vec<&str>) = changes.drain(..).partition(|v| {
            LIVE.contains(v) && (url_live || !matches!(*v, "INGEST_URL" | "AUTH_TOKEN" | "HEADERS"))
        });
        for v in &later {
            tracing::warn!(
                "SIGHUP: {}{v} changed; it applies after a restart",
                crate::config::PREFIX
            );
        }
        live.sort_unstable();
        if live.is_empty() {
            tracing::info!("SIGHUP: nothing to apply live");
            return;
        }
        if live.contains(&"INTERVAL") {
            self.cfg.interval = new.interval;
            *ticker = Ticker::new(Instant::now(), new.interval);
        }
        if live.contains(&"TAGS") {
            // What is pending was collected under the old tags.
            self.flush();
            self.batcher.set_tags(&self.cfg.hostname, &new.tags);
            self.cfg.tags = new.tags.clone();
        }
        if live.contains(&"COLLECTORS") {
            self.cfg.collectors = new.collectors.clone();
            self.runner = runner(&self.cfg);
        }
        if live.contains(&"LOG_LEVEL") {
            self.cfg.log_level = new.log_level;
            (r.set_level)(new.log_level);
        }
        if live
            .iter()
            .any(|v| matches!(*v, "INGEST_URL" | "AUTH_TOKEN" | "HEADERS"))
        {
            self.cfg.ingest_url = new.ingest_url.clone();
            self.cfg.auth_token = new.auth_token.clone();
            self.cfg.headers = new.headers.clone();
            if let Some(url) = &new.ingest_url {
                self.swap.offer(ship::Http::new(&new, url.expose()));
            }
        }
        if let Some(s) = &self.status {
            s.set_config(&self.cfg, &new, &live);
        }
        tracing::info!(applied = %live.join(","), "SIGHUP: configuration reloaded");
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

    fn flush(&mut self) {
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

/// Runs the agent until `Control::Stop` (or the control channel closes);
/// returns the account of every point.
pub fn run(cfg: Config, control: &Receiver<Control>, reload: Reload) -> Result<Account, RunError> {
    let stats = Arc::new(Stats::default());
    let spool = open_spool(&cfg, &stats)?;
    let first_seq = spool.as_ref().map_or(1, Spool::next_seq);
    let queue = Arc::new(Queue::new(cfg.queue_max_bytes, stats.clone(), spool));
    let (encoder, sink) = ship::sink_for(&cfg, identity(&cfg));
    let status = match cfg.status_addr {
        None => None,
        Some(addr) => {
            let shared = Arc::new(status::Shared::new(
                &cfg,
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
            Some(shared)
        }
    };
    let swap = Arc::new(ship::Swap::default());
    let shipper = Shipper::new(&cfg, sink, queue.clone(), stats.clone(), swap.clone()).spawn()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        host = %cfg.hostname,
        output = %cfg.ingest_url_masked(),
        format = cfg.format.name(),
        spool = %cfg.spool.as_ref().filter(|_| cfg.ingest_url.is_some()).map_or_else(|| "off".into(), |s| s.dir.display().to_string()),
        interval = ?cfg.interval,
        collectors = %cfg.collectors.join(","),
        "procship started"
    );
    let mut l = Loop {
        runner: runner(&cfg),
        batcher: Batcher::new(&cfg.hostname, &cfg.tags, cfg.batch_max_points.get())
            .first_seq(first_seq),
        encoder,
        stats: stats.clone(),
        queue: queue.clone(),
        points: Vec::new(),
        telemetry: SelfStats::new(collect::page_size()),
        started: Instant::now(),
        status,
        swap,
        cfg,
    };

    let mut stop = false;
    let mut hup = false;
    let wait = |until: Instant, stop: &mut bool, hup: &mut bool| {
        let d = until.saturating_duration_since(Instant::now());
        match control.recv_timeout(d) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => *stop = true,
            Ok(Control::Reload) => *hup = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
    };
    let mut notify = Notifier::from_env();
    let mut ready = false;
    let mut last_status = Instant::now();
    let first = Instant::now() + splay(l.cfg.jitter, fastrand::f64());
    while !stop && Instant::now() < first {
        notify.ping(Instant::now());
        wait(
            notify.next_ping().map_or(first, |p| p.min(first)),
            &mut stop,
            &mut hup,
        );
    }
    let start = Instant::now();
    let mut ticker = Ticker::new(start, l.cfg.interval);
    let mut flush = FlushTimer::new(start, l.cfg.flush_interval, l.cfg.flush_jitter);
    let mut next_summary = start + SUMMARY_EVERY;
    while !stop {
        if std::mem::take(&mut hup) {
            notify.reloading();
            l.reload(&reload, &mut ticker);
            notify.ready(&l.status_line());
        }
        let now = Instant::now();
        if now >= ticker.deadline() {
            let skipped = ticker.fire(now);
            if skipped > 0 {
                Stats::add(&stats.skipped_ticks, skipped);
                tracing::warn!(
                    skipped,
                    "missed collection ticks were skipped (the agent was stalled)"
                );
            }
            let taken = l.cycle();
            if !ready && taken > 0 {
                ready = true;
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
        let mut wake = ticker.deadline().min(flush.deadline()).min(next_summary);
        if let Some(p) = notify.next_ping() {
            wake = wake.min(p);
        }
        wait(wake, &mut stop, &mut hup);
    }
    notify.stopping();

    tracing::info!(timeout = ?l.cfg.shutdown_timeout, "stopping: collection ended, delivering what is queued");
    l.flush();
    queue.close(Instant::now() + l.cfg.shutdown_timeout);
    if shipper.join().is_err() {
        tracing::error!("the shipper thread panicked");
    }
    let account = Account {
        collected: Stats::get(&stats.collected),
        recovered: Stats::get(&stats.spool_recovered),
        sent: Stats::get(&stats.sent_points),
        dropped: stats.dropped_total(),
        spooled: queue.depth().spool.map_or(0, |p| p.points),
    };
    tracing::info!(
        cycles = Stats::get(&stats.cycles),
        collected = account.collected,
        sent = account.sent,
        batches = Stats::get(&stats.sent_batches),
        dropped = account.dropped,
        queue_full = stats.dropped(Drop::QueueFull),
        rejected = stats.dropped(Drop::Rejected),
        shutdown = stats.dropped(Drop::Shutdown),
        output_error = stats.dropped(Drop::OutputError),
        too_old = stats.dropped(Drop::TooOld),
        spool_full = stats.dropped(Drop::SpoolFull),
        spool_damaged = stats.dropped(Drop::SpoolDamaged),
        recovered = account.recovered,
        spooled = account.spooled,
        retries = Stats::get(&stats.retries),
        "stopped"
    );
    Ok(account)
}
