//! `diskio`: cumulative I/O counters of whole block devices from
//! /proc/diskstats (tag `name`; fields as Telegraf's diskio: reads, writes,
//! read_bytes, write_bytes, read_time, write_time, io_time, weighted_io_time,
//! merged_reads, merged_writes, iops_in_progress). Partitions, loop, ram,
//! zram and floppy devices are left out. The device list comes from
//! `<sys>/block` (which lists whole devices only) and is refreshed every
//! `REFRESH`; without /sys a name rule stands in. Lines are parsed with
//! procfs-core's `DiskStat`, only for the devices kept.

use std::time::{Duration, Instant};

use procfs_core::DiskStat;

use super::names::{Help, Names};
use super::rates::Rates;
use super::{CollectError, Collector, Entry, Files};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("diskio", |ctx| match ctx.names {
    Names::Telegraf => Box::new(DiskIo::new(ctx.rates)),
    Names::NodeExporter => Box::new(DiskIoNode::new()),
})
.node_help(NODE_HELP);

/// node_exporter's diskstats collector: the columns of /proc/diskstats
/// after the name, in order, as (series, how a raw number becomes its
/// value); a kernel that prints fewer (before 4.18: no discards, before
/// 5.5: no flushes) has fewer series. Devices as node_exporter's default
/// exclude leaves them (`NODE_EXCLUDE`: partitions, loop, ram, fd). Per
/// device one point, measurement `NODE_MEASUREMENT`, a field each (the
/// series name after `node_disk_`), beside `node_disk_info`.
const NODE_COLUMNS: [(&str, Unit); 17] = [
    ("node_disk_reads_completed_total", Unit::Count),
    ("node_disk_reads_merged_total", Unit::Count),
    ("node_disk_read_bytes_total", Unit::Sectors),
    ("node_disk_read_time_seconds_total", Unit::Millis),
    ("node_disk_writes_completed_total", Unit::Count),
    ("node_disk_writes_merged_total", Unit::Count),
    ("node_disk_written_bytes_total", Unit::Sectors),
    ("node_disk_write_time_seconds_total", Unit::Millis),
    ("node_disk_io_now", Unit::Gauge),
    ("node_disk_io_time_seconds_total", Unit::Millis),
    ("node_disk_io_time_weighted_seconds_total", Unit::Millis),
    ("node_disk_discards_completed_total", Unit::Count),
    ("node_disk_discards_merged_total", Unit::Count),
    ("node_disk_discarded_sectors_total", Unit::Count),
    ("node_disk_discard_time_seconds_total", Unit::Millis),
    ("node_disk_flush_requests_total", Unit::Count),
    ("node_disk_flush_requests_time_seconds_total", Unit::Millis),
];

/// node_exporter's diskstats series are `<NODE_MEASUREMENT>_<field>`.
const NODE_MEASUREMENT: &str = "node_disk";

/// node_exporter's `--collector.diskstats.device-exclude` default.
const NODE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

#[derive(Debug, Clone, Copy)]
enum Unit {
    Count,
    /// 512-byte sectors, shipped in bytes.
    Sectors,
    /// Milliseconds, shipped in seconds.
    Millis,
    Gauge,
}

const NODE_HELP: &[Help] = &[
    ("node_disk_info", "Info of /sys/block/<block_device>."),
    ("node_disk_", "Disk statistic from /proc/diskstats."),
];

/// `diskio` with node_exporter's names.
pub struct DiskIoNode {
    exclude: Option<regex_lite::Regex>,
    /// The device and the exclude's answer on each line of the last
    /// diskstats read: the kernel keeps its lines in order, so the regex
    /// runs only for a line whose device changed.
    by_line: Vec<(Box<str>, bool)>,
}

impl DiskIoNode {
    fn new() -> Self {
        DiskIoNode {
            exclude: regex_lite::Regex::new(NODE_EXCLUDE).ok(),
            by_line: Vec::new(),
        }
    }

