//! The local status endpoint (`PROCSHIP_STATUS_ADDR`, off by default): one
//! thread serving, one request at a time,
//! - `GET /healthz`: 200 while the shipper delivered within
//!   `PROCSHIP_HEALTH_WINDOW` or has nothing to deliver, else 503; the body
//!   says why;
//! - `GET /status`: JSON with the version, uptime, effective configuration
//!   (secrets masked), counters, queue and spool depth, last error;
//! - `GET /metrics`: Prometheus text of the last cycle's points, the
//!   `agent` self-telemetry included.
//!
//! Requests are parsed with `httparse`; the server around it is ours because
//! it must stay bounded against any client: a request head over 8 KiB gets
//! 431, a client silent for 2 s gets 408, a bad request 400, another method
//! 405, another path 404, and every connection is closed after one answer.
//! A slow client delays other status requests by at most those 2 s and never
//! touches collection or delivery, which run on their own threads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Effective, Reload, Values, Var, parse_positive_duration};
use crate::deliver::queue::Queue;
use crate::encode::promtext;
use crate::point::Point;
use crate::stats::{DropReason, Stats};

pub const VARS: &[Var] = &[
    Var::new(
        "STATUS_ADDR",
        "",
        "status endpoint (/healthz, /status, /metrics): a port (on 127.0.0.1) or ip:port; empty: off. Beyond loopback it warns: the endpoint has no authentication (it never shows secrets)",
    ),
    Var::new(
        "HEALTH_WINDOW",
        "5m",
        "/healthz is 503 when batches wait and none was delivered for this long",
    ),
];

/// `PROCSHIP_STATUS_ADDR` and `PROCSHIP_HEALTH_WINDOW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Where the endpoint listens, when on.
    pub addr: Option<SocketAddr>,
    pub health_window: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            addr: v.opt("STATUS_ADDR", parse_status_addr)?,
            health_window: v.get("HEALTH_WINDOW", parse_positive_duration)?,
        })
    }
}

/// A port (listening on 127.0.0.1), or an ip:port / [ip6]:port.
fn parse_status_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    const ACCEPTED: &str =
        "a port such as 9101 (on 127.0.0.1), or ip:port such as 127.0.0.1:9101 or [::1]:9101";
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(p) = port.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.parse().map_err(|_| ACCEPTED.to_string())
}

/// The largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint reports, shared with the collection loop and shipper.
pub struct Shared {
    pub stats: Arc<Stats>,
    pub queue: Arc<Queue>,
    pub started: Instant,
    pub started_ns: i64,
    pub health_window: Duration,
    /// The configuration in effect (secrets masked).
    config: Mutex<Effective>,
    snapshot: Mutex<Snapshot>,
}

/// The last cycle: common tags and points.
#[derive(Default)]
struct Snapshot {
    common: Vec<(String, String)>,
    points: Vec<Point>,
}

impl Shared {
    pub fn new(
        cfg: &Options,
        effective: Effective,
        stats: Arc<Stats>,
        queue: Arc<Queue>,
        started_ns: i64,
    ) -> Self {
        Shared {
            stats,
            queue,
            started: Instant::now(),
            started_ns,
            health_window: cfg.health_window,
            config: Mutex::new(effective),
            snapshot: Mutex::new(Snapshot::default()),
        }
    }

    /// After a reload: the configuration now in effect.
    pub fn set_config(&self, effective: Effective) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = effective;
    }

    /// Keeps a copy of a cycle's points for `/metrics`.
    pub fn set_snapshot(&self, common: &[(String, String)], points: &[Point]) {
        let mut s = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        s.common.clear();
        s.common.extend_from_slice(common);
        s.points.clear();
        s.points.extend_from_slice(points);
    }

    fn facts(&self, now_ns: i64) -> Facts {
        Facts {
            now_ns,
            started_ns: self.started_ns,
            last_success_ns: self.stats.last_success_ns(),
            refused_since_ns: self.stats.refused_since_ns(),
            pending: self.pending(),
            collecting: self.stats.collecting.current(),
        }
    }

    /// Batches waiting for delivery: queued, spooled, or in the shipper's hands.
    fn pending(&self) -> u64 {
        let d = self.queue.depth();
        d.batches as u64
            + d.spool
                .map_or(Stats::get(&self.stats.in_flight), |p| p.batches)
    }
}

