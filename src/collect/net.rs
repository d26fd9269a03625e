//! `net`: cumulative per-interface counters from /proc/net/dev (tag
//! `interface`; fields as Telegraf's net: bytes_sent, bytes_recv,
//! packets_sent, packets_recv, err_in, err_out, drop_in, drop_out). The
//! loopback interface is left out, as Telegraf does; interfaces are sorted
//! by name. With `PROCSHIP_RATES=true` each counter also gets a
//! `<name>_per_sec` gauge (see `rates.rs`).
//!
//! Our own parser, not procfs-core's: the columns are found by the names in
//! the header line, so a kernel that prints fewer (2.0's layout has no
//! byte counters) loses only the fields it lacks; `eth0:12345678` (no space
//! after the colon once a counter is wide) parses; and a bad line loses only
//! its interface, reported with its line number after the others went out.

use std::path::Path;

use super::names::{Help, Names};
use super::rates::Rates;
use super::{CollectError, Collector, Entry, Files};
use crate::point::{Point, Timestamp, Value};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("net", |ctx| match ctx.names {
    Names::Telegraf => Box::new(Net::new(ctx.rates)),
    Names::NodeExporter => Box::new(NetNode::default()),
})
.node_help(NODE_HELP);

/// node_exporter's netdev collector: every column of /proc/net/dev as
/// `node_network_{receive,transmit}_<column>_total{device}`, `lo` left out
/// as node_exporter's default device exclude does: per device a point for
/// each side (`NODE_SIDES`), a field `<column>_total` each.
const NODE_HELP: &[Help] = &[
    (
        "node_network_receive_",
        "Network device statistic from /proc/net/dev, receive side.",
    ),
    (
        "node_network_transmit_",
        "Network device statistic from /proc/net/dev, transmit side.",
    ),
];

/// The measurements of node_exporter's netdev series, receive and transmit.
const NODE_SIDES: [&str; 2] = ["node_network_receive", "node_network_transmit"];

/// `net` with node_exporter's names.
#[derive(Default)]
pub struct NetNode {
    /// The header line the field names were made from, and those names
    /// with their side (an index of `NODE_SIDES`): made again only when the
    /// header changes.
    header: String,
    names: Vec<(usize, crate::point::Name)>,
}

impl Collector for NetNode {
    fn name(&self) -> &'static str {
        "net"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("net/dev");
        let text = files.proc("net/dev")?;
        let (recv, sent, rest) = header(&path, text)?;
        let head = &text[..text.len() - rest.len()];
        if head != self.header {
            self.names = (recv.split_whitespace().map(|c| (0, c)))
                .chain(sent.split_whitespace().map(|c| (1, c)))
                .map(|(side, c)| (side, crate::point::intern_concat(&[c, "_total"])))
                .collect();
            self.header = head.to_string();
        }
        let names = &self.names;
        let mut partial = super::Partial::default();
        for (i, line) in rest.lines().enumerate() {
            if let Some(Some((device, values))) =
                partial.keep(counters(&path, i + 3, line, names.len()))
            {
                let mut sides = NODE_SIDES.map(|m| Point::new(m, now).tag("device", device));
                for ((side, name), v) in names.iter().zip(values) {
                    if let Some(p) = sides.get_mut(*side) {
                        p.fields.push((name.clone(), Value::Counter(v)));
                    }
                }
                out.extend(sides.into_iter().filter(|p| !p.fields.is_empty()));
            }
        }
        partial.result()
    }
}

#[derive(Default)]
pub struct Net {
    rates: Rates,
    /// The last cycle's interface list's memory (`super::recycle_vec`).
    devs: Vec<Interface<'static>>,
}

const RATE_NAMES: &[(&str, &str)] = &[
    ("bytes_sent", "bytes_sent_per_sec"),
    ("bytes_recv", "bytes_recv_per_sec"),
    ("packets_sent", "packets_sent_per_sec"),
    ("packets_recv", "packets_recv_per_sec"),
    ("err_in", "err_in_per_sec"),
    ("err_out", "err_out_per_sec"),
    ("drop_in", "drop_in_per_sec"),
    ("drop_out", "drop_out_per_sec"),
];

impl Net {
    pub fn new(rates: bool) -> Self {
        Net {
            rates: Rates::new(rates),
            devs: Vec::new(),
        }
    }
}

