//! systemd's notify protocol, with the real binary and a datagram socket
//! owned by the test standing in for systemd: READY=1 after the first
//! collection, WATCHDOG=1 at half of WATCHDOG_USEC from the collection
//! loop, STATUS= with counters, STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn ready_watchdog_status_and_stopping_reach_the_notify_socket() {
    let dir = tempdir("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let l = Listener::start(always(204));
    let mut env = fast(&l.url());
    env.retain(|(k, _)| *k != "PROCSHIP_INTERVAL" && *k != "PROCSHIP_FLUSH_INTERVAL");
    env.push(("PROCSHIP_INTERVAL", "2".into()));
    env.push(("PROCSHIP_FLUSH_INTERVAL", "2".into()));
    env.push(("NOTIFY_SOCKET", path.display().to_string()));
    // A 1 s watchdog: pings every 0.5 s, far more often than the 2 s cycles.
    env.push(("WATCHDOG_USEC", "1000000".into()));
    let started = Instant::now();
    let a = Agent::start(&refs(&env));

    let mut got: Vec<(Instant, String)> = Vec::new();
    let mut buf = [0u8; 1024];
    let mut recv_until = |got: &mut Vec<(Instant, String)>, until: Instant| {
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into()));
            }
        }
    };
    recv_until(&mut got, started + Duration::from_secs(5));
    a.signal(nix::sys::signal::Signal::SIGTERM);
    recv_until(&mut got, Instant::now() + Duration::from_secs(2));
    let (status, _, stderr) = a.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{stderr}");

    let ready: Vec<&String> = got
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.contains("READY=1"))
        .collect();
    assert_eq!(ready.len(), 1, "one READY=1: {got:?}");
    assert!(ready[0].contains("STATUS=collected="), "{}", ready[0]);
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 6,
        "pings every 0.5 s for 5 s: {}",
        pings.len()
    );
    let worst = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        worst < Duration::from_secs(1),
        "the watchdog (1 s) was never starved: worst gap {worst:?}"
    );
    let stopping = got.iter().position(|(_, m)| m.starts_with("STOPPING=1"));
    assert!(stopping.is_some(), "STOPPING=1 on SIGTERM: {got:?}");
    let ready_at = got.iter().position(|(_, m)| m.contains("READY=1")).unwrap();
    assert!(ready_at < stopping.unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_notify_socket_nothing_changes() {
    // Type=simple or no systemd: the agent runs and stops as before.
    let l = Listener::start(always(204));
    let a = Agent::start(&refs(&fast(&l.url())));
    wait_for("a batch", Duration::from_secs(20), || {
        !l.received().is_empty()
    });
    let (status, _, stderr) = a.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("NOTIFY_SOCKET"), "{stderr}");
}
