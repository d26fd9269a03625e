//! The site's own metrics as text: the parsers the `textfile` and `exec`
//! collectors share. Two syntaxes:
//!
//! - **Prometheus text exposition** (what node_exporter's textfile
//!   collector reads): `# HELP` and `# TYPE` lines, samples
//!   `name{label="value",…} value [timestamp]` with `\\`, `\"` and `\n`
//!   escapes, values as floats (`NaN`, `+Inf` and `-Inf` are read, and left
//!   out: no wire format carries them everywhere). A sample's own timestamp
//!   is ignored: every point of a cycle carries the cycle's time. Each sample
//!   becomes a point named by the metric (`point::WHOLE`), so remote write
//!   and OTLP carry exactly the name it was given; its labels are the tags.
//!   A counter's (or a histogram's `_bucket`/`_count`) whole non-negative
//!   value is a counter, everything else a gauge.
//! - **Influx line protocol** (what Telegraf's `exec` input reads):
//!   `measurement[,tag=value…] field=value[,…] [timestamp]`; `1.5`, `2i`,
//!   `3u` and booleans (as 0/1) are kept, strings left out. A field arrives
//!   as `<measurement>_<field>`, as VictoriaMetrics names it.
//!
//! `detect` tells them apart by the first sample line: line protocol when
//! its first token (up to an unescaped space) has no `{` and its second
//! has a `=`.
//! An error names the line; a duplicate series in one source is an error
//! (node_exporter refuses it too); the number of series is bounded.

use std::collections::HashSet;
use std::path::Path;

use super::CollectError;
use crate::point::{Point, Timestamp, WHOLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Prometheus,
    Influx,
}

/// The syntax of `text`, from its first sample line (Prometheus when empty).
pub fn detect(text: &str) -> Syntax {
    let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return Syntax::Prometheus;
    };
    let tokens = split_unescaped(line, ' ');
    let mut tokens = tokens.iter().filter(|t| !t.is_empty());
    let first = tokens.next().copied().unwrap_or("");
    let second = tokens.next().copied().unwrap_or("");
    if !first.contains('{') && second.contains('=') {
        Syntax::Influx
    } else {
        Syntax::Prometheus
    }
}

/// Parses `text` (from `path`, for errors) into at most `max_series`
/// points stamped `now`, appended to `out`. Returns how many series were cut
/// by the bound.
pub fn parse(
    path: &Path,
    text: &str,
    now: Timestamp,
    max_series: usize,
    out: &mut Vec<Point>,
) -> Result<usize, CollectError> {
    let start = out.len();
    let syntax = detect(text);
    let mut types: Vec<(String, String)> = Vec::new();
    let mut cut = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let at = |msg: String| CollectError::parse(path, format!("line {}: {msg}", i + 1));
        if line.is_empty() {
            continue;
        }
        let point = match syntax {
            Syntax::Prometheus if line.starts_with('#') => {
                type_line(line, &mut types).map_err(at)?;
                continue;
            }
            Syntax::Influx if line.starts_with('#') => continue,
            Syntax::Prometheus => sample(line, &types, now).map_err(at)?,
            Syntax::Influx => influx_line(line, now).map_err(at)?,
        };
        let Some(point) = point else { continue };
        if out.len() - start >= max_series {
            cut += 1;
            continue;
        }
        out.push(point);
    }
    check_unique(path, &out[start..])?;
    Ok(cut)
}

fn check_unique(path: &Path, points: &[Point]) -> Result<(), CollectError> {
    let mut seen = HashSet::with_capacity(points.len());
    for p in points {
        if !seen.insert((&p.measurement, &p.tags)) {
            return Err(CollectError::parse(
                path,
                format!("the series {} is given twice", cut_text(&p.measurement)),
            ));
        }
    }
    Ok(())
}

