//! Fault tests of the disk spool with the real binary: a backend down for
//! longer than memory holds, SIGKILL and restart, damaged spool files, a
//! full budget, a second agent on the same spool, too-old batches. Every
//! test compares per-batch sequences and point counts against what the
//! agent logged, and checks that every point is accounted for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::*;
use nix::sys::signal::Signal;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Fast settings against a port nothing listens on yet, with a spool.
fn spooling(port: u16, dir: &Path) -> Vec<(&'static str, String)> {
    spooling_to(&format!("http://127.0.0.1:{port}/ingest"), dir)
}

/// The same settings, shipping to `url`.
fn spooling_to(url: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let mut env = fast(url);
    env.push(("PROCSHIP_SPOOL_DIR", dir.display().to_string()));
    env.push(("PROCSHIP_LOG_LEVEL", "debug".into()));
    // Plain JSON: bigger batches fill the small budgets of these tests quickly.
    env.push(("PROCSHIP_COMPRESSION", "none".into()));
    env
}

/// seq → points of every batch the agent logged as written to the spool.
fn spooled(stderr: &str) -> BTreeMap<u64, u64> {
    let field = |line: &str, k: &str| -> Option<u64> {
        let at = line.find(&format!(" {k}="))? + k.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    stderr
        .lines()
        .filter(|l| l.contains("spool: appended"))
        .filter_map(|l| Some((field(l, "seq")?, field(l, "points")?)))
        .collect()
}

/// seq → points of what the listener accepted; no batch may arrive twice
/// unless `dup_ok`.
fn delivered(l: &Listener) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for r in l.accepted() {
        let prev = out.insert(r.seq(), r.points());
        assert!(prev.is_none(), "batch {} delivered twice", r.seq());
    }
    out
}

