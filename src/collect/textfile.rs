//! `textfile`: the site's own metrics from `PROCSHIP_TEXTFILE_DIR`, as
//! node_exporter's textfile collector reads them. Every cycle, each regular
//! file ending in `.prom` in that directory (not below it) is read and
//! parsed as Prometheus text (`site.rs`); other files are ignored, so a
//! writer that writes `x.prom.tmp` and renames it to `x.prom` (what cron
//! jobs should do: a rename is atomic) is never read half-written. A file
//! that fails to parse is skipped and named in a warning (again when its
//! error changes, and every ten minutes while it lasts); the others go on.
//!
//! Points: each sample under its own name and labels; per file a `textfile`
//! point tagged `file` with `mtime_seconds` (its modification time, Unix
//! seconds) and `scrape_error` (1 when it did not parse), so a stale cron
//! job can be alerted on; and one `textfile` point without tags counting
//! the cycle's `files`, `files_failed`, `series` and `series_cut`.
//! A file unchanged since it last parsed (same device, inode, size and
//! modification time) is not read again: its points are stamped anew.
//! Bounded: a file over `MAX_FILE_BYTES` fails, and at most `MAX_SERIES`
//! series are taken per cycle (a warning says when it cuts).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use super::{Build, CollectError, Collector, Context, Entry, Files, Notice, Setup, site};
use crate::config::{ConfigError, Values, Var};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry {
    name: "textfile",
    on_by_default: true,
    title: "textfile collector (the site's .prom files)",
    vars: VARS,
    build: Build::Configured(|v| Ok(std::sync::Arc::new(Options::parse(v)?))),
    node_help: &[],
};

pub const VARS: &[Var] = &[Var::new(
    "TEXTFILE_DIR",
    "",
    "textfile: a directory whose *.prom files (Prometheus text, written with write-then-rename) are read every cycle; empty: off",
)
.live()];

/// A file larger than this fails (a textfile of metrics is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// At most this many series are taken from the directory per cycle.
pub const MAX_SERIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dir: Option<PathBuf>,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let dir = v.opt("TEXTFILE_DIR", |s| {
            let dir = PathBuf::from(s);
            if !dir.is_absolute() || !dir.is_dir() {
                return Err("the absolute path of an existing directory".into());
            }
            Ok(dir)
        })?;
        Ok(Options { dir })
    }
}

impl Setup for Options {
    fn build(&self, _ctx: &Context) -> Option<Box<dyn Collector>> {
        let dir = self.dir.clone()?;
        Some(Box::new(Textfile::new(dir)))
    }
}

/// What a file that parsed held, and how it was when read: a file that is
/// the same (device, inode, size, modification time) is not read again.
struct Parsed {
    stamp: (u64, u64, u64, i64, i64),
    points: Vec<Point>,
    mtime: f64,
}

fn stamp(md: &std::fs::Metadata) -> (u64, u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (md.dev(), md.ino(), md.size(), md.mtime(), md.mtime_nsec())
}

pub struct Textfile {
    dir: PathBuf,
    /// Files that fail, and what was said about each.
    failing: HashMap<PathBuf, Notice>,
    /// Files that parsed, until they change.
    parsed: HashMap<PathBuf, Parsed>,
    cut_logged: Option<Instant>,
    buf: Vec<u8>,
}

/// What one cycle found.
#[derive(Default)]
struct Tally {
    files: u64,
    failed: u64,
    series: u64,
    cut: u64,
}

impl Textfile {
    pub fn new(dir: PathBuf) -> Self {
        Textfile {
            dir,
            failing: HashMap::new(),
            parsed: HashMap::new(),
            cut_logged: None,
            buf: Vec::new(),
        }
    }

    /// The `.prom` regular files of the directory, sorted by name.
    fn list(&self) -> Result<Vec<PathBuf>, CollectError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| CollectError::io(&self.dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "prom"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Reads one file, bounded; never blocks on a FIFO or a device.
    fn read(&mut self, path: &Path) -> Result<(&str, f64), CollectError> {
        let file = File::options()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .map_err(|e| CollectError::io(path, e))?;
        let md = file.metadata().map_err(|e| CollectError::io(path, e))?;
        if !md.is_file() {
            return Err(CollectError::parse(path, "not a regular file"));
        }
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        self.buf.clear();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut self.buf)
            .map_err(|e| CollectError::io(path, e))?;
        if self.buf.len() as u64 > MAX_FILE_BYTES {
            return Err(CollectError::parse(
                path,
                format!("larger than {MAX_FILE_BYTES} bytes, skipped"),
            ));
        }
        let text = std::str::from_utf8(&self.buf).map_err(|e| {
            CollectError::parse(path, format!("not UTF-8 text at byte {}", e.valid_up_to()))
        })?;
        Ok((text, mtime))
    }

