//! `disk`: filesystem usage by statvfs of every real mount in the host's
//! mountinfo (tags path, device, fstype, mode; fields as Telegraf's disk:
//! total, free, used, used_percent, inodes_total, inodes_free, inodes_used,
//! inodes_used_percent; `free` is what unprivileged users can use and
//! used_percent = used / (used + free), as `df` shows).
//!
//! Pseudo filesystems are always skipped, `PROCSHIP_DISK_IGNORE_FS` types by
//! default, and a device mounted twice (bind mounts) is reported once.
//! Network filesystems are skipped unless `PROCSHIP_DISK_NETWORK_FS=true`;
//! then their statvfs runs off the main thread, bounded by
//! `PROCSHIP_DISK_STATFS_TIMEOUT`: a mount that does not answer is skipped,
//! with one warning, until its pending call returns.
//!
//! Mounts are read from `<proc>/1/mountinfo`: the host's view, also when
//! the agent runs in a sandbox with mounts of its own (systemd's
//! `ProtectSystem=strict` remounts everything read-only in the service's
//! namespace, which would turn every `mode` tag into `ro`). When pid 1's
//! file cannot be read (hidepid) and `PROCSHIP_HOST_ROOT` is `/`, the
//! agent's own `<proc>/self/mountinfo` is used instead. statvfs is called on
//! `<root>/<mount point>`.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use procfs_core::FromBufRead;
use procfs_core::process::MountInfos;

use super::names::{Help, Names};
use super::{Build, CollectError, Collector, Context, Entry, Files, Setup};
use crate::config::{ConfigError, Values, Var, parse_bool, parse_positive_duration, split_list};
use crate::host::HostPaths;
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry {
    name: "disk",
    on_by_default: true,
    title: "Disk collector",
    vars: VARS,
    build: Build::Configured(|v| Ok(std::sync::Arc::new(Options::parse(v)?))),
    node_help: NODE_HELP,
};

/// node_exporter's filesystem collector: labels device (the mount source,
/// as mounted: `/dev/sda1`), fstype and mountpoint; every mount its default
/// excludes leave (`NODE_MOUNTS_EXCLUDE`, `NODE_FS_TYPES_EXCLUDE`: tmpfs is
/// in, bind mounts each count), network filesystems bounded as here.
const NODE_HELP: &[Help] = &[
    ("node_filesystem_size_bytes", "Filesystem size in bytes."),
    (
        "node_filesystem_free_bytes",
        "Filesystem free space in bytes.",
    ),
    (
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
    ),
    ("node_filesystem_files", "Filesystem total file nodes."),
    (
        "node_filesystem_files_free",
        "Filesystem total free file nodes.",
    ),
    ("node_filesystem_readonly", "Filesystem read-only status."),
    (
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
    ),
];

/// node_exporter's (Debian's build) `--collector.filesystem.mount-points-exclude`.
const NODE_MOUNTS_EXCLUDE: &str =
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's `--collector.filesystem.fs-types-exclude`.
const NODE_FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

pub const VARS: &[Var] = &[
    Var::new(
        "DISK_IGNORE_FS",
        "tmpfs,devtmpfs,devfs,iso9660,overlay,aufs,squashfs,erofs",
        "filesystem types the disk collector skips (pseudo filesystems are always skipped)",
    )
    .live(),
    Var::new(
        "DISK_NETWORK_FS",
        "false",
        "true: also report nfs, cifs, sshfs, ceph, … mounts",
    )
    .live(),
    Var::new(
        "DISK_STATFS_TIMEOUT",
        "2",
        "bound on statvfs of a network filesystem; a mount that hangs is skipped",
    )
    .live(),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub ignore_fs: Vec<String>,
    pub network_fs: bool,
    pub statfs_timeout: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            ignore_fs: v.get("DISK_IGNORE_FS", |s| Ok(split_list(s)))?,
            network_fs: v.get("DISK_NETWORK_FS", parse_bool)?,
            statfs_timeout: v.get("DISK_STATFS_TIMEOUT", parse_positive_duration)?,
        })
    }
}

impl Setup for Options {
    fn build(&self, ctx: &Context) -> Option<Box<dyn Collector>> {
        let mut disk = Disk::new(self, &ctx.paths);
        if ctx.names == Names::NodeExporter {
            disk.node = NodeFilter::new();
        }
        Some(Box::new(disk))
    }
}

const PSEUDO: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "nfsd",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tracefs",
];

