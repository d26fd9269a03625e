//! The `prometheus` format: Prometheus remote write 1.0. A batch becomes one
//! protobuf `WriteRequest`, snappy block-compressed; the shipper sends it with
//! `Content-Encoding: snappy`, `Content-Type: application/x-protobuf` and
//! `X-Prometheus-Remote-Write-Version: 0.1.0`.
//!
//! Each field of a point is one series named `<measurement>_<field>`
//! (`promtext::series_name`, the name VictoriaMetrics gives the same
//! line-protocol point) labelled with the point's tags and the common ones,
//! label names sanitized to Prometheus' character set and sorted, a repeated
//! name kept once (Prometheus rejects a whole request over a duplicate).
//! Samples are in milliseconds, sorted by time within a series; counters are
//! sent as floats (exact below 2^53). Metadata (TYPE) is not sent: remote
//! write 1.0 receivers ignore it.
//!
//! On stdout (`--once`, no ingest URL) a protobuf is unreadable, so the same
//! series and samples are printed as Prometheus text with timestamps.

use std::fmt::Write as _;

use std::collections::HashMap;

use prost::Message;

use super::promtext::{push_label, sanitize, series_name};
use crate::point::{Batch, Value, merged_tags};

/// `prometheus.WriteRequest` (remote write 1.0), the fields we send.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The sample value of a field.
fn value(v: Value) -> f64 {
    match v {
        Value::Counter(x) => x as f64,
        Value::Int(x) => x as f64,
        Value::Gauge(x) | Value::Total(x) => x,
    }
}

/// A point's labels other than `__name__`: sanitized, sorted, unique.
fn point_labels(common: &[(String, String)], p: &crate::point::Point) -> Vec<Label> {
    let mut tags: Vec<Label> = merged_tags(common, &p.tags)
        .map(|(k, v)| {
            let mut name = String::with_capacity(k.len());
            sanitize(&mut name, k);
            Label {
                name,
                value: v.to_string(),
            }
        })
        .filter(|l| l.name != "__name__" && !l.value.is_empty())
        .collect();
    tags.sort_by(|a, b| a.name.cmp(&b.name));
    tags.dedup_by(|b, a| a.name == b.name);
    tags
}

/// The batch as remote-write series (in order of first appearance),
/// samples sorted by time. Labels are built once per point and cloned once
/// per series.
pub fn series(batch: &Batch) -> Vec<TimeSeries> {
    let tags: Vec<Vec<Label>> = batch
        .points
        .iter()
        .map(|p| point_labels(&batch.common_tags, p))
        .collect();
    let mut index: HashMap<(&str, &str, &[Label]), usize> = HashMap::new();
    let mut out: Vec<TimeSeries> = Vec::new();
    for (p, tags) in batch.points.iter().zip(&tags) {
        for (field, v) in &p.fields {
            let sample = Sample {
                value: value(*v),
                timestamp: p.timestamp.div_euclid(1_000_000),
            };
            if !sample.value.is_finite() {
                continue;
            }
            let i = *index
                .entry((&p.measurement, field, tags.as_slice()))
                .or_insert_with(|| {
                    let mut labels = Vec::with_capacity(tags.len() + 1);
                    labels.extend(tags.iter().cloned());
                    let name = Label {
                        name: "__name__".into(),
                        value: series_name(&p.measurement, field),
                    };
                    let at = labels.partition_point(|l| l.name.as_str() < "__name__");
                    labels.insert(at, name);
                    out.push(TimeSeries {
                        labels,
                        samples: Vec::new(),
                    });
                    out.len() - 1
                });
            out[i].samples.push(sample);
        }
    }
    for ts in &mut out {
        // A batch holds its cycles in order, so this is a check, not a sort.
        if !ts.samples.is_sorted_by_key(|s| s.timestamp) {
            ts.samples.sort_by_key(|s| s.timestamp);
        }
        // Two samples at one millisecond: the later point wins, as a TSDB
        // would keep only one of them anyway.
        ts.samples.reverse();
        ts.samples.dedup_by_key(|s| s.timestamp);
        ts.samples.reverse();
    }
    out
}

/// The batch as an uncompressed `WriteRequest` protobuf.
pub fn write(out: &mut Vec<u8>, batch: &Batch) {
    let req = WriteRequest {
        timeseries: series(batch),
    };
    out.reserve(req.encoded_len());
    // Encoding into a Vec cannot run out of room.
    let _ = req.encode(out);
}

/// Snappy block compression (not the framed stream format), as remote write
/// requires.
pub fn snappy(input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    snappy_into(&mut snap::raw::Encoder::new(), input, &mut out)?;
    Ok(out)
}

/// The same into `out` (resized to the compressed length), with an encoder
/// kept by the caller: its hash table is allocated once, not per batch.
pub fn snappy_into(
    enc: &mut snap::raw::Encoder,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    out.resize(snap::raw::max_compress_len(input.len()), 0);
    let n = enc.compress(input, out).map_err(std::io::Error::other)?;
    out.truncate(n);
    Ok(())
}

