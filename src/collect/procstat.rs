//! `procstat`: the processes that matter right now. Each cycle it walks
//! `<proc>/[pid]/stat` and reports the top `PROCSHIP_PROCESS_TOP` processes
//! by CPU and the top ones by resident memory, plus every process whose name
//! (or, failing that, command line) matches `PROCSHIP_PROCESS_MATCH`.
//! `procstat` points carry tags pid, name, user, state and fields
//! cpu_usage (percent of one CPU over the last cycle; from the second cycle
//! a process is seen), memory_rss (bytes), num_threads, and where the agent
//! may read them (its own processes, or with CAP_SYS_PTRACE / root)
//! num_fds, read_bytes and write_bytes (cumulative).
//!
//! Cardinality is bounded by the selection: at most 2 × top plus the
//! matched processes (themselves capped at `MAX_MATCHED`) per cycle. Off by
//! default: it is a second walk of /proc (as costly as `processes`).
//! A command line is read only for a process whose name does not match, and
//! the verdict is kept per (pid, start time) until that process is gone.
//!
//! A process that exits during the walk is simply gone. One whose `stat`
//! is not a stat line is left out, and one whose `status` cannot be read
//! goes out without its `user` tag: both are counted as skipped pieces and
//! the first is named in the collector's error.

use std::collections::HashMap;
use std::path::Path;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use super::{Build, CollectError, Collector, Context, Entry, Files, Setup};
use crate::config::{ConfigError, Values, Var};
use crate::host::Facts;
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry {
    name: "procstat",
    on_by_default: true,
    title: "procstat collector (off by default)",
    vars: VARS,
    build: Build::Configured(|v| Ok(std::sync::Arc::new(Options::parse(v)?))),
    node_help: &[],
}
.off_by_default();

pub const VARS: &[Var] = &[
    Var::new(
        "PROCESS_TOP",
        "5",
        "procstat: report the top N processes by CPU and the top N by memory (0 to 50)",
    )
    .live(),
    Var::new(
        "PROCESS_MATCH",
        "",
        "procstat: also follow processes whose name or command line matches this regex",
    )
    .live(),
];

const STAT_MAX: usize = 4096;
/// At most this many matched processes are reported per cycle.
pub const MAX_MATCHED: usize = 100;

/// What one /proc/[pid]/stat says.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub name: String,
    pub state: u8,
    /// utime + stime, clock ticks.
    pub ticks: u64,
    pub threads: u64,
    pub start: u64,
    pub rss_pages: u64,
}

/// Parses a /proc/[pid]/stat; `None` when it is not one.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|b| *b == b'(')?;
    let close = text.iter().rposition(|b| *b == b')')?;
    let name = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest: Vec<&[u8]> = text[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|t| !t.is_empty())
        .collect();
    let n = |i: usize| -> Option<u64> { std::str::from_utf8(rest.get(i)?).ok()?.parse().ok() };
    // After the name: state(0) … utime(11) stime(12) … num_threads(17) … starttime(19) vsize(20) rss(21).
    Some(Stat {
        name,
        state: *rest.first()?.first()?,
        ticks: n(11)?.saturating_add(n(12)?),
        threads: n(17)?,
        start: n(19)?,
        rss_pages: n(21)?,
    })
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub top: usize,
    pub matcher: Option<regex_lite::Regex>,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let top = v.get("PROCESS_TOP", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n <= 50)
                .ok_or_else(|| "a whole number from 0 to 50".to_string())
        })?;
        let matcher = v.opt("PROCESS_MATCH", parse_regex)?;
        Ok(Options { top, matcher })
    }
}

fn parse_regex(s: &str) -> Result<regex_lite::Regex, String> {
    if s.len() > 512 {
        return Err("a regular expression of at most 512 characters".into());
    }
    regex_lite::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!(
                "a valid regular expression ({})",
                e.to_string().lines().last().unwrap_or("")
            )
        })
}

impl Setup for Options {
    fn build(&self, ctx: &Context) -> Option<Box<dyn Collector>> {
        Some(Box::new(Procstat::new(self.clone(), ctx.facts)))
    }
}

pub struct Procstat {
    opts: Options,
    page_size: u64,
    ticks_per_sec: f64,
    /// (pid, start) → ticks, and when, of the last cycle.
    prev: HashMap<(u32, u64), u64>,
    prev_at: Option<Timestamp>,
    matched: HashMap<(u32, u64), bool>,
    users: HashMap<u32, String>,
    buf: Box<[u8; STAT_MAX]>,
    path: Vec<u8>,
}

