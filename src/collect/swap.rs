//! `swap`: swap space from /proc/meminfo (total, free, used, used_percent, in
//! bytes) and cumulative swap traffic from /proc/vmstat (`in`, `out`: pages
//! swapped times the page size, in bytes), as Telegraf's swap plugin.

use super::{CollectError, Collector, Entry, Files, kv};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("swap", |ctx| Box::new(Swap::new(ctx.facts.page_size)));

pub struct Swap {
    page_size: u64,
}

impl Swap {
    pub fn new(page_size: u64) -> Self {
        Swap { page_size }
    }
}

impl Collector for Swap {
    fn name(&self) -> &'static str {
        "swap"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("meminfo");
        let mut m = [None; 2];
        kv::pick(
            &path,
            files.proc("meminfo")?,
            &["SwapTotal", "SwapFree"],
            &mut m,
        )?;
        let [Some(total), Some(free)] = m else {
            return Err(CollectError::parse(
                &path,
                "no SwapTotal/SwapFree (truncated file?)",
            ));
        };
        let used = total.saturating_sub(free);
        let mut p = Point::new("swap", now)
            .uint("total", total)
            .uint("free", free)
            .uint("used", used)
            .gauge(
                "used_percent",
                if total == 0 {
                    0.0
                } else {
                    100.0 * used as f64 / total as f64
                },
            );
        // Without /proc/vmstat only the swap-ins and -outs are lost.
        let vm_path = files.proc_path("vmstat");
        let mut io = [None; 2];
        let vm = files
            .proc("vmstat")
            .and_then(|t| kv::pick(&vm_path, t, &["pswpin", "pswpout"], &mut io));
        if let [Some(i), Some(o)] = io {
            p = p
                .counter("in", i.saturating_mul(self.page_size))
                .counter("out", o.saturating_mul(self.page_size));
        }
        out.push(p);
        vm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Gauge, Int};

    #[test]
    fn swap_space_and_traffic() {
        let p = &run(&mut Swap::new(4096), "basic").unwrap()[0];
        assert_eq!(p.field("total"), Some(Int(2_000_000 * 1024)));
        assert_eq!(p.field("used"), Some(Int(500_000 * 1024)));
        assert_eq!(p.field("used_percent"), Some(Gauge(25.0)));
        assert_eq!(p.field("in"), Some(Counter(100 * 4096)));
        assert_eq!(p.field("out"), Some(Counter(300 * 4096)));
    }

    #[test]
    fn missing_files_and_fields() {
        let e = err_text(run_on(
            &mut Swap::new(4096),
            &[("proc/meminfo", b"MemTotal: 1 kB\n"), ("proc/vmstat", b"")],
        ));
        assert!(e.contains("SwapTotal"), "{e}");
        let (pts, e) = run_on_partial(
            &mut Swap::new(4096),
            &[("proc/meminfo", b"SwapTotal: 1 kB\nSwapFree: 1 kB\n")],
        );
        assert_eq!(pts[0].field("total"), Some(Int(1024)), "the space is kept");
        assert_eq!(pts[0].field("in"), None);
        let e = e.unwrap().to_string();
        assert!(e.contains("vmstat") && e.contains("No such file"), "{e}");
    }
}