    /// Whether node_exporter's default exclude leaves out `device`, read
    /// on line `number` (1-based).
    fn excluded(&mut self, number: usize, device: &str) -> bool {
        let i = number.saturating_sub(1);
        if let Some((d, x)) = self.by_line.get(i)
            && **d == *device
        {
            return *x;
        }
        let x = self.exclude.as_ref().is_some_and(|re| re.is_match(device));
        if self.by_line.len() <= i {
            self.by_line.resize(i + 1, (Box::default(), false));
        }
        self.by_line[i] = (device.into(), x);
        x
    }

    /// One diskstats line's series.
    fn line(
        &mut self,
        path: &std::path::Path,
        number: usize,
        line: &str,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let bad = |what: String| CollectError::parse(path, format!("line {number}: {what}"));
        let mut words = line.split_ascii_whitespace();
        let (Some(major), Some(minor), Some(device)) = (words.next(), words.next(), words.next())
        else {
            return Err(bad("fewer than 3 columns".into()));
        };
        if self.excluded(number, device) {
            return Ok(());
        }
        let mut values = [0u64; NODE_COLUMNS.len()];
        let mut n = 0;
        for (slot, w) in values.iter_mut().zip(words) {
            *slot = w
                .parse::<u64>()
                .map_err(|_| bad(format!("{device}: {w:?} is not a counter")))?;
            n += 1;
        }
        if n < 11 {
            return Err(bad(format!("{device}: {n} counters, at least 11 expected")));
        }
        out.push(
            Point::new("node_disk_info", now)
                .tag("device", device)
                .tag("major", major)
                .tag("minor", minor)
                .int(WHOLE, 1),
        );
        let mut p = Point::new(NODE_MEASUREMENT, now).tag("device", device);
        for ((name, unit), v) in NODE_COLUMNS.iter().zip(values).take(n) {
            let f = super::names::field_of(NODE_MEASUREMENT, name);
            p = match unit {
                Unit::Count => p.counter(f, v),
                Unit::Sectors => p.counter(f, v.saturating_mul(SECTOR)),
                Unit::Millis => p.total(f, v as f64 / 1000.0),
                Unit::Gauge => p.uint(f, v),
            };
        }
        out.push(p);
        Ok(())
    }
}

impl Collector for DiskIoNode {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("diskstats");
        let text = files.proc("diskstats")?;
        let mut partial = super::Partial::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            partial.keep(self.line(&path, i + 1, line, now, out));
        }
        partial.result()
    }
}

/// How long the cached device list is trusted before /sys/block is read again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// /proc/diskstats counts sectors of 512 bytes whatever the device's own sector size.
const SECTOR: u64 = 512;

#[derive(Default)]
pub struct DiskIo {
    /// Whole devices from /sys/block, or `None` where /sys is not readable.
    devices: Option<Vec<String>>,
    refreshed: Option<Instant>,
    rates: Rates,
}

const RATE_NAMES: &[(&str, &str)] = &[
    ("reads", "reads_per_sec"),
    ("writes", "writes_per_sec"),
    ("read_bytes", "read_bytes_per_sec"),
    ("write_bytes", "write_bytes_per_sec"),
    ("read_time", "read_time_per_sec"),
    ("write_time", "write_time_per_sec"),
    ("io_time", "io_time_per_sec"),
    ("weighted_io_time", "weighted_io_time_per_sec"),
    ("merged_reads", "merged_reads_per_sec"),
    ("merged_writes", "merged_writes_per_sec"),
];

impl DiskIo {
    pub fn new(rates: bool) -> Self {
        DiskIo {
            rates: Rates::new(rates),
            ..DiskIo::default()
        }
    }
}

fn virtual_device(name: &str) -> bool {
    ["loop", "ram", "zram", "fd"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Without /sys/block: is this diskstats name a partition? (sda1, vdb2,
/// nvme0n1p1, mmcblk0p1, xvda1)
fn looks_like_partition(name: &str) -> bool {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return false;
    }
    let stem = &name[..name.len() - digits];
    if stem.ends_with('p') && (name.starts_with("nvme") || name.starts_with("mmcblk")) {
        return true;
    }
    ["sd", "vd", "hd", "xvd"].iter().any(|p| {
        stem.strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase()))
    })
}

