//! The floor of the whole-process benchmark (`scripts/bench.py`): a program
//! that reads the same kernel files as procship's default collectors, once
//! per tick, and does nothing with the bytes: no parsing, no encoding, no
//! network. What procship costs above it is the price of being an agent.
//!
//! Like procship it keeps the files open and re-reads them with `pread`,
//! statvfs's each block-device mount of `/proc/1/mountinfo` (read again,
//! as procship does, only when a `poll` of it says the mount table
//! changed), reads `/proc/vmstat` only while `/proc/swaps` lists a swap
//! area or after that list changed (as procship's swap collector), reads
//! every interface's link attributes when a netlink socket subscribed to
//! link changes has a message and once a minute (as procship's netclass
//! does where the interfaces are its namespace's), and asks the clock's
//! state. With `-p` it
//! also walks `/proc/[pid]/stat` (what the `processes` collector reads).
//!
//! With `-n` it reads what procship reads with `PROCSHIP_NAMES=node_exporter`
//! instead: every interface's attributes node_exporter's netclass reads
//! (`lo` included: about 22 a link instead of 6) and the entropy pool's
//! size besides the rest.
//!
//! With `-c DIR` it also reads, each tick, the files procship's `cgroup`
//! collector reads (cgroup v2) of every group directly under DIR (a slice
//! such as `/sys/fs/cgroup/system.slice`), opened once, and lists DIR, as
//! the collector lists its slice each cycle to find a new group (open,
//! `getdents` into a kept buffer, close).
//!
//! With `-u PORT` it is the floor of a push agent instead: after the reads,
//! one POST of `-b BYTES` (default 2,200: a gzip'd batch of the default
//! collectors) to 127.0.0.1:PORT over one kept-alive connection, one
//! `write` of head and body and `read`s until the reply's head has come
//! (the benchmark's sink answers 204 with no body). No encoding, no second
//! thread: what any agent pays to hand the bytes to the kernel and hear
//! back.
//!
//!     cargo build --release --example floor
//!     target/release/examples/floor [-p] [-n] [-c DIR] [-i MILLISECONDS] [-e] [-u PORT [-b BYTES] [-t]]   # until killed

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

const FILES: &[&str] = &[
    "/proc/stat",
    "/proc/meminfo",
    "/proc/diskstats",
    "/proc/net/dev",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/sys/kernel/random/entropy_avail",
    "/proc/pressure/cpu",
    "/proc/pressure/memory",
    "/proc/pressure/io",
    "/proc/softirqs",
    "/proc/sys/fs/file-nr",
    "/proc/sys/net/netfilter/nf_conntrack_count",
    "/proc/sys/net/netfilter/nf_conntrack_max",
];

/// The attributes `netclass` reads of every interface but `lo`.
const LINK_ATTRS: &[&str] = &[
    "operstate",
    "carrier",
    "speed",
    "mtu",
    "duplex",
    "carrier_changes",
];

/// What `netclass` reads of every interface, `lo` included, with
/// node_exporter's names (its `NODE_INFO` and `NODE_ATTRS`).
const NODE_LINK_ATTRS: &[&str] = &[
    "address",
    "broadcast",
    "duplex",
    "ifalias",
    "operstate",
    "addr_assign_type",
    "carrier",
    "carrier_changes",
    "carrier_up_count",
    "carrier_down_count",
    "dev_id",
    "dormant",
    "flags",
    "ifindex",
    "iflink",
    "link_mode",
    "mtu",
    "name_assign_type",
    "netdev_group",
    "speed",
    "tx_queue_len",
    "type",
];

/// Every interface's link attributes under /sys/class/net, opened once:
/// `LINK_ATTRS` but of `lo`, or with `node` `NODE_LINK_ATTRS` of all.
fn link_files(node: bool) -> Vec<File> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let attrs = if node { NODE_LINK_ATTRS } else { LINK_ATTRS };
    let mut files = Vec::new();
    for entry in dir.flatten().filter(|e| node || e.file_name() != "lo") {
        for attr in attrs {
            if let Ok(f) = File::open(entry.path().join(attr)) {
                files.push(f);
            }
        }
    }
    files
}

/// The link attributes, read when rtnetlink announced a link change (any
/// message on a socket subscribed to its link group) and every minute.
struct Links {
    files: Vec<File>,
    notices: Option<std::os::fd::OwnedFd>,
    read: Option<Instant>,
}

