//! `exec`: the site's own commands, as Telegraf's `exec` input runs them.
//! Every cycle each executable regular file in `PROCSHIP_EXEC_DIR` (not
//! below it, names starting with `.` left out) runs, without a shell, with
//! a minimal environment (`PATH=/usr/local/bin:/usr/bin:/bin`,
//! `LANG=C.UTF-8`), in the directory, as the agent's user, in its own
//! process group. Its standard output is parsed as Prometheus text or
//! line protocol (`site.rs` tells them apart); its standard error is
//! logged, cut, at most once per ten minutes per command unless it
//! changes.
//!
//! A command never stalls the cycle: each runs on a helper thread, and the
//! cycle takes the output of the last run that finished (so a command's
//! points arrive one cycle after it ran) and starts the next run unless the
//! last one is still going. A run that outlives `PROCSHIP_EXEC_TIMEOUT` is
//! killed with its whole process group, counted and warned about; its
//! output is discarded. Output is bounded (`MAX_OUTPUT` bytes: a run that
//! prints more is killed and fails; `textfile::MAX_SERIES` series).
//!
//! Trust: the agent runs these as its own user, so the directory and every
//! executable in it must be owned by root or by that user and writable by
//! no one else (the rule sudo applies to its drop-in directory). At start
//! (and on reload) anything else exits 78 naming `PROCSHIP_EXEC_DIR`; a
//! file added later that breaks the rule is skipped with a warning.
//!
//! Points: the commands' own, and one `exec` point per cycle counting
//! `commands`, `commands_failed` and `commands_timed_out` of the runs it
//! took.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::textfile::MAX_SERIES;
use super::{Build, CollectError, Collector, Context, Entry, Files, Notice, Setup, site};
use crate::config::{ConfigError, Values, Var, parse_positive_duration};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry {
    name: "exec",
    on_by_default: true,
    title: "exec collector (the site's commands)",
    vars: VARS,
    build: Build::Configured(|v| Ok(std::sync::Arc::new(Options::parse(v)?))),
    node_help: &[],
};

pub const VARS: &[Var] = &[
    Var::new(
        "EXEC_DIR",
        "",
        "exec: a directory whose executables run every cycle, printing Prometheus text or line protocol; owned by root or the agent's user, writable by no one else; empty: off",
    )
    .live(),
    Var::new(
        "EXEC_TIMEOUT",
        "5",
        "exec: a command still running after this long is killed with its process group (keep it below the interval)",
    )
    .live(),
];

/// A run that prints more than this on stdout is killed and fails.
pub const MAX_OUTPUT: usize = 1 << 20;
/// How much of a command's standard error is kept for the log.
const STDERR_KEPT: usize = 4096;
/// How much of it a log line quotes.
const STDERR_QUOTED: usize = 200;
const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let dir = v.opt("EXEC_DIR", |s| {
            let dir = PathBuf::from(s);
            if !dir.is_absolute() {
                return Err("the absolute path of a directory".into());
            }
            check_tree(&dir)?;
            Ok(dir)
        })?;
        let timeout = v.get("EXEC_TIMEOUT", parse_positive_duration)?;
        Ok(Options { dir, timeout })
    }
}

impl Setup for Options {
    fn build(&self, _ctx: &Context) -> Option<Box<dyn Collector>> {
        let dir = self.dir.clone()?;
        Some(Box::new(Exec::new(dir, self.timeout)))
    }
}

/// Why `path` may not be run (or hold what is run) by this agent.
fn untrusted(path: &Path, md: &std::fs::Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != 0 && md.uid() != me {
        return Some(format!(
            "{} is owned by uid {}, neither root nor the agent's user (uid {me})",
            path.display(),
            md.uid()
        ));
    }
    if md.permissions().mode() & 0o022 != 0 {
        return Some(format!(
            "{} is writable by group or others (chmod go-w it)",
            path.display()
        ));
    }
    None
}

/// The directory and every executable in it must be trusted.
fn check_tree(dir: &Path) -> Result<(), String> {
    let md = std::fs::metadata(dir).map_err(|e| format!("cannot use it: {e}"))?;
    if !md.is_dir() {
        return Err("it is not a directory".into());
    }
    if let Some(why) = untrusted(dir, &md) {
        return Err(why);
    }
    for path in executables(dir).map_err(|e| format!("cannot list it: {e}"))? {
        let md = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(why) = untrusted(&path, &md) {
            return Err(why);
        }
    }
    Ok(())
}

