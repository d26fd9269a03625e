//! The alert rules (`packaging/alerts/procship.rules.yml`) on the real
//! engines from Debian's packages: `promtool` (prometheus) checks the file
//! and runs its unit tests, where every rule crosses its threshold; and a
//! real `vmalert` (victoria-metrics) loads it against VictoriaMetrics fed by
//! the agent, where one rule fires from the agent's own data and vmalert
//! notifies a listener standing in for Alertmanager.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::backends::Server;
use crate::util::*;

fn alerts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/alerts")
}

fn rules_text() -> String {
    std::fs::read_to_string(alerts_dir().join("procship.rules.yml")).unwrap()
}

/// Runs a tool from Debian's packages in the alerts directory.
fn tool(bin: &str, args: &[&str]) -> (bool, String) {
    let path = Path::new("/usr/bin").join(bin);
    assert!(
        path.exists(),
        "{} is missing: apt-get install prometheus victoria-metrics (scripts/test.sh does it)",
        path.display()
    );
    let out = Command::new(&path)
        .args(args)
        .current_dir(alerts_dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The names of the file's alerts, in order, each once.
fn alert_names(rules: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let (ok, out) = tool("promtool", &["check", "rules", "procship.rules.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let (ok, out) = tool("promtool", &["test", "rules", "procship.rules.test.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    // Every alert of the file has a unit test that makes it fire.
    let tests = std::fs::read_to_string(alerts_dir().join("procship.rules.test.yml")).unwrap();
    let names = alert_names(&rules_text());
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        let tested = tests
            .split("- eval_time:")
            .any(|t| t.contains(&format!("alertname: {name}\n")) && t.contains("exp_labels"));
        assert!(tested, "{name}: no unit test in which it fires");
    }
}

#[test]
fn vmalert_loads_the_rules_file() {
    let (ok, out) = tool("vmalert", &["-dryRun", "-rule=procship.rules.yml"]);
    assert!(ok, "{out}");
}

/// The rules file with `alert`'s `for:` cut to 0s: the expression, labels
/// and annotations are the file's, the test does not wait ten minutes.
fn without_for(rules: &str, alert: &str) -> String {
    let mut out = String::new();
    let (mut inside, mut cut) = (false, false);
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            inside = name == alert;
        }
        if inside && !cut && line.trim().starts_with("for:") {
            out.push_str(&line.replace(line.trim(), "for: 0s"));
            cut = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(cut, "{alert} has no for: in the rules file");
    out
}

#[test]
fn vmalert_fires_collector_failing_from_real_agent_data() {
    let vm = Server::victoria_metrics();
    // vmalert POSTs firing alerts to <notifier>/api/v2/alerts, as to Alertmanager.
    let notified = Listener::start(always(200));
    let dir = tempdir("vmalert");
    let rules = dir.join("rules.yml");
    std::fs::write(
        &rules,
        without_for(&rules_text(), "ProcshipCollectorFailing"),
    )
    .unwrap();
    // A tree whose /proc/stat is cut, so the cpu collector fails every
    // cycle, and whose meminfo is whole, so mem works.
    let fx = dir.join("host");
    for d in ["proc", "sys"] {
        std::fs::create_dir_all(fx.join(d)).unwrap();
    }
    std::fs::write(fx.join("proc/stat"), "cpu  1 2\n").unwrap();
    std::fs::copy(
        fixture("basic").join("proc/meminfo"),
        fx.join("proc/meminfo"),
    )
    .unwrap();
    let url = format!("{}/api/v1/write", vm.base);
    let mut vars = fast(&url);
    vars.extend([
        ("PROCSHIP_FORMAT", "prometheus".to_string()),
        ("PROCSHIP_COLLECTORS", "cpu,mem".into()),
        ("PROCSHIP_HOSTNAME", "alert-host".into()),
        ("PROCSHIP_INTERVAL", "0.5".into()),
        ("PROCSHIP_FLUSH_INTERVAL", "0.5".into()),
        ("PROCSHIP_HOST_PROC", fx.join("proc").display().to_string()),
        ("PROCSHIP_HOST_SYS", fx.join("sys").display().to_string()),
    ]);
    let agent = Agent::start(&refs(&vars));
    let port = free_port();
    let _vmalert = Server::spawn(
        "vmalert",
        "vmalert",
        dir.clone(),
        port,
        &[
            format!("-rule={}", rules.display()),
            format!("-datasource.url={}", vm.base),
            format!("-notifier.url=http://127.0.0.1:{}", notified.port),
            "-evaluationInterval=1s".into(),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-loggerLevel=WARN".into(),
        ],
    )
    .ready("/health", 200);
    let fired = |r: &Received| {
        let body = String::from_utf8_lossy(&r.body);
        body.contains("\"ProcshipCollectorFailing\"")
            && body.contains("\"collector\":\"cpu\"")
            && body.contains("\"host\":\"alert-host\"")
    };
    wait_for(
        "vmalert notifies ProcshipCollectorFailing",
        Duration::from_secs(60),
        || notified.received().iter().any(fired),
    );
    // Only the failing collector: mem works on the same tree.
    for r in notified.received() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("\"collector\":\"mem\""), "{body}");
    }
    let (status, api) = get(port, "/api/v1/alerts");
    assert_eq!(status, 200, "{api}");
    assert!(
        api.contains("ProcshipCollectorFailing") && api.contains("firing"),
        "{api}"
    );
    let (status, _, err) = agent.stop(Duration::from_secs(10));
    assert!(status.success(), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
