//! `netclass`: each network interface's link, from its attributes under
//! `<sys>/class/net/<interface>/`: `netclass`: interface → up (1 when
//! `operstate` is `up`), carrier (1 with a link), speed (Mb/s, as the
//! driver reports it), mtu (bytes), full_duplex (1 full, 0 half),
//! carrier_changes (cumulative: a flapping link). The loopback interface
//! is left out, as `net` does. Telegraf's net has no such fields; names in
//! its style.
//!
//! A field the interface cannot tell is left out, not the interface: the
//! kernel answers EINVAL for carrier, speed and duplex of an interface
//! that is down, and virtual ones print a speed of -1 and a duplex of
//! `unknown`. A value that is not what the kernel prints is an error
//! naming the file; the other fields and interfaces go out.
//!
//! The interfaces are found by listing the directory again every
//! `REFRESH` (at once when one vanished); each attribute's file stays open
//! and is re-read with `pread`. The kernel announces every change of a
//! link (added, removed, up or down, carrier, MTU: rtnetlink's link group)
//! to a netlink socket in the agent's network namespace (`Watch`); where
//! the listed interfaces are that namespace's (each one's `ifindex` is the
//! index the namespace gives its name: the host's /sys and its network, or
//! a container's `/host/sys` with `--network=host`), a cycle without a
//! notice repeats the last read's values instead of reading them again,
//! the interfaces are listed again at a notice (a new one is reported at
//! the next cycle), and `REFRESH` still lists and reads them all (a driver
//! may change a speed without a notice). A read with an error is made
//! again every cycle, so the error is not quiet. Elsewhere (a container
//! that sees the host's /sys from a network of its own, a fixture tree, no
//! netlink) the attributes are read every cycle.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::names::{Help, Names, field_of};
use super::{CollectError, Collector, Entry, Files, Partial};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("netclass", |ctx| match ctx.names {
    Names::Telegraf => Box::new(NetClass::default()),
    Names::NodeExporter => Box::new(NetClassNode::default()),
})
.node_help(NODE_HELP);

/// node_exporter's netclass collector: (attribute file, series, how its
/// text is read), for every interface, `lo` included as node_exporter has
/// it; an attribute the interface cannot tell is left out.
const NODE_ATTRS: [(&str, &str, NodeKind); 17] = [
    (
        "addr_assign_type",
        "node_network_address_assign_type",
        NodeKind::Dec,
    ),
    ("carrier", "node_network_carrier", NodeKind::Dec),
    (
        "carrier_changes",
        "node_network_carrier_changes_total",
        NodeKind::Counter,
    ),
    (
        "carrier_up_count",
        "node_network_carrier_up_changes_total",
        NodeKind::Counter,
    ),
    (
        "carrier_down_count",
        "node_network_carrier_down_changes_total",
        NodeKind::Counter,
    ),
    ("dev_id", "node_network_device_id", NodeKind::Hex),
    ("dormant", "node_network_dormant", NodeKind::Dec),
    ("flags", "node_network_flags", NodeKind::Hex),
    ("ifindex", "node_network_iface_id", NodeKind::Dec),
    ("iflink", "node_network_iface_link", NodeKind::Dec),
    ("link_mode", "node_network_iface_link_mode", NodeKind::Dec),
    ("mtu", "node_network_mtu_bytes", NodeKind::Dec),
    (
        "name_assign_type",
        "node_network_name_assign_type",
        NodeKind::Dec,
    ),
    ("netdev_group", "node_network_net_dev_group", NodeKind::Dec),
    ("speed", "node_network_speed_bytes", NodeKind::MbitToBytes),
    (
        "tx_queue_len",
        "node_network_transmit_queue_length",
        NodeKind::Dec,
    ),
    ("type", "node_network_protocol_type", NodeKind::Dec),
];

/// node_network_info's labels: (attribute file, label).
const NODE_INFO: [(&str, &str); 5] = [
    ("address", "address"),
    ("broadcast", "broadcast"),
    ("duplex", "duplex"),
    ("ifalias", "ifalias"),
    ("operstate", "operstate"),
];

