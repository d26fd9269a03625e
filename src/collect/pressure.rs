//! `pressure`: pressure stall information (PSI) from /proc/pressure/cpu,
//! memory and io: the share of time some (or all, `full`) runnable tasks
//! were stalled on that resource. One point per resource and line:
//! `pressure` with tags `resource` (cpu, memory, io) and `type` (some,
//! full) → avg10, avg60, avg300 (percent, gauges) and total (stalled
//! microseconds, a counter), as Telegraf's kernel plugin reports them.
//!
//! A kernel without PSI (before 4.20, or booted with `psi=0`) has no such
//! files, or refuses to read them (EOPNOTSUPP): the collector then emits
//! nothing, and says so once at debug; it is not an error. A file that is
//! there but malformed is. Cost: three reads of one or two short lines.

use std::path::Path;

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, ErrorKind, Files, num};
use crate::point::{Point, Timestamp, Value};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("pressure", |ctx| {
    Box::new(Pressure {
        node: ctx.names == Names::NodeExporter,
        ..Pressure::default()
    })
})
.node_help(NODE_HELP);

/// node_exporter's pressure collector: the cumulative stall time of each
/// line, in seconds (`some` is waiting, `full` stalled; the cpu `full` line
/// of newer kernels is left out, as node_exporter does). No averages: a
/// dashboard takes `rate()` of these.
const NODE_HELP: &[Help] = &[
    (
        "node_pressure_cpu_waiting_seconds_total",
        "Total time in seconds that processes have waited for CPU time",
    ),
    (
        "node_pressure_io_waiting_seconds_total",
        "Total time in seconds that processes have waited due to IO congestion",
    ),
    (
        "node_pressure_io_stalled_seconds_total",
        "Total time in seconds no process could make progress due to IO congestion",
    ),
    (
        "node_pressure_memory_waiting_seconds_total",
        "Total time in seconds that processes have waited for memory",
    ),
    (
        "node_pressure_memory_stalled_seconds_total",
        "Total time in seconds no process could make progress due to memory congestion",
    ),
];

/// (resource, line, series): the lines node_exporter reports, in
/// `NODE_HELP`'s order.
const NODE_LINES: [(&str, &str, usize); 5] = [
    ("cpu", "some", 0),
    ("io", "some", 1),
    ("io", "full", 2),
    ("memory", "some", 3),
    ("memory", "full", 4),
];

/// node_exporter's pressure series are `<NODE_MEASUREMENT>_<field>`.
const NODE_MEASUREMENT: &str = "node_pressure";

/// A line's series in node_exporter's names, if it has one.
fn node_name(resource: &str, kind: &str) -> Option<&'static str> {
    NODE_LINES
        .iter()
        .find(|(r, k, _)| *r == resource && *k == kind)
        .map(|(_, _, i)| NODE_HELP[*i].0)
}

const RESOURCES: [(&str, &str); 3] = [
    ("cpu", "pressure/cpu"),
    ("memory", "pressure/memory"),
    ("io", "pressure/io"),
];

#[derive(Default)]
pub struct Pressure {
    /// Set once the kernel turned out to lack PSI (said once).
    absent: bool,
    /// node_exporter's names.
    node: bool,
}

/// One line of a pressure file: `some avg10=0.00 avg60=0.21 avg300=0.51 total=103234065`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    pub kind: &'a str,
    /// `None`: not a percentage (left out, named in `bad`).
    pub avg: [Option<f64>; 3],
    pub total: u64,
    /// What was wrong with an average that was left out.
    pub bad: Option<&'static str>,
}

pub fn parse<'a>(path: &Path, text: &'a str) -> Result<Lines<'a>, CollectError> {
    let mut out = Lines::default();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if i >= out.0.len() {
            return Err(CollectError::parse(
                path,
                "more than a some and a full line",
            ));
        }
        let mut words = line.split_ascii_whitespace();
        let kind = match words.next() {
            Some(k @ ("some" | "full")) => k,
            other => {
                return Err(CollectError::parse(
                    path,
                    format!(
                        "expected a some or full line, found {:?}",
                        other.unwrap_or("")
                    ),
                ));
            }
        };
        let mut field = |name: &str| -> Result<&str, CollectError> {
            let w = words.next();
            w.and_then(|w| w.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| CollectError::parse(path, format!("{kind}: {name}= missing")))
        };
        let mut avg = [None; 3];
        let mut bad = None;
        for (slot, name) in avg.iter_mut().zip(["avg10", "avg60", "avg300"]) {
            let v: f64 = num(path, name, Some(field(name)?))?;
            if (0.0..=100.0).contains(&v) {
                *slot = Some(v);
            } else {
                bad.get_or_insert(name);
            }
        }
        let total: u64 = num(path, "total", Some(field("total")?))?;
        out.0[i] = Some(Line {
            kind,
            avg,
            total,
            bad,
        });
    }
    if out.0[0].is_none() {
        return Err(CollectError::parse(path, "empty"));
    }
    Ok(out)
}

/// A PSI file's lines: `some`, and `full` where the kernel has it (held
/// in place: a cycle allocates nothing for them).
#[derive(Debug, Default)]
pub struct Lines<'a>(pub [Option<Line<'a>>; 2]);

#[cfg(test)]
impl<'a> std::ops::Index<usize> for Lines<'a> {
    type Output = Line<'a>;
    fn index(&self, i: usize) -> &Line<'a> {
        match &self.0[i] {
            Some(l) => l,
            None => panic!("no line {i}"),
        }
    }
}

