//! Parser for /proc/stat, shared by the cpu, system and kernel collectors.
//! Our own rather than procfs-core's `KernelStats`, which keeps CPU lines by
//! position (wrong names once a CPU is offline) and drops the `intr` total.

use std::path::Path;

use super::{CollectError, num};

/// One `cpu`/`cpuN` line: the name and its ten tick counters (user, nice,
/// system, idle, iowait, irq, softirq, steal, guest, guest_nice). Old kernels
/// print fewer columns; the missing ones are zero.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuLine<'a> {
    pub name: &'a str,
    pub ticks: [u64; 10],
}

#[derive(Debug, Default, PartialEq)]
pub struct Stat<'a> {
    /// The aggregate `cpu` line first, then `cpuN` in file order (only
    /// when parsed with `Cpus::Parse`).
    pub cpus: Vec<CpuLine<'a>>,
    /// How many `cpuN` lines (online CPUs) the file has.
    pub n_cpus: usize,
    pub ctxt: Option<u64>,
    pub btime: Option<u64>,
    pub intr: Option<u64>,
    pub processes: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

/// Whether the per-CPU tick counters are wanted (the cpu collector) or only
/// counted (system, kernel): each of them parses the cached text, and only
/// one needs ten numbers per CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpus {
    Parse,
    Count,
}

pub fn parse<'a>(path: &Path, text: &'a str, cpus: Cpus) -> Result<Stat<'a>, CollectError> {
    parse_into(path, text, cpus, Vec::new())
}

/// `parse`, with the CPU lines in `spare`'s memory (the last cycle's
/// `Stat::cpus`, given back with `super::recycle_vec`): no allocation.
pub fn parse_into<'a>(
    path: &Path,
    text: &'a str,
    cpus: Cpus,
    spare: Vec<CpuLine<'static>>,
) -> Result<Stat<'a>, CollectError> {
    let mut st = Stat {
        cpus: super::recycle_vec(spare),
        ..Stat::default()
    };
    let mut total_line = false;
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(key) = it.next() else { continue };
        if let Some(id) = key.strip_prefix("cpu") {
            if !(id.is_empty() || id.bytes().all(|b| b.is_ascii_digit())) {
                return Err(CollectError::parse(
                    path,
                    format!("unexpected line {key:?}"),
                ));
            }
            if id.is_empty() {
                total_line = true;
            } else {
                st.n_cpus += 1;
            }
            if cpus == Cpus::Count {
                continue;
            }
            let mut ticks = [0u64; 10];
            let mut n = 0;
            for (slot, tok) in ticks.iter_mut().zip(&mut it) {
                *slot = num(path, key, Some(tok))?;
                n += 1;
            }
            if n < 4 {
                return Err(CollectError::parse(
                    path,
                    format!("{key}: {n} columns, expected at least 4 (file truncated?)"),
                ));
            }
            st.cpus.push(CpuLine { name: key, ticks });
        } else {
            let slot = match key {
                "ctxt" => &mut st.ctxt,
                "btime" => &mut st.btime,
                "intr" => &mut st.intr,
                "processes" => &mut st.processes,
                "procs_running" => &mut st.procs_running,
                "procs_blocked" => &mut st.procs_blocked,
                _ => continue,
            };
            *slot = Some(num(path, key, it.next())?);
        }
    }
    let has_total = match cpus {
        Cpus::Parse => st.cpus.first().is_some_and(|c| c.name == "cpu"),
        Cpus::Count => total_line,
    };
    if !has_total {
        return Err(CollectError::parse(
            path,
            "no aggregate `cpu` line (empty or truncated file?)",
        ));
    }
    Ok(st)
}

/// Reads and parses `<proc>/stat` through the per-cycle cache.
pub fn read(files: &mut super::Files, cpus: Cpus) -> Result<Stat<'_>, CollectError> {
    read_into(files, cpus, Vec::new())
}

/// `read`, with the CPU lines in `spare`'s memory (`parse_into`).
pub fn read_into<'f>(
    files: &'f mut super::Files,
    cpus: Cpus,
    spare: Vec<CpuLine<'static>>,
) -> Result<Stat<'f>, CollectError> {
    let path = files.proc_path("stat");
    let text = files.proc("stat")?;
    parse_into(&path, text, cpus, spare)
}

/// A required field of /proc/stat, or an error naming it.
pub fn need(path: &Path, value: Option<u64>, what: &str) -> Result<u64, CollectError> {
    value.ok_or_else(|| CollectError::parse(path, format!("no `{what}` line")))
}

/// The host's boot time from `<proc>/stat` (ns since the epoch), read
/// through the bounded reader; 0 when it cannot be read (OTLP then starts
/// counters at the agent's start).
pub fn boot_ns(paths: &crate::host::HostPaths) -> i64 {
    let mut files = super::Files::new(paths.clone());
    let path = files.proc_path("stat");
    files
        .proc("stat")
        .ok()
        .and_then(|text| parse(&path, text, Cpus::Count).ok()?.btime)
        .and_then(|s| i64::try_from(s).ok()?.checked_mul(1_000_000_000))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/proc/stat";

    #[test]
    fn parses_a_real_stat() {
        let text = "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 5 1 2 50 1 0 0 0 0 0\ncpu2 5 0 3 50 1 0 1 0 0 0\n\
                    intr 12345 0 1 2\nctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 2\n";
        let st = parse(Path::new(P), text, Cpus::Parse).unwrap();
        assert_eq!(st.cpus.len(), 3);
        assert_eq!(st.n_cpus, 2);
        let counted = parse(Path::new(P), text, Cpus::Count).unwrap();
        assert!(counted.cpus.is_empty());
        assert_eq!(
            (counted.n_cpus, counted.intr, counted.ctxt),
            (2, Some(12345), Some(999))
        );
        assert_eq!(st.cpus[2].name, "cpu2");
        assert_eq!(st.cpus[0].ticks[3], 100);
        assert_eq!(
            (st.intr, st.ctxt, st.btime, st.processes),
            (Some(12345), Some(999), Some(1700000000), Some(4242))
        );
    }

    #[test]
    fn old_kernels_with_fewer_columns_parse() {
        let st = parse(Path::new(P), "cpu 1 2 3 4\n", Cpus::Parse).unwrap();
        assert_eq!(st.cpus[0].ticks, [1, 2, 3, 4, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        for (text, want) in [
            ("", "no aggregate"),
            ("cpu 1 2\n", "expected at least 4"),
            ("cpu 1 2 x 4\n", "\"x\" is not a number"),
            ("cpu 1 2 3 4\nctxt\n", "ctxt: missing"),
            ("cpu\0 1 2 3 4\n", "unexpected line"),
            ("cpu 1 2 3 99999999999999999999999\n", "is not a number"),
        ] {
            let e = parse(Path::new(P), text, Cpus::Parse)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(P) && e.contains(want), "{text:?}: {e}");
        }
    }
}
