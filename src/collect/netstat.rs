//! `netstat`: TCP connections by state and the TCP/UDP counters operators
//! alert on, one `netstat` point per cycle:
//! - from /proc/net/tcp and /proc/net/tcp6 (the `st` column, streamed
//!   line by line so a host with 100,000 sockets costs time, not memory):
//!   tcp_established, tcp_syn_sent, tcp_syn_recv, tcp_fin_wait1,
//!   tcp_fin_wait2, tcp_time_wait, tcp_close, tcp_close_wait, tcp_last_ack,
//!   tcp_listen, tcp_closing (Telegraf's netstat names, gauges);
//! - from /proc/net/sockstat: udp_socket (UDP sockets in use), tcp_orphan,
//!   tcp_alloc (gauges);
//! - from /proc/net/snmp and /proc/net/netstat (cumulative counters):
//!   tcp_active_opens, tcp_passive_opens, tcp_attempt_fails,
//!   tcp_estab_resets, tcp_in_segs, tcp_out_segs, tcp_retrans_segs,
//!   tcp_in_errs, tcp_out_rsts, udp_in_datagrams, udp_no_ports,
//!   udp_in_errors, udp_out_datagrams, udp_rcvbuf_errors,
//!   udp_sndbuf_errors, tcp_listen_overflows, tcp_listen_drops,
//!   tcp_timeouts, tcp_syn_retrans.
//!
//! A counter an older kernel lacks is left out; a header and value line
//! that do not match, or a value that is not a number, is an error naming
//! the file. Without IPv6, /proc/net/tcp6 is absent and not an error.
//! Cost: four small reads plus one line per TCP socket.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("netstat", |ctx| match ctx.names {
    Names::Telegraf => Box::new(Netstat::default()),
    Names::NodeExporter => Box::new(NetstatNode::new(ctx.facts.page_size)),
})
.off_by_default()
.node_help(NODE_HELP);

/// node_exporter's netstat collector (its default fields, `NODE_FIELDS`, of
/// /proc/net/netstat, snmp and snmp6, as `node_netstat_<Section>_<Name>`,
/// gauges where it leaves them untyped) and its sockstat collector (every
/// key of /proc/net/sockstat and sockstat6 as `node_sockstat_<PROTO>_<key>`,
/// `mem` also in bytes as `_mem_bytes`, and `node_sockstat_sockets_used`).
const NODE_HELP: &[Help] = &[
    (
        "node_netstat_",
        "Statistic from /proc/net/netstat, snmp or snmp6.",
    ),
    (
        "node_sockstat_",
        "Socket statistic from /proc/net/sockstat or sockstat6.",
    ),
];

/// node_exporter's `--collector.netstat.fields` default.
const NODE_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// /proc/net/snmp6's protocols, the longer prefix first.
const SNMP6: [&str; 4] = ["UdpLite6", "Icmp6", "Udp6", "Ip6"];

/// `netstat` with node_exporter's names.
pub struct NetstatNode {
    fields: Option<regex_lite::Regex>,
    page_size: u64,
}

impl NetstatNode {
    fn new(page_size: u64) -> Self {
        NetstatNode {
            fields: regex_lite::Regex::new(NODE_FIELDS).ok(),
            page_size,
        }
    }

    fn push(&self, section: &str, name: &str, v: i64, now: Timestamp, out: &mut Vec<Point>) {
        let key = format!("{section}_{name}");
        if self.fields.as_ref().is_some_and(|re| re.is_match(&key)) {
            out.push(Point::new(format!("node_netstat_{key}"), now).int(WHOLE, v));
        }
    }

    /// node_sockstat_* of a sockstat text (`PROTO: key value key value …`,
    /// `sockets: used N`).
    fn sockstat(
        &self,
        path: &Path,
        text: &str,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (proto, rest) = line.split_once(':').ok_or_else(|| {
                CollectError::parse(path, format!("{line:?}: expected PROTO: key value …"))
            })?;
            let words: Vec<&str> = rest.split_ascii_whitespace().collect();
            for kv in words.chunks(2) {
                let [key, value] = kv else {
                    return Err(CollectError::parse(
                        path,
                        format!("{proto}: a key without a value"),
                    ));
                };
                let v: u64 = value.parse().map_err(|_| {
                    CollectError::parse(path, format!("{proto} {key}: {value:?} is not a count"))
                })?;
                let name = if proto == "sockets" {
                    format!("node_sockstat_sockets_{key}")
                } else {
                    format!("node_sockstat_{proto}_{key}")
                };
                if *key == "mem" {
                    out.push(
                        Point::new(format!("{name}_bytes"), now)
                            .uint(WHOLE, v.saturating_mul(self.page_size)),
                    );
                }
                out.push(Point::new(name, now).uint(WHOLE, v));
            }
        }
        Ok(())
    }
}

