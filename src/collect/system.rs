//! `system`: load averages from /proc/loadavg (load1, load5, load15), uptime
//! in whole seconds from /proc/uptime and n_cpus (online CPUs: the `cpuN`
//! lines of /proc/stat), as Telegraf's system plugin. Our own two-line
//! parsers: procfs-core's `LoadAverage` holds f32 (0.52 would ship as 0.51999…).

use std::path::Path;

use super::{CollectError, Collector, Entry, Files, num, stat};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("system", |_| Box::new(System));

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
        let p = files.proc_path("loadavg");
        let [l1, l5, l15] = parse_loadavg(&p, files.proc("loadavg")?)?;
        let p = files.proc_path("uptime");
        let uptime = parse_uptime(&p, files.proc("uptime")?)?;
        let n_cpus = stat::read(files, stat::Cpus::Count)?.n_cpus;
        out.push(
            Point::new("system", now)
                .gauge("load1", l1)
                .gauge("load5", l5)
                .gauge("load15", l15)
                .uint("n_cpus", n_cpus as u64)
                .uint("uptime", uptime),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Gauge, Int};

    #[test]
    fn load_uptime_cpus() {
        let p = &run(&mut System, "basic").unwrap()[0];
        assert_eq!(p.field("load1"), Some(Gauge(0.52)));
        assert_eq!(p.field("load15"), Some(Gauge(1.25)));
        assert_eq!(p.field("uptime"), Some(Int(354_421)));
        assert_eq!(p.field("n_cpus"), Some(Int(2)));
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
