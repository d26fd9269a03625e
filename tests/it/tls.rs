//! TLS against a real TLS server (Python's ssl module, tests/py/tls_sink.py)
//! on 127.0.0.1, with a CA, server and client certificates the test makes
//! with the openssl command: the site's CA trusted through
//! PROCSHIP_TLS_CA_FILE; an unknown issuer, an expired certificate, a wrong
//! name and a plain-HTTP port each named with what to check, and never
//! delivered to; mTLS with a
//! client certificate accepted and without it refused; a client certificate
//! renewed on disk (renamed over the old) presented after SIGHUP.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and certificates it signed, in a temporary directory.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempdir("pki");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=procship test CA",
            ],
        );
        let pki = Pki { dir };
        pki.issue(
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        pki.issue(
            "wrong-name",
            "other.example",
            "subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth",
        );
        pki.issue_for(
            "expired",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
            "-1",
        );
        pki.issue("agent-1", "agent-1", "extendedKeyUsage=clientAuth");
        pki.issue("agent-2", "agent-2", "extendedKeyUsage=clientAuth");
        pki
    }

    /// `name.pem` and `name.key`, signed by the CA, valid for two days.
    fn issue(&self, name: &str, cn: &str, ext: &str) {
        self.issue_for(name, cn, ext, "2");
    }

    /// The same, valid for `days` (openssl 3.0 takes -1: a certificate whose
    /// validity ended a day before it began, expired from the start).
    fn issue_for(&self, name: &str, cn: &str, ext: &str, days: &str) {
        let ext_file = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext_file),
            format!("basicConstraints=CA:FALSE\n{ext}\n"),
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                days,
                "-extfile",
                &ext_file,
            ],
        );
        std::fs::set_permissions(
            self.dir.join(format!("{name}.key")),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The TLS sink, stopped by its PID when dropped.
pub struct Sink {
    _child: Process,
    port: u16,
    log: PathBuf,
}

impl Sink {
    pub fn start(pki: &Pki, cert: &str, client_ca: bool) -> Sink {
        let port = free_port();
        let log = tempdir("tls-sink").join("requests.log");
        std::fs::write(&log, "").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_sink.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script)
            .arg(port.to_string())
            .arg(pki.path(&format!("{cert}.pem")))
            .arg(pki.path(&format!("{cert}.key")))
            .arg(&log);
        if client_ca {
            cmd.arg(pki.path("ca.pem"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the TLS sink", SECS(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sink {
            _child: Process(child),
            port,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    /// (path, client subject) of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }
}

fn agent(url: &str, extra: &[(&'static str, String)]) -> Agent {
    fast_agent(url, "system", extra)
}

/// Runs an agent that must fail with `hint` in its log, and checks that
/// nothing reached the sink on `path`.
fn refused(sink: &Sink, path: &str, extra: &[(&'static str, String)], hint: &str) {
    let a = agent(&sink.url(path), extra);
    wait_for(hint, SECS(20), || a.stderr().contains(hint));
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stderr.matches(hint).count(),
        1,
        "said once while it stays the same:\n{stderr}"
    );
    assert!(
        sink.requests()
            .iter()
            .all(|(p, _)| p != &format!("/{path}"))
    );
}

#[test]
fn the_sites_ca_is_trusted_and_certificate_problems_are_named() {
    let pki = Pki::new();
    let sink = Sink::start(&pki, "server", false);
    let ca = ("PROCSHIP_TLS_CA_FILE", pki.path("ca.pem"));
    let a = agent(&sink.url("trusted"), std::slice::from_ref(&ca));
    wait_for("deliveries over TLS", SECS(20), || {
        sink.requests().len() >= 3
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(account(&stderr).dropped, 0, "{stderr}");

    refused(
        &sink,
        "unknown",
        &[],
        "set PROCSHIP_TLS_CA_FILE to the site's CA",
    );
    let wrong = Sink::start(&pki, "wrong-name", false);
    refused(
        &wrong,
        "name",
        std::slice::from_ref(&ca),
        "not valid for the host in PROCSHIP_INGEST_URL",
    );
    let expired = Sink::start(&pki, "expired", false);
    refused(
        &expired,
        "expired",
        std::slice::from_ref(&ca),
        "the server's certificate is expired or not yet valid",
    );
    // A plain-HTTP server answering the ClientHello with an HTTP error.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_url = format!("https://{}/plain", plain.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in plain.incoming().flatten() {
            use std::io::Write;
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let a = agent(&plain_url, &[ca]);
    wait_for("the plain-HTTP hint", SECS(20), || {
        a.stderr().contains("no TLS at that port")
    });
    let (status, _, _) = a.stop(SECS(10));
    assert!(status.success());
}

#[test]
fn client_certificates_are_presented_and_renewed_on_sighup() {
    let pki = Pki::new();
    let sink = Sink::start(&pki, "server", true);
    let ca = ("PROCSHIP_TLS_CA_FILE", pki.path("ca.pem"));
    refused(
        &sink,
        "anonymous",
        std::slice::from_ref(&ca),
        "wants a client certificate",
    );

    // The agent's files, renewed later by renaming new ones over them.
    let mine = tempdir("agent-cert");
    std::fs::copy(pki.dir.join("agent-1.pem"), mine.join("cert.pem")).unwrap();
    std::fs::copy(pki.dir.join("agent-1.key"), mine.join("key.pem")).unwrap();
    let env_file = mine.join("procship.env");
    std::fs::write(
        &env_file,
        format!(
            "PROCSHIP_TLS_CERT_FILE={}\nPROCSHIP_TLS_KEY_FILE={}\n",
            mine.join("cert.pem").display(),
            mine.join("key.pem").display()
        ),
    )
    .unwrap();
    let mut env = fast(&sink.url("mtls"));
    env.push(("PROCSHIP_COLLECTORS", "system".into()));
    env.push(ca);
    let a = Agent::start_args(
        &refs(&env),
        &["--env-file", &env_file.display().to_string()],
    );
    let seen = |cn: &str| {
        sink.requests()
            .iter()
            .any(|(p, s)| p == "/mtls" && s.contains(&format!("commonName={cn}")))
    };
    wait_for("agent-1's certificate", SECS(20), || seen("agent-1"));
    for (from, to) in [("agent-2.pem", "cert.pem"), ("agent-2.key", "key.pem")] {
        let tmp = mine.join(format!("{to}.new"));
        std::fs::copy(pki.dir.join(from), &tmp).unwrap();
        std::fs::rename(&tmp, mine.join(to)).unwrap();
    }
    a.signal(Signal::SIGHUP);
    wait_for("agent-2's certificate after SIGHUP", SECS(20), || {
        seen("agent-2")
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("applied=TLS_CERT_FILE"), "{stderr}");
    assert_eq!(
        account(&stderr).dropped,
        0,
        "the queue is kept across the renewal"
    );
    std::fs::remove_dir_all(&mine).unwrap();
}