const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "sshfs",
    "fuse.sshfs",
    "ceph",
    "fuse.ceph",
    "glusterfs",
    "fuse.glusterfs",
    "lustre",
    "afs",
    "9p",
    "davfs",
    "fuse.s3fs",
    "fuse.rclone",
    "gpfs",
    "beegfs",
    "fuse.mfs",
    "fuse.juicefs",
    "cephfs",
];

pub fn is_network(fstype: &str) -> bool {
    NETWORK.contains(&fstype)
}

/// The statvfs numbers we use, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStats {
    pub total: u64,
    pub free: u64,
    pub used: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

pub fn statfs(path: &Path) -> nix::Result<FsStats> {
    let s = nix::sys::statvfs::statvfs(path)?;
    let frsize = s.fragment_size() as u64;
    let blocks = s.blocks() as u64;
    Ok(FsStats {
        total: blocks.saturating_mul(frsize),
        free: (s.blocks_available() as u64).saturating_mul(frsize),
        used: blocks
            .saturating_sub(s.blocks_free() as u64)
            .saturating_mul(frsize),
        inodes_total: s.files() as u64,
        inodes_free: s.files_free() as u64,
    })
}

/// Undoes the octal escapes mountinfo uses for space, tab, newline and
/// backslash in paths (`\040` …), which procfs-core leaves in place.
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mount that passed the filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub path: PathBuf,
    /// The source without `/dev/` (Telegraf's device tag).
    pub device: String,
    /// The source as mounted (node_exporter's device label).
    pub source: String,
    pub fstype: String,
    pub read_only: bool,
}

/// node_exporter's mount filters, with its names.
pub struct NodeFilter {
    mounts: regex_lite::Regex,
    fs_types: regex_lite::Regex,
}

impl NodeFilter {
    fn new() -> Option<NodeFilter> {
        Some(NodeFilter {
            mounts: regex_lite::Regex::new(NODE_MOUNTS_EXCLUDE).ok()?,
            fs_types: regex_lite::Regex::new(NODE_FS_TYPES_EXCLUDE).ok()?,
        })
    }
}

/// The mounts of a mountinfo text that node_exporter's default excludes
/// leave, every one (no de-duplication by device).
pub fn node_mounts(path: &Path, text: &str, f: &NodeFilter) -> Result<Vec<Mount>, CollectError> {
    if text.trim().is_empty() {
        return Err(CollectError::parse(path, "empty: no mounts"));
    }
    let infos = MountInfos::from_buf_read(Cursor::new(text))
        .map_err(|e| super::procfs_error(path, "mount table", &e))?;
    Ok(infos
        .into_iter()
        .map(|m| {
            let source = unescape_octal(&m.mount_source.unwrap_or_default());
            Mount {
                device: source.strip_prefix("/dev/").unwrap_or(&source).to_string(),
                source,
                read_only: m.mount_options.contains_key("ro"),
                path: PathBuf::from(unescape_octal(&m.mount_point.to_string_lossy())),
                fstype: m.fs_type,
            }
        })
        .filter(|m| {
            !f.fs_types.is_match(&m.fstype) && !f.mounts.is_match(&m.path.to_string_lossy())
        })
        .collect())
}

/// node_exporter's filesystem series are `<NODE_MEASUREMENT>_<field>`.
const NODE_MEASUREMENT: &str = "node_filesystem";

/// A mount's series in node_exporter's names, one point with a field each;
/// `None`: its statvfs failed.
fn node_points(m: &Mount, s: Option<&FsStats>, now: Timestamp, out: &mut Vec<Point>) {
    let field = |name| super::names::field_of(NODE_MEASUREMENT, name);
    let mut p = Point::new(NODE_MEASUREMENT, now)
        .tag("device", m.source.as_str())
        .tag("fstype", m.fstype.as_str())
        .tag("mountpoint", m.path.to_string_lossy())
        .int(
            field("node_filesystem_device_error"),
            i64::from(s.is_none()),
        );
    if let Some(s) = s {
        p = p.int(field("node_filesystem_readonly"), i64::from(m.read_only));
        for (name, v) in [
            ("node_filesystem_size_bytes", s.total),
            ("node_filesystem_free_bytes", s.total.saturating_sub(s.used)),
            ("node_filesystem_avail_bytes", s.free),
            ("node_filesystem_files", s.inodes_total),
            ("node_filesystem_files_free", s.inodes_free),
        ] {
            p = p.uint(field(name), v);
        }
    }
    out.push(p);
}

