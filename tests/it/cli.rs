//! The command line: configuration errors (exit 78, one line naming the
//! variable), the env file, precedence, secrets, and the golden `--once`
//! output of the fixture tree (UPDATE_GOLDEN=1 rewrites the golden files).

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("run procship")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const TOKEN: &str = "tok-5ecret-987";

/// (variable, a wrong value)
const BAD: &[(&str, &str)] = &[
    ("INGEST_URL", "127.0.0.1:8428/write"),
    ("FORMAT", "xml"),
    ("INTERVAL", "0"),
    ("JITTER", "soon"),
    ("COLLECTORS", "cpu,gpu"),
    ("TAGS", "novalue"),
    ("RATES", "sometimes"),
    ("PROCESS_TOP", "-1"),
    ("PROCESS_MATCH", "[a-"),
    ("CGROUP_SLICES", "/abs"),
    ("CGROUP_DEPTH", "9"),
    ("CGROUP_MAX", "none"),
    ("HOSTNAME", "two words"),
    ("AUTH_TOKEN", "tok-5ecret-987 with space"),
    ("HEADERS", "NoEquals"),
    ("BATCH_MAX_POINTS", "-1"),
    ("FLUSH_INTERVAL", "1y"),
    ("FLUSH_JITTER", "x"),
    ("QUEUE_MAX_BYTES", "lots"),
    ("SPOOL_DIR", "/nonexistent/spool"),
    ("SPOOL_MAX_BYTES", "100"),
    ("SPOOL_SYNC", "always"),
    ("MAX_BATCH_AGE", "0.5"),
    ("TIMEOUT", "0s"),
    ("CONNECT_TIMEOUT", "forever"),
    ("RETRY_INITIAL", "0"),
    ("RETRY_MAX_DELAY", "2d"),
    ("COMPRESSION", "brotli"),
    ("GZIP_LEVEL", "10"),
    ("SHUTDOWN_TIMEOUT", "-5"),
    ("HOST_PROC", "proc"),
    ("HOST_SYS", "sys"),
    ("HOST_ROOT", "./"),
    ("DISK_IGNORE_FS", ""),
    ("DISK_NETWORK_FS", "perhaps"),
    ("DISK_STATFS_TIMEOUT", "0"),
    ("LOG_LEVEL", "verbose"),
    ("LOG_FORMAT", "logfmt"),
    ("STATUS_ADDR", "all-interfaces"),
    ("HEALTH_WINDOW", "never"),
    ("TEXTFILE_DIR", "relative/dir"),
    ("EXEC_DIR", "/nonexistent/exec"),
    ("EXEC_TIMEOUT", "soon"),
    ("TLS_CA_FILE", "/nonexistent/ca.pem"),
    ("TLS_CERT_FILE", "relative.pem"),
    ("TLS_KEY_FILE", "key.pem"),
    ("TLS_INSECURE_SKIP_VERIFY", "maybe"),
    ("PROXY", "socks5://127.0.0.1:1080"),
    ("DRAIN_MAX_BYTES", "17MiB"),
    ("DRAIN_PACE", "2m"),
    ("NAMES", "prometheus"),
    ("JOB", "a\tb"),
    ("INSTANCE", "web\u{1}1"),
    ("SELF_INTERVAL", "often"),
];

#[test]
fn every_variable_rejects_a_bad_value_with_exit_78_naming_it() {
    for v in procship::settings::table().vars() {
        let Some((_, bad)) = BAD.iter().find(|(n, _)| *n == v.name) else {
            panic!("no bad value for {} in this test", v.name)
        };
        if bad.is_empty() {
            continue; // any list is a valid ignore list; empty means the default
        }
        let var = format!("PROCSHIP_{}", v.name);
        let out = run(procship(&[(&var, bad)]).arg("--check-config"));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{var}={bad}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(&var), "{var} not named: {err}");
        assert!(!err.contains(TOKEN), "secret echoed: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn flags_and_env_files_are_validated_too() {
    let out = run(procship(&[]).args(["--check-config", "--interval", "nope"]));
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("PROCSHIP_INTERVAL=\"nope\""));
    let out = run(procship(&[]).args(["--check-config", "--no-such-flag", "1"]));
    assert_eq!(
        out.status.code(),
        Some(64),
        "a usage error: sysexits' EX_USAGE"
    );
    assert!(text(&out.stderr).contains("unknown option --no-such-flag"));

    let dir = tempdir("envfile");
    let f = dir.join("procship.env");
    std::fs::write(&f, "PROCSHIP_INTERVALL=5\n").unwrap();
    let out = run(procship(&[])
        .arg("--check-config")
        .arg("--env-file")
        .arg(&f));
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("PROCSHIP_INTERVALL (from env file) is not a procship variable")
    );
}

