//! `kernel`: boot_time (seconds since the epoch), context_switches,
//! interrupts and processes_forked (cumulative) from /proc/stat, and
//! entropy_avail from /proc/sys/kernel/random/entropy_avail where the kernel
//! has it, as Telegraf's kernel plugin.

use super::{CollectError, Collector, Entry, Files, stat};
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
        let mut p = Point::new("kernel", now)
            .uint("boot_time", stat::need(&path, st.btime, "btime")?)
            .counter("context_switches", stat::need(&path, st.ctxt, "ctxt")?)
            .counter("interrupts", stat::need(&path, st.intr, "intr")?)
            .counter(
                "processes_forked",
                stat::need(&path, st.processes, "processes")?,
            );
        let entropy = files.proc_path("sys/kernel/random/entropy_avail");
        if let Ok(text) = files.proc("sys/kernel/random/entropy_avail") {
            p = p.uint(
                "entropy_avail",
                super::num(
                    &entropy,
                    "entropy_avail",
                    text.split_ascii_whitespace().next(),
                )?,
            );
        }
        out.push(p);
        Ok(())
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
    fn missing_lines_are_named() {
        let e = err_text(run_on(
            &mut Kernel,
            &[("proc/stat", b"cpu 1 2 3 4\nctxt 5\n")],
        ));
        assert!(e.contains("proc/stat") && e.contains("btime"), "{e}");
    }
}
