//! `processes`: process counts by state and the total thread count, from
//! `<proc>/[pid]/stat` of every process, as Telegraf's processes plugin
//! (running, sleeping, blocked, zombies, stopped, idle, dead, paging,
//! unknown, total, total_threads). This walk is most of an agent's cost per
//! cycle (see the README's figures), so it is kept to three syscalls per
//! process: `openat` relative to an fd on the proc root, one `read` into a
//! reused buffer (a per-process stat is one seq_file record: a short read is
//! all of it), `close`. It parses bytes, not text: a command name need not
//! be UTF-8, and only the two fields after the `)` that ends the name (which
//! may itself hold spaces and parentheses) are scanned.

use std::path::Path;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use super::{CollectError, Collector, Entry, Files};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("processes", |_| Box::new(Processes::default()));

/// Larger than any /proc/[pid]/stat (52 numbers and a 64-byte name).
const STAT_MAX: usize = 4096;

pub struct Processes {
    buf: Box<[u8; STAT_MAX]>,
    path: Vec<u8>,
    /// The proc root, listed (rewound before each walk) and opened relative
    /// to, kept open across cycles.
    root: Option<std::fs::File>,
    /// The buffer `getdents64` fills (rustix's `RawDir`: entries are read in
    /// place, where a libc or nix directory stream copies every name).
    dents: Vec<u8>,
}

/// Bytes of directory entries read per `getdents64` call.
const DENTS: usize = 32 * 1024;

impl Default for Processes {
    fn default() -> Self {
        Processes {
            buf: Box::new([0; STAT_MAX]),
            path: Vec::with_capacity(32),
            root: None,
            dents: Vec::with_capacity(DENTS),
        }
    }
}

/// State letter and thread count of one /proc/[pid]/stat.
pub fn parse_pid_stat(text: &[u8]) -> Option<(u8, u64)> {
    let rest = &text[text.iter().rposition(|b| *b == b')')? + 1..];
    let mut it = rest
        .split(u8::is_ascii_whitespace)
        .filter(|t| !t.is_empty());
    let state = *it.next()?.first()?;
    // After the state: ppid pgrp session tty_nr tpgid flags minflt cminflt
    // majflt cmajflt utime stime cutime cstime priority nice num_threads.
    let threads = std::str::from_utf8(it.nth(16)?).ok()?.parse().ok()?;
    Some((state, threads))
}

#[derive(Default, Debug, PartialEq)]
pub struct Counts {
    pub running: u64,
    pub sleeping: u64,
    pub blocked: u64,
    pub zombies: u64,
    pub stopped: u64,
    pub idle: u64,
    pub dead: u64,
    pub paging: u64,
    pub unknown: u64,
    pub total: u64,
    pub total_threads: u64,
}

impl Counts {
    pub fn add(&mut self, state: u8, threads: u64) {
        let slot = match state {
            b'R' => &mut self.running,
            b'S' => &mut self.sleeping,
            b'D' => &mut self.blocked,
            b'Z' => &mut self.zombies,
            b'T' | b't' => &mut self.stopped,
            b'I' => &mut self.idle,
            b'X' | b'x' => &mut self.dead,
            b'W' => &mut self.paging,
            _ => &mut self.unknown,
        };
        *slot += 1;
        self.total += 1;
        self.total_threads += threads;
    }
}

impl Processes {
    pub fn count(&mut self, proc_root: &Path) -> Result<Counts, CollectError> {
        let root = match &mut self.root {
            Some(root) => root,
            None => self.root.insert(super::open_dir(proc_root)?),
        };
        let counted = walk(root, &mut self.dents, &mut self.path, &mut self.buf)
            .map_err(|e| CollectError::io(proc_root, e.into()))
            .and_then(|c| match c.total {
                0 => Err(CollectError::parse(
                    proc_root,
                    "no process found: is this a procfs?",
                )),
                _ => Ok(c),
            });
        if counted.is_err() {
            // Opened again next cycle: perhaps the mount was replaced.
            self.root = None;
        }
        counted
    }
}

/// Counts every process of the open proc root `root`: listed from its
/// start (rewound first), each `[pid]/stat` opened relative to it.
fn walk(
    root: &std::fs::File,
    dents: &mut Vec<u8>,
    path: &mut Vec<u8>,
    buf: &mut [u8; STAT_MAX],
) -> rustix::io::Result<Counts> {
    rustix::fs::seek(root, rustix::fs::SeekFrom::Start(0))?;
    let mut c = Counts::default();
    let mut dir = rustix::fs::RawDir::new(root, dents.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        path.clear();
        path.extend_from_slice(name);
        path.extend_from_slice(b"/stat");
        // A process that exits between readdir and open is simply gone.
        let Ok(fd) = openat(
            root,
            path.as_slice(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(n) = nix::unistd::read(&fd, &mut buf[..]) else {
            continue;
        };
        match parse_pid_stat(&buf[..n]).filter(|_| n < STAT_MAX) {
            Some((state, threads)) => c.add(state, threads),
            None => c.add(0, 0),
        }
    }
    Ok(c)
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let c = self.count(&files.paths.proc)?;
        out.push(
            Point::new("processes", now)
                .uint("running", c.running)
                .uint("sleeping", c.sleeping)
                .uint("blocked", c.blocked)
                .uint("zombies", c.zombies)
                .uint("stopped", c.stopped)
                .uint("idle", c.idle)
                .uint("dead", c.dead)
                .uint("paging", c.paging)
                .uint("unknown", c.unknown)
                .uint("total", c.total)
                .uint("total_threads", c.total_threads),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;

    #[test]
    fn counts_by_state() {
        let mut p = Processes::default();
        let c = p.count(&fixture("basic").proc).unwrap();
        assert_eq!(
            c,
            Counts {
                running: 1,
                sleeping: 2,
                zombies: 1,
                idle: 1,
                unknown: 1,
                total: 6,
                total_threads: 13,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn odd_command_names_and_hostile_stat() {
        let s = b"42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 7 0 0";
        assert_eq!(parse_pid_stat(s), Some((b'S', 7)));
        let latin1 = b"43 (caf\xe9) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 3 0 0";
        assert_eq!(
            parse_pid_stat(latin1),
            Some((b'R', 3)),
            "a non-UTF-8 name still counts"
        );
        assert_eq!(parse_pid_stat(b"42 (x) R 1 2"), None);
        assert_eq!(parse_pid_stat(b""), None);
        assert_eq!(parse_pid_stat(b"\0\0)"), None);
    }

    #[test]
    fn oversized_or_garbage_stat_counts_as_unknown() {
        let huge = vec![b'9'; STAT_MAX + 100];
        let pts = run_on(
            &mut Processes::default(),
            &[
                ("proc/7/stat", &huge),
                (
                    "proc/8/stat",
                    b"8 (ok) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 2 0",
                ),
            ],
        )
        .unwrap();
        use crate::point::Value::Int;
        assert_eq!(pts[0].field("unknown"), Some(Int(1)));
        assert_eq!(pts[0].field("sleeping"), Some(Int(1)));
        assert_eq!(pts[0].field("total_threads"), Some(Int(2)));
    }

    #[test]
    fn a_tree_without_processes_is_an_error() {
        let e = err_text(run(&mut Processes::default(), "empty"));
        assert!(e.contains("no process found"), "{e}");
    }
}
