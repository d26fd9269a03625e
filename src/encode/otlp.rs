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

use std::collections::HashMap;

use serde::{Serialize, Serializer};

use super::Identity;
use super::promtext::series_name;
use crate::point::{Batch, Point, Value, merged_tags};

/// `AGGREGATION_TEMPORALITY_CUMULATIVE`.
const CUMULATIVE: u8 = 2;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    resource_metrics: [ResourceMetrics<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceMetrics<'a> {
    resource: Resource<'a>,
    scope_metrics: [ScopeMetrics<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeMetrics<'a> {
    scope: Scope,
    metrics: Vec<Metric<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

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
struct Metric<'a> {
    name: String,
    /// Serialized as the metric's `gauge` or `sum` key.
    #[serde(flatten)]
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Data<'a> {
    #[serde(rename_all = "camelCase")]
    Gauge { data_points: Vec<DataPoint<'a>> },
    #[serde(rename_all = "camelCase")]
    Sum {
        aggregation_temporality: u8,
        is_monotonic: bool,
        data_points: Vec<DataPoint<'a>>,
    },
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

pub fn write(out: &mut Vec<u8>, id: &Identity, batch: &Batch) -> std::io::Result<()> {
    let run = i64::try_from(id.run).unwrap_or(i64::MAX);
    let boot = if id.boot > 0 { id.boot } else { run };
    // (measurement, field, is_sum) → index in `metrics`, kept in order of
    // first appearance.
    let mut index: HashMap<(&str, &str, bool), usize> = HashMap::new();
    let mut metrics: Vec<Metric> = Vec::new();
    for p in &batch.points {
        for (field, v) in &p.fields {
            let (as_int, as_double) = match *v {
                Value::Counter(x) => (Some(i64::try_from(x).unwrap_or(i64::MAX)), None),
                Value::Int(x) => (Some(x), None),
                Value::Gauge(x) | Value::Total(x) if x.is_finite() => (None, Some(x)),
                Value::Gauge(_) | Value::Total(_) => continue,
            };
            let sum = matches!(v, Value::Counter(_) | Value::Total(_));
            let start = if p.measurement == "agent" { run } else { boot };
            let dp = DataPoint {
                attributes: Attributes(&batch.common_tags, p),
                start_time_unix_nano: sum.then(|| start.min(p.timestamp)),
                time_unix_nano: p.timestamp,
                as_int,
                as_double,
            };
            let i = *index
                .entry((&p.measurement, field, sum))
                .or_insert_with(|| {
                    metrics.push(Metric {
                        name: series_name(&p.measurement, field),
                        data: if sum {
                            Data::Sum {
                                aggregation_temporality: CUMULATIVE,
                                is_monotonic: true,
                                data_points: Vec::new(),
                            }
                        } else {
                            Data::Gauge {
                                data_points: Vec::new(),
                            }
                        },
                    });
                    metrics.len() - 1
                });
            match &mut metrics[i].data {
                Data::Gauge { data_points } | Data::Sum { data_points, .. } => data_points.push(dp),
            }
        }
    }
    let req = Request {
        resource_metrics: [ResourceMetrics {
            resource: Resource {
                attributes: vec![KeyValue {
                    key: "host.name",
                    value: AnyValue {
                        string_value: &id.host,
                    },
                }],
            },
            scope_metrics: [ScopeMetrics {
                scope: Scope {
                    name: "procship",
                    version: env!("CARGO_PKG_VERSION"),
                },
                metrics,
            }],
        }],
    };
    serde_json::to_writer(&mut *out, &req).map_err(std::io::Error::other)?;
    out.push(b'\n');
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
        write(&mut out, &id, batch).unwrap();
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
