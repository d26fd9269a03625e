//! `cgroup`: resource use per systemd service, container and virtual
//! machine, from the control groups under the watched slices
//! (`PROCSHIP_CGROUP_SLICES`, default `system.slice,machine.slice`), down to
//! `PROCSHIP_CGROUP_DEPTH` levels (default 1: the slice's children), at most
//! `PROCSHIP_CGROUP_MAX` groups (default 200; a warning says when it cuts).
//!
//! cgroup v2 (`<sys>/fs/cgroup/cgroup.controllers` exists): cpu.stat,
//! memory.current, memory.peak, pids.current, io.stat. cgroup v1 (the
//! per-controller hierarchies): cpuacct.usage and cpuacct.stat, cpu.stat,
//! memory.usage_in_bytes and memory.max_usage_in_bytes, pids.current,
//! blkio.throttle.io_service_bytes and io_serviced. Either way the points are:
//! - `cgroup`: unit, kind (service, container, vm, slice, other), slice,
//!   and for VMs domain → cpu_usage_usec, cpu_user_usec, cpu_system_usec,
//!   cpu_nr_periods, cpu_nr_throttled, cpu_throttled_usec (counters),
//!   memory_current, memory_peak, pids_current (gauges);
//! - `cgroup_io`: unit, kind, slice, device (name from /sys/dev/block) →
//!   read_bytes, write_bytes, read_ios, write_ios (counters).
//!
//! Containers are docker, containerd, CRI-O and podman scopes; VMs are
//! libvirt's `machine-qemu\x2dN\x2dNAME.scope`, tagged with the domain name.
//! A file a kernel or controller lacks leaves its fields out; a host with no
//! cgroup file system, or no watched slice, emits nothing. A value that is
//! not a number is an error naming the file and loses only that file's
//! fields; the group's others and the other groups go out.
//!
//! The slices are listed again every cycle (a new group is reported at the
//! next one); a group's files are opened when it is first listed and kept
//! open, re-read with `pread` (one syscall per file and cycle), and closed
//! when it is no longer listed, or listed with another inode (a restarted
//! service's group is removed and made again under its name), or when a
//! read says it is gone (ENODEV). The listing (a directory walk per slice
//! and cycle, `getdents` into a kept buffer) writes the names it finds into
//! buffers kept from cycle to cycle and compares them with the tracked
//! groups', so a cycle that finds the groups the last one found allocates
//! nothing (tests/it/alloc.rs); a new group allocates its names and paths
//! once. Off by default: up to five reads per group every cycle.

use rustc_hash::FxHashMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Build, CollectError, Collector, Context, Entry, Files, Partial, Setup};
use crate::config::{ConfigError, Values, Var, split_list};
use crate::host::Facts;
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry {
    name: "cgroup",
    on_by_default: true,
    title: "cgroup collector (off by default)",
    vars: VARS,
    build: Build::Configured(|v| Ok(std::sync::Arc::new(Options::parse(v)?))),
    node_help: &[],
}
.off_by_default();

pub const VARS: &[Var] = &[
    Var::new(
        "CGROUP_SLICES",
        "system.slice,machine.slice",
        "cgroup: the slices whose groups (services, containers, VMs) are reported",
    )
    .live(),
    Var::new(
        "CGROUP_DEPTH",
        "1",
        "cgroup: how many levels below each slice (1: its children; 1 to 5)",
    )
    .live(),
    Var::new(
        "CGROUP_MAX",
        "200",
        "cgroup: at most this many groups per cycle (a warning says when it cuts)",
    )
    .live(),
];

#[derive(Debug, Clone)]
pub struct Options {
    pub slices: Vec<String>,
    pub depth: usize,
    pub max: usize,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            slices: v.get("CGROUP_SLICES", parse_slices)?,
            depth: v.get("CGROUP_DEPTH", |s| whole_number(s, 1, 5))?,
            max: v.get("CGROUP_MAX", |s| whole_number(s, 1, 10_000))?,
        })
    }
}

fn parse_slices(s: &str) -> Result<Vec<String>, String> {
    let v = split_list(s);
    let bad =
        |x: &String| x.contains("..") || x.starts_with('/') || x.chars().any(char::is_control);
    if v.is_empty() || v.iter().any(bad) {
        Err("a comma-separated list of cgroup paths below the root, such as system.slice,machine.slice".into())
    } else {
        Ok(v)
    }
}

fn whole_number(s: &str, min: usize, max: usize) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("a whole number from {min} to {max}"))
}

impl Setup for Options {
    fn build(&self, ctx: &Context) -> Option<Box<dyn Collector>> {
        Some(Box::new(Cgroup::new(self.clone(), ctx.facts)))
    }
}

/// What a group is, from its name.
pub fn kind(name: &str) -> &'static str {
    let scope = name.strip_suffix(".scope");
    if name.starts_with("machine-") && scope.is_some() {
        "vm"
    } else if scope.is_some_and(|s| {
        ["docker-", "cri-containerd-", "crio-", "libpod-"]
            .iter()
            .any(|p| s.starts_with(p))
    }) {
        "container"
    } else if name.ends_with(".service") {
        "service"
    } else if name.ends_with(".slice") {
        "slice"
    } else {
        "other"
    }
}

