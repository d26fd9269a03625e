//! `vmstat`: every counter of /proc/vmstat, as Telegraf's `kernel_vmstat`
//! reports them: one field per key (pgfault, pgmajfault, pswpin, pswpout,
//! oom_kill, …). Keys starting with `nr_` are current amounts (gauges);
//! the others count events since boot (cumulative). Keys a kernel does not
//! print are simply absent. Off by default: about 170 series per host.
//! A malformed line loses only itself, named with its number.

use super::{CollectError, Collector, Entry, Files, Partial};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("vmstat", |_| Box::new(Vmstat)).off_by_default();

pub struct Vmstat;

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
            match key_value(line) {
                Some((key, v)) if key.starts_with("nr_") => p = p.uint(key.to_string(), v),
                Some((key, v)) => p = p.counter(key.to_string(), v),
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
    fn every_key_gauges_and_counters() {
        let p = &run(&mut Vmstat, "basic").unwrap()[0];
        assert_eq!(p.field("nr_free_pages"), Some(Int(2_000_000)));
        assert_eq!(p.field("pswpin"), Some(Counter(100)));
        assert_eq!(p.fields.len(), 6);
    }

    #[test]
    fn a_bad_line_loses_only_itself() {
        let (pts, e) = run_on_partial(
            &mut Vmstat,
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