#[derive(Debug, Clone, Copy)]
enum NodeKind {
    Dec,
    Hex,
    Counter,
    /// Mb/s as bytes per second (-1, unknown, stays negative, as there).
    MbitToBytes,
}

const NODE_HELP: &[Help] = &[
    (
        "node_network_up",
        "Value is 1 if operstate is 'up', 0 otherwise.",
    ),
    (
        "node_network_info",
        "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
    ),
    (
        "node_network_",
        "Network device property from /sys/class/net/<iface>.",
    ),
];

/// node_exporter's netclass series but `node_network_info` are
/// `<NODE_MEASUREMENT>_<field>`: per interface one point with a field each.
const NODE_MEASUREMENT: &str = "node_network";

/// `netclass` with node_exporter's names.
#[derive(Default)]
pub struct NetClassNode {
    links: Vec<NodeLink>,
    cache: Cache,
}

/// One interface with its `NODE_INFO` and `NODE_ATTRS` files kept open
/// (`None`: not there), re-read with `pread` each cycle.
struct NodeLink {
    name: String,
    dir: PathBuf,
    info: Vec<Option<File>>,
    attrs: Vec<Option<File>>,
}

/// The read buffer of one attribute in node_exporter's mode: `ifalias`
/// may be 256 bytes long.
const NODE_ATTR_MAX: usize = 512;

/// An open attribute's trimmed text in `buf`; `Ok(None)` when the kernel
/// cannot tell, `Err(Unread::Gone)` when the interface went away.
fn node_attr<'b>(
    f: &File,
    path: impl Fn() -> PathBuf,
    buf: &'b mut [u8; NODE_ATTR_MAX],
    partial: &mut Partial,
) -> Result<Option<&'b str>, Unread> {
    let bytes = match read_attr(f, buf) {
        Ok(b) => b,
        Err(Unread::Unknown) => return Ok(None),
        Err(gone) => return Err(gone),
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.len() < NODE_ATTR_MAX => Ok(Some(text.trim())),
        _ => {
            partial.keep::<()>(Err(CollectError::parse(path(), "not a short line of text")));
            Ok(None)
        }
    }
}

fn node_value(
    path: impl Fn() -> PathBuf,
    kind: NodeKind,
    text: &str,
) -> Result<crate::point::Value, CollectError> {
    use crate::point::Value;
    let bad = || CollectError::parse(path(), format!("{text:?} is not what the kernel prints"));
    Ok(match kind {
        NodeKind::Dec => Value::Int(text.parse().map_err(|_| bad())?),
        NodeKind::Hex => {
            let digits = text.strip_prefix("0x").ok_or_else(bad)?;
            Value::Int(i64::from_str_radix(digits, 16).map_err(|_| bad())?)
        }
        NodeKind::Counter => Value::Counter(text.parse().map_err(|_| bad())?),
        NodeKind::MbitToBytes => {
            let mbit: i64 = text.parse().map_err(|_| bad())?;
            Value::Int(mbit.saturating_mul(125_000))
        }
    })
}

/// Opens `dir/file` for re-reading: `None` when it is not there; another
/// failure (not a regular file) is kept in `partial`.
fn open_attr(dir: &Path, file: &str, partial: &mut Partial) -> Option<File> {
    let path = dir.join(file);
    match crate::host::open_file(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => partial.keep(Err(CollectError::io(path, e))),
    }
}

impl Iface for NodeLink {
    /// node_exporter's netclass lists `lo` too.
    const WITH_LO: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens `NODE_INFO`'s and `NODE_ATTRS`' files.
    fn open(name: String, dir: PathBuf, partial: &mut Partial) -> NodeLink {
        let info = NODE_INFO
            .iter()
            .map(|(f, _)| open_attr(&dir, f, partial))
            .collect();
        let attrs = NODE_ATTRS
            .iter()
            .map(|(f, _, _)| open_attr(&dir, f, partial))
            .collect();
        NodeLink {
            name,
            dir,
            info,
            attrs,
        }
    }

