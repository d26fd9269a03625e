//! Collectors: the `Collector` trait, the registry (one row per collector,
//! `REGISTRY`, each row defined in the collector's own file with its
//! variables and how it is built), `PROCSHIP_COLLECTORS` and
//! `PROCSHIP_RATES`, the per-cycle file reader they share, and the runner
//! that keeps a failing collector from stopping the others.
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
use std::sync::Arc;
use std::time::Instant;

use crate::config::{ConfigError, Values, Var, parse_bool};
use crate::host::{Facts, HostPaths};
use crate::point::{Point, Timestamp};

pub mod cgroup;
pub mod conntrack;
pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod exec;
pub mod filefd;
pub mod info;
pub mod kernel;
pub mod kv;
pub mod mem;
pub mod names;
pub mod net;
pub mod netclass;
pub mod netstat;
pub mod pressure;
pub mod processes;
pub mod procstat;
pub mod rates;
pub mod site;
pub mod softirqs;
pub mod stat;
pub mod swap;
pub mod system;
pub mod temp;
pub mod textfile;
pub mod timex;
pub mod vmstat;

/// Every collector, in the order a cycle runs them: one row each.
pub const REGISTRY: &[Entry] = &[
    cpu::ENTRY,
    mem::ENTRY,
    swap::ENTRY,
    diskio::ENTRY,
    disk::ENTRY,
    net::ENTRY,
    netclass::ENTRY,
    system::ENTRY,
    kernel::ENTRY,
    softirqs::ENTRY,
    processes::ENTRY,
    pressure::ENTRY,
    temp::ENTRY,
    netstat::ENTRY,
    procstat::ENTRY,
    cgroup::ENTRY,
    filefd::ENTRY,
    conntrack::ENTRY,
    vmstat::ENTRY,
    timex::ENTRY,
    info::ENTRY,
    textfile::ENTRY,
    exec::ENTRY,
];

/// A collector's row: its name, whether the default set runs it, its own
/// variables (a section of `.env.example` titled `title`), and how it is built.
pub struct Entry {
    pub name: &'static str,
    pub on_by_default: bool,
    pub title: &'static str,
    pub vars: &'static [Var],
    pub build: Build,
    /// The help texts of its node_exporter series (`PROCSHIP_NAMES`).
    pub node_help: &'static [names::Help],
}

/// How a collector is built.
pub enum Build {
    /// From the host facts alone.
    Plain(fn(&Context) -> Box<dyn Collector>),
    /// From its own options, parsed (and validated) from its variables.
    Configured(fn(&mut Values) -> Result<Arc<dyn Setup>, ConfigError>),
}

impl Entry {
    /// A collector on by default, without variables.
    pub const fn plain(name: &'static str, build: fn(&Context) -> Box<dyn Collector>) -> Entry {
        Entry {
            name,
            on_by_default: true,
            title: "",
            vars: &[],
            build: Build::Plain(build),
            node_help: &[],
        }
    }

    /// The same row, with the help texts of its node_exporter series.
    pub const fn node_help(self, node_help: &'static [names::Help]) -> Entry {
        Entry { node_help, ..self }
    }

    /// The same row, left out of the default set (`all` or `+name` runs it).
    pub const fn off_by_default(self) -> Entry {
        Entry {
            on_by_default: false,
            ..self
        }
    }

    /// Parses this collector's variables (whether it runs or not: a typo is
    /// an error either way) into what builds it.
    pub fn setup(&'static self, v: &mut Values) -> Result<Arc<dyn Setup>, ConfigError> {
        match self.build {
            Build::Plain(build) => Ok(Arc::new(PlainSetup(build))),
            Build::Configured(setup) => setup(v),
        }
    }
}

/// A collector's validated options: what builds it for a run.
pub trait Setup: fmt::Debug + Send + Sync {
    /// `None` when these options leave nothing to collect (a collector of
    /// the site's files whose directory is not set).
    fn build(&self, ctx: &Context) -> Option<Box<dyn Collector>>;
}

struct PlainSetup(fn(&Context) -> Box<dyn Collector>);

impl fmt::Debug for PlainSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no options")
    }
}

impl Setup for PlainSetup {
    fn build(&self, ctx: &Context) -> Option<Box<dyn Collector>> {
        Some((self.0)(ctx))
    }
}

pub const VARS: &[Var] = &[
    Var::new("COLLECTORS", "default", "collectors to run: default, all, or a list such as cpu,mem,net; -name removes one, +name adds one off by default (see README, Collectors)").live(),
    Var::new(
        "RATES",
        "false",
        "true: add <counter>_per_sec fields to diskio and net points (for backends that cannot compute rates)",
    )
    .live(),
];

/// A collector chosen to run, with its options.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub entry: &'static Entry,
    setup: Arc<dyn Setup>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What `PROCSHIP_COLLECTORS`, `PROCSHIP_RATES` and every collector's own
