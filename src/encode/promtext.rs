//! Prometheus text exposition (format 0.0.4) of a snapshot of points, for
//! the status endpoint's `GET /metrics`: one series per field, named
//! `<measurement>_<field>` (the naming every format uses, so a series is
//! the same whether scraped or pushed), labelled with the point's tags and
//! the common ones (`host`, `PROCSHIP_TAGS`). Counters are `counter`, the
//! rest `gauge`; each name gets `# HELP` (the collectors' node_exporter
//! tables, else where the series comes from) and `# TYPE`; no timestamps
//! (the scrape's time is the sample's). Names
//! and label names outside Prometheus' character set have the offending
//! characters replaced by `_`; label values escape `\`, `"` and newline.

use std::fmt::Write;

use crate::point::{Point, Value, merged_tags};

/// A metric or label name with characters outside `[a-zA-Z0-9_]` (and a
/// leading digit) replaced by `_`.
pub fn sanitize(out: &mut String, s: &str) {
    // Names are nearly always valid already: then copied in one go.
    let b = s.as_bytes();
    if b.first().is_none_or(|c| !c.is_ascii_digit()) && b.iter().all(|&c| NAME_BYTE[usize::from(c)])
    {
        out.push_str(s);
        return;
    }
    for (i, c) in s.chars().enumerate() {
        out.push(if name_char(i, c) { c } else { '_' });
    }
}

/// The bytes of a Prometheus name: `[a-zA-Z0-9_]`.
static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_';
        c += 1;
    }
    t
};

/// Whether `c` may stand at character `i` of a Prometheus name.
fn name_char(i: usize, c: char) -> bool {
    c.is_ascii() && NAME_BYTE[c as usize] && !(i == 0 && c.is_ascii_digit())
}

/// The series name of a field: `<measurement>_<field>`, or the
/// measurement alone for a `point::WHOLE` field (a site's own metric name).
pub fn series_name(measurement: &str, field: &str) -> String {
    let mut s = String::with_capacity(measurement.len() + field.len() + 1);
    series_name_into(&mut s, measurement, field);
    s
}

/// `series_name`, appended to `s`.
pub fn series_name_into(s: &mut String, measurement: &str, field: &str) {
    sanitize(s, measurement);
    if field != crate::point::WHOLE {
        s.push('_');
        sanitize(s, field);
    }
}

/// A field's name in line protocol and JSON, where it cannot be empty:
/// `value` for a `point::WHOLE` field.
pub fn field_key(field: &str) -> &str {
    if field == crate::point::WHOLE {
        "value"
    } else {
        field
    }
}

/// Appends `name="value"` (name sanitized, value escaped) to a label list,
/// with a comma when the list is not empty.
pub fn push_label(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    sanitize(out, name);
    out.push_str("=\"");
    escape_value(out, value);
    out.push('"');
}

fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
}

/// The `# HELP` text of a series without one in `help`: where it comes
/// from in procship's own terms.
fn default_help(measurement: &str, field: &str) -> String {
    if field == crate::point::WHOLE {
        format!("procship: {measurement}.")
    } else {
        format!("procship: the {field} field of the {measurement} measurement.")
    }
}

/// Renders `points` (with `common` tags) as exposition text, each series
/// with `# HELP` (from `help`, else where it comes from) and `# TYPE`.
pub fn render(
    common: &[(String, String)],
    points: &[Point],
    help: &dyn Fn(&str) -> Option<&'static str>,
) -> String {
    // (name, labels, value, is_counter, help), grouped by name for the
    // HELP and TYPE lines.
    let mut series: Vec<(String, String, String, bool, String)> = Vec::new();
    for p in points {
        let mut labels = String::new();
        for (k, v) in merged_tags(common, &p.tags) {
            push_label(&mut labels, k, v);
        }
        for (field, value) in &p.fields {
            let (text, counter) = match value {
                Value::Counter(x) => (x.to_string(), true),
                Value::Int(x) => (x.to_string(), false),
                Value::Gauge(x) if x.is_finite() => (x.to_string(), false),
                Value::Total(x) if x.is_finite() => (x.to_string(), true),
                Value::Gauge(_) | Value::Total(_) => continue,
            };
            let name = series_name(&p.measurement, field);
            let text_help =
                help(&name).map_or_else(|| default_help(&p.measurement, field), str::to_string);
            series.push((name, labels.clone(), text, counter, text_help));
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    let mut last: Option<&str> = None;
    for (name, labels, value, counter, help) in &series {
        if last != Some(name.as_str()) {
            let kind = if *counter { "counter" } else { "gauge" };
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            last = Some(name);
        }
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_replaces_each_character_outside_the_set() {
        for (raw, want) in [
            ("node_cpu_seconds_total", "node_cpu_seconds_total"),
            ("9a", "_a"),
            ("a9", "a9"),
            ("a-b.c", "a_b_c"),
            ("a-é9", "a__9"),
            ("é", "_"),
            ("", ""),
        ] {
            let mut out = String::from("x");
            sanitize(&mut out, raw);
            assert_eq!(out, format!("x{want}"), "{raw:?}");
        }
    }

    #[test]
    fn names_labels_types_and_escaping() {
        let common = vec![("host".to_string(), "h1".to_string())];
        let points = vec![
            Point::new("disk", 1)
                .tag("path", "/data \"x\"\\y")
                .int("used", 5)
                .gauge("used_percent", 12.5),
            Point::new("net", 1)
                .tag("interface", "eth0")
                .counter("bytes_recv", 7),
            Point::new("cpu", 1)
                .tag("cpu", "cpu-total")
                .gauge("usage_idle", f64::NAN),
            Point::new("9weird.m", 1).int("a-b", 1),
        ];
        let help = |name: &str| (name == "net_bytes_recv").then_some("Bytes received.");
        let text = render(&common, &points, &help);
        assert_eq!(
            text,
            "# HELP _weird_m_a_b procship: the a-b field of the 9weird.m measurement.\n\
             # TYPE _weird_m_a_b gauge\n\
             _weird_m_a_b{host=\"h1\"} 1\n\
             # HELP disk_used procship: the used field of the disk measurement.\n\
             # TYPE disk_used gauge\n\
             disk_used{host=\"h1\",path=\"/data \\\"x\\\"\\\\y\"} 5\n\
             # HELP disk_used_percent procship: the used_percent field of the disk measurement.\n\
             # TYPE disk_used_percent gauge\n\
             disk_used_percent{host=\"h1\",path=\"/data \\\"x\\\"\\\\y\"} 12.5\n\
             # HELP net_bytes_recv Bytes received.\n\
             # TYPE net_bytes_recv counter\n\
             net_bytes_recv{host=\"h1\",interface=\"eth0\"} 7\n"
        );
    }
}
