//! Where the host is seen from, and the facts about it that are not in the
//! files the collectors parse: the roots of /proc, /sys and / (a container
//! watching its host sees them under bind mounts), the host's name, clock
//! ticks per second and the page size. Facts are read once here and passed
//! in, so fixture trees from other hosts parse the same on every machine.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Values, Var, parse_dir};

pub const VARS: &[Var] = &[
    Var::new(
        "HOST_PROC",
        "/proc",
        "where the host's /proc is mounted; must exist",
    ),
    Var::new(
        "HOST_SYS",
        "/sys",
        "where the host's /sys is mounted; must exist",
    ),
    Var::new(
        "HOST_ROOT",
        "/",
        "where the host's / is mounted (filesystem usage); must exist",
    ),
    Var::new(
        "HOSTNAME",
        "",
        "value of the host tag; empty: the host's name",
    ),
];

/// Where the host's filesystems are seen from: `/proc`, `/sys` and `/` unless
/// the agent watches its host from inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub paths: HostPaths,
    /// The `host` tag of every point.
    pub hostname: String,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let paths = HostPaths {
            proc: v.get("HOST_PROC", parse_dir)?,
            sys: v.get("HOST_SYS", parse_dir)?,
            root: v.get("HOST_ROOT", parse_dir)?,
        };
        let hostname = match v.opt("HOSTNAME", parse_hostname)? {
            Some(h) => h,
            None => {
                let h = system_hostname(&paths.root);
                v.set_default("HOSTNAME", &h)?;
                h
            }
        };
        Ok(Options { paths, hostname })
    }
}

/// Facts about the running host that parsers need and files do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// USER_HZ: the unit of /proc's CPU times.
    pub ticks_per_sec: u64,
    pub page_size: u64,
}

impl Facts {
    /// The running host's (100 ticks and 4 KiB pages when sysconf is silent).
    pub fn of_this_host() -> Facts {
        use nix::unistd::{SysconfVar, sysconf};
        let get = |var| {
            sysconf(var)
                .ok()
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
        };
        Facts {
            ticks_per_sec: get(SysconfVar::CLK_TCK).unwrap_or(100),
            page_size: get(SysconfVar::PAGE_SIZE).unwrap_or(4096),
        }
    }
}

impl Default for Facts {
    /// What nearly every Linux host has: fixtures parse the same everywhere.
    fn default() -> Self {
        Facts {
            ticks_per_sec: 100,
            page_size: 4096,
        }
    }
}

/// Opens a file of the host's trees for reading without ever waiting in
/// `open()`: `O_NONBLOCK`, then anything but a regular file (a FIFO, a
/// device or a socket in place of a kernel file, under a container's bind
/// mount or a mis-set `PROCSHIP_HOST_*`) is refused. The kernel's /proc and
/// /sys files are regular files, and on them `O_NONBLOCK` changes nothing.
pub fn open_file(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or socket where a kernel file should be)",
        ));
    }
    Ok(f)
}

fn parse_hostname(s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) || s.len() > 253 {
        return Err("a host name without spaces, at most 253 characters".into());
    }
    Ok(s.to_string())
}

/// The host's name: `<root>/etc/hostname` when watching a host from a
/// container, otherwise the kernel's hostname; "localhost" if neither answers.
fn system_hostname(root: &Path) -> String {
    if root != Path::new("/")
        && let Ok(f) = open_file(&root.join("etc/hostname"))
        && let mut s = String::new()
        && f.take(1024).read_to_string(&mut s).is_ok()
        && let Ok(h) = parse_hostname(s.trim())
        && !h.is_empty()
    {
        return h;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
