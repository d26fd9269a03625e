//! `conntrack`: the netfilter connection-tracking table, from
//! /proc/sys/net/netfilter/nf_conntrack_{count,max}, as Telegraf's
//! conntrack plugin names them: `ip_conntrack_count` and
//! `ip_conntrack_max`. A full table drops new connections ("nf_conntrack:
//! table full, dropping packet"). Without the nf_conntrack module the files
//! are not there: then nothing, not an error.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, Partial, num};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("conntrack", |ctx| {
    Box::new(Conntrack {
        node: ctx.names == Names::NodeExporter,
    })
})
.node_help(NODE_HELP);

/// node_exporter's conntrack collector (its `node_nf_conntrack_stat_*`,
/// from /proc/net/stat/nf_conntrack, are not read).
const NODE_HELP: &[Help] = &[
    (
        "node_nf_conntrack_entries",
        "Number of currently allocated flow entries for connection tracking.",
    ),
    (
        "node_nf_conntrack_entries_limit",
        "Maximum size of connection tracking table.",
    ),
];

pub struct Conntrack {
    /// node_exporter's names.
    node: bool,
}

/// (file, Telegraf's field, node_exporter's series).
const FILES: [(&str, &str, &str); 2] = [
    (
        "sys/net/netfilter/nf_conntrack_count",
        "ip_conntrack_count",
        NODE_HELP[0].0,
    ),
    (
        "sys/net/netfilter/nf_conntrack_max",
        "ip_conntrack_max",
        NODE_HELP[1].0,
    ),
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
        for (rel, field, node) in FILES {
            let path = files.proc_path(rel);
            let v = files
                .proc(rel)
                .and_then(|t| num::<u64>(&path, field, t.split_ascii_whitespace().next()));
            if matches!(&v, Err(e) if e.is_not_found()) {
                continue;
            }
            match partial.keep(v) {
                Some(v) if self.node => out.push(Point::new(node, now).uint(WHOLE, v)),
                Some(v) => p = p.uint(field, v),
                None => {}
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
        let p = &run(&mut Conntrack { node: false }, "basic").unwrap()[0];
        assert_eq!(p.field("ip_conntrack_count"), Some(Int(123)));
        assert_eq!(p.field("ip_conntrack_max"), Some(Int(262_144)));
    }

    #[test]
    fn without_the_module_nothing_and_a_bad_file_loses_only_itself() {
        assert!(
            run(&mut Conntrack { node: false }, "empty")
                .unwrap()
                .is_empty()
        );
        let (pts, e) = run_on_partial(
            &mut Conntrack { node: false },
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
