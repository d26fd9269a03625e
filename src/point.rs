//! The one data model: a `Point` (measurement, sorted tags, typed fields, one
//! timestamp per cycle) and a `Batch` of points that the encoders turn into
//! bytes. Host and global tags are held once per batch (`Batch::common_tags`)
//! and merged into every point's tags at encoding time.

use std::borrow::Cow;
use std::sync::Arc;

/// Nanoseconds since the Unix epoch.
pub type Timestamp = i64;

/// The wall clock as a `Timestamp` (0 before the epoch, saturating far after).
pub fn now_ns() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The boot clock (`CLOCK_BOOTTIME`, ns): never steps with the wall clock,
/// and counts time spent suspended. 0 if the kernel cannot say.
pub fn boot_clock_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
    })
}

/// A field's value; the variant says both the wire type and the semantics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A monotonic cumulative counter (bytes read, context switches, …).
    Counter(u64),
    /// A floating-point gauge (percentages, load averages).
    Gauge(f64),
    /// An integer gauge (bytes of memory in use, process counts).
    Int(i64),
    /// A monotonic cumulative counter of a real quantity (CPU seconds).
    Total(f64),
}

pub type Tag = (Cow<'static, str>, String);

/// A measurement or field name: borrowed for the agent's own (no
/// allocation), owned for names the site gave (textfile, exec).
pub type Name = Cow<'static, str>;

/// The field name of a point whose measurement is the whole series name
/// (a site's Prometheus metric): Prometheus-side outputs name the series
/// by the measurement alone, line protocol and JSON call the field `value`.
pub const WHOLE: &str = "";

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: Name,
    /// Sorted by key, keys unique.
    pub tags: Vec<Tag>,
    pub fields: Vec<(Name, Value)>,
    pub timestamp: Timestamp,
}

impl Point {
    /// A point without tags or fields; its vectors come from this thread's
    /// pool of recycled points (`recycle`), so a steady cycle reuses the
    /// memory of the last one instead of allocating.
    pub fn new(measurement: impl Into<Name>, timestamp: Timestamp) -> Self {
        let measurement = measurement.into();
        match POOL.with(|p| p.borrow_mut().points.pop()) {
            Some(mut p) => {
                p.measurement = measurement;
                p.timestamp = timestamp;
                p
            }
            None => Point {
                measurement,
                tags: Vec::new(),
                fields: Vec::new(),
                timestamp,
            },
        }
    }

    /// Adds a tag, keeping the tags sorted; an empty value is left out
    /// (line protocol cannot carry it) and a repeated key replaces the value.
    /// The value is copied into a recycled string.
    pub fn tag(mut self, key: impl Into<Cow<'static, str>>, value: impl AsRef<str>) -> Self {
        let (key, value) = (key.into(), value.as_ref());
        if value.is_empty() {
            return self;
        }
        // Tags added in key order (most collectors' order) are appended
        // without a search.
        let i = match self.tags.last() {
            None => Err(0),
            Some((last, _)) if last.as_ref() < key.as_ref() => Err(self.tags.len()),
            Some(_) => self.tags.binary_search_by(|(k, _)| k.as_ref().cmp(&key)),
        };
        match i {
            Ok(i) => {
                self.tags[i].1.clear();
                self.tags[i].1.push_str(value);
            }
            Err(i) => {
                let mut s = POOL
                    .with(|p| p.borrow_mut().strings.pop())
                    .unwrap_or_default();
                s.push_str(value);
                self.tags.insert(i, (key, s));
            }
        }
        self
    }

    pub fn counter(mut self, name: impl Into<Name>, v: u64) -> Self {
        self.fields.push((name.into(), Value::Counter(v)));
        self
    }

    /// A float gauge; a non-finite value (NaN, ±inf) is left out because no
    /// wire format can carry it.
    pub fn gauge(mut self, name: impl Into<Name>, v: f64) -> Self {
        if v.is_finite() {
            self.fields.push((name.into(), Value::Gauge(v)));
        }
        self
    }

    /// A cumulative counter of a real quantity; left out when not finite.
    pub fn total(mut self, name: impl Into<Name>, v: f64) -> Self {
        if v.is_finite() {
            self.fields.push((name.into(), Value::Total(v)));
        }
        self
    }

    pub fn int(mut self, name: impl Into<Name>, v: i64) -> Self {
        self.fields.push((name.into(), Value::Int(v)));
        self
    }

    /// An integer gauge from an unsigned kernel value, saturated at i64::MAX.
    pub fn uint(self, name: impl Into<Name>, v: u64) -> Self {
        self.int(name, i64::try_from(v).unwrap_or(i64::MAX))
    }

    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, name: &str) -> Option<Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// At most this many names are interned (`intern`) for the process's life.
const INTERNED_MAX: usize = 4096;

static INTERNED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// A name made at run time (node_exporter's `node_memory_MemTotal_bytes`
/// from a meminfo key) as a `Name` that costs no allocation once seen: the
/// first time, it is kept for the process's life (a leak by design,
/// bounded to `INTERNED_MAX` names; past that, names are owned as before).
/// The kernel's key sets are small and fixed, so a steady cycle finds
/// every name here.
pub fn intern(name: &str) -> Name {
    let mut names = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    let i = names.binary_search(&name);
    match i {
        Ok(i) => Cow::Borrowed(names[i]),
        Err(i) if names.len() < INTERNED_MAX => {
            let kept: &'static str = Box::leak(name.to_string().into_boxed_str());
            names.insert(i, kept);
            Cow::Borrowed(kept)
        }
        Err(_) => Cow::Owned(name.to_string()),
    }
}