/// What the health verdict is decided on (ns since the epoch; 0: never).
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub now_ns: i64,
    pub started_ns: i64,
    pub last_success_ns: i64,
    /// Since when the backend refuses the credentials (0: it does not).
    pub refused_since_ns: i64,
    /// Batches waiting for delivery.
    pub pending: u64,
    /// The collector running now and since when (ns since the epoch).
    pub collecting: Option<(&'static str, i64)>,
}

/// A collector that has not returned for this long is stalled (a
/// collection takes milliseconds; a network mount's statvfs is bounded at
/// `PROCSHIP_DISK_STATFS_TIMEOUT`).
pub const STALLED_AFTER: Duration = Duration::from_secs(60);

/// The health verdict: `Ok(why)` healthy, `Err(why)` not. Refused
/// credentials are unhealthy at once: they will not fix themselves.
pub fn health(f: Facts, window: Duration) -> Result<String, String> {
    let Facts {
        now_ns,
        started_ns,
        last_success_ns,
        refused_since_ns,
        pending,
        collecting,
    } = f;
    let secs = |ns: i64| ns.max(0) / 1_000_000_000;
    let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
    if let Some((name, since)) = collecting
        && now_ns - since > i64::try_from(STALLED_AFTER.as_nanos()).unwrap_or(i64::MAX)
    {
        return Err(format!(
            "collection stalled: the {name} collector has not returned for {}s (a hung mount, or a kernel or file that does not answer?)",
            secs(now_ns - since)
        ));
    }
    if pending == 0 {
        return Ok("nothing waiting for delivery".into());
    }
    if refused_since_ns > 0 {
        return Err(format!(
            "{pending} batches waiting; the backend refuses the credentials (401/403/407) since {}s ago",
            secs(now_ns - refused_since_ns)
        ));
    }
    if last_success_ns > 0 && now_ns - last_success_ns <= window_ns {
        return Ok(format!(
            "{pending} batches waiting; last delivery {}s ago",
            secs(now_ns - last_success_ns)
        ));
    }
    if last_success_ns == 0 && now_ns - started_ns <= window_ns {
        return Ok(format!(
            "{pending} batches waiting; starting, no delivery yet"
        ));
    }
    let last = if last_success_ns > 0 {
        format!("last delivery {}s ago", secs(now_ns - last_success_ns))
    } else {
        format!(
            "no delivery since the start {}s ago",
            secs(now_ns - started_ns)
        )
    };
    Err(format!(
        "{pending} batches waiting; {last}, more than PROCSHIP_HEALTH_WINDOW ({}s)",
        window.as_secs()
    ))
}

/// A response: status, content type, body.
struct Reply(u16, &'static str, String);

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

fn status_json(sh: &Shared, now_ns: i64) -> String {
    let s = &sh.stats;
    let d = sh.queue.depth();
    let health = health(sh.facts(now_ns), sh.health_window);
    let mut config = serde_json::Map::new();
    let current = sh.config.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for s in current.iter() {
        config.insert(
            s.var.full_name(),
            serde_json::json!({"value": s.shown, "source": s.source.to_string(), "reload": match s.var.reload { Reload::Live => "live", Reload::Restart => "restart" }}),
        );
    }
    let mut dropped = serde_json::Map::new();
    for r in DropReason::ALL {
        dropped.insert(r.name().into(), s.dropped(r).into());
    }
    let last_success = s.last_success_ns();
    let last_error = s.last_error();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": sh.started.elapsed().as_secs_f64(),
        "healthy": health.is_ok(),
        "health": match &health { Ok(m) | Err(m) => m },
        "counters": {
            "cycles": Stats::get(&s.cycles),
            "collected": Stats::get(&s.collected),
            "sent": Stats::get(&s.sent_points),
            "batches_sent": Stats::get(&s.sent_batches),
            "retries": Stats::get(&s.retries),
            "send_failures": Stats::get(&s.send_failures),
            "dropped": s.dropped_total(),
            "dropped_by_reason": dropped,
            "skipped_ticks": Stats::get(&s.skipped_ticks),
            "collector_errors": Stats::get(&s.collector_errors),
            "spool_recovered": Stats::get(&s.spool_recovered),
            "spool_damaged_ranges": Stats::get(&s.spool_damaged_ranges),
        },
        "queue": {"batches": d.batches, "bytes": d.bytes},
        "spool": d.spool.map(|p| serde_json::json!({"batches": p.batches, "points": p.points, "bytes": p.bytes, "disk_bytes": p.disk_bytes})),
        "last_success_unix": (last_success > 0).then_some(last_success / 1_000_000_000),
        "last_error": (!last_error.is_empty()).then_some(last_error),
        "config": config,
    })
    .to_string()
}

