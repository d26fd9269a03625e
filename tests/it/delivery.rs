//! The real binary against a real HTTP listener on 127.0.0.1: what arrives,
//! in what order, after which failures, and that every point is accounted for.

use std::time::Duration;

use crate::util::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Sequences of accepted batches: strictly 1, 2, 3, … with no gap or duplicate.
fn assert_in_order_complete(accepted: &[Received]) {
    let seqs: Vec<u64> = accepted.iter().map(|r| r.seq()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "every batch, in order, none twice");
}

fn sum_points(rs: &[Received]) -> u64 {
    rs.iter().map(|r| r.points()).sum()
}

#[test]
fn batches_arrive_gzipped_with_auth_and_headers() {
    let l = Listener::start(always(204));
    let mut env = fast(&l.url());
    env.push(("PROCSHIP_AUTH_TOKEN", "tok-s3cret-123".into()));
    env.push(("PROCSHIP_HEADERS", "X-Scope-OrgID=tenant-a".into()));
    env.push(("PROCSHIP_TAGS", "dc=ams,role=db".into()));
    let a = Agent::start(&refs(&env));
    wait_for("3 batches", SECS(20), || l.received().len() >= 3);
    // The shipper never preempts on waking; the collector keeps the
    // default policy.
    let policies = thread_policies(a.pid());
    assert!(
        policies.contains(&("procship-ship".into(), 3)),
        "{policies:?}"
    );
    assert!(policies.contains(&("procship".into(), 0)), "{policies:?}");
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");

    let r = &l.received()[0];
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Authorization"), Some("Bearer tok-s3cret-123"));
    assert_eq!(r.header("X-Scope-OrgID"), Some("tenant-a"));
    let v = r.json();
    assert_eq!(v["version"], 1);
    assert_eq!(v["host"], "test-host");
    let p = &v["points"][0];
    assert_eq!(p["tags"]["host"], "test-host");
    assert_eq!(p["tags"]["dc"], "ams");
    assert_eq!(p["tags"]["role"], "db");
    assert!(p["timestamp"].as_i64().unwrap() > 1_600_000_000_000_000_000);
    assert!(
        !stderr.contains("tok-s3cret-123") && !stderr.contains("tenant-a"),
        "secret in logs:\n{stderr}"
    );
    let acc = account(&stderr);
    assert_eq!(acc.sent, sum_points(&l.accepted()));
    assert_eq!(acc.collected, acc.sent + acc.dropped);
}

#[test]
fn service_unavailable_for_a_while_then_everything_in_order() {
    // The first 6 answers are 503, then 200.
    let l = Listener::start(Box::new(|n| {
        (if n < 6 { 503 } else { 200 }, vec![], "busy".into())
    }));
    let a = Agent::start(&refs(&fast(&l.url())));
    wait_for("8 accepted batches", SECS(30), || l.accepted().len() >= 8);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let accepted = l.accepted();
    assert_in_order_complete(&accepted);
    // The 503s were all for batch 1, retried until it got through.
    assert!(l.received()[..7].iter().all(|r| r.seq() == 1));
    let acc = account(&stderr);
    assert_eq!(acc.dropped, 0, "{stderr}");
    assert_eq!(acc.sent, sum_points(&accepted));
    assert_eq!(acc.collected, acc.sent);
    assert!(stderr.contains("delivery failed, will retry"), "{stderr}");
}

#[test]
fn retry_after_is_obeyed() {
    let l = Listener::start(Box::new(|n| {
        if n == 0 {
            (
                429,
                vec![("Retry-After", "2".to_string())],
                "slow down".into(),
            )
        } else {
            (200, vec![], String::new())
        }
    }));
    let a = Agent::start(&refs(&fast(&l.url())));
    wait_for("a retry", SECS(20), || l.received().len() >= 2);
    let got = l.received();
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1950),
        "retried after {gap:?}, Retry-After said 2 s"
    );
    assert_eq!(got[1].seq(), 1, "the same batch again");
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(account(&stderr).dropped, 0);
}