    fn points(
        &self,
        now: Timestamp,
        out: &mut Vec<Point>,
        partial: &mut Partial,
    ) -> Result<(), Unread> {
        let name = self.name.as_str();
        let mut buf = [0u8; NODE_ATTR_MAX];
        let mut info = Point::new("node_network_info", now)
            .tag("device", name)
            .int(WHOLE, 1);
        let mut p = Point::new(NODE_MEASUREMENT, now).tag("device", name);
        for ((file, label), f) in NODE_INFO.iter().zip(&self.info) {
            let Some(f) = f else { continue };
            let Some(v) = node_attr(f, || self.dir.join(file), &mut buf, partial)? else {
                continue;
            };
            if *file == "operstate" {
                p = p.int(
                    field_of(NODE_MEASUREMENT, "node_network_up"),
                    i64::from(v == "up"),
                );
            }
            info = info.tag(*label, v);
        }
        out.push(info);
        for ((file, series, kind), f) in NODE_ATTRS.iter().zip(&self.attrs) {
            let Some(f) = f else { continue };
            let path = || self.dir.join(file);
            let Some(text) = node_attr(f, path, &mut buf, partial)? else {
                continue;
            };
            if let Some(v) = partial.keep(node_value(path, *kind, text)) {
                p.fields
                    .push((field_of(NODE_MEASUREMENT, series).into(), v));
            }
        }
        if !p.fields.is_empty() {
            out.push(p);
        }
        Ok(())
    }
}

impl Collector for NetClassNode {
    fn name(&self) -> &'static str {
        "netclass"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        self.cache.cycle(&mut self.links, files, now, out)
    }
}

/// Link change notices: a netlink socket subscribed to rtnetlink's link
/// group, read without waiting. Any message, or a lost one (the queue
/// overflowed: ENOBUFS), is a change; what changed is not parsed.
#[derive(Default)]
struct Watch {
    sock: Option<OwnedFd>,
    /// Set once the socket was tried.
    tried: bool,
    /// Whether the listed interfaces are this namespace's (`same_namespace`,
    /// checked at each listing).
    trusted: bool,
}

impl Watch {
    /// Whether the kernel announced a change since the last call; true at
    /// the first call, which subscribes (before the first read, so that no
    /// change after it is missed), and false without a socket.
    fn noticed(&mut self) -> bool {
        if !self.tried {
            self.tried = true;
            self.sock = subscribe()
                .inspect_err(|e| {
                    tracing::debug!("netclass: no link notices ({e}): reading every cycle")
                })
                .ok();
            return true;
        }
        self.sock.as_ref().is_some_and(drain)
    }
}

fn subscribe() -> nix::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
    let fd = nix::sys::socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let groups = u32::try_from(nix::libc::RTMGRP_LINK).unwrap_or(1);
    nix::sys::socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    Ok(fd)
}

/// At most this many messages are taken from the socket in one cycle; more
/// waiting counts as a change too.
const DRAIN_MAX: usize = 256;

/// Empties the socket's queue; true when it held a message or an error.
fn drain(sock: &OwnedFd) -> bool {
    use nix::errno::Errno;
    let mut buf = [0u8; 4096];
    let mut changed = false;
    for _ in 0..DRAIN_MAX {
        match nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EAGAIN) => return changed,
            Ok(_) | Err(_) => changed = true,
        }
    }
    true
}

/// Whether every interface listed (name, directory) is the one this
/// network namespace knows by that name: its `ifindex` attribute is the
/// index the namespace gives the name. Two namespaces' interfaces rarely
/// share all names and indexes; where they do, `REFRESH` bounds the error.
fn same_namespace<'a>(mut links: impl Iterator<Item = (&'a str, &'a Path)>) -> bool {
    links.all(|(name, dir)| {
        let Ok(f) = crate::host::open_file(&dir.join("ifindex")) else {
            return false;
        };
        let mut buf = [0u8; ATTR_MAX];
        let listed = read_attr(&f, &mut buf)
            .ok()
            .and_then(|b| std::str::from_utf8(b).ok()?.trim().parse::<u32>().ok());
        listed.is_some() && nix::net::if_::if_nametoindex(name).ok() == listed
    })
}

