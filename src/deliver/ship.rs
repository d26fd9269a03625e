//! The shipper thread: takes encoded batches from the queue, oldest first,
//! and delivers each one, to the ingest URL over HTTP (ureq) or to stdout
//! when no URL is set. One request is in flight at a time, so batches arrive
//! in order; a backlog goes out in fewer, larger requests at a bounded pace
//! (`drain`). A failed attempt is retried as `retry.rs` decides; the queue keeps
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
use ureq::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use ureq::unversioned::transport::{Connector, DefaultConnector};

use crate::deliver::coalesce::Coalescing;
use crate::deliver::drain::{self, Request};
use crate::deliver::queue::{Queue, Queued};
use crate::deliver::resolve::CachingResolver;
use crate::deliver::retry::{Backoff, Decision, classify};
use crate::deliver::{retry, tls};
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
    Var::new(
        "PROXY",
        "",
        "an http:// proxy for the ingest URL (CONNECT for https); empty: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment, never for a loopback URL",
    )
    .masked(Mask::Url)
    .live(),
    Var::new("TIMEOUT", "10", "whole-request timeout of one POST").live(),
    Var::new("CONNECT_TIMEOUT", "5", "TCP/TLS connect timeout").live(),
    Var::new(
        "MAX_BATCH_AGE",
        "",
        "a batch older than this is dropped (reason too_old), not retried: this run's batches counted from their cut on the monotonic clock, batches recovered from the spool by their oldest point's timestamp; days allowed (2d); empty: no limit",
    ),
    Var::new(
        "SHUTDOWN_TIMEOUT",
        "10",
        "on SIGTERM/SIGINT, how long to keep delivering queued batches (and the longest a stuck collector can delay the exit)",
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
    /// `PROCSHIP_PROXY` (may hold credentials).
    pub proxy: Option<Secret>,
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
        let proxy = v.opt("PROXY", |s| {
            if !s.starts_with("http://") {
                return Err("an http:// proxy URL such as http://proxy.example:3128".into());
            }
            parse_url(s)?;
            ureq::Proxy::new(s).map_err(|e| format!("a proxy URL ureq takes ({e})"))?;
            Ok(Secret::new(s))
        })?;
        Ok(Options {
            url,
            auth_token,
            headers,
            proxy,
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
    /// Boxed: the agent and the parsed URL and headers are a few hundred bytes.
    Http(Box<Http>),
}

/// The HTTP sink: the agent, and what every request carries parsed once
/// (the URL, the operator's headers and the token), so that a POST only
/// clones them (reference counts, no parsing).
pub struct Http {
    agent: ureq::Agent,
    resolver: CachingResolver,
    /// The URL and the operator's headers; `Err` says why they cannot be
    /// sent (every attempt fails with that).
    fixed: Result<Fixed, String>,
    url_masked: String,
    timeout: Duration,
}

/// What every request of one target carries.
struct Fixed {
    uri: Uri,
    headers: HeaderMap,
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
    pub fn new(cfg: &Options, tls: &tls::Options, url: &str) -> Self {
        let mut config = ureq::Agent::config_builder().proxy(proxy_for(cfg, url));
        if url.starts_with("https://") {
            config = config.tls_config(tls.config());
        }
        let config = config
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
        let resolver = CachingResolver::default();
        let connector = DefaultConnector::default().chain(Coalescing);
        Http {
            agent: ureq::Agent::with_parts(config, connector, resolver.clone()),
            resolver,
            fixed: fixed(cfg, url),
            url_masked: cfg.url_masked(),
            timeout: cfg.timeout,
        }
    }

    /// The request of one batch: the URL and the operator's headers as
    /// parsed once, the content headers of the batch's own encoding.
    fn request<'b>(&self, e: &'b Encoded) -> Result<ureq::http::Request<&'b [u8]>, String> {
        let fixed = self.fixed.as_ref().map_err(Clone::clone)?;
        let mut headers = fixed.headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(e.format.content_type()),
        );
        for (k, v) in e.format.protocol_headers() {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        if let Some(enc) = e.compression.content_encoding() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
        }
        let mut req = ureq::http::Request::new(&e.body[..]);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = fixed.uri.clone();
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// One POST of a batch, with the headers of its own encoding. The
    /// agent's whole-request timeout unless `timeout` is another (a
    /// shutdown's deadline): a request's own configuration is a copy of
    /// the agent's, made only then.
    fn post(&self, e: &Encoded, timeout: Duration) -> Attempt {
        let mut req = match self.request(e) {
            Ok(r) => r,
            Err(why) => return Attempt::Failed(why),
        };
        if timeout != self.timeout {
            req = self
                .agent
                .configure_request(req)
                .timeout_global(Some(timeout))
                .build();
        }
        match self.agent.run(req) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
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

/// The ingest URL, `PROCSHIP_HEADERS` and the bearer token of
/// `PROCSHIP_AUTH_TOKEN`, parsed once; `Err` names what HTTP cannot carry
/// (a header's value is not shown).
fn fixed(cfg: &Options, url: &str) -> Result<Fixed, String> {
    let uri = url
        .parse()
        .map_err(|e| format!("the ingest URL cannot be requested: {e}"))?;
    Ok(Fixed {
        uri,
        headers: operator_headers(cfg)?,
    })
}

fn operator_headers(cfg: &Options) -> Result<HeaderMap, String> {
    let token = cfg
        .auth_token
        .as_ref()
        .map(|t| ("Authorization", format!("Bearer {}", t.expose())));
    let given = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose().to_string()));
    let mut map = HeaderMap::new();
    for (k, v) in given.chain(token) {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("header {k} cannot be sent: {e}"))?;
        let mut value = HeaderValue::try_from(v)
            .map_err(|e| format!("the value of header {k} cannot be sent: {e}"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// The proxy for `url`: `PROCSHIP_PROXY`, else the environment's
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, honouring `NO_PROXY`), and
/// none for a loopback URL unless `PROCSHIP_PROXY` asks for one.
fn proxy_for(cfg: &Options, url: &str) -> Option<ureq::Proxy> {
    if let Some(p) = &cfg.proxy {
        return ureq::Proxy::new(p.expose()).ok();
    }
    let host = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    ureq::Proxy::try_from_env().filter(|p| url.parse().is_ok_and(|u| !p.is_no_proxy(&u)))
}

/// The HTTP target a reload hands over (the ship feature's live step:
/// URL, credentials, timeouts); the shipper takes it before its next attempt.
#[derive(Default)]
pub struct Target(std::sync::Mutex<Option<Http>>);

impl Target {
    pub fn offer(&self, cfg: &Options, tls: &tls::Options) {
        if let Some(url) = &cfg.url {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Http::new(cfg, tls, url.expose()));
        }
    }

    fn take(&self) -> Option<Http> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The shipper's own clock for shutdown: the agent sets the deadline, and
/// every wait between attempts wakes for it.
#[derive(Default)]
pub struct Stop {
    deadline: std::sync::Mutex<Option<Instant>>,
    cv: std::sync::Condvar,
}

impl Stop {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shutdown: deliver what is queued until `deadline`.
    pub fn at(&self, deadline: Instant) {
        *self.lock() = Some(deadline);
        self.cv.notify_all();
    }

    fn deadline(&self) -> Option<Instant> {
        *self.lock()
    }

    /// Sleeps up to `d`, waking early when shutdown starts. False when the
    /// shutdown deadline comes before `d` is over.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut deadline = self.lock();
        loop {
            let now = Instant::now();
            let stop = deadline.map_or(until, |dl| dl.min(until));
            if now >= stop {
                return deadline.is_none_or(|dl| until <= dl);
            }
            deadline = self
                .cv
                .wait_timeout(deadline, stop - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Batches dropped as too old since the last log line about them.
#[derive(Default)]
struct TooOld {
    batches: u64,
    points: u64,
    logged: Option<Instant>,
}

/// What a failed attempt leaves: why, and the server's Retry-After.
struct Failure {
    reason: String,
    after: Option<Duration>,
    /// Retried at the capped delay, not with backoff: refused credentials
    /// or a certificate problem, which do not fix themselves in seconds.
    capped: bool,
}

/// How one attempt ended.
enum Outcome {
    /// Delivered or dropped for a counted reason: take the next batch.
    Done,
    /// A joined request rejected as a whole: send its parts one by one.
    Split,
    Retry(Failure),
}

pub struct Shipper {
    pub sink: Sink,
    target: Arc<Target>,
    pub queue: Arc<Queue>,
    pub stats: Arc<Stats>,
    stop: Arc<Stop>,
    pub retry: retry::Options,
    pub max_batch_age: Option<Duration>,
    /// This run's id (`Identity::run`): its batches are aged on the boot clock.
    run: u64,
    drain: drain::Options,
    last_warn: Option<Instant>,
    too_old: TooOld,
    /// The TLS failure last logged (again only when it changes).
    tls_logged: Option<String>,
}

/// The running shipper, as the agent holds it.
pub struct Handle {
    thread: std::thread::JoinHandle<()>,
    stop: Arc<Stop>,
    queue: Arc<Queue>,
}

impl Handle {
    /// Ends the run: no more batches come, what is queued may be delivered
    /// until `deadline`; returns when the shipper is done.
    pub fn stop(self, deadline: Instant) {
        self.stop.at(deadline);
        self.queue.close();
        if self.thread.join().is_err() {
            tracing::error!("the shipper thread panicked");
        }
    }
}

/// The shipper thread's scheduling: `SCHED_BATCH`, the same share of the
/// CPU as before but no preemption on wakeup. Woken by the batch the
/// collector has just queued, the shipper no longer interrupts the
/// collector (or the host's own work) on that CPU; it runs when the
/// running task's slice ends or another CPU is free, milliseconds at most,
/// nothing beside a cadence of seconds. Measured per thread at 1 s
/// (docs/PERFORMANCE.md, "The shipper's share"): the collector's
/// involuntary switches 0.8 → 0 a cycle, the shipper 171 → 136 µs a
/// cycle. A policy the operator chose
/// (systemd's `CPUSchedulingPolicy=`: idle, batch, a real-time one) is
/// left as it is: only the default policy is changed.
fn never_preempt() {
    use nix::libc::{
        SCHED_BATCH, SCHED_OTHER, sched_getscheduler, sched_param, sched_setscheduler,
    };
    // SAFETY: both calls act on the calling thread (pid 0) only;
    // `sched_setscheduler` reads `param` and keeps no pointer to it.
    let refused = unsafe {
        sched_getscheduler(0) == SCHED_OTHER
            && sched_setscheduler(0, SCHED_BATCH, &sched_param { sched_priority: 0 }) != 0
    };
    if refused {
        tracing::debug!(
            "the shipper keeps the default scheduling policy: SCHED_BATCH refused ({})",
            std::io::Error::last_os_error()
        );
    }
}

impl Shipper {
    pub fn new(
        cfg: &Options,
        retry: retry::Options,
        sink: Sink,
        queue: Arc<Queue>,
        stats: Arc<Stats>,
        target: Arc<Target>,
        run: u64,
    ) -> Self {
        Shipper {
            run,
            drain: drain::Options::default(),
            sink,
            target,
            queue,
            stats,
            stop: Arc::new(Stop::default()),
            retry,
            max_batch_age: cfg.max_batch_age,
            last_warn: None,
            too_old: TooOld::default(),
            tls_logged: None,
        }
    }

    /// How a backlog drains (`PROCSHIP_DRAIN_*`); by default one batch
    /// per request, without a pause.
    pub fn drain(mut self, drain: drain::Options) -> Self {
        self.drain = drain;
        self
    }

    pub fn spawn(mut self) -> std::io::Result<Handle> {
        let stop = self.stop.clone();
        let queue = self.queue.clone();
        let thread = std::thread::Builder::new()
            .name("procship-ship".into())
            .spawn(move || {
                never_preempt();
                self.run()
            })?;
        Ok(Handle {
            thread,
            stop,
            queue,
        })
    }

    /// Delivers until the queue is closed and empty (or the shutdown
    /// deadline passed); what is left goes to the spool, or is counted.
    pub fn run(&mut self) {
        while let Some(item) = self.queue.pop() {
            if self.stop.deadline().is_some_and(|d| Instant::now() >= d) {
                self.queue.abandon(item);
                break;
            }
            if self.too_old(&item) {
                continue;
            }
            let keep_going = match self.gather(item) {
                Ok(req) => self.deliver(req),
                Err(parts) => self.deliver_each(parts),
            };
            if !keep_going {
                break;
            }
            self.pace();
        }
        self.queue.finish();
    }

    /// The request that carries `first`: alone, or joined by the batches
    /// that wait behind it (a backlog draining). `Err`: parts that could
    /// not be joined, to send one by one.
    fn gather(&mut self, first: Queued) -> Result<Request, Vec<Queued>> {
        if !matches!(self.sink, Sink::Http(_)) || !crate::encode::join::joins(first.batch.format) {
            return Ok(Request::single(first));
        }
        let mut taken = first.batch.body.len();
        let mut rest = Vec::new();
        let (run, max) = (self.run, self.max_batch_age);
        let fresh = |e: &Encoded| !over_age(e, run, max);
        while let Some(next) = self.queue.pop_like(&first, self.drain.room(taken), fresh) {
            taken += next.batch.body.len();
            rest.push(next);
        }
        Request::joined(first, rest).map_err(|(parts, why)| {
            tracing::warn!(
                "cannot join {} batches into one request ({why}); sending them one by one",
                parts.len()
            );
            parts
        })
    }

    /// Parts sent one request each; false as `deliver` says (what is left
    /// is abandoned: kept in the spool, or counted).
    fn deliver_each(&mut self, parts: Vec<Queued>) -> bool {
        let mut parts = parts.into_iter();
        for part in parts.by_ref() {
            if !self.deliver(Request::single(part)) {
                parts.for_each(|p| self.queue.abandon(p));
                return false;
            }
        }
        true
    }

    /// While a backlog drains, the next request waits `PROCSHIP_DRAIN_PACE`.
    fn pace(&self) {
        let d = self.queue.depth();
        let waiting = d.batches as u64 + d.spool.map_or(0, |s| s.batches);
        if let Some(p) = self.drain.pause(waiting, self.stop.deadline().is_some()) {
            self.stop.sleep(p);
        }
    }

    fn delivered(&self, req: &Request) {
        self.stats
            .last_success_ns
            .store(crate::point::now_ns(), std::sync::atomic::Ordering::Relaxed);
        if self.stats.refused_since_ns() != 0 {
            tracing::info!("the backend accepts the credentials again");
            self.stats.set_refused_since(0);
        }
        for part in req.parts() {
            Stats::add(&self.stats.sent_points, part.batch.points);
            Stats::add(&self.stats.sent_batches, 1);
        }
        self.ack(req);
    }

    fn dropped(&self, req: &Request, why: DropReason) {
        for part in req.parts() {
            self.stats.drop_points(why, part.batch.points);
        }
        self.ack(req);
    }

    /// The queue forgets a request's parts: acknowledging the last one
    /// acknowledges those before it.
    fn ack(&self, req: &Request) {
        if let Some(last) = req.parts().last() {
            self.queue.ack(last);
        }
    }

    /// Gives a request's parts back at shutdown: kept in the spool, or counted.
    fn abandon(&self, req: Request) {
        req.into_parts().for_each(|p| self.queue.abandon(p));
    }

    /// True when a batch is older than `PROCSHIP_MAX_BATCH_AGE`: dropped
    /// and counted, the log line rate-limited (an outage can age thousands).
    fn too_old(&mut self, item: &Queued) -> bool {
        let Some(max) = self.max_batch_age else {
            return false;
        };
        if !over_age(&item.batch, self.run, Some(max)) {
            return false;
        }
        self.stats
            .drop_points(DropReason::TooOld, item.batch.points);
        self.queue.ack(item);
        let t = &mut self.too_old;
        t.batches += 1;
        t.points += item.batch.points;
        if t.logged.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                batches = t.batches,
                points = t.points,
                seq = item.batch.seq,
                max_age = ?max,
                "batches older than PROCSHIP_MAX_BATCH_AGE dropped instead of sent"
            );
            *t = TooOld {
                logged: Some(Instant::now()),
                ..TooOld::default()
            };
        }
        true
    }

    /// Delivers one batch, retrying as the policy says. False when the
    /// shipper should stop: shutting down, and the backend is failing with
    /// the rest safe in the spool.
    fn deliver(&mut self, item: Request) -> bool {
        self.stats
            .in_flight
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let keep_going = match self.sink {
            Sink::Stdout => {
                self.to_stdout(&item);
                true
            }
            Sink::Http(_) => self.retry_until_done(item),
        };
        self.stats
            .in_flight
            .store(0, std::sync::atomic::Ordering::Relaxed);
        keep_going
    }

    fn to_stdout(&self, item: &Request) {
        let e = item.batch();
        let mut out = std::io::stdout().lock();
        match out.write_all(&e.body).and_then(|_| out.flush()) {
            Ok(()) => self.delivered(item),
            Err(err) => {
                tracing::error!(
                    seq = e.seq,
                    points = e.points,
                    "cannot write to stdout, batch dropped: {err}"
                );
                self.dropped(item, DropReason::OutputError);
            }
        }
    }

    /// Attempts until delivered or dropped, with backoff between; false
    /// when shutdown ends the tries (the batch is abandoned: kept in the
    /// spool, or counted).
    fn retry_until_done(&mut self, item: Request) -> bool {
        let mut backoff = Backoff::new(self.retry.initial, self.retry.max_delay, fastrand::u64(..));
        let mut attempts = 0u64;
        loop {
            // A reload (SIGHUP) may have changed the URL or the credentials:
            // the next attempt, even of this batch, uses them.
            if let Some(h) = self.target.take() {
                tracing::info!(url = %h.url_masked, "delivering to the reloaded target");
                self.sink = Sink::Http(Box::new(h));
            }
            let Some(timeout) = self.attempt_timeout() else {
                self.abandon(item);
                return false;
            };
            let failure = match self.attempt(&item, timeout, attempts) {
                Outcome::Done => {
                    item.into_parts()
                        .for_each(|p| self.queue.recycle(p.batch.body));
                    return true;
                }
                Outcome::Split => return self.deliver_each(item.into_parts().collect()),
                Outcome::Retry(f) => f,
            };
            attempts += 1;
            let delay = if failure.capped {
                // An operator's mistake that will be fixed: no fast pace.
                self.retry.max_delay.max(failure.after.unwrap_or_default())
            } else {
                backoff.next_delay(failure.after)
            };
            if !self.wait_to_retry(&item, &failure, delay, attempts) {
                self.abandon(item);
                return false;
            }
        }
    }

    /// The whole-request timeout of the next attempt, cut to what is left
    /// before the shutdown deadline; `None` when nothing is left.
    fn attempt_timeout(&self) -> Option<Duration> {
        let Sink::Http(http) = &self.sink else {
            return None;
        };
        match self.stop.deadline() {
            None => Some(http.timeout),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| http.timeout.min(left))
            }
        }
    }

    /// One POST, classified.
    fn attempt(&mut self, item: &Request, timeout: Duration, attempts: u64) -> Outcome {
        let Sink::Http(http) = &self.sink else {
            return Outcome::Done;
        };
        let e = item.batch();
        let (status, retry_after, body_head) = match http.post(e, timeout) {
            Attempt::Answered {
                status,
                retry_after,
                body_head,
            } => (status, retry_after, body_head),
            Attempt::Failed(reason) => {
                let url = http.url_masked.clone();
                return Outcome::Retry(self.transport_failure(&url, reason));
            }
        };
        match classify(
            status,
            retry_after.as_deref(),
            &body_head,
            SystemTime::now(),
        ) {
            Decision::Delivered => {
                if attempts > 0 {
                    tracing::info!(
                        seq = e.seq,
                        attempts = attempts + 1,
                        "delivered after retrying"
                    );
                }
                self.last_warn = None;
                self.tls_logged = None;
                self.delivered(item);
            }
            Decision::Reject => {
                let url = http.url_masked.clone();
                return self.rejected(item, &url, status, &body_head);
            }
            Decision::Retry { after } => {
                return Outcome::Retry(Failure {
                    reason: format!("HTTP {status} {body_head}"),
                    after,
                    capped: false,
                });
            }
            Decision::Refused { after } => {
                let hint = crate::deliver::retry::reject_hint(status, &body_head);
                if self.stats.refused_since_ns() == 0 {
                    tracing::error!(
                        url = %http.url_masked,
                        status,
                        response = %body_head,
                        "{hint}; batches are kept and retried every PROCSHIP_RETRY_MAX_DELAY until the credentials are fixed"
                    );
                    self.stats.set_refused_since(crate::point::now_ns());
                }
                return Outcome::Retry(Failure {
                    reason: format!("HTTP {status} ({hint}): {body_head}"),
                    after,
                    capped: true,
                });
            }
        }
        Outcome::Done
    }

    /// A permanent refusal: a joined request goes again batch by batch (one
    /// bad batch loses only itself); a single batch is dropped and counted.
    fn rejected(&mut self, item: &Request, url: &str, status: u16, body_head: &str) -> Outcome {
        if item.batches() > 1 {
            tracing::warn!(
                url = %url,
                status,
                batches = item.batches(),
                response = %body_head,
                "a joined request was rejected; sending its batches one by one"
            );
            return Outcome::Split;
        }
        let e = item.batch();
        Stats::add(&self.stats.send_failures, 1);
        let hint = crate::deliver::retry::reject_hint(status, body_head);
        self.stats.set_last_error(format!(
            "{url}: HTTP {status} (permanent, batch {} dropped; {hint}): {body_head}",
            e.seq
        ));
        tracing::error!(
            url = %url,
            status,
            seq = e.seq,
            points = e.points,
            response = %body_head,
            "{hint}; batch dropped"
        );
        self.dropped(item, DropReason::Rejected);
        Outcome::Done
    }

    /// A POST that got no answer. A certificate problem (it does not fix
    /// itself within seconds) is said once per change, with what to check,
    /// and retried at the capped delay; anything else is a network error.
    fn transport_failure(&mut self, url: &str, reason: String) -> Failure {
        let Some(hint) = tls::hint(&reason) else {
            return Failure {
                reason,
                after: None,
                capped: false,
            };
        };
        if self.tls_logged.as_deref() != Some(reason.as_str()) {
            tracing::error!(url = %url, "TLS: {hint}: {reason}");
            self.tls_logged = Some(reason.clone());
        }
        Failure {
            reason: format!("{hint}: {reason}"),
            after: None,
            capped: true,
        }
    }

    /// Counts a failed attempt, says so (rate-limited) and waits `delay`.
    /// False when the shipper should give up on the batch: shutdown began
    /// while the backend fails (a spooled batch stays for the next run), or
    /// the deadline falls within the wait.
    fn wait_to_retry(
        &mut self,
        item: &Request,
        f: &Failure,
        delay: Duration,
        attempts: u64,
    ) -> bool {
        let url = match &self.sink {
            Sink::Http(http) => http.url_masked.clone(),
            Sink::Stdout => "stdout".into(),
        };
        let reason = f.reason.trim();
        let seq = item.batch().seq;
        Stats::add(&self.stats.retries, 1);
        Stats::add(&self.stats.send_failures, 1);
        self.stats.set_last_error(format!("{url}: {reason}"));
        if self.stop.deadline().is_some() && item.first.spooled.is_some() {
            tracing::info!(
                seq,
                "shutting down while the backend fails ({reason}); undelivered batches stay in the spool for the next run"
            );
            return false;
        }
        if !f.capped && self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(url = %url, seq, attempt = attempts, retry_in = ?delay, "delivery failed, will retry: {reason}");
            self.last_warn = Some(Instant::now());
        } else {
            tracing::debug!(seq, attempt = attempts, retry_in = ?delay, "delivery failed: {reason}");
        }
        self.stop.sleep(delay)
    }
}

