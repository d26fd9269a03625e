//! The command line's own documentation: its modes, `--help` and the man
//! page `procship(1)`, both made from the same rows and from the variable
//! table (`settings::table`), so the two can never disagree with each other
//! or with the variables the agent reads. packaging/procship.1 is this
//! module's output, checked by a test (`UPDATE_GOLDEN=1` writes it).

use crate::config::roff_escape;
use crate::settings;

/// Every mode and command-line option other than the variables: (the
/// option as typed, what it does).
pub const MODES: &[(&str, &str)] = &[
    (
        "(none)",
        "run the agent: collect every interval, ship batches",
    ),
    ("--once", "print one complete snapshot to stdout and exit"),
    (
        "--check-config",
        "validate, print the effective configuration (secrets masked), exit 0 or 78",
    ),
    (
        "--env-example",
        "print .env.example: every variable with its help and default",
    ),
    (
        "status",
        "ask the running agent (PROCSHIP_STATUS_ADDR) what it is doing; exit 0 healthy, 1 not, 69 unreachable",
    ),
    (
        "--env-file PATH",
        "env file to read (default ./.env, else /etc/procship/procship.env; must exist when given)",
    ),
    (
        "-V, --version",
        "print the version, commit, build profile and target",
    ),
    (
        "-h, --help",
        "print the usage and every variable with its default",
    ),
];

/// Exit statuses: (status, meaning).
pub const EXIT: &[(&str, &str)] = &[
    (
        "0",
        "done: a clean stop, --once, --check-config of a valid file",
    ),
    ("1", "a runtime error, named on stderr"),
    (
        "64",
        "a usage error: an unknown option, a missing value (sysexits EX_USAGE)",
    ),
    (
        "69",
        "procship status: the agent cannot be reached (EX_UNAVAILABLE)",
    ),
    (
        "78",
        "invalid configuration, named with the variable (EX_CONFIG); also a secret given as a flag",
    ),
];

const SYNOPSIS: &str = "procship [--env-file PATH] [--once | --check-config] [--VARIABLE VALUE]...";
const SYNOPSIS_STATUS: &str = "procship status [--env-file PATH]";

/// `procship --version`: the version, and the build's commit, profile,
/// target and compiler (from build.rs).
pub fn version() -> String {
    format!(
        "procship {} (commit {}, {} build, {}, {})",
        env!("CARGO_PKG_VERSION"),
        env!("PROCSHIP_BUILD_COMMIT"),
        env!("PROCSHIP_BUILD_PROFILE"),
        env!("PROCSHIP_BUILD_TARGET"),
        env!("PROCSHIP_BUILD_RUSTC")
    )
}

/// `procship --help`.
pub fn help() -> String {
    let mut s = format!(
        "procship: lean host-telemetry push agent for Linux\n\nUsage: {SYNOPSIS}\n       {SYNOPSIS_STATUS}\n\nModes:\n"
    );
    for (option, what) in MODES {
        s.push_str(&format!("  {option:<17} {what}\n"));
    }
    s.push_str(
        "\nConfiguration: flags > environment > env file. Each variable is also a flag,\n\
         e.g. --interval 5 sets PROCSHIP_INTERVAL. Variables (default):\n",
    );
    s.push_str(&settings::table().help());
    s.push_str("\nExit status:\n");
    for (n, what) in EXIT {
        s.push_str(&format!("  {n:<3} {what}\n"));
    }
    s
}

/// A roff tagged paragraph: the tag in bold, then the text.
fn tagged(tag: &str, text: &str) -> String {
    format!(".TP\n.B {}\n{}\n", roff_escape(tag), roff_escape(text))
}

