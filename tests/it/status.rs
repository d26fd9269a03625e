//! The status endpoint of the real binary: each path's status code and
//! body, secrets kept out, `/metrics` read by a real Prometheus text parser
//! (Debian's python3-prometheus-client), /healthz turning 503 when the
//! backend is down past the window, and hostile clients (10 MB of headers,
//! a request never finished) that get proper answers while collection and
//! delivery go on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const TOKEN: &str = "tok-st4tus-s3cret";

fn start(url: &str, port: u16, extra: &[(&'static str, &str)]) -> Agent {
    let mut env = fast(url);
    env.push(("PROCSHIP_STATUS_ADDR", port.to_string()));
    env.push(("PROCSHIP_AUTH_TOKEN", TOKEN.into()));
    for (k, v) in extra {
        env.push((k, v.to_string()));
    }
    let a = Agent::start(&refs(&env));
    wait_for("the status endpoint", SECS(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    a
}

/// How many metric families a real Prometheus text parser finds in
/// `metrics` (failing when it rejects them).
fn prometheus_client_families(metrics: &str) -> usize {
    let py = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.parser import text_string_to_metric_families as parse\n\
             fams = list(parse(sys.stdin.read()))\n\
             print(len(fams), sum(len(f.samples) for f in fams))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (apt-get install python3-prometheus-client)");
    let mut py = py;
    py.stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected /metrics (apt-get install python3-prometheus-client if missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = String::from_utf8_lossy(&out.stdout);
    counts.split_whitespace().next().unwrap().parse().unwrap()
}

/// `procship status` prints the running agent's status for a person.
fn assert_status_command(port: u16, url: &str) {
    let out = procship(&[("PROCSHIP_STATUS_ADDR", &port.to_string())])
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(": healthy ("), "{text}");
    assert!(
        text.contains("collected") && text.contains("last delivery: "),
        "{text}"
    );
    assert!(text.contains(&format!("output {url}")), "{text}");
    assert!(!text.contains(TOKEN));
}

#[test]
fn paths_answer_with_codes_and_bodies_without_secrets() {
    let l = Listener::start(always(204));
    let port = free_port();
    let a = start(&l.url(), port, &[]);
    wait_for("a delivery", SECS(20), || !l.accepted().is_empty());
    wait_for("the snapshot", SECS(20), || {
        get(port, "/metrics").1.contains("agent_collected")
    });

    let (code, body) = get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("ok:"), "{body}");

    let (code, body) = get(port, "/status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["healthy"], true);
    assert!(v["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["counters"]["sent"].as_u64().unwrap() > 0);
    assert_eq!(v["config"]["PROCSHIP_AUTH_TOKEN"]["value"], "****");
    assert_eq!(v["config"]["PROCSHIP_AUTH_TOKEN"]["source"], "environment");
    assert_eq!(v["config"]["PROCSHIP_INTERVAL"]["value"], "0.1");
    assert_eq!(v["config"]["PROCSHIP_INTERVAL"]["reload"], "live");
    assert_eq!(v["config"]["PROCSHIP_FORMAT"]["reload"], "restart");

    let (code, metrics) = get(port, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("# TYPE agent_sent counter"), "{metrics}");
    assert!(
        metrics.contains("mem_total{host=\"test-host\"}"),
        "{metrics}"
    );

    for b in [&body, &metrics] {
        assert!(!b.contains(TOKEN), "secret leaked");
    }
    assert_eq!(get(port, "/nope").0, 404);
    assert_eq!(get(port, "/status?x=1").0, 200, "queries are ignored");
    assert_eq!(
        http(port, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        405
    );
    assert_eq!(http(port, b"GARBAGE\x01\r\n\r\n").0, 400);
    let (code, head) = {
        let (c, b) = http(port, b"HEAD /healthz HTTP/1.1\r\n\r\n");
        (c, b)
    };
    assert_eq!((code, head.as_str()), (200, ""), "HEAD: headers only");

    let families = prometheus_client_families(&metrics);
    assert!(families > 50, "parsed {families} families");
    assert_status_command(port, &l.url());

    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(TOKEN));

    // Nobody listening, or no address configured: exit 69 and why.
    let out = procship(&[("PROCSHIP_STATUS_ADDR", &port.to_string())])
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agent"));
    let out = procship(&[]).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROCSHIP_STATUS_ADDR is not set"));
}

#[test]
fn healthz_turns_503_when_nothing_is_delivered_within_the_window() {
    let port = free_port();
    let down = format!("http://127.0.0.1:{}/ingest", free_port());
    let a = start(&down, port, &[("PROCSHIP_HEALTH_WINDOW", "1s")]);
    wait_for("503", SECS(20), || get(port, "/healthz").0 == 503);
    let (_, body) = get(port, "/healthz");
    assert!(
        body.contains("unhealthy") && body.contains("batches waiting"),
        "{body}"
    );
    assert!(body.contains("last error"), "says why: {body}");
    let v: serde_json::Value = serde_json::from_str(&get(port, "/status").1).unwrap();
    assert_eq!(v["healthy"], false);
    assert!(v["last_error"].as_str().unwrap().contains("127.0.0.1"));
    let out = procship(&[("PROCSHIP_STATUS_ADDR", &port.to_string())])
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "unhealthy is exit 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNHEALTHY"));
    drop(a);
}

#[test]
fn hostile_clients_get_answers_and_collection_goes_on() {
    let l = Listener::start(always(204));
    let port = free_port();
    let a = start(&l.url(), port, &[]);
    wait_for("a delivery", SECS(20), || !l.accepted().is_empty());

    // A client that opens a request and never finishes it.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nX-Slow: ").unwrap();
    let before = l.accepted().len();
    let t0 = Instant::now();
    wait_for("deliveries while the slow client hangs", SECS(20), || {
        l.accepted().len() >= before + 5
    });
    let mut answer = String::new();
    slow.set_read_timeout(Some(SECS(10))).unwrap();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(t0.elapsed() < SECS(10));

    // 10 MB of headers.
    let mut huge = b"GET /status HTTP/1.1\r\n".to_vec();
    while huge.len() < 10 << 20 {
        huge.extend_from_slice(
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    huge.extend_from_slice(b"\r\n");
    assert_eq!(http(port, &huge).0, 431);
    // A single 10 MB header line.
    let mut line = b"GET /status HTTP/1.1\r\nX-Long: ".to_vec();
    line.resize(10 << 20, b'a');
    assert_eq!(http(port, &line).0, 431);

    // Still serving, still collecting, memory still small.
    assert_eq!(get(port, "/healthz").0, 200);
    let n = l.accepted().len();
    wait_for("more deliveries", SECS(20), || l.accepted().len() > n + 3);
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", a.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        .unwrap();
    let kb: u64 = hwm.split_whitespace().next().unwrap().parse().unwrap();
    assert!(kb < 16 * 1024, "peak RSS {kb} kB after hostile clients");
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_taken_port_is_a_configuration_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let l = Listener::start(always(204));
    let mut env = fast(&l.url());
    env.push(("PROCSHIP_STATUS_ADDR", format!("127.0.0.1:{port}")));
    let a = Agent::start(&refs(&env));
    let (status, _, stderr) = a.wait_exit(SECS(10));
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("PROCSHIP_STATUS_ADDR"), "{stderr}");
}
