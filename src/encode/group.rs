//! A batch's values grouped into series (remote write) or metrics (OTLP)
//! without allocating: indexes into the batch, sorted in place.

use std::cmp::Ordering;

use crate::point::{Batch, Value};

/// A value of a batch: (point, field) indexes.
pub type At = (u32, u32);

/// One group: its first value (its place in the batch) and its run in the
/// sorted values.
pub type Run = (At, usize, usize);

/// Fills `values` with the batch's values that `keep` accepts, sorted by
/// `order` (which must keep one group's values together and break ties by
/// place), and `runs` with each group (`same`), in order of first
/// appearance. Unstable sorts: no buffer, so nothing is allocated once the
/// vectors have grown.
pub fn group(
    batch: &Batch,
    keep: impl Fn(Value) -> bool,
    order: impl Fn(At, At) -> Ordering,
    same: impl Fn(At, At) -> bool,
    values: &mut Vec<At>,
    runs: &mut Vec<Run>,
) {
    values.clear();
    for (pi, p) in batch.points.iter().enumerate() {
        for (fi, (_, v)) in p.fields.iter().enumerate() {
            if keep(*v) {
                values.push((pi as u32, fi as u32));
            }
        }
    }
    values.sort_unstable_by(|a, b| order(*a, *b));
    runs.clear();
    let mut start = 0;
    for i in 1..=values.len() {
        if i == values.len() || !same(values[start], values[i]) {
            let first = values[start..i].iter().min().copied().unwrap_or_default();
            runs.push((first, start, i));
            start = i;
        }
    }
    runs.sort_unstable_by_key(|r| r.0);
}