fn route(sh: &Shared, method: &str, path: &str) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    if !matches!(path, "/healthz" | "/status" | "/metrics" | "/") {
        return Reply(
            404,
            TEXT,
            format!("no such path: {}\n", path.escape_debug()),
        );
    }
    if method != "GET" && method != "HEAD" {
        return Reply(405, TEXT, "only GET and HEAD\n".into());
    }
    let now = crate::point::now_ns();
    match path {
        "/healthz" => {
            let h = health(sh.facts(now), sh.health_window);
            match h {
                Ok(m) => Reply(200, TEXT, format!("ok: {m}\n")),
                Err(m) => {
                    let err = sh.stats.last_error();
                    let tail = if err.is_empty() {
                        String::new()
                    } else {
                        format!("; last error: {err}")
                    };
                    Reply(503, TEXT, format!("unhealthy: {m}{tail}\n"))
                }
            }
        }
        "/status" => Reply(200, "application/json", status_json(sh, now)),
        "/metrics" => {
            let snap = sh.snapshot.lock().unwrap_or_else(|e| e.into_inner());
            Reply(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                promtext::render(&snap.common, &snap.points, &crate::collect::names::help),
            )
        }
        _ => Reply(
            200,
            TEXT,
            "procship status endpoint: /healthz /status /metrics\n".into(),
        ),
    }
}

/// Reads one request head, bounded in size and time.
fn read_request(stream: &mut TcpStream) -> Result<(String, String), Reply> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(Reply(400, TEXT, "incomplete request\n".into())),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Reply(408, TEXT, "request not received in time\n".into()));
            }
            Err(_) => return Err(Reply(400, TEXT, "cannot read the request\n".into())),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok((
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                ));
            }
            Ok(httparse::Status::Partial) if len == buf.len() => {
                return Err(Reply(
                    431,
                    TEXT,
                    format!("request head larger than {MAX_HEAD} bytes\n"),
                ));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Reply(431, TEXT, "too many headers\n".into()));
            }
            Err(e) => return Err(Reply(400, TEXT, format!("bad request: {e}\n"))),
        }
    }
}