/// The real mounts of a mountinfo text, filtered and de-duplicated.
pub fn real_mounts(
    path: &Path,
    text: &str,
    ignore_fs: &[String],
    network_fs: bool,
) -> Result<Vec<Mount>, CollectError> {
    if text.trim().is_empty() {
        return Err(CollectError::parse(path, "empty: no mounts"));
    }
    let infos = MountInfos::from_buf_read(Cursor::new(text))
        .map_err(|e| super::procfs_error(path, "mount table", &e))?;
    let mut seen_devices: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for m in infos {
        let fs = m.fs_type.as_str();
        if PSEUDO.contains(&fs)
            || ignore_fs.iter().any(|x| x == fs)
            || (!network_fs && is_network(fs))
        {
            continue;
        }
        if seen_devices.contains(&m.majmin) {
            continue;
        }
        seen_devices.push(m.majmin.clone());
        let source = unescape_octal(&m.mount_source.unwrap_or_default());
        out.push(Mount {
            device: source.strip_prefix("/dev/").unwrap_or(&source).to_string(),
            source: source.clone(),
            read_only: m.mount_options.contains_key("ro"),
            path: PathBuf::from(unescape_octal(&m.mount_point.to_string_lossy())),
            fstype: m.fs_type,
        });
    }
    Ok(out)
}

pub struct Disk {
    root: PathBuf,
    mountinfo: &'static str,
    /// Where to turn when `mountinfo` cannot be read; taken once used.
    fallback: Option<&'static str>,
    ignore_fs: Vec<String>,
    network_fs: bool,
    timeout: Duration,
    /// Network mounts whose statvfs has not answered yet.
    pending: HashMap<PathBuf, mpsc::Receiver<nix::Result<FsStats>>>,
    /// The mountinfo text last parsed and its mounts: read again only when
    /// the kernel says the mount table changed (`Files::proc_if_changed`),
    /// parsed again only when the text did (mounts change rarely; reading
    /// and parsing were most of the collector's cost).
    last_mountinfo: String,
    /// Whether the last cycle's mount table was read and parsed: if not
    /// (the first cycle, a read or parse that failed), it is read whole,
    /// whatever the poll says.
    parsed: bool,
    mounts: Vec<Mount>,
    /// Each mount's path as seen from here (under `root`), in `mounts`' order.
    full: Vec<PathBuf>,
    /// With node_exporter's names: its filters and series.
    node: Option<NodeFilter>,
}

impl Disk {
    pub fn new(opts: &Options, paths: &HostPaths) -> Self {
        Disk {
            root: paths.root.clone(),
            mountinfo: "1/mountinfo",
            fallback: (paths.root == Path::new("/")).then_some("self/mountinfo"),
            ignore_fs: opts.ignore_fs.clone(),
            network_fs: opts.network_fs,
            timeout: opts.statfs_timeout,
            pending: HashMap::new(),
            last_mountinfo: String::new(),
            parsed: false,
            mounts: Vec::new(),
            full: Vec::new(),
            node: None,
        }
    }

    /// Reads the mount table when the kernel says it changed (or the last
    /// cycle's was not read and parsed), and parses it when its text did.
    fn refresh_mounts(&mut self, files: &mut Files) -> Result<(), CollectError> {
        let parsed = std::mem::replace(&mut self.parsed, false);
        if !parsed
            && self.fallback.is_some()
            && let Err(e) = files.proc(self.mountinfo)
            && let Some(own) = self.fallback.take()
        {
            tracing::debug!("{e}; reading the agent's own {own} instead");
            self.mountinfo = own;
        }
        let path = files.proc_path(self.mountinfo);
        let text = if parsed {
            files.proc_if_changed(self.mountinfo)?
        } else {
            Some(files.proc(self.mountinfo)?)
        };
        if let Some(text) = text
            && (text != self.last_mountinfo || self.last_mountinfo.is_empty())
        {
            self.mounts = match &self.node {
                Some(f) => node_mounts(&path, text, f)?,
                None => real_mounts(&path, text, &self.ignore_fs, self.network_fs)?,
            };
            self.last_mountinfo.clear();
            self.last_mountinfo.push_str(text);
            // Where each mount is seen from here: made once per change.
            self.full = self
                .mounts
                .iter()
                .map(|m| self.root.join(m.path.strip_prefix("/").unwrap_or(&m.path)))
                .collect();
        }
        self.parsed = true;
        Ok(())
    }

