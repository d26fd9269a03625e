//! `processes`: process counts by state and the total thread count, from
//! `<proc>/[pid]/stat` of every process, as Telegraf's processes plugin
//! (running, sleeping, blocked, zombies, stopped, idle, dead, paging,
//! unknown, total, total_threads). This walk is most of an agent's cost per
//! cycle (see the README's figures), so it reads each file into one reused
//! buffer and scans only the two fields it needs, after the `)` that ends
//! the command name (which may itself hold spaces and parentheses).

use std::path::Path;

use super::{CollectError, Collector, Files, read_bounded};
use crate::point::{Point, Timestamp};

#[derive(Default)]
pub struct Processes {
    buf: String,
    path: std::path::PathBuf,
}

/// State letter and thread count of one /proc/[pid]/stat.
pub fn parse_pid_stat(text: &str) -> Option<(u8, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace();
    let state = *it.next()?.as_bytes().first()?;
    // After the state: ppid pgrp session tty_nr tpgid flags minflt cminflt
    // majflt cmajflt utime stime cutime cstime priority nice num_threads.
    let threads = it.nth(16)?.parse().ok()?;
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
        let dir = std::fs::read_dir(proc_root).map_err(|e| CollectError::io(proc_root, e))?;
        let mut c = Counts::default();
        for entry in dir {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            self.path.clear();
            self.path.push(proc_root);
            self.path.push(pid);
            self.path.push("stat");
            // A process that exits between readdir and read is simply gone.
            if read_bounded(&self.path, &mut self.buf).is_err() {
                continue;
            }
            match parse_pid_stat(&self.buf) {
                Some((state, threads)) => c.add(state, threads),
                None => c.add(0, 0),
            }
        }
        if c.total == 0 {
            return Err(CollectError::parse(
                proc_root,
                "no process found: is this a procfs?",
            ));
        }
        Ok(c)
    }
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
        let s = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 7 0 0";
        assert_eq!(parse_pid_stat(s), Some((b'S', 7)));
        assert_eq!(parse_pid_stat("42 (x) R 1 2"), None);
        assert_eq!(parse_pid_stat(""), None);
        assert_eq!(parse_pid_stat("\0\0)"), None);
    }

    #[test]
    fn a_tree_without_processes_is_an_error() {
        let e = err_text(run(&mut Processes::default(), "empty"));
        assert!(e.contains("no process found"), "{e}");
    }
}
