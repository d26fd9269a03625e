//! `net`: cumulative per-interface counters from /proc/net/dev (tag
//! `interface`; fields as Telegraf's net: bytes_sent, bytes_recv,
//! packets_sent, packets_recv, err_in, err_out, drop_in, drop_out). The
//! loopback interface is left out, as Telegraf does. Parsed with
//! procfs-core's `InterfaceDeviceStatus`; interfaces are sorted by name.
//! With `PROCSHIP_RATES=true` each counter also gets a `<name>_per_sec`
//! gauge (see `rates.rs`).

use std::io::Cursor;

use procfs_core::FromBufRead;
use procfs_core::net::InterfaceDeviceStatus;

use super::rates::Rates;
use super::{CollectError, Collector, Entry, Files};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("net", |ctx| Box::new(Net::new(ctx.rates)));

#[derive(Default)]
pub struct Net {
    rates: Rates,
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
        let devs = InterfaceDeviceStatus::from_buf_read(Cursor::new(text))
            .map_err(|e| super::procfs_error(&path, "interface counters", &e))?;
        let mut devs: Vec<_> = devs.0.into_values().filter(|d| d.name != "lo").collect();
        devs.sort_by(|a, b| a.name.cmp(&b.name));
        self.rates.start_cycle();
        for d in devs {
            let p = Point::new("net", now)
                .tag("interface", d.name.clone())
                .counter("bytes_sent", d.sent_bytes)
                .counter("bytes_recv", d.recv_bytes)
                .counter("packets_sent", d.sent_packets)
                .counter("packets_recv", d.recv_packets)
                .counter("err_in", d.recv_errs)
                .counter("err_out", d.sent_errs)
                .counter("drop_in", d.recv_drop)
                .counter("drop_out", d.sent_drop);
            out.push(self.rates.apply(&d.name, p, RATE_NAMES));
        }
        self.rates.end_cycle();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Counter;

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