    /// statvfs in a helper thread, waited for at most `timeout`; `None` while
    /// the mount does not answer.
    fn bounded_statfs(
        &mut self,
        mount: &Path,
        call: impl FnOnce() -> nix::Result<FsStats> + Send + 'static,
    ) -> Option<nix::Result<FsStats>> {
        if let Some(rx) = self.pending.get(mount) {
            match rx.try_recv() {
                Err(mpsc::TryRecvError::Empty) => return None,
                _ => {
                    tracing::info!(mount = %mount.display(), "network filesystem answers statvfs again");
                    self.pending.remove(mount);
                }
            }
        }
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("procship-statfs".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tx.send(call());
            });
        if let Err(e) = spawned {
            tracing::warn!(mount = %mount.display(), "cannot start statvfs thread: {e}");
            return None;
        }
        match rx.recv_timeout(self.timeout) {
            Ok(r) => Some(r),
            Err(_) => {
                tracing::warn!(
                    mount = %mount.display(),
                    timeout = ?self.timeout,
                    "statvfs of a network filesystem did not answer; skipping this mount until it does"
                );
                self.pending.insert(mount.to_path_buf(), rx);
                None
            }
        }
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        self.refresh_mounts(files)?;
        // Taken out for the loop (statvfs of a network mount needs &mut self), put back after.
        let mounts = std::mem::take(&mut self.mounts);
        let fulls = std::mem::take(&mut self.full);
        for (m, full) in mounts.iter().zip(&fulls) {
            let result = if is_network(&m.fstype) {
                let full = full.clone();
                match self.bounded_statfs(&m.path, move || statfs(&full)) {
                    Some(r) => r,
                    None => continue,
                }
            } else {
                statfs(full)
            };
            if self.node.is_some() {
                node_points(m, result.as_ref().ok(), now, out);
                continue;
            }
            let s = match result {
                Ok(s) => s,
                Err(e) => {
                    // Mounts the agent may not see into (another user's FUSE
                    // mount, a container's private mount) are normal: no warning.
                    tracing::debug!(mount = %m.path.display(), "statvfs failed: {e}");
                    continue;
                }
            };
            let pct = |a: u64, b: u64| {
                if a + b == 0 {
                    0.0
                } else {
                    100.0 * a as f64 / (a + b) as f64
                }
            };
            let inodes_used = s.inodes_total.saturating_sub(s.inodes_free);
            out.push(
                Point::new("disk", now)
                    .tag("path", m.path.to_string_lossy())
                    .tag("device", m.device.as_str())
                    .tag("fstype", m.fstype.as_str())
                    .tag("mode", if m.read_only { "ro" } else { "rw" })
                    .uint("total", s.total)
                    .uint("free", s.free)
                    .uint("used", s.used)
                    .gauge("used_percent", pct(s.used, s.free))
                    .uint("inodes_total", s.inodes_total)
                    .uint("inodes_free", s.inodes_free)
                    .uint("inodes_used", inodes_used)
                    .gauge("inodes_used_percent", pct(inodes_used, s.inodes_free)),
            );
        }
        self.mounts = mounts;
        self.full = fulls;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;

    fn defaults() -> Options {
        Options::parse(&mut crate::config::Values::defaults_of(VARS)).unwrap()
    }

    fn mounts(network: bool) -> Vec<Mount> {
        let p = fixture("basic").proc.join("self/mountinfo");
        let text = std::fs::read_to_string(&p).unwrap();
        real_mounts(&p, &text, &defaults().ignore_fs, network).unwrap()
    }

    #[test]
    fn only_real_deduplicated_mounts() {
        let m = mounts(false);
        let paths: Vec<_> = m.iter().map(|m| m.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["/", "/boot", "/data with space"]);
        assert_eq!(m[0].device, "nvme0n1p2");
        assert_eq!(m[0].fstype, "ext4");
        assert!(m[1].read_only);
        let with_net = mounts(true);
        assert!(
            with_net
                .iter()
                .any(|m| m.fstype == "nfs4" && m.path == Path::new("/mnt/nfs"))
        );
    }