impl Collector for Net {
    fn name(&self) -> &'static str {
        "net"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("net/dev");
        let text = files.proc("net/dev")?;
        if !text.starts_with("Inter-") {
            return Err(CollectError::parse(
                &path,
                "no header line (empty or truncated file?)",
            ));
        }
        let (cols, rest) = columns(&path, text)?;
        let mut devs: Vec<Interface<'_>> = super::recycle_vec(std::mem::take(&mut self.devs));
        let mut partial = super::Partial::default();
        for (i, line) in rest.lines().enumerate() {
            if let Some(Some(d)) = partial.keep(interface(&path, i + 3, line, &cols)) {
                devs.push(d);
            }
        }
        devs.sort_by(|a, b| a.0.cmp(b.0));
        self.rates.start_cycle();
        for &(name, fields) in &devs {
            let mut p = Point::new("net", now).tag("interface", name);
            for (field, v) in FIELDS.iter().zip(fields) {
                if let Some(v) = v {
                    p = p.counter(field.0, v);
                }
            }
            out.push(self.rates.apply(name, p, RATE_NAMES));
        }
        self.rates.end_cycle();
        self.devs = super::recycle_vec(devs);
        partial.result()
    }
}

/// The fields, with the header column each comes from: (field, receive
/// side, column name).
const FIELDS: [(&str, bool, &str); 8] = [
    ("bytes_sent", false, "bytes"),
    ("bytes_recv", true, "bytes"),
    ("packets_sent", false, "packets"),
    ("packets_recv", true, "packets"),
    ("err_in", true, "errs"),
    ("err_out", false, "errs"),
    ("drop_in", true, "drop"),
    ("drop_out", false, "drop"),
];

/// Where each field's number is on an interface line (`None`: this kernel
/// does not print it) and how many a line has, from the header; and the
/// text after the two header lines.
fn columns<'a>(path: &Path, text: &'a str) -> Result<(Columns, &'a str), CollectError> {
    let (recv, sent, rest) = header(path, text)?;
    let n_recv = recv.split_whitespace().count();
    let mut at = [None; 8];
    for (slot, (_, rx, name)) in at.iter_mut().zip(FIELDS) {
        *slot = if rx {
            recv.split_whitespace().position(|c| c == name)
        } else {
            sent.split_whitespace()
                .position(|c| c == name)
                .map(|i| n_recv + i)
        };
    }
    let count = n_recv + sent.split_whitespace().count();
    Ok((Columns { at, count }, rest))
}

/// The header's receive and transmit column names (each side's text), and
/// the text after it.
type Header<'a> = (&'a str, &'a str, &'a str);

fn header<'a>(path: &Path, text: &'a str) -> Result<Header<'a>, CollectError> {
    let bad = || {
        CollectError::parse(
            path,
            "line 2: not the header of /proc/net/dev (truncated file?)",
        )
    };
    let mut lines = text.splitn(3, '\n');
    let (_, names, rest) = (
        lines.next(),
        lines.next().ok_or_else(bad)?,
        lines.next().unwrap_or(""),
    );
    let mut sides = names.split('|').skip(1);
    let (recv, sent) = (sides.next().ok_or_else(bad)?, sides.next().ok_or_else(bad)?);
    Ok((recv, sent, rest))
}

/// An interface's name and its fields (in `FIELDS`' order; `None`: not
/// printed by this kernel).
type Interface<'a> = (&'a str, [Option<u64>; 8]);

/// Where the fields are on an interface line, and how many numbers it has.
struct Columns {
    at: [Option<usize>; 8],
    count: usize,
}

/// One interface line: its name and fields, `None` for loopback or a blank
/// line; an error naming the line number when it is not one.
fn interface<'a>(
    path: &Path,
    number: usize,
    line: &'a str,
    cols: &Columns,
) -> Result<Option<Interface<'a>>, CollectError> {
    let Some((name, values)) = counters(path, number, line, cols.count)? else {
        return Ok(None);
    };
    let mut out = [None; 8];
    for (o, c) in out.iter_mut().zip(cols.at) {
        *o = c.map(|i| values[i]);
    }
    Ok(Some((name, out)))
}

