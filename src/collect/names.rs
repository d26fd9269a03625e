//! `PROCSHIP_NAMES`: whose series names the collectors speak. `telegraf`
//! (the default): Telegraf's measurements and fields, `<measurement>_<field>`
//! on the Prometheus side. `node_exporter`: node_exporter's metric names,
//! label names, units and types for every collector that has a
//! node_exporter counterpart (each collector holds its own table, next to
//! its Telegraf names), and on every series the `job` and `instance` labels
//! a scrape would have added (`PROCSHIP_JOB`, `PROCSHIP_INSTANCE`), so
//! dashboards and alert rules written for node_exporter work on pushed
//! data. A collector without a counterpart keeps its Telegraf names.

use crate::config::{ConfigError, Values, Var};

/// Whose names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Names {
    #[default]
    Telegraf,
    NodeExporter,
}

impl Names {
    pub const ALL: [Names; 2] = [Names::Telegraf, Names::NodeExporter];

    pub fn name(self) -> &'static str {
        match self {
            Names::Telegraf => "telegraf",
            Names::NodeExporter => "node_exporter",
        }
    }
}

fn parse_names(s: &str) -> Result<Names, String> {
    Names::ALL
        .into_iter()
        .find(|n| n.name() == s)
        .ok_or_else(|| format!("accepted: {}", Names::ALL.map(Names::name).join(", ")))
}

/// A label value: printable, at most 128 bytes; `empty_ok` says whether
/// nothing is allowed (then the default rule applies).
fn parse_label(s: &str, empty_ok: bool) -> Result<String, String> {
    if s.is_empty() && !empty_ok {
        return Err("a label value, not empty".into());
    }
    if s.len() > 128 || s.chars().any(char::is_control) {
        return Err("a label value: printable, at most 128 bytes".into());
    }
    Ok(s.to_string())
}

pub const VARS: &[Var] = &[
    Var::new(
        "NAMES",
        "telegraf",
        "series names: telegraf (Telegraf's measurements and fields) | node_exporter (node_exporter's metric and label names, with job and instance labels; README, Migrating from node_exporter)",
    ),
    Var::new(
        "JOB",
        "node",
        "with PROCSHIP_NAMES=node_exporter: the job label of every series (a scrape's job_name)",
    ),
    Var::new(
        "INSTANCE",
        "",
        "with PROCSHIP_NAMES=node_exporter: the instance label of every series; empty: the host tag's value",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub names: Names,
    pub job: String,
    pub instance: String,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            names: v.get("NAMES", parse_names)?,
            job: v.get("JOB", |s| parse_label(s, false))?,
            instance: v.get("INSTANCE", |s| parse_label(s, true))?,
        })
    }

    /// The labels every series of `host` carries besides `host` and
    /// `PROCSHIP_TAGS`: `job` and `instance` with node_exporter's names.
    pub fn labels(&self, host: &str) -> Vec<(String, String)> {
        match self.names {
            Names::Telegraf => Vec::new(),
            Names::NodeExporter => {
                let instance = if self.instance.is_empty() {
                    host
                } else {
                    &self.instance
                };
                vec![
                    ("job".to_string(), self.job.clone()),
                    ("instance".to_string(), instance.to_string()),
                ]
            }
        }
    }
}

/// What a series is, for the exposition's `# HELP` line: a
/// node_exporter name (or the start of a family of them, ending in `_`)
/// and its help text.
pub type Help = (&'static str, &'static str);

/// The field name of node_exporter's series `series` in a point whose
/// measurement is `measurement`: what follows `<measurement>_`, so that the
/// series name every Prometheus-side format makes of the two
/// (`<measurement>_<field>`) is `series` again. With node_exporter's names a
/// collector ships one point per label set (node_memory, node_disk{device},
/// …) with a field per series: a point, its tags and its vectors once
/// instead of once per series. A series outside `measurement` is a
/// programming error (debug builds stop on it); it is kept whole.
pub fn field_of(measurement: &str, series: &'static str) -> &'static str {
    let field = series
        .strip_prefix(measurement)
        .and_then(|f| f.strip_prefix('_'))
        .filter(|f| !f.is_empty());
    debug_assert!(field.is_some(), "{series} is not a {measurement}_ series");
    field.unwrap_or(series)
}

/// The help text of `series` from the collectors' node_exporter tables.
pub fn help(series: &str) -> Option<&'static str> {
    super::REGISTRY
        .iter()
        .flat_map(|e| e.node_help.iter())
        .find(|(name, _)| *name == series || (name.ends_with('_') && series.starts_with(name)))
        .map(|(_, help)| *help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_its_measurement_and_field_again() {
        assert_eq!(field_of("node_disk", "node_disk_io_now"), "io_now");
        assert_eq!(
            field_of("node_timex", "node_timex_pps_jitter_total"),
            "pps_jitter_total"
        );
    }

    #[test]
    fn job_and_instance_only_with_node_exporter_names() {
        let mut o = Options {
            names: Names::Telegraf,
            job: "node".into(),
            instance: String::new(),
        };
        assert!(o.labels("web-1").is_empty());
        o.names = Names::NodeExporter;
        assert_eq!(
            o.labels("web-1"),
            [
                ("job".into(), "node".into()),
                ("instance".into(), "web-1".into())
            ]
        );
        o.instance = "web-1:9100".into();
        assert_eq!(o.labels("web-1")[1].1, "web-1:9100");
        assert!(
            parse_names("prometheus")
                .unwrap_err()
                .contains("node_exporter")
        );
    }
}
