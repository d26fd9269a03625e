//! systemd's service notification protocol, spoken directly: datagrams of
//! `KEY=value` lines to the unix socket named by `$NOTIFY_SOCKET` (a path,
//! or `@name` in the abstract namespace), no libsystemd. The agent says
//! `READY=1` after its first collection, `STATUS=` with its counters,
//! `WATCHDOG=1` from the collection loop at half of `$WATCHDOG_USEC` (so a
//! wedged loop gets the service restarted) and `STOPPING=1` on shutdown.
//! Without `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every
//! call is a no-op. Sending is best effort: a lost datagram is logged at
//! debug, never an error.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    /// Ping period: half the watchdog timeout, when the watchdog is on.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

/// The address `$NOTIFY_SOCKET` names.
fn address(s: &str) -> std::io::Result<SocketAddr> {
    match s.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(s),
    }
}

/// The ping period for `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, which, when
/// set, must be this process).
fn watchdog_period(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim() != std::process::id().to_string()) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET`; a no-op one when unset or unusable.
    pub fn from_env() -> Notifier {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sock = var("NOTIFY_SOCKET").and_then(|path| {
            let made = address(&path).and_then(|a| UnixDatagram::unbound().map(|s| (s, a)));
            match made {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(socket = %path, "NOTIFY_SOCKET is set but unusable: {e}");
                    None
                }
            }
        });
        let watchdog = sock.as_ref().and_then(|_| {
            watchdog_period(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
            )
        });
        Notifier {
            sock,
            watchdog,
            last_ping: None,
        }
    }

    /// A notifier that says nothing (tests, `--once`).
    pub fn none() -> Notifier {
        Notifier {
            sock: None,
            watchdog: None,
            last_ping: None,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock
            && let Err(e) = s.send_to_addr(msg.as_bytes(), addr)
        {
            tracing::debug!("cannot notify systemd ({msg:?}): {e}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// A reload starts (SIGHUP); `ready` ends it.
    pub fn reloading(&self) {
        let usec = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: delivering what is queued");
    }

    /// When the loop must wake next to keep the watchdog fed.
    pub fn next_ping(&self) -> Option<Instant> {
        let period = self.watchdog?;
        Some(self.last_ping.map_or_else(Instant::now, |t| t + period))
    }

    /// Feeds the watchdog if its period has passed: called from the
    /// collection loop, so only a loop that turns keeps the service alive.
    pub fn ping(&mut self, now: Instant) {
        let Some(period) = self.watchdog else { return };
        if self.last_ping.is_none_or(|t| now >= t + period) {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_is_half_and_only_for_this_pid() {
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_period(Some("30000000"), None),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_period(Some("2000000"), Some(&me)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_period(Some("2000000"), Some("1")), None);
        assert_eq!(watchdog_period(Some("0"), None), None);
        assert_eq!(watchdog_period(Some("soon"), None), None);
        assert_eq!(watchdog_period(None, None), None);
    }

    #[test]
    fn messages_reach_a_path_and_an_abstract_socket() {
        let dir = crate::collect::testutil::tempdir();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let abs = format!("@procship-test-{}", std::process::id());
        let rx_abs = UnixDatagram::bind_addr(&address(&abs).unwrap()).unwrap();
        for (target, rx) in [(path.to_str().unwrap().to_string(), &rx), (abs, &rx_abs)] {
            let n = Notifier {
                sock: Some((UnixDatagram::unbound().unwrap(), address(&target).unwrap())),
                watchdog: Some(Duration::from_millis(10)),
                last_ping: None,
            };
            n.ready("ok");
            let mut buf = [0u8; 256];
            let len = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pings_at_most_once_per_period() {
        let dir = crate::collect::testutil::tempdir();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut n = Notifier {
            sock: Some((
                UnixDatagram::unbound().unwrap(),
                address(path.to_str().unwrap()).unwrap(),
            )),
            watchdog: Some(Duration::from_secs(60)),
            last_ping: None,
        };
        let mut buf = [0u8; 64];
        let mut count = || {
            let mut got = 0;
            while rx.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        };
        let t0 = Instant::now() - Duration::from_secs(5);
        n.ping(t0);
        assert_eq!(count(), 1, "the first call pings at once");
        n.ping(t0 + Duration::from_secs(1));
        assert_eq!(count(), 0, "not again within the period");
        n.ping(t0 + Duration::from_secs(61));
        assert_eq!(count(), 1);
        assert!(Notifier::none().next_ping().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