/// The spool's segment files, sorted (none while the directory is unreadable).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn segments_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn outage_longer_than_memory_holds_then_every_point_arrives() {
    let dir = tempdir("spool-outage");
    let port = free_port();
    let mut env = spooling(port, &dir);
    env.push(("PROCSHIP_QUEUE_MAX_BYTES", "64KiB".into()));
    let a = Agent::start(&refs(&env));
    // The backend is down until the spool holds twice what memory could.
    wait_for("128 KiB spooled", SECS(60), || {
        segments_bytes(&dir) > 128 << 10
    });
    let l = Listener::on(&format!("127.0.0.1:{port}"), always(204));
    wait_for("the backlog delivered", SECS(60), || {
        // What was spooled first, then what arrived: batches spooled while
        // the listener is read are not waited for (new ones come every
        // interval, and reading a long log can take longer than that).
        let logged = spooled(&a.stderr());
        let got = delivered(&l);
        logged.len() > 20 && logged.keys().all(|s| got.contains_key(s))
    });
    let (status, _, stderr) = a.stop(SECS(20));
    assert!(status.success(), "{stderr}");

    let got = delivered(&l);
    let logged = spooled(&stderr);
    let want: Vec<u64> = (1..=logged.len() as u64).collect();
    assert_eq!(logged.keys().copied().collect::<Vec<_>>(), want);
    assert_eq!(got, logged, "every spooled batch arrived, with its points");
    let acc = account(&stderr);
    assert_eq!(acc.dropped, 0, "{acc:?}");
    assert_eq!(acc.sent, got.values().sum::<u64>());
    assert_eq!(acc.collected, acc.sent, "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
    let seqs: Vec<u64> = l.accepted().iter().map(|r| r.seq()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
}

#[test]
fn sigkill_while_down_then_restart_delivers_everything_spooled() {
    let dir = tempdir("spool-kill");
    let port = free_port();
    let env = spooling(port, &dir);
    let a = Agent::start(&refs(&env));
    wait_for("20 batches spooled", SECS(60), || {
        spooled(&a.stderr()).len() >= 20
    });
    a.signal(Signal::SIGKILL);
    let (_, _, first_log) = a.wait_exit(SECS(10));
    let before = spooled(&first_log);
    assert!(before.len() >= 20);

    let l = Listener::on(&format!("127.0.0.1:{port}"), always(204));
    let b = Agent::start(&refs(&env));
    wait_for("what was spooled before the kill", SECS(60), || {
        let got = delivered(&l);
        before.keys().all(|s| got.contains_key(s))
    });
    let (status, _, stderr) = b.stop(SECS(20));
    assert!(status.success(), "{stderr}");

    let got = delivered(&l);
    for (seq, points) in &before {
        assert_eq!(got.get(seq), Some(points), "batch {seq} as spooled");
    }
    // The sequence goes on where the killed run left off.
    let last_before = *before.keys().last().unwrap();
    let after = spooled(&stderr);
    assert!(
        after.keys().all(|s| *s > last_before),
        "new batches numbered after {last_before}: {after:?}"
    );
    let acc = account(&stderr);
    assert!(
        acc.recovered >= before.values().sum::<u64>(),
        "recovered {} of {:?}",
        acc.recovered,
        acc
    );
    assert_eq!(acc.dropped, 0, "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
    assert!(stderr.contains("spool: undelivered batches from an earlier run"));
}

#[test]
fn truncated_and_corrupted_spool_files_lose_only_the_damaged_records() {
    let dir = tempdir("spool-damage");
    let port = free_port();
    let env = spooling(port, &dir);
    let a = Agent::start(&refs(&env));
    wait_for("12 batches spooled", SECS(60), || {
        spooled(&a.stderr()).len() >= 12
    });
    let (status, _, first_log) = a.stop(SECS(20));
    assert!(status.success(), "{first_log}");
    assert!(
        first_log.contains("undelivered batches stay in the spool")
            || account(&first_log).spooled > 0,
        "{first_log}"
    );
    let before = spooled(&first_log);
    assert_eq!(
        account(&first_log).spooled,
        before.values().sum::<u64>(),
        "a clean stop leaves every batch in the spool"
    );

    // One segment (16 MiB segments): flip a byte in the middle, tear the tail.
    let files = segment_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    bytes.truncate(bytes.len() - 7);
    std::fs::write(&files[0], &bytes).unwrap();

    let l = Listener::on(&format!("127.0.0.1:{port}"), always(204));
    let b = Agent::start(&refs(&env));
    let last = *before.keys().last().unwrap();
    wait_for("the intact records", SECS(60), || {
        delivered(&l).keys().filter(|s| **s <= last).count() >= before.len() - 2
    });
    let (status, _, stderr) = b.stop(SECS(20));
    assert!(status.success(), "{stderr}");

    assert!(stderr.contains("torn tail"), "{stderr}");
    assert!(stderr.contains("corruption"), "{stderr}");
    let got = delivered(&l);
    let old: BTreeSet<u64> = got.keys().copied().filter(|s| *s <= last).collect();
    assert_eq!(old.len(), before.len() - 2, "exactly two records damaged");
    assert!(!old.contains(&last), "the torn last record is not sent");
    for s in &old {
        assert_eq!(got[s], before[s], "batch {s} intact");
    }
    let acc = account(&stderr);
    assert_eq!(
        acc.recovered,
        old.iter().map(|s| before[s]).sum::<u64>(),
        "recovered = the intact records"
    );
    assert!(acc.balanced(), "{acc:?}");
}

#[test]
fn full_spool_drops_the_oldest_and_the_counts_add_up() {
    let dir = tempdir("spool-budget");
    let port = free_port();
    let mut env = spooling(port, &dir);
    env.push(("PROCSHIP_SPOOL_MAX_BYTES", "128KiB".into()));
    // The drain as fast as it goes: with a pause the budget can cut again
    // while the backlog drains, and each cut spares the batch in flight,
    // which this test's order check allows only once.
    env.push(("PROCSHIP_DRAIN_PACE", "0".into()));
    let a = Agent::start(&refs(&env));
    wait_for("the budget cutting", SECS(60), || {
        a.stderr().contains("spool full")
    });
    // Let it cut at least one more segment: the oldest one changes.
    let oldest = segment_files(&dir).first().cloned();
    wait_for("another segment cut", SECS(60), || {
        segment_files(&dir).first() != oldest.as_ref()
    });
    assert!(segments_bytes(&dir) <= 128 << 10, "budget kept");
    let l = Listener::on(&format!("127.0.0.1:{port}"), always(204));
    wait_for("delivery to resume", SECS(60), || delivered(&l).len() >= 10);
    let (status, _, stderr) = a.stop(SECS(20));
    assert!(status.success(), "{stderr}");

    let got = delivered(&l);
    let logged = spooled(&stderr);
    let acc = account(&stderr);
    assert!(acc.spool_full > 0, "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
    assert_eq!(acc.dropped, acc.spool_full, "{acc:?}");
    assert_eq!(acc.spooled, 0, "all delivered at the clean stop: {acc:?}");
    assert_eq!(acc.sent, got.values().sum::<u64>());
    // What went is the oldest. A cut spares the batch the shipper holds
    // (in flight, not dropped), and the budget may cut again while the
    // backlog drains: so a delivered batch older than a missing one is
    // one that was in flight at a cut — the oldest left, with the cut
    // segment's batches right after it missing.
    let missing: Vec<u64> = logged
        .keys()
        .copied()
        .filter(|s| !got.contains_key(s))
        .collect();
    assert!(!missing.is_empty() && missing[0] == 1 || got.keys().next() == Some(&1));
    let newest_missing = missing.last().copied().unwrap_or(0);
    let spared: Vec<u64> = got
        .keys()
        .copied()
        .filter(|d| *d < newest_missing)
        .collect();
    assert!(
        spared.iter().all(|d| missing.contains(&(d + 1))),
        "dropped {missing:?}, delivered {:?}: a delivered batch among dropped ones that was not in flight",
        got.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        got.keys().last(),
        logged.keys().last(),
        "the newest arrived"
    );
    let dropped: u64 = missing.iter().map(|s| logged[s]).sum();
    assert_eq!(
        acc.spool_full, dropped,
        "dropped = the missing batches' points"
    );
}

#[test]
fn second_agent_on_the_same_spool_refuses_to_start() {
    let dir = tempdir("spool-lock");
    let port = free_port();
    let env = spooling(port, &dir);
    let a = Agent::start(&refs(&env));
    wait_for("the first agent's lock", SECS(30), || {
        std::fs::read_to_string(dir.join("lock")).is_ok_and(|s| !s.trim().is_empty())
    });
    let b = Agent::start(&refs(&env));
    let (status, _, stderr) = b.wait_exit(SECS(10));
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("in use by another procship"),
        "clear message: {stderr}"
    );
    let pid = std::fs::read_to_string(dir.join("lock")).unwrap();
    assert!(
        stderr.contains(pid.trim()),
        "names the owner's pid: {stderr}"
    );
    let (status, _, stderr) = a.stop(SECS(20));
    assert!(status.success(), "{stderr}");
}

#[test]
fn batches_older_than_max_batch_age_are_dropped_as_too_old() {
    let dir = tempdir("spool-age");
    let port = free_port();
    let env = spooling(port, &dir);
    let a = Agent::start(&refs(&env));
    wait_for("5 batches spooled", SECS(60), || {
        spooled(&a.stderr()).len() >= 5
    });
    let (status, _, first_log) = a.stop(SECS(20));
    assert!(status.success(), "{first_log}");
    let old_points: u64 = spooled(&first_log).values().sum();
    // What is waited for here is time itself: the spooled batches must
    // pass PROCSHIP_MAX_BATCH_AGE=1s before the second run starts.
    std::thread::sleep(Duration::from_millis(1200));

    let l = Listener::on(&format!("127.0.0.1:{port}"), always(204));
    let mut env = env;
    env.push(("PROCSHIP_MAX_BATCH_AGE", "1s".into()));
    let b = Agent::start(&refs(&env));
    wait_for("new batches", SECS(60), || delivered(&l).len() >= 3);
    let (status, _, stderr) = b.stop(SECS(20));
    assert!(status.success(), "{stderr}");
    let acc = account(&stderr);
    assert_eq!(acc.recovered, old_points);
    assert_eq!(acc.too_old, old_points, "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
    let last_old = *spooled(&first_log).keys().last().unwrap();
    assert!(
        delivered(&l).keys().all(|s| *s > last_old),
        "no old batch was sent"
    );
    assert!(stderr.contains("older than PROCSHIP_MAX_BATCH_AGE"));
}

#[test]
fn restart_after_sigkill_resends_at_most_the_batch_in_flight() {
    let dir = tempdir("spool-ack");
    let l = Listener::start(always(204));
    let env = spooling_to(&l.url(), &dir);
    let a = Agent::start(&refs(&env));
    wait_for("20 batches delivered", SECS(60), || {
        l.accepted().len() >= 20
    });
    a.signal(Signal::SIGKILL);
    let (_, _, first_log) = a.wait_exit(SECS(10));
    let before = spooled(&first_log);
    let b = Agent::start(&refs(&env));
    let last_before = *before.keys().last().unwrap();
    wait_for("new batches after the restart", SECS(60), || {
        l.accepted().iter().any(|r| r.seq() > last_before + 3)
    });
    let (status, _, stderr) = b.stop(SECS(20));
    assert!(status.success(), "{stderr}");

    let mut seen = BTreeMap::new();
    for r in l.accepted() {
        *seen.entry(r.seq()).or_insert(0u32) += 1;
    }
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(twice.len() <= 1, "sent again: {twice:?}");
    for s in before.keys() {
        assert!(seen.contains_key(s), "batch {s} lost across the kill");
    }
    let acc = account(&stderr);
    assert!(
        acc.recovered <= before.values().max().copied().unwrap_or(0) * 2,
        "{acc:?}"
    );
    assert!(acc.balanced(), "{acc:?}");
}

#[test]
fn refused_credentials_keep_every_batch_until_they_are_fixed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempdir("spool-401");
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    let l = Listener::start(Box::new(move |_| {
        if f.load(Ordering::SeqCst) {
            (204, vec![], String::new())
        } else {
            (401, vec![], "{\"error\":\"token expired\"}".into())
        }
    }));
    let status = free_port();
    let mut env = spooling_to(&l.url(), &dir);
    env.push(("PROCSHIP_STATUS_ADDR", status.to_string()));
    let a = Agent::start(&refs(&env));
    wait_for("three refusals", SECS(30), || l.received().len() >= 3);
    let (code, body) = get(status, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("refuses the credentials"), "{body}");
    fixed.store(true, Ordering::SeqCst);
    wait_for("deliveries again", SECS(30), || l.accepted().len() >= 5);
    let (code, body) = get(status, "/healthz");
    assert_eq!(code, 200, "{body}");
    let (st, _, stderr) = a.stop(SECS(20));
    assert!(st.success(), "{stderr}");
    let acc = account(&stderr);
    assert_eq!((acc.rejected, acc.dropped), (0, 0), "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
    // Every batch cut was delivered, in order, after the refusals.
    let seqs: Vec<u64> = l.accepted().iter().map(Received::seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(acc.sent + acc.spooled, acc.collected + acc.recovered);
    let errors = stderr
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("authentication failed"))
        .count();
    assert_eq!(errors, 1, "one ERROR per episode:\n{stderr}");
    assert!(stderr.contains("accepts the credentials again"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Line protocol lines of every accepted request, in arrival order.
fn lines(l: &Listener) -> Vec<String> {
    l.accepted()
        .iter()
        .flat_map(|r| {
            String::from_utf8_lossy(&r.body)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Influx batches of at most `points` points, spooled while nothing listens.
fn influx_spooling(port: u16, dir: &Path, points: &str) -> Vec<(&'static str, String)> {
    let mut env = spooling(port, dir);
    env.push(("PROCSHIP_FORMAT", "influx".into()));
    env.push(("PROCSHIP_BATCH_MAX_POINTS", points.into()));
    env
}

#[test]
fn a_backlog_drains_in_fewer_larger_requests_at_the_pace() {
    let dir = tempdir("spool-drain");
    let port = free_port();
    let mut env = influx_spooling(port, &dir, "1000");
    env.push(("PROCSHIP_DRAIN_MAX_BYTES", "64KiB".into()));
    env.push(("PROCSHIP_DRAIN_PACE", "0.3".into()));
    let a = Agent::start(&refs(&env));
    wait_for("60 batches spooled", SECS(60), || {
        spooled(&a.stderr()).len() >= 60
    });
    let l = Listener::on(&format!("127.0.0.1:{port}"), always(204));
    let want = |stderr: &str| spooled(stderr).values().sum::<u64>() as usize;
    wait_for("the backlog delivered", SECS(60), || {
        lines(&l).len() >= want(&a.stderr())
    });
    let (status, _, stderr) = a.stop(SECS(20));
    assert!(status.success(), "{stderr}");

    let got = lines(&l);
    assert_eq!(got.len(), want(&stderr), "every spooled point, once");
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "no point twice");
    let acc = account(&stderr);
    assert_eq!(acc.dropped, 0, "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
    let reqs = l.accepted();
    let batches = spooled(&stderr).len();
    assert!(
        reqs.len() * 3 < batches,
        "{} requests for {batches} batches: the backlog was joined",
        reqs.len()
    );
    assert!(
        reqs.iter().all(|r| r.body.len() <= 80 * 1024),
        "each request within the bound (plus the batch that starts it)"
    );
    // While the backlog drains, requests come at most one per pace.
    // The first request is the batch being retried when the backend came
    // back; then the joined ones (a cycle's batch here is about 5 KB, a
    // joined request 50 KB or more).
    let drain: Vec<_> = reqs
        .iter()
        .skip(1)
        .take_while(|r| r.body.len() > 20_000)
        .collect();
    let sizes: Vec<usize> = reqs.iter().map(|r| r.body.len()).collect();
    assert!(
        drain.len() >= 2,
        "{} joined requests: {sizes:?}",
        drain.len()
    );
    for w in drain.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(250), "paced: {gap:?}");
    }
}

#[test]
fn a_joined_request_rejected_whole_is_sent_again_batch_by_batch() {
    let dir = tempdir("spool-split");
    let port = free_port();
    // Batches of at most 5 points: a body of more lines is a joined one,
    // which this backend refuses with 400.
    let env = influx_spooling(port, &dir, "5");
    let a = Agent::start(&refs(&env));
    wait_for("20 batches spooled", SECS(60), || {
        spooled(&a.stderr()).len() >= 20
    });
    let l = Listener::judging(
        &format!("127.0.0.1:{port}"),
        Box::new(|_, body| {
            let n = body.iter().filter(|b| **b == b'\n').count();
            (
                if n > 5 { 400 } else { 204 },
                vec![],
                "too many lines".into(),
            )
        }),
    );
    let want = |stderr: &str| spooled(stderr).values().sum::<u64>() as usize;
    wait_for("the backlog delivered", SECS(60), || {
        lines(&l).len() >= want(&a.stderr())
    });
    let (status, _, stderr) = a.stop(SECS(20));
    assert!(status.success(), "{stderr}");
    assert!(
        l.received().iter().any(|r| r.status == 400),
        "a joined request was sent"
    );
    assert!(stderr.contains("a joined request was rejected; sending its batches one by one"));
    assert_eq!(lines(&l).len(), want(&stderr), "every point delivered");
    let acc = account(&stderr);
    assert_eq!(acc.dropped, 0, "{acc:?}");
    assert!(acc.balanced(), "{acc:?}");
}
