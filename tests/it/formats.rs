//! Formats checked by third-party parsers, not ours: OTLP JSON by the
//! OpenTelemetry project's protobuf definitions (PyPI opentelemetry-proto,
//! behind a real HTTP receiver, tests/py/otlp_receiver.py), and the json
//! envelope by its published JSON Schema (schema/, validated with PyPI
//! jsonschema). scripts/test.sh installs both into target/pydeps.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `python3` with the PyPI packages of tests/py/requirements.txt.
fn python() -> Command {
    let deps = root().join("target/pydeps");
    assert!(
        deps.join("requirements.txt").exists(),
        "{} is missing: run scripts/test.sh (it pip-installs tests/py/requirements.txt there)",
        deps.display()
    );
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", deps)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

/// The receiver, killed on drop; its report lines are collected.
struct Receiver {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        let port = free_port();
        let mut child = python()
            .arg(root().join("tests/py/otlp_receiver.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 tests/py/otlp_receiver.py");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let into = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str(&line) {
                    into.lock().unwrap().push(v);
                }
            }
        });
        let r = Receiver { child, lines, port };
        wait_for("the OTLP receiver", Duration::from_secs(30), || {
            r.reports().iter().any(|l| l.get("listening").is_some())
        });
        r
    }

    fn reports(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().clone()
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        self.reports()
            .into_iter()
            .filter(|l| l.get("ok").is_some())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn otlp_payloads_are_accepted_by_the_opentelemetry_proto_parser() {
    let rx = Receiver::start();
    let url = format!("http://127.0.0.1:{}/v1/metrics", rx.port);
    for compression in ["gzip", "none"] {
        let mut vars = fast(&url);
        vars.push(("PROCSHIP_FORMAT", "otlp".into()));
        vars.push(("PROCSHIP_COMPRESSION", compression.into()));
        vars.push(("PROCSHIP_COLLECTORS", "all".into()));
        let before = rx.requests().len();
        let agent = Agent::start(&refs(&vars));
        wait_for("5 OTLP requests", Duration::from_secs(30), || {
            rx.requests().len() >= before + 5
        });
        let (status, _, err) = agent.stop(Duration::from_secs(15));
        assert!(status.success(), "{err}");
        let a = account(&err);
        let reqs = rx.requests().split_off(before);
        let bad: Vec<_> = reqs.iter().filter(|r| r["ok"] != true).collect();
        assert!(bad.is_empty(), "the parser refused: {bad:?}");
        assert_eq!((a.sent, a.dropped), (a.collected, 0), "{err}");
        assert!(reqs.iter().all(|r| r["host"] == "test-host"), "{reqs:?}");
        assert!(
            reqs.iter()
                .map(|r| r["points"].as_u64().unwrap())
                .sum::<u64>()
                > a.collected
        );
    }

    // The same parser takes the --once rendering, and refuses a broken one,
    // so the receiver is not a rubber stamp.
    let once = procship(&[("PROCSHIP_FORMAT", "otlp"), ("PROCSHIP_INTERVAL", "0.1")])
        .arg("--once")
        .output()
        .unwrap();
    assert!(once.status.success());
    let post = |body: &[u8]| {
        let mut r = ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(post(&once.stdout).0, 200);
    let text = String::from_utf8(once.stdout).unwrap();
    let (status, why) = post(
        text.replacen("\"isMonotonic\"", "\"monotonic\"", 1)
            .as_bytes(),
    );
    assert_eq!(status, 400, "an unknown field is refused: {why}");
    let (status, why) = post(
        text.replacen(
            "\"aggregationTemporality\":2",
            "\"aggregationTemporality\":1",
            1,
        )
        .as_bytes(),
    );
    assert_eq!(status, 400, "a delta sum is refused: {why}");
}

fn validate(docs: &str) -> (bool, String) {
    let mut child = python()
        .arg(root().join("tests/py/validate_json.py"))
        .arg(root().join("schema/procship-json-v1.schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 tests/py/validate_json.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(docs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn json_batches_follow_the_published_schema() {
    let l = Listener::start(always(200));
    let mut vars = fast(&l.url());
    vars.push(("PROCSHIP_FORMAT", "json".into()));
    vars.push(("PROCSHIP_COMPRESSION", "none".into()));
    vars.push(("PROCSHIP_COLLECTORS", "all".into()));
    vars.push(("PROCSHIP_TAGS", "env=test,rack=r1".into()));
    let agent = Agent::start(&refs(&vars));
    wait_for("5 batches", Duration::from_secs(30), || {
        l.accepted().len() >= 5
    });
    let (status, _, err) = agent.stop(Duration::from_secs(15));
    assert!(status.success(), "{err}");
    let mut docs: String = l
        .accepted()
        .iter()
        .map(|r| format!("{}\n", String::from_utf8_lossy(&r.body)))
        .collect();
    let once = procship(&[("PROCSHIP_COLLECTORS", "all"), ("PROCSHIP_INTERVAL", "0.1")])
        .arg("--once")
        .output()
        .unwrap();
    docs.push_str(&String::from_utf8(once.stdout).unwrap());
    let (ok, report) = validate(&docs);
    assert!(ok, "{report}");
    assert!(report.contains("documents valid"), "{report}");

    // The schema has teeth: a string value, a missing host tag and an
    // unknown key are each refused.
    let first = docs.lines().next().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(first).unwrap();
    let p = &mut v["points"][0];
    let field = p["fields"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    p["fields"][&field] = "1".into();
    p["tags"].as_object_mut().unwrap().remove("host");
    v["extra"] = 1.into();
    let (ok, report) = validate(&format!("{v}\n"));
    assert!(!ok, "{report}");
    for want in [
        "is not of type 'number'",
        "'host' is a required property",
        "'extra' was unexpected",
    ] {
        assert!(report.contains(want), "{want}: {report}");
    }
}

#[test]
fn remote_write_requests_carry_the_protocol_headers() {
    use prost::Message;
    let l = Listener::start(always(204));
    let mut vars = fast(&l.url());
    vars.push(("PROCSHIP_FORMAT", "prometheus".into()));
    // Remote write is snappy whatever PROCSHIP_COMPRESSION says.
    vars.push(("PROCSHIP_COMPRESSION", "gzip".into()));
    let agent = Agent::start(&refs(&vars));
    wait_for("3 requests", Duration::from_secs(30), || {
        l.accepted().len() >= 3
    });
    let (status, _, err) = agent.stop(Duration::from_secs(15));
    assert!(status.success(), "{err}");
    for r in l.accepted() {
        assert_eq!(r.header("Content-Type"), Some("application/x-protobuf"));
        assert_eq!(r.header("Content-Encoding"), Some("snappy"));
        assert_eq!(r.header("X-Prometheus-Remote-Write-Version"), Some("0.1.0"));
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        let req = procship::encode::remote_write::WriteRequest::decode(&raw[..]).unwrap();
        assert!(!req.timeseries.is_empty());
        for ts in &req.timeseries {
            assert!(
                ts.labels.windows(2).all(|w| w[0].name < w[1].name),
                "{ts:?}"
            );
            assert!(
                ts.labels
                    .iter()
                    .any(|l| l.name == "host" && l.value == "test-host")
            );
            assert!(
                ts.samples
                    .windows(2)
                    .all(|w| w[0].timestamp < w[1].timestamp)
            );
        }
    }
}
