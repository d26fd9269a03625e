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

use super::group::{At, Groups};
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

/// What `write` keeps from one batch to the next (its memory only).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Every sample, sorted into series, each by time, and each series'
    /// first sample and its run.
    series: Groups,
    /// A hash of each point's measurement and tags (`point_keys`).
    point_keys: Vec<u64>,
    /// One point's labels: the byte ranges of name and value in `text`, in
    /// the order the point gave them (`text` also makes a series' name).
    labels: Vec<(usize, usize, usize, usize, usize)>,
    text: String,
    /// What the series of each point share (`point_encoded`), and its
    /// ranges by point.
    encoded: Vec<u8>,
    names: String,
    encoded_at: Vec<Option<PointEncoded>>,
}

/// Orders two samples by series (measurement, field, tags), then time, then
/// place in the batch.
fn by_series(batch: &Batch, a: At, b: At) -> std::cmp::Ordering {
    let (p, q) = (&batch.points[a.0 as usize], &batch.points[b.0 as usize]);
    let (fa, fb) = (&p.fields[a.1 as usize].0, &q.fields[b.1 as usize].0);
    (p.measurement.as_ref(), fa.as_ref())
        .cmp(&(q.measurement.as_ref(), fb.as_ref()))
        .then_with(|| {
            merged_tags(&batch.common_tags, &p.tags).cmp(merged_tags(&batch.common_tags, &q.tags))
        })
        .then(p.timestamp.cmp(&q.timestamp))
        .then(a.cmp(&b))
}

fn same_series(batch: &Batch, a: At, b: At) -> bool {
    let (p, q) = (&batch.points[a.0 as usize], &batch.points[b.0 as usize]);
    p.measurement == q.measurement
        && p.fields[a.1 as usize].0 == q.fields[b.1 as usize].0
        && merged_tags(&batch.common_tags, &p.tags).eq(merged_tags(&batch.common_tags, &q.tags))
}

/// A hash of each point's measurement and merged tags, into `keys`: what
/// a series key (`series_key`) starts from, made once per point.
fn point_keys(batch: &Batch, keys: &mut Vec<u64>) {
    use std::hash::{Hash, Hasher};
    keys.clear();
    for p in &batch.points {
        let mut h = rustc_hash::FxHasher::default();
        p.measurement.hash(&mut h);
        for (k, v) in merged_tags(&batch.common_tags, &p.tags) {
            (k, v).hash(&mut h);
        }
        keys.push(h.finish());
    }
}

/// The sort key of a sample: its point's key and its field, hashed. Equal
/// for the samples of one series (different series rarely share one:
/// `by_series` then tells them apart).
fn series_key(batch: &Batch, point_keys: &[u64], (p, f): At) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    point_keys.get(p as usize).hash(&mut h);
    batch.points[p as usize].fields[f as usize].0.hash(&mut h);
    h.finish()
}

/// Groups the batch's finite samples into series, in order of first
/// appearance, each series' samples by time.
fn group(batch: &Batch, sc: &mut Scratch) {
    point_keys(batch, &mut sc.point_keys);
    let keys = &sc.point_keys;
    super::group::group(
        batch,
        |v| value(v).is_finite(),
        |at| series_key(batch, keys, at),
        |a, b| by_series(batch, a, b),
        |a, b| same_series(batch, a, b),
        &mut sc.series,
    );
}

/// Appends a base-128 varint, low groups first (what prost's
/// `encode_varint` writes, without its byte-at-a-time `BufMut` calls).
#[inline]
fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The bytes of a length-delimited field (tag, length, content) holding
/// `n` bytes; 0 for an empty one (protobuf leaves out default values).
#[inline]
fn field_len(n: usize) -> usize {
    match n {
        0 => 0,
        n => 1 + prost::encoding::encoded_len_varint(n as u64) + n,
    }
}

