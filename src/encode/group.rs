//! A batch's values grouped into series (remote write) or metrics (OTLP)
//! without allocating: indexes into the batch, sorted in place.

use std::cmp::Ordering;

use crate::point::{Batch, Value};

/// A value of a batch: (point, field) indexes.
pub type At = (u32, u32);

/// One group: its first value (its place in the batch) and its run in the
/// sorted values.
pub type Run = (At, usize, usize);

/// What `group` makes, kept from batch to batch (its memory only).
#[derive(Debug, Default)]
pub struct Groups {
    /// Every value kept, sorted into runs of one group each.
    pub values: Vec<At>,
    /// Each group's first value and its run in `values`, in order of first
    /// appearance.
    pub runs: Vec<Run>,
    /// The values with their keys, while sorting.
    keyed: Vec<(u64, At)>,
}

/// Fills `g` with the batch's values that `keep` accepts, sorted by `key`
/// then `order`, and each group (`same`) in order of first appearance.
/// `key` must be equal for the values of one group (a hash of what makes
/// it one: most comparisons are then of two numbers, not of names and
/// tags); `order` must keep one group's values together and break ties by
/// place. Unstable sorts: no buffer, so nothing is allocated once the
/// vectors have grown.
pub fn group(
    batch: &Batch,
    keep: impl Fn(Value) -> bool,
    key: impl Fn(At) -> u64,
    order: impl Fn(At, At) -> Ordering,
    same: impl Fn(At, At) -> bool,
    g: &mut Groups,
) {
    g.keyed.clear();
    for (pi, p) in batch.points.iter().enumerate() {
        for (fi, (_, v)) in p.fields.iter().enumerate() {
            if keep(*v) {
                let at = (pi as u32, fi as u32);
                g.keyed.push((key(at), at));
            }
        }
    }
    g.keyed
        .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| order(a.1, b.1)));
    g.values.clear();
    g.values.extend(g.keyed.iter().map(|k| k.1));
    let values = &g.values;
    g.runs.clear();
    let mut start = 0;
    for i in 1..=values.len() {
        if i == values.len() || !same(values[start], values[i]) {
            let first = values[start..i].iter().min().copied().unwrap_or_default();
            g.runs.push((first, start, i));
            start = i;
        }
    }
    g.runs.sort_unstable_by_key(|r| r.0);
}