impl Links {
    fn open(node: bool) -> Links {
        use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
        use std::os::fd::AsRawFd;
        let notices = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .ok()
        .filter(|fd| {
            let link = NetlinkAddr::new(0, nix::libc::RTMGRP_LINK as u32);
            nix::sys::socket::bind(fd.as_raw_fd(), &link).is_ok()
        });
        Links {
            files: link_files(node),
            notices,
            read: None,
        }
    }

    fn tick(&mut self, buf: &mut [u8]) {
        use std::os::fd::AsRawFd;
        let noticed = self.notices.as_ref().is_none_or(|fd| {
            let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            (0..256)
                .map(|_| nix::sys::socket::recv(fd.as_raw_fd(), buf, flags))
                .take_while(|r| *r != Err(nix::errno::Errno::EAGAIN))
                .count()
                > 0
        });
        if noticed
            || self
                .read
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            for f in &self.files {
                read_all(f, buf);
            }
            self.read = Some(Instant::now());
        }
    }
}

/// The files the `cgroup` collector reads of a v2 group.
const CGROUP_FILES: &[&str] = &[
    "cpu.stat",
    "memory.current",
    "memory.peak",
    "pids.current",
    "io.stat",
];

/// The cgroup files of every group directly under `slice`, opened once.
fn cgroup_files(slice: &str) -> Vec<File> {
    let Ok(dir) = std::fs::read_dir(slice) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in dir.flatten().filter(|e| e.path().is_dir()) {
        for name in CGROUP_FILES {
            if let Ok(f) = File::open(entry.path().join(name)) {
                files.push(f);
            }
        }
    }
    files
}

/// Lists `slice` as the `cgroup` collector does each cycle, into `dents`
/// (kept from tick to tick): its subdirectories, counted and dropped.
fn list_groups(slice: &str, dents: &mut Vec<u8>) -> usize {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(dir) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NONBLOCK)
        .open(slice)
    else {
        return 0;
    };
    let mut entries = rustix::fs::RawDir::new(&dir, dents.spare_capacity_mut());
    let mut n = 0;
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." && e.file_type() == rustix::fs::FileType::Directory {
            n += 1;
        }
    }
    n
}

/// The clock's state, read only: the syscall `timex` makes.
fn adjtimex() {
    // SAFETY: all-zero bytes are a valid `timex`; modes 0 changes nothing.
    let mut t: nix::libc::timex = unsafe { std::mem::zeroed() };
    unsafe { nix::libc::adjtimex(&mut t) };
}

/// Reads a file from offset 0; a read that does not fill the space offered
/// is the end (what procship's reader assumes of /proc and sysfs files).
fn read_all(f: &File, buf: &mut [u8]) -> usize {
    let mut off = 0;
    while let Ok(n) = f.read_at(&mut buf[off..], off as u64) {
        off += n;
        if n < buf.len() - (off - n) || off == buf.len() {
            break;
        }
    }
    off
}

/// The mount points whose source is a block device.
fn block_mounts(mountinfo: &[u8]) -> Vec<String> {
    let mut points = Vec::new();
    for line in String::from_utf8_lossy(mountinfo).lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        let source = right.split(' ').nth(1).unwrap_or("");
        if let Some(point) = left
            .split(' ')
            .nth(4)
            .filter(|_| source.starts_with("/dev/"))
        {
            points.push(point.replace("\\040", " "));
        }
    }
    points
}

/// A kept-open /proc file whose poll tells a change (`POLLPRI`): the mount
/// table, the list of swap areas.
struct Watched(Option<File>, bool);

impl Watched {
    fn open(path: &str) -> Watched {
        Watched(File::open(path).ok(), false)
    }

    /// Its text into `buf` when first asked or changed since; else `None`.
    fn changed(&mut self, buf: &mut [u8]) -> Option<usize> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let f = self.0.as_ref()?;
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
        let changed = poll(&mut fds, PollTimeout::ZERO).is_err()
            || fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR));
        let first = !std::mem::replace(&mut self.1, true);
        (changed || first).then(|| read_all(f, buf))
    }
}

/// statvfs of the block-device mounts every tick, the table read again
/// only when it changed.
struct Mounts(Watched, Vec<String>);

impl Mounts {
    fn tick(&mut self, buf: &mut [u8]) {
        if let Some(n) = self.0.changed(buf) {
            self.1 = block_mounts(&buf[..n]);
        }
        for point in &self.1 {
            let _ = nix::sys::statvfs::statvfs(point.as_str());
        }
    }
}

/// /proc/vmstat (for the swap counters) while a swap area is on, and once
/// after each change of their list.
struct Swaps(Watched, bool, Option<File>);

