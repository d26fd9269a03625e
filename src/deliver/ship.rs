//! The shipper thread: takes encoded batches from the queue, oldest first,
//! and delivers each one, to the ingest URL over HTTP (ureq) or to stdout
//! when no URL is set. One batch is in flight at a time, so batches arrive in
//! order. A failed attempt is retried as `retry.rs` decides; the queue keeps
//! filling meanwhile (the spool on disk, or memory dropping its oldest when
//! full). A batch older than `PROCSHIP_MAX_BATCH_AGE` is dropped, not sent.
//! On shutdown the shipper keeps delivering until the queue's deadline; a
//! batch the spool holds is left there for the next run, the rest is counted.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{
    ConfigError, Mask, Secret, Values, Var, mask_url, parse_duration, parse_duration_upto,
    parse_positive_duration, parse_url, split_list,
};
use crate::deliver::queue::{Pop, Queue, Queued};
use crate::deliver::resolve::CachingResolver;
use crate::deliver::retry;
use crate::deliver::retry::{Backoff, Decision, classify};
use crate::encode::{Encoded, Encoder};
use crate::stats::{DropReason, Stats};

pub const VARS: &[Var] = &[
    Var::new(
        "INGEST_URL",
        "",
        "http(s) URL batches are POSTed to; empty: write batches to stdout",
    )
    .masked(Mask::Url)
    .live(),
    Var::new("AUTH_TOKEN", "", "sent as Authorization: Bearer <token>")
        .masked(Mask::Secret)
        .live(),
    Var::new(
        "HEADERS",
        "",
        "extra request headers: Name=Value,Name=Value (values are masked in output)",
    )
    .masked(Mask::HeaderValues)
    .live(),
    Var::new("TIMEOUT", "10", "whole-request timeout of one POST").live(),
    Var::new("CONNECT_TIMEOUT", "5", "TCP/TLS connect timeout").live(),
    Var::new(
        "MAX_BATCH_AGE",
        "",
        "a batch whose oldest point is older than this is dropped (reason too_old), not retried; days allowed (2d); empty: no limit",
    ),
    Var::new(
        "SHUTDOWN_TIMEOUT",
        "10",
        "on SIGTERM/SIGINT, how long to keep delivering queued batches",
    ),
];

/// Where batches go and how: the ingest URL (none: stdout), credentials,
/// timeouts, the age limit and the shutdown grace.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// May hold credentials (user:password@, ?p=): masked in Debug output.
    pub url: Option<Secret>,
    pub auth_token: Option<Secret>,
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_batch_age: Option<Duration>,
    pub shutdown_timeout: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let url = v.opt("INGEST_URL", parse_url)?.map(Secret::new);
        let auth_token = v.opt("AUTH_TOKEN", |s| {
            if s.chars().any(|c| c.is_control() || c == ' ') {
                Err("a token without spaces or control characters".into())
            } else {
                Ok(Secret::new(s))
            }
        })?;
        let headers = v.get("HEADERS", parse_headers)?;
        if auth_token.is_some()
            && headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            return Err(v.invalid(
                "HEADERS",
                "an Authorization header cannot be combined with PROCSHIP_AUTH_TOKEN; set one of them",
            ));
        }
        Ok(Options {
            url,
            auth_token,
            headers,
            timeout: v.get("TIMEOUT", parse_positive_duration)?,
            connect_timeout: v.get("CONNECT_TIMEOUT", parse_positive_duration)?,
            max_batch_age: v.opt("MAX_BATCH_AGE", parse_max_age)?,
            shutdown_timeout: v.get("SHUTDOWN_TIMEOUT", parse_duration)?,
        })
    }

    /// The ingest URL with any password or credential query value masked: safe to log.
    pub fn url_masked(&self) -> String {
        self.url
            .as_ref()
            .map_or_else(|| "stdout".into(), |u| mask_url(u.expose()))
    }

    /// Whether a reload can move from `self` to `new` live: between stdout
    /// and a URL the encoder changes too, which waits for a restart.
    pub fn live_to(&self, new: &Options) -> bool {
        self.url.is_some() && new.url.is_some()
    }
}

fn parse_max_age(s: &str) -> Result<Duration, String> {
    let d = parse_duration_upto(s, 365 * 86_400)?;
    if d < Duration::from_secs(1) {
        return Err("a duration of at least 1s, such as 1h, 2d or 3600".into());
    }
    Ok(d)
}

fn parse_headers(s: &str) -> Result<Vec<(String, Secret)>, String> {
    const ACCEPTED: &str = "Name=Value pairs separated by commas (header names of letters, digits and -; \
         Content-Type, Content-Encoding, Content-Length and Host are set by the agent)";
    let mut out = Vec::new();
    for item in split_list(s) {
        let (k, v) = item.split_once('=').ok_or(ACCEPTED)?;
        let (k, v) = (k.trim(), v.trim());
        let reserved = ["content-type", "content-encoding", "content-length", "host"]
            .contains(&k.to_ascii_lowercase().as_str());
        if k.is_empty()
            || reserved
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || v.chars().any(char::is_control)
        {
            return Err(ACCEPTED.into());
        }
        out.push((k.to_string(), Secret::new(v)));
    }
    Ok(out)
}