    /// One file's samples into `out`, and its own point.
    /// The points of a file unchanged since it last parsed, stamped `now`;
    /// `None` when it must be read (new, changed, or over the series left).
    fn unchanged(
        &self,
        path: &Path,
        now: Timestamp,
        left: usize,
        out: &mut Vec<Point>,
    ) -> Option<f64> {
        let p = self.parsed.get(path)?;
        let md = std::fs::metadata(path).ok()?;
        if stamp(&md) != p.stamp || p.points.len() > left {
            return None;
        }
        out.extend(p.points.iter().map(|pt| {
            let mut pt = pt.clone();
            pt.timestamp = now;
            pt
        }));
        Some(p.mtime)
    }

    /// Reads and parses a file; what parsed whole is kept for the next cycles.
    fn parse(
        &mut self,
        path: &Path,
        now: Timestamp,
        left: usize,
        out: &mut Vec<Point>,
    ) -> Result<(usize, f64), CollectError> {
        let before = out.len();
        let md = std::fs::metadata(path).ok();
        let (text, mtime) = self.read(path)?;
        let cut = site::parse(path, text, now, left, out)?;
        match md {
            Some(md) if cut == 0 => {
                let parsed = Parsed {
                    stamp: stamp(&md),
                    points: out[before..].to_vec(),
                    mtime,
                };
                self.parsed.insert(path.to_path_buf(), parsed);
            }
            _ => {
                self.parsed.remove(path);
            }
        }
        Ok((cut, mtime))
    }

    fn file(&mut self, path: &Path, now: Timestamp, t: &mut Tally, out: &mut Vec<Point>) {
        t.files += 1;
        let before = out.len();
        let left = MAX_SERIES.saturating_sub(t.series as usize);
        let result = match self.unchanged(path, now, left, out) {
            Some(mtime) => Ok((0, mtime)),
            None => self.parse(path, now, left, out),
        };
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let point = Point::new("textfile", now).tag("file", name);
        match result {
            Ok((cut, mtime)) => {
                t.series += (out.len() - before) as u64;
                t.cut += cut as u64;
                if self.failing.remove(path).is_some() {
                    tracing::info!(file = %path.display(), "textfile: parses again");
                }
                out.push(point.gauge("mtime_seconds", mtime).int("scrape_error", 0));
            }
            Err(e) => {
                out.truncate(before);
                self.parsed.remove(path);
                t.failed += 1;
                self.warn(path, &e);
                out.push(point.int("scrape_error", 1));
            }
        }
    }

    fn warn(&mut self, path: &Path, e: &CollectError) {
        let message = e.to_string();
        if self
            .failing
            .entry(path.to_path_buf())
            .or_default()
            .due(&message)
        {
            tracing::warn!("textfile: skipped, the other files go on: {message}");
        }
    }
}