/// Undoes systemd's `\xNN` escapes (`machine-qemu\x2d1\x2dweb.scope`).
pub fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(v) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The libvirt domain of a VM scope: `machine-qemu\x2d1\x2dweb.scope` → `web`.
pub fn domain(name: &str) -> Option<String> {
    let u = unescape(name.strip_suffix(".scope")?);
    let rest = u.strip_prefix("machine-")?;
    let rest = rest.split_once('-').map_or(rest, |(_, r)| r); // the driver: qemu, lxc
    Some(match rest.split_once('-') {
        Some((n, d)) if n.bytes().all(|b| b.is_ascii_digit()) => d.to_string(),
        _ => rest.to_string(),
    })
}

/// Each `key value` line of `text` (cpu.stat, cpuacct.stat) given to `f`;
/// a line that is not one is the error. One pass over the bytes: the key,
/// the blanks, the digits (words after the value are ignored).
fn each_key(path: &Path, text: &str, mut f: impl FnMut(&str, u64)) -> Result<(), CollectError> {
    let b = text.as_bytes();
    let mut i = skip(b, 0, |c| c.is_ascii_whitespace());
    while i < b.len() {
        let (k, end) = word_at(text, i);
        i = skip(b, end, blank);
        if b.get(i).is_none_or(|&c| c == b'\n') {
            return Err(CollectError::parse(
                path,
                format!("{k:?}: expected a key and a value"),
            ));
        }
        let (v, end) = value(text, i)
            .map_err(|v| CollectError::parse(path, format!("{k}: {v:?} is not a number")))?;
        i = skip(b, end, |c| c != b'\n');
        f(k, v);
        i = skip(b, i, |c| c.is_ascii_whitespace());
    }
    Ok(())
}

/// ASCII whitespace other than the newline (a space, a tab; a stray
/// `\r`): what separates the words of a line.
fn blank(c: u8) -> bool {
    c != b'\n' && c.is_ascii_whitespace()
}

/// The index of the first byte of `b` from `i` on that `keep` refuses.
fn skip(b: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && keep(b[i]) {
        i += 1;
    }
    i
}

/// The word that starts at `i` (up to ASCII whitespace) and its end.
fn word_at(text: &str, i: usize) -> (&str, usize) {
    let end = skip(text.as_bytes(), i, |c| !c.is_ascii_whitespace());
    (part(text, i, end), end)
}

/// `text[start..end]`, or "" where that would not be whole characters
/// (the ends found here are always at an ASCII byte or the end).
fn part(text: &str, start: usize, end: usize) -> &str {
    text.get(start..end).unwrap_or_default()
}

/// The number that starts at `i` and ends the word there: ASCII digits
/// only (no sign), at most `u64::MAX`; its end; else the word, for the
/// error.
fn value(text: &str, i: usize) -> Result<(u64, usize), &str> {
    let b = text.as_bytes();
    let mut n = 0u64;
    let mut end = i;
    while let Some(&c) = b.get(end) {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if end - i < 19 {
            // Nineteen digits are below u64::MAX: no check needed.
            n = n * 10 + u64::from(digit);
        } else {
            match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
            {
                Some(m) => n = m,
                None => break, // too large: the word does not end here
            }
        }
        end += 1;
    }
    if end > i && b.get(end).is_none_or(|c| c.is_ascii_whitespace()) {
        Ok((n, end))
    } else {
        Err(word_at(text, i).0)
    }
}

fn single(path: &Path, text: &str) -> Result<u64, CollectError> {
    let t = text.trim_ascii();
    match value(t, 0) {
        Ok((n, end)) if end == t.len() => Ok(n),
        _ => Err(CollectError::parse(path, format!("{t:?} is not a number"))),
    }
}

/// Per device: [read bytes, write bytes, read ios, write ios]. The slots,
/// and their names' buffers, are kept from group to group and cycle to
/// cycle: a steady cycle names its devices without allocating.
#[derive(Default)]
pub struct Io {
    slots: Vec<(String, [u64; 4])>,
    used: usize,
}

impl Io {
    fn clear(&mut self) {
        self.used = 0;
    }

    /// The devices of the group being read, in the order first seen.
    pub fn devices(&self) -> &[(String, [u64; 4])] {
        &self.slots[..self.used]
    }

    fn entry(&mut self, dev: &str) -> &mut [u64; 4] {
        let used = self.used;
        if let Some(i) = self.slots[..used].iter().position(|(d, _)| d == dev) {
            return &mut self.slots[i].1;
        }
        if used == self.slots.len() {
            self.slots.push((String::new(), [0; 4]));
        }
        self.used += 1;
        let (name, counts) = &mut self.slots[used];
        name.clear();
        name.push_str(dev);
        *counts = [0; 4];
        counts
    }
}

