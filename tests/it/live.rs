//! The collectors on the live kernel, where a fixture tree cannot stand in:
//! what changes while the agent runs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Agent, procship_under, tempdir, wait_for};

/// Runs `cmd` in the mount namespace (and user namespace) of `pid`.
fn in_namespace_of(pid: u32, cmd: &[&str]) {
    let out = Command::new("/usr/bin/nsenter")
        .args([
            "--target",
            &pid.to_string(),
            "--user",
            "--mount",
            "--preserve-credentials",
            "--",
        ])
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
    in_namespace_of(inside, &["umount", removed.to_str().unwrap_or_default()]);
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
    // unshare holds SIGTERM back while it waits: the agent is told itself.
    let term = nix::sys::signal::Signal::SIGTERM;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(inside as i32), term).unwrap_or_default();
    let (status, _, stderr) = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "{stderr}"
    );
}