/// variables ask for.
#[derive(Debug, Clone)]
pub struct Options {
    pub chosen: Vec<Chosen>,
    pub rates: bool,
    /// `PROCSHIP_NAMES`, `PROCSHIP_JOB`, `PROCSHIP_INSTANCE`.
    pub names: names::Options,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let wanted = v.get("COLLECTORS", parse_collectors)?;
        let rates = v.get("RATES", parse_bool)?;
        let names = names::Options::parse(v)?;
        let mut chosen = Vec::new();
        for entry in REGISTRY {
            let setup = entry.setup(v)?;
            if wanted.contains(&entry.name) {
                chosen.push(Chosen { entry, setup });
            }
        }
        Ok(Options {
            chosen,
            rates,
            names,
        })
    }

    /// The names of the chosen collectors, in the order they run.
    pub fn names(&self) -> Vec<&'static str> {
        self.chosen.iter().map(|c| c.entry.name).collect()
    }

    /// Builds the chosen collectors for a run on `ctx`'s host.
    pub fn build(&self, ctx: &Context) -> Vec<Box<dyn Collector>> {
        self.chosen
            .iter()
            .filter_map(|c| c.setup.build(ctx))
            .collect()
    }
}

/// The collectors `PROCSHIP_COLLECTORS=default` runs.
pub fn defaults() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|e| e.on_by_default)
        .map(|e| e.name)
        .collect()
}

fn parse_collectors(s: &str) -> Result<Vec<&'static str>, String> {
    let all = || REGISTRY.iter().map(|e| e.name);
    let known = |name: &str| all().find(|n| *n == name).ok_or_else(accepted_collectors);
    let mut chosen: Vec<&'static str> = Vec::new();
    for (i, item) in s.split(',').map(str::trim).enumerate() {
        if item == "all" {
            chosen = all().collect();
        } else if item == "default" {
            chosen = defaults();
        } else if let Some(name) = item.strip_prefix('-') {
            if i == 0 {
                chosen = defaults();
            }
            let name = known(name)?;
            chosen.retain(|n| *n != name);
        } else {
            let name = known(item.strip_prefix('+').unwrap_or(item))?;
            if !chosen.contains(&name) {
                chosen.push(name);
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("at least one collector; {}", accepted_collectors()));
    }
    // Run them in the registry's order, whatever order they were named in.
    chosen.sort_by_key(|n| all().position(|x| x == *n));
    Ok(chosen)
}

fn accepted_collectors() -> String {
    let list = |on: bool| {
        REGISTRY
            .iter()
            .filter(|e| e.on_by_default == on)
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "default ({}), all (also {}), or a comma-separated list of names (a leading - removes one, as in default,-processes; a name adds one, as in default,netstat)",
        list(true),
        list(false)
    )
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
    /// How many pieces (sensors, lines, devices, fields) the cycle lost:
    /// 1 for a collector that failed whole, more when `Partial` went on.
    pub skipped: u32,
    /// The files of the next few pieces skipped (at most `ALSO_NAMED`).
    pub also: Vec<PathBuf>,
}

/// How many files of the pieces skipped after the first an error names.
pub const ALSO_NAMED: usize = 2;

#[derive(Debug)]
pub enum ErrorKind {
    Io(std::io::Error),
    TooLarge(usize),
    Parse(String),
}

impl CollectError {
    /// A parse error; the message is cut to `MAX_MESSAGE` bytes, so a
    /// hostile value it quotes (a megabyte-long number) cannot make a
    /// megabyte-long log line.
    pub fn parse(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        CollectError {
            path: path.as_ref().to_path_buf(),
            kind: ErrorKind::Parse(clip(msg.into())),
            skipped: 1,
            also: Vec::new(),
        }
    }

