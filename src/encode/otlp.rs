//! The `otlp` format: OTLP/HTTP metrics in the protobuf JSON encoding the
//! OTLP specification defines (lowerCamelCase field names, 64-bit integers
//! as decimal strings, enums as numbers), POSTed to a receiver's
//! `/v1/metrics`.
//!
//! One `ResourceMetrics` per batch whose resource carries `host.name`; one
//! scope `procship` with its version; one metric per `<measurement>_<field>`
//! (the name every format uses) holding a data point per point and cycle.
//! Data point attributes are the point's tags plus the common ones (`host`,
//! `PROCSHIP_TAGS`), so a receiver that turns attributes into labels
//! (Prometheus, VictoriaMetrics) stores the same labels as for the other
//! formats. Counters are monotonic cumulative `sum`s whose start time is the
//! host's boot (`btime`, what kernel counters count from) or, for the
//! agent's own counters, the agent's start; gauges are `gauge`s. Integer
//! values are `asInt`, floats `asDouble`; a counter above i64::MAX is clamped.

use serde::{Serialize, Serializer};

use super::Identity;
use super::group::{At, Groups};
use super::promtext::series_name_into;
use crate::point::{Batch, Point, Value, merged_tags};

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue<'a> {
    string_value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataPoint<'a> {
    attributes: Attributes<'a>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_decimal"
    )]
    start_time_unix_nano: Option<i64>,
    #[serde(serialize_with = "decimal")]
    time_unix_nano: i64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_decimal"
    )]
    as_int: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_double: Option<f64>,
}

/// A point's tags and the common ones, serialized as KeyValues in place.
struct Attributes<'a>(&'a [(String, String)], &'a Point);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(merged_tags(self.0, &self.1.tags).map(|(key, v)| KeyValue {
            key,
            value: AnyValue { string_value: v },
        }))
    }
}

/// A 64-bit integer as the decimal string the OTLP JSON encoding requires.
fn decimal<S: Serializer>(x: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(x)
}

fn opt_decimal<S: Serializer>(x: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.collect_str(x),
        None => s.serialize_none(),
    }
}

/// What `write` keeps from one batch to the next (its memory only): the
/// batch's values grouped into metrics, and a metric's name being made.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Every value, sorted into runs of one metric each, and each metric's
    /// first value and its run.
    metrics: Groups,
    name: String,
}

/// The metric a value belongs to: measurement, field, and whether a sum.
fn metric_key(batch: &Batch, (p, f): At) -> (&str, &str, bool) {
    let p = &batch.points[p as usize];
    let (field, v) = &p.fields[f as usize];
    (&p.measurement, field, is_sum(*v))
}

fn is_sum(v: Value) -> bool {
    matches!(v, Value::Counter(_) | Value::Total(_))
}

/// The value as OTLP carries it (`asInt` or `asDouble`); `None`: not finite.
fn number(v: Value) -> Option<(Option<i64>, Option<f64>)> {
    match v {
        Value::Counter(x) => Some((Some(i64::try_from(x).unwrap_or(i64::MAX)), None)),
        Value::Int(x) => Some((Some(x), None)),
        Value::Gauge(x) | Value::Total(x) if x.is_finite() => Some((None, Some(x))),
        Value::Gauge(_) | Value::Total(_) => None,
    }
}

/// Groups the batch's values by metric, in order of first appearance;
/// a metric's data points keep the batch's order.
fn group(batch: &Batch, sc: &mut Scratch) {
    let key = |at| metric_key(batch, at);
    let hashed = |at| {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        key(at).hash(&mut h);
        h.finish()
    };
    super::group::group(
        batch,
        |v| number(v).is_some(),
        hashed,
        |a, b| key(a).cmp(&key(b)).then(a.cmp(&b)),
        |a, b| key(a) == key(b),
        &mut sc.metrics,
    );
}