/// True when `e` is older than `max` (`PROCSHIP_MAX_BATCH_AGE`; `None`: no
/// limit), aged as `Encoded::age_ns` says for run `run`.
fn over_age(e: &Encoded, run: u64, max: Option<Duration>) -> bool {
    max.is_some_and(|m| {
        let age = e.age_ns(run, crate::point::boot_clock_ns(), crate::point::now_ns());
        u128::from(age) >= m.as_nanos()
    })
}

/// The encoder and sink the configuration asks for: stdout gets plain text.
pub fn sink_for(
    cfg: &Options,
    tls: &tls::Options,
    encode: crate::encode::Options,
    identity: crate::encode::Identity,
) -> (Encoder, Sink) {
    match &cfg.url {
        None => (Encoder::stdout(encode.format, identity), Sink::Stdout),
        Some(url) => {
            let enc = Encoder::new(encode.format, encode.compression, identity)
                .gzip_level(encode.gzip_level);
            (enc, Sink::Http(Box::new(Http::new(cfg, tls, url.expose()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Born, Compression, Format};

    /// Every format with every compression makes its request: the content
    /// and protocol headers are constants taken without parsing, which
    /// would panic on one HTTP cannot carry.
    #[test]
    fn every_encoding_makes_its_request_with_the_operator_headers() {
        let cfg = Options {
            url: None,
            auth_token: Some(Secret::new("tok")),
            headers: vec![("X-Scope-OrgID".into(), Secret::new("tenant-a"))],
            proxy: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_batch_age: None,
            shutdown_timeout: Duration::from_secs(10),
        };
        let http = Http::new(&cfg, &tls::Options::default(), "http://127.0.0.1:9/write");
        for format in Format::ALL {
            for compression in Compression::ALL {
                let e = Encoded {
                    seq: 1,
                    points: 1,
                    oldest: 0,
                    format,
                    compression,
                    born: Born::default(),
                    body: b"x".to_vec(),
                };
                let req = http.request(&e).unwrap();
                let h = req.headers();
                assert_eq!(req.uri(), "http://127.0.0.1:9/write");
                assert_eq!(h[header::CONTENT_TYPE], format.content_type());
                assert_eq!(
                    h.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()),
                    compression.content_encoding()
                );
                for (k, v) in format.protocol_headers() {
                    assert_eq!(h[*k], *v);
                }
                assert_eq!(h["authorization"], "Bearer tok");
                assert_eq!(h["x-scope-orgid"], "tenant-a");
                assert!(h["authorization"].is_sensitive());
            }
        }
    }
}