    #[test]
    fn node_exporter_filters_and_series() {
        let dir = fixture("basic").proc;
        let text = std::fs::read_to_string(dir.join("1/mountinfo")).unwrap();
        let f = NodeFilter::new().unwrap();
        let m = node_mounts(&dir.join("1/mountinfo"), &text, &f).unwrap();
        let paths: Vec<_> = m.iter().map(|m| m.path.to_str().unwrap()).collect();
        assert!(paths.contains(&"/"), "{paths:?}");
        assert!(
            !paths
                .iter()
                .any(|p| p.starts_with("/proc") || p.starts_with("/sys"))
        );
        assert!(
            !m.iter()
                .any(|m| m.fstype == "overlay" || m.fstype == "devtmpfs")
        );
        assert!(m.iter().all(|m| !m.source.is_empty()));
        let stats = FsStats {
            total: 100,
            free: 40,
            used: 50,
            inodes_total: 10,
            inodes_free: 7,
        };
        let mut out = Vec::new();
        node_points(&m[0], Some(&stats), 1, &mut out);
        let get = |n: &str| series(&out, n, &[]);
        use crate::point::Value::Int;
        assert_eq!(get("node_filesystem_size_bytes"), Some(Int(100)));
        assert_eq!(get("node_filesystem_free_bytes"), Some(Int(50)));
        assert_eq!(get("node_filesystem_avail_bytes"), Some(Int(40)));
        assert_eq!(get("node_filesystem_device_error"), Some(Int(0)));
        assert_eq!(out[0].tag_value("mountpoint"), Some("/"));
        out.clear();
        node_points(&m[0], None, 1, &mut out);
        assert_eq!(
            series_count(&out),
            1,
            "only device_error when statvfs fails"
        );
    }

    #[test]
    fn statvfs_on_the_fixture_root() {
        let pts = run(&mut Disk::new(&defaults(), &fixture("basic")), "basic").unwrap();
        // "/" and "/boot" exist under tests/fixtures/basic/root; the third mount point does not.
        let paths: Vec<_> = pts.iter().map(|p| p.tag_value("path").unwrap()).collect();
        assert_eq!(paths, ["/", "/boot"]);
        assert!(matches!(pts[0].field("total"), Some(crate::point::Value::Int(t)) if t > 0));
    }

    #[test]
    fn hung_network_statfs_is_skipped_until_it_answers() {
        let opts = Options {
            statfs_timeout: Duration::from_millis(100),
            ..defaults()
        };
        let mut d = Disk::new(&opts, &fixture("basic"));
        let (release, gate) = mpsc::channel::<()>();
        let mount = Path::new("/mnt/nfs");
        let t0 = std::time::Instant::now();
        let hung = d.bounded_statfs(mount, move || {
            let _ = gate.recv_timeout(Duration::from_secs(10));
            statfs(Path::new("/"))
        });
        assert!(hung.is_none());
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the cycle waited {:?}",
            t0.elapsed()
        );
        // While the call hangs the mount is skipped at once, without a new thread.
        let t1 = std::time::Instant::now();
        assert!(
            d.bounded_statfs(mount, || panic!("no second call while one hangs"))
                .is_none()
        );
        assert!(t1.elapsed() < Duration::from_millis(50));
        // Once the pending call answers, the mount is measured again.
        release.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(matches!(
            d.bounded_statfs(mount, || statfs(Path::new("/"))),
            Some(Ok(_))
        ));
    }

    #[test]
    fn pid_1_view_first_then_own_mounts() {
        let dir = tempdir();
        let line = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";
        let write = |rel: &str, text: &str| {
            let p = dir.join("proc").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "self/mountinfo",
            &line.replace(" rw,relatime ", " ro,relatime "),
        );
        let paths = HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: PathBuf::from("/"),
        };
        let opts = defaults();
        let mode = |d: &mut Disk| {
            let mut out = Vec::new();
            d.collect(&mut Files::new(paths.clone()), 1, &mut out)
                .unwrap();
            out[0]
                .tags
                .iter()
                .find(|(k, _)| k == "mode")
                .unwrap()
                .1
                .clone()
        };
        let mut own = Disk::new(&opts, &paths);
        assert_eq!(mode(&mut own), "ro", "no pid 1 file: the agent's own view");
        write("1/mountinfo", line);
        let mut host = Disk::new(&opts, &paths);
        assert_eq!(mode(&mut host), "rw", "pid 1's view wins over a sandbox's");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal("/a\\040b\\011c\\134"), "/a b\tc\\");
        assert_eq!(
            unescape_octal("/x\\04"),
            "/x\\04",
            "a cut escape stays as it is"
        );
        assert_eq!(
            unescape_octal("/x\\777y"),
            "/x\\777y",
            "out of byte range stays"
        );
    }

    #[test]
    fn hostile_mountinfo() {
        let p = Path::new("/proc/self/mountinfo");
        assert!(
            real_mounts(p, "", &[], false)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let e = real_mounts(p, "22 1 8:1 / /\n", &[], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mountinfo"), "{e}");
    }
}
