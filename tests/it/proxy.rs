//! Delivery through a real HTTP proxy from Debian (tinyproxy, started here
//! on 127.0.0.1 and stopped by its PID): ureq tunnels with CONNECT, for
//! http:// and https:// alike; and a loopback URL never proxied by the
//! standard environment variables.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::tls::{Pki, Sink};
use crate::util::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

struct Tinyproxy {
    _child: Process,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    fn start() -> Tinyproxy {
        let dir = tempdir("tinyproxy");
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\n\
                 MaxClients 16\nAllow 127.0.0.1\nViaProxyName \"procship-test-proxy\"\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/bin/tinyproxy (apt-get install tinyproxy)");
        wait_for("tinyproxy", SECS(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Tinyproxy {
            _child: Process(child),
            port,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn agent(url: &str, extra: &[(&'static str, String)]) -> Agent {
    fast_agent(url, "system", extra)
}

#[test]
fn http_and_https_go_through_the_proxy() {
    let proxy = Tinyproxy::start();
    let l = Listener::start(always(204));
    let a = agent(&l.url(), &[("PROCSHIP_PROXY", proxy.url())]);
    wait_for("3 batches through the proxy", SECS(20), || {
        l.accepted().len() >= 3
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let port = l
        .url()
        .split(':')
        .nth(2)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        proxy.log().contains(&format!("CONNECT 127.0.0.1:{port}")),
        "tinyproxy saw no CONNECT to {port}:\n{}",
        proxy.log()
    );

    let pki = Pki::new();
    let sink = Sink::start(&pki, "server", false);
    let a = agent(
        &sink.url("through"),
        &[
            ("PROCSHIP_PROXY", proxy.url()),
            ("PROCSHIP_TLS_CA_FILE", pki.path("ca.pem")),
        ],
    );
    wait_for("https batches through the proxy", SECS(20), || {
        sink.requests()
            .iter()
            .filter(|(p, _)| p == "/through")
            .count()
            >= 3
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(account(&stderr).dropped, 0, "{stderr}");
    let port = sink
        .url("")
        .split(':')
        .nth(2)
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    assert!(
        proxy.log().contains(&format!("CONNECT 127.0.0.1:{port}")),
        "tinyproxy saw no CONNECT:\n{}",
        proxy.log()
    );
}

#[test]
fn a_loopback_url_is_not_proxied_by_the_environment() {
    let l = Listener::start(always(204));
    // A proxy that does not exist: used, it would fail every request.
    let dead = "http://127.0.0.1:1".to_string();
    let a = agent(
        &l.url(),
        &[
            ("HTTP_PROXY", dead.clone()),
            ("HTTPS_PROXY", dead.clone()),
            ("ALL_PROXY", dead),
        ],
    );
    wait_for("3 batches, directly", SECS(20), || l.accepted().len() >= 3);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(l.accepted().iter().all(|r| r.header("Via").is_none()));
}

#[test]
fn a_proxy_url_is_checked_and_its_password_masked() {
    let out = procship(&[(
        "PROCSHIP_PROXY",
        "http://u:pr0xy-s3cret@proxy.example:99999",
    )])
    .arg("--check-config")
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("PROCSHIP_PROXY") && err.contains("65535"),
        "{err}"
    );
    assert!(!err.contains("pr0xy-s3cret"), "{err}");
    let out = procship(&[("PROCSHIP_PROXY", "http://u:pr0xy-s3cret@proxy.example:3128")])
        .arg("--check-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("PROCSHIP_PROXY=http://u:****@proxy.example:3128"),
        "{text}"
    );
}