#[test]
fn bad_request_drops_that_batch_counts_it_and_goes_on() {
    let l = Listener::start(Box::new(|n| {
        if n == 0 {
            (
                400,
                vec![],
                "unable to parse 'cpu,host=x': bad timestamp".into(),
            )
        } else {
            (204, vec![], String::new())
        }
    }));
    let a = Agent::start(&refs(&fast(&l.url())));
    wait_for("4 batches", SECS(20), || l.received().len() >= 4);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let got = l.received();
    assert_eq!(got[0].seq(), 1);
    assert_eq!(got[1].seq(), 2, "batch 1 was not retried");
    let acc = account(&stderr);
    assert_eq!(acc.rejected, got[0].points());
    assert_eq!(acc.sent, sum_points(&l.accepted()));
    assert_eq!(acc.collected, acc.sent + acc.rejected);
    assert!(
        stderr.contains("status=400") && stderr.contains("bad timestamp"),
        "the response is logged:\n{stderr}"
    );
}

#[test]
fn connection_refused_then_a_listener_gets_everything_queued() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let a = Agent::start(&refs(&fast(&url)));
    wait_for("refused attempts", SECS(30), || {
        a.stderr().contains("delivery failed, will retry")
    });
    let l = Listener::on(&format!("127.0.0.1:{port}"), always(200));
    wait_for("a backlog and new batches", SECS(30), || {
        l.accepted().len() >= 18
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("Connection refused")
            || stderr.contains("connection refused")
            || stderr.contains("ConnectionRefused"),
        "{stderr}"
    );
    assert_in_order_complete(&l.accepted());
    let acc = account(&stderr);
    assert_eq!(acc.dropped, 0);
    assert_eq!(acc.collected, acc.sent);
    assert_eq!(acc.sent, sum_points(&l.accepted()));
}

#[test]
fn full_queue_drops_oldest_first_and_the_counts_add_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let mut env = fast(&url);
    // Uncompressed batches of a few KiB against a 64 KiB queue: it fills in about a second.
    env.push(("PROCSHIP_COMPRESSION", "none".into()));
    env.push(("PROCSHIP_QUEUE_MAX_BYTES", "64KiB".into()));
    env.push(("PROCSHIP_INTERVAL", "0.05".into()));
    env.push(("PROCSHIP_FLUSH_INTERVAL", "0.05".into()));
    let a = Agent::start(&refs(&env));
    wait_for("queue overflow", SECS(30), || {
        a.stderr().contains("queue full")
    });
    let l = Listener::on(&format!("127.0.0.1:{port}"), always(200));
    wait_for("delivery to resume", SECS(30), || l.accepted().len() >= 10);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let seqs: Vec<u64> = l.accepted().iter().map(|r| r.seq()).collect();
    // Batch 1 was in flight (held by the shipper); then the oldest queued
    // ones were dropped: what arrives is 1, then a contiguous run from k.
    assert_eq!(seqs[0], 1);
    assert!(seqs[1] > 2, "some of the oldest were dropped: {seqs:?}");
    assert!(
        seqs[1..].windows(2).all(|w| w[1] == w[0] + 1),
        "newest kept, in order: {seqs:?}"
    );
    let acc = account(&stderr);
    assert!(acc.queue_full > 0);
    assert_eq!(acc.sent, sum_points(&l.accepted()));
    assert_eq!(acc.collected, acc.sent + acc.dropped, "{acc:?}");
    assert_eq!(acc.dropped, acc.queue_full);
}

#[test]
fn shutdown_gives_up_after_the_timeout_and_counts_the_rest() {
    let l = Listener::start(always(503));
    let mut env = fast(&l.url());
    env.push(("PROCSHIP_SHUTDOWN_TIMEOUT", "1".into()));
    let a = Agent::start(&refs(&env));
    wait_for("a few attempts", SECS(20), || l.received().len() >= 3);
    let t0 = std::time::Instant::now();
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(t0.elapsed() < SECS(4), "exit took {:?}", t0.elapsed());
    assert!(status.success(), "{stderr}");
    let acc = account(&stderr);
    assert_eq!(acc.sent, 0);
    assert!(acc.collected > 0);
    assert_eq!(acc.shutdown, acc.collected, "{acc:?}");
}

