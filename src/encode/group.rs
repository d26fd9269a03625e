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
    // By key and place (integers: a fast sort), then each run of one key
    // by `order` (the values of one group over several cycles, or two
    // groups whose keys collide).
    g.keyed.sort_unstable();
    let mut start = 0;
    while start < g.keyed.len() {
        let key = g.keyed[start].0;
        let end = start + g.keyed[start..].iter().take_while(|k| k.0 == key).count();
        if end - start > 1 {
            g.keyed[start..end].sort_unstable_by(|a, b| order(a.1, b.1));
        }
        start = end;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Point;
    use std::sync::Arc;

    #[test]
    fn colliding_keys_still_make_each_group_one_run_in_order() {
        let batch = Batch {
            seq: 1,
            common_tags: Arc::new(Vec::new()),
            points: vec![
                Point::new("b", 2).uint("x", 1),
                Point::new("a", 2).uint("x", 2),
                Point::new("b", 1).uint("x", 3),
                Point::new("a", 1).uint("x", 4),
            ],
        };
        let m = |at: At| &batch.points[at.0 as usize].measurement;
        let t = |at: At| batch.points[at.0 as usize].timestamp;
        for key in [|_: At| 7, |at: At| u64::from(at.0 % 2)] {
            let mut g = Groups::default();
            group(
                &batch,
                |_| true,
                key,
                |a, b| m(a).cmp(m(b)).then(t(a).cmp(&t(b))).then(a.cmp(&b)),
                |a, b| m(a) == m(b),
                &mut g,
            );
            // "b" appears first; each group's values by time.
            let runs: Vec<(At, &[At])> = g
                .runs
                .iter()
                .map(|&(f, s, e)| (f, &g.values[s..e]))
                .collect();
            assert_eq!(
                runs,
                vec![
                    ((0, 0), &[(2, 0), (0, 0)][..]),
                    ((1, 0), &[(3, 0), (1, 0)][..])
                ]
            );
        }
    }
}