    /// True when the file is not there (a kernel without the feature).
    pub fn is_not_found(&self) -> bool {
        matches!(&self.kind, ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    pub fn io(path: impl AsRef<Path>, e: std::io::Error) -> Self {
        CollectError {
            path: path.as_ref().to_path_buf(),
            kind: ErrorKind::Io(e),
            skipped: 1,
            also: Vec::new(),
        }
    }
}

/// The longest parse message kept.
pub const MAX_MESSAGE: usize = 160;

/// `msg` cut to `MAX_MESSAGE` bytes on a character boundary, with "…" (and
/// how long it was) where it was cut.
fn clip(mut msg: String) -> String {
    if msg.len() <= MAX_MESSAGE {
        return msg;
    }
    let len = msg.len();
    let mut at = MAX_MESSAGE;
    while !msg.is_char_boundary(at) {
        at -= 1;
    }
    msg.truncate(at);
    msg.push_str(&format!("… ({len} bytes)"));
    msg
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "{p}: {e}"),
            ErrorKind::TooLarge(n) => write!(f, "{p}: larger than {n} bytes, refusing to read it"),
            ErrorKind::Parse(m) => write!(f, "{p}: {m}"),
        }?;
        match self.skipped {
            0 | 1 => Ok(()),
            n => {
                write!(f, " (and {} more pieces skipped", n - 1)?;
                for (i, p) in self.also.iter().enumerate() {
                    let sep = if i == 0 { ": " } else { ", " };
                    write!(f, "{sep}{}", p.display())?;
                }
                if self.also.len() + 1 < n as usize {
                    f.write_str(", …")?;
                }
                f.write_str(")")
            }
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
    /// The kept-open handles: `rel`, the file, and whether it is procfs's
    /// own (known once `proc_if_changed` asks; only then is its poll a
    /// change notice).
    open: Vec<(&'static str, File, Option<bool>)>,
    /// This cycle's contents: `buf[..len]` of each file read.
    cache: Vec<(&'static str, Vec<u8>, usize)>,
    spare: Vec<Vec<u8>>,
    /// Paths made for error messages (`proc_path`, `sys_path`): under sys?, rel, path.
    named: std::cell::RefCell<Vec<(bool, &'static str, Arc<Path>)>>,
}

impl Files {
    pub fn new(paths: HostPaths) -> Self {
        Files {
            paths,
            open: Vec::new(),
            cache: Vec::new(),
            spare: Vec::new(),
            named: Default::default(),
        }
    }

    /// Forgets the cached contents (keeping their memory) at the start of a cycle.
    pub fn new_cycle(&mut self) {
        for (_, s, _) in self.cache.drain(..) {
            self.spare.push(s);
        }
    }

    /// `rel` under the proc root, for error messages: made once per file
    /// and shared (a steady cycle allocates no path).
    pub fn proc_path(&self, rel: &'static str) -> Arc<Path> {
        self.named(false, rel)
    }

    /// `rel` under the sys root, as `proc_path`.
    pub fn sys_path(&self, rel: &'static str) -> Arc<Path> {
        self.named(true, rel)
    }

    fn named(&self, sys: bool, rel: &'static str) -> Arc<Path> {
        let mut named = self.named.borrow_mut();
        if let Some((_, _, p)) = named.iter().find(|(s, r, _)| *s == sys && *r == rel) {
            return p.clone();
        }
        let root = if sys {
            &self.paths.sys
        } else {
            &self.paths.proc
        };
        let p: Arc<Path> = root.join(rel).into();
        named.push((sys, rel, p.clone()));
        p
    }

    /// A file under the proc root, read at most once per cycle.
    pub fn proc(&mut self, rel: &'static str) -> Result<&str, CollectError> {
        let i = match self.cache.iter().position(|(k, _, _)| *k == rel) {
            Some(i) => i,
            None => self.read(rel)?,
        };
        let (_, buf, len) = &self.cache[i];
        std::str::from_utf8(&buf[..*len]).map_err(|e| {
            CollectError::parse(
                self.proc_path(rel),
                format!("not UTF-8 text at byte {}", e.valid_up_to()),
            )
        })
    }

    /// `rel`'s text if it may have changed since this was last asked, else
    /// `None`: for the files that signal a change to a poller with
    /// `POLLPRI` (the mount tables, `mountinfo`; the list of swap areas,
    /// `swaps`), one `poll` that does not wait instead of a read.
    /// Generating mountinfo is the dearest read of a cycle (~50 µs with 20
    /// mounts, growing with each one) and it changes rarely. Read, and so `Some`, when there is no open handle yet (the
    /// kernel counts changes from the open), when the file is not procfs's
    /// (a fixture tree's regular file cannot tell) or when the poll fails.
    /// Only for files whose kernel side implements that poll: another /proc
    /// file would never report a change.
    pub fn proc_if_changed(&mut self, rel: &'static str) -> Result<Option<&str>, CollectError> {
        let cached = self.cache.iter().any(|(k, ..)| *k == rel);
        if !cached && self.unchanged(rel) {
            return Ok(None);
        }
        self.proc(rel).map(Some)
    }

    /// Whether `rel`'s kept-open handle is procfs's and its poll reports
    /// no change since the last poll (or the open).
    fn unchanged(&mut self, rel: &'static str) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};
        use std::os::fd::AsFd;
        let Some((_, f, procfs)) = self.open.iter_mut().find(|(k, ..)| *k == rel) else {
            return false;
        };
        let procfs = *procfs.get_or_insert_with(|| {
            fstatfs(f.as_fd()).is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
        });
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
        procfs
            && poll(&mut fds, PollTimeout::ZERO).is_ok()
            && !fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR))
    }

    /// Reads `rel` into the cache, through its kept-open handle (opened
    /// on the first read); returns its place in the cache.
    fn read(&mut self, rel: &'static str) -> Result<usize, CollectError> {
        let mut buf = self.spare.pop().unwrap_or_default();
        let result = match self.open.iter().position(|(k, ..)| *k == rel) {
            Some(h) => {
                let r = fill(&mut buf, |dst, off| self.open[h].1.read_at(dst, off));
                if r.is_err() {
                    self.open.swap_remove(h);
                }
                r
            }
            None => match crate::host::open_file(&self.proc_path(rel)) {
                Ok(f) => {
                    let r = fill(&mut buf, |dst, off| f.read_at(dst, off));
                    if r.is_ok() {
                        self.open.push((rel, f, None));
                    }
                    r
                }
                Err(e) => Err(FillError::Io(e)),
            },
        };
        match result {
            Ok(len) => {
                self.cache.push((rel, buf, len));
                Ok(self.cache.len() - 1)
            }
            Err(e) => {
                self.spare.push(buf);
                Err(e.into_collect(&self.proc_path(rel)))
            }
        }
    }
}

/// An empty vector for items of another lifetime (or type of the same
/// layout) in `v`'s memory: a parser's borrowed lines of this cycle kept in
/// the last cycle's vector. The standard library collects a vector's own
/// iterator in place when the layouts match, so this allocates nothing
/// (the allocation test holds it to that).
pub fn recycle_vec<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// All of a small file of the host's trees, as text: opened so that it
/// cannot block (`host::open_file`) and read to at most `MAX_FILE_BYTES`.
pub fn read_text(path: &Path) -> Result<String, CollectError> {
    let f = crate::host::open_file(path).map_err(|e| CollectError::io(path, e))?;
    let mut buf = Vec::new();
    let len = fill(&mut buf, |dst, off| f.read_at(dst, off)).map_err(|e| e.into_collect(path))?;
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| {
        CollectError::parse(
            path,
            format!("not UTF-8 text at byte {}", e.utf8_error().valid_up_to()),
        )
    })
}

/// A kept-open file of the host's trees read again from its start into
/// `buf` (reused: no allocation once it is large enough), as text, to at
/// most `MAX_FILE_BYTES`; `path` names it in errors.
pub fn reread<'b>(f: &File, path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b str, CollectError> {
    let len = fill(buf, |dst, off| f.read_at(dst, off)).map_err(|e| e.into_collect(path))?;
    std::str::from_utf8(&buf[..len]).map_err(|e| {
        CollectError::parse(path, format!("not UTF-8 text at byte {}", e.valid_up_to()))
    })
}