/// How often a failure that goes on is logged again at warn.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// ureq's per-connection input and output buffers, and the largest
/// response header accepted.
const IO_BUFFER: usize = 16 * 1024;
/// How much of a rejecting response's body is logged.
const BODY_HEAD: u64 = 512;

pub enum Sink {
    Stdout,
    Http(Http),
}

pub struct Http {
    agent: ureq::Agent,
    resolver: CachingResolver,
    url: String,
    url_masked: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

/// The result of one HTTP attempt.
enum Attempt {
    Answered {
        status: u16,
        retry_after: Option<String>,
        body_head: String,
    },
    Failed(String),
}

impl Http {
    pub fn new(cfg: &Options, url: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_global(Some(cfg.timeout))
            .user_agent(crate::AGENT)
            // ureq's defaults (128 KiB in, 128 KiB out per connection) are
            // sized for downloads; a POST of a few KiB and a short reply
            // need far less, and this is a quarter of the agent's memory.
            .input_buffer_size(IO_BUFFER)
            .output_buffer_size(IO_BUFFER)
            .max_response_header_size(IO_BUFFER)
            .build();
        let mut headers: Vec<(String, String)> = cfg
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        if let Some(t) = &cfg.auth_token {
            headers.push(("Authorization".into(), format!("Bearer {}", t.expose())));
        }
        let resolver = CachingResolver::default();
        let connector = ureq::unversioned::transport::DefaultConnector::default();
        Http {
            agent: ureq::Agent::with_parts(config, connector, resolver.clone()),
            resolver,
            url: url.to_string(),
            url_masked: cfg.url_masked(),
            headers,
            timeout: cfg.timeout,
        }
    }

    /// One POST of a batch, with the headers of its own encoding.
    fn post(&self, e: &Encoded, timeout: Duration) -> Attempt {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", e.format.content_type());
        for (k, v) in e.format.protocol_headers() {
            req = req.header(*k, *v);
        }
        if let Some(enc) = e.compression.content_encoding() {
            req = req.header("Content-Encoding", enc);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req.config().timeout_global(Some(timeout)).build();
        match req.send(&e.body[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut head = Vec::new();
                // Best effort: the body only feeds a log line.
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(BODY_HEAD)
                    .read_to_end(&mut head);
                Attempt::Answered {
                    status,
                    retry_after,
                    body_head: String::from_utf8_lossy(&head).trim().to_string(),
                }
            }
            Err(e) => {
                self.resolver.forget();
                Attempt::Failed(e.to_string())
            }
        }
    }
}

/// The HTTP target a reload hands over (the ship feature's live step:
/// URL, credentials, timeouts); the shipper takes it before its next attempt.
#[derive(Default)]
pub struct Target(std::sync::Mutex<Option<Http>>);

impl Target {
    pub fn offer(&self, cfg: &Options) {
        if let Some(url) = &cfg.url {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Http::new(cfg, url.expose()));
        }
    }

    fn take(&self) -> Option<Http> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

pub struct Shipper {
    pub sink: Sink,
    target: Arc<Target>,
    pub queue: Arc<Queue>,
    pub stats: Arc<Stats>,
    pub retry_initial: Duration,
    pub retry_max_delay: Duration,
    pub max_batch_age: Option<Duration>,
    last_warn: Option<Instant>,
    /// Batches dropped as too old since the last log line about it.
    too_old: (u64, u64, Option<Instant>),
}

impl Shipper {
    pub fn new(
        cfg: &Options,
        retry: retry::Options,
        sink: Sink,
        queue: Arc<Queue>,
        stats: Arc<Stats>,
        target: Arc<Target>,
    ) -> Self {
        Shipper {
            sink,
            target,
            queue,
            stats,
            retry_initial: retry.initial,
            retry_max_delay: retry.max_delay,
            max_batch_age: cfg.max_batch_age,
            last_warn: None,
            too_old: (0, 0, None),
        }
    }

    pub fn spawn(mut self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("procship-ship".into())
            .spawn(move || self.run())
    }

    /// Delivers until the queue is closed and empty (or its deadline
    /// passed); what is left goes to the spool, or is counted as dropped.
    pub fn run(&mut self) {
        while let Pop::Batch(item) = self.queue.pop() {
            if !self.deliver(item) {
                break;
            }
        }
        self.queue.finish();
    }

    fn delivered(&self, item: &Queued) {
        self.stats
            .last_success_ns
            .store(crate::point::now_ns(), std::sync::atomic::Ordering::Relaxed);
        Stats::add(&self.stats.sent_points, item.batch.points);
        Stats::add(&self.stats.sent_batches, 1);
        self.queue.done(item);
    }

    fn dropped(&self, item: &Queued, why: DropReason) {
        self.stats.drop_points(why, item.batch.points);
        self.queue.done(item);
    }