impl<'a> IntoIterator for Lines<'a> {
    type Item = Line<'a>;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Line<'a>>, 2>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

/// True for the errors of a kernel without PSI.
fn no_psi(e: &CollectError) -> bool {
    match &e.kind {
        ErrorKind::Io(io) => {
            io.kind() == std::io::ErrorKind::NotFound
                || io.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
        }
        _ => false,
    }
}

impl Collector for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        if self.absent {
            return Ok(());
        }
        // One resource's file, or one bad average, loses only itself.
        let mut partial = super::Partial::default();
        // node_exporter's series: one point, a field each.
        let mut node = self.node.then(|| Point::new(NODE_MEASUREMENT, now));
        for (resource, rel) in RESOURCES {
            let path = files.proc_path(rel);
            let text = match files.proc(rel) {
                Ok(t) => t,
                Err(e) if no_psi(&e) && resource == "cpu" => {
                    tracing::debug!(
                        "no pressure stall information on this kernel ({e}); the pressure collector stays quiet"
                    );
                    self.absent = true;
                    return Ok(());
                }
                Err(e) if no_psi(&e) => continue,
                Err(e) => {
                    partial.keep::<()>(Err(e));
                    continue;
                }
            };
            let Some(lines) = partial.keep(parse(&path, text)) else {
                continue;
            };
            for l in lines {
                if self.node {
                    if let (Some(p), Some(name)) = (node.as_mut(), node_name(resource, l.kind)) {
                        let field = super::names::field_of(NODE_MEASUREMENT, name);
                        p.fields
                            .push((field.into(), Value::Total(l.total as f64 / 1e6)));
                    }
                    continue;
                }
                let mut p = Point::new("pressure", now)
                    .tag("resource", resource)
                    .tag("type", l.kind);
                for (name, v) in ["avg10", "avg60", "avg300"].into_iter().zip(l.avg) {
                    if let Some(v) = v {
                        p = p.gauge(name, v);
                    }
                }
                if let Some(name) = l.bad {
                    partial.note(|| {
                        CollectError::parse(
                            &path,
                            format!("{} {name} is not a percentage, left out", l.kind),
                        )
                    });
                }
                out.push(p.counter("total", l.total));
            }
        }
        out.extend(node.filter(|p| !p.fields.is_empty()));
        partial.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Gauge};

    #[test]
    fn node_exporter_stall_seconds() {
        let mut c = Pressure {
            node: true,
            ..Pressure::default()
        };
        let pts = run(&mut c, "basic").unwrap();
        assert_eq!(series_count(&pts), 5, "no cpu full: {pts:?}");
        assert_eq!(
            series(&pts, "node_pressure_io_stalled_seconds_total", &[]),
            Some(crate::point::Value::Total(78.845918))
        );
    }

    #[test]
    fn three_resources_some_and_full() {
        let pts = run(&mut Pressure::default(), "basic").unwrap();
        assert_eq!(pts.len(), 6);
        let io_full = pts
            .iter()
            .find(|p| p.tag_value("resource") == Some("io") && p.tag_value("type") == Some("full"))
            .unwrap();
        assert_eq!(io_full.field("avg60"), Some(Gauge(0.34)));
        assert_eq!(io_full.field("total"), Some(Counter(78_845_918)));
    }

    #[test]
    fn an_old_kernel_without_psi_is_quiet() {
        let mut c = Pressure::default();
        assert!(run(&mut c, "cpu-t0").unwrap().is_empty());
        assert!(c.absent);
    }

    #[test]
    fn hostile_files() {
        let p = Path::new("/proc/pressure/io");
        for (text, want) in [
            ("", "empty"),
            ("some avg10=0.00 avg60=0.21\n", "avg300= missing"),
            ("some avg10=x avg60=0 avg300=0 total=1\n", "not a number"),
            ("half avg10=0 avg60=0 avg300=0 total=1\n", "some or full"),
            ("some avg10=0 avg60=0 avg300=0 total=-1\n", "not a number"),
            ("\0\0\0", "some or full"),
        ] {
            let e = parse(p, text).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("/proc/pressure/io"),
                "{text:?}: {e}"
            );
        }
        // An average out of range loses only itself.
        for text in [
            "some avg10=250 avg60=1 avg300=2 total=1\n",
            "some avg10=NaN avg60=1 avg300=2 total=1\n",
        ] {
            let l = parse(p, text).unwrap();
            assert_eq!(l[0].avg, [None, Some(1.0), Some(2.0)], "{text:?}");
            assert_eq!(l[0].bad, Some("avg10"));
        }
        let (pts, e) = run_on_partial(
            &mut Pressure::default(),
            &[
                ("proc/pressure/cpu", b"some avg10=250 avg60=1 avg300=2 total=9\n"),
                ("proc/pressure/io", b"junk\n"),
                ("proc/pressure/memory", b"some avg10=1 avg60=1 avg300=1 total=3\nfull avg10=1 avg60=1 avg300=1 total=3\n"),
            ],
        );
        assert_eq!(
            pts.len(),
            3,
            "cpu's point without avg10, memory's two; io lost"
        );
        assert_eq!(pts[0].field("avg10"), None);
        assert_eq!(pts[0].field("total"), Some(Counter(9)));
        let e = e.unwrap().to_string();
        assert!(
            e.contains("pressure/cpu: some avg10 is not a percentage"),
            "{e}"
        );
        let e = run_on(
            &mut Pressure::default(),
            &[
                (
                    "proc/pressure/cpu",
                    b"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
                ),
                ("proc/pressure/memory", b"garbage\n"),
            ],
        );
        assert!(err_text(e).contains("pressure/memory"));
    }
}
