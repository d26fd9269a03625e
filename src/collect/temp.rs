//! `temp`: temperatures from the kernel's hardware monitors,
//! `<sys>/class/hwmon/hwmon*/temp*_input` (millidegrees Celsius), with the
//! chip's `name` and the sensor's `temp*_label` (or `tempN` without one) as
//! tags: `temp`: chip, sensor → temp (°C). Hosts without hwmon sensors
//! (many VMs, some ARM boards) fall back to `<sys>/class/thermal/
//! thermal_zone*/temp` (chip `thermal`, sensor the zone's `type`); a host
//! with neither emits nothing, which is not an error.
//!
//! The sensor list is found by listing those directories, again every
//! `REFRESH`; each sensor's file stays open and is re-read with `pread`.
//! A sensor that answers with an I/O error (a disabled or absent probe:
//! EIO, ENODATA, ENXIO) is skipped for that cycle; a value that is not a
//! number or not a plausible temperature is an error naming the file.
//! When two monitors share a chip name (two NVMe drives), the chip tag
//! becomes `name-hwmonN`. Cost: one pread per sensor per cycle.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("temp", |ctx| match ctx.names {
    Names::Telegraf => Box::new(Temp::default()),
    Names::NodeExporter => Box::new(TempNode::default()),
})
.node_help(NODE_HELP);

/// node_exporter's hwmon (temperatures) and thermal_zone collectors: every
/// hwmon chip named as it names them (`chip_name`), each `tempN` with its
/// value, limits and label, and every thermal zone.
const NODE_HELP: &[Help] = &[
    (
        "node_hwmon_chip_names",
        "Annotation metric for human-readable chip names",
    ),
    ("node_hwmon_sensor_label", "Label for given chip and sensor"),
    (
        "node_hwmon_temp_celsius",
        "Hardware monitor for temperature (input)",
    ),
    (
        "node_hwmon_temp_max_celsius",
        "Hardware monitor for temperature (max)",
    ),
    (
        "node_hwmon_temp_crit_celsius",
        "Hardware monitor for temperature (crit)",
    ),
    (
        "node_hwmon_temp_min_celsius",
        "Hardware monitor for temperature (min)",
    ),
    ("node_thermal_zone_temp", "Zone temperature in Celsius"),
];

/// The `tempN_<file>` values node_exporter reports, and their series.
const NODE_TEMP_FILES: [(&str, &str); 4] = [
    ("input", "node_hwmon_temp_celsius"),
    ("max", "node_hwmon_temp_max_celsius"),
    ("crit", "node_hwmon_temp_crit_celsius"),
    ("min", "node_hwmon_temp_min_celsius"),
];

/// node_exporter's name cleaning: lower case, `[^a-z0-9:_]` as `_`,
/// trimmed of `_`.
fn node_clean(s: &str) -> String {
    let lower: String = s
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lower.trim_matches('_').to_string()
}

/// A hwmon directory's chip as node_exporter names it: `<type>_<device>`
/// from its `device` link (stable across boots), else its `name`, else the
/// directory's own name.
fn node_chip(dir: &Path, mon: &str) -> String {
    if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
        let name = device
            .file_name()
            .map(|n| node_clean(&n.to_string_lossy()))
            .unwrap_or_default();
        let kind = device
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| node_clean(&n.to_string_lossy()))
            .unwrap_or_default();
        match (kind.is_empty(), name.is_empty()) {
            (false, false) => return format!("{kind}_{name}"),
            (true, false) => return name,
            _ => {}
        }
    }
    read_trimmed(&dir.join("name"))
        .map(|n| node_clean(&n))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| node_clean(mon))
}

/// `temp` with node_exporter's names. Chips, sensors, their labels and
/// the thermal zones are found at a refresh (every `REFRESH`); each cycle
/// re-reads the kept-open value files with `pread`.
#[derive(Default)]
pub struct TempNode {
    /// The chips' names (to tell chips apart).
    chips: Vec<String>,
    /// Every series, in the order they go out: per chip its name, then per
    /// sensor its values and label; then the thermal zones.
    items: Vec<NodeItem>,
    refreshed: Option<Instant>,
}

