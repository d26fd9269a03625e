//! Encoding: a `Batch` becomes the bytes of one request body in the
//! configured wire format (one file per format), gzip-compressed unless
//! `PROCSHIP_COMPRESSION=none` or the output is stdout. Prometheus remote
//! write is always snappy-compressed protobuf on the wire, and Prometheus
//! text on stdout.
//!
//! One gzip compressor (`gzip::Gzip`, zlib-rs) lives as long as the encoder
//! and is reset per batch: a fresh one allocates and zeroes a few hundred KiB,
//! which was most of the agent's user-space work per cycle and flushed the
//! CPU caches; its window and buffers are sized as gzip.rs says. Its level is
//! `PROCSHIP_GZIP_LEVEL`, 1 by default: on a cycle's JSON batch (`cargo
//! bench --bench cycle -- encode/json_gzip_level`) level 1 costs about half
//! of level 6's CPU for about 40 % more bytes (4.9 against 3.5 KB for every
//! collector's points), and compression was most of the agent's own work
//! per cycle; a site that pays for bandwidth sets a higher level.

use crate::config::{ConfigError, Values, Var};
use crate::point::{Batch, Timestamp};

pub mod group;
pub mod gzip;
pub mod influx;
pub mod join;
pub mod json;
pub mod otlp;
pub mod promtext;
pub mod remote_write;

pub const VARS: &[Var] = &[
    Var::new(
        "FORMAT",
        "json",
        "wire format: json | influx | prometheus (remote write) | otlp (OTLP/HTTP JSON); README, Backends: the URL and headers each backend wants",
    ),
    Var::new(
        "COMPRESSION",
        "gzip",
        "request body compression: gzip | none (prometheus remote write is always snappy)",
    ),
    Var::new(
        "GZIP_LEVEL",
        "1",
        "gzip level, 1 (fastest) to 9 (smallest); 1 halves the agent's compression CPU for about a third more bytes than 6 (README, Performance)",
    ),
];

/// The gzip level of `PROCSHIP_GZIP_LEVEL` when none is set.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// `PROCSHIP_FORMAT` and `PROCSHIP_COMPRESSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    pub compression: Compression,
    pub gzip_level: u32,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let format = v.get("FORMAT", |s| {
            Format::ALL
                .into_iter()
                .find(|f| f.name() == s)
                .ok_or_else(|| format!("accepted: {}", Format::ALL.map(Format::name).join(", ")))
        })?;
        let compression = v.get("COMPRESSION", |s| {
            Compression::CHOSEN
                .into_iter()
                .find(|c| c.name() == s)
                .ok_or_else(|| {
                    format!(
                        "accepted: {}",
                        Compression::CHOSEN.map(Compression::name).join(", ")
                    )
                })
        })?;
        let gzip_level = v.get("GZIP_LEVEL", |s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=9).contains(n))
                .ok_or_else(|| "a whole number from 1 to 9".to_string())
        })?;
        Ok(Options {
            format,
            compression,
            gzip_level,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Influx,
    /// Prometheus remote write 1.0 (protobuf, always snappy).
    Prometheus,
    /// OTLP/HTTP metrics, JSON encoding.
    Otlp,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Json,
        Format::Influx,
        Format::Prometheus,
        Format::Otlp,
    ];

    /// The media type of a body in this format (the request's Content-Type).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::Otlp => "application/json",
            Format::Influx => "text/plain; charset=utf-8",
            Format::Prometheus => "application/x-protobuf",
        }
    }

    /// Headers the protocol itself requires, besides the content headers.
    /// Names in lower case, as HTTP/1.1 sends them and as the shipper takes
    /// them without parsing (`HeaderName::from_static`).
    pub fn protocol_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Format::Prometheus => &[("x-prometheus-remote-write-version", "0.1.0")],
            _ => &[],
        }
    }

    /// The name `PROCSHIP_FORMAT` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Influx => "influx",
            Format::Prometheus => "prometheus",
            Format::Otlp => "otlp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
    /// Snappy block format: what Prometheus remote write requires, whatever
    /// `PROCSHIP_COMPRESSION` says; not selectable for other formats.
    Snappy,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::Gzip, Compression::None, Compression::Snappy];
    /// What `PROCSHIP_COMPRESSION` may choose.
    pub const CHOSEN: [Compression; 2] = [Compression::Gzip, Compression::None];

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::None => "none",
            Compression::Snappy => "snappy",
        }
    }

    /// The request's Content-Encoding, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::None => None,
            Compression::Snappy => Some("snappy"),
        }
    }
}