/// One interface line's name and its `count` counters, `None` for
/// loopback or a blank line.
fn counters<'a>(
    path: &Path,
    number: usize,
    line: &'a str,
    count: usize,
) -> Result<Option<(&'a str, [u64; 32])>, CollectError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| CollectError::parse(path, format!("line {number}: {why}"));
    let (name, numbers) = line
        .split_once(':')
        .ok_or_else(|| bad("no interface name"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("no interface name"));
    }
    if name == "lo" {
        return Ok(None);
    }
    let mut values = [0u64; 32];
    let mut n = 0;
    for w in numbers.split_whitespace() {
        let v = w
            .parse()
            .map_err(|_| bad(&format!("{w:?} is not a counter")))?;
        *values.get_mut(n).ok_or_else(|| bad("too many columns"))? = v;
        n += 1;
    }
    if n != count {
        return Err(bad(&format!("{n} counters where the header names {count}")));
    }
    Ok(Some((name, values)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Counter;

    #[test]
    fn node_exporter_every_column_per_device() {
        let pts = run(&mut NetNode::default(), "basic").unwrap();
        let get = |name: &str, dev: &str| series(&pts, name, &[("device", dev)]);
        assert_eq!(
            get("node_network_receive_bytes_total", "eth0"),
            Some(Counter(123_456_789))
        );
        assert!(get("node_network_transmit_colls_total", "eth0").is_some());
        assert!(get("node_network_receive_bytes_total", "lo").is_none());
        assert_eq!(series_count(&pts) % 16, 0, "16 columns per device");
        assert_eq!(pts.len() % 2, 0, "a point per side and device");
    }

    #[test]
    fn interfaces_sorted_without_lo() {
        let pts = run(&mut Net::default(), "basic").unwrap();
        let names: Vec<_> = pts
            .iter()
            .map(|p| p.tag_value("interface").unwrap())
            .collect();
        assert_eq!(names, ["docker0", "eth0"]);
        assert_eq!(pts[1].field("bytes_recv"), Some(Counter(123456789)));
        assert_eq!(pts[1].field("bytes_sent"), Some(Counter(987654321)));
        assert_eq!(pts[1].field("drop_in"), Some(Counter(4)));
    }

    const HEADER: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    fn net_dev(text: &str) -> (Vec<Point>, Option<CollectError>) {
        let dir = tempdir();
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        std::fs::write(dir.join("proc/net/dev"), text).unwrap();
        let mut files = Files::new(crate::host::HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: dir.clone(),
        });
        let mut out = Vec::new();
        let e = Net::default().collect(&mut files, 1, &mut out).err();
        std::fs::remove_dir_all(&dir).ok();
        (out, e)
    }

    #[test]
    fn a_wide_counter_without_a_space_after_the_colon_parses() {
        let (pts, e) = net_dev(&format!(
            "{HEADER}  eth0:12345678901 100 0 0 0 0 0 0 5 6 0 0 0 0 0 0\n"
        ));
        assert!(e.is_none(), "{e:?}");
        assert_eq!(pts[0].field("bytes_recv"), Some(Counter(12345678901)));
        assert_eq!(pts[0].field("packets_sent"), Some(Counter(6)));
    }

    #[test]
    fn a_bad_line_loses_only_its_interface_and_is_named() {
        let (pts, e) = net_dev(&format!(
            "{HEADER}  eth0: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n  eth1: 1 2 x\n  eth2: 9 9 9 9 0 0 0 0 9 9 9 9 0 0 0 0\n"
        ));
        let names: Vec<_> = pts
            .iter()
            .map(|p| p.tag_value("interface").unwrap())
            .collect();
        assert_eq!(names, ["eth0", "eth2"]);
        let e = e.unwrap().to_string();
        assert!(e.contains("net/dev: line 4: \"x\" is not a counter"), "{e}");
    }

    #[test]
    fn an_old_layout_without_byte_counters_keeps_the_fields_it_has() {
        // Linux 2.0: no bytes, no compressed or multicast columns.
        let text = "Inter-|   Receive                  |  Transmit\n face |packets errs drop fifo frame|packets errs drop fifo colls carrier\n  eth0:   100    1    2    0     0      90    3    4    0     0       0\n";
        let (pts, e) = net_dev(text);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(pts[0].field("bytes_recv"), None);
        assert_eq!(pts[0].field("packets_recv"), Some(Counter(100)));
        assert_eq!(pts[0].field("drop_out"), Some(Counter(4)));
        assert_eq!(pts[0].fields.len(), 6);
    }

    #[test]
    fn hostile_net_dev() {
        assert!(err_text(run(&mut Net::default(), "empty")).contains("no header"));
        let e = err_text(run(&mut Net::default(), "truncated"));
        assert!(e.contains("net/dev"), "{e}");
    }

    #[test]
    fn rates_when_asked() {
        let mut n = Net::new(true);
        let mut files = Files::new(fixture("basic"));
        let mut out = Vec::new();
        n.collect(&mut files, 1_000_000_000, &mut out).unwrap();
        assert!(
            out[0].field("bytes_recv_per_sec").is_none(),
            "first cycle primes"
        );
        out.clear();
        files.new_cycle();
        n.collect(&mut files, 3_000_000_000, &mut out).unwrap();
        assert_eq!(
            out[0].field("bytes_recv_per_sec"),
            Some(crate::point::Value::Gauge(0.0))
        );
        assert_eq!(out[0].fields.len(), 16);
    }
}