/// A directory of the host's trees, opened as one (`O_DIRECTORY`: a FIFO
/// in its place is refused at once, never waited on).
pub fn open_dir(path: &Path) -> Result<File, CollectError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| CollectError::io(path, e))
}

/// Why a bounded read failed.
#[derive(Debug)]
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
                skipped: 1,
                also: Vec::new(),
            },
        }
    }
}

/// Reads a whole file from offset 0 into `buf` through `read_at`; its
/// contents are `buf[..n]` for the `n` returned. A read that does not fill
/// the space offered is the end: /proc seq_files and sysfs attributes
/// return everything that fits in one read, so no extra read is spent to
/// see end-of-file. `buf` keeps its length (zeroed once, when it grows) from
/// one read to the next: a steady cycle neither allocates nor clears it.
fn fill(
    buf: &mut Vec<u8>,
    mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
) -> Result<usize, FillError> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        let want = buf.len() - len;
        let n = loop {
            match read_at(&mut buf[len..], len as u64) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        len += n;
        if len > MAX_FILE_BYTES {
            *buf = Vec::new(); // not kept: megabytes of a hostile file
            return Err(FillError::TooLarge);
        }
        if n < want {
            return Ok(len);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// What a collector is built with: where the host is seen from, its facts
/// (passed in, so fixture trees parse the same on every machine), and
/// `PROCSHIP_RATES`.
#[derive(Debug, Clone)]
pub struct Context {
    pub paths: HostPaths,
    pub facts: Facts,
    /// `_per_sec` fields beside diskio and net counters.
    pub rates: bool,
    /// Whose series names (`PROCSHIP_NAMES`).
    pub names: names::Names,
}

/// How often a collector that keeps failing the same way is logged again.
pub const REPEAT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// A message said again only when it changes, or every ten minutes while
/// it lasts: the rule for every warning that repeats (a failing collector,
/// a broken textfile, a failing command).
#[derive(Debug, Default)]
pub struct Notice {
    said: Option<(String, Instant)>,
    /// Occurrences counted by `tally` since it last said.
    held: u64,
}

impl Notice {
    /// Whether `message` is due to be said now; remembered when it is.
    pub fn due(&mut self, message: &str) -> bool {
        let due = self
            .said
            .as_ref()
            .is_none_or(|(m, at)| m != message || at.elapsed() >= REPEAT_LOG_EVERY);
        if due {
            self.said = Some((message.to_string(), Instant::now()));
        }
        due
    }

    /// For a condition without a changing message (a slow cycle): counts
    /// `times` more; `Some(count since last said)` when it is due.
    pub fn tally(&mut self, times: u64) -> Option<u64> {
        self.held += times;
        self.due("").then(|| std::mem::take(&mut self.held))
    }

    /// The condition is over: the next message is said at once. True when
    /// something was being said.
    pub fn clear(&mut self) -> bool {
        self.said.take().is_some()
    }
}

#[derive(Default)]
struct Health {
    failures: u64,
    notice: Notice,
}

/// How one collector's last cycle went: what the agent's own
/// `agent_collector` point reports for it (node_exporter's
/// `scrape_collector_success` and `_duration_seconds` are the model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub name: &'static str,
    /// It returned without an error.
    pub ok: bool,
    /// Pieces it lost (`CollectError::skipped`); 0 when `ok`.
    pub skipped: u32,
    /// Points it pushed, a partial failure's included.
    pub points: u32,
    pub took: std::time::Duration,
}

/// Runs the collectors of one cycle; a failing one is logged (at most once
/// per ten minutes while it fails the same way) and the others go on.
pub struct Runner {
    pub files: Files,
    collectors: Vec<(Box<dyn Collector>, Health)>,
    /// Each collector's last cycle, in the order they run.
    outcomes: Vec<Outcome>,
    /// Where the collector running now is published (`Stats::collecting`).
    stats: Option<std::sync::Arc<crate::stats::Stats>>,
}

impl Runner {
    pub fn new(collectors: Vec<Box<dyn Collector>>, paths: HostPaths) -> Self {
        Runner {
            files: Files::new(paths),
            outcomes: Vec::with_capacity(collectors.len()),
            collectors: collectors
                .into_iter()
                .map(|c| (c, Health::default()))
                .collect(),
            stats: None,
        }
    }

    /// Publishes the collector running now in `stats` (for the health verdict).
    pub fn report_to(mut self, stats: std::sync::Arc<crate::stats::Stats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// How each collector's last cycle went.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// Runs every collector once; returns how many failed.
    pub fn collect(&mut self, now: Timestamp, out: &mut Vec<Point>) -> usize {
        self.files.new_cycle();
        self.outcomes.clear();
        // A collector's start in ns since the epoch is counted from the
        // cycle's (one wall-clock read a cycle, not one a collector).
        let (first, first_ns) = (Instant::now(), crate::point::now_ns());
        for (c, health) in &mut self.collectors {
            let (started, before) = (Instant::now(), out.len());
            if let Some(s) = &self.stats {
                let since = i64::try_from((started - first).as_nanos()).unwrap_or(i64::MAX);
                s.collecting.start(c.name(), first_ns.saturating_add(since));
            }
            let result = c.collect(&mut self.files, now, out);
            let took = started.elapsed();
            if let Some(s) = &self.stats {
                s.collecting.done();
            }
            self.outcomes.push(Outcome {
                name: c.name(),
                ok: result.is_ok(),
                skipped: result.as_ref().err().map_or(0, |e| e.skipped),
                points: u32::try_from(out.len() - before).unwrap_or(u32::MAX),
                took,
            });
            health.judge(c.name(), result);
        }
        self.outcomes.iter().filter(|o| !o.ok).count()
    }
}

impl Health {
    /// Logs a failure (when due) or a recovery.
    fn judge(&mut self, name: &str, result: Result<(), CollectError>) {
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(
                        collector = name,
                        failures = self.failures,
                        "collector recovered"
                    );
                }
                self.failures = 0;
                self.notice.clear();
            }
            Err(e) => {
                self.failures += 1;
                let msg = e.to_string();
                if self.notice.due(&msg) {
                    tracing::warn!(
                        collector = name,
                        failures = self.failures,
                        "collector failed, the others go on: {msg}"
                    );
                }
            }
        }
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

/// The rule of a collector that goes on past a bad piece (a sensor, a
/// line, a file, a field): it keeps the first error and reports it after
/// everything else went out (the runner keeps what was pushed).
#[derive(Debug, Default)]
pub struct Partial {
    first: Option<CollectError>,
    count: u32,
}

impl Partial {
    /// How many errors were met so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The value, or `None` with the error kept (the first one wins).
    pub fn keep<T>(&mut self, r: Result<T, CollectError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.note(|| e);
                None
            }
        }
    }

    /// An error met along the way (kept if it is the first, its file named
    /// if it is one of the next few, counted always).
    pub fn note(&mut self, e: impl FnOnce() -> CollectError) {
        self.count = self.count.saturating_add(1);
        match &mut self.first {
            None => self.first = Some(e()),
            Some(first) if first.also.len() < ALSO_NAMED => {
                let path = e().path;
                if path != first.path && !first.also.contains(&path) {
                    first.also.push(path);
                }
            }
            Some(_) => {}
        }
    }

    /// The end of the cycle: the first error, if any, with how many pieces
    /// were skipped in all.
    pub fn result(self) -> Result<(), CollectError> {
        match self.first {
            None => Ok(()),
            Some(mut e) => {
                e.skipped = self.count;
                Err(e)
            }
        }
    }

    /// The same, after `p` went out if it got any field.
    pub fn push(self, p: Point, out: &mut Vec<Point>) -> Result<(), CollectError> {
        if !p.fields.is_empty() {
            out.push(p);
        }
        self.result()
    }
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
    fn collector_lists() {
        assert_eq!(
            parse_collectors("net, cpu,cpu").unwrap(),
            vec!["cpu", "net"]
        );
        let all_but = parse_collectors("-processes").unwrap();
        assert!(!all_but.contains(&"processes") && all_but.contains(&"cpu"));
        assert_eq!(
            all_but.len(),
            defaults().len() - 1,
            "removals start from the default set"
        );
        let all = parse_collectors("all").unwrap();
        assert_eq!(all.len(), REGISTRY.len());
        let off = REGISTRY.iter().find(|e| !e.on_by_default).unwrap().name;
        for s in [format!("default,{off}"), format!("default,+{off}")] {
            let c = parse_collectors(&s).unwrap();
            assert_eq!(c.len(), defaults().len() + 1, "{s}");
        }
        let none: Vec<String> = REGISTRY.iter().map(|e| format!("-{}", e.name)).collect();
        assert!(
            parse_collectors(&none.join(","))
                .unwrap_err()
                .starts_with("at least one")
        );
        let unknown = parse_collectors("cpu,gpu").unwrap_err();
        for e in REGISTRY {
            assert!(unknown.contains(e.name), "{unknown} lacks {}", e.name);
        }
    }

    #[test]
    fn every_row_builds_and_names_its_collector() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len(), "names are unique");
        for mode in names::Names::ALL {
            let ctx = Context {
                paths: testutil::fixture("basic"),
                facts: Facts::default(),
                rates: false,
                names: mode,
            };
            for e in REGISTRY {
                let setup = e.setup(&mut Values::defaults_of(e.vars)).unwrap();
                if let Some(c) = setup.build(&ctx) {
                    assert_eq!(c.name(), e.name, "{mode:?}");
                }
            }
        }
    }

    /// Every file of `from`, relative to it.
    fn files_under(from: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(from.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                files_under(from, &r, out);
            } else {
                out.push(r);
            }
        }
    }

    /// Every collector (but the site's, which need their directories) once
    /// on the tree at `base`, on a thread: the errors, or `None` when it
    /// did not finish within 20 s.
    fn every_collector_on(base: PathBuf) -> Option<Vec<String>> {
        every_collector_with_points(base, names::Names::Telegraf).map(|(_, e)| e)
    }

    /// The same, with the points.
    fn every_collector_with_points(
        base: PathBuf,
        names: names::Names,
    ) -> Option<(Vec<Point>, Vec<String>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let paths = HostPaths {
                proc: base.join("proc"),
                sys: base.join("sys"),
                root: base.join("root"),
            };
            let ctx = Context {
                paths: paths.clone(),
                facts: Facts::default(),
                rates: false,
                names,
            };
            let mut files = Files::new(paths);
            let (mut points, mut errors) = (Vec::new(), Vec::new());
            for e in REGISTRY {
                let setup = e.setup(&mut Values::defaults_of(e.vars)).unwrap();
                if let Some(mut c) = setup.build(&ctx) {
                    if let Err(err) = c.collect(&mut files, 1_000, &mut points) {
                        errors.push(format!("{}: {err}", e.name));
                    }
                }
            }
            let _ = tx.send((points, errors));
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
    }

    /// A copy of the tree `base` in a new directory with `rel` replaced
    /// as `kind` says ("" leaves it), and every collector's errors on it,
    /// the directory's path written `<tree>`.
    fn errors_with(base: &Path, all: &[PathBuf], rel: &Path, kind: &str) -> Vec<String> {
        let dir = testutil::tempdir();
        for f in all {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if f != rel || kind.is_empty() {
                std::fs::copy(base.join(f), &p).unwrap();
            } else if kind == "fifo" {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
            } else if kind == "/dev/zero" {
                std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            } else {
                File::create(&p).unwrap().set_len(1 << 30).unwrap();
            }
        }
        let errors = every_collector_on(dir.clone()).unwrap_or_else(|| {
            panic!(
                "{}: {} as a {kind}: collection hung",
                base.display(),
                rel.display()
            )
        });
        std::fs::remove_dir_all(&dir).unwrap();
        let at = dir.display().to_string();
        errors.iter().map(|e| e.replace(&at, "<tree>")).collect()
    }

    /// Every file of the tree `base` in turn replaced by each of `kinds`
    /// (a FIFO, a link to /dev/zero, a sparse 1 GiB file): no hang, and
    /// every error the tree does not give whole names the file. Returns the
    /// errors of the tree whole.
    fn faults_in_place_of_each_file(base: &Path, kinds: &[&str]) -> Vec<String> {
        let mut all = Vec::new();
        files_under(base, Path::new(""), &mut all);
        assert!(!all.is_empty(), "{}", base.display());
        let whole = errors_with(base, &all, Path::new(""), "");
        for rel in &all {
            for kind in kinds {
                let name = rel.file_name().unwrap().to_string_lossy();
                for e in errors_with(base, &all, rel, kind)
                    .iter()
                    .filter(|e| !whole.contains(e))
                {
                    assert!(
                        e.contains(&*name) && e.len() < 400,
                        "{}: {} as a {kind}: an error that does not name it, or too long: {e}",
                        base.display(),
                        rel.display()
                    );
                }
            }
        }
        whole
    }

    fn fixture_tree(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn the_mount_table_is_read_again_only_when_the_kernel_says_it_changed() {
        // The live kernel's: read on the first ask, then polls that find
        // no change (this process mounts nothing; the host might, once).
        let mut files = Files::new(HostPaths::default());
        let first = files.proc_if_changed("self/mountinfo").unwrap();
        assert!(first.is_some_and(|t| t.contains(" / ")), "{first:?}");
        let mut unchanged = 0;
        for _ in 0..5 {
            files.new_cycle();
            unchanged += usize::from(files.proc_if_changed("self/mountinfo").unwrap().is_none());
        }
        assert!(unchanged >= 4, "{unchanged} of 5 polls found no change");
        // Read this cycle by another: what was read is handed out.
        files.new_cycle();
        files.proc("self/mountinfo").unwrap();
        assert!(files.proc_if_changed("self/mountinfo").unwrap().is_some());
        // A fixture tree's regular file cannot tell: read every time.
        let mut files = Files::new(testutil::fixture("basic"));
        for _ in 0..3 {
            files.new_cycle();
            assert!(files.proc_if_changed("self/mountinfo").unwrap().is_some());
        }
        // A file that cannot be opened is an error, and is opened and read
        // at the next ask once it is there.
        let (dir, paths) = testutil::tree(&[]);
        let mut files = Files::new(paths);
        assert!(files.proc_if_changed("self/mountinfo").is_err());
        std::fs::create_dir_all(dir.join("proc/self")).unwrap();
        std::fs::write(dir.join("proc/self/mountinfo"), "x").unwrap();
        files.new_cycle();
        assert_eq!(files.proc_if_changed("self/mountinfo").unwrap(), Some("x"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_fifo_a_device_or_an_endless_file_in_place_of_any_file_never_hangs() {
        let whole = faults_in_place_of_each_file(
            &fixture_tree("basic"),
            &["fifo", "/dev/zero", "sparse 1 GiB"],
        );
        // The basic tree's one deliberate flaw: pid 200's stat is cut
        // (processes counts it as unknown, procstat names it).
        assert!(
            whole.len() == 1 && whole[0].starts_with("procstat: ") && whole[0].contains("200/stat"),
            "the basic tree collects cleanly: {whole:?}"
        );
    }

    #[test]
    fn the_same_on_the_other_layouts() {
        // cgroup v1 hierarchies, thermal zones without hwmon, zones of one
        // type, sensors that fail in part: trees of one layout, so what they
        // lack (a /proc/stat) is an error of the tree whole, set aside.
        for tree in ["cgroup-v1", "thermal-only", "temp-zones", "temp-partial"] {
            faults_in_place_of_each_file(&fixture_tree(tree), &["fifo", "/dev/zero"]);
        }
    }

    #[test]
    fn no_two_points_of_a_cycle_share_measurement_and_tags_on_any_tree() {
        let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for tree in std::fs::read_dir(&trees).unwrap() {
            let tree = tree.unwrap().path();
            if !tree.join("proc").is_dir() && !tree.join("sys").is_dir() {
                continue;
            }
            for names in names::Names::ALL {
                let (points, _) =
                    every_collector_with_points(tree.clone(), names).expect("no hang");
                let mut seen = std::collections::HashSet::new();
                for p in &points {
                    let key = (p.measurement.to_string(), format!("{:?}", p.tags));
                    assert!(
                        seen.insert(key),
                        "{} ({}): {} {:?} twice",
                        tree.display(),
                        names.name(),
                        p.measurement,
                        p.tags
                    );
                }
            }
        }
    }

    #[test]
    fn partial_keeps_the_first_error_and_counts_every_piece_lost() {
        let mut p = Partial::default();
        assert_eq!(p.keep(Ok::<_, CollectError>(5)), Some(5));
        p.note(|| CollectError::parse("/sys/a", "first"));
        let lost: Option<u8> = p.keep(Err(CollectError::parse("/sys/b", "second")));
        assert_eq!(lost, None);
        let e = p.result().unwrap_err();
        assert_eq!(e.skipped, 2);
        let text = e.to_string();
        assert!(
            text.starts_with("/sys/a: first") && text.contains("1 more"),
            "{text}"
        );
        assert!(Partial::default().result().is_ok());
    }

    /// Pushes one point, then fails having lost `lost` pieces (0: succeeds).
    struct Losing(u32);

    impl Collector for Losing {
        fn name(&self) -> &'static str {
            "losing"
        }

        fn collect(
            &mut self,
            _: &mut Files,
            now: Timestamp,
            out: &mut Vec<Point>,
        ) -> Result<(), CollectError> {
            out.push(Point::new("x", now).int("v", 1));
            let mut partial = Partial::default();
            for i in 0..self.0 {
                partial.note(|| CollectError::parse("/proc/x", format!("piece {i}")));
            }
            partial.result()
        }
    }

    #[test]
    fn the_runner_keeps_each_collector_s_outcome_of_the_last_cycle() {
        let collectors: Vec<Box<dyn Collector>> = vec![Box::new(Losing(0)), Box::new(Losing(3))];
        let mut r = Runner::new(collectors, HostPaths::default());
        let mut out = Vec::new();
        assert_eq!(r.collect(1, &mut out), 1);
        let o = r.outcomes();
        assert_eq!((o[0].ok, o[0].skipped, o[0].points), (true, 0, 1));
        assert_eq!((o[1].ok, o[1].skipped, o[1].points), (false, 3, 1));
        assert_eq!(out.len(), 2, "a partial failure's points go out");
        r.collect(2, &mut out);
        assert_eq!(r.outcomes().len(), 2, "the last cycle only");
    }

    #[test]
    fn a_tally_is_said_at_once_then_held_and_counted() {
        let mut n = Notice::default();
        assert_eq!(n.tally(1), Some(1), "the first time is said");
        assert_eq!(n.tally(3), None, "then held for ten minutes");
        assert_eq!(n.tally(1), None);
        assert_eq!(n.held, 4, "and counted for the next line");
    }

    #[test]
    fn parse_messages_are_cut_so_a_hostile_value_cannot_flood_the_log() {
        let huge = "9".repeat(1 << 20);
        let e = CollectError::parse("/proc/x", format!("{huge} is not a count")).to_string();
        assert!(e.len() < 220, "{} bytes", e.len());
        assert!(e.contains("(1048591 bytes)"), "{e}");
        let accents = "é".repeat(200);
        assert!(
            CollectError::parse("/p", accents)
                .to_string()
                .ends_with("bytes)")
        );
    }

    #[test]
    fn fill_reads_whole_files_of_any_size() {
        for size in [0, 10, 4095, 4096, 4097, 100_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut buf = Vec::new();
            let n = fill(&mut buf, source(&data)).unwrap();
            assert_eq!(buf[..n], data[..], "size {size}");
            let n = fill(&mut buf, source(&data[..size / 2])).unwrap();
            assert_eq!(buf[..n], data[..size / 2], "again, shorter: {size}");
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

    /// Runs a collector once on a fixture tree, keeping what it collected
    /// even when it reports an error (a partial failure): (points, error).
    pub fn run_partial(c: &mut dyn Collector, case: &str) -> (Vec<Point>, Option<CollectError>) {
        let mut files = Files::new(fixture(case));
        let mut out = Vec::new();
        let e = c.collect(&mut files, 1_000, &mut out).err();
        (out, e)
    }

    /// Runs a collector on a tree written into a fresh temporary directory:
    /// `files` are (path under the tree, contents).
    pub fn run_on(
        c: &mut dyn Collector,
        files: &[(&str, &[u8])],
    ) -> Result<Vec<Point>, CollectError> {
        match run_on_partial(c, files) {
            (out, None) => Ok(out),
            (_, Some(e)) => Err(e),
        }
    }

    /// `run_on`, keeping what was collected beside an error: (points, error).
    pub fn run_on_partial(
        c: &mut dyn Collector,
        files: &[(&str, &[u8])],
    ) -> (Vec<Point>, Option<CollectError>) {
        let (dir, paths) = tree(files);
        let mut f = Files::new(paths);
        let mut out = Vec::new();
        let e = c.collect(&mut f, 1_000, &mut out).err();
        std::fs::remove_dir_all(&dir).ok();
        (out, e)
    }

    /// A tree written into a fresh temporary directory: `files` are (path
    /// under the tree, contents); (the directory, its roots).
    pub fn tree(files: &[(&str, &[u8])]) -> (PathBuf, HostPaths) {
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
        (dir, paths)
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

    /// The value of the series `name` (`<measurement>_<field>`, or the
    /// measurement alone for a `WHOLE` field) whose point has every tag of
    /// `tags`: node_exporter's names are split between a point's
    /// measurement and its fields, one point per label set.
    pub fn series(pts: &[Point], name: &str, tags: &[(&str, &str)]) -> Option<crate::point::Value> {
        let named = |m: &str, f: &str| {
            if f == crate::point::WHOLE {
                m == name
            } else {
                name.strip_prefix(m)
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|r| r == f)
            }
        };
        pts.iter()
            .filter(|p| tags.iter().all(|(k, v)| p.tag_value(k) == Some(*v)))
            .flat_map(|p| p.fields.iter().map(move |(f, v)| (p, f, *v)))
            .find(|(p, f, _)| named(&p.measurement, f))
            .map(|(_, _, v)| v)
    }

    /// How many series (fields) `pts` carry.
    pub fn series_count(pts: &[Point]) -> usize {
        pts.iter().map(|p| p.fields.len()).sum()
    }

    pub fn err_text(r: Result<Vec<Point>, CollectError>) -> String {
        match r {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.to_string(),
        }
    }
}