/// A batch ready for the wire: what the queue holds and the shipper sends.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub seq: u64,
    pub points: u64,
    /// The oldest point's timestamp (for age limits and logs).
    pub oldest: Timestamp,
    /// How `body` is encoded: a spooled batch keeps its own, whatever the
    /// configuration of the run that sends it.
    pub format: Format,
    pub compression: Compression,
    /// When, and by which run, the batch was cut.
    pub born: Born,
    pub body: Vec<u8>,
}

/// When a batch was cut, on the boot clock (`point::boot_clock_ns`), and
/// the run that cut it (`Identity::run`; 0: unknown, a batch spooled by a
/// version that did not record it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Born {
    pub run: u64,
    pub at_ns: u64,
}

impl Encoded {
    /// How old the batch is, in ns: this run's batches (`run`) since they
    /// were cut, on the boot clock (`boot_now`), so a step of the wall clock
    /// ages nothing; a batch from another run (recovered from the spool) by
    /// its oldest point's timestamp against the wall clock (`wall_now`).
    pub fn age_ns(&self, run: u64, boot_now: u64, wall_now: Timestamp) -> u64 {
        if run != 0 && self.born.run == run {
            boot_now.saturating_sub(self.born.at_ns)
        } else {
            u64::try_from(wall_now.saturating_sub(self.oldest)).unwrap_or(0)
        }
    }

    /// Bytes this batch holds in the queue.
    pub fn size(&self) -> usize {
        self.body.len() + std::mem::size_of::<Self>()
    }
}

/// Who the agent is, stamped on every JSON batch.
#[derive(Debug, Clone)]
pub struct Identity {
    pub host: String,
    /// Agent start time (ns since the epoch): with `seq`, a unique batch id per host.
    pub run: u64,
    /// Host boot time (ns since the epoch; 0 when unknown): where the
    /// kernel's counters start, for OTLP's cumulative sums.
    pub boot: Timestamp,
}

pub struct Encoder {
    pub format: Format,
    pub compression: Compression,
    identity: Identity,
    /// Stdout: plain, readable output (no compression, remote write as text).
    stdout: bool,
    buf: Vec<u8>,
    /// The buffer the next body is written into (a delivered one, `reuse`).
    spare: Vec<u8>,
    /// The gzip compressor, made at the first gzip'd batch at
    /// `gzip_level`, made again with a larger window for a larger body.
    gzip: Option<gzip::Gzip>,
    gzip_level: u32,
    snappy: snap::raw::Encoder,
    /// The encoders' memory kept from batch to batch.
    otlp: otlp::Scratch,
    remote_write: remote_write::Scratch,
}

impl Encoder {
    /// An encoder for HTTP request bodies. Remote write ignores
    /// `compression`: the protocol requires snappy.
    pub fn new(format: Format, compression: Compression, identity: Identity) -> Self {
        let compression = match format {
            Format::Prometheus => Compression::Snappy,
            _ => compression,
        };
        Encoder {
            format,
            compression,
            identity,
            stdout: false,
            buf: Vec::new(),
            spare: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            otlp: otlp::Scratch::default(),
            remote_write: remote_write::Scratch::default(),
            gzip_level: DEFAULT_GZIP_LEVEL,
            gzip: None,
        }
    }