impl Collector for NetstatNode {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        // Each file loses only itself; snmp6 and sockstat6 are absent without IPv6.
        let mut partial = Partial::default();
        for rel in ["net/netstat", "net/snmp"] {
            let path = files.proc_path(rel);
            let pairs = files.proc(rel).and_then(|t| pairs(&path, t));
            for (section, name, value) in partial.keep(pairs).into_iter().flatten() {
                match value.parse::<i64>() {
                    Ok(v) => self.push(section, name, v, now, out),
                    Err(_) => partial.note(|| {
                        CollectError::parse(
                            &path,
                            format!("{section} {name}: {value:?} is not a number"),
                        )
                    }),
                }
            }
        }
        let path = files.proc_path("net/snmp6");
        match files.proc("net/snmp6") {
            Err(e) if e.is_not_found() => {}
            r => {
                for line in partial.keep(r).unwrap_or("").lines() {
                    let mut w = line.split_ascii_whitespace();
                    let (Some(key), Some(value)) = (w.next(), w.next()) else {
                        continue;
                    };
                    let Some(proto) = SNMP6.iter().find(|p| key.starts_with(*p)) else {
                        continue;
                    };
                    match value.parse::<i64>() {
                        Ok(v) => self.push(proto, &key[proto.len()..], v, now, out),
                        Err(_) => partial.note(|| {
                            CollectError::parse(&path, format!("{key}: {value:?} is not a number"))
                        }),
                    }
                }
            }
        }
        for rel in ["net/sockstat", "net/sockstat6"] {
            let path = files.proc_path(rel);
            match files.proc(rel) {
                Err(e) if e.is_not_found() && rel.ends_with('6') => {}
                r => {
                    if let Some(text) = partial.keep(r) {
                        let r = self.sockstat(&path, text, now, out);
                        partial.keep(r);
                    }
                }
            }
        }
        partial.result()
    }
}

/// The kernel's TCP states (include/net/tcp_states.h), 1-based, by field name.
const STATES: [&str; 11] = [
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
];

/// (file section, kernel name, field name) of the counters kept.
const COUNTERS: &[(&str, &str, &str)] = &[
    ("Tcp", "ActiveOpens", "tcp_active_opens"),
    ("Tcp", "PassiveOpens", "tcp_passive_opens"),
    ("Tcp", "AttemptFails", "tcp_attempt_fails"),
    ("Tcp", "EstabResets", "tcp_estab_resets"),
    ("Tcp", "InSegs", "tcp_in_segs"),
    ("Tcp", "OutSegs", "tcp_out_segs"),
    ("Tcp", "RetransSegs", "tcp_retrans_segs"),
    ("Tcp", "InErrs", "tcp_in_errs"),
    ("Tcp", "OutRsts", "tcp_out_rsts"),
    ("Udp", "InDatagrams", "udp_in_datagrams"),
    ("Udp", "NoPorts", "udp_no_ports"),
    ("Udp", "InErrors", "udp_in_errors"),
    ("Udp", "OutDatagrams", "udp_out_datagrams"),
    ("Udp", "RcvbufErrors", "udp_rcvbuf_errors"),
    ("Udp", "SndbufErrors", "udp_sndbuf_errors"),
    ("TcpExt", "ListenOverflows", "tcp_listen_overflows"),
    ("TcpExt", "ListenDrops", "tcp_listen_drops"),
    ("TcpExt", "TCPTimeouts", "tcp_timeouts"),
    ("TcpExt", "TCPSynRetrans", "tcp_syn_retrans"),
];

pub struct Netstat {
    line: Vec<u8>,
}

impl Default for Netstat {
    fn default() -> Self {
        Netstat {
            line: Vec::with_capacity(256),
        }
    }
}