struct Seen {
    pid: u32,
    stat: Stat,
    cpu: Option<f64>,
}

impl Procstat {
    pub fn new(opts: Options, facts: Facts) -> Self {
        Procstat {
            opts,
            page_size: facts.page_size,
            ticks_per_sec: facts.ticks_per_sec as f64,
            prev: HashMap::new(),
            prev_at: None,
            matched: HashMap::new(),
            users: HashMap::new(),
            buf: Box::new([0; STAT_MAX]),
            path: Vec::with_capacity(32),
        }
    }

    /// Every process's stat, with its CPU use since the last cycle; the
    /// figures are kept for the next one.
    fn walk(
        &mut self,
        proc_root: &Path,
        root: &std::fs::File,
        now: Timestamp,
        partial: &mut super::Partial,
    ) -> Result<Vec<Seen>, CollectError> {
        let io = |e: nix::Error| CollectError::io(proc_root, e.into());
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::open(proc_root, flags, Mode::empty()).map_err(io)?;
        let dt = self
            .prev_at
            .map(|t| (now - t) as f64 / 1e9)
            .filter(|d| *d > 0.0);
        let pids: Vec<u32> = dir
            .iter()
            .filter_map(|e| {
                std::str::from_utf8(e.ok()?.file_name().to_bytes())
                    .ok()?
                    .parse()
                    .ok()
            })
            .collect();
        let mut seen: Vec<Seen> = Vec::new();
        let mut next = HashMap::with_capacity(self.prev.len());
        for pid in pids {
            // A process that exits meanwhile is simply gone.
            let Some(n) = self.read_small(root, pid, "stat") else {
                continue;
            };
            let Some(stat) = parse_stat(&self.buf[..n]) else {
                partial.note(|| {
                    CollectError::parse(
                        proc_root.join(pid.to_string()).join("stat"),
                        "not a stat line (truncated?); the process is left out",
                    )
                });
                continue;
            };
            let key = (pid, stat.start);
            let cpu = match (self.prev.get(&key), dt) {
                (Some(before), Some(dt)) if stat.ticks >= *before => {
                    Some((stat.ticks - before) as f64 / self.ticks_per_sec / dt * 100.0)
                }
                _ => None,
            };
            next.insert(key, stat.ticks);
            seen.push(Seen { pid, stat, cpu });
        }
        if seen.is_empty() {
            return Err(CollectError::parse(
                proc_root,
                "no process found: is this a procfs?",
            ));
        }
        self.prev = next;
        self.prev_at = Some(now);
        self.matched.retain(|k, _| self.prev.contains_key(k));
        Ok(seen)
    }