    /// The same encoder with gzip at `level` (1 fastest … 9 smallest).
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level;
        self
    }

    /// An encoder for stdout: uncompressed, and readable text for remote write.
    pub fn stdout(format: Format, identity: Identity) -> Self {
        // `new` forces snappy for remote write; stdout stays uncompressed.
        Encoder {
            stdout: true,
            compression: Compression::None,
            ..Encoder::new(format, Compression::None, identity)
        }
    }

    /// A delivered body's buffer, for the next `encode` to write into.
    pub fn reuse(&mut self, body: Vec<u8>) {
        self.spare = body;
    }

    pub fn encode(&mut self, batch: &Batch) -> std::io::Result<Encoded> {
        self.buf.clear();
        match self.format {
            Format::Json => json::write(&mut self.buf, &self.identity, batch)?,
            Format::Influx => influx::write(&mut self.buf, batch)?,
            Format::Otlp => otlp::write(&mut self.buf, &self.identity, batch, &mut self.otlp)?,
            Format::Prometheus if self.stdout => remote_write::write_text(&mut self.buf, batch),
            Format::Prometheus => remote_write::write(&mut self.buf, batch, &mut self.remote_write),
        }
        let mut body = std::mem::take(&mut self.spare);
        match self.compression {
            Compression::Gzip => {
                let bits = gzip::window_bits_for(self.buf.len());
                if self.gzip.as_ref().is_none_or(|z| z.window_bits() < bits) {
                    self.gzip = Some(gzip::Gzip::new(self.gzip_level, bits));
                }
                if let Some(z) = &mut self.gzip {
                    z.compress(&self.buf, &mut body)?;
                }
            }
            Compression::Snappy => {
                remote_write::snappy_into(&mut self.snappy, &self.buf, &mut body)?;
            }
            Compression::None => std::mem::swap(&mut body, &mut self.buf),
        }
        Ok(Encoded {
            seq: batch.seq,
            points: batch.points.len() as u64,
            oldest: batch.points.iter().map(|p| p.timestamp).min().unwrap_or(0),
            format: self.format,
            compression: self.compression,
            born: Born {
                run: self.identity.run,
                at_ns: crate::point::boot_clock_ns(),
            },
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Point;
    use std::io::Read;
    use std::sync::Arc;

    #[test]
    fn this_runs_batches_age_on_the_boot_clock_others_by_their_timestamps() {
        let e = Encoded {
            seq: 1,
            points: 1,
            oldest: 1_000,
            format: Format::Influx,
            compression: Compression::None,
            born: Born {
                run: 42,
                at_ns: 500,
            },
            body: Vec::new(),
        };
        // This run: a wall clock stepped a day forward ages nothing.
        assert_eq!(e.age_ns(42, 800, 86_400_000_000_000), 300);
        // Another run's batch (recovered from the spool): by its timestamp.
        assert_eq!(e.age_ns(43, 800, 3_000), 2_000);
        // Unknown run on either side, and a clock behind the batch.
        let old = Encoded {
            born: Born::default(),
            ..e
        };
        assert_eq!(old.age_ns(0, 800, 3_000), 2_000);
        assert_eq!(old.age_ns(0, 800, 10), 0);
    }

    #[test]
    fn gzip_round_trips() {
        let batch = Batch {
            seq: 3,
            common_tags: Arc::new(vec![("host".into(), "h".into())]),
            points: vec![
                Point::new("m", 5).gauge("f", 1.5),
                Point::new("m", 4).counter("c", 2),
            ],
        };
        let id = Identity {
            host: "h".into(),
            run: 1,
            boot: 0,
        };
        let mut plain = Encoder::new(Format::Influx, Compression::None, id.clone());
        let mut gz = Encoder::new(Format::Influx, Compression::Gzip, id);
        let a = plain.encode(&batch).unwrap();
        let b = gz.encode(&batch).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&b.body[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, a.body);
        assert_eq!((b.seq, b.points, b.oldest), (3, 2, 4));
    }

    #[test]
    fn a_larger_body_gets_a_larger_window_and_every_body_round_trips() {
        let id = Identity {
            host: "h".into(),
            run: 1,
            boot: 0,
        };
        let batch = |n: usize| Batch {
            seq: 1,
            common_tags: Arc::new(vec![("host".into(), "h".into())]),
            points: (0..n)
                .map(|i| Point::new("m", i as i64).counter("c", (i * 7919 % 1000) as u64))
                .collect(),
        };
        let mut plain = Encoder::new(Format::Json, Compression::None, id.clone());
        let mut gz = Encoder::new(Format::Json, Compression::Gzip, id);
        let mut bits = Vec::new();
        for n in [2, 2_000, 20, 200] {
            let want = plain.encode(&batch(n)).unwrap().body;
            let got = gz.encode(&batch(n)).unwrap().body;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&got[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, want, "{n} points");
            bits.push(gz.gzip.as_ref().map(gzip::Gzip::window_bits));
        }
        // Made at 9 bits, larger for the large body, never smaller again.
        assert_eq!(bits, [Some(9), Some(15), Some(15), Some(15)]);
    }
}
