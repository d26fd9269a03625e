//! `mem`: memory from /proc/meminfo in bytes, fields as Telegraf's mem plugin
//! (total, available, used, free, cached, buffered, …, used_percent,
//! available_percent). As in Telegraf, `cached` includes SReclaimable and
//! used = total - free - buffered - cached. A field the kernel does not print
//! is left out; a kernel without MemAvailable (< 3.14) gets free + buffered + cached.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial, kv};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("mem", |ctx| match ctx.names {
    Names::Telegraf => Box::new(Mem),
    Names::NodeExporter => Box::new(MemNode::default()),
})
.node_help(NODE_HELP);

/// node_exporter's meminfo collector: every field of /proc/meminfo as
/// `node_memory_<Field>[_bytes]` (gauges; `(`/`)` in a key become `_`, as
/// `Active(anon)` → `Active_anon`; kB values in bytes, with `_bytes`): one
/// point, measurement `node_memory`, a field `<Field>[_bytes]` each.
const NODE_HELP: &[Help] = &[(
    "node_memory_",
    "Memory information field from /proc/meminfo.",
)];

/// (meminfo key, field name) for the values shipped as they are.
const PLAIN: &[(&str, &str)] = &[
    ("MemFree", "free"),
    ("Buffers", "buffered"),
    ("Active", "active"),
    ("Inactive", "inactive"),
    ("Slab", "slab"),
    ("SReclaimable", "sreclaimable"),
    ("SUnreclaim", "sunreclaim"),
    ("Shmem", "shared"),
    ("Dirty", "dirty"),
    ("Writeback", "write_back"),
    ("WritebackTmp", "write_back_tmp"),
    ("Mapped", "mapped"),
    ("PageTables", "page_tables"),
    ("CommitLimit", "commit_limit"),
    ("Committed_AS", "committed_as"),
    ("SwapCached", "swap_cached"),
    ("SwapTotal", "swap_total"),
    ("SwapFree", "swap_free"),
    ("HugePages_Total", "huge_pages_total"),
    ("HugePages_Free", "huge_pages_free"),
    ("Hugepagesize", "huge_page_size"),
    ("VmallocTotal", "vmalloc_total"),
    ("VmallocUsed", "vmalloc_used"),
    ("HighTotal", "high_total"),
    ("HighFree", "high_free"),
    ("LowTotal", "low_total"),
    ("LowFree", "low_free"),
];
/// Keys the derived fields need, after the plain ones.
const DERIVED: &[&str] = &["MemTotal", "MemAvailable", "Cached"];

pub struct Mem;

impl Collector for Mem {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        const N: usize = PLAIN.len() + DERIVED.len();
        let mut keys = [""; N];
        for (slot, k) in keys
            .iter_mut()
            .zip(PLAIN.iter().map(|(k, _)| *k).chain(DERIVED.iter().copied()))
        {
            *slot = k;
        }
        let path = files.proc_path("meminfo");
        let mut v = [None; N];
        kv::pick(&path, files.proc("meminfo")?, &keys, &mut v)?;
        let get = |key: &str| keys.iter().position(|k| *k == key).and_then(|i| v[i]);
        let total = get("MemTotal")
            .ok_or_else(|| CollectError::parse(&path, "no MemTotal (empty or truncated file?)"))?;
        let free = get("MemFree").unwrap_or(0);
        let buffered = get("Buffers").unwrap_or(0);
        let cached = get("Cached")
            .unwrap_or(0)
            .saturating_add(get("SReclaimable").unwrap_or(0));
        let available = get("MemAvailable")
            .unwrap_or_else(|| free.saturating_add(buffered).saturating_add(cached));
        let used = total
            .saturating_sub(free)
            .saturating_sub(buffered)
            .saturating_sub(cached);
        let pct = |x: u64| {
            if total == 0 {
                f64::NAN
            } else {
                100.0 * x as f64 / total as f64
            }
        };

        let mut p = Point::new("mem", now)
            .uint("total", total)
            .uint("available", available)
            .uint("used", used)
            .uint("cached", cached)
            .gauge("used_percent", pct(used))
            .gauge("available_percent", pct(available));
        for (i, (_, field)) in PLAIN.iter().enumerate() {
            if let Some(x) = v[i] {
                p = p.uint(*field, x);
            }
        }
        out.push(p);
        Ok(())
    }
}

/// `mem` with node_exporter's names.
#[derive(Default)]
pub struct MemNode {
    /// A field name being made.
    name: String,
}

/// node_exporter's meminfo series are `<NODE_MEASUREMENT>_<field>`.
const NODE_MEASUREMENT: &str = "node_memory";

