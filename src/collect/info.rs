//! `info`: who the host is, as one field of constant value 1 whose tags
//! carry the facts (the "info metric" convention of node_exporter's
//! `node_uname_info` and `node_os_info`): `host` → info = 1, tagged kernel_release
//! (/proc/sys/kernel/osrelease), arch (/proc/sys/kernel/arch, kernels
//! before 6.1 lack it: then the one the agent's `uname` reports), os, os_version
//! and os_name (`ID`, `VERSION_ID` and `PRETTY_NAME` of the host's
//! os-release under `PROCSHIP_HOST_ROOT`: etc/os-release, else
//! usr/lib/os-release). Low cardinality: the values change with an upgrade
//! or a reboot, so they are read again every `REFRESH`, not every cycle.
//! A fact that cannot be read is left out (a container image without
//! os-release has no os tags); a file that is there but unreadable or not
//! text is the error, and the point goes out without its facts.
//!
//! Measurement `host` and field `info` (not a whole-series point) so that
//! every format names it `host_info`: line protocol's backends join the
//! two as Prometheus-side ones do.

use std::path::Path;
use std::time::{Duration, Instant};

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial, read_text};
use crate::point::{Point, Tag, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("info", |ctx| {
    Box::new(Info {
        node: ctx.names == Names::NodeExporter,
        ..Info::default()
    })
})
.node_help(NODE_HELP);

/// node_exporter's uname and os collectors: uname(2) of the running
/// kernel (the host's; `nodename` is the container's without
/// `--uts=host`), and the host's os-release.
const NODE_HELP: &[Help] = &[
    (
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
    ),
    (
        "node_os_info",
        "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
    ),
    (
        "node_os_version",
        "Metric containing the major.minor part of the OS version.",
    ),
];

/// node_os_info's labels: (os-release key, label).
const NODE_OS: [(&str, &str); 12] = [
    ("BUILD_ID", "build_id"),
    ("ID", "id"),
    ("ID_LIKE", "id_like"),
    ("IMAGE_ID", "image_id"),
    ("IMAGE_VERSION", "image_version"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty_name"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant_id"),
    ("VERSION", "version"),
    ("VERSION_CODENAME", "version_codename"),
    ("VERSION_ID", "version_id"),
];

/// How long the facts are trusted.
const REFRESH: Duration = Duration::from_secs(300);

/// The longest value kept: os-release's are short; a longer one is cut.
const MAX_VALUE: usize = 96;

/// The os-release keys reported, and their tags.
const OS_RELEASE: [(&str, &str); 3] = [
    ("ID", "os"),
    ("VERSION_ID", "os_version"),
    ("PRETTY_NAME", "os_name"),
];

#[derive(Default)]
pub struct Info {
    tags: Vec<Tag>,
    read: Option<Instant>,
    /// node_exporter's names: its three series, ready.
    node: bool,
    node_points: Vec<Point>,
}

impl Collector for Info {
    fn name(&self) -> &'static str {
        "info"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let mut partial = Partial::default();
        if self.node {
            if self.read.is_none_or(|t| t.elapsed() >= REFRESH) {
                self.node_points = node_facts(files, &mut partial);
                self.read = Some(Instant::now());
            }
            for p in &self.node_points {
                let mut q = Point::new(p.measurement.clone(), now);
                for (k, v) in &p.tags {
                    q = q.tag(k.clone(), v);
                }
                q.fields.extend_from_slice(&p.fields);
                out.push(q);
            }
            return partial.result();
        }
        if self.read.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.tags = facts(files, &mut partial);
            self.read = Some(Instant::now());
        }
        let mut p = Point::new("host", now).int("info", 1);
        for (k, v) in &self.tags {
            p = p.tag(k.clone(), v);
        }
        out.push(p);
        partial.result()
    }
}

/// The host's facts as sorted tags.
fn facts(files: &Files, partial: &mut Partial) -> Vec<Tag> {
    let mut p = Point::new("", 0);
    let mut one = |rel: &'static str| {
        let path = files.proc_path(rel);
        match read_text(&path) {
            Err(e) if e.is_not_found() => None,
            r => partial.keep(r).map(|s| clip(s.trim()).to_string()),
        }
    };
    if let Some(release) = one("sys/kernel/osrelease") {
        p = p.tag("kernel_release", release);
    }
    let arch = one("sys/kernel/arch").or_else(|| {
        nix::sys::utsname::uname()
            .ok()
            .and_then(|u| u.machine().to_str().map(str::to_string))
    });
    if let Some(arch) = arch {
        p = p.tag("arch", arch);
    }
    if let Some(text) = os_release(&files.paths.root, partial) {
        for (key, tag) in OS_RELEASE {
            if let Some(v) = os_release_value(&text, key) {
                p = p.tag(tag, clip(&v));
            }
        }
    }
    std::mem::take(&mut p.tags)
}

