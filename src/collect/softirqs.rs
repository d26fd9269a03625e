//! `softirqs`: software interrupts handled since boot, per type, from
//! /proc/softirqs (a header of CPUs, then `NAME: count per CPU`), summed
//! over the CPUs: `soft_interrupts`: irq → total (cumulative), as
//! Telegraf's interrupts plugin names the measurement, its tag and its
//! total. The per-CPU columns are left out (ten types times the CPUs would
//! be hundreds of series on a large host); a NET_RX that grows on one host
//! and not its peers is what an operator looks for. Kernels before 2.6.31
//! have no /proc/softirqs: then nothing, not an error. A bad line loses
//! only its type, named with its line number.

use std::path::Path;

use super::{CollectError, Collector, Entry, Files, Partial};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("softirqs", |_| Box::new(Softirqs));

pub struct Softirqs;

impl Collector for Softirqs {
    fn name(&self) -> &'static str {
        "softirqs"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("softirqs");
        let text = match files.proc("softirqs") {
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        };
        let mut lines = text.lines();
        let cpus = lines
            .next()
            .map_or(0, |h| h.split_ascii_whitespace().count());
        if cpus == 0 {
            return Err(CollectError::parse(
                &path,
                "no header of CPUs (empty or truncated file?)",
            ));
        }
        let mut partial = Partial::default();
        for (i, line) in lines.enumerate() {
            if let Some((irq, total)) = partial.keep(line_total(&path, i + 2, line, cpus)) {
                out.push(
                    Point::new("soft_interrupts", now)
                        .tag("irq", irq)
                        .counter("total", total),
                );
            }
        }
        partial.result()
    }
}

/// `NAME: n n …` as (name, sum of the counts); at most `cpus` counts.
fn line_total<'a>(
    path: &Path,
    number: usize,
    line: &'a str,
    cpus: usize,
) -> Result<(&'a str, u64), CollectError> {
    let bad = |what: &str| CollectError::parse(path, format!("line {number}: {what}"));
    let (name, counts) = line.split_once(':').ok_or_else(|| bad("no `NAME:`"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("not a softirq name"));
    }
    let mut total = 0u64;
    let mut n = 0;
    for word in counts.split_ascii_whitespace() {
        n += 1;
        if n > cpus {
            return Err(bad(&format!("more counts than the header's {cpus} CPUs")));
        }
        let v: u64 = word
            .parse()
            .map_err(|_| bad(&format!("{name}: {word:?} is not a count")))?;
        total = total.saturating_add(v);
    }
    if n == 0 {
        return Err(bad(&format!("{name}: no counts (truncated?)")));
    }
    Ok((name, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Counter;

    #[test]
    fn each_type_summed_over_the_cpus() {
        let pts = run(&mut Softirqs, "basic").unwrap();
        assert_eq!(pts.len(), 10);
        let net_rx = pts.iter().find(|p| p.tag_value("irq") == Some("NET_RX"));
        assert_eq!(net_rx.unwrap().field("total"), Some(Counter(435_089)));
    }

    #[test]
    fn an_old_kernel_without_the_file_is_quiet() {
        assert!(run(&mut Softirqs, "empty").unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_loses_only_its_type() {
        let text =
            "    CPU0 CPU1\n  HI: 1 2\n TIMER: 5 x\n NET_RX: 3 4 5\n: 1\nSCHED:\n RCU: 7 8\n";
        let (pts, e) = run_on_partial(&mut Softirqs, &[("proc/softirqs", text.as_bytes())]);
        let names: Vec<_> = pts.iter().filter_map(|p| p.tag_value("irq")).collect();
        assert_eq!(names, ["HI", "RCU"]);
        let e = e.unwrap();
        assert_eq!(e.skipped, 4);
        let e = e.to_string();
        assert!(e.contains("softirqs: line 3: TIMER: \"x\""), "{e}");
    }

    #[test]
    fn no_header_is_an_error_naming_the_file() {
        for text in ["", "\n"] {
            let e = err_text(run_on(&mut Softirqs, &[("proc/softirqs", text.as_bytes())]));
            assert!(e.contains("softirqs") && e.contains("header"), "{e}");
        }
    }
}