/// A meminfo line as node_exporter's (field name, value): `Key: n [kB]`.
fn node_line(
    path: &std::path::Path,
    number: usize,
    line: &str,
    name: &mut String,
) -> Result<u64, CollectError> {
    let bad = |what: &str| CollectError::parse(path, format!("line {number}: {what}"));
    let (key, rest) = line.split_once(':').ok_or_else(|| bad("no `Key:`"))?;
    let mut words = rest.split_ascii_whitespace();
    let v: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| bad(&format!("{key}: not a number")))?;
    if key.is_empty()
        || key.len() > 64
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_()".contains(&b))
    {
        return Err(bad("not a meminfo key"));
    }
    name.clear();
    name.extend(
        key.chars()
            .filter(|c| *c != ')')
            .map(|c| if c == '(' { '_' } else { c }),
    );
    match words.next() {
        Some("kB") => {
            name.push_str("_bytes");
            Ok(v.saturating_mul(1024))
        }
        None => Ok(v),
        Some(unit) => Err(bad(&format!("{key}: unknown unit {unit:?}"))),
    }
}

impl Collector for MemNode {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("meminfo");
        let text = files.proc("meminfo")?;
        let mut partial = Partial::default();
        let mut p = Point::new(NODE_MEASUREMENT, now);
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            if let Some(v) = partial.keep(node_line(&path, i + 1, line, &mut self.name)) {
                p = p.uint(crate::point::intern(&self.name), v);
            }
        }
        if p.fields.is_empty() {
            partial.note(|| CollectError::parse(&path, "no fields (empty file?)"));
        } else {
            out.push(p);
        }
        partial.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_exporter_names_every_field() {
        let pts = crate::collect::testutil::run(&mut MemNode::default(), "basic").unwrap();
        let get = |n: &str| crate::collect::testutil::series(&pts, n, &[]);
        use crate::point::Value::Int;
        assert_eq!(
            get("node_memory_MemTotal_bytes"),
            Some(Int(16_000_000 * 1024))
        );
        assert!(
            get("node_memory_HugePages_Total").is_some(),
            "a count, no _bytes"
        );
        assert!(
            get("node_memory_Active_anon_bytes").is_some(),
            "Active(anon)"
        );
        let (pts, e) = crate::collect::testutil::run_on_partial(
            &mut MemNode::default(),
            &[(
                "proc/meminfo",
                b"MemTotal: 100 kB\nBad line\nMemFree: x kB\nHugePages_Free: 3\n",
            )],
        );
        assert_eq!(
            crate::collect::testutil::series_count(&pts),
            2,
            "a bad line loses only itself"
        );
        let e = e.unwrap();
        assert!(
            e.to_string().contains("meminfo: line 2") && e.skipped == 2,
            "{e}"
        );
    }
    use crate::collect::testutil::*;
    use crate::point::Value::{Gauge, Int};

    #[test]
    fn real_meminfo() {
        let pts = run(&mut Mem, "basic").unwrap();
        let m = &pts[0];
        assert_eq!(m.field("total"), Some(Int(16_000_000 * 1024)));
        assert_eq!(m.field("available"), Some(Int(12_000_000 * 1024)));
        // used = total - free - buffers - (cached + sreclaimable)
        assert_eq!(
            m.field("used"),
            Some(Int((16_000_000
                - 8_000_000
                - 500_000
                - 3_000_000
                - 200_000)
                * 1024))
        );
        assert_eq!(m.field("available_percent"), Some(Gauge(75.0)));
        assert_eq!(m.field("huge_pages_total"), Some(Int(0)));
    }

    #[test]
    fn old_kernel_without_memavailable() {
        let pts = run_on(
            &mut Mem,
            &[(
                "proc/meminfo",
                b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n",
            )],
        )
        .unwrap();
        assert_eq!(pts[0].field("available"), Some(Int(400 * 1024)));
    }

    #[test]
    fn hostile_meminfo() {
        assert!(err_text(run(&mut Mem, "empty")).contains("no MemTotal"));
        let e = err_text(run_on(
            &mut Mem,
            &[("proc/meminfo", b"MemTotal: 12\0 kB\n")],
        ));
        assert!(e.contains("meminfo") && e.contains("MemTotal"), "{e}");
        let huge = vec![b'x'; crate::collect::MAX_FILE_BYTES + 10];
        let e = err_text(run_on(&mut Mem, &[("proc/meminfo", &huge)]));
        assert!(e.contains("larger than"), "{e}");
        let e = err_text(run_on(
            &mut Mem,
            &[("proc/meminfo", b"MemTotal: \xff\xfe kB\n")],
        ));
        assert!(e.contains("meminfo"), "{e}");
    }
}