/// The stdout rendering: the same series as Prometheus text, one sample per
/// line with its millisecond timestamp.
pub fn write_text(out: &mut Vec<u8>, batch: &Batch) {
    let mut s = String::new();
    for ts in series(batch) {
        let mut name = "";
        let mut labels = String::new();
        for l in &ts.labels {
            if l.name == "__name__" {
                name = &l.value;
            } else {
                push_label(&mut labels, &l.name, &l.value);
            }
        }
        for sample in &ts.samples {
            let _ = writeln!(
                s,
                "{name}{{{labels}}} {} {}",
                sample.value, sample.timestamp
            );
        }
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Point;
    use std::sync::Arc;

    fn batch() -> Batch {
        Batch {
            seq: 1,
            common_tags: Arc::new(vec![
                ("env".into(), "prod".into()),
                ("host".into(), "h1".into()),
            ]),
            points: vec![
                Point::new("mem", 2_000_000_000)
                    .int("total", 8)
                    .gauge("used_percent", 12.5),
                Point::new("diskio", 2_000_000_000)
                    .tag("name", "sda")
                    .counter("read_bytes", 20),
                Point::new("diskio", 1_000_000_000)
                    .tag("name", "sda")
                    .counter("read_bytes", 10),
                Point::new("mem", 1_000_000_000).int("total", 8),
                Point::new("odd.measure", 1_000_000_000)
                    .tag("dotted.key", "v")
                    .tag("Zone", "z")
                    .counter("x-y", u64::MAX),
            ],
        }
    }

    fn label<'a>(ts: &'a TimeSeries, name: &str) -> Option<&'a str> {
        ts.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    #[test]
    fn one_series_per_field_with_sorted_labels_and_samples() {
        let s = series(&batch());
        let names: Vec<_> = s.iter().map(|t| label(t, "__name__").unwrap()).collect();
        assert_eq!(
            names,
            // In order of first appearance.
            [
                "mem_total",
                "mem_used_percent",
                "diskio_read_bytes",
                "odd_measure_x_y",
            ]
        );
        for ts in &s {
            let mut sorted = ts.labels.clone();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(ts.labels, sorted, "labels sorted by name");
            assert!(
                ts.samples
                    .windows(2)
                    .all(|w| w[0].timestamp < w[1].timestamp)
            );
            assert_eq!(label(ts, "host"), Some("h1"));
            assert_eq!(label(ts, "env"), Some("prod"));
        }
        let disk = &s[2];
        assert_eq!(label(disk, "name"), Some("sda"));
        assert_eq!(
            disk.samples,
            [
                Sample {
                    value: 10.0,
                    timestamp: 1000
                },
                Sample {
                    value: 20.0,
                    timestamp: 2000
                }
            ]
        );
        let odd = &s[3];
        assert_eq!(label(odd, "dotted_key"), Some("v"));
        assert_eq!(label(odd, "Zone"), Some("z"));
        assert_eq!(
            odd.labels[0].name, "Zone",
            "uppercase sorts before __name__"
        );
        assert_eq!(odd.samples[0].value, u64::MAX as f64);
    }

    #[test]
    fn protobuf_and_snappy_round_trip() {
        let mut raw = Vec::new();
        write(&mut raw, &batch());
        let z = snappy(&raw).unwrap();
        let back = snap::raw::Decoder::new().decompress_vec(&z).unwrap();
        assert_eq!(back, raw);
        let req = WriteRequest::decode(&back[..]).unwrap();
        assert_eq!(req.timeseries, series(&batch()));
    }

    #[test]
    fn wire_bytes_match_the_proto_schema() {
        // Label{name:"a", value:"b"} = field 1 "a", field 2 "b"; Sample{1.0, 5}.
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
            }],
        };
        let bytes = req.encode_to_vec();
        let label = [0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let sample = [0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x05];
        let mut inner = label.to_vec();
        inner.extend_from_slice(&sample);
        let mut want = vec![0x0a, inner.len() as u8];
        want.extend_from_slice(&inner);
        assert_eq!(bytes, want);
    }

    #[test]
    fn repeated_label_after_sanitizing_is_kept_once() {
        let b = Batch {
            seq: 1,
            common_tags: Arc::new(vec![("host".into(), "h".into())]),
            points: vec![
                Point::new("m", 1_000_000)
                    .tag("a.b", "1")
                    .tag("a_b", "2")
                    .gauge("f", 1.0),
            ],
        };
        let s = series(&b);
        assert_eq!(s[0].labels.iter().filter(|l| l.name == "a_b").count(), 1);
    }

    #[test]
    fn text_rendering_shows_every_sample() {
        let mut out = Vec::new();
        write_text(&mut out, &batch());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("diskio_read_bytes{env=\"prod\",host=\"h1\",name=\"sda\"} 10 1000\n")
        );
        assert!(
            text.contains("diskio_read_bytes{env=\"prod\",host=\"h1\",name=\"sda\"} 20 2000\n")
        );
        assert_eq!(text.lines().count(), 6);
    }
}
