//! Collectors: the `Collector` trait, the registry that builds the ones
//! `PROCSHIP_COLLECTORS` names, the per-cycle file reader they share, and the
//! runner that keeps a failing collector from stopping the others.
//!
//! Collectors read through `Files` (the process walk, the hot spot, reads
//! its per-pid files itself), which resolves paths under
//! `PROCSHIP_HOST_PROC` / `PROCSHIP_HOST_SYS`, bounds how much it reads, reads
//! a file at most once per cycle (`/proc/stat` feeds cpu, system and kernel),
//! and names the file in every error.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{Config, DiskOptions, HostPaths};
use crate::point::{Point, Timestamp};

pub mod cgroup;
pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod kernel;
pub mod kv;
pub mod mem;
pub mod net;
pub mod netstat;
pub mod pressure;
pub mod processes;
pub mod procstat;
pub mod rates;
pub mod stat;
pub mod swap;
pub mod system;
pub mod temp;

/// Every collector, in the order a cycle runs them.
pub const NAMES: &[&str] = &[
    "cpu",
    "mem",
    "swap",
    "diskio",
    "disk",
    "net",
    "system",
    "kernel",
    "processes",
    "pressure",
    "temp",
    "netstat",
    "procstat",
    "cgroup",
];

/// Collectors `all` includes but the default set leaves out: `netstat`
/// makes the kernel walk its whole TCP hash table (~1 ms per file on a
/// host with a large table, whatever the number of sockets).
/// `procstat` walks /proc a second time, as costly as `processes`;
/// `cgroup` reads about five files per service, container and VM.
pub const OFF_BY_DEFAULT: &[&str] = &["netstat", "procstat", "cgroup"];

/// The collectors `PROCSHIP_COLLECTORS=default` runs.
pub fn defaults() -> Vec<&'static str> {
    NAMES
        .iter()
        .copied()
        .filter(|n| !OFF_BY_DEFAULT.contains(n))
        .collect()
}

pub trait Collector: Send {
    fn name(&self) -> &'static str;
    /// Appends this cycle's points. A collector working from deltas may only
    /// prime itself on its first call.
    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError>;
}

/// What went wrong, always with the file it concerns.
#[derive(Debug)]
pub struct CollectError {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    Io(std::io::Error),
    TooLarge(usize),
    Parse(String),
}

impl CollectError {
    pub fn parse(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        CollectError {
            path: path.into(),
            kind: ErrorKind::Parse(msg.into()),
        }
    }

    pub fn io(path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        CollectError {
            path: path.into(),
            kind: ErrorKind::Io(e),
        }
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "{p}: {e}"),
            ErrorKind::TooLarge(n) => write!(f, "{p}: larger than {n} bytes, refusing to read it"),
            ErrorKind::Parse(m) => write!(f, "{p}: {m}"),
        }
    }
}

impl std::error::Error for CollectError {}