    /// The selection: top by CPU, top by RSS, then matches; each process
    /// once, in pid order.
    fn choose(&mut self, root: &std::fs::File, seen: &[Seen]) -> Vec<usize> {
        let mut chosen = top(seen, self.opts.top);
        let mut matched = 0;
        for (i, s) in seen.iter().enumerate() {
            if matched >= MAX_MATCHED {
                break;
            }
            if self.matches(root, s.pid, &s.stat) {
                matched += 1;
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
        }
        chosen.sort_by_key(|i| seen[*i].pid);
        chosen
    }

    /// One chosen process's point; `None` when it is gone meanwhile.
    fn point(
        &mut self,
        root: &std::fs::File,
        proc_root: &Path,
        host_root: &Path,
        s: &Seen,
        now: Timestamp,
        partial: &mut super::Partial,
    ) -> Option<Point> {
        let user = match self.uid(root, s.pid) {
            Some(uid) => self.user(host_root, uid),
            // It exited since the walk: nothing to report, nothing broken.
            None if !proc_root.join(s.pid.to_string()).exists() => return None,
            // There but unreadable: the point goes out without its user.
            None => {
                partial.note(|| {
                    CollectError::parse(
                        proc_root.join(s.pid.to_string()).join("status"),
                        "unreadable, or without a Uid: line; the process is reported without its user",
                    )
                });
                String::new()
            }
        };
        let mut p = Point::new("procstat", now)
            .tag("pid", s.pid.to_string())
            .tag("name", &s.stat.name)
            .tag("user", user)
            .tag("state", char::from(s.stat.state).to_string())
            .uint(
                "memory_rss",
                s.stat.rss_pages.saturating_mul(self.page_size),
            )
            .uint("num_threads", s.stat.threads);
        if let Some(c) = s.cpu {
            p = p.gauge("cpu_usage", c);
        }
        if let Some(n) = fds(proc_root, s.pid) {
            p = p.uint("num_fds", n);
        }
        if let Some((r, w)) = self.io(root, s.pid) {
            p = p.counter("read_bytes", r).counter("write_bytes", w);
        }
        Some(p)
    }

    fn read_small(&mut self, root: &std::fs::File, pid: u32, file: &str) -> Option<usize> {
        use std::io::Write;
        self.path.clear();
        // Into the reused buffer: no allocation per process.
        let _ = write!(self.path, "{pid}/{file}");
        let fd = openat(
            root,
            self.path.as_slice(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let n = nix::unistd::read(&fd, &mut self.buf[..]).ok()?;
        (n < STAT_MAX).then_some(n)
    }

    fn matches(&mut self, root: &std::fs::File, pid: u32, s: &Stat) -> bool {
        let Some(re) = self.opts.matcher.clone() else {
            return false;
        };
        if let Some(v) = self.matched.get(&(pid, s.start)) {
            return *v;
        }
        let v = re.is_match(&s.name)
            || self.read_small(root, pid, "cmdline").is_some_and(|n| {
                let cmd: Vec<u8> = self.buf[..n]
                    .iter()
                    .map(|b| if *b == 0 { b' ' } else { *b })
                    .collect();
                re.is_match(String::from_utf8_lossy(&cmd).trim())
            });
        self.matched.insert((pid, s.start), v);
        v
    }

    /// The name of `uid` from `<root>/etc/passwd` (cached), or the number.
    fn user(&mut self, root_dir: &Path, uid: u32) -> String {
        if let Some(u) = self.users.get(&uid) {
            return u.clone();
        }
        let name = super::read_text(&root_dir.join("etc/passwd"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
                })
            })
            .unwrap_or_else(|| uid.to_string());
        self.users.insert(uid, name.clone());
        name
    }

    fn uid(&mut self, root: &std::fs::File, pid: u32) -> Option<u32> {
        let n = self.read_small(root, pid, "status")?;
        let text = std::str::from_utf8(&self.buf[..n]).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn io(&mut self, root: &std::fs::File, pid: u32) -> Option<(u64, u64)> {
        let n = self.read_small(root, pid, "io")?;
        let text = std::str::from_utf8(&self.buf[..n]).ok()?;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
        };
        Some((get("read_bytes:")?, get("write_bytes:")?))
    }
}

/// The top `n` by CPU (processes seen twice) and the top `n` by resident
/// memory, each once; ties go to the lower pid.
fn top(seen: &[Seen], n: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut by_cpu: Vec<usize> = (0..seen.len()).filter(|i| seen[*i].cpu.is_some()).collect();
    by_cpu.sort_by(|a, b| {
        seen[*b]
            .cpu
            .partial_cmp(&seen[*a].cpu)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(seen[*a].pid.cmp(&seen[*b].pid))
    });
    chosen.extend(by_cpu.into_iter().take(n));
    let mut by_rss: Vec<usize> = (0..seen.len()).collect();
    by_rss.sort_by(|a, b| {
        seen[*b]
            .stat
            .rss_pages
            .cmp(&seen[*a].stat.rss_pages)
            .then(seen[*a].pid.cmp(&seen[*b].pid))
    });
    for i in by_rss.into_iter().take(n) {
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen
}

fn fds(proc_root: &Path, pid: u32) -> Option<u64> {
    let rd = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")).ok()?;
    Some(rd.count() as u64)
}

impl Collector for Procstat {
    fn name(&self) -> &'static str {
        "procstat"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let proc_root = files.proc_path("");
        let root = super::open_dir(&proc_root)?;
        let mut partial = super::Partial::default();
        let seen = self.walk(&proc_root, &root, now, &mut partial)?;
        let host_root = files.paths.root.clone();
        for i in self.choose(&root, &seen) {
            if let Some(p) = self.point(&root, &proc_root, &host_root, &seen[i], now, &mut partial)
            {
                out.push(p);
            }
        }
        partial.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Gauge, Int};
    use std::path::PathBuf;

    fn stat_line(pid: u32, name: &str, ticks: u64, rss: u64) -> Vec<u8> {
        format!("{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 3 0 555 1000 {rss} 0\n")
            .into_bytes()
    }

    fn tree(procs: &[(u32, &str, u64, u64)]) -> PathBuf {
        let dir = tempdir();
        for (pid, name, ticks, rss) in procs {
            let d = dir.join(format!("proc/{pid}"));
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::write(d.join("stat"), stat_line(*pid, name, *ticks, *rss)).unwrap();
            std::fs::write(d.join("status"), "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n").unwrap();
            std::fs::write(d.join("cmdline"), format!("/usr/bin/{name}\0--serve\0")).unwrap();
            std::fs::write(d.join("fd/0"), "").unwrap();
        }
        std::fs::create_dir_all(dir.join("root/etc")).unwrap();
        std::fs::write(
            dir.join("root/etc/passwd"),
            "root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        dir
    }

    fn paths(dir: &Path) -> crate::host::HostPaths {
        crate::host::HostPaths {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            root: dir.join("root"),
        }
    }

    fn opts(top: usize, re: &str) -> Options {
        Options {
            top,
            matcher: (!re.is_empty()).then(|| regex_lite::Regex::new(re).unwrap()),
        }
    }

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let s = parse_stat(&stat_line(42, "my (odd) app", 30, 200)).unwrap();
        assert_eq!(
            (
                s.name.as_str(),
                s.state,
                s.ticks,
                s.threads,
                s.start,
                s.rss_pages
            ),
            ("my (odd) app", b'S', 30, 3, 555, 200)
        );
        assert!(parse_stat(b"200 (cut").is_none());
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b"1 (x) S 1 2").is_none());
    }

    #[test]
    fn top_by_cpu_and_rss_plus_matches() {
        let dir = tree(&[
            (10, "idle", 0, 10),
            (11, "busy", 0, 20),
            (12, "big", 0, 9000),
            (13, "nginx", 0, 5),
            (14, "other", 0, 1),
        ]);
        let mut c = Procstat::new(opts(1, "^nginx$|--serve-x"), Facts::default());
        let mut files = Files::new(paths(&dir));
        let mut out = Vec::new();
        c.collect(&mut files, 1_000_000_000, &mut out).unwrap();
        let names = |out: &[Point]| {
            out.iter()
                .map(|p| p.tag_value("name").unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&out),
            ["big", "nginx"],
            "first cycle: no CPU figures yet"
        );
        // One second later "busy" used 50 ticks (0.5 s at 100 Hz).
        std::fs::write(dir.join("proc/11/stat"), stat_line(11, "busy", 50, 20)).unwrap();
        out.clear();
        files.new_cycle();
        c.collect(&mut files, 2_000_000_000, &mut out).unwrap();
        assert_eq!(names(&out), ["busy", "big", "nginx"]);
        let busy = &out[0];
        let tck = c.ticks_per_sec;
        assert_eq!(busy.field("cpu_usage"), Some(Gauge(50.0 / tck * 100.0)));
        assert_eq!(busy.tag_value("user"), Some("alice"));
        assert_eq!(busy.tag_value("pid"), Some("11"));
        assert_eq!(busy.tag_value("state"), Some("S"));
        assert_eq!(out[1].field("memory_rss"), Some(Int(9000 * 4096)));
        assert_eq!(busy.field("num_threads"), Some(Int(3)));
        assert_eq!(busy.field("num_fds"), Some(Int(1)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_lines_match_when_names_do_not() {
        let dir = tree(&[(20, "python3", 0, 1), (21, "bash", 0, 1)]);
        let mut c = Procstat::new(opts(0, "^/usr/bin/bash --serve$"), Facts::default());
        let mut out = Vec::new();
        c.collect(&mut Files::new(paths(&dir)), 1, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].tag_value("name"), Some("bash"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_trees() {
        let e = run_on(
            &mut Procstat::new(opts(3, ""), Facts::default()),
            &[("proc/1/stat", b"garbage")],
        );
        assert!(err_text(e).contains("no process found"));
        // A cut stat and one without its fields are skipped; the rest is read.
        let dir = tree(&[(10, "ok", 0, 10)]);
        for (pid, text) in [(11, &b"11 (cut"[..]), (12, b"12 (x) S 1 2")] {
            std::fs::create_dir_all(dir.join(format!("proc/{pid}"))).unwrap();
            std::fs::write(dir.join(format!("proc/{pid}/stat")), text).unwrap();
        }
        // A status without its Uid: line loses only the user tag.
        std::fs::write(dir.join("proc/10/status"), "Name:\tok\n").unwrap();
        let mut out = Vec::new();
        let e = Procstat::new(opts(3, ""), Facts::default())
            .collect(&mut Files::new(paths(&dir)), 1, &mut out)
            .unwrap_err();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tag_value("pid"), Some("10"));
        assert_eq!(out[0].tag_value("user"), None);
        assert_eq!(e.skipped, 3, "two stats and a status: {e}");
        assert!(e.to_string().contains("11/stat"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
