//! The batcher: collects each cycle's points and cuts them into numbered
//! batches of at most `PROCSHIP_BATCH_MAX_POINTS`, either as soon as that
//! many are pending or when the flush timer fires. The host tag and
//! `PROCSHIP_TAGS` ride along once per batch as its common tags.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::config::{
    ConfigError, Values, Var, parse_duration, parse_positive_duration, split_list,
};
use crate::point::{Batch, CommonTags, Point};

pub const VARS: &[Var] = &[
    Var::new("TAGS", "", "extra tags on every point: k=v,k=v").live(),
    Var::new(
        "BATCH_MAX_POINTS",
        "1000",
        "a batch is cut when it holds this many points",
    ),
    Var::new(
        "FLUSH_INTERVAL",
        "10",
        "pending points are cut into a batch at least this often",
    ),
    Var::new(
        "FLUSH_JITTER",
        "1",
        "random delay, up to this long, added to every flush",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `PROCSHIP_TAGS`, sorted by key.
    pub tags: Vec<(String, String)>,
    pub max_points: NonZeroUsize,
    pub flush_interval: Duration,
    pub flush_jitter: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        Ok(Options {
            tags: v.get("TAGS", parse_tags)?,
            max_points: v.get("BATCH_MAX_POINTS", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .and_then(NonZeroUsize::new)
                    .ok_or_else(|| "a whole number from 1 to 1000000".to_string())
            })?,
            flush_interval: v.get("FLUSH_INTERVAL", parse_positive_duration)?,
            flush_jitter: v.get("FLUSH_JITTER", parse_duration)?,
        })
    }
}

fn valid_tag_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_tags(s: &str) -> Result<Vec<(String, String)>, String> {
    const ACCEPTED: &str = "k=v pairs separated by commas, keys of letters, digits and _ \
         (not starting with a digit, not 'host': use PROCSHIP_HOSTNAME), values without commas or control characters";
    let mut tags: Vec<(String, String)> = Vec::new();
    for item in split_list(s) {
        let (k, v) = item.split_once('=').ok_or(ACCEPTED)?;
        let (k, v) = (k.trim(), v.trim());
        if !valid_tag_key(k) || k == "host" || v.is_empty() || v.chars().any(char::is_control) {
            return Err(ACCEPTED.into());
        }
        if tags.iter().any(|(x, _)| x == k) {
            return Err(format!("{ACCEPTED}; the key {k} is given twice"));
        }
        tags.push((k.to_string(), v.to_string()));
    }
    tags.sort();
    Ok(tags)
}

pub struct Batcher {
    pending: Vec<Point>,
    /// Emptied point vectors of encoded batches (`reuse`), for the next cut.
    spare: Vec<Vec<Point>>,
    max_points: usize,
    next_seq: u64,
    common: CommonTags,
}

impl Batcher {
    pub fn new(host: &str, tags: &[(String, String)], max_points: usize) -> Self {
        let mut common: Vec<(String, String)> = tags.to_vec();
        common.push(("host".into(), host.to_string()));
        common.sort();
        Batcher {
            pending: Vec::new(),
            spare: Vec::new(),
            max_points: max_points.max(1),
            next_seq: 1,
            common: CommonTags::new(common),
        }
    }

    fn cut(&mut self, n: usize) -> Batch {
        let mut rest = self.spare.pop().unwrap_or_default();
        rest.extend(self.pending.drain(n..));
        let points = std::mem::replace(&mut self.pending, rest);
        let seq = self.next_seq;
        self.next_seq += 1;
        Batch {
            seq,
            common_tags: self.common.clone(),
            points,
        }
    }

    /// An encoded batch's points, given back: their memory goes to the
    /// point pool (`point::recycle`) and the vector to the next cut.
    pub fn reuse(&mut self, mut points: Vec<Point>) {
        crate::point::recycle(&mut points);
        if self.spare.len() < 2 {
            self.spare.push(points);
        }
    }

    /// New common tags for the batches cut from now on (a reload).
    pub fn set_tags(&mut self, host: &str, tags: &[(String, String)]) {
        let mut common: Vec<(String, String)> = tags.to_vec();
        common.push(("host".into(), host.to_string()));
        common.sort();
        self.common = CommonTags::new(common);
    }

    /// The tags every point of a batch gets (host, `PROCSHIP_TAGS`).
    pub fn common(&self) -> &[(String, String)] {
        &self.common
    }

    /// Numbers batches from `seq` on (the spool carries the sequence
    /// across restarts).
    pub fn first_seq(mut self, seq: u64) -> Self {
        self.next_seq = seq.max(1);
        self
    }

    /// Takes a cycle's points (emptying `points`); returns the full batches
    /// this completes. Points without fields carry nothing and are left out.
    /// Returns how many points were taken, and the batches.
    pub fn add(&mut self, points: &mut Vec<Point>) -> (usize, Vec<Batch>) {
        let before = self.pending.len();
        // Those left out go back to the point pool as they are dropped.
        self.pending
            .extend(points.drain(..).filter(|p| !p.fields.is_empty()));
        let taken = self.pending.len() - before;
        let mut full = Vec::new();
        while self.pending.len() >= self.max_points {
            full.push(self.cut(self.max_points));
        }
        (taken, full)
    }

    /// Cuts whatever is pending (the flush timer fired, or shutdown).
    pub fn flush(&mut self) -> Option<Batch> {
        if self.pending.is_empty() {
            None
        } else {
            Some(self.cut(self.pending.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| Point::new("m", i as i64).int("v", 1))
            .collect()
    }

    #[test]
    fn cuts_by_size_and_on_flush_with_sequence() {
        let mut b = Batcher::new("h", &[("dc".into(), "x".into())], 4);
        let (taken, full) = b.add(&mut pts(10));
        assert_eq!(taken, 10);
        assert_eq!(
            full.iter()
                .map(|b| (b.seq, b.points.len()))
                .collect::<Vec<_>>(),
            [(1, 4), (2, 4)]
        );
        let last = b.flush().unwrap();
        assert_eq!((last.seq, last.points.len()), (3, 2));
        assert_eq!(last.points[0].timestamp, 8, "order kept");
        assert!(b.flush().is_none());
        assert_eq!(
            &**last.common_tags,
            &[
                ("dc".to_string(), "x".to_string()),
                ("host".into(), "h".into())
            ]
        );
    }

    #[test]
    fn fieldless_points_are_not_taken() {
        let mut b = Batcher::new("h", &[], 10);
        let mut v = vec![Point::new("m", 0), Point::new("m", 0).int("x", 1)];
        assert_eq!(b.add(&mut v).0, 1);
        assert!(v.is_empty());
    }
}
