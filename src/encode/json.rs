//! The `json` format: one versioned envelope per batch, on one line.
//!
//! ```json
//! {"version":1,"agent":"procship/0.1.0","host":"web-1","run":1763800000000000000,"seq":7,
//!  "points":[{"measurement":"cpu","tags":{"cpu":"cpu-total","host":"web-1"},
//!             "fields":{"usage_user":1.5},"timestamp":1763800000000000000}]}
//! ```
//! `version` changes only on an incompatible change. `run` (agent start, ns)
//! and `seq` (1, 2, … within a run) identify a batch per host, so a receiver
//! can drop one it has already seen. Counters are JSON integers, gauges may
//! be fractional; timestamps are ns since the epoch. The README documents it.

use super::Identity;
use crate::point::{Batch, Value, merged_tags};

pub const VERSION: u32 = 1;

/// Writes the batch's envelope, in place: the bytes serde_json would write
/// for the same structure (`tests::serde_envelope` is that structure), its
/// strings copied as they are unless they need escaping (then serde_json
/// escapes them) and its numbers formatted by serde_json. Nothing is
/// allocated.
pub fn write(out: &mut Vec<u8>, id: &Identity, batch: &Batch) -> std::io::Result<()> {
    out.extend_from_slice(b"{\"version\":");
    number(out, VERSION)?;
    out.extend_from_slice(b",\"agent\":");
    string(out, crate::AGENT)?;
    out.extend_from_slice(b",\"host\":");
    string(out, &id.host)?;
    out.extend_from_slice(b",\"run\":");
    number(out, id.run)?;
    out.extend_from_slice(b",\"seq\":");
    number(out, batch.seq)?;
    out.extend_from_slice(b",\"points\":[");
    for (i, p) in batch.points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"measurement\":");
        string(out, &p.measurement)?;
        out.extend_from_slice(b",\"tags\":{");
        for (j, (k, v)) in merged_tags(&batch.common_tags, &p.tags).enumerate() {
            entry(out, j, k)?;
            string(out, v)?;
        }
        out.extend_from_slice(b"},\"fields\":{");
        for (j, (k, v)) in p.fields.iter().enumerate() {
            entry(out, j, super::promtext::field_key(k))?;
            match v {
                Value::Counter(x) => number(out, x)?,
                Value::Gauge(x) | Value::Total(x) => number(out, x)?,
                Value::Int(x) => number(out, x)?,
            }
        }
        out.extend_from_slice(b"},\"timestamp\":");
        number(out, p.timestamp)?;
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
    Ok(())
}

/// A map's key and its colon, after a comma unless it is the first (`j`).
fn entry(out: &mut Vec<u8>, j: usize, key: &str) -> std::io::Result<()> {
    if j > 0 {
        out.push(b',');
    }
    string(out, key)?;
    out.push(b':');
    Ok(())
}

/// A JSON string: copied between quotes when nothing in it needs escaping
/// (the names and nearly every value), else written by serde_json.
fn string(out: &mut Vec<u8>, s: &str) -> std::io::Result<()> {
    if plain(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        Ok(serde_json::to_writer(out, s)?)
    }
}