/// Appends a length-delimited field (`tag`: field number and wire type 2).
#[inline]
fn delimited(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The content of one `Label` message.
#[inline]
fn label_len(name: &str, value: &str) -> usize {
    field_len(name.len()) + field_len(value.len())
}

/// Appends one `Label` message as field 1 of a TimeSeries (an empty string
/// is left out, as protobuf leaves out default values).
fn label(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x0a);
    varint(out, label_len(name, value) as u64);
    if !name.is_empty() {
        delimited(out, 0x0a, name.as_bytes());
    }
    if !value.is_empty() {
        delimited(out, 0x12, value.as_bytes());
    }
}

/// The content of one `Sample` message.
#[inline]
fn sample_len(v: f64, ms: i64) -> usize {
    let value = if v != 0.0 { 9 } else { 0 };
    let time = match ms {
        0 => 0,
        ms => 1 + prost::encoding::encoded_len_varint(ms as u64),
    };
    value + time
}

/// Appends one `Sample` message as field 2 of a TimeSeries.
fn sample(out: &mut Vec<u8>, v: f64, ms: i64) {
    out.push(0x12);
    varint(out, sample_len(v, ms) as u64);
    if v != 0.0 {
        out.push(0x09);
        out.extend_from_slice(&v.to_le_bytes());
    }
    if ms != 0 {
        out.push(0x10);
        varint(out, ms as u64);
    }
}

/// The samples of a run of one series: (value, milliseconds), in time
/// order; of two at one millisecond, the later point's.
fn samples<'a>(batch: &'a Batch, run: &'a [At]) -> impl Iterator<Item = (f64, i64)> + 'a {
    let ms = |pi: u32| batch.points[pi as usize].timestamp.div_euclid(1_000_000);
    run.iter().enumerate().filter_map(move |(i, &(pi, fi))| {
        let t = ms(pi);
        if run.get(i + 1).map(|&(pj, _)| ms(pj)) == Some(t) {
            return None;
        }
        Some((value(batch.points[pi as usize].fields[fi as usize].1), t))
    })
}

/// One point's labels (those of each of its series) into `sc.labels`/`sc.text`: sanitized, without
/// `__name__` or empty values, sorted by name, a repeated name kept once.
fn series_labels(common: &[(String, String)], p: &crate::point::Point, sc: &mut Scratch) {
    sc.labels.clear();
    sc.text.clear();
    for (order, (k, v)) in merged_tags(common, &p.tags).enumerate() {
        let n0 = sc.text.len();
        sanitize(&mut sc.text, k);
        let n1 = sc.text.len();
        sc.text.push_str(v);
        if v.is_empty() || &sc.text[n0..n1] == "__name__" {
            sc.text.truncate(n0);
            continue;
        }
        sc.labels.push((n0, n1, n1, sc.text.len(), order));
    }
    let text = &sc.text;
    sc.labels
        .sort_unstable_by(|a, b| text[a.0..a.1].cmp(&text[b.0..b.1]).then(a.4.cmp(&b.4)));
    sc.labels.dedup_by(|b, a| text[a.0..a.1] == text[b.0..b.1]);
}

/// The batch as an uncompressed `WriteRequest` protobuf, written in place:
/// a steady cycle allocates nothing (`sc` keeps the memory). The same
/// bytes prost would write for `series(batch)`.
pub fn write(out: &mut Vec<u8>, batch: &Batch, sc: &mut Scratch) {
    group(batch, sc);
    sc.encoded.clear();
    sc.names.clear();
    sc.encoded_at.clear();
    sc.encoded_at.resize(batch.points.len(), None);
    for si in 0..sc.series.runs.len() {
        let (first, start, end) = sc.series.runs[si];
        let p = &batch.points[first.0 as usize];
        let at = point_encoded(batch, first.0 as usize, sc);
        let name = name_in(
            &mut sc.text,
            &sc.names[at.measurement.0..at.measurement.1],
            &p.fields[first.1 as usize].0,
        );
        let run = &sc.series.values[start..end];
        // The TimeSeries' length first, so that it is written in place.
        let len = at.labels.2 - at.labels.0
            + field_len(label_len("__name__", name))
            + samples(batch, run)
                .map(|(v, ms)| field_len(sample_len(v, ms)))
                .sum::<usize>();
        out.push(0x0a);
        varint(out, len as u64);
        out.extend_from_slice(&sc.encoded[at.labels.0..at.labels.1]);
        label(out, "__name__", name);
        out.extend_from_slice(&sc.encoded[at.labels.1..at.labels.2]);
        for (v, ms) in samples(batch, run) {
            sample(out, v, ms);
        }
    }
}