/// What a cycle does with the interfaces.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Plan {
    /// List them again, then read them.
    List,
    /// Read their attributes.
    Read,
    /// Repeat the last read's values.
    Replay,
}

/// The plan from the facts: a notice or an old listing lists again; a
/// quiet cycle repeats the values where notices are trusted and the last
/// read was whole; any other cycle reads.
fn plan(noticed: bool, list_due: bool, trusted: bool, kept: bool) -> Plan {
    if noticed || list_due {
        Plan::List
    } else if trusted && kept {
        Plan::Replay
    } else {
        Plan::Read
    }
}

/// An interface as a netclass collector keeps it.
trait Iface: Sized {
    fn name(&self) -> &str;
    fn dir(&self) -> &Path;
    /// Whether `lo` is listed.
    const WITH_LO: bool;
    /// The interface `name` in `dir`, its attributes opened; one that is
    /// there but cannot be opened (not a regular file) is the error.
    fn open(name: String, dir: PathBuf, partial: &mut Partial) -> Self;
    /// The interfaces under `class/net`, each opened.
    fn open_all(files: &Files, partial: &mut Partial) -> Vec<Self> {
        let base = files.sys_path("class/net");
        interfaces(&base, Self::WITH_LO)
            .into_iter()
            .map(|name| {
                let dir = base.join(&name);
                Self::open(name, dir, partial)
            })
            .collect()
    }
    /// This interface's points (none without a field); `Err` when it
    /// went away.
    fn points(
        &self,
        now: Timestamp,
        out: &mut Vec<Point>,
        partial: &mut Partial,
    ) -> Result<(), Unread>;
}

/// A collector's listing age, its notices and its last values.
#[derive(Default)]
struct Cache {
    watch: Watch,
    listed: Option<Instant>,
    /// The points of the last read, when it had no error.
    last: Option<Vec<Point>>,
}

impl Cache {
    fn plan(&mut self) -> Plan {
        let noticed = self.watch.noticed();
        let list_due = self.listed.is_none_or(|t| t.elapsed() >= REFRESH);
        plan(noticed, list_due, self.watch.trusted, self.last.is_some())
    }

    /// One cycle of a netclass collector over `links`: the last read's
    /// points again on a quiet cycle; else the links listed and opened
    /// anew when the plan says so, and each one's points pushed (one gone
    /// away: listed again next cycle).
    fn cycle<L: Iface>(
        &mut self,
        links: &mut Vec<L>,
        files: &Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let mut partial = Partial::default();
        let plan = self.plan();
        if plan == Plan::Replay {
            self.replay(now, out);
            return Ok(());
        }
        if plan == Plan::List {
            *links = L::open_all(files, &mut partial);
            self.listed = Some(Instant::now());
            let listed = links.iter().map(|l| (l.name(), l.dir()));
            self.watch.trusted = self.watch.sock.is_some() && same_namespace(listed);
        }
        let start = out.len();
        let mut gone = false;
        for link in links.iter() {
            gone |= link.points(now, out, &mut partial).is_err();
        }
        if gone {
            self.listed = None;
        }
        self.read(&out[start..], !gone && partial.count() == 0);
        partial.result()
    }

    /// After a read that made `points` (`whole`: without an error, and
    /// no interface gone).
    fn read(&mut self, points: &[Point], whole: bool) {
        let mut last = self.last.take().unwrap_or_default();
        last.clear();
        if whole {
            last.extend(points.iter().map(|p| replay(p, p.timestamp)));
            self.last = Some(last);
        }
    }

    /// The last read's points again, at `now`.
    fn replay(&self, now: Timestamp, out: &mut Vec<Point>) {
        if let Some(last) = &self.last {
            out.extend(last.iter().map(|p| replay(p, now)));
        }
    }
}