impl Swaps {
    fn tick(&mut self, buf: &mut [u8]) {
        let changed = match self.0.changed(buf) {
            Some(n) => {
                self.1 = buf[..n]
                    .split(|b| *b == b'\n')
                    .skip(1)
                    .any(|l| !l.is_empty());
                true
            }
            None => self.0.0.is_none(),
        };
        if let Some(f) = self.2.as_ref().filter(|_| changed || self.1) {
            read_all(f, buf);
        }
    }
}

fn walk_processes(buf: &mut [u8]) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            if let Ok(f) = File::open(entry.path().join("stat")) {
                read_all(&f, buf);
            }
        }
    }
}

/// One kept-alive connection and the request it sends every tick.
struct Post {
    stream: TcpStream,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl Post {
    fn connect(port: u16, bytes: usize) -> std::io::Result<Post> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "POST /write HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Encoding: gzip\r\n\
             Content-Length: {bytes}\r\n\r\n"
        )
        .into_bytes();
        request.resize(request.len() + bytes, b'x');
        Ok(Post {
            stream,
            request,
            reply: vec![0; 4096],
        })
    }

    /// One write, then reads until the reply's head has ended.
    fn send(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.request)?;
        let mut got = 0;
        while !self.reply[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            if got == self.reply.len() {
                return Err(std::io::Error::other("a reply head over 4 KiB"));
            }
            match self.stream.read(&mut self.reply[got..])? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    }
}

/// Where the POST of a tick is made: here, or by a second thread woken
/// once a tick (`-t`), whose failure ends the process.
enum Sender {
    Here(Post),
    Thread(std::sync::mpsc::SyncSender<()>),
}

impl Sender {
    fn new(mut post: Post, thread: bool) -> Sender {
        if !thread {
            return Sender::Here(post);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = post.send() {
                    eprintln!("floor: POST: {e}");
                    std::process::exit(1);
                }
            }
        });
        Sender::Thread(tx)
    }

    fn send(&mut self) -> std::io::Result<()> {
        match self {
            Sender::Here(post) => post.send(),
            Sender::Thread(tx) => tx
                .send(())
                .map_err(|_| std::io::Error::other("the POST thread ended")),
        }
    }
}

/// The value after `flag`, parsed.
fn arg<T: std::str::FromStr>(args: &[String], flag: &str) -> Option<T> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let procs = args.iter().any(|a| a == "-p");
    let node = args.iter().any(|a| a == "-n");
    let ms = arg(&args, "-i").unwrap_or(1000);
    if args.iter().any(|a| a == "-e") {
        let start = Instant::now();
        for tick in 1u32.. {
            let next = start + Duration::from_millis(ms) * tick;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    let thread = args.iter().any(|a| a == "-t");
    let mut post = match arg::<u16>(&args, "-u") {
        Some(port) => match Post::connect(port, arg(&args, "-b").unwrap_or(2200)) {
            Ok(p) => Some(Sender::new(p, thread)),
            Err(e) => {
                eprintln!("floor: 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        },
        None => None,
    };
    let mut files: Vec<File> = FILES.iter().filter_map(|p| File::open(p).ok()).collect();
    let mut links = Links::open(node);
    if node {
        let pool = "/proc/sys/kernel/random/poolsize";
        files.extend(File::open(pool).ok());
    }
    let slice = arg::<String>(&args, "-c");
    if let Some(slice) = &slice {
        files.extend(cgroup_files(slice));
    }
    let mut dents = Vec::with_capacity(32 * 1024);
    let mut mounts = Mounts(Watched::open("/proc/1/mountinfo"), Vec::new());
    let mut swaps = Swaps(
        Watched::open("/proc/swaps"),
        true,
        File::open("/proc/vmstat").ok(),
    );
    let mut buf = vec![0u8; 1 << 16];
    let start = Instant::now();
    for tick in 1u32.. {
        for f in &files {
            read_all(f, &mut buf);
        }
        if let Some(slice) = &slice {
            std::hint::black_box(list_groups(slice, &mut dents));
        }
        links.tick(&mut buf);
        mounts.tick(&mut buf);
        swaps.tick(&mut buf);
        adjtimex();
        if procs {
            walk_processes(&mut buf);
        }
        if let Some(Err(e)) = post.as_mut().map(Sender::send) {
            eprintln!("floor: POST: {e}");
            std::process::exit(1);
        }
        let next = start + Duration::from_millis(ms) * tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