/// What the series of one point share, made once for all of them (a
/// point has a series per field): byte ranges in `Scratch::encoded`.
#[derive(Debug, Clone, Copy)]
struct PointEncoded {
    /// Its Label messages but `__name__`: (start, where `__name__` goes,
    /// end).
    labels: (usize, usize, usize),
    /// Its measurement, sanitized (the start of each series' name), in
    /// `Scratch::names`.
    measurement: (usize, usize),
}

/// Point `pi`'s `PointEncoded`, made on its first series.
fn point_encoded(batch: &Batch, pi: usize, sc: &mut Scratch) -> PointEncoded {
    if let Some(Some(at)) = sc.encoded_at.get(pi) {
        return *at;
    }
    let p = &batch.points[pi];
    series_labels(&batch.common_tags, p, sc);
    let start = sc.encoded.len();
    let mut split = None;
    for &(n0, n1, v0, v1, _) in &sc.labels {
        let name = &sc.text[n0..n1];
        if split.is_none() && name > "__name__" {
            split = Some(sc.encoded.len());
        }
        label(&mut sc.encoded, name, &sc.text[v0..v1]);
    }
    let labels = (start, split.unwrap_or(sc.encoded.len()), sc.encoded.len());
    let m0 = sc.names.len();
    sanitize(&mut sc.names, &p.measurement);
    let at = PointEncoded {
        labels,
        measurement: (m0, sc.names.len()),
    };
    if let Some(slot) = sc.encoded_at.get_mut(pi) {
        *slot = Some(at);
    }
    at
}

/// A series' name, `<measurement>_<field>` (the measurement already
/// sanitized), made in `text`.
fn name_in<'a>(text: &'a mut String, measurement: &str, field: &str) -> &'a str {
    text.clear();
    text.push_str(measurement);
    if field != crate::point::WHOLE {
        text.push('_');
        sanitize(text, field);
    }
    text
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
        write(&mut raw, &batch(), &mut Scratch::default());
        let z = snappy(&raw).unwrap();
        let back = snap::raw::Decoder::new().decompress_vec(&z).unwrap();
        assert_eq!(back, raw);
        let req = WriteRequest::decode(&back[..]).unwrap();
        assert_eq!(req.timeseries, series(&batch()));
    }

    #[test]
    fn the_in_place_writer_writes_what_prost_would() {
        let mut b = batch();
        // A repeated sample at one millisecond, a value of 0, a label
        // repeated after sanitizing, a label longer than a one-byte length,
        // a series named by its measurement alone, and a series the second
        // cycle adds.
        b.points.push(
            Point::new("mem", 2_000_400_000)
                .tag("env", "prod")
                .uint("total", 0),
        );
        b.points.push(
            Point::new("net", 2_000_000_000)
                .tag("a-b", "1")
                .tag("a_b", "2")
                .tag("__name__", "x")
                .tag("long", "v".repeat(200))
                .counter("bytes", 0),
        );
        b.points
            .push(Point::new("site.metric", 2_000_000_000).gauge(crate::point::WHOLE, 2.5));
        let mut sc = Scratch::default();
        for _ in 0..2 {
            let mut raw = Vec::new();
            write(&mut raw, &b, &mut sc);
            let want = WriteRequest {
                timeseries: series(&b),
            }
            .encode_to_vec();
            assert_eq!(
                raw, want,
                "byte for byte, and again with the scratch reused"
            );
        }
    }

    #[test]
    fn varints_are_protobufs() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1_765_000_000_000,
            u64::MAX,
        ] {
            let (mut ours, mut prosts) = (Vec::new(), Vec::new());
            varint(&mut ours, n);
            prost::encoding::encode_varint(n, &mut prosts);
            assert_eq!(ours, prosts, "{n}");
            assert_eq!(ours.len(), prost::encoding::encoded_len_varint(n));
        }
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
