//! The paced drain: how a backlog (batches that waited through an outage,
//! in the spool or in memory) goes out once the backend answers again, so a
//! fleet that recovers together does not knock the backend down again.
//!
//! - **Fewer, larger requests.** When more batches wait behind the one the
//!   shipper takes, the ones that follow it in the queue, of the same format
//!   and compression, join it in one request up to `PROCSHIP_DRAIN_MAX_BYTES`
//!   of encoded batches (`encode::join`: influx, prometheus and otlp; a
//!   `json` envelope is one batch by contract and goes alone).
//! - **A bounded pace.** While batches still wait after a delivery, the next
//!   request waits `PROCSHIP_DRAIN_PACE`: an agent sends a backlog at most
//!   one request per pace. Steady state (nothing waits) never waits.
//! - **One bad batch loses only itself.** A joined request the backend
//!   rejects as a whole (a 4xx) is sent again part by part, so the parts it
//!   would take are delivered and only the bad one is dropped.
//!
//! A joined request is acknowledged, or abandoned at shutdown, part by part
//! (the spool keeps each until the request that carries it succeeded), and
//! counted as its parts: `sent_batches` counts batches, not requests.

use std::time::Duration;

use crate::config::{ConfigError, Values, Var, parse_bytes, parse_duration};
use crate::deliver::queue::Queued;
use crate::encode::{Encoded, join};

pub const VARS: &[Var] = &[
    Var::new(
        "DRAIN_MAX_BYTES",
        "256KiB",
        "a backlog is sent in requests of up to this many bytes of batches joined (influx, prometheus, otlp; json goes one batch per request); 0: one batch per request",
    ),
    Var::new(
        "DRAIN_PACE",
        "1",
        "while batches still wait after a delivery, the next request waits this long (a backlog goes out at most one request per pace); 0: no pause",
    ),
];

/// `PROCSHIP_DRAIN_MAX_BYTES` and `PROCSHIP_DRAIN_PACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub max_bytes: usize,
    pub pace: Duration,
}

impl Default for Options {
    /// One batch per request, no pause (tests and tools that build a shipper).
    fn default() -> Self {
        Options {
            max_bytes: 0,
            pace: Duration::ZERO,
        }
    }
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let max_bytes = v.get("DRAIN_MAX_BYTES", |s| {
            parse_bytes(s)
                .filter(|n| *n <= join::MAX_RAW)
                .ok_or_else(|| "a size up to 16MiB, such as 256KiB or 1MiB, or 0".to_string())
        })?;
        let pace = v.get("DRAIN_PACE", |s| {
            parse_duration(s).and_then(|d| {
                if d > Duration::from_secs(60) {
                    Err("a duration up to 60s, such as 1s or 250ms, or 0".into())
                } else {
                    Ok(d)
                }
            })
        })?;
        Ok(Options { max_bytes, pace })
    }

    /// Room left for more batches in a request that holds `taken` bytes.
    pub fn room(&self, taken: usize) -> usize {
        self.max_bytes.saturating_sub(taken)
    }

    /// How long to wait before the next request, when `waiting` batches
    /// still wait after a delivery and `stopping` (shutdown: deliver what
    /// can be delivered, as fast as it can).
    pub fn pause(&self, waiting: u64, stopping: bool) -> Option<Duration> {
        (waiting > 0 && !stopping && !self.pace.is_zero()).then_some(self.pace)
    }
}

/// What one POST carries: one batch, or several joined.
pub struct Request {
    pub first: Queued,
    pub rest: Vec<Queued>,
    /// The parts' bodies joined, when there are several.
    joined: Option<Encoded>,
}

impl Request {
    pub fn single(first: Queued) -> Request {
        Request {
            first,
            rest: Vec::new(),
            joined: None,
        }
    }

    /// A request of `first` and `rest` joined into one body; when the
    /// bodies cannot be joined, `Err` gives the parts back with why.
    pub fn joined(first: Queued, rest: Vec<Queued>) -> Result<Request, (Vec<Queued>, String)> {
        if rest.is_empty() {
            return Ok(Request::single(first));
        }
        let e = &first.batch;
        let bodies: Vec<&[u8]> = std::iter::once(&first)
            .chain(&rest)
            .map(|q| q.batch.body.as_slice())
            .collect();
        match join::join(e.format, e.compression, &bodies) {
            Ok(body) => {
                let all = || std::iter::once(&first).chain(&rest).map(|q| &q.batch);
                let joined = Encoded {
                    seq: e.seq,
                    points: all().map(|b| b.points).sum(),
                    oldest: all().map(|b| b.oldest).min().unwrap_or(e.oldest),
                    format: e.format,
                    compression: e.compression,
                    born: e.born,
                    body,
                };
                Ok(Request {
                    first,
                    rest,
                    joined: Some(joined),
                })
            }
            Err(why) => {
                let mut parts = vec![first];
                parts.extend(rest);
                Err((parts, why))
            }
        }
    }

    /// What goes on the wire.
    pub fn batch(&self) -> &Encoded {
        self.joined.as_ref().unwrap_or(&self.first.batch)
    }

    /// How many batches it carries.
    pub fn batches(&self) -> usize {
        1 + self.rest.len()
    }

    pub fn parts(&self) -> impl Iterator<Item = &Queued> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    pub fn into_parts(self) -> impl Iterator<Item = Queued> {
        std::iter::once(self.first).chain(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Born, Compression, Format};

    fn queued(seq: u64, format: Format, body: &[u8]) -> Queued {
        Queued {
            batch: Encoded {
                seq,
                points: 2,
                oldest: seq as i64,
                format,
                compression: Compression::None,
                born: Born::default(),
                body: body.to_vec(),
            },
            spooled: None,
        }
    }

    #[test]
    fn a_joined_request_counts_its_parts_and_carries_them_all() {
        let r = Request::joined(
            queued(4, Format::Influx, b"a v=1i 1\n"),
            vec![
                queued(5, Format::Influx, b"a v=2i 2\n"),
                queued(6, Format::Influx, b"a v=3i 3"),
            ],
        )
        .unwrap_or_else(|_| panic!("influx joins"));
        assert_eq!(r.batches(), 3);
        let b = r.batch();
        assert_eq!((b.seq, b.points, b.oldest), (4, 6, 4));
        assert_eq!(b.body, b"a v=1i 1\na v=2i 2\na v=3i 3\n");
        assert_eq!(
            r.parts().map(|q| q.batch.seq).collect::<Vec<_>>(),
            [4, 5, 6]
        );
    }

    #[test]
    fn parts_that_cannot_be_joined_come_back_in_order() {
        let Err((parts, why)) = Request::joined(
            queued(1, Format::Json, b"{}"),
            vec![queued(2, Format::Json, b"{}")],
        ) else {
            panic!("json does not join");
        };
        assert!(why.contains("json"), "{why}");
        assert_eq!(
            parts.iter().map(|q| q.batch.seq).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn the_pace_holds_only_while_a_backlog_waits_and_not_at_shutdown() {
        let o = Options {
            max_bytes: 100,
            pace: Duration::from_secs(1),
        };
        assert_eq!(o.pause(0, false), None, "steady state never waits");
        assert_eq!(o.pause(3, false), Some(Duration::from_secs(1)));
        assert_eq!(o.pause(3, true), None, "shutdown delivers at once");
        let off = Options {
            pace: Duration::ZERO,
            ..o
        };
        assert_eq!(off.pause(3, false), None);
        assert_eq!((o.room(30), o.room(300)), (70, 0));
    }
}
