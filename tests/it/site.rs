//! The site's own metrics through the real binary: `.prom` files written
//! with rename (textfile) and real shell scripts (exec), delivered to a
//! real listener; a broken file beside a good one; a changed value; a
//! script past its timeout killed with its children while the cadence
//! holds; a flooding script bounded; an exec directory others may write
//! refused with exit 78.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::util::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Every point (measurement, tags, fields) the listener received.
fn points(l: &Listener) -> Vec<serde_json::Value> {
    l.accepted()
        .iter()
        .flat_map(|r| r.json()["points"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn named<'a>(pts: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    pts.iter().filter(|p| p["measurement"] == name).collect()
}

/// Writes `text` to `dir/name` the way a cron job should: a temporary
/// file, then a rename.
fn write_atomically(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn trusted_dir(tag: &str) -> std::path::PathBuf {
    let d = tempdir(tag);
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn start(l: &Listener, extra: &[(&'static str, String)]) -> Agent {
    fast_agent(&l.url(), "cpu,textfile,exec", extra)
}

#[test]
fn prom_files_arrive_with_labels_and_new_values_and_a_broken_one_is_named() {
    let l = Listener::start(always(204));
    let dir = tempdir("textfile");
    write_atomically(
        &dir,
        "backup.prom",
        "# TYPE backup_age_seconds gauge\nbackup_age_seconds{job=\"nightly\"} 3600\n",
    );
    std::fs::write(dir.join("broken.prom"), "broken{x=\"open} 1\n").unwrap();
    let a = start(&l, &[("PROCSHIP_TEXTFILE_DIR", dir.display().to_string())]);
    wait_for("the backup metric", SECS(20), || {
        !named(&points(&l), "backup_age_seconds").is_empty()
    });
    write_atomically(
        &dir,
        "backup.prom",
        "backup_age_seconds{job=\"nightly\"} 60\n",
    );
    wait_for("its new value", SECS(20), || {
        named(&points(&l), "backup_age_seconds")
            .iter()
            .any(|p| p["fields"]["value"] == 60.0)
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let pts = points(&l);
    let backup = named(&pts, "backup_age_seconds")[0];
    assert_eq!(backup["tags"]["job"], "nightly");
    assert_eq!(backup["tags"]["host"], "test-host");
    assert!(named(&pts, "broken").is_empty());
    let files = named(&pts, "textfile");
    assert!(
        files
            .iter()
            .any(|p| p["tags"]["file"] == "broken.prom" && p["fields"]["scrape_error"] == 1)
    );
    assert!(
        files
            .iter()
            .any(|p| p["tags"]["file"] == "backup.prom" && p["fields"]["scrape_error"] == 0)
    );
    assert!(
        stderr.contains("broken.prom: line 1: a label value is not terminated"),
        "the broken file is named: {stderr}"
    );
    assert_eq!(
        stderr.matches("broken.prom: line 1").count(),
        1,
        "warned once while it stays broken"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_prom_file_keeps_its_exact_name_over_remote_write() {
    let l = Listener::start(always(204));
    let dir = tempdir("textfile-rw");
    write_atomically(&dir, "raid.prom", "raid_degraded{array=\"md0\"} 1\n");
    let a = start(
        &l,
        &[
            ("PROCSHIP_TEXTFILE_DIR", dir.display().to_string()),
            ("PROCSHIP_FORMAT", "prometheus".into()),
        ],
    );
    wait_for("2 requests", SECS(20), || l.accepted().len() >= 2);
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    use prost::Message;
    let found = l.accepted().iter().any(|r| {
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        let req = procship::encode::remote_write::WriteRequest::decode(&raw[..]).unwrap();
        req.timeseries.iter().any(|ts| {
            let label = |n: &str| {
                ts.labels
                    .iter()
                    .find(|l| l.name == n)
                    .map(|l| l.value.as_str())
            };
            label("__name__") == Some("raid_degraded") && label("array") == Some("md0")
        })
    });
    assert!(found, "raid_degraded{{array=\"md0\"}} under its own name");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scripts_printing_either_syntax_arrive_and_a_slow_one_is_killed_without_stalling() {
    let l = Listener::start(always(204));
    let dir = trusted_dir("exec");
    let pids = tempdir("exec-pids").join("pids");
    script(
        &dir,
        "temp",
        "echo '# TYPE cpu_temp_celsius gauge'; echo 'cpu_temp_celsius{sensor=\"die\"} 61.5'",
    );
    script(&dir, "gpu", "echo 'gpu,card=0 temp=55,fan=40i'");
    script(
        &dir,
        "slow",
        &format!("sleep 600 & echo $! >> {}; wait", pids.display()),
    );
    let a = start(
        &l,
        &[
            ("PROCSHIP_EXEC_DIR", dir.display().to_string()),
            ("PROCSHIP_EXEC_TIMEOUT", "0.5".into()),
        ],
    );
    wait_for("both commands' points and a timeout", SECS(30), || {
        let pts = points(&l);
        !named(&pts, "cpu_temp_celsius").is_empty()
            && !named(&pts, "gpu").is_empty()
            && named(&pts, "exec")
                .iter()
                .any(|p| p["fields"]["commands_timed_out"] == 1)
    });
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    let pts = points(&l);
    assert_eq!(named(&pts, "cpu_temp_celsius")[0]["tags"]["sensor"], "die");
    assert_eq!(named(&pts, "gpu")[0]["fields"]["fan"], 40);
    assert!(
        stderr.contains("ran longer than PROCSHIP_EXEC_TIMEOUT"),
        "{stderr}"
    );
    // The cadence held: 0.1 s cycles went on while a command hung for 0.5 s.
    let cycles: Vec<i64> = named(&pts, "cpu")
        .iter()
        .filter(|p| p["tags"]["cpu"] == "cpu-total")
        .map(|p| p["timestamp"].as_i64().unwrap())
        .collect();
    let gaps = cycles.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(gaps < 400_000_000, "a cycle waited {gaps} ns");
    // No child outlived its run (the last run is killed when the agent stops).
    for pid in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: i32 = pid.trim().parse().unwrap();
        wait_for(&format!("sleep {pid} gone"), SECS(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z ") || s.contains(") X "))
        });
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_flooding_script_does_not_grow_the_agent() {
    let l = Listener::start(always(204));
    let dir = trusted_dir("exec-flood");
    script(&dir, "flood", "yes 'flood 1'");
    let status_port = free_port();
    let a = start(
        &l,
        &[
            ("PROCSHIP_EXEC_DIR", dir.display().to_string()),
            ("PROCSHIP_STATUS_ADDR", status_port.to_string()),
        ],
    );
    let floods = || {
        named(&points(&l), "exec")
            .iter()
            .filter(|p| p["fields"]["commands_failed"] == 1)
            .count()
    };
    let rss_kib = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    wait_for("3 failed floods", SECS(60), || floods() >= 3);
    let early = rss_kib(a.pid());
    wait_for("15 failed floods", SECS(60), || floods() >= 15);
    let late = rss_kib(a.pid());
    // Each flood is cut at 1 MiB and its buffer freed: memory stays flat.
    assert!(late < early + 2048, "RSS grew from {early} to {late} KiB");
    let (status, _, stderr) = a.stop(SECS(10));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("printed more than 1048576 bytes"),
        "{stderr}"
    );
    assert!(named(&points(&l), "flood").is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_exec_directory_others_may_write_exits_78() {
    let dir = tempdir("exec-open");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = procship(&[("PROCSHIP_EXEC_DIR", &dir.display().to_string())])
        .arg("--check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("PROCSHIP_EXEC_DIR") && err.contains("writable by group or others"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
