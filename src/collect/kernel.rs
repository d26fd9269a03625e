//! `kernel`: boot_time (seconds since the epoch), context_switches,
//! interrupts and processes_forked (cumulative) from /proc/stat, and
//! entropy_avail from /proc/sys/kernel/random/entropy_avail where the kernel
//! has it, as Telegraf's kernel plugin.

use super::{CollectError, Collector, Entry, Files, Partial, stat};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("kernel", |_| Box::new(Kernel));

pub struct Kernel;

impl Collector for Kernel {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("stat");
        let st = stat::read(files, stat::Cpus::Count)?;
        // A line the kernel does not print loses only its field, named.
        let mut missing = Vec::new();
        let mut p = Point::new("kernel", now);
        match st.btime {
            Some(v) => p = p.uint("boot_time", v),
            None => missing.push("btime"),
        }
        for (field, v, line) in [
            ("context_switches", st.ctxt, "ctxt"),
            ("interrupts", st.intr, "intr"),
            ("processes_forked", st.processes, "processes"),
        ] {
            match v {
                Some(v) => p = p.counter(field, v),
                None => missing.push(line),
            }
        }
        let mut partial = Partial::default();
        if !missing.is_empty() {
            partial.note(|| CollectError::parse(&path, format!("no {} line", missing.join(", "))));
        }
        let entropy = files.proc_path("sys/kernel/random/entropy_avail");
        if let Ok(text) = files.proc("sys/kernel/random/entropy_avail")
            && let Some(v) = partial.keep(super::num(
                &entropy,
                "entropy_avail",
                text.split_ascii_whitespace().next(),
            ))
        {
            p = p.uint("entropy_avail", v);
        }
        partial.push(p, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Int};

    #[test]
    fn kernel_counters() {
        let p = &run(&mut Kernel, "basic").unwrap()[0];
        assert_eq!(p.field("boot_time"), Some(Int(1_763_700_000)));
        assert_eq!(p.field("context_switches"), Some(Counter(987_654_321)));
        assert_eq!(p.field("interrupts"), Some(Counter(123_456_789)));
        assert_eq!(p.field("processes_forked"), Some(Counter(424_242)));
        assert_eq!(p.field("entropy_avail"), Some(Int(256)));
    }

    #[test]
    fn missing_lines_lose_only_their_fields_and_are_named() {
        let (pts, e) = run_on_partial(
            &mut Kernel,
            &[
                ("proc/stat", b"cpu 1 2 3 4\nctxt 5\nintr 7 0 0\n"),
                ("proc/sys/kernel/random/entropy_avail", b""),
            ],
        );
        assert_eq!(pts[0].field("context_switches"), Some(Counter(5)));
        assert_eq!(pts[0].field("interrupts"), Some(Counter(7)));
        assert_eq!(pts[0].fields.len(), 2, "no boot_time, processes or entropy");
        let e = e.unwrap().to_string();
        assert!(e.contains("proc/stat: no btime, processes line"), "{e}");
    }
}
