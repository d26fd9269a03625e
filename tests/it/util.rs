//! Shared test helpers: run the real binary with a clean environment in its
//! own temporary directory, and a real HTTP listener on 127.0.0.1 that
//! answers from a script and records every request. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_procship");

pub fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "procship-it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

/// The binary with an empty environment (no user config can leak in), run
/// in a fresh directory so no ./.env is picked up.
pub fn procship(vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    let cwd = tempdir("cwd");
    // An empty ./.env: the host's /etc/procship/procship.env (read when
    // there is no ./.env) must not leak into tests.
    std::fs::write(cwd.join(".env"), "").unwrap();
    c.env_clear().current_dir(cwd);
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// `procship(vars)` run by `wrapper` (a program and its arguments, such as
/// `unshare …`), with the same clean environment and directory.
pub fn procship_under(wrapper: &[&str], vars: &[(&str, &str)]) -> Command {
    let direct = procship(vars);
    let mut c = Command::new(wrapper[0]);
    c.args(&wrapper[1..]).arg(BIN).env_clear();
    if let Some(dir) = direct.get_current_dir() {
        c.current_dir(dir);
    }
    for (k, v) in direct.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}

/// A running agent: output captured by reader threads; killed on drop.
pub struct Agent {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn pump(r: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Agent {
    pub fn start(vars: &[(&str, &str)]) -> Agent {
        Self::start_args(vars, &[])
    }

    pub fn start_args(vars: &[(&str, &str)], args: &[&str]) -> Agent {
        let mut c = procship(vars);
        c.args(args);
        Self::spawn(c)
    }

    /// Starts `c` (`procship`'s command, or one that runs it) with its
    /// output captured.
    pub fn spawn(mut c: Command) -> Agent {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start procship");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            pump(child.stdout.take().unwrap(), stdout.clone()),
            pump(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Agent {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM, then wait (bounded) for the exit; returns (status, stdout, stderr).
    pub fn stop(self, within: Duration) -> (std::process::ExitStatus, String, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(within)
    }

    /// Waits (bounded) for the agent to exit on its own; returns (status, stdout, stderr).
    pub fn wait_exit(mut self, within: Duration) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        (status, self.stdout(), self.stderr())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `cond` holds.
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The numbers of the agent's final "stopped" log line.
#[derive(Debug, Default, PartialEq)]
pub struct Account {
    pub collected: u64,
    pub sent: u64,
    pub dropped: u64,
    pub queue_full: u64,
    pub rejected: u64,
    pub shutdown: u64,
    pub too_old: u64,
    pub spool_full: u64,
    pub recovered: u64,
    pub spooled: u64,
}

impl Account {
    /// Every point is sent, dropped with a reason, or still in the spool.
    pub fn balanced(&self) -> bool {
        self.collected + self.recovered == self.sent + self.dropped + self.spooled
    }
}

pub fn account(stderr: &str) -> Account {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("stopped") && l.contains("collected="))
        .unwrap_or_else(|| panic!("no final account in:\n{stderr}"));
    let get = |k: &str| -> u64 {
        let at = line
            .find(&format!(" {k}="))
            .unwrap_or_else(|| panic!("{k} missing in {line}"));
        line[at + k.len() + 2..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{k} unreadable in {line}"))
    };
    Account {
        collected: get("collected"),
        sent: get("sent"),
        dropped: get("dropped"),
        queue_full: get("queue_full"),
        rejected: get("rejected"),
        shutdown: get("shutdown"),
        too_old: get("too_old"),
        spool_full: get("spool_full"),
        recovered: get("recovered"),
        spooled: get("spooled"),
    }
}

/// One request as the listener saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it came with Content-Encoding: gzip.
    pub body: Vec<u8>,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    pub fn seq(&self) -> u64 {
        self.json()["seq"].as_u64().expect("seq")
    }

    pub fn points(&self) -> u64 {
        self.json()["points"].as_array().expect("points").len() as u64
    }

    /// Every point of these JSON batches, in order.
    pub fn all_points(rs: &[Received]) -> Vec<serde_json::Value> {
        rs.iter()
            .flat_map(|r| r.json()["points"].as_array().expect("points").clone())
            .collect()
    }
}

/// What the listener answers to the n-th request (0-based): status and headers.
pub type Plan = Box<dyn Fn(usize) -> (u16, Vec<(&'static str, String)>, String) + Send>;

/// What the listener answers to the n-th request, given its body.
pub type Judge = Box<dyn Fn(usize, &[u8]) -> (u16, Vec<(&'static str, String)>, String) + Send>;

pub struct Listener {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start(plan: Plan) -> Listener {
        Self::on("127.0.0.1:0", plan)
    }

    pub fn on(addr: &str, plan: Plan) -> Listener {
        Self::judging(addr, Box::new(move |n, _| plan(n)))
    }

    /// A listener whose answer may depend on the (decompressed) body too.
    pub fn judging(addr: &str, plan: Judge) -> Listener {
        let server = tiny_http::Server::http(addr).expect("listen on loopback");
        let port = server.server_addr().to_ip().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let headers: Vec<(String, String)> = req
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect();
                let mut raw = Vec::new();
                req.as_reader().read_to_end(&mut raw).unwrap();
                let gz = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
                let body = if gz {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&raw[..])
                        .read_to_end(&mut out)
                        .expect("valid gzip");
                    out
                } else {
                    raw
                };
                let (status, extra, text) = plan(n, &body);
                n += 1;
                g.lock().unwrap().push(Received {
                    at: Instant::now(),
                    headers,
                    body,
                    status,
                });
                let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
                for (k, v) in extra {
                    resp.add_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        Listener {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn always(status: u16) -> Plan {
    Box::new(move |_| (status, vec![], String::new()))
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Settings for a fast agent against a test listener.
pub fn fast(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PROCSHIP_INGEST_URL", url.to_string()),
        ("PROCSHIP_INTERVAL", "0.1".into()),
        ("PROCSHIP_FLUSH_INTERVAL", "0.1".into()),
        ("PROCSHIP_FLUSH_JITTER", "0".into()),
        ("PROCSHIP_RETRY_INITIAL", "0.05".into()),
        ("PROCSHIP_RETRY_MAX_DELAY", "0.2".into()),
        ("PROCSHIP_COLLECTORS", "all,-processes,-disk".into()),
        ("PROCSHIP_HOSTNAME", "test-host".into()),
        ("PROCSHIP_SHUTDOWN_TIMEOUT", "5".into()),
        // The drain's pace in the same fast motion as the interval.
        ("PROCSHIP_DRAIN_PACE", "0.01".into()),
        // The agent's own points every cycle, as at the default interval.
        ("PROCSHIP_SELF_INTERVAL", "0.1".into()),
    ]
}

pub fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Sends `raw` and returns (status, body) of the answer.
pub fn http(port: u16, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the status endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A peer that answers early may reset a huge upload: only the answer counts.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

pub fn get(port: u16, path: &str) -> (u16, String) {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// The running agent's `/status` (its status endpoint on `port`).
pub fn agent_status(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// Waits until the agent with its status endpoint on `port` has delivered
/// `n` batches.
pub fn wait_delivered(port: u16, n: u64, within: Duration) {
    wait_for(&format!("{n} batches delivered"), within, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && agent_status(port)["counters"]["batches_sent"]
                .as_u64()
                .is_some_and(|sent| sent >= n)
    });
}

/// The scheduling policy (`sched_setscheduler`'s number: 0 the default,
/// 3 SCHED_BATCH) of each of a process's threads, by thread name, from
/// field 41 of /proc/PID/task/TID/stat.
pub fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // a thread that ended meanwhile
        };
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        // After the name come fields 3, 4, ...: field 41 is the 39th.
        let policy = rest.split_whitespace().nth(38).unwrap().parse().unwrap();
        out.push((name, policy));
    }
    out
}

/// A fast agent against `url` running only `collectors`, with more variables.
pub fn fast_agent(url: &str, collectors: &str, extra: &[(&'static str, String)]) -> Agent {
    let mut env = fast(url);
    env.push(("PROCSHIP_COLLECTORS", collectors.to_string()));
    env.extend(extra.iter().cloned());
    Agent::start(&refs(&env))
}

/// A helper process a test started (a TLS server, a proxy): killed by its
/// PID and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