/// `procship(1)`.
pub fn man_page() -> String {
    let mut s = format!(
        ".TH PROCSHIP 1 \"\" \"procship {}\" \"User Commands\"\n",
        env!("CARGO_PKG_VERSION")
    );
    s.push_str(".SH NAME\nprocship \\- lean host\\-telemetry push agent for Linux\n");
    s.push_str(&format!(
        ".SH SYNOPSIS\n{}\n.br\n{}\n",
        roff_escape(SYNOPSIS),
        roff_escape(SYNOPSIS_STATUS)
    ));
    s.push_str(&format!(
        ".SH DESCRIPTION\n{}\n.PP\n{}\n",
        roff_escape(DESCRIPTION),
        roff_escape(SOURCES)
    ));
    s.push_str(".SH MODES\n");
    for (option, what) in MODES {
        s.push_str(&tagged(option, what));
    }
    s.push_str(".SH ENVIRONMENT\n");
    s.push_str(&settings::table().roff());
    s.push_str(".SH SIGNALS\n");
    for (signal, what) in SIGNALS {
        s.push_str(&tagged(signal, what));
    }
    s.push_str(".SH FILES\n");
    for (file, what) in FILES {
        s.push_str(&tagged(file, what));
    }
    s.push_str(".SH EXIT STATUS\n");
    for (n, what) in EXIT {
        s.push_str(&tagged(n, what));
    }
    s.push_str(&format!(".SH SEE ALSO\n{}\n", roff_escape(SEE_ALSO)));
    s
}

const DESCRIPTION: &str = "procship reads /proc and /sys on a fixed cadence, batches the points, keeps them (in memory, or in a crash-safe disk spool) until the backend acknowledges them, and POSTs them with bounded retry and backoff to one ingest URL (PROCSHIP_INGEST_URL) in JSON, InfluxDB line protocol, Prometheus remote write or OTLP. Without an ingest URL it prints each batch on stdout.";

const SOURCES: &str = "Configuration comes from flags, then the environment, then the env file, strongest first. The env file holds KEY=value lines taken literally, and comments on lines of their own: systemd's EnvironmentFile= and docker --env-file read it the same way. Durations are seconds (fractions allowed) or 500ms, 10s, 1m, 1h.";

const SIGNALS: &[(&str, &str)] = &[
    (
        "SIGTERM, SIGINT",
        "stop: the batch in flight is finished, what waits is delivered or kept in the spool within PROCSHIP_SHUTDOWN_TIMEOUT",
    ),
    (
        "SIGHUP",
        "read the configuration again; what can change live applies from the next cycle, the rest is logged as needing a restart; an invalid one is refused and the running one stays",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/procship/procship.env",
        "the service's env file (root:procship, mode 0640: it may hold credentials)",
    ),
    (
        "/var/lib/procship",
        "the service's state directory: the disk spool when PROCSHIP_SPOOL_DIR points there",
    ),
    (
        "/usr/share/procship",
        "alert rules (alerts/procship.rules.yml) and Grafana dashboards (grafana/)",
    ),
];

const SEE_ALSO: &str = "systemd.exec(5) (EnvironmentFile=), the README in /usr/share/doc/procship/README.md: backends, deployment, the fleet, and today's figures.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_in_packaging_is_this_module_s() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/procship.1");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, man_page()).unwrap();
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            man_page(),
            "packaging/procship.1 is stale: UPDATE_GOLDEN=1 cargo test --lib usage writes it"
        );
    }

    #[test]
    fn help_and_man_page_list_every_mode_and_variable() {
        let (help, man) = (help(), man_page());
        for (option, _) in MODES {
            assert!(help.contains(option), "{option}");
            assert!(man.contains(&roff_escape(option)), "{option}");
        }
        for v in settings::table().vars() {
            assert!(help.contains(v.name), "{}", v.name);
            assert!(man.contains(&roff_escape(&v.full_name())), "{}", v.name);
        }
        for (n, what) in EXIT {
            assert!(help.contains(&format!("{n:<3} {what}")), "{n}");
        }
    }

    #[test]
    fn no_roff_line_starts_with_a_stray_control_character() {
        for line in man_page().lines() {
            if let Some(rest) = line.strip_prefix('.') {
                let request = rest.split(' ').next().unwrap_or("");
                assert!(
                    ["TH", "SH", "SS", "TP", "B", "PP", "br"].contains(&request),
                    "{line}"
                );
            }
        }
    }
}