/// A copy of `p` at `now`, made from the point pool (no allocation in a
/// steady cycle).
fn replay(p: &Point, now: Timestamp) -> Point {
    let mut q = Point::new(p.measurement.clone(), now);
    for (k, v) in &p.tags {
        q = q.tag(k.clone(), v);
    }
    q.fields.extend(p.fields.iter().cloned());
    q
}

/// How long the discovered interface list is trusted.
const REFRESH: Duration = Duration::from_secs(60);

/// The read buffer of one attribute: a text that fills it is not one the
/// kernel prints.
const ATTR_MAX: usize = 64;

/// What an attribute's text becomes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `up` → 1, any other state → 0.
    Up,
    /// `full` → 1, `half` → 0, `unknown` → left out.
    Duplex,
    /// A number; negative means unknown (left out).
    Int,
    Counter,
}

/// Every attribute read: (file, field, kind), in the order of the fields.
const ATTRS: [(&str, &str, Kind); 6] = [
    ("operstate", "up", Kind::Up),
    ("carrier", "carrier", Kind::Int),
    ("speed", "speed", Kind::Int),
    ("mtu", "mtu", Kind::Int),
    ("duplex", "full_duplex", Kind::Duplex),
    ("carrier_changes", "carrier_changes", Kind::Counter),
];

struct Link {
    name: String,
    dir: PathBuf,
    /// One per `ATTRS` row; `None` when the interface has no such file.
    files: Vec<Option<File>>,
}

#[derive(Default)]
pub struct NetClass {
    links: Vec<Link>,
    cache: Cache,
}

/// The interfaces under `base`, sorted; `lo` too when `with_lo`.
fn interfaces(base: &Path, with_lo: bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| with_lo || n != "lo")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// One attribute's field value from its text; `Ok(None)` when the kernel
/// says it does not know.
fn value(
    path: impl Fn() -> PathBuf,
    kind: Kind,
    text: &str,
) -> Result<Option<crate::point::Value>, CollectError> {
    use crate::point::Value;
    let text = text.trim();
    let bad = || CollectError::parse(path(), format!("{text:?} is not what the kernel prints"));
    Ok(match kind {
        Kind::Up => Some(Value::Int(i64::from(text == "up"))),
        Kind::Duplex => match text {
            "full" => Some(Value::Int(1)),
            "half" => Some(Value::Int(0)),
            "unknown" | "" => None,
            _ => return Err(bad()),
        },
        Kind::Int => {
            let v: i64 = text.parse().map_err(|_| bad())?;
            (v >= 0).then_some(Value::Int(v))
        }
        Kind::Counter => Some(Value::Counter(text.parse().map_err(|_| bad())?)),
    })
}

/// Why an attribute gave no value.
enum Unread {
    /// The kernel cannot tell now (EINVAL of a down interface).
    Unknown,
    /// The interface went away.
    Gone,
}

/// An open attribute's text (at most `buf`'s size) in `buf`.
fn read_attr<'b>(f: &File, buf: &'b mut [u8]) -> Result<&'b [u8], Unread> {
    match f.read_at(buf, 0) {
        Ok(n) => Ok(&buf[..n]),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Err(Unread::Unknown),
        Err(_) => Err(Unread::Gone),
    }
}

impl Iface for Link {
    const WITH_LO: bool = false;