/// No /proc or /sys file we read comes near this; a larger one is hostile.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// Reads files for collectors: paths under the configured roots, a size
/// bound, and a per-cycle cache for the files several collectors share.
/// The /proc files read every cycle are kept open and re-read from offset 0
/// (`pread`), as the benchmark floor's keep-open variant does: two syscalls
/// fewer per file and cycle. A handle that fails is dropped and the file is
/// opened again next time.
pub struct Files {
    pub paths: HostPaths,
    open: Vec<(&'static str, File)>,
    cache: Vec<(&'static str, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Files {
    pub fn new(paths: HostPaths) -> Self {
        Files {
            paths,
            open: Vec::new(),
            cache: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Forgets the cached contents (keeping their memory) at the start of a cycle.
    pub fn new_cycle(&mut self) {
        for (_, s) in self.cache.drain(..) {
            self.spare.push(s);
        }
    }

    pub fn proc_path(&self, rel: &str) -> PathBuf {
        self.paths.proc.join(rel)
    }

    pub fn sys_path(&self, rel: &str) -> PathBuf {
        self.paths.sys.join(rel)
    }

    /// A file under the proc root, read at most once per cycle.
    pub fn proc(&mut self, rel: &'static str) -> Result<&str, CollectError> {
        let i = match self.cache.iter().position(|(k, _)| *k == rel) {
            Some(i) => i,
            None => {
                let mut buf = self.spare.pop().unwrap_or_default();
                let path = self.proc_path(rel);
                let result = match self.open.iter().position(|(k, _)| *k == rel) {
                    Some(h) => {
                        let r = fill(&mut buf, |dst, off| self.open[h].1.read_at(dst, off));
                        if r.is_err() {
                            self.open.swap_remove(h);
                        }
                        r
                    }
                    None => match File::open(&path) {
                        Ok(f) => {
                            let r = fill(&mut buf, |dst, off| f.read_at(dst, off));
                            if r.is_ok() {
                                self.open.push((rel, f));
                            }
                            r
                        }
                        Err(e) => Err(FillError::Io(e)),
                    },
                };
                if let Err(e) = result {
                    self.spare.push(buf);
                    return Err(e.into_collect(&path));
                }
                self.cache.push((rel, buf));
                self.cache.len() - 1
            }
        };
        std::str::from_utf8(&self.cache[i].1).map_err(|e| {
            CollectError::parse(
                self.proc_path(rel),
                format!("not UTF-8 text at byte {}", e.valid_up_to()),
            )
        })
    }
}

/// Why a bounded read failed.
enum FillError {
    Io(std::io::Error),
    TooLarge,
}

impl From<std::io::Error> for FillError {
    fn from(e: std::io::Error) -> Self {
        FillError::Io(e)
    }
}

impl FillError {
    fn into_collect(self, path: &Path) -> CollectError {
        match self {
            FillError::Io(e) => CollectError::io(path, e),
            FillError::TooLarge => CollectError {
                path: path.to_path_buf(),
                kind: ErrorKind::TooLarge(MAX_FILE_BYTES),
            },
        }
    }
}

/// Reads a whole file from offset 0 into `buf` through `read_at`. A read
/// that does not fill the space offered is the end: /proc seq_files and
/// sysfs attributes return everything that fits in one read, so no extra
/// read is spent to see end-of-file.
fn fill(
    buf: &mut Vec<u8>,
    mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
) -> Result<(), FillError> {
    buf.clear();
    loop {
        let want = buf.capacity().max(4096) - buf.len();
        let len = buf.len();
        buf.resize(len + want, 0);
        let n = loop {
            match read_at(&mut buf[len..], len as u64) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(len);
                    return Err(e.into());
                }
            }
        };
        buf.truncate(len + n);
        if buf.len() > MAX_FILE_BYTES {
            buf.clear();
            return Err(FillError::TooLarge);
        }
        if n < want {
            return Ok(());
        }
        buf.reserve(buf.len());
    }
}

/// Host facts collectors need that are not in the files they parse; passed
/// in so fixture trees parse the same on every machine.
#[derive(Debug, Clone)]
pub struct Context {
    pub paths: HostPaths,
    pub disk: DiskOptions,
    pub page_size: u64,
    /// `PROCSHIP_RATES`: `_per_sec` fields beside diskio and net counters.
    pub rates: bool,
    /// `PROCSHIP_PROCESS_TOP` and `PROCSHIP_PROCESS_MATCH`.
    pub process: procstat::Options,
    /// `PROCSHIP_CGROUP_SLICES`, `_DEPTH`, `_MAX`.
    pub cgroup: cgroup::Options,
}

impl Context {
    pub fn from_config(cfg: &Config) -> Self {
        Context {
            paths: cfg.paths.clone(),
            disk: cfg.disk.clone(),
            page_size: page_size(),
            rates: cfg.rates,
            process: procstat::Options {
                top: cfg.process_top,
                matcher: cfg.process_match.clone(),
            },
            cgroup: cfg.cgroup.clone(),
        }
    }
}

/// Clock ticks per second (USER_HZ) of /proc's CPU times; 100 if unknown.
pub(crate) fn ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

pub(crate) fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(4096)
}

/// Builds the named collectors (names come validated from the configuration).
pub fn build(names: &[&str], ctx: &Context) -> Vec<Box<dyn Collector>> {
    names
        .iter()
        .filter_map(|name| -> Option<Box<dyn Collector>> {
            Some(match *name {
                "cpu" => Box::new(cpu::Cpu::default()),
                "mem" => Box::new(mem::Mem),
                "swap" => Box::new(swap::Swap::new(ctx.page_size)),
                "diskio" => Box::new(diskio::DiskIo::new(ctx.rates)),
                "disk" => Box::new(disk::Disk::new(ctx)),
                "net" => Box::new(net::Net::new(ctx.rates)),
                "system" => Box::new(system::System),
                "kernel" => Box::new(kernel::Kernel),
                "processes" => Box::new(processes::Processes::default()),
                "pressure" => Box::new(pressure::Pressure::default()),
                "temp" => Box::new(temp::Temp::default()),
                "netstat" => Box::new(netstat::Netstat::default()),
                "procstat" => Box::new(procstat::Procstat::new(ctx.process.clone(), ctx.page_size)),
                "cgroup" => Box::new(cgroup::Cgroup::new(ctx.cgroup.clone())),
                _ => return None,
            })
        })
        .collect()
}

/// How often a collector that keeps failing the same way is logged again.
const REPEAT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

struct Health {
    failures: u64,
    last_logged: Option<Instant>,
    last_message: String,
}

/// Runs the collectors of one cycle; a failing one is logged (at most once
/// per ten minutes while it fails the same way) and the others go on.
pub struct Runner {
    pub files: Files,
    collectors: Vec<(Box<dyn Collector>, Health)>,
}

impl Runner {
    pub fn new(collectors: Vec<Box<dyn Collector>>, paths: HostPaths) -> Self {
        Runner {
            files: Files::new(paths),
            collectors: collectors
                .into_iter()
                .map(|c| {
                    (
                        c,
                        Health {
                            failures: 0,
                            last_logged: None,
                            last_message: String::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Runs every collector once; returns how many failed.
    pub fn collect(&mut self, now: Timestamp, out: &mut Vec<Point>) -> usize {
        self.files.new_cycle();
        let mut failed = 0;
        for (c, health) in &mut self.collectors {
            match c.collect(&mut self.files, now, out) {
                Ok(()) => {
                    if health.failures > 0 {
                        tracing::info!(
                            collector = c.name(),
                            failures = health.failures,
                            "collector recovered"
                        );
                    }
                    health.failures = 0;
                    health.last_logged = None;
                }
                Err(e) => {
                    failed += 1;
                    health.failures += 1;
                    let msg = e.to_string();
                    let due = health
                        .last_logged
                        .is_none_or(|t| t.elapsed() >= REPEAT_LOG_EVERY);
                    if due || msg != health.last_message {
                        tracing::warn!(
                            collector = c.name(),
                            failures = health.failures,
                            "collector failed, the others go on: {msg}"
                        );
                        health.last_logged = Some(Instant::now());
                        health.last_message = msg;
                    }
                }
            }
        }
        failed
    }
}

/// A procfs-core parse error as one clear line; its own text (multi-line,
/// pointing at procfs internals) goes to the debug log only.
pub fn procfs_error(path: &Path, what: &str, e: &procfs_core::ProcError) -> CollectError {
    tracing::debug!(path = %path.display(), "procfs-core: {e}");
    CollectError::parse(
        path,
        format!("{what}: malformed (truncated or damaged file?)"),
    )
}

/// Parses a decimal field, naming it in the error.
pub fn num<T: std::str::FromStr>(
    path: &Path,
    what: &str,
    s: Option<&str>,
) -> Result<T, CollectError> {
    let s =
        s.ok_or_else(|| CollectError::parse(path, format!("{what}: missing (file truncated?)")))?;
    s.parse()
        .map_err(|_| CollectError::parse(path, format!("{what}: {s:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that serves `data` as a seq_file does (all that fits in
    /// each read), failing with EINTR once first.
    fn source(data: &[u8]) -> impl FnMut(&mut [u8], u64) -> std::io::Result<usize> + '_ {
        let mut interrupted = false;
        move |dst, off| {
            if !interrupted {
                interrupted = true;
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let off = off as usize;
            let n = dst.len().min(data.len().saturating_sub(off));
            dst[..n].copy_from_slice(&data[off..off + n]);
            Ok(n)
        }
    }

    #[test]
    fn fill_reads_whole_files_of_any_size() {
        for size in [0, 10, 4095, 4096, 4097, 100_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut buf = Vec::new();
            assert!(fill(&mut buf, source(&data)).is_ok());
            assert_eq!(buf, data, "size {size}");
        }
    }

    #[test]
    fn fill_bounds_the_size_and_reports_errors() {
        let huge = vec![b'x'; MAX_FILE_BYTES + 1];
        let mut buf = Vec::new();
        assert!(matches!(
            fill(&mut buf, source(&huge)),
            Err(FillError::TooLarge)
        ));
        assert!(buf.is_empty());
        let failing = |_: &mut [u8], _: u64| -> std::io::Result<usize> {
            Err(std::io::ErrorKind::PermissionDenied.into())
        };
        assert!(matches!(fill(&mut buf, failing), Err(FillError::Io(_))));
    }

    #[test]
    fn cached_files_are_read_once_per_cycle_and_reread_next_cycle() {
        let dir = testutil::tempdir();
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::write(dir.join("proc/loadavg"), "1 2 3").unwrap();
        let mut f = Files::new(HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: dir.clone(),
        });
        assert_eq!(f.proc("loadavg").unwrap(), "1 2 3");
        std::fs::write(dir.join("proc/loadavg"), "4 5 6 7").unwrap();
        assert_eq!(f.proc("loadavg").unwrap(), "1 2 3", "cached within a cycle");
        f.new_cycle();
        assert_eq!(
            f.proc("loadavg").unwrap(),
            "4 5 6 7",
            "the kept-open handle sees new contents"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        f.new_cycle();
        assert!(
            f.proc("loadavg").is_ok(),
            "an unlinked file's open handle still reads"
        );
        assert!(
            f.proc("stat")
                .unwrap_err()
                .to_string()
                .contains("No such file")
        );
    }
}

#[cfg(test)]
pub mod testutil {
    //! Helpers to run a collector on a fixture tree under tests/fixtures.
    use super::*;

    pub fn fixture(case: &str) -> HostPaths {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(case);
        HostPaths {
            proc: base.join("proc"),
            sys: base.join("sys"),
            root: base.join("root"),
        }
    }

    pub fn run(c: &mut dyn Collector, case: &str) -> Result<Vec<Point>, CollectError> {
        let mut files = Files::new(fixture(case));
        let mut out = Vec::new();
        c.collect(&mut files, 1_000, &mut out)?;
        Ok(out)
    }

    /// Runs a collector on a tree written into a fresh temporary directory:
    /// `files` are (path under the tree, contents).
    pub fn run_on(
        c: &mut dyn Collector,
        files: &[(&str, &[u8])],
    ) -> Result<Vec<Point>, CollectError> {
        let dir = tempdir();
        for (rel, data) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        }
        let paths = HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: dir.join("root"),
        };
        let mut f = Files::new(paths);
        let mut out = Vec::new();
        let r = c.collect(&mut f, 1_000, &mut out).map(|_| out);
        std::fs::remove_dir_all(&dir).ok();
        r
    }

    pub fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "procship-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn err_text(r: Result<Vec<Point>, CollectError>) -> String {
        match r {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.to_string(),
        }
    }
}