#[test]
fn env_file_problems_are_clear_errors() {
    let dir = tempdir("envfile");
    let missing = dir.join("missing.env");
    let out = run(procship(&[])
        .arg("--check-config")
        .arg("--env-file")
        .arg(&missing));
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("missing.env: cannot read it"),
        "{}",
        text(&out.stderr)
    );

    let bad = dir.join("bad.env");
    std::fs::write(
        &bad,
        format!("PROCSHIP_INTERVAL=5\n\nPROCSHIP_AUTH_TOKEN=\"{TOKEN}\n"),
    )
    .unwrap();
    let out = run(procship(&[])
        .arg("--check-config")
        .arg("--env-file")
        .arg(&bad));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("bad.env: line 3: a quoted value"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    let unreadable = dir.join("dir.env");
    std::fs::create_dir_all(&unreadable).unwrap();
    let out = run(procship(&[])
        .arg("--check-config")
        .arg("--env-file")
        .arg(&unreadable));
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn precedence_and_masking_in_check_config() {
    let dir = tempdir("envfile");
    let f = dir.join("procship.env");
    std::fs::write(
        &f,
        format!("PROCSHIP_INTERVAL=3\nPROCSHIP_FORMAT=influx\nPROCSHIP_TIMEOUT=7\nPROCSHIP_AUTH_TOKEN={TOKEN}\nPROCSHIP_HEADERS=X-Scope-OrgID=t1\n"),
    )
    .unwrap();
    let out = run(
        procship(&[("PROCSHIP_INTERVAL", "4"), ("PROCSHIP_TIMEOUT", "8")])
            .args(["--check-config", "--timeout", "9", "--env-file"])
            .arg(&f),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("PROCSHIP_INTERVAL=4  # environment"),
        "{stdout}"
    );
    assert!(stdout.contains("PROCSHIP_TIMEOUT=9  # flag"), "{stdout}");
    assert!(
        stdout.contains("PROCSHIP_FORMAT=influx  # env file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PROCSHIP_AUTH_TOKEN=****  # env file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PROCSHIP_HEADERS=X-Scope-OrgID=****"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(TOKEN) && !stdout.contains("t1"),
        "{stdout}"
    );
}

#[test]
fn the_default_env_file_is_read_when_present() {
    let dir = tempdir("cwd-env");
    std::fs::write(dir.join(".env"), "PROCSHIP_FORMAT=influx\n").unwrap();
    let out = run(std::process::Command::new(BIN)
        .env_clear()
        .current_dir(&dir)
        .arg("--check-config"));
    assert!(text(&out.stdout).contains("PROCSHIP_FORMAT=influx  # env file"));
}

#[test]
fn check_config_defaults_match_env_example() {
    let out = run(procship(&[]).arg("--check-config"));
    assert!(out.status.success());
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example"))
            .unwrap();
    for line in text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("PROCSHIP_"))
    {
        let (setting, source) = line.split_once("  # ").unwrap();
        assert_eq!(source, "default");
        if setting.starts_with("PROCSHIP_HOSTNAME=") {
            continue; // the default is the host's own name
        }
        assert!(
            example.lines().any(|l| l == format!("# {setting}")),
            ".env.example lacks `# {setting}`"
        );
    }
}

#[test]
fn an_inline_comment_in_the_env_file_is_refused_saying_why() {
    let dir = tempdir("envfile-comment");
    let f = dir.join("procship.env");
    std::fs::write(
        &f,
        "# a comment on its own line is fine\nPROCSHIP_FORMAT=influx\nPROCSHIP_JITTER=10s   # spread the fleet\n",
    )
    .unwrap();
    let out = run(procship(&[])
        .arg("--check-config")
        .arg("--env-file")
        .arg(&f));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("procship.env: line 3: an inline comment")
            && err.contains("docker --env-file keep"),
        "{err}"
    );
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// systemd's own env-file parser (the one `EnvironmentFile=` uses), run
/// without a systemd PID 1: its environment.d generator prints what it read.
const SYSTEMD_ENV_GENERATOR: &str =
    "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator";

#[test]
fn the_env_file_means_the_same_to_the_agent_and_to_systemd() {
    assert!(
        Path::new(SYSTEMD_ENV_GENERATOR).exists(),
        "{SYSTEMD_ENV_GENERATOR}: apt-get install systemd (scripts/test.sh does it)"
    );
    let dir = tempdir("envfile-systemd");
    let text = "# the fleet's file\n\
                PROCSHIP_INGEST_URL=http://127.0.0.1:8428/api/v2/write?org=o&bucket=b\n\
                PROCSHIP_FORMAT=influx\n\
                PROCSHIP_TAGS=dc=ams1,role=db\n\
                PROCSHIP_HEADERS=X-Scope-OrgID=team-a\n\
                \n\
                PROCSHIP_INTERVAL=15s\n\
                PROCSHIP_COLLECTORS=default,-processes\n";
    let file = dir.join("procship.env");
    std::fs::write(&file, text).unwrap();
    std::fs::create_dir_all(dir.join("environment.d")).unwrap();
    std::fs::write(dir.join("environment.d/procship.conf"), text).unwrap();
    let generated = Command::new(SYSTEMD_ENV_GENERATOR)
        .env_clear()
        .env("XDG_CONFIG_HOME", &dir)
        .env("HOME", &dir)
        .output()
        .unwrap();
    // The generator prints what it read as an environment generator's
    // output: a value with shell characters in double quotes, escaped.
    let unquote = |v: &str| -> String {
        let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            return v.to_string();
        };
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.extend(if c == '\\' { chars.next() } else { Some(c) });
        }
        out
    };
    let systemd: Vec<(String, String)> = text_of(&generated.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("PROCSHIP_"))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect();
    assert_eq!(systemd.len(), 6, "{systemd:?}");
    let settings = |out: std::process::Output| -> Vec<String> {
        assert!(out.status.success(), "{}", text_of(&out.stderr));
        text_of(&out.stdout)
            .lines()
            .filter(|l| systemd.iter().any(|(k, _)| l.starts_with(&format!("{k}="))))
            .map(|l| l.split("  #").next().unwrap_or(l).to_string())
            .collect()
    };
    let direct = settings(run(procship(&[])
        .arg("--check-config")
        .arg("--env-file")
        .arg(&file)));
    let empty = dir.join("empty.env");
    std::fs::write(&empty, "").unwrap();
    let mut via = procship(&[]);
    via.envs(systemd.iter().map(|(k, v)| (k, v)));
    let via_systemd = settings(run(via.arg("--check-config").arg("--env-file").arg(&empty)));
    assert_eq!(direct.len(), 6, "{direct:?}");
    assert_eq!(
        direct, via_systemd,
        "read directly, and as systemd reads it"
    );
}