/// node_uname_info, node_os_info and node_os_version (the last only with a
/// numeric VERSION_ID), with timestamp 0.
fn node_facts(files: &Files, partial: &mut Partial) -> Vec<Point> {
    let mut out = Vec::new();
    if let Ok(u) = nix::sys::utsname::uname() {
        let s = |v: &std::ffi::OsStr| clip(&v.to_string_lossy()).to_string();
        out.push(
            Point::new(NODE_HELP[0].0, 0)
                .tag("sysname", s(u.sysname()))
                .tag("nodename", s(u.nodename()))
                .tag("release", s(u.release()))
                .tag("version", s(u.version()))
                .tag("machine", s(u.machine()))
                .tag("domainname", s(u.domainname()))
                .int(WHOLE, 1),
        );
    }
    let Some(text) = os_release(&files.paths.root, partial) else {
        return out;
    };
    let value = |key| os_release_value(&text, key).map(|v| clip(&v).to_string());
    let mut info = Point::new(NODE_HELP[1].0, 0).int(WHOLE, 1);
    for (key, label) in NODE_OS {
        if let Some(v) = value(key) {
            info = info.tag(label, v);
        }
    }
    out.push(info);
    let version = value("VERSION_ID").and_then(|v| {
        let major_minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
        major_minor.parse::<f64>().ok()
    });
    if let Some(v) = version {
        let mut p = Point::new(NODE_HELP[2].0, 0).gauge(WHOLE, v);
        for (key, label) in [("ID", "id"), ("ID_LIKE", "id_like"), ("NAME", "name")] {
            if let Some(v) = value(key) {
                p = p.tag(label, v);
            }
        }
        out.push(p);
    }
    out
}

/// The host's os-release text, from the first of its two places that has one.
fn os_release(root: &Path, partial: &mut Partial) -> Option<String> {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        match read_text(&root.join(rel)) {
            Err(e) if e.is_not_found() => continue,
            r => return partial.keep(r),
        }
    }
    None
}

/// `key`'s value in os-release text (shell-style assignments: the value
/// bare, or in double quotes with `\` escapes, or in single quotes).
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    let raw = text
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .next_back()?;
    let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.to_string()
    } else {
        raw.to_string()
    };
    let value = value.trim();
    (!value.is_empty() && !value.contains(char::is_control)).then(|| value.to_string())
}

/// `s` cut to `MAX_VALUE` bytes on a character boundary.
fn clip(s: &str) -> &str {
    let mut at = s.len().min(MAX_VALUE);
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Int;

    #[test]
    fn kernel_arch_and_os_as_tags_of_one() {
        let pts = run(&mut Info::default(), "basic").unwrap();
        let p = &pts[0];
        assert_eq!(p.measurement, "host");
        assert_eq!(p.field("info"), Some(Int(1)));
        assert_eq!(p.tag_value("kernel_release"), Some("6.1.0-27-amd64"));
        assert_eq!(p.tag_value("arch"), Some("x86_64"));
        assert_eq!(p.tag_value("os"), Some("debian"));
        assert_eq!(p.tag_value("os_version"), Some("12"));
        assert_eq!(
            p.tag_value("os_name"),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn node_exporter_uname_and_os() {
        let mut c = Info {
            node: true,
            ..Info::default()
        };
        let pts = run(&mut c, "basic").unwrap();
        let get = |n: &str| pts.iter().find(|p| p.measurement == n).unwrap();
        assert!(get("node_uname_info").tag_value("release").is_some());
        let os = get("node_os_info");
        assert_eq!(os.tag_value("id"), Some("debian"));
        assert_eq!(os.tag_value("version_codename"), Some("bookworm"));
        assert_eq!(
            get("node_os_version").field(WHOLE),
            Some(crate::point::Value::Gauge(12.0))
        );
        assert!(pts.iter().all(|p| p.timestamp == 1_000));
    }

    #[test]
    fn os_release_quoting() {
        let text = "ID=ubuntu\nNAME='Ubuntu'\nPRETTY_NAME=\"Say \\\"hi\\\"\"\nEMPTY=\"\"\nBAD=\"a\u{7}b\"\nID=\"later\"\n";
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("later"));
        assert_eq!(os_release_value(text, "NAME").as_deref(), Some("Ubuntu"));
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Say \"hi\"")
        );
        assert_eq!(os_release_value(text, "EMPTY"), None);
        assert_eq!(os_release_value(text, "BAD"), None);
        assert_eq!(os_release_value(text, "VERSION_ID"), None);
    }

    #[test]
    fn what_is_missing_is_left_out_and_what_is_broken_is_named() {
        let (pts, e) = run_on_partial(
            &mut Info::default(),
            &[
                ("proc/sys/kernel/osrelease", b"6.8.0\n"),
                ("root/usr/lib/os-release", b"ID=alpine\n"),
            ],
        );
        assert_eq!(pts[0].tag_value("kernel_release"), Some("6.8.0"));
        assert_eq!(pts[0].tag_value("os"), Some("alpine"), "the second place");
        assert!(e.is_none());
        let long = "9".repeat(4 * MAX_VALUE);
        let (pts, e) = run_on_partial(
            &mut Info::default(),
            &[
                ("proc/sys/kernel/osrelease", long.as_bytes()),
                ("root/etc/os-release", b"\xff\xfe"),
            ],
        );
        assert_eq!(
            pts[0].tag_value("kernel_release").map(str::len),
            Some(MAX_VALUE)
        );
        assert!(pts[0].tag_value("os").is_none());
        assert!(e.unwrap().to_string().contains("os-release"));
    }
}
