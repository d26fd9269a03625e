//! Handing back the file pages that start-up read and nothing reads again.
//!
//! The dynamic loader reads the executable's and the libraries' symbol and
//! relocation tables once, at start (procship's own `.rela.dyn` is ~130
//! KiB), and the kernel keeps those pages mapped, with 64 KiB around each
//! page touched ("fault-around"): resident for the agent's whole life.
//! After the first cycle the agent drops, with `madvise(MADV_DONTNEED)`,
//! every private, read-only, non-executable mapping of a file that holds
//! no page of its own (smaps' `Anonymous: 0 kB`). Each of its pages is
//! still exactly the file's, so nothing is lost: a page read again
//! (constant data) comes back from the page cache at its first touch, and
//! what is not read again stays out.
//!
//! Left alone: executable mappings (the code runs every cycle), writable
//! ones, and a read-only mapping with a page of its own — RELRO's
//! relocated `.data.rel.ro` is one, and dropping it would bring back the
//! file's unrelocated bytes.

/// A mapping's start and length, in bytes.
pub type Range = (usize, usize);

/// The mappings of a `/proc/PID/smaps` text that can be dropped without
/// losing a byte: private, read-only, not executable, backed by a file
/// (an inode, a path), and with no anonymous page.
pub fn releasable(smaps: &str) -> Vec<Range> {
    let mut scan = Scan::default();
    smaps.lines().for_each(|l| scan.line(l));
    scan.found
}

/// `releasable` line by line, so that smaps need not be held whole.
#[derive(Default)]
struct Scan {
    candidate: Option<Range>,
    found: Vec<Range>,
}

impl Scan {
    fn line(&mut self, line: &str) {
        if let Some(kb) = line.strip_prefix("Anonymous:") {
            if let Some(range) = self.candidate.take() {
                if kb.trim() == "0 kB" {
                    self.found.push(range);
                }
            }
        } else if let Some(header) = header(line) {
            self.candidate = header;
        }
    }
}

/// A mapping's header line: `Some(Some(range))` when the mapping is a
/// candidate, `Some(None)` when it is not; `None` for any other line.
fn header(line: &str) -> Option<Option<Range>> {
    let mut w = line.split_ascii_whitespace();
    let (start, end) = w.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = w.next()?;
    let (_offset, _dev, inode) = (w.next()?, w.next()?, w.next()?);
    let path = w.next().unwrap_or("");
    let candidate = perms == "r--p" && inode != "0" && path.starts_with('/') && end > start;
    Some(candidate.then_some((start, end - start)))
}

/// Drops this process's releasable mappings (module doc); returns how
/// many bytes of address space were advised. Best effort: a kernel that
/// refuses leaves the pages where they were.
pub fn release_start_up_pages() -> usize {
    let Ok(file) = std::fs::File::open("/proc/self/smaps") else {
        return 0;
    };
    // Line by line through a small buffer: the whole text is tens of KiB,
    // which the heap would keep after start-up.
    let mut smaps = std::io::BufReader::with_capacity(4096, file);
    let (mut scan, mut line) = (Scan::default(), String::new());
    while std::io::BufRead::read_line(&mut smaps, &mut line).is_ok_and(|n| n > 0) {
        scan.line(line.trim_end());
        line.clear();
    }
    scan.found
        .into_iter()
        .filter(|&(start, len)| {
            // SAFETY: the range is a whole mapping of this process that is
            // private, read-only and holds no page of its own (`releasable`):
            // MADV_DONTNEED only unmaps its pages, and each comes back from
            // the same file, byte for byte, at its next touch (as after the
            // kernel reclaims a clean page under memory pressure). The
            // mapping is still there: procship maps no file itself, so a
            // file mapping is the executable's or a shared object's, and
            // nothing unloads a shared object (glibc keeps the NSS modules it
            // loads). Nothing writes it without an `mprotect`, which this
            // program never makes.
            let r = unsafe {
                nix::libc::madvise(
                    start as *mut nix::libc::c_void,
                    len,
                    nix::libc::MADV_DONTNEED,
                )
            };
            r == 0
        })
        .map(|(_, len)| len)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
564b41fdf000-564b420b0000 r--p 00000000 fe:01 1234 /usr/bin/procship
Size:                836 kB
Rss:                 452 kB
Anonymous:             0 kB
564b420b0000-564b4229e000 r-xp 000d1000 fe:01 1234 /usr/bin/procship
Rss:                 888 kB
Anonymous:             0 kB
564b4229e000-564b422b8000 r--p 002bf000 fe:01 1234 /usr/bin/procship
Rss:                 104 kB
Anonymous:            96 kB
564b422b8000-564b422ba000 rw-p 002d9000 fe:01 1234 /usr/bin/procship
Anonymous:             8 kB
564b57458000-564b574bb000 rw-p 00000000 00:00 0 [heap]
Anonymous:           368 kB
7f6d32363000-7f6d32389000 r--p 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f6d32576000-7f6d32578000 r--p 00000000 00:00 0 [vvar]
Anonymous:             0 kB
7f6d32600000-7f6d32601000 r--s 00000000 00:05 7 /dev/zero
Anonymous:             0 kB
";

    #[test]
    fn only_untouched_read_only_private_file_mappings_are_released() {
        assert_eq!(
            releasable(SMAPS),
            vec![
                (0x564b41fdf000, 0x564b420b0000 - 0x564b41fdf000),
                (0x7f6d32363000, 0x7f6d32389000 - 0x7f6d32363000),
            ]
        );
    }

    #[test]
    fn a_mapping_without_its_anonymous_line_is_not_released() {
        let text = "564b41fdf000-564b420b0000 r--p 00000000 fe:01 1234 /usr/bin/procship\n\
                    Rss: 452 kB\n\
                    564b57458000-564b574bb000 rw-p 00000000 00:00 0 [heap]\n\
                    Anonymous: 0 kB\n";
        assert_eq!(releasable(text), vec![]);
        assert_eq!(releasable(""), vec![]);
        assert_eq!(releasable("garbage\n\u{0}\nAnonymous: 0 kB\n"), vec![]);
    }

    #[test]
    fn releasing_this_process_keeps_its_constants_and_its_relocated_data() {
        // `&str`s in a static are addresses the loader wrote at start
        // (RELRO's `.data.rel.ro`): dropped, they would read as the file's.
        static NAMES: [&str; 3] = ["cpu", "mem", "net"];
        static TABLE: [u64; 4] = [1, 2, 3, 0x5eed];
        assert!(release_start_up_pages() > 0, "nothing released");
        let names = std::hint::black_box(&NAMES);
        assert_eq!(names.concat(), "cpumemnet");
        assert_eq!(std::hint::black_box(&TABLE).iter().sum::<u64>(), 0x5eed + 6);
    }
}
