//! Derived rates (`PROCSHIP_RATES=true`): for backends that cannot compute
//! rates themselves, a `<counter>_per_sec` gauge beside each cumulative
//! counter of the `diskio` and `net` points, from the previous cycle's value
//! of the same series. The first cycle of a series, a counter that went
//! backwards (a reset, a device re-plugged) and a zero time step give no
//! rate for that cycle. Series not seen in a cycle are forgotten.

use std::collections::HashMap;

use crate::point::{Point, Timestamp, Value};

#[derive(Default)]
pub struct Rates {
    enabled: bool,
    /// Series key → (time, counters) of the last cycle, and the cycle it was seen in.
    prev: HashMap<String, (Timestamp, Vec<u64>, u64)>,
    cycle: u64,
}

impl Rates {
    pub fn new(enabled: bool) -> Self {
        Rates {
            enabled,
            ..Rates::default()
        }
    }

    /// Call once per cycle before `apply`, and `end_cycle` after.
    pub fn start_cycle(&mut self) {
        self.cycle += 1;
    }

    pub fn end_cycle(&mut self) {
        let cycle = self.cycle;
        self.prev.retain(|_, (_, _, seen)| *seen == cycle);
    }

    /// Adds the rate fields to `p`, the series named `key`. `names` maps
    /// each counter field to its rate field, in the order they appear.
    pub fn apply(&mut self, key: &str, mut p: Point, names: &[(&str, &'static str)]) -> Point {
        if !self.enabled {
            return p;
        }
        let now: Vec<u64> = names
            .iter()
            .map(|(f, _)| match p.fields.iter().find(|(n, _)| n == f) {
                Some((_, Value::Counter(v))) => *v,
                _ => u64::MAX,
            })
            .collect();
        if let Some((t0, before, _)) = self.prev.get(key) {
            let dt = (p.timestamp - t0) as f64 / 1e9;
            if dt > 0.0 {
                for ((_, rate), (a, b)) in names.iter().zip(before.iter().zip(&now)) {
                    if *a != u64::MAX && *b != u64::MAX && b >= a {
                        p = p.gauge(*rate, (b - a) as f64 / dt);
                    }
                }
            }
        }
        match self.prev.get_mut(key) {
            Some(e) => *e = (p.timestamp, now, self.cycle),
            None => {
                self.prev
                    .insert(key.to_string(), (p.timestamp, now, self.cycle));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[(&str, &str)] = &[("rx", "rx_per_sec"), ("tx", "tx_per_sec")];

    fn pt(t: i64, rx: u64, tx: u64) -> Point {
        Point::new("net", t).counter("rx", rx).counter("tx", tx)
    }

    #[test]
    fn rates_from_the_previous_cycle_skip_resets_and_forget_gone_series() {
        let mut r = Rates::new(true);
        r.start_cycle();
        let p = r.apply("eth0", pt(0, 100, 50), NAMES);
        assert_eq!(p.field("rx_per_sec"), None, "first cycle primes");
        r.end_cycle();
        r.start_cycle();
        let p = r.apply("eth0", pt(2_000_000_000, 300, 40), NAMES);
        assert_eq!(p.field("rx_per_sec"), Some(Value::Gauge(100.0)));
        assert_eq!(p.field("tx_per_sec"), None, "went backwards: no rate");
        r.end_cycle();
        r.start_cycle();
        r.end_cycle();
        r.start_cycle();
        let p = r.apply("eth0", pt(4_000_000_000, 500, 60), NAMES);
        assert_eq!(p.field("rx_per_sec"), None, "a gap forgets the series");
        let off = Rates::new(false).apply("eth0", pt(0, 1, 1), NAMES);
        assert_eq!(off.fields.len(), 2);
    }
}
