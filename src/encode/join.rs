//! Several batches in one request: how the shipper drains a backlog in
//! fewer, larger requests (`ship`'s paced drain). Each body is decompressed,
//! the bodies are joined by the rule of their format, and the result is
//! compressed once:
//! - `influx`: the lines one after another (line protocol is a list of lines);
//! - `prometheus`: the `WriteRequest`s one after another: protobuf reads
//!   concatenated messages as one whose repeated `timeseries` holds them all;
//! - `otlp`: the `resourceMetrics` arrays of the envelopes made into one;
//! - `json`: not joined: its envelope is one batch (`run`, `seq`) by contract.
//!
//! A part that does not decompress, or does not have its format's shape,
//! is an error: the shipper then sends the parts one by one, as they are.

use std::io::Read;

use super::{Compression, Format};

/// The most a joined request holds uncompressed (below every backend's
/// default request limit: VictoriaMetrics 32 MiB, InfluxDB 25 MiB, the
/// OpenTelemetry collector 20 MiB).
pub const MAX_RAW: usize = 16 << 20;

/// The OTLP envelope around one batch's `resourceMetrics` array.
const OTLP_HEAD: &[u8] = br#"{"resourceMetrics":["#;
const OTLP_TAIL: &[u8] = b"]}";

/// True when batches of `format` can share a request.
pub fn joins(format: Format) -> bool {
    !matches!(format, Format::Json)
}

/// One request body holding every body in `parts` (all of `format` and
/// `compression`), compressed as they were.
pub fn join(format: Format, compression: Compression, parts: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut raw_parts = Vec::with_capacity(parts.len());
    let mut total = 0usize;
    for (i, p) in parts.iter().enumerate() {
        let raw = decompress(compression, p).map_err(|e| format!("part {i}: {e}"))?;
        total += raw.len();
        if total > MAX_RAW {
            return Err(format!("more than {MAX_RAW} bytes uncompressed"));
        }
        raw_parts.push(raw);
    }
    let raw = join_raw(format, &raw_parts)?;
    compress(compression, &raw)
}

fn join_raw(format: Format, parts: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 2);
    match format {
        Format::Json => return Err("json batches are not joined".into()),
        Format::Influx => {
            for p in parts {
                out.extend_from_slice(p);
                if !p.is_empty() && !p.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
        }
        Format::Prometheus => parts.iter().for_each(|p| out.extend_from_slice(p)),
        Format::Otlp => {
            out.extend_from_slice(OTLP_HEAD);
            for (i, p) in parts.iter().enumerate() {
                let inner = p
                    .trim_ascii_end()
                    .strip_prefix(OTLP_HEAD)
                    .and_then(|r| r.strip_suffix(OTLP_TAIL))
                    .ok_or_else(|| format!("part {i} is not one OTLP envelope"))?;
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(inner);
            }
            out.extend_from_slice(OTLP_TAIL);
        }
    }
    Ok(out)
}

fn decompress(compression: Compression, body: &[u8]) -> Result<Vec<u8>, String> {
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut out = Vec::with_capacity(body.len() * 4);
            flate2::read::GzDecoder::new(body)
                .take(MAX_RAW as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip: {e}"))?;
            Ok(out)
        }
        Compression::Snappy => {
            let n = snap::raw::decompress_len(body).map_err(|e| format!("snappy: {e}"))?;
            if n > MAX_RAW {
                return Err(format!("snappy: {n} bytes uncompressed"));
            }
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("snappy: {e}"))
        }
    }
}

fn compress(compression: Compression, raw: &[u8]) -> Result<Vec<u8>, String> {
    match compression {
        Compression::None => Ok(raw.to_vec()),
        Compression::Gzip => {
            // A joined backlog is large and rare: compressed well.
            let mut z = super::gzip::Gzip::new(6, super::gzip::window_bits_for(raw.len()));
            let mut out = Vec::new();
            z.compress(raw, &mut out)
                .map_err(|e| format!("gzip: {e}"))?;
            Ok(out)
        }
        Compression::Snappy => super::remote_write::snappy(raw).map_err(|e| format!("snappy: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Encoder, Identity};
    use crate::point::{Batch, Point};

    fn encoded(format: Format, compression: Compression, seq: u64) -> Vec<u8> {
        let id = Identity {
            host: "h".into(),
            run: 1,
            boot: 1,
        };
        let batch = Batch {
            seq,
            common_tags: crate::point::CommonTags::new(vec![("host".into(), "h".into())]),
            points: vec![Point::new("mem", seq as i64 * 1_000_000_000).int("used", seq as i64)],
        };
        Encoder::new(format, compression, id)
            .encode(&batch)
            .unwrap()
            .body
    }

    #[test]
    fn influx_lines_follow_one_another_compressed_once() {
        let a = encoded(Format::Influx, Compression::Gzip, 1);
        let b = encoded(Format::Influx, Compression::Gzip, 2);
        let j = join(Format::Influx, Compression::Gzip, &[&a, &b]).unwrap();
        let raw = decompress(Compression::Gzip, &j).unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert_eq!(
            text,
            "mem,host=h used=1i 1000000000\nmem,host=h used=2i 2000000000\n"
        );
    }

    #[test]
    fn remote_write_requests_concatenate_into_one() {
        use prost::Message;
        let parts: Vec<_> = (1..=3)
            .map(|s| encoded(Format::Prometheus, Compression::Snappy, s))
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let j = join(Format::Prometheus, Compression::Snappy, &refs).unwrap();
        let raw = decompress(Compression::Snappy, &j).unwrap();
        let req = crate::encode::remote_write::WriteRequest::decode(&raw[..]).unwrap();
        let ms: Vec<i64> = req
            .timeseries
            .iter()
            .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
            .collect();
        assert_eq!(ms, [1000, 2000, 3000]);
    }

    #[test]
    fn otlp_envelopes_become_one_array() {
        let a = encoded(Format::Otlp, Compression::None, 1);
        let b = encoded(Format::Otlp, Compression::None, 2);
        let j = join(Format::Otlp, Compression::None, &[&a, &b]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["resourceMetrics"].as_array().unwrap().len(), 2);
        assert!(join(Format::Otlp, Compression::None, &[&a, b"{}"]).is_err());
    }

    #[test]
    fn json_and_broken_parts_are_not_joined() {
        let a = encoded(Format::Json, Compression::None, 1);
        assert!(!joins(Format::Json));
        assert!(join(Format::Json, Compression::None, &[&a, &a]).is_err());
        let e = join(Format::Influx, Compression::Gzip, &[b"not gzip"]).unwrap_err();
        assert!(e.contains("part 0: gzip"), "{e}");
    }
}