/// v2 io.stat: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`.
pub fn parse_io_stat(path: &Path, text: &str, io: &mut Io) -> Result<(), CollectError> {
    let b = text.as_bytes();
    let mut i = skip(b, 0, |c| c.is_ascii_whitespace());
    while i < b.len() {
        let (dev, end) = word_at(text, i);
        i = end;
        let slot = io.entry(dev);
        // The line's `key=value` words.
        loop {
            i = skip(b, i, blank);
            if b.get(i).is_none_or(|&c| c == b'\n') {
                break;
            }
            let start = i;
            i = skip(b, i, |c| c != b'=' && !c.is_ascii_whitespace());
            let k = part(text, start, i);
            if b.get(i) != Some(&b'=') {
                return Err(CollectError::parse(
                    path,
                    format!("{k:?}: expected key=value"),
                ));
            }
            let slot_of = match k {
                "rbytes" => Some(0),
                "wbytes" => Some(1),
                "rios" => Some(2),
                "wios" => Some(3),
                _ => None,
            };
            if let Some(n) = slot_of {
                let (v, end) = value(text, i + 1).map_err(|v| {
                    CollectError::parse(path, format!("{dev} {k}: {v:?} is not a number"))
                })?;
                slot[n] = v;
                i = end;
            }
            i = skip(b, i, |c| !c.is_ascii_whitespace());
        }
        i = skip(b, i, |c| c.is_ascii_whitespace());
    }
    Ok(())
}

/// v1 blkio.throttle.*: `8:0 Read 123` lines; `bytes` picks the slots.
pub fn parse_blkio(path: &Path, text: &str, io: &mut Io, bytes: bool) -> Result<(), CollectError> {
    for line in text.lines() {
        let mut w = line.split_ascii_whitespace();
        let (dev, op, v) = match (w.next(), w.next(), w.next(), w.next()) {
            (Some(dev), Some(op), Some(v), None) => (dev, op, v),
            _ => continue, // "Total 123" and blank lines
        };
        let i = match (op, bytes) {
            ("Read", true) => 0,
            ("Write", true) => 1,
            ("Read", false) => 2,
            ("Write", false) => 3,
            _ => continue,
        };
        io.entry(dev)[i] = v
            .parse()
            .map_err(|_| CollectError::parse(path, format!("{dev} {op}: {v:?} is not a number")))?;
    }
    Ok(())
}

/// One group found under a watched slice.
#[derive(PartialEq)]
struct Group {
    slice: String,
    /// Path below the slice (`sshd.service`, or deeper with depth > 1).
    unit: String,
    /// Path below the hierarchy root.
    rel: PathBuf,
    /// The directory's inode: a group removed and made again under the
    /// same name (a restarted service) has another.
    ino: u64,
}

/// How one of a group's files is read.
#[derive(Debug, Clone, Copy)]
enum How {
    /// v2 cpu.stat: usage, user, system (µs), periods, throttled.
    V2Cpu,
    /// One number, the named gauge.
    Gauge(&'static str),
    /// v2 io.stat.
    V2Io,
    /// v1 cpuacct.usage (ns).
    V1Usage,
    /// v1 cpuacct.stat (ticks).
    V1Acct,
    /// v1 cpu.stat: periods, throttled, throttled time (ns).
    V1Cpu,
    /// v1 blkio.throttle.*: bytes (true) or operations.
    Blkio(bool),
}

/// cgroup v2: each group's files, in the order their fields go out.
const V2_FILES: [(&str, How); 5] = [
    ("cpu.stat", How::V2Cpu),
    ("memory.current", How::Gauge("memory_current")),
    ("memory.peak", How::Gauge("memory_peak")),
    ("pids.current", How::Gauge("pids_current")),
    ("io.stat", How::V2Io),
];

/// cgroup v1: (the hierarchies that may hold it, first found wins; file; how).
const V1_FILES: [(&[&str], &str, How); 8] = [
    (&["cpuacct", "cpu,cpuacct"], "cpuacct.usage", How::V1Usage),
    (&["cpuacct", "cpu,cpuacct"], "cpuacct.stat", How::V1Acct),
    (&["cpu", "cpu,cpuacct"], "cpu.stat", How::V1Cpu),
    (
        &["memory"],
        "memory.usage_in_bytes",
        How::Gauge("memory_current"),
    ),
    (
        &["memory"],
        "memory.max_usage_in_bytes",
        How::Gauge("memory_peak"),
    ),
    (&["pids"], "pids.current", How::Gauge("pids_current")),
    (
        &["blkio"],
        "blkio.throttle.io_service_bytes",
        How::Blkio(true),
    ),
    (&["blkio"], "blkio.throttle.io_serviced", How::Blkio(false)),
];

/// A group being reported, with its files kept open.
struct Tracked {
    group: Group,
    /// False when a file is there but could not be opened (not a regular
    /// file): the group is opened again, and the error said again, next cycle.
    complete: bool,
    kind: &'static str,
    domain: Option<String>,
    files: Vec<(PathBuf, File, How)>,
}

pub struct Cgroup {
    opts: Options,
    ticks_per_sec: u64,
    devnames: FxHashMap<String, String>,
    /// The count last cut to the maximum (warned once per change).
    cut: Option<usize>,
    /// The groups of the last cycle, sorted by (slice, unit), and whether
    /// they were found in the unified hierarchy; `spare` is the list the
    /// next cycle fills (the two swap, so tracking allocates nothing).
    tracked: Vec<Tracked>,
    spare: Vec<Tracked>,
    unified: bool,
    listing: Listing,
    paths: Option<Paths>,
    buf: Vec<u8>,
    usage: Usage,
}

/// The cgroup paths of one `sys` directory, made once.
struct Paths {
    sys: PathBuf,
    root: PathBuf,
    /// `cgroup.controllers`: there, the hierarchy is unified (v2).
    controllers: PathBuf,
    /// v1: the hierarchies the groups are listed from, the first found wins.
    v1: [PathBuf; 3],
}

impl Paths {
    fn of(sys: &Path) -> Paths {
        let root = sys.join("fs/cgroup");
        Paths {
            sys: sys.to_path_buf(),
            controllers: root.join("cgroup.controllers"),
            v1: ["cpuacct", "cpu,cpuacct", "memory"].map(|h| root.join(h)),
            root,
        }
    }