/// The counters of a /proc/net/snmp or /proc/net/netstat text that
/// `COUNTERS` names.
pub fn parse_pairs(
    path: &Path,
    text: &str,
    into: &mut Vec<(&'static str, u64)>,
) -> Result<(), CollectError> {
    for (section, name, value) in pairs(path, text)? {
        if let Some((_, _, field)) = COUNTERS
            .iter()
            .find(|(s, n, _)| *s == section && *n == name)
        {
            let v: u64 = value.parse().map_err(|_| {
                CollectError::parse(path, format!("{section} {name}: {value:?} is not a count"))
            })?;
            into.push((field, v));
        }
    }
    Ok(())
}

/// Every (section, name, value) of a /proc/net/snmp or /proc/net/netstat
/// text: pairs of `Section: Name Name …` / `Section: 1 2 …` lines.
pub fn pairs<'a>(
    path: &Path,
    text: &'a str,
) -> Result<Vec<(&'a str, &'a str, &'a str)>, CollectError> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let Some((section, names)) = names.split_once(':') else {
            if names.trim().is_empty() {
                continue;
            }
            return Err(CollectError::parse(
                path,
                format!("{names:?}: expected Section: names"),
            ));
        };
        let values = lines
            .next()
            .and_then(|v| v.strip_prefix(section)?.strip_prefix(':'))
            .ok_or_else(|| {
                CollectError::parse(path, format!("{section}: the line of values is missing"))
            })?;
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let values: Vec<&str> = values.split_ascii_whitespace().collect();
        if names.len() != values.len() {
            return Err(CollectError::parse(
                path,
                format!(
                    "{section}: {} names but {} values",
                    names.len(),
                    values.len()
                ),
            ));
        }
        out.extend(names.iter().zip(values).map(|(n, v)| (section, *n, v)));
    }
    Ok(out)
}

/// (udp sockets in use, tcp orphans, tcp allocated) from /proc/net/sockstat.
pub fn parse_sockstat(path: &Path, text: &str) -> Result<[u64; 3], CollectError> {
    let get = |proto: &str, key: &str| -> Result<u64, CollectError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(proto)?.strip_prefix(':'))
            .ok_or_else(|| CollectError::parse(path, format!("no {proto} line")))?;
        let mut w = line.split_ascii_whitespace();
        while let Some(k) = w.next() {
            if k == key {
                let v = w.next().unwrap_or("");
                return v.parse().map_err(|_| {
                    CollectError::parse(path, format!("{proto} {key}: {v:?} is not a count"))
                });
            }
        }
        Err(CollectError::parse(path, format!("{proto} {key} missing")))
    };
    Ok([
        get("UDP", "inuse")?,
        get("TCP", "orphan")?,
        get("TCP", "alloc")?,
    ])
}

/// The longest line of /proc/net/tcp{,6} accepted.
const MAX_LINE: usize = 4096;

