//! `vmstat`: every counter of /proc/vmstat, as Telegraf's `kernel_vmstat`
//! reports them: one field per key (pgfault, pgmajfault, pswpin, pswpout,
//! oom_kill, …). Keys starting with `nr_` are current amounts (gauges);
//! the others count events since boot (cumulative). Keys a kernel does not
//! print are simply absent. Off by default: about 170 series per host.
//! A malformed line loses only itself, named with its number.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("vmstat", |ctx| {
    Box::new(Vmstat {
        node: ctx.names == Names::NodeExporter,
    })
})
.off_by_default()
.node_help(NODE_HELP);

/// node_exporter's vmstat collector with its default fields
/// (`^(oom_kill|pgpg|pswp|pg.*fault).*`): `node_vmstat_<key>`, as gauges
/// (node_exporter leaves them untyped; a dashboard takes their rate).
const NODE_HELP: &[Help] = &[("node_vmstat_", "/proc/vmstat information field.")];

/// node_exporter's default vmstat fields.
fn node_field(key: &str) -> bool {
    ["oom_kill", "pgpg", "pswp"]
        .iter()
        .any(|p| key.starts_with(p))
        || key.strip_prefix("pg").is_some_and(|r| r.contains("fault"))
}

pub struct Vmstat {
    /// node_exporter's names and fields.
    node: bool,
}

impl Collector for Vmstat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("vmstat");
        let text = files.proc("vmstat")?;
        let mut p = Point::new("kernel_vmstat", now);
        let mut partial = Partial::default();
        for (i, line) in text.lines().enumerate() {
            if self.node {
                if let Some((key, v)) = key_value(line).filter(|(k, _)| node_field(k)) {
                    let name = crate::point::intern_concat(&["node_vmstat_", key]);
                    out.push(Point::new(name, now).uint(WHOLE, v));
                }
                continue;
            }
            match key_value(line) {
                Some((key, v)) if key.starts_with("nr_") => {
                    p = p.uint(crate::point::intern(key), v)
                }
                Some((key, v)) => p = p.counter(crate::point::intern(key), v),
                None if line.trim().is_empty() => {}
                None => partial.note(|| {
                    CollectError::parse(&path, format!("line {}: not `key value`", i + 1))
                }),
            }
        }
        partial.push(p, out)
    }
}

/// `key value`: a key of letters, digits and `_`, and a count.
fn key_value(line: &str) -> Option<(&str, u64)> {
    let mut w = line.split_ascii_whitespace();
    let (key, v) = (w.next()?, w.next()?);
    let ok_key = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (ok_key && w.next().is_none()).then_some(())?;
    Some((key, v.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Int};

    #[test]
    fn node_exporter_default_fields() {
        let pts = run(&mut Vmstat { node: true }, "basic").unwrap();
        let names: Vec<_> = pts.iter().map(|p| p.measurement.as_ref()).collect();
        assert!(names.contains(&"node_vmstat_pgfault") && names.contains(&"node_vmstat_pswpin"));
        assert!(
            !names.iter().any(|n| n.starts_with("node_vmstat_nr_")),
            "{names:?}"
        );
    }

    #[test]
    fn every_key_gauges_and_counters() {
        let p = &run(&mut Vmstat { node: false }, "basic").unwrap()[0];
        assert_eq!(p.field("nr_free_pages"), Some(Int(2_000_000)));
        assert_eq!(p.field("pswpin"), Some(Counter(100)));
        assert_eq!(p.fields.len(), 6);
    }

    #[test]
    fn a_bad_line_loses_only_itself() {
        let (pts, e) = run_on_partial(
            &mut Vmstat { node: false },
            &[(
                "proc/vmstat",
                b"pgfault 10\noom_kill x\nweird\npgmajfault 2\n",
            )],
        );
        assert_eq!(pts[0].field("pgfault"), Some(Counter(10)));
        assert_eq!(pts[0].field("pgmajfault"), Some(Counter(2)));
        assert_eq!(pts[0].fields.len(), 2);
        assert!(e.unwrap().to_string().contains("vmstat: line 2"));
    }
}