    /// The hierarchy the groups are listed from and whether it is
    /// unified; `None` without a cgroup file system.
    fn hierarchy(&self) -> Option<(&Path, bool)> {
        if self.controllers.exists() {
            return Some((&self.root, true));
        }
        self.v1
            .iter()
            .find(|p| p.is_dir())
            .map(|p| (p.as_path(), false))
    }
}

/// getdents' buffer for one directory's listing.
const DENTS: usize = 32 * 1024;

/// A group found by this cycle's listing: its slice (an index into the
/// options' slices), its path below the slice (a range of `Listing::units`),
/// how deep it is (0: a child of the slice) and its directory's inode.
#[derive(Clone, Copy, PartialEq)]
struct Found {
    slice: usize,
    unit: (usize, usize),
    level: usize,
    ino: u64,
}

/// The groups under the watched slices, listed again every cycle into
/// buffers kept from cycle to cycle: a listing that finds what the last
/// one found allocates nothing.
#[derive(Default)]
struct Listing {
    /// Every found group's path below its slice, one after another.
    units: String,
    found: Vec<Found>,
    /// The directory being listed, its group's path below the slice (empty
    /// for the slice), and getdents' buffer.
    path: PathBuf,
    prefix: String,
    dents: Vec<u8>,
    /// The last listing, in readdir's order: a listing that finds the same
    /// (names, inodes, places) needs no sort and no merge.
    last_units: String,
    last_found: Vec<Found>,
}

/// A found group's path below its slice, in `units`.
fn unit_of<'a>(units: &'a str, f: &Found) -> &'a str {
    units.get(f.unit.0..f.unit.1).unwrap_or_default()
}

impl Listing {
    /// Lists the groups below each of `slices` in `hierarchy`, `depth`
    /// levels down, in readdir's order; says whether it found what the last
    /// listing found, in the same order.
    fn list(&mut self, hierarchy: &Path, slices: &[String], depth: usize) -> Listed {
        self.units.clear();
        self.found.clear();
        for (s, slice) in slices.iter().enumerate() {
            let first = self.found.len();
            self.list_dir(hierarchy, slice, s, None);
            // The groups found are listed in turn, down to `depth` levels.
            let mut i = first;
            while let Some(f) = self.found.get(i).copied() {
                if f.level + 1 < depth {
                    self.list_dir(hierarchy, slice, s, Some(f));
                }
                i += 1;
            }
        }
        if self.units == self.last_units && self.found == self.last_found {
            return Listed::AsLast;
        }
        self.last_units.clone_from(&self.units);
        self.last_found.clone_from(&self.found);
        Listed::Other
    }

    /// Sorts what was found by (slice, unit): the order, and so what a cut
    /// keeps, does not depend on readdir's.
    fn sort(&mut self, slices: &[String]) {
        let (units, found) = (&self.units, &mut self.found);
        let key = |f: &Found| {
            let slice = slices.get(f.slice).map_or("", String::as_str);
            (slice, unit_of(units, f))
        };
        found.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    }

    /// Adds the directories in `slice`, or in the group `below` of it. A
    /// directory that cannot be listed (a slice the host lacks, a group
    /// removed meanwhile) adds nothing.
    fn list_dir(&mut self, hierarchy: &Path, slice: &str, s: usize, below: Option<Found>) {
        self.path.as_mut_os_string().clear();
        self.path.push(hierarchy);
        self.path.push(slice);
        self.prefix.clear();
        if let Some(b) = below {
            self.prefix.push_str(unit_of(&self.units, &b));
            self.path.push(&self.prefix);
        }
        // Opened as `open_dir` does, without naming the path in an error
        // that would be dropped: a missing slice is the common case.
        let Ok(dir) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NONBLOCK)
            .open(&self.path)
        else {
            return;
        };
        if self.dents.capacity() < DENTS {
            self.dents.reserve(DENTS);
        }
        let mut entries = rustix::fs::RawDir::new(&dir, self.dents.spare_capacity_mut());
        while let Some(Ok(e)) = entries.next() {
            let Ok(name) = e.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || !is_dir(&dir, &e) {
                continue;
            }
            let start = self.units.len();
            if below.is_some() {
                self.units.push_str(&self.prefix);
                self.units.push('/');
            }
            self.units.push_str(name);
            self.found.push(Found {
                slice: s,
                unit: (start, self.units.len()),
                level: below.map_or(0, |b| b.level + 1),
                ino: e.ino(),
            });
        }
    }
}

/// What a listing found.
#[derive(PartialEq)]
enum Listed {
    /// The same groups as the last listing, in the same order.
    AsLast,
    /// Other groups, or another order.
    Other,
}