/// The executable regular files of `dir`, sorted; names starting with `.` left out.
fn executables(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_none_or(|n| n.to_string_lossy().starts_with('.'));
        let runnable = std::fs::metadata(&path)
            .is_ok_and(|md| md.is_file() && md.permissions().mode() & 0o111 != 0);
        if !hidden && runnable {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// How one run ended.
#[derive(Debug)]
enum Outcome {
    Exited {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    TimedOut,
    TooMuch,
    NotStarted(String),
}

/// What a run printed.
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Reads both pipes until they close, bounded in bytes and time.
fn drain(child: &mut Child, deadline: Instant) -> Result<Captured, Outcome> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut buf = [0u8; 8192];
    while stdout.is_some() || stderr.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Outcome::TimedOut);
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1);
        let mut fds: Vec<PollFd> = Vec::with_capacity(2);
        if let Some(s) = &stdout {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if let Some(s) = &stderr {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            continue; // EINTR: look again
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut ready = ready.into_iter();
        if stdout.is_some() && ready.next() == Some(true) {
            match stdout.as_mut().map(|s| s.read(&mut buf)) {
                Some(Ok(0)) | Some(Err(_)) | None => stdout = None,
                Some(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
            if out.len() > MAX_OUTPUT {
                return Err(Outcome::TooMuch);
            }
        }
        if stderr.is_some() && ready.next() == Some(true) {
            match stderr.as_mut().map(|s| s.read(&mut buf)) {
                Some(Ok(0)) | Some(Err(_)) | None => stderr = None,
                Some(Ok(n)) => {
                    let room = STDERR_KEPT.saturating_sub(err.len());
                    err.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    Ok(Captured {
        stdout: out,
        stderr: err,
    })
}

/// Waits for the exit, at most until `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills what is left of the run's process group and reaps the command.
fn end(child: &mut Child, pgid: Pid) {
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}

/// One run of `path`, on the calling (helper) thread; `group` holds its
/// process group while it runs (0 before and after).
fn run(path: &Path, dir: &Path, timeout: Duration, group: &AtomicI32) -> Outcome {
    let spawned = Command::new(path)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(e.to_string()),
    };
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    group.store(pgid.as_raw(), Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    let outcome = match drain(&mut child, deadline) {
        Err(o) => o,
        Ok(c) => match wait_until(&mut child, deadline) {
            None => Outcome::TimedOut,
            Some(status) => Outcome::Exited {
                status,
                stdout: c.stdout,
                stderr: c.stderr,
            },
        },
    };
    // Whatever it left in its group goes too: nothing outlives a run.
    end(&mut child, pgid);
    group.store(0, Ordering::SeqCst);
    outcome
}

/// One command: its run in flight, and what is being warned about.
#[derive(Default)]
struct Job {
    running: Option<Receiver<Outcome>>,
    /// The process group of the run in flight (0: none), for `Drop`.
    group: Arc<AtomicI32>,
    notice: Notice,
}

pub struct Exec {
    dir: PathBuf,
    timeout: Duration,
    commands: HashMap<PathBuf, Job>,
}

/// What the runs taken this cycle did.
#[derive(Default)]
struct Tally {
    commands: u64,
    failed: u64,
    timed_out: u64,
    series: usize,
}

impl Exec {
    pub fn new(dir: PathBuf, timeout: Duration) -> Self {
        Exec {
            dir,
            timeout,
            commands: HashMap::new(),
        }
    }

    fn warn(&mut self, path: &Path, message: String) {
        if self
            .commands
            .get_mut(path)
            .is_some_and(|c| c.notice.due(&message))
        {
            tracing::warn!("exec: {message}");
        }
    }

    /// Takes a finished run's outcome: its points into `out`.
    fn take(
        &mut self,
        path: &Path,
        o: Outcome,
        now: Timestamp,
        t: &mut Tally,
        out: &mut Vec<Point>,
    ) {
        t.commands += 1;
        let shown = path.display();
        let problem = match o {
            Outcome::TimedOut => {
                t.timed_out += 1;
                self.warn(
                    path,
                    format!(
                        "{shown} ran longer than PROCSHIP_EXEC_TIMEOUT ({:?}); killed with its process group, its output discarded",
                        self.timeout
                    ),
                );
                return;
            }
            Outcome::TooMuch => Some(format!(
                "{shown} printed more than {MAX_OUTPUT} bytes; killed, its output discarded"
            )),
            Outcome::NotStarted(e) => Some(format!("{shown} could not be started: {e}")),
            Outcome::Exited {
                status,
                stdout,
                stderr,
            } => {
                let err = String::from_utf8_lossy(&stderr[..stderr.len().min(STDERR_QUOTED)])
                    .trim()
                    .to_string();
                if !status.success() {
                    Some(format!("{shown} failed ({status}): {err}"))
                } else {
                    if !err.is_empty() {
                        self.warn(path, format!("{shown} said on stderr: {err}"));
                    }
                    self.parse(path, &stdout, now, t, out).err()
                }
            }
        };
        if let Some(message) = problem {
            t.failed += 1;
            self.warn(path, message);
        }
    }

    fn parse(
        &mut self,
        path: &Path,
        stdout: &[u8],
        now: Timestamp,
        t: &mut Tally,
        out: &mut Vec<Point>,
    ) -> Result<(), String> {
        let text = std::str::from_utf8(stdout).map_err(|e| {
            format!(
                "{}: output is not UTF-8 at byte {}",
                path.display(),
                e.valid_up_to()
            )
        })?;
        let before = out.len();
        match site::parse(path, text, now, MAX_SERIES.saturating_sub(t.series), out) {
            Ok(cut) => {
                t.series += out.len() - before;
                if cut > 0 {
                    self.warn(
                        path,
                        format!("{}: {cut} series over the bound left out", path.display()),
                    );
                }
                Ok(())
            }
            Err(e) => {
                out.truncate(before);
                Err(e.to_string())
            }
        }
    }

    /// Starts a run of `path` unless one is in flight (or it is not trusted).
    fn start(&mut self, path: &Path) {
        match std::fs::metadata(path).map(|md| untrusted(path, &md)) {
            Ok(None) => {}
            Ok(Some(why)) => return self.warn(path, format!("not run: {why}")),
            Err(e) => return self.warn(path, format!("not run: {}: {e}", path.display())),
        }
        let (tx, rx) = channel();
        let (p, dir, timeout) = (path.to_path_buf(), self.dir.clone(), self.timeout);
        let group = self
            .commands
            .get(path)
            .map(|c| c.group.clone())
            .unwrap_or_default();
        let spawned = std::thread::Builder::new()
            .name("procship-exec".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = tx.send(run(&p, &dir, timeout, &group));
            });
        match spawned {
            Ok(_) => {
                if let Some(c) = self.commands.get_mut(path) {
                    c.running = Some(rx);
                }
            }
            Err(e) => self.warn(
                path,
                format!("cannot start a helper thread for {}: {e}", path.display()),
            ),
        }
    }
}

/// The collector goes (shutdown, or a reload building the collectors anew):
/// runs still in flight are killed with their groups, nothing is left behind.
impl Drop for Exec {
    fn drop(&mut self) {
        for job in self.commands.values() {
            let pgid = job.group.load(Ordering::SeqCst);
            if pgid > 0 {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

impl Collector for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn collect(
        &mut self,
        _files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let paths = executables(&self.dir).map_err(|e| CollectError::io(&self.dir, e))?;
        self.commands.retain(|p, _| paths.contains(p));
        let mut t = Tally::default();
        for path in &paths {
            let c = self.commands.entry(path.clone()).or_default();
            let finished = match c.running.as_ref().map(Receiver::try_recv) {
                Some(Ok(o)) => Some(o),
                Some(Err(TryRecvError::Empty)) => continue,
                Some(Err(TryRecvError::Disconnected)) => {
                    Some(Outcome::NotStarted("its helper thread ended".into()))
                }
                None => None,
            };
            c.running = None;
            if let Some(o) = finished {
                self.take(path, o, now, &mut t, out);
            }
            self.start(path);
        }
        out.push(
            Point::new("exec", now)
                .uint("commands", t.commands)
                .uint("commands_failed", t.failed)
                .uint("commands_timed_out", t.timed_out),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Gauge, Int};
    use crate::point::WHOLE;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn dir() -> PathBuf {
        let d = tempdir();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    /// Cycles until `n` runs have been taken: their points, and the summed
    /// (commands, failed, timed out).
    fn cycles(c: &mut Exec, n: i64) -> (Vec<Point>, [i64; 3]) {
        let mut files = Files::new(fixture("empty"));
        let (mut all, mut sums) = (Vec::new(), [0i64; 3]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sums[0] < n && Instant::now() < deadline {
            let mut out = Vec::new();
            c.collect(&mut files, 2, &mut out).unwrap();
            let tally = out.iter().find(|p| p.measurement == "exec").unwrap();
            for (i, f) in ["commands", "commands_failed", "commands_timed_out"]
                .iter()
                .enumerate()
            {
                if let Some(Int(x)) = tally.field(f) {
                    sums[i] += x;
                }
            }
            all.extend(out.into_iter().filter(|p| p.measurement != "exec"));
            std::thread::sleep(Duration::from_millis(20));
        }
        (all, sums)
    }

    #[test]
    fn prometheus_and_line_protocol_commands() {
        let d = dir();
        script(
            &d,
            "prom",
            "echo '# TYPE cpu_temp_celsius gauge'; echo 'cpu_temp_celsius{sensor=\"die\"} 61.5'",
        );
        script(
            &d,
            "influx",
            "echo 'gpu,card=0 temp=55,fan=40i'; echo oops >&2",
        );
        std::fs::write(d.join("notes.txt"), "not executable").unwrap();
        let mut c = Exec::new(d.clone(), Duration::from_secs(10));
        let (out, sums) = cycles(&mut c, 2);
        assert_eq!(sums, [2, 0, 0]);
        let temp = out
            .iter()
            .find(|p| p.measurement == "cpu_temp_celsius")
            .unwrap();
        assert_eq!(temp.field(WHOLE), Some(Gauge(61.5)));
        assert_eq!(temp.tag_value("sensor"), Some("die"));
        let gpu = out.iter().find(|p| p.measurement == "gpu").unwrap();
        assert_eq!(gpu.field("fan"), Some(Int(40)));
        assert_eq!(gpu.field("temp"), Some(Gauge(55.0)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let d = dir();
        let marker = d.join("child.pid");
        script(
            &d,
            "slow",
            &format!(
                "sleep 300 & echo $! >> {}; echo 'early 1'; wait",
                marker.display()
            ),
        );
        let mut c = Exec::new(d.clone(), Duration::from_millis(300));
        let t0 = Instant::now();
        let mut files = Files::new(fixture("empty"));
        let mut out = Vec::new();
        c.collect(&mut files, 1, &mut out).unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(200),
            "the cycle does not wait"
        );
        let (out, sums) = cycles(&mut c, 1);
        assert_eq!(sums, [1, 0, 1]);
        assert!(
            out.iter().all(|p| p.measurement != "early"),
            "output discarded"
        );
        // The run after it is in flight: dropping the collector ends it too.
        drop(c);
        let pids = std::fs::read_to_string(&marker).unwrap();
        for pid in pids.lines().map(|l| l.trim().parse::<i32>().unwrap()) {
            assert_gone(pid);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn assert_gone(pid: i32) {
        let gone = || {
            nix::sys::signal::kill(Pid::from_raw(pid), None).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ") || s.contains(") X "))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(), "the background child {pid} was killed too");
    }

    #[test]
    fn floods_and_failures_are_bounded_and_counted() {
        let d = dir();
        script(&d, "flood", "yes 'm 1'");
        script(&d, "fails", "echo 'x 1'; exit 3");
        let mut c = Exec::new(d.clone(), Duration::from_secs(10));
        // Runs finish one or two per cycle: count at least two, all failed.
        let (out, sums) = cycles(&mut c, 2);
        assert!(
            sums[0] >= 2 && sums[1] == sums[0] && sums[2] == 0,
            "{sums:?}"
        );
        assert!(
            out.iter()
                .all(|p| p.measurement != "m" && p.measurement != "x")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_untrusted_directory_or_command_is_refused() {
        let d = dir();
        assert_eq!(check_tree(&d), Ok(()));
        let s = script(&d, "ok", "true");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            check_tree(&d)
                .unwrap_err()
                .contains("writable by group or others")
        );
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            check_tree(&d)
                .unwrap_err()
                .contains("writable by group or others")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