/// The batch as one OTLP/HTTP JSON request, written in place: a steady
/// cycle allocates nothing (`sc` keeps the memory).
pub fn write(
    out: &mut Vec<u8>,
    id: &Identity,
    batch: &Batch,
    sc: &mut Scratch,
) -> std::io::Result<()> {
    let run = i64::try_from(id.run).unwrap_or(i64::MAX);
    let boot = if id.boot > 0 { id.boot } else { run };
    group(batch, sc);
    let json =
        |out: &mut Vec<u8>, s: &str| serde_json::to_writer(out, s).map_err(std::io::Error::other);
    out.extend_from_slice(br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"#);
    json(out, &id.host)?;
    out.extend_from_slice(br#"}}]},"scopeMetrics":[{"scope":{"name":"procship","version":"#);
    json(out, env!("CARGO_PKG_VERSION"))?;
    out.extend_from_slice(br#"},"metrics":["#);
    for (m, &(first, start, end)) in sc.metrics.runs.iter().enumerate() {
        if m > 0 {
            out.push(b',');
        }
        let (measurement, field, sum) = metric_key(batch, first);
        sc.name.clear();
        series_name_into(&mut sc.name, measurement, field);
        out.extend_from_slice(br#"{"name":"#);
        json(out, &sc.name)?;
        out.extend_from_slice(if sum {
            br#","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":["#.as_slice()
        } else {
            br#","gauge":{"dataPoints":["#.as_slice()
        });
        let mut wrote = false;
        for &(pi, fi) in &sc.metrics.values[start..end] {
            let p = &batch.points[pi as usize];
            let Some((as_int, as_double)) = number(p.fields[fi as usize].1) else {
                continue;
            };
            if std::mem::replace(&mut wrote, true) {
                out.push(b',');
            }
            let begin = if p.measurement == "agent" { run } else { boot };
            let dp = DataPoint {
                attributes: Attributes(&batch.common_tags, p),
                start_time_unix_nano: sum.then(|| begin.min(p.timestamp)),
                time_unix_nano: p.timestamp,
                as_int,
                as_double,
            };
            serde_json::to_writer(&mut *out, &dp).map_err(std::io::Error::other)?;
        }
        out.extend_from_slice(b"]}}");
    }
    out.extend_from_slice(b"]}]}]}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Point;
    use serde_json::{Value as J, json};
    use std::sync::Arc;

    fn encode(batch: &Batch) -> J {
        let id = Identity {
            host: "h1".into(),
            run: 5_000,
            boot: 1_000,
        };
        let mut out = Vec::new();
        write(&mut out, &id, batch, &mut Scratch::default()).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_site_metric_keeps_its_own_name() {
        let batch = Batch {
            seq: 1,
            common_tags: Arc::new(vec![("host".into(), "h1".into())]),
            points: vec![
                Point::new("backup_age_seconds".to_string(), 10_000)
                    .tag("job", "nightly")
                    .gauge(crate::point::WHOLE, 60.0),
            ],
        };
        let j = encode(&batch);
        let m = &j["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
        assert_eq!(m["name"], "backup_age_seconds");
    }

    #[test]
    fn counters_are_cumulative_sums_and_gauges_gauges() {
        let batch = Batch {
            seq: 1,
            common_tags: Arc::new(vec![("host".into(), "h1".into())]),
            points: vec![
                Point::new("diskio", 10_000)
                    .tag("name", "sda")
                    .counter("read_bytes", 7)
                    .int("iops_in_progress", -1),
                Point::new("diskio", 20_000)
                    .tag("name", "sda")
                    .counter("read_bytes", 9),
                Point::new("cpu", 20_000).gauge("usage_user", 1.5),
                Point::new("agent", 20_000).counter("sent", 3),
            ],
        };
        let j = encode(&batch);
        let rm = &j["resourceMetrics"][0];
        assert_eq!(
            rm["resource"]["attributes"],
            json!([{"key": "host.name", "value": {"stringValue": "h1"}}])
        );
        assert_eq!(rm["scopeMetrics"][0]["scope"]["name"], "procship");
        let metrics = rm["scopeMetrics"][0]["metrics"].as_array().unwrap();
        let names: Vec<_> = metrics
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "diskio_read_bytes",
                "diskio_iops_in_progress",
                "cpu_usage_user",
                "agent_sent"
            ]
        );
        let read = &metrics[0]["sum"];
        assert_eq!(read["aggregationTemporality"], 2);
        assert_eq!(read["isMonotonic"], true);
        assert_eq!(
            read["dataPoints"],
            json!([
                {"attributes": [{"key": "host", "value": {"stringValue": "h1"}},
                                {"key": "name", "value": {"stringValue": "sda"}}],
                 "startTimeUnixNano": "1000", "timeUnixNano": "10000", "asInt": "7"},
                {"attributes": [{"key": "host", "value": {"stringValue": "h1"}},
                                {"key": "name", "value": {"stringValue": "sda"}}],
                 "startTimeUnixNano": "1000", "timeUnixNano": "20000", "asInt": "9"}
            ])
        );
        assert_eq!(metrics[1]["gauge"]["dataPoints"][0]["asInt"], "-1");
        assert!(metrics[1].get("sum").is_none());
        assert_eq!(metrics[2]["gauge"]["dataPoints"][0]["asDouble"], 1.5);
        assert_eq!(
            metrics[3]["sum"]["dataPoints"][0]["startTimeUnixNano"], "5000",
            "the agent's own counters start with the agent"
        );
    }

    #[test]
    fn huge_counter_is_clamped_and_start_never_follows_the_point() {
        let batch = Batch {
            seq: 1,
            common_tags: Arc::new(vec![]),
            points: vec![Point::new("m", 500).counter("c", u64::MAX)],
        };
        let j = encode(&batch);
        let dp = &j["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0];
        assert_eq!(dp["asInt"], i64::MAX.to_string());
        assert_eq!(dp["startTimeUnixNano"], "500");
    }
}