impl DiskIo {
    fn refresh(&mut self, files: &Files) {
        let dir = files.sys_path("block");
        self.devices = std::fs::read_dir(&dir).ok().map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !virtual_device(n))
                .collect()
        });
        if self.devices.is_none() {
            tracing::debug!(
                "{} is not readable; telling partitions by name",
                dir.display()
            );
        }
        self.refreshed = Some(Instant::now());
    }

    fn wanted(&self, name: &str) -> bool {
        match &self.devices {
            // sysfs spells a '/' in a device name as '!' (cciss/c0d0 is
            // /sys/block/cciss!c0d0).
            Some(list) => list.iter().any(|d| {
                d.len() == name.len()
                    && d.bytes()
                        .zip(name.bytes())
                        .all(|(a, b)| a == b || (a == b'!' && b == b'/'))
            }),
            None => !virtual_device(name) && !looks_like_partition(name),
        }
    }
}

impl Collector for DiskIo {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.refresh(files);
        }
        let path = files.proc_path("diskstats");
        let text = files.proc("diskstats")?;
        let mut seen = 0;
        // A bad line loses only its device; the first error is reported
        // after the others went out.
        let mut partial = super::Partial::default();
        self.rates.start_cycle();
        for (i, line) in text.lines().enumerate() {
            let Some(name) = line.split_ascii_whitespace().nth(2) else {
                if !line.trim().is_empty() {
                    partial.note(|| {
                        CollectError::parse(&path, format!("line {}: fewer than 3 columns", i + 1))
                    });
                }
                continue;
            };
            if !self.wanted(name) {
                continue;
            }
            seen += 1;
            let d = DiskStat::from_line(line).map_err(|e| {
                super::procfs_error(&path, &format!("line {}: device {name}", i + 1), &e)
            });
            let Some(d) = partial.keep(d) else {
                continue;
            };
            let p = Point::new("diskio", now)
                .tag("name", &d.name)
                .counter("reads", d.reads)
                .counter("writes", d.writes)
                .counter("read_bytes", d.sectors_read.saturating_mul(SECTOR))
                .counter("write_bytes", d.sectors_written.saturating_mul(SECTOR))
                .counter("read_time", d.time_reading)
                .counter("write_time", d.time_writing)
                .counter("io_time", d.time_in_progress)
                .counter("weighted_io_time", d.weighted_time_in_progress)
                .counter("merged_reads", d.merged)
                .counter("merged_writes", d.writes_merged)
                .uint("iops_in_progress", d.in_progress);
            out.push(self.rates.apply(&d.name, p, RATE_NAMES));
        }
        self.rates.end_cycle();
        // A device in /sys/block but not in diskstats went away: list them again next cycle.
        if self.devices.as_ref().is_some_and(|list| seen < list.len()) {
            self.refreshed = None;
        }
        partial.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Counter;

    #[test]
    fn node_exporter_excludes_answer_the_same_from_their_cache() {
        let mut c = DiskIoNode::new();
        let first = run(&mut c, "basic").unwrap();
        assert!(c.by_line.iter().any(|(_, x)| *x) && c.by_line.iter().any(|(_, x)| !*x));
        assert_eq!(run(&mut c, "basic").unwrap(), first);
        c.by_line.iter_mut().for_each(|(_, x)| *x = !*x);
        assert_ne!(
            run(&mut c, "basic").unwrap(),
            first,
            "the cache is what is used"
        );
    }

    #[test]
    fn a_line_whose_device_changed_is_asked_again() {
        let mut c = DiskIoNode::new();
        let devices = |text: &[u8], c: &mut DiskIoNode| -> Vec<String> {
            let pts = run_on(c, &[("proc/diskstats", text)]).unwrap();
            pts.iter()
                .filter(|p| p.measurement == NODE_MEASUREMENT)
                .filter_map(|p| p.tags.first().map(|t| t.1.to_string()))
                .collect()
        };
        let sda = b"8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n";
        let loop0 = b"7 0 loop0 1 2 3 4 5 6 7 8 9 10 11\n";
        assert_eq!(devices(sda, &mut c), ["sda"]);
        assert!(devices(loop0, &mut c).is_empty(), "loop0 is excluded");
        assert_eq!(devices(sda, &mut c), ["sda"]);
    }

    #[test]
    fn node_exporter_columns_units_and_excludes() {
        let pts = run(&mut DiskIoNode::new(), "basic").unwrap();
        let get = |name: &str, dev: &str| series(&pts, name, &[("device", dev)]);
        use crate::point::Value::{Counter, Int, Total};
        assert_eq!(
            get("node_disk_read_bytes_total", "nvme0n1"),
            Some(Counter(400_000 * 512))
        );
        assert_eq!(
            get("node_disk_read_time_seconds_total", "nvme0n1"),
            Some(Total(3.0))
        );
        assert_eq!(
            get("node_disk_flush_requests_total", "nvme0n1"),
            Some(Counter(10))
        );
        assert_eq!(get("node_disk_io_now", "sda"), Some(Int(0)));
        assert!(
            get("node_disk_discards_completed_total", "sda").is_none(),
            "an 11-column line"
        );
        assert!(get("node_disk_info", "nvme0n1p1").is_none(), "a partition");
        let info = pts
            .iter()
            .find(|p| p.measurement == "node_disk_info")
            .unwrap();
        assert_eq!(info.tag_value("major"), Some("259"));
    }

    #[test]
    fn whole_devices_only() {
        let pts = run(&mut DiskIo::default(), "basic").unwrap();
        let names: Vec<_> = pts.iter().map(|p| p.tag_value("name").unwrap()).collect();
        assert_eq!(names, ["nvme0n1", "sda", "dm-0"]);
        assert_eq!(pts[1].field("read_bytes"), Some(Counter(2000 * 512)));
        assert_eq!(pts[1].field("io_time"), Some(Counter(900)));
    }

    #[test]
    fn name_rule_without_sys() {
        for p in ["sda1", "vdb12", "nvme0n1p1", "mmcblk0p2", "xvda1"] {
            assert!(looks_like_partition(p), "{p}");
        }
        for d in ["sda", "nvme0n1", "mmcblk0", "dm-0", "md127", "sr0"] {
            assert!(!looks_like_partition(d), "{d}");
        }
        assert!(virtual_device("loop7") && virtual_device("zram0") && !virtual_device("loopy"));
        let pts = run_on(&mut DiskIo::default(), &[("proc/diskstats", b"   8   0 sda 1 2 3 4 5 6 7 8 9 10 11\n   8   1 sda1 1 2 3 4 5 6 7 8 9 10 11\n   7   0 loop0 1 2 3 4 5 6 7 8 9 10 11\n")]).unwrap();
        assert_eq!(pts.len(), 1);
    }

    #[test]
    fn a_device_with_a_slash_in_its_name_is_found_in_sys_as_sysfs_spells_it() {
        let pts = run_on_partial(
            &mut DiskIo::default(),
            &[
                ("sys/block/cciss!c0d0/stat", b""),
                ("sys/block/sda/stat", b""),
                (
                    "proc/diskstats",
                    b" 104 0 cciss/c0d0 1 2 3 4 5 6 7 8 9 10 11\n   8   0 sda 1 2 3\n   8   0 sda 1 2 3 4 5 6 7 8 9 10 11\n",
                ),
            ],
        );
        let (pts, e) = pts;
        let names: Vec<_> = pts.iter().map(|p| p.tag_value("name").unwrap()).collect();
        assert_eq!(
            names,
            ["cciss/c0d0", "sda"],
            "the bad sda line lost only itself"
        );
        let e = e.expect("the bad line is reported").to_string();
        assert!(
            e.contains("diskstats") && e.contains("line 2: device sda"),
            "{e}"
        );
    }

    #[test]
    fn truncated_line_is_an_error() {
        let e = err_text(run_on(
            &mut DiskIo::default(),
            &[("proc/diskstats", b"   8   0 sda 1 2 3\n")],
        ));
        assert!(e.contains("diskstats") && e.contains("sda"), "{e}");
        let e = err_text(run_on(
            &mut DiskIo::default(),
            &[("proc/diskstats", b"8 0\n")],
        ));
        assert!(e.contains("fewer than 3 columns"), "{e}");
    }
}
