//! SIGHUP with the real binary: the env file is read again; the token and
//! the interval change live without losing a queued batch; a broken env file
//! or a change that needs a restart leaves the running configuration alone.

use std::path::Path;
use std::time::Duration;

use crate::util::*;
use nix::sys::signal::Signal;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn env_file(path: &Path, url: &str, token: &str, interval: &str, extra: &str) {
    std::fs::write(
        path,
        format!(
            "PROCSHIP_INGEST_URL={url}\nPROCSHIP_AUTH_TOKEN={token}\nPROCSHIP_INTERVAL={interval}\n\
             PROCSHIP_FLUSH_INTERVAL=0.1\nPROCSHIP_FLUSH_JITTER=0\nPROCSHIP_RETRY_INITIAL=0.05\n\
             PROCSHIP_RETRY_MAX_DELAY=0.2\nPROCSHIP_COLLECTORS=all,-processes,-disk\n\
             PROCSHIP_HOSTNAME=test-host\n{extra}"
        ),
    )
    .unwrap();
}

fn bearer(r: &Received) -> String {
    r.header("Authorization").unwrap_or("").to_string()
}

/// Timestamps (ns) of the agent's own point in each accepted batch.
fn agent_times(rs: &[Received]) -> Vec<i64> {
    Received::all_points(rs)
        .into_iter()
        .filter(|p| p["measurement"] == "agent")
        .map(|p| p["timestamp"].as_i64().unwrap())
        .collect()
}

#[test]
fn token_and_interval_change_live_and_nothing_queued_is_lost() {
    let l = Listener::start(always(204));
    let dir = tempdir("reload");
    let file = dir.join("agent.env");
    env_file(&file, &l.url(), "tok-old", "0.1", "");
    // As under systemd: EnvironmentFile= also put the file into the environment.
    let url = l.url();
    let systemd_copy = [
        ("PROCSHIP_INGEST_URL", url.as_str()),
        ("PROCSHIP_AUTH_TOKEN", "tok-old"),
        ("PROCSHIP_INTERVAL", "0.1"),
        // The agent's own points every cycle: their times show the interval.
        ("PROCSHIP_SELF_INTERVAL", "0"),
    ];
    let a = Agent::start_args(&systemd_copy, &["--env-file", file.to_str().unwrap()]);
    wait_for("batches with the old token", SECS(20), || {
        l.accepted().len() >= 5
    });

    env_file(&file, &l.url(), "tok-new", "0.5", "");
    a.signal(Signal::SIGHUP);
    wait_for("the new token", SECS(20), || {
        l.accepted().iter().any(|r| bearer(r) == "Bearer tok-new")
    });
    let switched = l.accepted().len();
    wait_for("batches at the new interval", SECS(20), || {
        l.accepted().len() >= switched + 5
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");

    let got = l.accepted();
    let first_new = got
        .iter()
        .position(|r| bearer(r) == "Bearer tok-new")
        .unwrap();
    assert!(
        got[first_new..]
            .iter()
            .all(|r| bearer(r) == "Bearer tok-new"),
        "after the switch only the new token"
    );
    assert!(
        got[..first_new]
            .iter()
            .all(|r| bearer(r) == "Bearer tok-old")
    );
    let after = agent_times(&got[switched..]);
    let gaps: Vec<i64> = after.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= 400_000_000),
        "cycles 0.5 s apart after the reload: {gaps:?}"
    );
    let before = agent_times(&got[..first_new]);
    assert!(
        before.windows(2).any(|w| w[1] - w[0] < 300_000_000),
        "and 0.1 s before it"
    );
    assert!(stderr.contains("applied=AUTH_TOKEN,INTERVAL"), "{stderr}");
    assert!(!stderr.contains("tok-new") && !stderr.contains("tok-old"));
    // Every batch, in order, none lost across the reload.
    let seqs: Vec<u64> = got.iter().map(|r| r.seq()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let acc = account(&stderr);
    assert_eq!(acc.collected, acc.sent + acc.dropped, "{acc:?}");
    assert_eq!(acc.dropped, 0);
}

#[test]
fn a_broken_env_file_keeps_the_running_configuration() {
    let l = Listener::start(always(204));
    let dir = tempdir("reload-bad");
    let file = dir.join("agent.env");
    env_file(&file, &l.url(), "tok-keep", "0.1", "");
    let a = Agent::start_args(&[], &["--env-file", file.to_str().unwrap()]);
    wait_for("batches", SECS(20), || l.accepted().len() >= 3);

    env_file(&file, &l.url(), "tok-other", "never", "");
    a.signal(Signal::SIGHUP);
    wait_for("the refusal", SECS(20), || {
        a.stderr()
            .contains("the new configuration is invalid, keeping the running one")
    });
    let n = l.accepted().len();
    wait_for("delivery going on", SECS(20), || {
        l.accepted().len() >= n + 5
    });
    assert!(l.accepted().iter().all(|r| bearer(r) == "Bearer tok-keep"));
    assert!(
        a.stderr().contains("PROCSHIP_INTERVAL"),
        "names the variable"
    );

    // A valid change that needs a restart is logged, not applied.
    env_file(
        &file,
        &l.url(),
        "tok-keep",
        "0.1",
        "PROCSHIP_FORMAT=influx\n",
    );
    a.signal(Signal::SIGHUP);
    wait_for("the restart note", SECS(20), || {
        a.stderr()
            .contains("PROCSHIP_FORMAT changed; it applies after a restart")
    });
    let n = l.accepted().len();
    wait_for("still JSON", SECS(20), || l.accepted().len() >= n + 3);
    assert!(
        l.accepted()[n..]
            .iter()
            .all(|r| r.header("Content-Type") == Some("application/json"))
    );
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("tok-other"));
}

#[test]
fn log_level_changes_live() {
    let l = Listener::start(always(204));
    let dir = tempdir("reload-log");
    let spool = dir.join("spool");
    std::fs::create_dir(&spool).unwrap();
    let file = dir.join("agent.env");
    let extra = format!("PROCSHIP_SPOOL_DIR={}\n", spool.display());
    env_file(&file, &l.url(), "tok", "0.1", &extra);
    let a = Agent::start_args(&[], &["--env-file", file.to_str().unwrap()]);
    wait_for("batches", SECS(20), || l.accepted().len() >= 3);
    assert!(
        !a.stderr().contains("spool: appended"),
        "no debug lines at info"
    );
    env_file(
        &file,
        &l.url(),
        "tok",
        "0.1",
        &format!("{extra}PROCSHIP_LOG_LEVEL=debug\n"),
    );
    a.signal(Signal::SIGHUP);
    wait_for("debug lines", SECS(20), || {
        a.stderr().contains("spool: appended")
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("applied=LOG_LEVEL"), "{stderr}");
}