#[test]
fn stdout_default_prints_one_batch_per_line_and_stops_cleanly() {
    // The site's files too: the textfile collector runs once its directory is set.
    let textfiles = fixture("textfile").join("root/var/lib/textfile");
    let textfiles = textfiles.to_string_lossy();
    let commands = tempdir("exec");
    let up = commands.join("up");
    std::fs::write(&up, "#!/bin/sh\necho 'site_up 1'\n").unwrap();
    std::fs::set_permissions(&up, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let commands = commands.to_string_lossy();
    let a = Agent::start(&[
        ("PROCSHIP_INTERVAL", "0.1"),
        ("PROCSHIP_FLUSH_INTERVAL", "0.1"),
        ("PROCSHIP_FLUSH_JITTER", "0"),
        ("PROCSHIP_HOSTNAME", "stdout-host"),
        ("PROCSHIP_TEXTFILE_DIR", &textfiles),
        ("PROCSHIP_EXEC_DIR", &commands),
    ]);
    wait_for("3 lines on stdout", SECS(20), || {
        a.stdout().lines().count() >= 3
    });
    let (status, stdout, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let mut points = 0;
    for (i, line) in stdout.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is one JSON batch");
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["host"], "stdout-host");
        points += v["points"].as_array().unwrap().len() as u64;
    }
    let acc = account(&stderr);
    assert_eq!((acc.sent, acc.dropped), (points, 0));
    assert_eq!(acc.collected, points);
    // Every default collector shows up on a real host (cpu from the second
    // cycle), but those whose source this host lacks (no temperature
    // sensors in most VMs, no PSI on old kernels).
    let has = |dir: &str, prefix: &str, file: &str| {
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                e.file_name().to_string_lossy().starts_with(prefix)
                    && std::fs::read_dir(e.path()).is_ok_and(|files| {
                        files.filter_map(Result::ok).any(|f| {
                            let n = f.file_name().to_string_lossy().to_string();
                            n.starts_with("temp") && n.ends_with(file)
                        })
                    })
            })
        })
    };
    let sensors = has("/sys/class/hwmon", "hwmon", "_input")
        || has("/sys/class/thermal", "thermal_zone", "temp");
    let exists = |p: &str| std::path::Path::new(p).exists();
    for c in procship::collect::defaults() {
        if (c == "temp" && !sensors)
            || (c == "pressure" && !exists("/proc/pressure/cpu"))
            || (c == "conntrack" && !exists("/proc/sys/net/netfilter/nf_conntrack_count"))
        {
            continue;
        }
        // A collector is named for its source; its measurement is Telegraf's.
        let m = match c {
            "filefd" => "linux_sysctl_fs",
            "softirqs" => "soft_interrupts",
            "info" => "host",
            other => other,
        };
        assert!(
            stdout.contains(&format!("\"measurement\":\"{m}\"")),
            "no {m} point (collector {c})"
        );
    }
}

#[test]
fn sigint_stops_like_sigterm() {
    let l = Listener::start(always(200));
    let a = Agent::start(&refs(&fast(&l.url())));
    wait_for("a batch", SECS(20), || !l.received().is_empty());
    a.signal(nix::sys::signal::Signal::SIGINT);
    let (status, _, stderr) = a.wait_exit(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("signal=SIGINT"), "{stderr}");
    let acc = account(&stderr);
    assert_eq!((acc.collected, acc.dropped), (acc.sent, 0));
}

