//! The agent's whole configuration: every feature's options, each parsed by
//! its own module from its own rows, through the loader (`config`), from
//! one table gathered from those rows. This module only composes; it holds
//! no variable, default or rule of its own. It also decides, from the rows'
//! reload class, what a SIGHUP applies live (`Plan`).

use crate::collect;
use crate::config::{ConfigError, Effective, Reload, Section, Table, Values, Var};
use crate::deliver::{batch, drain, queue, retry, ship, spool, tls};
use crate::encode;
use crate::host;
use crate::operate::{log, status, telemetry};
use crate::schedule;

/// Every feature's options, and the values in effect.
#[derive(Debug)]
pub struct Settings {
    pub ship: ship::Options,
    pub tls: tls::Options,
    pub encode: encode::Options,
    pub schedule: schedule::Options,
    pub collect: collect::Options,
    pub host: host::Options,
    pub batch: batch::Options,
    pub queue: queue::Options,
    /// The disk spool, when `PROCSHIP_SPOOL_DIR` is set.
    pub spool: Option<spool::Options>,
    pub retry: retry::Options,
    pub drain: drain::Options,
    pub status: status::Options,
    pub telemetry: telemetry::Options,
    pub log: log::Options,
    pub effective: Effective,
}

/// The first lines of `.env.example`.
const PREAMBLE: &str = "\
# procship configuration: every variable with its default.
# Copy to .env (or /etc/procship/procship.env for the service), uncomment and
# change what you need. Sources, strongest first: flags, environment, this file.
# Durations are seconds (fractions allowed) or 500ms / 10s / 1m / 1h.
# Values are taken literally, without quotes ($ and # included); comments go on
# lines of their own: systemd's EnvironmentFile= and docker --env-file read
# this file the same way.
# (generated from the variable table: procship --env-example)
";

/// Every variable, by feature, in the order of the path of a point (the
/// output first: it is what an operator sets first).
pub fn table() -> Table {
    let section = |title, vars| Section { title, vars };
    let mut sections = vec![
        section("Output", ship::VARS),
        section("TLS", tls::VARS),
        section("Wire format", encode::VARS),
        section("Collection schedule", schedule::VARS),
        section("Collectors", collect::VARS),
        section("Series names", collect::names::VARS),
    ];
    sections.extend(
        collect::REGISTRY
            .iter()
            .filter(|e| !e.vars.is_empty())
            .map(|e| section(e.title, e.vars)),
    );
    sections.extend([
        section("Host (watching the host from a container)", host::VARS),
        section("Batching", batch::VARS),
        section("Memory queue", queue::VARS),
        section("Disk spool", spool::VARS),
        section("Retries", retry::VARS),
        section("Draining a backlog", drain::VARS),
        section("Status endpoint", status::VARS),
        section("Self-telemetry", telemetry::VARS),
        section("Logs", log::VARS),
    ]);
    Table { sections }
}

/// `.env.example` as the table says it.
pub fn env_example() -> String {
    table().env_example(PREAMBLE)
}

impl Settings {
    /// Reads every feature's options from the three sources.
    pub fn from_sources(
        flags: &[(String, String)],
        environment: &[(String, String)],
        env_file: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let mut v = Values::from_sources(&table(), flags, environment, env_file)?;
        Settings::parse(&mut v).map(|s| Settings {
            effective: v.finish(),
            ..s
        })
    }

    /// Every option at its default (tests, benches).
    pub fn defaults() -> Result<Settings, ConfigError> {
        Settings::from_sources(&[], &[], &[])
    }

    fn parse(v: &mut Values) -> Result<Settings, ConfigError> {
        Ok(Settings {
            ship: ship::Options::parse(v)?,
            tls: tls::Options::parse(v)?,
            encode: encode::Options::parse(v)?,
            schedule: schedule::Options::parse(v)?,
            collect: collect::Options::parse(v)?,
            host: host::Options::parse(v)?,
            batch: batch::Options::parse(v)?,
            queue: queue::Options::parse(v)?,
            spool: spool::Options::parse(v)?,
            retry: retry::Options::parse(v)?,
            drain: drain::Options::parse(v)?,
            status: status::Options::parse(v)?,
            telemetry: telemetry::Options::parse(v)?,
            log: log::Options::parse(v)?,
            effective: Effective::default(),
        })
    }

    /// What a reload from `self` to `new` applies live, and what waits.
    pub fn plan(&self, new: &Settings) -> Plan {
        let ship_live = self.ship.live_to(&new.ship);
        let output = |var: &Var| is_in(var, ship::VARS) || is_in(var, tls::VARS);
        let mut changed = self.effective.changed(&new.effective);
        changed.extend(self.tls.renewed(&new.tls));
        let (live, later) = changed
            .into_iter()
            .partition(|var| var.reload == Reload::Live && (ship_live || !output(var)));
        Plan { live, later }
    }
}

fn is_in(var: &Var, vars: &[Var]) -> bool {
    vars.iter().any(|v| v.name == var.name)
}