fn serve(sh: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let (reply, head_only) = match read_request(&mut stream) {
        Ok((method, path)) => (route(sh, &method, &path), method == "HEAD"),
        Err(r) => (r, false),
    };
    let Reply(status, ctype, body) = reply;
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        reason(status),
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the answer before the close resets the connection.
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Binds `addr` and serves from one thread for the life of the process.
/// Binding errors are returned (a configuration problem: the port is taken).
pub fn spawn(addr: SocketAddr, sh: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            addr = %bound,
            "the status endpoint listens beyond loopback; it has no authentication (it shows no secrets), so firewall it"
        );
    }
    std::thread::Builder::new()
        .name("procship-status".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => serve(&sh, stream),
                    Err(e) => {
                        tracing::debug!("status endpoint: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok(bound)
}

/// `procship status`: asks the running agent's `/status` and prints it for
/// a person. Exit 0 when healthy, 1 when not, 69 when it cannot be asked.
pub mod client {
    use std::process::ExitCode;
    use std::time::Duration;

    use super::Options;

    /// sysexits.h EX_UNAVAILABLE.
    const EX_UNAVAILABLE: u8 = 69;

    fn fetch(cfg: &Options) -> Result<(String, serde_json::Value), String> {
        let mut addr = cfg.addr.ok_or(
            "PROCSHIP_STATUS_ADDR is not set, so the agent serves no status; set it (e.g. 9101) and restart the agent",
        )?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let url = format!("http://{addr}/status");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .get(&url)
            .call()
            .map_err(|e| format!("cannot reach the agent at {url}: {e} (is it running with PROCSHIP_STATUS_ADDR={addr}?)"))?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: cannot read the answer: {e}"))?;
        let v = serde_json::from_str(&body)
            .map_err(|e| format!("{url}: not a procship status: {e}"))?;
        Ok((url, v))
    }

    fn ago(unix: Option<i64>) -> String {
        let now = crate::point::now_ns() / 1_000_000_000;
        match unix {
            Some(t) => format!("{}s ago", (now - t).max(0)),
            None => "never".into(),
        }
    }

    /// The status as lines for a person.
    pub fn render(url: &str, v: &serde_json::Value) -> String {
        let c = &v["counters"];
        let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
        let cfg = |k: &str| v["config"][k]["value"].as_str().unwrap_or("").to_string();
        let mut out = format!(
            "procship {} ({url}): {} ({})\n",
            v["version"].as_str().unwrap_or("?"),
            if v["healthy"] == true {
                "healthy"
            } else {
                "UNHEALTHY"
            },
            v["health"].as_str().unwrap_or("")
        );
        let up = v["uptime_seconds"].as_f64().unwrap_or(0.0) as u64;
        out.push_str(&format!(
            "up {}h{:02}m{:02}s, {} cycles; collected {} points, sent {} in {} batches\n",
            up / 3600,
            up / 60 % 60,
            up % 60,
            n(&c["cycles"]),
            n(&c["collected"]),
            n(&c["sent"]),
            n(&c["batches_sent"])
        ));
        let reasons: Vec<String> = c["dropped_by_reason"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, x)| n(x) > 0)
                    .map(|(k, x)| format!("{k} {}", n(x)))
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "dropped {}{}; retries {}, failed attempts {}\n",
            n(&c["dropped"]),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            n(&c["retries"]),
            n(&c["send_failures"])
        ));
        out.push_str(&format!(
            "waiting: {} batches ({} bytes) in memory",
            n(&v["queue"]["batches"]),
            n(&v["queue"]["bytes"])
        ));
        if v["spool"].is_object() {
            out.push_str(&format!(
                ", {} batches ({} bytes) in the spool",
                n(&v["spool"]["batches"]),
                n(&v["spool"]["bytes"])
            ));
        }
        out.push_str(&format!(
            "\nlast delivery: {}\n",
            ago(v["last_success_unix"].as_i64())
        ));
        if let Some(e) = v["last_error"].as_str() {
            out.push_str(&format!("last error: {e}\n"));
        }
        out.push_str(&format!(
            "output {} as {}, every {} s, collectors {}\n",
            match cfg("PROCSHIP_INGEST_URL") {
                u if u.is_empty() => "stdout".to_string(),
                u => u,
            },
            cfg("PROCSHIP_FORMAT"),
            cfg("PROCSHIP_INTERVAL"),
            cfg("PROCSHIP_COLLECTORS")
        ));
        out
    }

    pub fn run(cfg: &Options) -> ExitCode {
        match fetch(cfg) {
            Ok((url, v)) => {
                print!("{}", render(&url, &v));
                if v["healthy"] == true {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("procship status: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn at(now: i64, last: i64, pending: u64) -> Facts {
        Facts {
            now_ns: now,
            started_ns: 0,
            last_success_ns: last,
            refused_since_ns: 0,
            collecting: None,
            pending,
        }
    }

    #[test]
    fn health_verdicts() {
        let w = Duration::from_secs(300);
        assert!(health(at(1000 * S, 0, 0), w).is_ok(), "nothing to deliver");
        assert!(
            health(at(1000 * S, 900 * S, 5), w).is_ok(),
            "recent delivery"
        );
        assert!(health(at(100 * S, 0, 5), w).is_ok(), "still starting");
        let e = health(at(1000 * S, 100 * S, 5), w).unwrap_err();
        assert!(
            e.contains("last delivery 900s ago") && e.contains("5 batches"),
            "{e}"
        );
        let e = health(at(1000 * S, 0, 2), w).unwrap_err();
        assert!(e.contains("no delivery since the start 1000s ago"), "{e}");
        let refused = Facts {
            refused_since_ns: 990 * S,
            ..at(1000 * S, 980 * S, 3)
        };
        let e = health(refused, w).unwrap_err();
        assert!(
            e.contains("refuses the credentials") && e.contains("10s ago"),
            "{e}"
        );
        // A collector that does not return: unhealthy, named, even with
        // nothing waiting; a slow one is not.
        let stalled = Facts {
            collecting: Some(("disk", 900 * S)),
            ..at(1000 * S, 0, 0)
        };
        let e = health(stalled, w).unwrap_err();
        assert!(
            e.contains("the disk collector has not returned for 100s"),
            "{e}"
        );
        let slow = Facts {
            collecting: Some(("disk", 990 * S)),
            ..at(1000 * S, 0, 0)
        };
        assert!(health(slow, w).is_ok());
    }
}