#[test]
fn version_and_help() {
    let out = run(procship(&[]).arg("--version"));
    let v = text(&out.stdout);
    assert!(
        v.starts_with(&format!("procship {} (commit ", env!("CARGO_PKG_VERSION")))
            && v.contains("linux")
            && v.contains("rustc 1.")
            && (v.contains(" debug build") || v.contains(" release build")),
        "the version with the build's commit, profile, target and compiler: {v}"
    );
    let out = run(procship(&[]).arg("--help"));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("PROCSHIP_INGEST_URL"));
}

/// Replaces the values that change from run to run (timestamps, run id).
fn normalize(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let line = if line.starts_with("{\"resourceMetrics\"") {
            // OTLP: times vary from run to run (start: the test machine's boot).
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let scope = &mut v["resourceMetrics"][0]["scopeMetrics"][0];
            scope["scope"]["version"] = "VERSION".into();
            for m in scope["metrics"].as_array_mut().unwrap() {
                let kind = if m.get("sum").is_some() {
                    "sum"
                } else {
                    "gauge"
                };
                for dp in m[kind]["dataPoints"].as_array_mut().unwrap() {
                    dp["timeUnixNano"] = "TS".into();
                    if dp.get("startTimeUnixNano").is_some() {
                        dp["startTimeUnixNano"] = "START".into();
                    }
                }
            }
            serde_json::to_string_pretty(&v).unwrap()
        } else if line.starts_with('{') {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["run"] = 0.into();
            v["agent"] = "procship/VERSION".into();
            for p in v["points"].as_array_mut().unwrap() {
                p["timestamp"] = 0.into();
            }
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            match line.rsplit_once(' ') {
                Some((head, _ts)) => format!("{head} TS"),
                None => line.to_string(),
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn golden(format: &str, file: &str) {
    golden_with(format, file, &[]);
}

fn golden_with(format: &str, file: &str, extra: &[(&str, &str)]) {
    let fx = fixture("basic");
    let vars = [
        ("PROCSHIP_HOST_PROC", fx.join("proc")),
        ("PROCSHIP_HOST_SYS", fx.join("sys")),
        ("PROCSHIP_HOST_ROOT", fx.join("root")),
    ];
    let mut cmd = procship(&[
        ("PROCSHIP_HOSTNAME", "golden-host"),
        ("PROCSHIP_TAGS", "env=test"),
        ("PROCSHIP_FORMAT", format),
        ("PROCSHIP_INTERVAL", "0.1"),
        // statvfs of the fixture's mount points reports the test machine's
        // disks, and adjtimex its clock.
        ("PROCSHIP_COLLECTORS", "all,-disk,-timex"),
    ]);
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = run(cmd.arg("--once"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = normalize(&text(&out.stdout));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(got, want, "--once output differs from {}", path.display());
}

#[test]
fn once_golden_influx() {
    golden("influx", "once.influx");
}

#[test]
fn once_golden_json() {
    golden("json", "once.json");
}

#[test]
fn once_golden_prometheus() {
    golden("prometheus", "once.prom");
}

#[test]
fn once_golden_prometheus_with_node_exporter_names() {
    // uname(2) is the test machine's.
    golden_with(
        "prometheus",
        "once.node.prom",
        &[
            ("PROCSHIP_NAMES", "node_exporter"),
            ("PROCSHIP_COLLECTORS", "all,-disk,-timex,-info"),
        ],
    );
}

#[test]
fn once_golden_otlp() {
    golden("otlp", "once.otlp.json");
}

#[test]
fn once_on_a_broken_tree_still_prints_what_works() {
    let fx = fixture("truncated");
    let out = run(
        procship(&[("PROCSHIP_INTERVAL", "0.05"), ("PROCSHIP_FORMAT", "influx")])
            .env("PROCSHIP_HOST_PROC", fx.join("proc"))
            .env("PROCSHIP_HOST_SYS", fx.join("sys"))
            .env("PROCSHIP_HOST_ROOT", fx.join("root"))
            .args(["--once", "--collectors", "cpu,net,system"]),
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("collector=\"cpu\"") && err.contains("expected at least 4"),
        "{err}"
    );
    assert!(
        err.contains("collector=\"net\"")
            && err.contains("net/dev: line 3: 2 counters where the header names 16"),
        "{err}"
    );
    assert!(!err.contains("procfs bug"), "{err}");
    assert_eq!(
        err.lines().count(),
        3,
        "one line per failing collector: {err}"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn json_logs_are_one_object_per_line_without_secrets() {
    let fx = fixture("truncated");
    let out = run(procship(&[
        ("PROCSHIP_INTERVAL", "0.05"),
        ("PROCSHIP_LOG_FORMAT", "json"),
        ("PROCSHIP_AUTH_TOKEN", TOKEN),
        ("PROCSHIP_COLLECTORS", "cpu,net"),
    ])
    .env("PROCSHIP_HOST_PROC", fx.join("proc"))
    .env("PROCSHIP_HOST_SYS", fx.join("sys"))
    .env("PROCSHIP_HOST_ROOT", fx.join("root"))
    .arg("--once"));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert_eq!(v["level"], "WARN");
        assert!(v["fields"]["collector"].is_string(), "{line}");
    }
    assert!(!err.contains(TOKEN));
}

#[test]
fn secrets_are_refused_as_flags_where_every_user_could_read_them() {
    for args in [
        ["--auth-token", "tok-5ecret-987"],
        ["--headers", "X-Key=tok-5ecret-987"],
        ["--ingest-url", "http://u:tok-5ecret-987@127.0.0.1/w"],
    ] {
        let out = run(procship(&[]).arg("--check-config").args(args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(
            err.contains("/proc/PID/cmdline") && err.contains("env file"),
            "{err}"
        );
        assert!(!err.contains("5ecret"), "{err}");
    }
    let out = run(procship(&[]).args(["--check-config", "--ingest-url", "http://127.0.0.1/w"]));
    assert!(
        out.status.success(),
        "a URL without credentials is fine as a flag"
    );
}
