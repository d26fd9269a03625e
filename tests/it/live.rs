//! The collectors on the live kernel, where a fixture tree cannot stand in:
//! what changes while the agent runs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Agent, procship_under, tempdir, wait_for};

/// Runs `cmd` in the namespaces of `pid` (its user namespace and
/// `namespaces`, nsenter's flags such as `--mount`).
fn in_namespace_of(pid: u32, namespaces: &[&str], cmd: &[&str]) {
    let out = Command::new("/usr/bin/nsenter")
        .args(["--target", &pid.to_string(), "--user"])
        .args(namespaces)
        .args(["--preserve-credentials", "--"])
        .args(cmd)
        .output()
        .expect("run nsenter");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pid (as seen here) of the process `unshare --fork` started.
fn forked_child(unshare: u32) -> u32 {
    let children = format!("/proc/{unshare}/task/{unshare}/children");
    let mut pid = None;
    wait_for("unshare's child", Duration::from_secs(10), || {
        pid = std::fs::read_to_string(&children)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_default()
}

/// `"path":"…"` of a disk point on `dir`.
fn path_tag(dir: &Path) -> String {
    format!("\"path\":\"{}\"", dir.display())
}

/// The disk collector reads the mount table again only when the kernel
/// says it changed (a poll in place of a cycle's dearest read): a mount
/// made while the agent runs is in the next batches, and one unmounted
/// leaves them. The agent runs as pid 1 of user, mount and pid namespaces
/// of its own (so `/proc/1/mountinfo` is its table), where the test mounts
/// two tmpfs and unmounts one; all of it goes with the namespaces.
#[test]
fn a_mount_made_or_removed_while_the_agent_runs_shows_in_the_next_batches() {
    let (kept, removed) = (tempdir("mount-kept"), tempdir("mount-removed"));
    let unshare = [
        "/usr/bin/unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
    ];
    let agent = Agent::spawn(procship_under(
        &unshare,
        &[
            ("PROCSHIP_INTERVAL", "0.1"),
            ("PROCSHIP_FLUSH_INTERVAL", "0.1"),
            ("PROCSHIP_FLUSH_JITTER", "0"),
            ("PROCSHIP_COLLECTORS", "disk"),
            ("PROCSHIP_DISK_IGNORE_FS", "devtmpfs"),
            ("PROCSHIP_HOSTNAME", "test-host"),
        ],
    ));
    let inside = forked_child(agent.pid());
    let batches = || agent.stdout().lines().count();
    wait_for("two batches", Duration::from_secs(10), || batches() >= 2);
    for dir in [&kept, &removed] {
        assert!(
            !agent.stdout().contains(&path_tag(dir)),
            "{}",
            agent.stdout()
        );
        let dir = dir.to_str().unwrap_or_default();
        in_namespace_of(
            inside,
            &["--mount"],
            &[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                "procship-test",
                dir,
            ],
        );
    }
    wait_for(
        "both new mounts in a batch",
        Duration::from_secs(10),
        || {
            let out = agent.stdout();
            out.lines()
                .any(|l| l.contains(&path_tag(&kept)) && l.contains(&path_tag(&removed)))
        },
    );
    in_namespace_of(
        inside,
        &["--mount"],
        &["umount", removed.to_str().unwrap_or_default()],
    );
    let after = batches();
    // The batch being made during the unmount may still hold the mount.
    wait_for(
        "two batches after the unmount",
        Duration::from_secs(10),
        || batches() >= after + 2,
    );
    let out = agent.stdout();
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains(&path_tag(&kept)), "{last}");
    assert!(!last.contains(&path_tag(&removed)), "{last}");
    stop(agent, inside);
}

/// Stops an agent run under `unshare` (which holds SIGTERM back while it
/// waits: the agent, `inside`, is told itself); it must exit cleanly and
/// quietly.
fn stop(agent: Agent, inside: u32) {
    let term = nix::sys::signal::Signal::SIGTERM;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(inside as i32), term).unwrap_or_default();
    let (status, _, stderr) = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "{stderr}"
    );
}

/// The `mtu` of interface `name` in the last batch of `stdout` that has a
/// netclass point for it.
fn last_mtu(stdout: &str, name: &str) -> Option<i64> {
    stdout.lines().rev().find_map(|line| {
        let batch: serde_json::Value = serde_json::from_str(line).ok()?;
        let points = batch["points"].as_array()?;
        let p = points
            .iter()
            .find(|p| p["measurement"] == "netclass" && p["tags"]["interface"] == name)?;
        p["fields"]["mtu"].as_i64()
    })
}

/// The read system calls `pid` has made (`/proc/PID/io`: read, pread, …;
/// not a socket's recv).
fn reads_of(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: ")?.trim().parse().ok())
        .unwrap_or_default()
}

/// netclass reads the interfaces' attributes only when the kernel says a
/// link changed: an interface added while the agent runs is in the next
/// batches (the listing is otherwise a minute old), an MTU changed shows at
/// once, and cycles without a change read nothing. The agent runs in user,
/// mount, network and pid namespaces of its own with the namespace's own
/// sysfs on /sys, where the test adds a veth pair; all of it goes with the
/// namespaces.
#[test]
fn a_link_added_or_changed_while_the_agent_runs_shows_at_once_and_quiet_cycles_read_nothing() {
    let unshare = [
        "/usr/bin/unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
        "/bin/sh",
        "-c",
        "mount -t sysfs sysfs /sys && exec \"$0\"",
    ];
    let agent = Agent::spawn(procship_under(
        &unshare,
        &[
            ("PROCSHIP_INTERVAL", "0.1"),
            ("PROCSHIP_FLUSH_INTERVAL", "0.1"),
            ("PROCSHIP_FLUSH_JITTER", "0"),
            ("PROCSHIP_SELF_INTERVAL", "0"),
            ("PROCSHIP_COLLECTORS", "netclass"),
            ("PROCSHIP_HOSTNAME", "test-host"),
        ],
    ));
    let inside = forked_child(agent.pid());
    let batches = || agent.stdout().lines().count();
    wait_for("two batches", Duration::from_secs(10), || batches() >= 2);
    assert_eq!(last_mtu(&agent.stdout(), "pst0"), None);
    let ip = |args: &[&str]| in_namespace_of(inside, &["--net"], &[&["ip", "link"], args].concat());
    ip(&["add", "pst0", "type", "veth", "peer", "name", "pst1"]);
    wait_for("the new link in a batch", Duration::from_secs(10), || {
        last_mtu(&agent.stdout(), "pst0").is_some()
    });
    ip(&["set", "pst0", "mtu", "1400"]);
    wait_for("the new MTU in a batch", Duration::from_secs(10), || {
        last_mtu(&agent.stdout(), "pst0") == Some(1400)
    });
    // Nothing changes now: cycles go by without netclass reading (two links
    // of six attributes each would be twelve reads a cycle; the agent's
    // own point reads one file a cycle at PROCSHIP_SELF_INTERVAL=0).
    let (before, reads) = (batches(), reads_of(inside));
    wait_for("ten quiet batches", Duration::from_secs(10), || {
        batches() >= before + 10
    });
    let (cycles, read) = (batches() - before, reads_of(inside) - reads);
    assert!(read <= cycles as u64, "{read} reads in {cycles} cycles");
    assert_eq!(last_mtu(&agent.stdout(), "pst1"), Some(1500));
    stop(agent, inside);
}