enum NodeItem {
    /// `node_hwmon_chip_names{chip, chip_name}`.
    Chip(String, String),
    Reading(NodeReading),
    /// `node_hwmon_sensor_label{chip, sensor, label}`.
    Label(String, String, String),
}

/// One value file: its series and labels (`chip`/`sensor` of a hwmon
/// sensor, or `type`/`zone` of a thermal zone), where it is, and its handle.
struct NodeReading {
    series: &'static str,
    tags: [(&'static str, String); 2],
    path: PathBuf,
    file: File,
}

/// An open sensor's value in degrees; `None` when the probe does not
/// answer (absent or switched off) or its text is bad (kept in `partial`).
fn read_degrees(file: &File, path: &Path, partial: &mut Partial) -> Option<f64> {
    let mut buf = [0u8; 32];
    let n = match file.read_at(&mut buf, 0) {
        Ok(n) => n,
        Err(e) => {
            tracing::trace!(sensor = %path.display(), "unreadable: {e}");
            return None;
        }
    };
    partial.keep(if n == buf.len() {
        Err(CollectError::parse(path, "longer than a temperature"))
    } else {
        parse_millidegrees(path, &buf[..n])
    })
}

impl TempNode {
    fn refresh(&mut self, sys: &Path, partial: &mut Partial) {
        self.chips.clear();
        self.items.clear();
        let base = sys.join("class/hwmon");
        for mon in entries(&base, "hwmon") {
            let dir = base.join(&mon);
            let mut chip = node_chip(&dir, &mon);
            // Two chips of one name (two NVMe drives without a device link)
            // would collide, and node_exporter then drops one: the later
            // ones here keep theirs apart by their directory.
            if self.chips.contains(&chip) {
                chip = format!("{chip}_{}", node_clean(&mon));
            }
            if let Some(name) = read_trimmed(&dir.join("name")).map(|n| node_clean(&n)) {
                self.items.push(NodeItem::Chip(chip.clone(), name));
            }
            self.sensors(&chip, &dir, partial);
            self.chips.push(chip);
        }
        let base = sys.join("class/thermal");
        for zone in entries(&base, "thermal_zone") {
            let dir = base.join(&zone);
            let Some(kind) = read_trimmed(&dir.join("type")) else {
                continue;
            };
            let number = zone.trim_start_matches("thermal_zone").to_string();
            let tags = [("type", kind), ("zone", number)];
            self.open(NODE_HELP[6].0, tags, dir.join("temp"), partial);
        }
        self.refreshed = Some(Instant::now());
    }

    /// A chip's sensors: their value files and labels.
    fn sensors(&mut self, chip: &str, dir: &Path, partial: &mut Partial) {
        for f in entries(dir, "temp") {
            let Some(sensor) = f.strip_suffix("_input") else {
                continue;
            };
            for (suffix, series) in NODE_TEMP_FILES {
                let tags = [("chip", chip.to_string()), ("sensor", sensor.to_string())];
                self.open(
                    series,
                    tags,
                    dir.join(format!("{sensor}_{suffix}")),
                    partial,
                );
            }
            if let Some(label) = read_trimmed(&dir.join(format!("{sensor}_label"))) {
                self.items
                    .push(NodeItem::Label(chip.to_string(), sensor.to_string(), label));
            }
        }
    }

    /// Keeps a value file open for the cycles; one that is not there is
    /// left out, one that cannot be opened (not a regular file) named.
    fn open(
        &mut self,
        series: &'static str,
        tags: [(&'static str, String); 2],
        path: PathBuf,
        partial: &mut Partial,
    ) {
        match crate::host::open_file(&path) {
            Ok(file) => self.items.push(NodeItem::Reading(NodeReading {
                series,
                tags,
                path,
                file,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                partial.keep::<()>(Err(CollectError::io(path, e)));
            }
        }
    }
}

impl Collector for TempNode {
    fn name(&self) -> &'static str {
        "temp"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let mut partial = Partial::default();
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.refresh(&files.sys_path(""), &mut partial);
        }
        for item in &self.items {
            match item {
                NodeItem::Chip(chip, name) => out.push(
                    Point::new(NODE_HELP[0].0, now)
                        .tag("chip", chip)
                        .tag("chip_name", name)
                        .int(WHOLE, 1),
                ),
                NodeItem::Reading(r) => {
                    if let Some(c) = read_degrees(&r.file, &r.path, &mut partial) {
                        let [(k0, v0), (k1, v1)] = &r.tags;
                        out.push(
                            Point::new(r.series, now)
                                .tag(*k0, v0)
                                .tag(*k1, v1)
                                .gauge(WHOLE, c),
                        );
                    }
                }
                NodeItem::Label(chip, sensor, label) => out.push(
                    Point::new(NODE_HELP[1].0, now)
                        .tag("chip", chip)
                        .tag("label", label)
                        .tag("sensor", sensor)
                        .int(WHOLE, 1),
                ),
            }
        }
        partial.result()
    }
}

/// How long the discovered sensor list is trusted.
const REFRESH: Duration = Duration::from_secs(60);

struct Sensor {
    chip: String,
    label: String,
    path: PathBuf,
    file: File,
}

#[derive(Default)]
pub struct Temp {
    sensors: Vec<Sensor>,
    refreshed: Option<Instant>,
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = crate::collect::read_text(path).ok()?;
    let s = s.trim();
    (!s.is_empty() && !s.contains('\0')).then(|| s.to_string())
}

/// Sorted entries of `dir` whose names start with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    // hwmon2 before hwmon10, temp2 before temp10.
    v.sort_by_key(|n| {
        let digits: String = n.chars().filter(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), n.clone())
    });
    v
}

/// Every hwmon temperature sensor: (chip, hwmon dir, label, input path).
fn hwmon(sys: &Path) -> Vec<(String, String, String, PathBuf)> {
    let base = sys.join("class/hwmon");
    let mut out = Vec::new();
    for mon in entries(&base, "hwmon") {
        let dir = base.join(&mon);
        // Old drivers keep their attributes one level down, in device/.
        for d in [dir.clone(), dir.join("device")] {
            let chip = read_trimmed(&dir.join("name"))
                .or_else(|| read_trimmed(&d.join("name")))
                .unwrap_or_else(|| mon.clone());
            for f in entries(&d, "temp") {
                let Some(n) = f
                    .strip_prefix("temp")
                    .and_then(|r| r.strip_suffix("_input"))
                else {
                    continue;
                };
                let label = read_trimmed(&d.join(format!("temp{n}_label")))
                    .unwrap_or_else(|| format!("temp{n}"));
                out.push((chip.clone(), mon.clone(), label, d.join(&f)));
            }
        }
    }
    // Two monitors with one chip name: tell them apart by their directory.
    let shared: Vec<String> = out
        .iter()
        .filter(|(c, m, _, _)| out.iter().any(|(c2, m2, _, _)| c2 == c && m2 != m))
        .map(|(c, _, _, _)| c.clone())
        .collect();
    for (chip, mon, _, _) in &mut out {
        if shared.contains(chip) {
            *chip = format!("{chip}-{mon}");
        }
    }
    out
}

/// The sensor a path reads: `temp3` for `…/temp3_input`, the zone's
/// directory (`thermal_zone1`) for `…/thermal_zone1/temp`.
fn sensor_id(path: &Path) -> String {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    match file.strip_suffix("_input") {
        Some(id) => id.to_string(),
        None => path
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|f| f.to_str())
            .unwrap_or(file)
            .to_string(),
    }
}

/// Two sensors of one chip with one label (a real Dell layout), or two
/// thermal zones of one type, would be two points with the same tags, and a
/// backend keeps one: such labels get the sensor's id, `Core 0 (temp5)`.
fn distinct_labels(found: &mut [(String, String, String, PathBuf)]) {
    let shared: Vec<bool> = found
        .iter()
        .map(|(c, _, l, _)| {
            found
                .iter()
                .filter(|(c2, _, l2, _)| c2 == c && l2 == l)
                .count()
                > 1
        })
        .collect();
    for ((_, _, label, path), shared) in found.iter_mut().zip(shared) {
        if shared {
            *label = format!("{label} ({})", sensor_id(path));
        }
    }
}

/// Thermal zones: ("thermal", zone, type, temp path).
fn thermal(sys: &Path) -> Vec<(String, String, String, PathBuf)> {
    let base = sys.join("class/thermal");
    entries(&base, "thermal_zone")
        .into_iter()
        .map(|z| {
            let dir = base.join(&z);
            let label = read_trimmed(&dir.join("type")).unwrap_or_else(|| z.clone());
            ("thermal".to_string(), z, label, dir.join("temp"))
        })
        .collect()
}

/// Millidegrees Celsius as the kernel prints them → °C.
pub fn parse_millidegrees(path: &Path, text: &[u8]) -> Result<f64, CollectError> {
    let s = std::str::from_utf8(text)
        .map_err(|_| CollectError::parse(path, "not UTF-8"))?
        .trim();
    let v: i64 = s.parse().map_err(|_| {
        CollectError::parse(path, format!("{s:?} is not a temperature in millidegrees"))
    })?;
    let c = v as f64 / 1000.0;
    if !(-273.15..=1000.0).contains(&c) {
        return Err(CollectError::parse(
            path,
            format!("{c} °C is not a plausible temperature"),
        ));
    }
    Ok(c)
}

impl Temp {
    /// Lists the sensors and opens their inputs; an input that is there
    /// but cannot be opened (not a regular file) is noted in `partial`.
    fn refresh(&mut self, files: &Files, partial: &mut super::Partial) {
        let sys = files.sys_path("");
        let mut found = hwmon(&sys);
        if found.is_empty() {
            found = thermal(&sys);
        }
        let before = self.sensors.len();
        distinct_labels(&mut found);
        self.sensors = found
            .into_iter()
            .filter_map(|(chip, _, label, path)| {
                let file = match crate::host::open_file(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                    Err(e) => return partial.keep(Err(CollectError::io(path, e))),
                };
                Some(Sensor {
                    chip,
                    label,
                    path,
                    file,
                })
            })
            .collect();
        if self.refreshed.is_none() || before != self.sensors.len() {
            tracing::debug!(sensors = self.sensors.len(), "temperature sensors found");
        }
        self.refreshed = Some(Instant::now());
    }
}

impl Collector for Temp {
    fn name(&self) -> &'static str {
        "temp"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        // One bad sensor loses only itself.
        let mut partial = super::Partial::default();
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.refresh(files, &mut partial);
        }
        for s in &self.sensors {
            let Some(c) = read_degrees(&s.file, &s.path, &mut partial) else {
                continue;
            };
            out.push(
                Point::new("temp", now)
                    .tag("chip", &s.chip)
                    .tag("sensor", &s.label)
                    .gauge("temp", c),
            );
        }
        partial.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Gauge;

