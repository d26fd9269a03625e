//! Parser for the `Key: value [kB]` and `key value` files (/proc/meminfo,
//! /proc/vmstat): one pass that picks the wanted keys. Our own because
//! procfs-core's `Meminfo` slices key bytes and panics on a non-ASCII key.

use std::path::Path;

use super::CollectError;

/// Fills `out[i]` with the value of `keys[i]` (kB values converted to bytes);
/// keys not in the file stay `None`. A wanted key with a bad value is an error.
pub fn pick(
    path: &Path,
    text: &str,
    keys: &[&str],
    out: &mut [Option<u64>],
) -> Result<(), CollectError> {
    out.iter_mut().for_each(|v| *v = None);
    let mut found = 0;
    for line in text.lines() {
        if found == keys.len() {
            break; // vmstat has ~180 lines; swap wants two near the top
        }
        let (key, rest) = match line.split_once(':') {
            Some((k, r)) => (k.trim(), r),
            None => match line.split_once(' ') {
                Some((k, r)) => (k, r),
                None => continue,
            },
        };
        let Some(i) = keys.iter().position(|k| *k == key) else {
            continue;
        };
        if out[i].is_none() {
            found += 1;
        }
        let mut it = rest.split_ascii_whitespace();
        let value: u64 = super::num(path, key, it.next())?;
        out[i] = Some(match it.next() {
            None => value,
            Some("kB") => value
                .checked_mul(1024)
                .ok_or_else(|| CollectError::parse(path, format!("{key}: {value} kB overflows")))?,
            Some(unit) => {
                return Err(CollectError::parse(
                    path,
                    format!("{key}: unknown unit {unit:?}"),
                ));
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_meminfo_and_vmstat_values() {
        let mut out = [None; 3];
        pick(
            Path::new("m"),
            "MemTotal:  100 kB\nHugePages_Total: 3\nÄ: 1\n",
            &["MemTotal", "HugePages_Total", "Nope"],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [Some(102400), Some(3), None]);
        pick(
            Path::new("v"),
            "pswpin 7\npswpout 9\n",
            &["pswpin", "pswpout", "x"],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [Some(7), Some(9), None]);
    }

    #[test]
    fn keys_end_at_a_colon_or_else_a_space_and_come_in_any_order() {
        let mut out = [None; 4];
        pick(
            Path::new("m"),
            "  Spaced key : 5\nb 2\nc\nd:\t4 kB\na 1\nlone\n",
            &["a", "Spaced key", "d", "b"],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [Some(1), Some(5), Some(4096), Some(2)]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut out = [None; 1];
        for (text, want) in [
            ("MemTotal:\n", "MemTotal: missing"),
            ("MemTotal: -5 kB\n", "not a number"),
            ("MemTotal: 5 MB\n", "unknown unit"),
            ("MemTotal: 18446744073709551615 kB\n", "overflows"),
        ] {
            let e = pick(Path::new("/proc/meminfo"), text, &["MemTotal"], &mut out)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
