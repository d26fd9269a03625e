//! `conntrack`: the netfilter connection-tracking table, from
//! /proc/sys/net/netfilter/nf_conntrack_{count,max}, as Telegraf's
//! conntrack plugin names them: `ip_conntrack_count` and
//! `ip_conntrack_max`. A full table drops new connections ("nf_conntrack:
//! table full, dropping packet"). Without the nf_conntrack module the files
//! are not there: then nothing, not an error.

use super::{CollectError, Collector, Entry, Files, Partial, num};
use crate::point::{Point, Timestamp};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("conntrack", |_| Box::new(Conntrack));

pub struct Conntrack;

const FILES: [(&str, &str); 2] = [
    ("sys/net/netfilter/nf_conntrack_count", "ip_conntrack_count"),
    ("sys/net/netfilter/nf_conntrack_max", "ip_conntrack_max"),
];

impl Collector for Conntrack {
    fn name(&self) -> &'static str {
        "conntrack"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let mut p = Point::new("conntrack", now);
        let mut partial = Partial::default();
        for (rel, field) in FILES {
            let path = files.proc_path(rel);
            let v = files
                .proc(rel)
                .and_then(|t| num::<u64>(&path, field, t.split_ascii_whitespace().next()));
            if matches!(&v, Err(e) if e.is_not_found()) {
                continue;
            }
            if let Some(v) = partial.keep(v) {
                p = p.uint(field, v);
            }
        }
        partial.push(p, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Int;

    #[test]
    fn count_and_limit() {
        let p = &run(&mut Conntrack, "basic").unwrap()[0];
        assert_eq!(p.field("ip_conntrack_count"), Some(Int(123)));
        assert_eq!(p.field("ip_conntrack_max"), Some(Int(262_144)));
    }

    #[test]
    fn without_the_module_nothing_and_a_bad_file_loses_only_itself() {
        assert!(run(&mut Conntrack, "empty").unwrap().is_empty());
        let (pts, e) = run_on_partial(
            &mut Conntrack,
            &[
                ("proc/sys/net/netfilter/nf_conntrack_count", b"lots\n"),
                ("proc/sys/net/netfilter/nf_conntrack_max", b"65536\n"),
            ],
        );
        assert_eq!(pts[0].field("ip_conntrack_max"), Some(Int(65_536)));
        assert_eq!(pts[0].fields.len(), 1);
        assert!(e.unwrap().to_string().contains("nf_conntrack_count"));
    }
}