/// A quoted value cut to a few dozen characters, for messages.
fn cut_text(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// `# TYPE name kind` is remembered; `# HELP` and other comments are skipped.
fn type_line(line: &str, types: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut t = line.trim_start_matches('#').split_whitespace();
    if t.next() != Some("TYPE") {
        return Ok(());
    }
    let (Some(name), Some(kind)) = (t.next(), t.next()) else {
        return Err("a TYPE line needs a name and a type".into());
    };
    if !valid_name(name, true) {
        return Err(format!("{} is not a metric name", cut_text(name)));
    }
    if !matches!(
        kind,
        "counter" | "gauge" | "histogram" | "summary" | "untyped"
    ) {
        return Err(format!("{} is not a metric type", cut_text(kind)));
    }
    types.push((name.to_string(), kind.to_string()));
    Ok(())
}

/// One sample line: `None` for a value no format carries (NaN, ±Inf).
fn sample(line: &str, types: &[(String, String)], now: Timestamp) -> Result<Option<Point>, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name, true) {
        return Err(format!("{} is not a metric name", cut_text(name)));
    }
    let mut p = Point::new(name.to_string(), now);
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let (tags, after) = label_set(labels)?;
        for (k, v) in tags {
            p = p.tag(k, v);
        }
        rest = after;
    }
    let mut t = rest.split_whitespace();
    let value = t.next().ok_or("a sample needs a value")?;
    let value = float(value).ok_or_else(|| format!("{} is not a number", cut_text(value)))?;
    if let Some(ts) = t.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("{} is not a timestamp", cut_text(ts)));
    }
    if t.next().is_some() {
        return Err("text after the timestamp".into());
    }
    if !value.is_finite() {
        return Ok(None);
    }
    let kind = family_type(name, types);
    let counts = kind == "counter"
        || (matches!(kind, "histogram" | "summary")
            && (name.ends_with("_bucket") || name.ends_with("_count")));
    Ok(Some(
        if counts && value >= 0.0 && value.fract() == 0.0 && value < 9.0e15 {
            p.counter(WHOLE, value as u64)
        } else {
            p.gauge(WHOLE, value)
        },
    ))
}

fn family_type<'a>(name: &str, types: &'a [(String, String)]) -> &'a str {
    let base = ["_bucket", "_count", "_sum", "_total"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    types
        .iter()
        .rev()
        .find(|(n, _)| n == name || n == base)
        .map_or("untyped", |(_, k)| k.as_str())
}

fn float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

type Labels = Vec<(String, String)>;

/// `label="value",…}` → the pairs and what follows the `}`.
fn label_set(mut s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((out, after));
        }
        let eq = s.find('=').ok_or("a label without =")?;
        let name = s[..eq].trim();
        if !valid_name(name, false) {
            return Err(format!("{} is not a label name", cut_text(name)));
        }
        let quoted = s[eq + 1..].trim_start();
        let body = quoted
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let (value, after) = quoted_value(body).ok_or("a label value is not terminated")?;
        out.push((name.to_string(), value));
        s = after.trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The value up to the closing quote, unescaped, and what follows it.
fn quoted_value(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// Splits at `sep` where it is not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut from, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == sep && !escaped => {
                out.push(&s[from..i]);
                from = i + c.len_utf8();
            }
            _ => escaped = false,
        }
    }
    out.push(&s[from..]);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// One line of line protocol: `None` when it has no field a format carries.
fn influx_line(line: &str, now: Timestamp) -> Result<Option<Point>, String> {
    if line.contains('"') {
        // String fields (and quotes) are outside what this reader takes.
        return Err("string field values are not supported".into());
    }
    let parts = split_unescaped(line, ' ');
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    let (Some(head), Some(fields)) = (parts.first(), parts.get(1)) else {
        return Err("a line needs a measurement and fields".into());
    };
    if let Some(ts) = parts.get(2)
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("{} is not a timestamp", cut_text(ts)));
    }
    if parts.len() > 3 {
        return Err("text after the timestamp".into());
    }
    let mut head = split_unescaped(head, ',').into_iter();
    let measurement = unescape(head.next().unwrap_or(""));
    if measurement.is_empty() {
        return Err("an empty measurement".into());
    }
    let mut p = Point::new(measurement, now);
    for tag in head {
        let kv = split_unescaped(tag, '=');
        let [k, v] = kv.as_slice() else {
            return Err(format!("{} is not a tag", cut_text(tag)));
        };
        p = p.tag(unescape(k), unescape(v));
    }
    for field in split_unescaped(fields, ',') {
        let kv = split_unescaped(field, '=');
        let [k, v] = kv.as_slice() else {
            return Err(format!("{} is not a field", cut_text(field)));
        };
        p = influx_field(p, unescape(k), v)?;
    }
    Ok((!p.fields.is_empty()).then_some(p))
}