impl Collector for Textfile {
    fn name(&self) -> &'static str {
        "textfile"
    }

    fn collect(
        &mut self,
        _files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let mut t = Tally::default();
        let files = self.list()?;
        self.failing.retain(|p, _| files.contains(p));
        self.parsed.retain(|p, _| files.contains(p));
        for path in &files {
            self.file(path, now, &mut t, out);
        }
        if t.cut > 0
            && self
                .cut_logged
                .is_none_or(|at| at.elapsed() >= super::REPEAT_LOG_EVERY)
        {
            tracing::warn!(
                cut = t.cut,
                max = MAX_SERIES,
                dir = %self.dir.display(),
                "textfile: more series than a cycle takes; the rest are left out"
            );
            self.cut_logged = Some(Instant::now());
        }
        out.push(
            Point::new("textfile", now)
                .uint("files", t.files)
                .uint("files_failed", t.failed)
                .uint("series", t.series)
                .uint("series_cut", t.cut),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::{Counter, Gauge, Int};
    use crate::point::WHOLE;
    use std::time::Duration;

    fn collect(dir: &Path) -> Vec<Point> {
        let mut c = Textfile::new(dir.to_path_buf());
        let mut files = Files::new(fixture("empty"));
        let mut out = Vec::new();
        c.collect(&mut files, 5, &mut out).unwrap();
        out
    }

    fn of<'a>(pts: &'a [Point], name: &str, file: Option<&str>) -> Option<&'a Point> {
        pts.iter()
            .find(|p| p.measurement == name && p.tag_value("file") == file)
    }

    #[test]
    fn reads_prom_files_and_reports_each() {
        let dir = fixture("textfile").root.join("var/lib/textfile");
        let pts = collect(&dir);
        let backup = of(&pts, "backup_age_seconds", None).unwrap();
        assert_eq!(backup.tag_value("job"), Some("nightly"));
        assert_eq!(backup.field(WHOLE), Some(Gauge(3600.0)));
        assert_eq!(
            of(&pts, "raid_degraded", None).unwrap().field(WHOLE),
            Some(Gauge(0.0))
        );
        let good = of(&pts, "textfile", Some("backup.prom")).unwrap();
        assert_eq!(good.field("scrape_error"), Some(Int(0)));
        assert!(matches!(good.field("mtime_seconds"), Some(Gauge(t)) if t > 1e9));
        let bad = of(&pts, "textfile", Some("broken.prom")).unwrap();
        assert_eq!(bad.field("scrape_error"), Some(Int(1)));
        assert!(
            of(&pts, "half_written", None).is_none(),
            "only *.prom is read"
        );
        assert!(
            of(&pts, "broken_before_the_error", None).is_none(),
            "a failed file loses only itself"
        );
        let tally = of(&pts, "textfile", None).unwrap();
        assert_eq!(tally.field("files"), Some(Int(3)));
        assert_eq!(tally.field("files_failed"), Some(Int(1)));
        assert_eq!(tally.field("series"), Some(Int(3)));
        assert_eq!(
            of(&pts, "jobs_done_total", None).unwrap().field(WHOLE),
            Some(Counter(42))
        );
    }

    #[test]
    fn fifos_huge_files_and_bad_bytes_are_named_not_waited_on() {
        let dir = tempdir();
        nix::unistd::mkfifo(&dir.join("fifo.prom"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::write(
            dir.join("huge.prom"),
            vec![b'#'; (MAX_FILE_BYTES + 10) as usize],
        )
        .unwrap();
        std::fs::write(dir.join("latin1.prom"), b"m{x=\"\xe9\"} 1\n").unwrap();
        std::fs::write(dir.join("ok.prom"), "ok 1\n").unwrap();
        let t0 = Instant::now();
        let pts = collect(&dir);
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "a FIFO is not waited on"
        );
        for f in ["fifo.prom", "huge.prom", "latin1.prom"] {
            let p = of(&pts, "textfile", Some(f)).unwrap();
            assert_eq!(p.field("scrape_error"), Some(Int(1)), "{f}");
        }
        assert!(of(&pts, "ok", None).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unchanged_file_is_not_parsed_again_but_a_renamed_one_is() {
        let dir = tempdir();
        std::fs::write(dir.join("a.prom"), "m 1\n").unwrap();
        let mut c = Textfile::new(dir.clone());
        let mut files = Files::new(fixture("empty"));
        let mut value = |c: &mut Textfile, now| {
            let mut out = Vec::new();
            c.collect(&mut files, now, &mut out).unwrap();
            let m = out.iter().find(|p| p.measurement == "m").unwrap().clone();
            (m.field(WHOLE), m.timestamp)
        };
        assert_eq!(value(&mut c, 5), (Some(Gauge(1.0)), 5));
        assert!(c.parsed.contains_key(&dir.join("a.prom")));
        assert_eq!(
            value(&mut c, 6),
            (Some(Gauge(1.0)), 6),
            "kept, stamped anew"
        );
        std::fs::write(dir.join("a.tmp"), "m 2\n").unwrap();
        std::fs::rename(dir.join("a.tmp"), dir.join("a.prom")).unwrap();
        assert_eq!(
            value(&mut c, 7),
            (Some(Gauge(2.0)), 7),
            "a new file is read"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_series_bound_holds_across_files() {
        let dir = tempdir();
        for f in 0..3 {
            let text: String = (0..MAX_SERIES / 2)
                .map(|i| format!("m{f}_{i} 1\n"))
                .collect();
            std::fs::write(dir.join(format!("{f}.prom")), text).unwrap();
        }
        let pts = collect(&dir);
        let tally = of(&pts, "textfile", None).unwrap();
        assert_eq!(tally.field("series"), Some(Int(MAX_SERIES as i64)));
        assert_eq!(
            tally.field("series_cut"),
            Some(Int((MAX_SERIES / 2) as i64))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