/// Whether no byte of `s` needs escaping in JSON (a control character, `"`
/// or `\\`): eight bytes at a time (the checks are the classic "has a
/// byte less than" and "has a zero byte" word tricks; exact, no false
/// answers), the rest one by one.
fn plain(s: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        if below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// A number as serde_json writes it (a float that is not finite: `null`).
fn number(out: &mut Vec<u8>, x: impl serde::Serialize) -> std::io::Result<()> {
    Ok(serde_json::to_writer(out, &x)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Point;
    use serde::Serialize;
    use serde::ser::{SerializeMap, Serializer};
    use std::sync::Arc;

    /// The envelope as serde structures: what `write` must write, byte
    /// for byte.
    #[derive(Serialize)]
    struct Envelope<'a> {
        version: u32,
        agent: &'a str,
        host: &'a str,
        run: u64,
        seq: u64,
        points: Points<'a>,
    }

    struct Points<'a>(&'a Batch);
    struct Tags<'a>(&'a [(String, String)], &'a Point);
    struct Fields<'a>(&'a Point);

    #[derive(Serialize)]
    struct PointOut<'a> {
        measurement: &'a str,
        tags: Tags<'a>,
        fields: Fields<'a>,
        timestamp: i64,
    }

    impl Serialize for Points<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let b = self.0;
            s.collect_seq(b.points.iter().map(|p| PointOut {
                measurement: &p.measurement,
                tags: Tags(&b.common_tags, p),
                fields: Fields(p),
                timestamp: p.timestamp,
            }))
        }
    }

    impl Serialize for Tags<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(merged_tags(self.0, &self.1.tags))
        }
    }

    impl Serialize for Fields<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.fields.len()))?;
            for (k, v) in &self.0.fields {
                let k = crate::encode::promtext::field_key(k);
                match v {
                    Value::Counter(x) => m.serialize_entry(k, x)?,
                    Value::Gauge(x) | Value::Total(x) => m.serialize_entry(k, x)?,
                    Value::Int(x) => m.serialize_entry(k, x)?,
                }
            }
            m.end()
        }
    }

    fn serde_envelope(id: &Identity, batch: &Batch) -> Vec<u8> {
        let env = Envelope {
            version: VERSION,
            agent: crate::AGENT,
            host: &id.host,
            run: id.run,
            seq: batch.seq,
            points: Points(batch),
        };
        let mut out = serde_json::to_vec(&env).unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn plain_is_exactly_no_byte_to_escape() {
        let escape = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in [1, 7, 8, 9, 16, 17] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(plain(&s), !escape(b), "{b:#x} at {at} of {len}");
                }
            }
        }
        assert!(plain(b""));
        assert!(plain("é€😀 ~\x7f".as_bytes()));
    }

    #[test]
    fn writes_what_serde_json_would() {
        let hostile = "q\"b\\n\nt\tc\u{1}d\u{7f}é€😀";
        let batch = Batch {
            seq: u64::MAX,
            common_tags: Arc::new(vec![
                ("env".into(), hostile.into()),
                ("host".into(), "web-1".into()),
            ]),
            points: vec![
                Point::new("cpu", 9)
                    .tag("cpu", "cpu-total")
                    .gauge("usage_user", 1.5)
                    .gauge("nan", f64::NAN)
                    .gauge("inf", f64::NEG_INFINITY)
                    .gauge("tiny", 1e-300)
                    .gauge("big", 1.7e308)
                    .gauge("whole", 3.0)
                    .counter("c", u64::MAX)
                    .int("i", i64::MIN),
                Point::new(hostile, -5)
                    .tag(hostile, hostile)
                    .tag("host", "own")
                    .total("t", 0.1),
                Point::new("site_metric", 1).gauge(crate::point::WHOLE, -0.0),
                Point::new("empty", 2),
            ],
        };
        for host in ["web-1", hostile, "", "q\"", "b\\", "c\u{1f}", "n\n"] {
            let id = Identity {
                host: host.into(),
                run: 5,
                boot: 0,
            };
            let mut out = Vec::new();
            write(&mut out, &id, &batch).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&serde_envelope(&id, &batch))
            );
            let empty = Batch {
                points: Vec::new(),
                ..batch.clone()
            };
            out.clear();
            write(&mut out, &id, &empty).unwrap();
            assert_eq!(out, serde_envelope(&id, &empty));
        }
    }

    #[test]
    fn envelope_shape() {
        let batch = Batch {
            seq: 7,
            common_tags: Arc::new(vec![("host".into(), "web-1".into())]),
            points: vec![
                Point::new("cpu", 9)
                    .tag("cpu", "cpu-total")
                    .gauge("usage_user", 1.5)
                    .counter("c", 3)
                    .int("i", -2),
            ],
        };
        let mut out = Vec::new();
        write(
            &mut out,
            &Identity {
                host: "web-1".into(),
                run: 5,
                boot: 0,
            },
            &batch,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version":1,"agent":crate::AGENT,"host":"web-1","run":5,"seq":7,
                "points":[{"measurement":"cpu","tags":{"cpu":"cpu-total","host":"web-1"},
                           "fields":{"usage_user":1.5,"c":3,"i":-2},"timestamp":9}]})
        );
        assert_eq!(
            out.iter().filter(|b| **b == b'\n').count(),
            1,
            "one line per batch"
        );
    }
}