    fn name(&self) -> &str {
        &self.name
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens `ATTRS`' files.
    fn open(name: String, dir: PathBuf, partial: &mut Partial) -> Link {
        let files = ATTRS
            .iter()
            .map(|(file, _, _)| open_attr(&dir, file, partial))
            .collect();
        Link { name, dir, files }
    }

    fn points(
        &self,
        now: Timestamp,
        out: &mut Vec<Point>,
        partial: &mut Partial,
    ) -> Result<(), Unread> {
        let mut p = Point::new("netclass", now).tag("interface", self.name.as_str());
        let mut buf = [0u8; ATTR_MAX];
        for ((file, field, kind), f) in ATTRS.iter().zip(&self.files) {
            let Some(f) = f else { continue };
            let bytes = match read_attr(f, &mut buf) {
                Ok(b) => b,
                Err(Unread::Unknown) => continue,
                Err(gone) => return Err(gone),
            };
            let path = || self.dir.join(file);
            let v = match std::str::from_utf8(bytes) {
                Ok(text) if bytes.len() < ATTR_MAX => value(path, *kind, text),
                _ => Err(CollectError::parse(path(), "not a short line of text")),
            };
            if let Some(Some(v)) = partial.keep(v) {
                p.fields.push(((*field).into(), v));
            }
        }
        if !p.fields.is_empty() {
            out.push(p);
        }
        Ok(())
    }
}

impl Collector for NetClass {
    fn name(&self) -> &'static str {
        "netclass"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        self.cache.cycle(&mut self.links, files, now, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Int};

    #[test]
    fn node_exporter_attributes_and_info_with_loopback() {
        let pts = run(&mut NetClassNode::default(), "basic").unwrap();
        let get = |n: &str, dev: &str| series(&pts, n, &[("device", dev)]);
        use crate::point::Value::Int;
        assert_eq!(get("node_network_up", "eth0"), Some(Int(1)));
        assert_eq!(
            get("node_network_speed_bytes", "eth0"),
            Some(Int(10_000 * 125_000))
        );
        let info = pts.iter().find(|p| {
            p.measurement == "node_network_info" && p.tag_value("device") == Some("eth0")
        });
        assert_eq!(info.and_then(|p| p.tag_value("operstate")), Some("up"));
        assert!(get("node_network_mtu_bytes", "lo").is_some(), "lo included");
        assert!(
            get("node_network_carrier", "docker0").is_none(),
            "a down interface cannot tell"
        );
    }

    #[test]
    fn each_interface_s_link_without_loopback() {
        let pts = run(&mut NetClass::default(), "basic").unwrap();
        let names: Vec<_> = pts
            .iter()
            .filter_map(|p| p.tag_value("interface"))
            .collect();
        assert_eq!(names, ["docker0", "eth0"]);
        let eth0 = &pts[1];
        assert_eq!(eth0.field("up"), Some(Int(1)));
        assert_eq!(eth0.field("carrier"), Some(Int(1)));
        assert_eq!(eth0.field("speed"), Some(Int(10_000)));
        assert_eq!(eth0.field("mtu"), Some(Int(1_500)));
        assert_eq!(eth0.field("full_duplex"), Some(Int(1)));
        assert_eq!(eth0.field("carrier_changes"), Some(Counter(3)));
        let docker0 = &pts[0];
        assert_eq!(docker0.field("up"), Some(Int(0)));
        assert_eq!(docker0.field("speed"), None, "a down interface cannot tell");
    }

    #[test]
    fn unknown_values_are_left_out_and_bad_ones_named() {
        let (pts, e) = run_on_partial(
            &mut NetClass::default(),
            &[
                ("sys/class/net/veth1/operstate", b"lowerlayerdown\n"),
                ("sys/class/net/veth1/speed", b"-1\n"),
                ("sys/class/net/veth1/duplex", b"unknown\n"),
                ("sys/class/net/veth1/mtu", b"lots\n"),
                ("sys/class/net/veth2/mtu", b"9000\n"),
            ],
        );
        assert_eq!(pts.len(), 2, "a bad value loses only itself");
        assert_eq!(pts[0].fields.len(), 1, "{:?}", pts[0].fields);
        assert_eq!(pts[0].field("up"), Some(Int(0)));
        assert_eq!(pts[1].field("mtu"), Some(Int(9_000)));
        let e = e.unwrap().to_string();
        assert!(e.contains("veth1/mtu") && e.contains("lots"), "{e}");
    }

    #[test]
    fn a_long_or_binary_attribute_is_an_error_naming_it() {
        let long = "1".repeat(200);
        for bytes in [long.as_bytes(), b"\xff\xfe\n"] {
            let (_, e) = run_on_partial(
                &mut NetClass::default(),
                &[("sys/class/net/eth9/mtu", bytes)],
            );
            let e = e.unwrap().to_string();
            assert!(e.contains("eth9/mtu") && e.len() < 300, "{e}");
        }
    }