/// Adds the sockets of a /proc/net/tcp{,6} stream to `counts` by state.
pub fn count_states(
    path: &Path,
    r: impl BufRead,
    line: &mut Vec<u8>,
    counts: &mut [u64; STATES.len()],
) -> Result<(), CollectError> {
    let mut r = r;
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        // Bounded: a socket line is ~150 bytes; an endless one is hostile.
        let n = (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', line)
            .map_err(|e| CollectError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        if n == MAX_LINE && line.last() != Some(&b'\n') {
            return Err(CollectError::parse(
                path,
                format!("line {number} is longer than {MAX_LINE} bytes"),
            ));
        }
        if number == 1 {
            continue; // the header
        }
        let st = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .nth(3)
            .ok_or_else(|| CollectError::parse(path, format!("line {number}: no state column")))?;
        let state = std::str::from_utf8(st)
            .ok()
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .filter(|s| (1..=STATES.len() as u8).contains(s))
            .ok_or_else(|| {
                CollectError::parse(
                    path,
                    format!(
                        "line {number}: {:?} is not a TCP state",
                        String::from_utf8_lossy(st)
                    ),
                )
            })?;
        counts[usize::from(state) - 1] += 1;
    }
}

impl Collector for Netstat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let mut counts = [0u64; STATES.len()];
        // Either may be missing (a kernel without IPv4 or IPv6): its
        // sockets are then not counted, the rest goes out.
        for rel in ["net/tcp", "net/tcp6"] {
            let path = files.proc_path(rel);
            let file = match crate::host::open_file(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CollectError::io(&path, e)),
            };
            count_states(
                &path,
                BufReader::with_capacity(16 * 1024, file),
                &mut self.line,
                &mut counts,
            )?;
        }
        let path = files.proc_path("net/sockstat");
        let [udp, orphan, alloc] = parse_sockstat(&path, files.proc("net/sockstat")?)?;
        let mut counters = Vec::with_capacity(COUNTERS.len());
        let path = files.proc_path("net/snmp");
        parse_pairs(&path, files.proc("net/snmp")?, &mut counters)?;
        let path = files.proc_path("net/netstat");
        parse_pairs(&path, files.proc("net/netstat")?, &mut counters)?;

        let mut p = Point::new("netstat", now);
        for (name, n) in STATES.iter().zip(counts) {
            p = p.uint(*name, n);
        }
        p = p
            .uint("udp_socket", udp)
            .uint("tcp_orphan", orphan)
            .uint("tcp_alloc", alloc);
        for (field, v) in counters {
            p = p.counter(field, v);
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
    fn node_exporter_default_fields_and_sockstat() {
        let pts = run(&mut NetstatNode::new(4096), "basic").unwrap();
        let get = |n: &str| {
            pts.iter()
                .find(|p| p.measurement == n)
                .and_then(|p| p.field(WHOLE))
        };
        assert_eq!(get("node_netstat_Tcp_InSegs"), Some(Int(98_765)));
        assert!(
            get("node_netstat_Tcp_AttemptFails").is_none(),
            "not a default field"
        );
        assert_eq!(get("node_sockstat_TCP_alloc"), Some(Int(9)));
        let mem = get("node_sockstat_TCP_mem").zip(get("node_sockstat_TCP_mem_bytes"));
        assert!(
            matches!(mem, Some((Int(p), Int(b))) if b == p * 4096),
            "{mem:?}"
        );
    }

    #[test]
    fn states_sockstat_and_counters() {
        let p = &run(&mut Netstat::default(), "basic").unwrap()[0];
        assert_eq!(p.field("tcp_listen"), Some(Int(2)), "one v4, one v6");
        assert_eq!(p.field("tcp_established"), Some(Int(2)));
        assert_eq!(p.field("tcp_time_wait"), Some(Int(1)));
        assert_eq!(p.field("tcp_closing"), Some(Int(0)));
        assert_eq!(p.field("udp_socket"), Some(Int(3)));
        assert_eq!(p.field("tcp_alloc"), Some(Int(9)));
        assert_eq!(p.field("tcp_retrans_segs"), Some(Counter(77)));
        assert_eq!(p.field("udp_no_ports"), Some(Counter(4)));
        assert_eq!(p.field("tcp_listen_overflows"), Some(Counter(11)));
        assert_eq!(
            p.field("tcp_syn_retrans"),
            None,
            "absent on this kernel: left out"
        );
    }

    #[test]
    fn hostile_files() {
        let p = Path::new("/proc/net/snmp");
        let mut v = Vec::new();
        for (text, want) in [
            ("Tcp: A B\nTcp: 1\n", "2 names but 1 values"),
            ("Tcp: RetransSegs\n", "line of values is missing"),
            ("Tcp: RetransSegs\nUdp: 5\n", "line of values is missing"),
            ("Tcp: RetransSegs\nTcp: -5\n", "not a count"),
            ("garbage\n", "expected Section"),
        ] {
            let e = parse_pairs(p, text, &mut v).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("/proc/net/snmp"),
                "{text:?}: {e}"
            );
        }
        let s = Path::new("/proc/net/sockstat");
        assert!(
            parse_sockstat(s, "")
                .unwrap_err()
                .to_string()
                .contains("no UDP line")
        );
        assert!(
            parse_sockstat(s, "UDP: inuse x\n")
                .unwrap_err()
                .to_string()
                .contains("not a count")
        );
        let t = Path::new("/proc/net/tcp");
        let mut counts = [0; STATES.len()];
        let mut line = Vec::new();
        for (text, want) in [
            (&b"hdr\n   0: 0100007F:1 0:0 0C 0\n"[..], "not a TCP state"),
            (b"hdr\n   0: 0100007F:1\n", "line 2: no state column"),
            (b"hdr\n   0: a b \xff\xfe 0\n", "not a TCP state"),
        ] {
            let e = count_states(t, text, &mut line, &mut counts)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(
            count_states(t, &b""[..], &mut line, &mut counts).is_ok(),
            "empty: no sockets"
        );
        // An endless line is refused at the bound, naming it, not read whole.
        let endless = std::io::repeat(b'x');
        let e = count_states(t, std::io::BufReader::new(endless), &mut line, &mut counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1 is longer than 4096 bytes"), "{e}");
        assert!(line.capacity() < 64 * 1024);
    }
}