/// `intern` of `parts` joined (`["node_vmstat_", key]`), made in a
/// per-thread buffer: no allocation once the name is known.
pub fn intern_concat(parts: &[&str]) -> Name {
    thread_local! {
        static JOINED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    JOINED.with(|j| {
        let mut j = j.borrow_mut();
        j.clear();
        parts.iter().for_each(|p| j.push_str(p));
        intern(&j)
    })
}

/// Points and tag strings kept for reuse on this thread, bounded.
struct Pool {
    points: Vec<Point>,
    strings: Vec<String>,
}

/// At most this many points (and tag strings) wait in a thread's pool: a
/// few cycles of a busy host's points; beyond it they are freed.
const POOL_MAX: usize = 4096;

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { points: Vec::new(), strings: Vec::new() })
    };
}

/// Gives `points`' memory back to this thread's pool, for the next
/// `Point::new` and `Point::tag` (the agent calls it once a batch is
/// encoded); `points` is left empty, with its capacity. Dropping a point
/// does the same for that one point.
pub fn recycle(points: &mut Vec<Point>) {
    // In reverse, so the next cycle's points (made in the same order) get
    // back the memory of the same points: each vector is already as large
    // as its point needs.
    points.drain(..).rev().for_each(drop);
}

impl Drop for Point {
    /// The point's vectors and tag strings go to this thread's pool (while
    /// it has room); during the thread's end, or inside the pool itself,
    /// they are simply freed.
    fn drop(&mut self) {
        if self.tags.capacity() == 0 && self.fields.capacity() == 0 {
            return;
        }
        let _ = POOL.try_with(|pool| {
            let Ok(mut pool) = pool.try_borrow_mut() else {
                return;
            };
            if pool.points.len() >= POOL_MAX {
                return;
            }
            for (_, mut v) in self.tags.drain(..).rev() {
                if pool.strings.len() < POOL_MAX {
                    v.clear();
                    pool.strings.push(v);
                }
            }
            self.fields.clear();
            pool.points.push(Point {
                measurement: Cow::Borrowed(""),
                tags: std::mem::take(&mut self.tags),
                fields: std::mem::take(&mut self.fields),
                timestamp: 0,
            });
        });
    }
}

/// Tags every point of a batch carries: `host` plus `PROCSHIP_TAGS`, sorted.
pub type CommonTags = Arc<Vec<(String, String)>>;

/// A cut of points on its way to the queue, numbered per host and run.
#[derive(Debug, Clone)]
pub struct Batch {
    pub seq: u64,
    pub common_tags: CommonTags,
    pub points: Vec<Point>,
}

/// Merges the batch's common tags into a point's own tags, sorted by key; a
/// point's own tag wins over a common tag of the same key.
pub fn merged_tags<'a>(
    common: &'a [(String, String)],
    own: &'a [Tag],
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let mut c = common.iter().peekable();
    let mut o = own.iter().peekable();
    std::iter::from_fn(move || match (c.peek(), o.peek()) {
        (Some((ck, cv)), Some((ok, ov))) => match ck.as_str().cmp(ok.as_ref()) {
            std::cmp::Ordering::Less => {
                c.next();
                Some((ck.as_str(), cv.as_str()))
            }
            std::cmp::Ordering::Equal => {
                c.next();
                o.next();
                Some((ok.as_ref(), ov.as_str()))
            }
            std::cmp::Ordering::Greater => {
                o.next();
                Some((ok.as_ref(), ov.as_str()))
            }
        },
        (Some((ck, cv)), None) => {
            c.next();
            Some((ck.as_str(), cv.as_str()))
        }
        (None, Some((ok, ov))) => {
            o.next();
            Some((ok.as_ref(), ov.as_str()))
        }
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_stay_sorted_and_unique_and_skip_empty() {
        let p = Point::new("m", 0)
            .tag("b", "2")
            .tag("a", "1")
            .tag("c", "")
            .tag("b", "3");
        assert_eq!(
            p.tags,
            vec![("a".into(), "1".into()), ("b".into(), "3".into())]
        );
    }

    #[test]
    fn non_finite_gauges_are_left_out() {
        let p = Point::new("m", 0).gauge("x", f64::NAN).gauge("y", 1.0);
        assert_eq!(p.fields, vec![("y".into(), Value::Gauge(1.0))]);
    }

    #[test]
    fn merge_orders_and_prefers_own_tags() {
        let common = vec![
            ("dc".to_string(), "x".to_string()),
            ("host".to_string(), "h".to_string()),
        ];
        let p = Point::new("m", 0).tag("cpu", "cpu0").tag("dc", "own");
        let merged: Vec<_> = merged_tags(&common, &p.tags).collect();
        assert_eq!(merged, vec![("cpu", "cpu0"), ("dc", "own"), ("host", "h")]);
    }
}