    /// True when a batch is older than `PROCSHIP_MAX_BATCH_AGE`: dropped
    /// and counted, the log line rate-limited (an outage can age thousands).
    fn too_old(&mut self, item: &Queued) -> bool {
        let Some(max) = self.max_batch_age else {
            return false;
        };
        let age_ns = crate::point::now_ns().saturating_sub(item.batch.oldest);
        if age_ns < i64::try_from(max.as_nanos()).unwrap_or(i64::MAX) {
            return false;
        }
        self.dropped(item, DropReason::TooOld);
        self.too_old.0 += 1;
        self.too_old.1 += item.batch.points;
        if self.too_old.2.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                batches = self.too_old.0,
                points = self.too_old.1,
                seq = item.batch.seq,
                max_age = ?max,
                "batches older than PROCSHIP_MAX_BATCH_AGE dropped instead of sent"
            );
            self.too_old = (0, 0, Some(Instant::now()));
        }
        true
    }

    /// Delivers one batch, retrying as the policy says. False when the
    /// shipper should stop: shutting down, and the backend is failing with
    /// the rest safe in the spool.
    fn deliver(&mut self, item: Queued) -> bool {
        if self.too_old(&item) {
            return true;
        }
        self.stats
            .in_flight
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let keep_going = self.attempt(item);
        self.stats
            .in_flight
            .store(0, std::sync::atomic::Ordering::Relaxed);
        keep_going
    }

    fn attempt(&mut self, item: Queued) -> bool {
        let e = &item.batch;
        match &self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                match out.write_all(&e.body).and_then(|_| out.flush()) {
                    Ok(()) => self.delivered(&item),
                    Err(err) => {
                        tracing::error!(
                            seq = e.seq,
                            points = e.points,
                            "cannot write to stdout, batch dropped: {err}"
                        );
                        self.dropped(&item, DropReason::OutputError);
                    }
                }
                return true;
            }
            Sink::Http(_) => {}
        }
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max_delay, fastrand::u64(..));
        let mut attempts = 0u64;
        loop {
            // A reload (SIGHUP) may have changed the URL or the credentials:
            // the next attempt, even of this batch, uses them.
            if let Some(h) = self.target.take() {
                tracing::info!(url = %h.url_masked, "delivering to the reloaded target");
                self.sink = Sink::Http(h);
            }
            let Sink::Http(http) = &self.sink else {
                return true;
            };
            let mut timeout = http.timeout;
            if let Some(deadline) = self.queue.deadline() {
                timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
                if timeout.is_zero() {
                    self.queue.abandon(item);
                    return false;
                }
            }
            let (reason, after) = match http.post(e, timeout) {
                Attempt::Answered {
                    status,
                    retry_after,
                    body_head,
                } => match classify(status, retry_after.as_deref(), SystemTime::now()) {
                    Decision::Delivered => {
                        if attempts > 0 {
                            tracing::info!(
                                seq = e.seq,
                                attempts = attempts + 1,
                                "delivered after retrying"
                            );
                        }
                        self.last_warn = None;
                        self.delivered(&item);
                        return true;
                    }
                    Decision::Reject => {
                        Stats::add(&self.stats.send_failures, 1);
                        let hint = crate::deliver::retry::reject_hint(status);
                        self.stats.set_last_error(format!(
                            "{}: HTTP {status} (permanent, batch {} dropped; {hint}): {body_head}",
                            http.url_masked, e.seq
                        ));
                        tracing::error!(
                            url = %http.url_masked,
                            status,
                            seq = e.seq,
                            points = e.points,
                            response = %body_head,
                            "{hint}; batch dropped"
                        );
                        self.dropped(&item, DropReason::Rejected);
                        return true;
                    }
                    Decision::Retry { after } => (format!("HTTP {status} {body_head}"), after),
                },
                Attempt::Failed(msg) => (msg, None),
            };
            attempts += 1;
            Stats::add(&self.stats.retries, 1);
            Stats::add(&self.stats.send_failures, 1);
            self.stats
                .set_last_error(format!("{}: {}", http.url_masked, reason.trim()));
            if self.queue.deadline().is_some() && item.spooled.is_some() {
                tracing::info!(
                    seq = e.seq,
                    "shutting down while the backend fails ({}); undelivered batches stay in the spool for the next run",
                    reason.trim()
                );
                return false;
            }
            let delay = backoff.next_delay(after);
            if self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    url = %http.url_masked,
                    seq = e.seq,
                    attempt = attempts,
                    retry_in = ?delay,
                    "delivery failed, will retry: {}",
                    reason.trim()
                );
                self.last_warn = Some(Instant::now());
            } else {
                tracing::debug!(seq = e.seq, attempt = attempts, retry_in = ?delay, "delivery failed: {}", reason.trim());
            }
            if !self.queue.sleep(delay) {
                self.queue.abandon(item);
                return false;
            }
        }
    }
}

/// The encoder and sink the configuration asks for: stdout gets plain text.
pub fn sink_for(
    cfg: &Options,
    encode: crate::encode::Options,
    identity: crate::encode::Identity,
) -> (Encoder, Sink) {
    match &cfg.url {
        None => (Encoder::stdout(encode.format, identity), Sink::Stdout),
        Some(url) => {
            let enc = Encoder::new(encode.format, encode.compression, identity);
            (enc, Sink::Http(Http::new(cfg, url.expose())))
        }
    }
}
