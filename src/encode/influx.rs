//! The `influx` format: InfluxDB line protocol, one line per point, ns
//! timestamps. Counters and integer gauges carry the `i` suffix (a counter
//! above i64::MAX is clamped); gauges are plain floats. Measurement names
//! escape `,` and space; tag keys, tag values and field keys escape `,`, `=`
//! and space; newlines, tabs and carriage returns become `\n`, `\t`, `\r`, and
//! a trailing backslash is doubled so it cannot escape the separator.

use std::io::Write;

use crate::point::{Batch, Value, merged_tags};

fn escape(out: &mut Vec<u8>, s: &str, specials: &[u8]) {
    for b in s.bytes() {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ if specials.contains(&b) => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    if s.ends_with('\\') {
        out.push(b'\\');
    }
}

const MEASUREMENT: &[u8] = b", ";
const KEY_OR_TAG: &[u8] = b",= ";

pub fn write(out: &mut Vec<u8>, batch: &Batch) -> std::io::Result<()> {
    for p in &batch.points {
        if p.fields.is_empty() {
            continue; // a line needs at least one field
        }
        escape(out, &p.measurement, MEASUREMENT);
        for (k, v) in merged_tags(&batch.common_tags, &p.tags) {
            out.push(b',');
            escape(out, k, KEY_OR_TAG);
            out.push(b'=');
            escape(out, v, KEY_OR_TAG);
        }
        for (i, (k, v)) in p.fields.iter().enumerate() {
            out.push(if i == 0 { b' ' } else { b',' });
            escape(out, super::promtext::field_key(k), KEY_OR_TAG);
            match v {
                Value::Counter(x) => write!(out, "={}i", (*x).min(i64::MAX as u64))?,
                Value::Int(x) => write!(out, "={x}i")?,
                Value::Gauge(x) | Value::Total(x) => write!(out, "={x}")?,
            }
        }
        writeln!(out, " {}", p.timestamp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Point;
    use std::sync::Arc;

    fn line(p: Point, common: Vec<(String, String)>) -> String {
        let mut out = Vec::new();
        write(
            &mut out,
            &Batch {
                seq: 1,
                common_tags: Arc::new(common),
                points: vec![p],
            },
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn types_and_timestamp() {
        let p = Point::new("cpu", 1_700_000_000_000_000_000)
            .tag("cpu", "cpu0")
            .gauge("usage_user", 12.5)
            .gauge("whole", 100.0)
            .counter("big", u64::MAX)
            .int("neg", -3);
        assert_eq!(
            line(p, vec![("host".into(), "h".into())]),
            "cpu,cpu=cpu0,host=h usage_user=12.5,whole=100,big=9223372036854775807i,neg=-3i 1700000000000000000\n"
        );
    }

    #[test]
    fn escaping() {
        let p = Point::new("disk", 1)
            .tag("path", "/data with space,x=y")
            .tag("device", "a\\")
            .tag("z", "l1\nl2")
            .int("total", 1);
        assert_eq!(
            line(p, vec![("host".into(), "h 1".into())]),
            "disk,device=a\\\\,host=h\\ 1,path=/data\\ with\\ space\\,x\\=y,z=l1\\nl2 total=1i 1\n"
        );
        let mut out = Vec::new();
        escape(&mut out, "my meas,x", MEASUREMENT);
        assert_eq!(out, b"my\\ meas\\,x");
    }

    #[test]
    fn points_without_fields_are_left_out() {
        assert_eq!(line(Point::new("m", 1).gauge("x", f64::NAN), vec![]), "");
    }
}