/// Whether a listed entry is a directory: its type from getdents, or from
/// `fstatat` where the file system does not say (`DT_UNKNOWN`).
fn is_dir(dir: &File, e: &rustix::fs::RawDirEntry<'_>) -> bool {
    use rustix::fs::FileType;
    match e.file_type() {
        FileType::Directory => true,
        FileType::Unknown => {
            rustix::fs::statat(dir, e.file_name(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        }
        _ => false,
    }
}

impl Cgroup {
    pub fn new(opts: Options, facts: Facts) -> Self {
        Cgroup {
            opts,
            ticks_per_sec: facts.ticks_per_sec,
            devnames: FxHashMap::default(),
            cut: None,
            tracked: Vec::new(),
            spare: Vec::new(),
            unified: false,
            listing: Listing::default(),
            paths: None,
            buf: Vec::new(),
            usage: Usage::default(),
        }
    }

    /// Sorts the groups listed and cuts them to the maximum (said once per
    /// count cut).
    fn sort_and_cut(&mut self) {
        self.listing.sort(&self.opts.slices);
        let found = self.listing.found.len();
        if found > self.opts.max {
            if self.cut != Some(found) {
                tracing::warn!(
                    found,
                    max = self.opts.max,
                    "cgroup: more groups than PROCSHIP_CGROUP_MAX; the rest are not reported"
                );
                self.cut = Some(found);
            }
            self.listing.found.truncate(self.opts.max);
        }
    }

    /// This cycle's groups: the last cycle's kept (files open) where
    /// listed again (same name, same directory), the new ones opened, the
    /// vanished ones closed; a group made again under its name (another
    /// inode) is opened anew, as its old files read the removed one.
    fn track(&mut self, root: &Path, hierarchy: &Path, unified: bool, partial: &mut Partial) {
        if unified != self.unified {
            self.tracked.clear();
            self.unified = unified;
        }
        // The same listing as the last cycle's: the groups it tracks are
        // these, unless one was dropped (gone) or is to be opened again.
        let listed = self
            .listing
            .list(hierarchy, &self.opts.slices, self.opts.depth);
        if listed == Listed::AsLast
            && self.tracked.len() == self.listing.found.len().min(self.opts.max)
            && self.tracked.iter().all(|t| t.complete)
        {
            return;
        }
        self.sort_and_cut();
        let mut last = std::mem::take(&mut self.tracked);
        let mut now = std::mem::take(&mut self.spare);
        let mut old = last.drain(..).peekable();
        for f in &self.listing.found {
            let slice = self.opts.slices.get(f.slice).map_or("", String::as_str);
            let unit = unit_of(&self.listing.units, f);
            while old
                .next_if(|t| (t.group.slice.as_str(), t.group.unit.as_str()) < (slice, unit))
                .is_some()
            {}
            let same = |t: &Tracked| {
                t.complete && t.group.ino == f.ino && t.group.slice == slice && t.group.unit == unit
            };
            match old.next_if(same) {
                Some(t) => now.push(t),
                None => {
                    let g = Group {
                        slice: slice.to_string(),
                        unit: unit.to_string(),
                        rel: Path::new(slice).join(unit),
                        ino: f.ino,
                    };
                    now.push(open_group(root, g, unified, partial));
                }
            }
        }
        drop(old);
        self.tracked = now;
        self.spare = last;
    }
}

/// The name a device number (`8:0`) has under `<sys>/dev/block`, looked up
/// once and kept; the number itself where it has none.
fn device<'a>(devnames: &'a mut FxHashMap<String, String>, sys: &Path, dev: &'a str) -> &'a str {
    if !devnames.contains_key(dev) {
        let name = std::fs::read_link(sys.join("dev/block").join(dev))
            .ok()
            .and_then(|p| p.file_name()?.to_str().map(str::to_string))
            .unwrap_or_else(|| dev.to_string());
        devnames.insert(dev.to_string(), name);
    }
    devnames.get(dev).map_or(dev, String::as_str)
}

/// Opens `path` for re-reading: `None` when it is not there (a controller
/// or kernel without it); another failure is kept in `partial`.
fn open(path: PathBuf, partial: &mut Partial) -> Option<(PathBuf, File)> {
    match crate::host::open_file(&path) {
        Ok(f) => Some((path, f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => partial.keep(Err(CollectError::io(path, e))),
    }
}

/// A group newly listed, with the files it has opened.
fn open_group(root: &Path, g: Group, unified: bool, partial: &mut Partial) -> Tracked {
    let errors = partial.count();
    let mut files = Vec::new();
    if unified {
        let dir = root.join(&g.rel);
        for (file, how) in V2_FILES {
            if let Some((p, f)) = open(dir.join(file), partial) {
                files.push((p, f, how));
            }
        }
    } else {
        for (hierarchies, file, how) in V1_FILES {
            if let Some((p, f)) = hierarchies
                .iter()
                .find_map(|h| open(root.join(h).join(&g.rel).join(file), partial))
            {
                files.push((p, f, how));
            }
        }
    }
    let name = g.unit.rsplit('/').next().unwrap_or(&g.unit);
    Tracked {
        kind: kind(name),
        domain: domain(name),
        complete: partial.count() == errors,
        group: g,
        files,
    }
}

/// The fields of one group.
#[derive(Default)]
struct Usage {
    counters: Vec<(&'static str, u64)>,
    gauges: Vec<(&'static str, u64)>,
    io: Io,
}

impl Usage {
    fn clear(&mut self) {
        self.counters.clear();
        self.gauges.clear();
        self.io.clear();
    }

    /// Adds what one file says, as `how` reads it.
    fn add(
        &mut self,
        path: &Path,
        text: &str,
        how: How,
        ticks_per_sec: u64,
    ) -> Result<(), CollectError> {
        let counters = &mut self.counters;
        match how {
            How::V2Cpu => each_key(path, text, |k, v| {
                let field = match k {
                    "usage_usec" => "cpu_usage_usec",
                    "user_usec" => "cpu_user_usec",
                    "system_usec" => "cpu_system_usec",
                    "nr_periods" => "cpu_nr_periods",
                    "nr_throttled" => "cpu_nr_throttled",
                    "throttled_usec" => "cpu_throttled_usec",
                    _ => return,
                };
                counters.push((field, v));
            }),
            How::Gauge(field) => {
                self.gauges.push((field, single(path, text)?));
                Ok(())
            }
            How::V2Io => parse_io_stat(path, text, &mut self.io),
            How::V1Usage => {
                counters.push(("cpu_usage_usec", single(path, text)? / 1000));
                Ok(())
            }
            How::V1Acct => each_key(path, text, |k, v| {
                let field = match k {
                    "user" => "cpu_user_usec",
                    "system" => "cpu_system_usec",
                    _ => return,
                };
                counters.push((field, v.saturating_mul(1_000_000) / ticks_per_sec.max(1)));
            }),
            How::V1Cpu => each_key(path, text, |k, v| {
                let (field, div) = match k {
                    "nr_periods" => ("cpu_nr_periods", 1),
                    "nr_throttled" => ("cpu_nr_throttled", 1),
                    "throttled_time" => ("cpu_throttled_usec", 1000),
                    _ => return,
                };
                counters.push((field, v / div));
            }),
            How::Blkio(bytes) => parse_blkio(path, text, &mut self.io, bytes),
        }
    }
}

/// True when a kept file's group is gone (removed since it was listed):
/// the kernel answers ENODEV for a removed group's open files.
fn gone(e: &CollectError) -> bool {
    matches!(&e.kind, super::ErrorKind::Io(io)
        if io.raw_os_error() == Some(nix::libc::ENODEV) || io.kind() == std::io::ErrorKind::NotFound)
}

impl Collector for Cgroup {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        // Taken out for the cycle (`track` and `points` borrow `self`).
        let paths = match self.paths.take() {
            Some(p) if p.sys == files.paths.sys => p,
            _ => Paths::of(&files.paths.sys),
        };
        let Some((hierarchy, unified)) = paths.hierarchy() else {
            self.tracked.clear();
            self.paths = Some(paths);
            return Ok(());
        };
        let mut partial = Partial::default();
        self.track(&paths.root, hierarchy, unified, &mut partial);
        let mut usage = std::mem::take(&mut self.usage);
        let mut tracked = std::mem::take(&mut self.tracked);
        // A group gone since it was listed is dropped: listed again, it is
        // opened anew.
        tracked.retain(|t| {
            usage.clear();
            let there = self.read_group(t, &mut usage, &mut partial);
            if there {
                self.points(t, &usage, &paths.sys, now, out);
            }
            there
        });
        self.paths = Some(paths);
        self.tracked = tracked;
        self.usage = usage;
        partial.result()
    }
}

impl Cgroup {
    /// Reads one group's files into `usage`; false when the group is gone.
    /// A file that cannot be read or parsed loses its fields only.
    fn read_group(&mut self, t: &Tracked, usage: &mut Usage, partial: &mut Partial) -> bool {
        for (path, f, how) in &t.files {
            let added = super::reread(f, path, &mut self.buf)
                .and_then(|text| usage.add(path, text, *how, self.ticks_per_sec));
            match added {
                Ok(()) => {}
                Err(e) if gone(&e) => return false,
                Err(e) => partial.note(|| e),
            }
        }
        true
    }

    fn points(
        &mut self,
        t: &Tracked,
        usage: &Usage,
        sys: &Path,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) {
        let tag = |p: Point| {
            // In key order: each is appended (Point::tag).
            let p = p
                .tag("kind", t.kind)
                .tag("slice", &t.group.slice)
                .tag("unit", &t.group.unit);
            match (t.kind, &t.domain) {
                ("vm", Some(d)) => p.tag("domain", d),
                _ => p,
            }
        };
        let mut p = tag(Point::new("cgroup", now));
        for (f, v) in &usage.counters {
            p = p.counter(*f, *v);
        }
        for (f, v) in &usage.gauges {
            p = p.uint(*f, *v);
        }
        if !p.fields.is_empty() {
            out.push(p);
        }
        for (dev, [rb, wb, ri, wi]) in usage.io.devices() {
            let device = device(&mut self.devnames, sys, dev);
            out.push(
                tag(Point::new("cgroup_io", now))
                    .tag("device", device)
                    .counter("read_bytes", *rb)
                    .counter("write_bytes", *wb)
                    .counter("read_ios", *ri)
                    .counter("write_ios", *wi),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;

    fn defaults() -> Options {
        Options::parse(&mut crate::config::Values::defaults_of(VARS)).unwrap()
    }
    use crate::point::Value::{Counter, Int};

    fn find<'a>(pts: &'a [Point], m: &str, unit: &str) -> &'a Point {
        pts.iter()
            .find(|p| p.measurement == m && p.tag_value("unit") == Some(unit))
            .unwrap_or_else(|| panic!("no {m} for {unit} in {pts:?}"))
    }

    #[test]
    fn names_kinds_and_domains() {
        assert_eq!(kind("sshd.service"), "service");
        assert_eq!(kind("docker-0123abcd.scope"), "container");
        assert_eq!(kind("cri-containerd-ab.scope"), "container");
        assert_eq!(kind("libpod-ab.scope"), "container");
        assert_eq!(kind("machine-qemu\\x2d1\\x2dweb.scope"), "vm");
        assert_eq!(kind("user.slice"), "slice");
        assert_eq!(kind("init.scope"), "other");
        assert_eq!(
            domain("machine-qemu\\x2d1\\x2dweb\\x2d01.scope").as_deref(),
            Some("web-01")
        );
        assert_eq!(unescape("a\\x2db\\x2"), "a-b\\x2", "a cut escape stays");
    }

    #[test]
    fn v2_services_containers_and_vms() {
        let pts = run(&mut Cgroup::new(defaults(), Facts::default()), "basic").unwrap();
        let sshd = find(&pts, "cgroup", "sshd.service");
        assert_eq!(sshd.tag_value("kind"), Some("service"));
        assert_eq!(sshd.field("cpu_usage_usec"), Some(Counter(5_000_000)));
        assert_eq!(sshd.field("cpu_nr_throttled"), Some(Counter(3)));
        assert_eq!(sshd.field("memory_current"), Some(Int(8_388_608)));
        assert_eq!(
            sshd.field("memory_peak"),
            None,
            "absent before 5.19: left out"
        );
        let vm = find(&pts, "cgroup", "machine-qemu\\x2d1\\x2dweb.scope");
        assert_eq!(
            (vm.tag_value("kind"), vm.tag_value("domain")),
            (Some("vm"), Some("web"))
        );
        let c = find(&pts, "cgroup", "docker-4f1e2d.scope");
        assert_eq!(c.tag_value("kind"), Some("container"));
        assert_eq!(c.field("pids_current"), Some(Int(12)));
        let io = find(&pts, "cgroup_io", "docker-4f1e2d.scope");
        assert_eq!(
            io.tag_value("device"),
            Some("8:0"),
            "no /sys/dev/block here: the number"
        );
        assert_eq!(io.field("write_bytes"), Some(Counter(4096)));
        assert_eq!(io.field("read_ios"), Some(Counter(3)));
    }

    #[test]
    fn v1_hierarchies() {
        let pts = run(&mut Cgroup::new(defaults(), Facts::default()), "cgroup-v1").unwrap();
        let sshd = find(&pts, "cgroup", "sshd.service");
        assert_eq!(sshd.field("cpu_usage_usec"), Some(Counter(7_000_000)));
        assert_eq!(sshd.field("cpu_throttled_usec"), Some(Counter(2_000)));
        assert_eq!(sshd.field("memory_peak"), Some(Int(20_000_000)));
        let io = find(&pts, "cgroup_io", "sshd.service");
        assert_eq!(io.field("read_bytes"), Some(Counter(1024)));
        assert_eq!(io.field("write_ios"), Some(Counter(9)));
    }

    #[test]
    fn depth_and_the_maximum() {
        let deep = Options {
            depth: 2,
            ..defaults()
        };
        let pts = run(&mut Cgroup::new(deep, Facts::default()), "basic").unwrap();
        assert!(
            pts.iter()
                .any(|p| p.tag_value("unit") == Some("docker-4f1e2d.scope/inner"))
        );
        let few = Options {
            max: 1,
            ..defaults()
        };
        let pts = run(&mut Cgroup::new(few, Facts::default()), "basic").unwrap();
        let units: std::collections::BTreeSet<_> =
            pts.iter().filter_map(|p| p.tag_value("unit")).collect();
        assert_eq!(units.len(), 1);
        assert!(
            run(&mut Cgroup::new(defaults(), Facts::default()), "cpu-t0")
                .unwrap()
                .is_empty(),
            "no cgroupfs: nothing"
        );
    }

    #[test]
    fn one_bad_group_loses_only_its_own_fields() {
        let (pts, e) = run_on_partial(
            &mut Cgroup::new(defaults(), Facts::default()),
            &[
                ("sys/fs/cgroup/cgroup.controllers", b"cpu io memory pids\n"),
                (
                    "sys/fs/cgroup/system.slice/bad.service/memory.current",
                    b"max\n",
                ),
                (
                    "sys/fs/cgroup/system.slice/bad.service/pids.current",
                    b"3\n",
                ),
                (
                    "sys/fs/cgroup/system.slice/good.service/memory.current",
                    b"4096\n",
                ),
            ],
        );
        let e = e.expect("the bad file is reported");
        assert!(e.to_string().contains("bad.service/memory.current"), "{e}");
        assert_eq!(e.skipped, 1);
        let good = find(&pts, "cgroup", "good.service");
        assert_eq!(good.field("memory_current"), Some(Int(4096)));
        let bad = find(&pts, "cgroup", "bad.service");
        assert_eq!(bad.field("memory_current"), None);
        assert_eq!(
            bad.field("pids_current"),
            Some(Int(3)),
            "the rest of it goes out"
        );
    }

    #[test]
    fn kept_files_follow_the_values_and_the_groups() {
        let dir = tempdir();
        let root = dir.join("sys/fs/cgroup");
        let write = |rel: &str, data: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        write("cgroup.controllers", "memory\n");
        write("system.slice/a.service/memory.current", "1\n");
        write("system.slice/b.service/memory.current", "2\n");
        let mut c = Cgroup::new(defaults(), Facts::default());
        let mut files = Files::new(crate::host::HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: dir.join("root"),
        });
        let mut cycle = || {
            let mut out = Vec::new();
            c.collect(&mut files, 1_000, &mut out).unwrap();
            out.iter()
                .map(|p| {
                    let v = match p.field("memory_current") {
                        Some(Int(v)) => v,
                        other => panic!("{other:?}"),
                    };
                    (p.tag_value("unit").unwrap().to_string(), v)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(cycle(), [("a.service".into(), 1), ("b.service".into(), 2)]);
        write("system.slice/a.service/memory.current", "5\n");
        assert_eq!(
            cycle(),
            [("a.service".into(), 5), ("b.service".into(), 2)],
            "the same groups listed again: kept, in order, read anew"
        );
        write("system.slice/a.service/memory.current", "10\n");
        std::fs::remove_dir_all(root.join("system.slice/b.service")).unwrap();
        write("system.slice/c.service/memory.current", "3\n");
        assert_eq!(
            cycle(),
            [("a.service".into(), 10), ("c.service".into(), 3)],
            "a new value read through the kept file; b gone, c new"
        );
        // A restarted service: its group removed and made again (the old
        // directory moved aside, not deleted, so that its inode number
        // cannot be given to the new one).
        std::fs::rename(root.join("system.slice/c.service"), dir.join("c.old")).unwrap();
        write("system.slice/c.service/memory.current", "30\n");
        assert_eq!(
            cycle(),
            [("a.service".into(), 10), ("c.service".into(), 30)],
            "the group made again is read, not the removed one's file"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_said_every_cycle() {
        let dir = tempdir();
        let group = dir.join("sys/fs/cgroup/system.slice/a.service");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(
            dir.join("sys/fs/cgroup/cgroup.controllers"),
            "memory pids\n",
        )
        .unwrap();
        std::fs::write(group.join("pids.current"), "4\n").unwrap();
        nix::unistd::mkfifo(&group.join("memory.current"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut c = Cgroup::new(defaults(), Facts::default());
        let mut files = Files::new(crate::host::HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: dir.join("root"),
        });
        for cycle in 0..2 {
            let mut out = Vec::new();
            let e = c.collect(&mut files, 1_000, &mut out).unwrap_err();
            assert!(
                e.to_string().contains("a.service/memory.current"),
                "cycle {cycle}: {e}"
            );
            let a = find(&out, "cgroup", "a.service");
            assert_eq!(a.field("pids_current"), Some(Int(4)), "cycle {cycle}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn one_pass_parsers_read_every_layout_and_refuse_the_rest() {
        let p = Path::new("/sys/fs/cgroup/x/cpu.stat");
        let keys = |text: &str| {
            let mut got = Vec::new();
            each_key(p, text, |k, v| got.push((k.to_string(), v))).map(|()| got)
        };
        let want = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        // Tabs, CRLF, blank lines, words after the value, no last newline.
        assert_eq!(
            keys("a\t1\r\n\n  b 2 extra\nc 18446744073709551615").unwrap(),
            want(&[("a", 1), ("b", 2), ("c", u64::MAX)])
        );
        assert_eq!(keys("").unwrap(), want(&[]));
        assert_eq!(
            keys("a 0000000000000000000000042\n").unwrap(),
            want(&[("a", 42)])
        );
        for bad in ["a 18446744073709551616\n", "a 5x\n", "a +5\n", "a\nb 1\n"] {
            assert!(keys(bad).is_err(), "{bad:?}");
        }
        assert_eq!(single(p, " 42\n").unwrap(), 42);
        assert!(single(p, "4 2\n").is_err());
        let mut io = Io::default();
        parse_io_stat(
            p,
            "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=9 dios=9 \n\n259:0 rbytes=5\twios=6",
            &mut io,
        )
        .unwrap();
        assert_eq!(
            io.devices(),
            &[
                ("8:0".to_string(), [1, 2, 3, 4]),
                ("259:0".to_string(), [5, 0, 0, 6])
            ]
        );
    }

    #[test]
    fn hostile_files() {
        let p = Path::new("/sys/fs/cgroup/x/cpu.stat");
        assert!(
            each_key(p, "usage_usec\n", |_, _| {})
                .unwrap_err()
                .to_string()
                .contains("a key and a value")
        );
        assert!(
            each_key(p, "usage_usec -1\n", |_, _| {})
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(
            single(p, "max\n")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        let mut io = Io::default();
        assert!(
            parse_io_stat(p, "8:0 rbytes\n", &mut io)
                .unwrap_err()
                .to_string()
                .contains("key=value")
        );
        assert!(
            parse_io_stat(p, "8:0 rbytes=x\n", &mut io)
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(parse_blkio(p, "8:0 Read x\nTotal 5\n", &mut io, true).is_err());
        let e = run_on(
            &mut Cgroup::new(defaults(), Facts::default()),
            &[
                ("sys/fs/cgroup/cgroup.controllers", b"cpu io memory pids\n"),
                (
                    "sys/fs/cgroup/system.slice/bad.service/memory.current",
                    b"\0\0\0",
                ),
            ],
        );
        assert!(err_text(e).contains("bad.service/memory.current"));
    }
}