    #[test]
    fn a_notice_or_an_old_listing_lists_a_trusted_quiet_cycle_repeats() {
        use Plan::*;
        for trusted in [false, true] {
            for kept in [false, true] {
                assert_eq!(plan(true, false, trusted, kept), List);
                assert_eq!(plan(false, true, trusted, kept), List);
            }
        }
        assert_eq!(plan(false, false, true, true), Replay);
        assert_eq!(
            plan(false, false, true, false),
            Read,
            "the last read had an error"
        );
        assert_eq!(
            plan(false, false, false, true),
            Read,
            "not this namespace's links"
        );
    }

    #[test]
    fn links_are_this_namespace_s_when_each_index_is_the_one_its_name_has() {
        let (dir, _) = tree(&[
            ("lo/ifindex", b"1\n"),
            ("lo7/ifindex", b"7\n"),
            ("nosuch0/ifindex", b"3\n"),
            ("noindex/mtu", b"1500\n"),
        ]);
        let at = |name: &str| dir.join(name);
        let one = |name: &str| same_namespace([(name, at(name).as_path())].into_iter());
        // The loopback interface is 1 in every network namespace.
        assert!(one("lo"));
        assert!(!one("lo7") && !one("nosuch0") && !one("noindex"));
        let _ = std::fs::remove_dir_all(dir);
        // Another namespace's interface of the same name.
        let (dir, _) = tree(&[("lo/ifindex", b"7\n")]);
        assert!(!same_namespace(
            [("lo", dir.join("lo").as_path())].into_iter()
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The collector's cycles with notices made up: no socket (so no
    /// host's notice comes in) and the namespace's trust set by hand.
    #[test]
    fn a_quiet_cycle_repeats_the_last_read_only_where_notices_are_trusted() {
        let (dir, paths) = tree(&[
            ("sys/class/net/eth0/operstate", b"up\n"),
            ("sys/class/net/eth0/mtu", b"1500\n"),
        ]);
        let mtu = dir.join("sys/class/net/eth0/mtu");
        let mut c = NetClass::default();
        let mut files = Files::new(paths);
        let mut cycle = |c: &mut NetClass, now| {
            let mut out = Vec::new();
            let r = c.collect(&mut files, now, &mut out);
            (out, r)
        };
        let (out, r) = cycle(&mut c, 1_000);
        assert!(r.is_ok() && out[0].field("mtu") == Some(Int(1_500)));
        assert!(
            !c.cache.watch.trusted,
            "a fixture tree is not the namespace's"
        );
        c.cache.watch.sock = None;
        std::fs::write(&mtu, "9000\n").unwrap();
        let (out, _) = cycle(&mut c, 2_000);
        assert_eq!(out[0].field("mtu"), Some(Int(9_000)), "read every cycle");

        c.cache.watch.trusted = true;
        std::fs::write(&mtu, "1280\n").unwrap();
        let (out, _) = cycle(&mut c, 3_000);
        assert_eq!(out[0].field("mtu"), Some(Int(9_000)), "repeated");
        assert_eq!(out[0].timestamp, 3_000);
        assert_eq!(out[0].tag_value("interface"), Some("eth0"));
        c.cache.listed = None;
        let (out, _) = cycle(&mut c, 4_000);
        assert_eq!(
            out[0].field("mtu"),
            Some(Int(1_280)),
            "listed and read again"
        );

        std::fs::write(&mtu, "lots\n").unwrap();
        c.cache.listed = None;
        for now in [5_000, 6_000] {
            let (out, r) = cycle(&mut c, now);
            assert!(r.is_err(), "an error is said every cycle");
            assert_eq!(out[0].field("mtu"), None);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_class_net_is_quiet() {
        assert!(run(&mut NetClass::default(), "empty").unwrap().is_empty());
    }
}