    fn temps(pts: &[Point]) -> Vec<(String, String, f64)> {
        pts.iter()
            .map(|p| {
                let Some(Gauge(t)) = p.field("temp") else {
                    panic!()
                };
                (
                    p.tag_value("chip").unwrap().to_string(),
                    p.tag_value("sensor").unwrap().to_string(),
                    t,
                )
            })
            .collect()
    }

    #[test]
    fn one_bad_sensor_loses_only_itself_and_shared_labels_are_told_apart() {
        // temp1 N/A (first!), temp3 empty, temp4 a fraction, temp5 out of
        // range; temp2 and temp6 share the label "Other".
        let (pts, err) = run_partial(&mut Temp::default(), "temp-partial");
        assert_eq!(
            temps(&pts),
            [
                ("dell_smm".into(), "Other (temp2)".into(), 45.0),
                ("dell_smm".into(), "Other (temp6)".into(), 50.0),
                ("dell_smm".into(), "temp7".into(), 38.0),
            ]
        );
        let e = err.expect("the bad sensors are reported").to_string();
        assert!(e.contains("hwmon0/temp1_input"), "{e}");
    }

    #[test]
    fn thermal_zones_of_one_type_are_two_sensors() {
        let pts = run(&mut Temp::default(), "temp-zones").unwrap();
        assert_eq!(
            temps(&pts),
            [
                ("thermal".into(), "acpitz (thermal_zone0)".into(), 40.0),
                ("thermal".into(), "acpitz (thermal_zone1)".into(), 41.0),
            ]
        );
    }

