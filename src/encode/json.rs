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

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::Identity;
use crate::point::{Batch, Point, Value, merged_tags};

pub const VERSION: u32 = 1;

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
            let k = super::promtext::field_key(k);
            match v {
                Value::Counter(x) => m.serialize_entry(k, x)?,
                Value::Gauge(x) | Value::Total(x) => m.serialize_entry(k, x)?,
                Value::Int(x) => m.serialize_entry(k, x)?,
            }
        }
        m.end()
    }
}

pub fn write(out: &mut Vec<u8>, id: &Identity, batch: &Batch) -> std::io::Result<()> {
    let env = Envelope {
        version: VERSION,
        agent: crate::AGENT,
        host: &id.host,
        run: id.run,
        seq: batch.seq,
        points: Points(batch),
    };
    serde_json::to_writer(&mut *out, &env)?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
