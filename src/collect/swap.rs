//! `swap`: swap space from /proc/meminfo (total, free, used, used_percent, in
//! bytes) and cumulative swap traffic from /proc/vmstat (`in`, `out`: pages
//! swapped times the page size, in bytes), as Telegraf's swap plugin.
//!
//! /proc/vmstat (~4 KB, ~30 µs to generate) is read for its two swap
//! counters only while /proc/swaps lists a swap area, and once more each
//! time the kernel says that list changed (a `poll`, `Files::proc_if_changed`):
//! with no swap area there is no swap traffic, so on a host without swap
//! (most Kubernetes nodes) the counters are read once and repeated. The
//! read after a change also catches the last pages `swapoff` brought in,
//! as the area leaves /proc/swaps only when that is done. Without a
//! readable /proc/swaps (a fixture tree, a masked file), vmstat is read
//! every cycle.

use super::{CollectError, Collector, Entry, Files, kv};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("swap", |ctx| Box::new(Swap::new(ctx.facts.page_size)));

pub struct Swap {
    page_size: u64,
    /// Whether /proc/swaps listed a swap area when last read.
    areas: bool,
    /// pswpin and pswpout as last read from /proc/vmstat.
    last: Option<[u64; 2]>,
}

impl Swap {
    pub fn new(page_size: u64) -> Self {
        Swap {
            page_size,
            areas: true,
            last: None,
        }
    }

    /// Whether this cycle must read /proc/vmstat: a swap area is on, the
    /// list of them changed, it cannot be read, or no counters are known.
    fn traffic_possible(&mut self, files: &mut Files) -> bool {
        match files.proc_if_changed("swaps") {
            Ok(None) => self.areas || self.last.is_none(),
            Ok(Some(text)) => {
                // A header line, then one line per area.
                self.areas = text.lines().skip(1).any(|l| !l.trim().is_empty());
                true
            }
            Err(_) => true,
        }
    }

    /// pswpin and pswpout from /proc/vmstat, read if `traffic_possible`,
    /// else as last read.
    fn traffic(&mut self, files: &mut Files) -> Result<Option<[u64; 2]>, CollectError> {
        if !self.traffic_possible(files) {
            return Ok(self.last);
        }
        self.last = None;
        let path = files.proc_path("vmstat");
        let mut io = [None; 2];
        kv::pick(
            &path,
            files.proc("vmstat")?,
            &["pswpin", "pswpout"],
            &mut io,
        )?;
        if let [Some(i), Some(o)] = io {
            self.last = Some([i, o]);
        }
        Ok(self.last)
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
        let traffic = self.traffic(files);
        if let Ok(Some([i, o])) = traffic {
            p = p
                .counter("in", i.saturating_mul(self.page_size))
                .counter("out", o.saturating_mul(self.page_size));
        }
        out.push(p);
        traffic.map(|_| ())
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
    fn vmstat_is_read_while_a_swap_area_is_on_or_their_list_changed() {
        // The live kernel's files: with no swap area the counters cannot
        // move, so vmstat is read on the first cycle only; with one, every
        // cycle. Either way each point carries them.
        let areas = std::fs::read_to_string("/proc/swaps")
            .unwrap()
            .lines()
            .count()
            > 1;
        let mut swap = Swap::new(4096);
        let mut files = Files::new(crate::host::HostPaths::default());
        let (mut reads, mut counters) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            files.new_cycle();
            let mut out = Vec::new();
            swap.collect(&mut files, 1_000, &mut out).unwrap();
            reads.push(files.cache.iter().any(|(k, ..)| *k == "vmstat"));
            counters.push([out[0].field("in"), out[0].field("out")]);
        }
        assert_eq!(reads, [true, areas, areas]);
        assert!(
            counters.iter().flatten().all(Option::is_some),
            "{counters:?}"
        );
        assert!(areas || counters.windows(2).all(|w| w[0] == w[1]));
        // A tree's regular /proc/swaps, even one without an area, cannot
        // signal a change: vmstat is read every cycle there, as without it.
        let (dir, paths) = tree(&[
            ("proc/meminfo", b"SwapTotal: 0 kB\nSwapFree: 0 kB\n"),
            ("proc/vmstat", b"pswpin 1\npswpout 2\n"),
            ("proc/swaps", b"Filename\tType\tSize\tUsed\tPriority\n"),
        ]);
        let mut files = Files::new(paths);
        let mut swap = Swap::new(4096);
        for _ in 0..2 {
            files.new_cycle();
            swap.collect(&mut files, 1_000, &mut Vec::new()).unwrap();
            assert!(files.cache.iter().any(|(k, ..)| *k == "vmstat"));
        }
        std::fs::remove_dir_all(&dir).ok();
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