    #[test]
    fn hwmon_chips_labels_and_shared_names() {
        let pts = run(&mut Temp::default(), "basic").unwrap();
        assert_eq!(
            temps(&pts),
            [
                ("coretemp".into(), "Package id 0".into(), 48.0),
                ("coretemp".into(), "Core 0".into(), 45.0),
                ("coretemp".into(), "Core 1".into(), 47.5),
                ("nvme-hwmon1".into(), "Composite".into(), 38.85),
                ("nvme-hwmon2".into(), "Composite".into(), 36.85),
                ("acpitz".into(), "temp1".into(), 27.8),
            ]
        );
    }

    #[test]
    fn node_exporter_chips_sensors_labels_and_zones() {
        let pts = run(&mut TempNode::default(), "basic").unwrap();
        let get = |n: &str, chip: &str, sensor: &str| {
            pts.iter()
                .find(|p| {
                    p.measurement == n
                        && p.tag_value("chip") == Some(chip)
                        && p.tag_value("sensor") == Some(sensor)
                })
                .and_then(|p| p.field(WHOLE))
        };
        assert_eq!(
            get("node_hwmon_temp_celsius", "coretemp", "temp1"),
            Some(Gauge(48.0))
        );
        assert_eq!(
            get("node_hwmon_temp_celsius", "nvme", "temp1"),
            Some(Gauge(38.85))
        );
        assert_eq!(
            get("node_hwmon_temp_celsius", "nvme_hwmon2", "temp1"),
            Some(Gauge(36.85))
        );
        assert!(
            pts.iter()
                .any(|p| p.measurement == "node_hwmon_sensor_label"
                    && p.tag_value("label") == Some("Core 0"))
        );
        let zones = run(&mut TempNode::default(), "thermal-only").unwrap();
        assert!(
            zones
                .iter()
                .any(|p| p.measurement == "node_thermal_zone_temp"
                    && p.tag_value("zone") == Some("0"))
        );
    }