fn influx_field(p: Point, key: String, v: &str) -> Result<Point, String> {
    let bad = || format!("{} is not a field value", cut_text(v));
    Ok(match v {
        "t" | "T" | "true" | "True" | "TRUE" => p.int(key, 1),
        "f" | "F" | "false" | "False" | "FALSE" => p.int(key, 0),
        _ if v.ends_with('i') => p.int(key, v[..v.len() - 1].parse().map_err(|_| bad())?),
        _ if v.ends_with('u') => p.uint(key, v[..v.len() - 1].parse().map_err(|_| bad())?),
        _ => p.gauge(key, float(v).ok_or_else(bad)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Value::{Counter, Gauge, Int};

    fn points(text: &str) -> Result<Vec<Point>, String> {
        let mut out = Vec::new();
        parse(Path::new("/t/x.prom"), text, 7, 1000, &mut out)
            .map(|_| out)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn prometheus_text_with_types_labels_and_escapes() {
        let text = "# HELP backup_age_seconds Age.\n# TYPE backup_age_seconds gauge\n\
                    backup_age_seconds{job=\"db\",path=\"/a \\\"b\\\"\\n\"} 12.5 1700000000000\n\
                    # TYPE jobs_total counter\njobs_total 3\nother 1e3\nnan_one NaN\ninf_one +Inf\n\
                    # TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 4\nlat_sum 0.5\nlat_count 4\n";
        let p = points(text).unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.measurement.as_ref()).collect();
        assert_eq!(
            names,
            [
                "backup_age_seconds",
                "jobs_total",
                "other",
                "lat_bucket",
                "lat_sum",
                "lat_count"
            ]
        );
        assert_eq!(p[0].tag_value("path"), Some("/a \"b\"\n"));
        assert_eq!(p[0].field(WHOLE), Some(Gauge(12.5)));
        assert_eq!(p[0].timestamp, 7, "the cycle's time, not the sample's");
        assert_eq!(p[1].field(WHOLE), Some(Counter(3)));
        assert_eq!(p[2].field(WHOLE), Some(Gauge(1000.0)));
        assert_eq!(p[3].field(WHOLE), Some(Counter(4)));
        assert_eq!(p[4].field(WHOLE), Some(Gauge(0.5)));
        assert_eq!(detect(text), Syntax::Prometheus);
    }

    #[test]
    fn hostile_prometheus_text_gets_a_line_numbered_error() {
        for (text, want) in [
            (
                "a{x=\"unterminated} 1\n",
                "line 1: a label value is not terminated",
            ),
            ("ok 1\nok 2\n", "the series \"ok\" is given twice"),
            ("1bad 1\n", "line 1: \"1bad\" is not a metric name"),
            ("m{x=y} 1\n", "line 1: a label value must be quoted"),
            ("m one\n", "line 1: \"one\" is not a number"),
            ("m\n", "line 1: a sample needs a value"),
            ("m 1 2 3\n", "line 1: text after the timestamp"),
            (
                "# TYPE m strange\n",
                "line 1: \"strange\" is not a metric type",
            ),
            ("# TYPE\n", "line 1: a TYPE line needs a name and a type"),
        ] {
            let e = points(text).unwrap_err();
            assert!(e.contains("/t/x.prom") && e.contains(want), "{text:?}: {e}");
        }
        let long = format!("m{{x=\"{}\"}} 1 z\n", "v".repeat(1 << 20));
        let e = points(&long).unwrap_err();
        assert!(
            e.len() < 200,
            "the message quotes a few dozen bytes: {} bytes",
            e.len()
        );
        assert_eq!(
            points("# TYPE lonely gauge\n").unwrap(),
            vec![],
            "TYPE without samples is fine"
        );
    }

    #[test]
    fn influx_lines_with_escapes_and_types() {
        let text = "gpu,card=0,name=a\\ b temp=61.5,fan=40i,ok=t,mem=7u 1700000000000000000\n";
        assert_eq!(detect(text), Syntax::Influx);
        let p = points(text).unwrap();
        assert_eq!(p[0].measurement, "gpu");
        assert_eq!(p[0].tag_value("name"), Some("a b"));
        assert_eq!(p[0].field("temp"), Some(Gauge(61.5)));
        assert_eq!(p[0].field("fan"), Some(Int(40)));
        assert_eq!(p[0].field("ok"), Some(Int(1)));
        assert_eq!(p[0].field("mem"), Some(Int(7)));
        for (text, want) in [
            ("m f=\"s\"\n", "string field values are not supported"),
            ("m,t f=1\n", "\"t\" is not a tag"),
            ("m f=x1\n", "\"x1\" is not a field value"),
            ("m f=1 nope\n", "\"nope\" is not a timestamp"),
        ] {
            let e = points(&format!("x y=1\n{text}")).unwrap_err();
            assert!(e.contains("line 2") && e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_series_bound_cuts_and_says_how_many() {
        let text: String = (0..10).map(|i| format!("m{i} 1\n")).collect();
        let mut out = Vec::new();
        let cut = parse(Path::new("/t"), &text, 1, 4, &mut out).unwrap();
        assert_eq!((out.len(), cut), (4, 6));
    }
}
