//! `filefd`: file handles of the whole system from /proc/sys/fs/file-nr
//! (`allocated  unused  max`) in Telegraf's `linux_sysctl_fs` measurement:
//! `file_nr` (allocated handles) and `file_max` (the limit). Telegraf spells
//! them `file-nr` and `file-max`; the underscore gives one series name in
//! every format and backend (a `-` is not a valid Prometheus name, and
//! backends that take line protocol would keep it). A host that runs out of
//! file handles fails in every program at once: alert on `file_nr / file_max`.

use super::names::{Help, Names};
use super::{CollectError, Collector, Entry, Files, num};
use crate::point::{Point, Timestamp, WHOLE};

/// The registry row.
pub const ENTRY: Entry = Entry::plain("filefd", |ctx| {
    Box::new(FileFd {
        node: ctx.names == Names::NodeExporter,
    })
})
.node_help(NODE_HELP);

/// node_exporter's filefd collector.
const NODE_HELP: &[Help] = &[
    (
        "node_filefd_allocated",
        "File descriptor statistics: allocated.",
    ),
    (
        "node_filefd_maximum",
        "File descriptor statistics: maximum.",
    ),
];

pub struct FileFd {
    /// node_exporter's names.
    node: bool,
}

impl Collector for FileFd {
    fn name(&self) -> &'static str {
        "filefd"
    }

    fn collect(
        &mut self,
        files: &mut Files,
        now: Timestamp,
        out: &mut Vec<Point>,
    ) -> Result<(), CollectError> {
        let path = files.proc_path("sys/fs/file-nr");
        let text = files.proc("sys/fs/file-nr")?;
        let mut words = text.split_ascii_whitespace();
        let allocated: u64 = num(&path, "allocated", words.next())?;
        let max: u64 = num(&path, "max", words.nth(1))?;
        if self.node {
            out.push(Point::new(NODE_HELP[0].0, now).uint(WHOLE, allocated));
            out.push(Point::new(NODE_HELP[1].0, now).uint(WHOLE, max));
        } else {
            out.push(
                Point::new("linux_sysctl_fs", now)
                    .uint("file_nr", allocated)
                    .uint("file_max", max),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::*;
    use crate::point::Value::Int;

    #[test]
    fn allocated_and_maximum() {
        let p = &run(&mut FileFd { node: false }, "basic").unwrap()[0];
        assert_eq!(p.field("file_nr"), Some(Int(2_304)));
        assert_eq!(p.field("file_max"), Some(Int(9_223_372_036_854_775_807)));
    }

    #[test]
    fn hostile_files() {
        for (text, want) in [
            ("", "allocated"),
            ("12 0\n", "max"),
            ("x 0 5\n", "allocated"),
        ] {
            let e = err_text(run_on(
                &mut FileFd { node: false },
                &[("proc/sys/fs/file-nr", text.as_bytes())],
            ));
            assert!(e.contains("file-nr") && e.contains(want), "{text:?}: {e}");
        }
    }
}