/// A reload's verdict: changed variables applied live, and those waiting
/// for a restart.
#[derive(Debug, Default)]
pub struct Plan {
    pub live: Vec<&'static Var>,
    pub later: Vec<&'static Var>,
}

impl Plan {
    /// Whether a live change falls among a feature's rows: its live step runs.
    pub fn touches(&self, vars: &[Var]) -> bool {
        self.live.iter().any(|v| is_in(v, vars))
    }

    /// A live change among the collectors' rows (`PROCSHIP_COLLECTORS`,
    /// `PROCSHIP_RATES`, or any collector's own): the collectors are built anew.
    pub fn touches_collectors(&self) -> bool {
        self.touches(collect::VARS) || collect::REGISTRY.iter().any(|e| self.touches(e.vars))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PREFIX, Source};
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn err_of(pairs: &[(&str, &str)]) -> ConfigError {
        match Settings::from_sources(&[], &env(pairs), &[]) {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_load() {
        let c = Settings::defaults().unwrap();
        assert_eq!(c.schedule.interval, Duration::from_secs(10));
        assert_eq!(c.collect.names(), collect::defaults());
        assert!(!c.collect.names().contains(&"netstat"));
        assert_eq!(c.queue.max_bytes, 8 << 20);
        assert!(c.ship.url.is_none());
        assert!(!c.host.hostname.is_empty());
        assert_eq!(c.effective.iter().count(), table().vars().count());
    }

    #[test]
    fn flags_beat_environment_beat_env_file() {
        let file = env(&[("INTERVAL", "1"), ("FORMAT", "influx")]);
        let environment = env(&[("INTERVAL", "2"), ("TIMEOUT", "3")]);
        let flags = env(&[("INTERVAL", "4")]);
        let c = Settings::from_sources(&flags, &environment, &file).unwrap();
        assert_eq!(c.schedule.interval, Duration::from_secs(4));
        assert_eq!(c.ship.timeout, Duration::from_secs(3));
        assert_eq!(c.encode.format, encode::Format::Influx);
        let out = c.effective.render();
        assert!(out.contains("PROCSHIP_INTERVAL=4  # flag"));
        assert!(out.contains("PROCSHIP_TIMEOUT=3  # environment"));
        assert!(out.contains("PROCSHIP_FORMAT=influx  # env file"));
        assert_eq!(
            c.effective.get("JITTER").map(|s| s.source),
            Some(Source::Default)
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("INGEST_URL", "ftp://x"),
            ("FORMAT", "xml"),
            ("INTERVAL", "0"),
            ("JITTER", "soon"),
            ("COLLECTORS", "cpu,gpu"),
            ("TAGS", "host=x"),
            ("RATES", "often"),
            ("PROCESS_TOP", "51"),
            ("PROCESS_MATCH", "(unclosed"),
            ("CGROUP_SLICES", "../etc"),
            ("CGROUP_DEPTH", "0"),
            ("CGROUP_MAX", "0"),
            ("HOSTNAME", "a b"),
            ("HEADERS", "Content-Type=x"),
            ("BATCH_MAX_POINTS", "0"),
            ("FLUSH_INTERVAL", "0ms"),
            ("FLUSH_JITTER", "x"),
            ("QUEUE_MAX_BYTES", "1k"),
            ("SPOOL_DIR", "relative/dir"),
            ("SPOOL_DIR", "/nonexistent/spool"),
            ("SPOOL_MAX_BYTES", "1k"),
            ("SPOOL_SYNC", "sometimes"),
            ("MAX_BATCH_AGE", "0"),
            ("TIMEOUT", "0"),
            ("CONNECT_TIMEOUT", "-3"),
            ("RETRY_INITIAL", "x"),
            ("RETRY_MAX_DELAY", "y"),
            ("COMPRESSION", "zstd"),
            ("COMPRESSION", "snappy"),
            ("SHUTDOWN_TIMEOUT", "x"),
            ("HOST_PROC", "relative"),
            ("HOST_SYS", "relative"),
            ("HOST_ROOT", "relative"),
            ("HOST_PROC", "/nonexistent/proc"),
            ("DISK_NETWORK_FS", "maybe"),
            ("DISK_STATFS_TIMEOUT", "0"),
            ("LOG_LEVEL", "loud"),
            ("LOG_FORMAT", "xml"),
            ("STATUS_ADDR", "localhost:http"),
            ("HEALTH_WINDOW", "0"),
            ("TEXTFILE_DIR", "/nonexistent/textfiles"),
            ("EXEC_DIR", "relative"),
            ("EXEC_DIR", "/nonexistent/exec"),
            ("EXEC_TIMEOUT", "0"),
            ("TLS_CA_FILE", "/nonexistent/ca.pem"),
            ("TLS_CERT_FILE", "cert.pem"),
            ("TLS_KEY_FILE", "key.pem"),
            ("TLS_INSECURE_SKIP_VERIFY", "maybe"),
            ("PROXY", "https://proxy.example"),
        ];
        for (name, value) in cases {
            let var = table()
                .lookup(&format!("{PREFIX}{name}"))
                .unwrap_or_else(|| panic!("{name} is not in the table"));
            match err_of(&[(name, value)]) {
                ConfigError::Invalid {
                    var: v,
                    value: shown,
                    ..
                } => {
                    assert_eq!(v, var.full_name());
                    assert_eq!(shown, var.shown(value));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            err_of(&[("INTERVALL", "3")]),
            ConfigError::Unknown { .. }
        ));
    }

    #[test]
    fn cross_checks_name_the_variable_that_conflicts() {
        assert!(matches!(
            err_of(&[("RETRY_INITIAL", "10"), ("RETRY_MAX_DELAY", "5")]),
            ConfigError::Invalid { var, .. } if var == "PROCSHIP_RETRY_MAX_DELAY"
        ));
        assert!(matches!(
            err_of(&[("AUTH_TOKEN", "t"), ("HEADERS", "authorization=x")]),
            ConfigError::Invalid { var, .. } if var == "PROCSHIP_HEADERS"
        ));
        // A client certificate without its key (or the reverse) names the one missing.
        assert!(matches!(
            err_of(&[("TLS_CERT_FILE", "/etc/hostname")]),
            ConfigError::Invalid { var, .. } if var == "PROCSHIP_TLS_KEY_FILE"
        ));
        assert!(matches!(
            err_of(&[("TLS_KEY_FILE", "/etc/hostname")]),
            ConfigError::Invalid { var, .. } if var == "PROCSHIP_TLS_CERT_FILE"
        ));
        // A file that holds no certificate is named with what it lacks.
        let e = err_of(&[("TLS_CA_FILE", "/etc/hostname")]).to_string();
        assert!(
            e.contains("PROCSHIP_TLS_CA_FILE") && e.contains("no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_masked_in_errors_and_output() {
        let e = err_of(&[("AUTH_TOKEN", "s3cret token")]);
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let c = Settings::from_sources(
            &[],
            &env(&[
                ("AUTH_TOKEN", "s3cret"),
                ("HEADERS", "X-Scope-OrgID=tenant-s3cret"),
                (
                    "INGEST_URL",
                    "http://u:pw-s3cret@127.0.0.1/write?db=x&p=s3cret",
                ),
            ]),
            &[],
        )
        .unwrap();
        let out = c.effective.render();
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("X-Scope-OrgID=****"));
        assert!(out.contains("db=x&p=****"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn every_variable_has_one_row() {
        let t = table();
        let mut names: Vec<&str> = t.vars().map(|v| v.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a variable is defined twice");
    }

    #[test]
    fn env_example_is_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, env_example()).unwrap();
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            env_example(),
            ".env.example is stale: UPDATE_GOLDEN=1 cargo test --lib env_example rewrites it"
        );
    }

    #[test]
    fn the_readme_table_is_the_table() {
        const START: &str = "<!-- variables: generated from the table; UPDATE_GOLDEN=1 cargo test --lib readme rewrites it -->\n";
        const END: &str = "<!-- /variables -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let text = std::fs::read_to_string(path).unwrap();
        let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
            panic!("README.md lacks the variables markers");
        };
        let want = table().markdown();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let new = format!("{}{START}{want}{}", &text[..a], &text[b..]);
            std::fs::write(path, new).unwrap();
            return;
        }
        assert_eq!(
            &text[a + START.len()..b],
            want,
            "README.md's variable table is stale: UPDATE_GOLDEN=1 cargo test --lib readme rewrites it"
        );
    }

    #[test]
    fn a_reload_plans_by_the_rows() {
        let old = Settings::from_sources(
            &[],
            &env(&[("INGEST_URL", "http://127.0.0.1:1/a"), ("AUTH_TOKEN", "a")]),
            &[],
        )
        .unwrap();
        let new = Settings::from_sources(
            &[],
            &env(&[
                ("INGEST_URL", "http://127.0.0.1:1/a"),
                ("AUTH_TOKEN", "b"),
                ("FORMAT", "influx"),
                ("PROCESS_TOP", "3"),
            ]),
            &[],
        )
        .unwrap();
        let plan = old.plan(&new);
        let names = |v: &[&Var]| v.iter().map(|v| v.name).collect::<Vec<_>>();
        assert_eq!(names(&plan.live), ["AUTH_TOKEN", "PROCESS_TOP"]);
        assert_eq!(names(&plan.later), ["FORMAT"]);
        assert!(plan.touches(ship::VARS) && plan.touches_collectors());
        assert!(!plan.touches(batch::VARS));
        // From stdout to a URL the encoder changes: a restart.
        let stdout = Settings::defaults().unwrap();
        assert_eq!(
            names(&stdout.plan(&old).later),
            ["INGEST_URL", "AUTH_TOKEN"]
        );
    }
}