    #[test]
    fn thermal_zones_when_there_is_no_hwmon() {
        let pts = run(&mut Temp::default(), "thermal-only").unwrap();
        assert_eq!(
            temps(&pts),
            [
                ("thermal".into(), "cpu-thermal".into(), 51.54),
                ("thermal".into(), "thermal_zone1".into(), 40.0),
            ]
        );
    }

    #[test]
    fn no_sensors_at_all_is_quiet() {
        assert!(run(&mut Temp::default(), "cpu-t0").unwrap().is_empty());
    }

    #[test]
    fn hostile_values() {
        let p = Path::new("/sys/class/hwmon/hwmon0/temp1_input");
        assert_eq!(parse_millidegrees(p, b"-5000\n").unwrap(), -5.0);
        for (text, want) in [
            (&b"hot\n"[..], "not a temperature"),
            (b"", "not a temperature"),
            (b"99999999\n", "not a plausible"),
            (b"-300000\n", "not a plausible"),
            (b"\xff\xfe", "not UTF-8"),
            (b"4\x005", "not a temperature"),
        ] {
            let e = parse_millidegrees(p, text).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("temp1_input"),
                "{text:?}: {e}"
            );
        }
        let e = run_on(
            &mut Temp::default(),
            &[
                ("sys/class/hwmon/hwmon0/name", b"k10temp\n"),
                ("sys/class/hwmon/hwmon0/temp1_input", b"NaN\n"),
            ],
        );
        assert!(err_text(e).contains("hwmon0/temp1_input"));
        let e = run_on(
            &mut Temp::default(),
            &[
                ("sys/class/hwmon/hwmon0/name", b"k10temp\n"),
                ("sys/class/hwmon/hwmon0/temp1_input", &[b'1'; 100]),
            ],
        );
        assert!(err_text(e).contains("longer than a temperature"));
    }
}
