//! `system`: load averages from /proc/loadavg (load1, load5, load15), uptime
//! in whole seconds from /proc/uptime and n_cpus (online CPUs: the `cpuN`
//! lines of /proc/stat), as Telegraf's system plugin. Our own two-line
//! parsers: procfs-core's `LoadAverage` holds f32 (0.52 would ship as 0.51999…).

use std::path::Path;

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial, num, stat};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("system", |ctx| match ctx.names {
    Names::Telegraf => Box::new(System),
    Names::NodeExporter => Box::new(SystemNode),
})
.node_help(NODE_HELP);

/// node_exporter's loadavg collector (its uptime is
/// `time() - node_boot_time_seconds`, its CPU count that of
/// `node_cpu_seconds_total{mode="idle"}`: neither has a series of its own).
const NODE_HELP: &[Help] = &[
    ("node_load1", "1m load average."),
    ("node_load5", "5m load average."),
    ("node_load15", "15m load average."),
];

/// `system` with node_exporter's names: the load averages.
pub struct SystemNode;

impl Collector for SystemNode {
    fn name(&self) -> &'static str {
        "system"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("loadavg");
        let loads = parse_loadavg(&path, files.proc("loadavg")?)?;
        for ((name, _), v) in NODE_HELP.iter().zip(loads) {
            out.push(Point::new(*name, now).gauge(WHOLE, v));
        }
        Ok(())
    }
}

pub struct System;

pub fn parse_loadavg(path: &Path, text: &str) -> Result<[f64; 3], CollectError> {
    let mut it = text.split_ascii_whitespace();
    let mut out = [0.0; 3];
    for (slot, what) in out.iter_mut().zip(["load1", "load5", "load15"]) {
        let v: f64 = num(path, what, it.next())?;
        if !v.is_finite() || v < 0.0 {
            return Err(CollectError::parse(
                path,
                format!("{what}: {v} is out of range"),
            ));
        }
        *slot = v;
    }
    Ok(out)
}

pub fn parse_uptime(path: &Path, text: &str) -> Result<u64, CollectError> {
    let v: f64 = num(path, "uptime", text.split_ascii_whitespace().next())?;
    if !(0.0..1e12).contains(&v) {
        return Err(CollectError::parse(
            path,
            format!("uptime: {v} is out of range"),
        ));
    }
    Ok(v as u64)
}

impl Collector for System {
    fn name(&self) -> &'static str {
        "system"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        // Each file loses only its own fields.
        let mut partial = Partial::default();
        let mut p = Point::new("system", now);
        let path = files.proc_path("loadavg");
        if let Some([l1, l5, l15]) =
            partial.keep(files.proc("loadavg").and_then(|t| parse_loadavg(&path, t)))
        {
            p = p.gauge("load1", l1).gauge("load5", l5).gauge("load15", l15);
        }
        let path = files.proc_path("stat");
        let n_cpus = stat::read(files, stat::Cpus::Count).and_then(|st| match st.n_cpus {
            0 => Err(CollectError::parse(&path, "no cpuN line")),
            n => Ok(n as u64),
        });
        if let Some(n) = partial.keep(n_cpus) {
            p = p.uint("n_cpus", n);
        }
        let path = files.proc_path("uptime");
        if let Some(up) = partial.keep(files.proc("uptime").and_then(|t| parse_uptime(&path, t))) {
            p = p.uint("uptime", up);
        }
        partial.push(p, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Gauge, Int};

    #[test]
    fn node_exporter_load() {
        let pts = run(&mut SystemNode, "basic").unwrap();
        assert_eq!(pts[0].measurement, "node_load1");
        assert_eq!(pts[0].field(WHOLE), Some(Gauge(0.52)));
        assert_eq!(pts.len(), 3);
    }

    #[test]
    fn load_uptime_cpus() {
        let p = &run(&mut System, "basic").unwrap()[0];
        assert_eq!(p.field("load1"), Some(Gauge(0.52)));
        assert_eq!(p.field("load15"), Some(Gauge(1.25)));
        assert_eq!(p.field("uptime"), Some(Int(354_421)));
        assert_eq!(p.field("n_cpus"), Some(Int(2)));
    }

    #[test]
    fn a_missing_uptime_loses_only_the_uptime() {
        let (pts, e) = run_on_partial(
            &mut System,
            &[
                ("proc/loadavg", b"0.50 0.25 0.10 1/100 42\n"),
                ("proc/stat", b"cpu 1 2 3 4\ncpu0 1 2 3 4\n"),
            ],
        );
        assert_eq!(pts[0].field("load5"), Some(Gauge(0.25)));
        assert_eq!(pts[0].field("n_cpus"), Some(Int(1)));
        assert_eq!(pts[0].field("uptime"), None);
        assert!(e.unwrap().to_string().contains("uptime"));
    }

    #[test]
    fn hostile_files() {
        let p = Path::new("/proc/loadavg");
        assert!(
            parse_loadavg(p, "")
                .unwrap_err()
                .to_string()
                .contains("load1: missing")
        );
        assert!(
            parse_loadavg(p, "0.1 0.2")
                .unwrap_err()
                .to_string()
                .contains("load15: missing")
        );
        assert!(
            parse_loadavg(p, "NaN 1 1")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(parse_uptime(p, "-5 1").is_err());
        assert!(
            parse_uptime(p, "\0")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
    }
}