#[test]
fn every_cycle_ships_the_agent_own_measurement() {
    let l = Listener::start(always(204));
    let a = Agent::start(&refs(&fast(&l.url())));
    wait_for("3 batches", SECS(20), || l.accepted().len() >= 3);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let agents: Vec<serde_json::Value> = Received::all_points(&l.accepted())
        .into_iter()
        .filter(|p| p["measurement"] == "agent")
        .collect();
    assert!(agents.len() >= 3, "one per cycle");
    let last = &agents[agents.len() - 1];
    let f = &last["fields"];
    assert_eq!(last["tags"]["host"], "test-host");
    for k in [
        "collected",
        "sent",
        "dropped",
        "retries",
        "queue_batches",
        "rss_bytes",
        "cpu_seconds",
        "last_success",
    ] {
        assert!(!f[k].is_null(), "field {k} in {last}");
    }
    assert!(f["collected"].as_u64().unwrap() > 0);
    assert!(f["rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(
        f["last_success"].as_i64().unwrap() > 1_600_000_000,
        "a delivery happened: {last}"
    );
}

#[test]
fn the_agent_own_points_go_out_every_self_interval() {
    let l = Listener::start(always(204));
    let mut env = fast(&l.url());
    env.retain(|(k, _)| *k != "PROCSHIP_SELF_INTERVAL");
    env.push(("PROCSHIP_SELF_INTERVAL", "0.3".into()));
    let a = Agent::start(&refs(&env));
    wait_for("15 batches", SECS(30), || l.accepted().len() >= 15);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let points = Received::all_points(&l.accepted());
    let times = |m: &str| -> Vec<i64> {
        let mut t: Vec<i64> = points
            .iter()
            .filter(|p| p["measurement"] == m)
            .map(|p| p["timestamp"].as_i64().unwrap())
            .collect();
        t.dedup();
        t
    };
    // `system` is one point a cycle: the cycles, in order.
    let cycles = times("system");
    let agent = times("agent");
    assert_eq!(
        times("agent_collector"),
        agent,
        "both kinds go out together"
    );
    let at: Vec<usize> = agent
        .iter()
        .map(|t| {
            cycles
                .iter()
                .position(|c| c == t)
                .unwrap_or_else(|| panic!("an agent point at {t} outside any cycle"))
        })
        .collect();
    assert_eq!(at.first(), Some(&0), "the first cycle ships them: {at:?}");
    let gaps: Vec<usize> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Every third cycle; sooner only when a collector's health changed.
    assert!(gaps.iter().all(|g| (1..=3).contains(g)), "{gaps:?}");
    assert!(
        gaps.iter().filter(|g| **g == 3).count() * 2 > gaps.len(),
        "mostly every third cycle: {gaps:?}"
    );
    assert!(cycles.len() >= 15 && agent.len() * 2 < cycles.len());
}

#[test]
fn each_host_ticks_at_its_own_stable_phase_of_the_interval() {
    let interval = Duration::from_millis(500);
    let mut phases = Vec::new();
    for host in ["fleet-host-a", "fleet-host-b"] {
        let a = Agent::start(&[
            ("PROCSHIP_INTERVAL", "0.5"),
            ("PROCSHIP_FLUSH_INTERVAL", "0.5"),
            ("PROCSHIP_FLUSH_JITTER", "0"),
            ("PROCSHIP_COLLECTORS", "system"),
            ("PROCSHIP_HOSTNAME", host),
        ]);
        wait_for("3 batches", SECS(20), || a.stdout().lines().count() >= 3);
        let (status, stdout, stderr) = a.stop(SECS(10));
        assert!(status.success(), "{stderr}");
        let want = procship::schedule::phase(host, interval).as_nanos() as i64;
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for p in v["points"].as_array().unwrap() {
                let ts = p["timestamp"].as_i64().unwrap();
                // Within 50 ms after the phase (wall clock), every cycle.
                let late = (ts - want).rem_euclid(interval.as_nanos() as i64);
                assert!(late < 50_000_000, "{host}: {late} ns after its phase");
            }
        }
        phases.push(want);
    }
    assert_ne!(phases[0], phases[1], "two hosts, two phases");
}
