//! Configuration: command-line flags > process environment > env file, every
//! variable `PROCSHIP_*`, all validated at start-up into one `Config`. A bad
//! value becomes a `ConfigError` naming the variable, the (masked) value and
//! what is accepted; secrets are masked wherever configuration is printed.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::collect;

/// One configuration variable: its name without the `PROCSHIP_` prefix, its
/// default as written in `.env.example`, whether it is secret, and a line of help.
#[derive(Debug)]
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub help: &'static str,
}

const fn var(name: &'static str, default: &'static str, help: &'static str) -> Var {
    Var {
        name,
        default,
        secret: false,
        help,
    }
}

pub const PREFIX: &str = "PROCSHIP_";

/// Every variable the agent reads, in the order `--check-config` prints them.
pub const VARS: &[Var] = &[
    var(
        "INGEST_URL",
        "",
        "http(s) URL batches are POSTed to; empty: write batches to stdout",
    ),
    var(
        "FORMAT",
        "json",
        "wire format: json | influx | prometheus (remote write) | otlp (OTLP/HTTP JSON)",
    ),
    var(
        "INTERVAL",
        "10",
        "collection interval (seconds, fractions allowed, or 500ms/10s/1m)",
    ),
    var(
        "JITTER",
        "0",
        "random start-up splay, up to this long, before the first cycle",
    ),
    var(
        "COLLECTORS",
        "default",
        "collectors to run: default (all but netstat, procstat and cgroup), all, or a list such as cpu,mem,net; -name removes one",
    ),
    var(
        "RATES",
        "false",
        "true: add <counter>_per_sec fields to diskio and net points (for backends that cannot compute rates)",
    ),
    var(
        "PROCESS_TOP",
        "5",
        "procstat: report the top N processes by CPU and the top N by memory (0 to 50)",
    ),
    var(
        "PROCESS_MATCH",
        "",
        "procstat: also follow processes whose name or command line matches this regex",
    ),
    var(
        "CGROUP_SLICES",
        "system.slice,machine.slice",
        "cgroup: the slices whose groups (services, containers, VMs) are reported",
    ),
    var(
        "CGROUP_DEPTH",
        "1",
        "cgroup: how many levels below each slice (1: its children; 1 to 5)",
    ),
    var(
        "CGROUP_MAX",
        "200",
        "cgroup: at most this many groups per cycle (a warning says when it cuts)",
    ),
    var("TAGS", "", "extra tags on every point: k=v,k=v"),
    var(
        "HOSTNAME",
        "",
        "value of the host tag; empty: the host's name",
    ),
    Var {
        name: "AUTH_TOKEN",
        default: "",
        secret: true,
        help: "sent as Authorization: Bearer <token>",
    },
    Var {
        name: "HEADERS",
        default: "",
        secret: true,
        help: "extra request headers: Name=Value,Name=Value (values are masked in output)",
    },
    var(
        "BATCH_MAX_POINTS",
        "1000",
        "a batch is cut when it holds this many points",
    ),
    var(
        "FLUSH_INTERVAL",
        "10",
        "pending points are cut into a batch at least this often",
    ),
    var(
        "FLUSH_JITTER",
        "1",
        "random delay, up to this long, added to every flush",
    ),
    var(
        "QUEUE_MAX_BYTES",
        "8MiB",
        "memory queue bound (encoded bytes); when full the oldest batch is dropped",
    ),
    var(
        "SPOOL_DIR",
        "",
        "disk spool: every batch is written here before it is sent and kept until a 2xx; empty: memory queue only",
    ),
    var(
        "SPOOL_MAX_BYTES",
        "256MiB",
        "disk spool bound; when full the oldest segment is dropped (reason spool_full)",
    ),
    var(
        "SPOOL_SYNC",
        "batch",
        "when spool writes are fsynced: batch (every write) | off (left to the kernel) | a duration such as 5s",
    ),
    var("TIMEOUT", "10", "whole-request timeout of one POST"),
    var("CONNECT_TIMEOUT", "5", "TCP/TLS connect timeout"),
    var(
        "RETRY_INITIAL",
        "1",
        "first retry delay; doubles on every failure (full jitter)",
    ),
    var("RETRY_MAX_DELAY", "60", "cap on the retry delay"),
    var(
        "MAX_BATCH_AGE",
        "",
        "a batch whose oldest point is older than this is dropped (reason too_old), not retried; empty: no limit",
    ),
    var(
        "COMPRESSION",
        "gzip",
        "request body compression: gzip | none (prometheus remote write is always snappy)",
    ),
    var(
        "SHUTDOWN_TIMEOUT",
        "10",
        "on SIGTERM/SIGINT, how long to keep delivering queued batches",
    ),
    var(
        "HOST_PROC",
        "/proc",
        "where the host's /proc is mounted; must exist",
    ),
    var(
        "HOST_SYS",
        "/sys",
        "where the host's /sys is mounted; must exist",
    ),
    var(
        "HOST_ROOT",
        "/",
        "where the host's / is mounted (filesystem usage); must exist",
    ),
    var(
        "DISK_IGNORE_FS",
        "tmpfs,devtmpfs,devfs,iso9660,overlay,aufs,squashfs,erofs",
        "filesystem types the disk collector skips (pseudo filesystems are always skipped)",
    ),
    var(
        "DISK_NETWORK_FS",
        "false",
        "true: also report nfs, cifs, sshfs, ceph, … mounts",
    ),
    var(
        "DISK_STATFS_TIMEOUT",
        "2",
        "bound on statvfs of a network filesystem; a mount that hangs is skipped",
    ),
    var("LOG_LEVEL", "info", "error | warn | info | debug | trace"),
    var("LOG_FORMAT", "text", "text | json (logs go to stderr)"),
    var(
        "STATUS_ADDR",
        "",
        "status endpoint (/healthz, /status, /metrics): a port (on 127.0.0.1) or ip:port; empty: off",
    ),
    var(
        "HEALTH_WINDOW",
        "5m",
        "/healthz is 503 when batches wait and none was delivered for this long",
    ),
];

pub fn lookup(name: &str) -> Option<&'static Var> {
    let short = name.strip_prefix(PREFIX)?;
    VARS.iter().find(|v| v.name == short)
}

/// Exit status for a configuration error (sysexits.h EX_CONFIG).
pub const EX_CONFIG: u8 = 78;

#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    Invalid {
        var: String,
        value: String,
        accepted: String,
    },
    EnvFile {
        path: PathBuf,
        reason: String,
    },
    Unknown {
        var: String,
        source: Source,
    },
    Usage(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid {
                var,
                value,
                accepted,
            } => write!(f, "{var}={value:?} is invalid: {accepted}"),
            ConfigError::EnvFile { path, reason } => {
                write!(f, "env file {}: {reason}", path.display())
            }
            ConfigError::Unknown { var, source } => write!(
                f,
                "{var} (from {source}) is not a procship variable; see .env.example for the list"
            ),
            ConfigError::Usage(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    EnvFile,
    Environment,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::EnvFile => "env file",
            Source::Environment => "environment",
            Source::Flag => "flag",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Influx,
    /// Prometheus remote write 1.0 (protobuf, always snappy).
    Prometheus,
    /// OTLP/HTTP metrics, JSON encoding.
    Otlp,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Json,
        Format::Influx,
        Format::Prometheus,
        Format::Otlp,
    ];

    /// The request's Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::Otlp => "application/json",
            Format::Influx => "text/plain; charset=utf-8",
            Format::Prometheus => "application/x-protobuf",
        }
    }

    /// Headers the protocol itself requires, besides the content headers.
    pub fn protocol_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Format::Prometheus => &[("X-Prometheus-Remote-Write-Version", "0.1.0")],
            _ => &[],
        }
    }

    /// The name `PROCSHIP_FORMAT` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Influx => "influx",
            Format::Prometheus => "prometheus",
            Format::Otlp => "otlp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
    /// Snappy block format: what Prometheus remote write requires, whatever
    /// `PROCSHIP_COMPRESSION` says; not selectable for other formats.
    Snappy,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::Gzip, Compression::None, Compression::Snappy];

    /// The request's Content-Encoding, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::None => None,
            Compression::Snappy => Some("snappy"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

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

#[derive(Debug, Clone, PartialEq)]
pub struct DiskOptions {
    pub ignore_fs: Vec<String>,
    pub network_fs: bool,
    pub statfs_timeout: Duration,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            ignore_fs: split_list(default_of("DISK_IGNORE_FS")),
            network_fs: false,
            statfs_timeout: Duration::from_secs(2),
        }
    }
}

/// The smallest `PROCSHIP_SPOOL_MAX_BYTES`.
pub const MIN_SPOOL_BYTES: usize = 128 << 10;

/// When spool writes (appends and acknowledgements) reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolSync {
    /// fdatasync after every write: a crash or power loss loses nothing written.
    Batch,
    /// fdatasync when this long has passed since the last one (and at exit).
    Every(Duration),
    /// Never: the kernel writes back (a process crash loses nothing, a power loss may).
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub sync: SpoolSync,
}

/// A value that must never be printed; `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

const MASK: &str = "****";

#[derive(Debug, Clone)]
pub struct Config {
    /// May hold credentials (user:password@, ?p=): masked in Debug output.
    pub ingest_url: Option<Secret>,
    pub format: Format,
    pub interval: Duration,
    pub jitter: Duration,
    pub collectors: Vec<&'static str>,
    pub rates: bool,
    pub process_top: usize,
    pub process_match: Option<regex_lite::Regex>,
    pub cgroup: collect::cgroup::Options,
    pub tags: Vec<(String, String)>,
    pub hostname: String,
    pub auth_token: Option<Secret>,
    pub headers: Vec<(String, Secret)>,
    pub batch_max_points: NonZeroUsize,
    pub flush_interval: Duration,
    pub flush_jitter: Duration,
    pub queue_max_bytes: usize,
    /// The disk spool, when `PROCSHIP_SPOOL_DIR` is set.
    pub spool: Option<SpoolConfig>,
    pub max_batch_age: Option<Duration>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max_delay: Duration,
    pub compression: Compression,
    pub shutdown_timeout: Duration,
    pub paths: HostPaths,
    pub disk: DiskOptions,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    /// Where the status endpoint listens, when on.
    pub status_addr: Option<std::net::SocketAddr>,
    pub health_window: Duration,
    /// Effective values, secrets already masked, and where each came from,
    /// for `--check-config`.
    effective: Vec<(&'static Var, String, Source)>,
}

/// Where the env file comes from: the default `./.env` may be missing, a
/// path named with `--env-file` must exist.
#[derive(Debug, Clone)]
pub struct EnvFile {
    pub path: PathBuf,
    pub explicit: bool,
}

/// The env file of the packaged service, read when there is no `./.env`.
pub const SYSTEM_ENV_FILE: &str = "/etc/procship/procship.env";

impl Default for EnvFile {
    /// `./.env` if it exists, otherwise the service's
    /// `/etc/procship/procship.env` (so `procship --check-config` on a host
    /// checks what the service will run with); neither need exist.
    fn default() -> Self {
        let local = PathBuf::from(".env");
        EnvFile {
            path: if local.exists() {
                local
            } else {
                PathBuf::from(SYSTEM_ENV_FILE)
            },
            explicit: false,
        }
    }
}

/// Reads the env file's `PROCSHIP_*` entries. A missing default file is no
/// error; an unreadable or malformed one is.
pub fn read_env_file(file: &EnvFile) -> Result<Vec<(String, String)>, ConfigError> {
    let err = |reason: String| ConfigError::EnvFile {
        path: file.path.clone(),
        reason,
    };
    let text = match std::fs::read_to_string(&file.path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !file.explicit => {
            return Ok(Vec::new());
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !file.explicit => {
            // The service's file is root:procship 0640: a user running
            // `procship --once` is not refused, but told.
            eprintln!(
                "procship: note: {} is not readable by this user ({e}); its settings are not applied (run as root or the procship user, or pass --env-file)",
                file.path.display()
            );
            return Ok(Vec::new());
        }
        Err(e) => return Err(err(format!("cannot read it: {e}"))),
    };
    let mut out = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(kv) => out.push(kv),
            // The offending line may hold a secret: name its number, not its text.
            Err(dotenvy::Error::LineParse(line, at)) => {
                let n = text
                    .lines()
                    .position(|l| l.trim_end() == line.trim_end())
                    .map_or_else(|| "?".to_string(), |i| (i + 1).to_string());
                return Err(err(format!(
                    "line {n} is malformed at column {}; expected KEY=value, \
                     quote values with spaces or special characters",
                    at + 1
                )));
            }
            Err(e) => return Err(err(format!("cannot parse it: {e}"))),
        }
    }
    Ok(out)
}

fn default_of(name: &str) -> &'static str {
    VARS.iter()
        .find(|v| v.name == name)
        .map_or("", |v| v.default)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    /// Builds the configuration from its three sources; the strongest source
    /// that sets a non-empty value wins. Every `PROCSHIP_*` name must be known.
    pub fn from_sources(
        flags: &[(String, String)],
        environment: &[(String, String)],
        env_file: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut raw: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
        for (source, pairs) in [
            (Source::EnvFile, env_file),
            (Source::Environment, environment),
            (Source::Flag, flags),
        ] {
            for (k, v) in pairs {
                if !k.starts_with(PREFIX) {
                    continue;
                }
                let var = lookup(k).ok_or_else(|| ConfigError::Unknown {
                    var: k.clone(),
                    source,
                })?;
                if !v.trim().is_empty() {
                    raw.insert(var.name, (v.trim().to_string(), source));
                }
            }
        }
        let mut p = Parser {
            raw,
            effective: Vec::new(),
        };
        let ingest_url = p.opt("INGEST_URL", parse_url)?.map(Secret);
        let format = p.get("FORMAT", |s| {
            let accepted = Format::ALL.map(Format::name).join(", ");
            Format::ALL
                .into_iter()
                .find(|f| f.name() == s)
                .ok_or_else(|| format!("accepted: {accepted}"))
        })?;
        let interval = p.get("INTERVAL", parse_positive_duration)?;
        let jitter = p.get("JITTER", parse_duration)?;
        let collectors = p.get("COLLECTORS", parse_collectors)?;
        let rates = p.get("RATES", parse_bool)?;
        let process_top = p.get("PROCESS_TOP", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n <= 50)
                .ok_or_else(|| "a whole number from 0 to 50".to_string())
        })?;
        let process_match = p.opt("PROCESS_MATCH", |s| {
            if s.len() > 512 {
                return Err("a regular expression of at most 512 characters".into());
            }
            regex_lite::RegexBuilder::new(s)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    format!(
                        "a valid regular expression ({})",
                        e.to_string().lines().last().unwrap_or("")
                    )
                })
        })?;
        let cgroup = collect::cgroup::Options {
            slices: p.get("CGROUP_SLICES", |s| {
                let v = split_list(s);
                if v.is_empty() || v.iter().any(|x| x.contains("..") || x.starts_with('/') || x.chars().any(char::is_control)) {
                    Err("a comma-separated list of cgroup paths below the root, such as system.slice,machine.slice".into())
                } else {
                    Ok(v)
                }
            })?,
            depth: p.get("CGROUP_DEPTH", |s| {
                s.parse::<usize>().ok().filter(|n| (1..=5).contains(n)).ok_or_else(|| "a whole number from 1 to 5".to_string())
            })?,
            max: p.get("CGROUP_MAX", |s| {
                s.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| "a whole number from 1 to 10000".to_string())
            })?,
        };
        let tags = p.get("TAGS", parse_tags)?;
        let hostname = p.opt("HOSTNAME", parse_hostname)?;
        let auth_token = p.opt("AUTH_TOKEN", |s| {
            if s.chars().any(|c| c.is_control() || c == ' ') {
                Err("a token without spaces or control characters".into())
            } else {
                Ok(Secret(s.to_string()))
            }
        })?;
        let headers = p.get("HEADERS", parse_headers)?;
        if auth_token.is_some()
            && headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            return Err(ConfigError::Invalid {
                var: format!("{PREFIX}HEADERS"),
                value: MASK.into(),
                accepted: "an Authorization header cannot be combined with PROCSHIP_AUTH_TOKEN; set one of them".into(),
            });
        }
        let batch_max_points = p.get("BATCH_MAX_POINTS", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .and_then(NonZeroUsize::new)
                .ok_or_else(|| "a whole number from 1 to 1000000".to_string())
        })?;
        let flush_interval = p.get("FLUSH_INTERVAL", parse_positive_duration)?;
        let flush_jitter = p.get("FLUSH_JITTER", parse_duration)?;
        let queue_max_bytes = p.get("QUEUE_MAX_BYTES", |s| {
            parse_bytes(s).filter(|n| *n >= 64 * 1024).ok_or_else(|| {
                "a size of at least 64KiB, such as 8MiB, 512KiB or 1048576 (bytes)".to_string()
            })
        })?;
        let spool_dir = p.opt("SPOOL_DIR", |s| {
            let dir = PathBuf::from(s);
            if !dir.is_absolute() {
                return Err("the absolute path of a directory the agent owns".into());
            }
            crate::spool::check_dir(&dir)?;
            Ok(dir)
        })?;
        let spool_max_bytes = p.get("SPOOL_MAX_BYTES", |s| {
            parse_bytes(s)
                .filter(|n| *n >= MIN_SPOOL_BYTES)
                .map(|n| n as u64)
                .ok_or_else(|| {
                    "a size of at least 128KiB, such as 256MiB, 2GiB or 1048576 (bytes)".to_string()
                })
        })?;
        let spool_sync = p.get("SPOOL_SYNC", |s| match s {
            "batch" => Ok(SpoolSync::Batch),
            "off" => Ok(SpoolSync::Off),
            d => parse_positive_duration(d)
                .map(SpoolSync::Every)
                .map_err(|_| "batch, off, or a duration such as 1s or 500ms".to_string()),
        })?;
        let spool = spool_dir.map(|dir| SpoolConfig {
            dir,
            max_bytes: spool_max_bytes,
            sync: spool_sync,
        });
        let timeout = p.get("TIMEOUT", parse_positive_duration)?;
        let connect_timeout = p.get("CONNECT_TIMEOUT", parse_positive_duration)?;
        let retry_initial = p.get("RETRY_INITIAL", parse_positive_duration)?;
        let retry_max_delay = p.get("RETRY_MAX_DELAY", parse_positive_duration)?;
        if retry_max_delay < retry_initial {
            return Err(p.invalid(
                "RETRY_MAX_DELAY",
                "a delay no shorter than PROCSHIP_RETRY_INITIAL",
            ));
        }
        let max_batch_age = p.opt("MAX_BATCH_AGE", |s| {
            parse_duration_upto(s, 365 * 86_400).and_then(|d| {
                if d < Duration::from_secs(1) {
                    Err("a duration of at least 1s, such as 1h, 2d or 3600".into())
                } else {
                    Ok(d)
                }
            })
        })?;
        let compression = p.get("COMPRESSION", |s| match s {
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            _ => Err("accepted: gzip, none".into()),
        })?;
        let shutdown_timeout = p.get("SHUTDOWN_TIMEOUT", parse_duration)?;
        let paths = HostPaths {
            proc: p.get("HOST_PROC", parse_dir)?,
            sys: p.get("HOST_SYS", parse_dir)?,
            root: p.get("HOST_ROOT", parse_dir)?,
        };
        let disk = DiskOptions {
            ignore_fs: p.get("DISK_IGNORE_FS", |s| Ok(split_list(s)))?,
            network_fs: p.get("DISK_NETWORK_FS", parse_bool)?,
            statfs_timeout: p.get("DISK_STATFS_TIMEOUT", parse_positive_duration)?,
        };
        let log_level = p.get("LOG_LEVEL", |s| {
            s.parse::<tracing::Level>()
                .map_err(|_| "accepted: error, warn, info, debug, trace".to_string())
        })?;
        let log_format = p.get("LOG_FORMAT", |s| match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("accepted: text, json".into()),
        })?;
        let status_addr = p.opt("STATUS_ADDR", parse_status_addr)?;
        let health_window = p.get("HEALTH_WINDOW", parse_positive_duration)?;

        let hostname = match hostname {
            Some(h) => h,
            None => {
                let h = system_hostname(&paths.root);
                p.set_effective("HOSTNAME", &h);
                h
            }
        };
        let mut effective = p.effective;
        effective.sort_by_key(|(v, _, _)| VARS.iter().position(|x| std::ptr::eq(x, *v)));
        Ok(Config {
            ingest_url,
            format,
            interval,
            jitter,
            collectors,
            rates,
            process_top,
            process_match,
            cgroup,
            tags,
            hostname,
            auth_token,
            headers,
            batch_max_points,
            flush_interval,
            flush_jitter,
            queue_max_bytes,
            spool,
            max_batch_age,
            timeout,
            connect_timeout,
            retry_initial,
            retry_max_delay,
            compression,
            shutdown_timeout,
            paths,
            disk,
            log_level,
            log_format,
            status_addr,
            health_window,
            effective,
        })
    }

    /// The configuration built from defaults only (used by tests and benches).
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_sources(&[], &[], &[])
    }

    /// (variable, value with secrets masked, source) of every variable.
    pub fn effective(&self) -> impl Iterator<Item = (String, &str, Source)> {
        self.effective
            .iter()
            .map(|(v, shown, src)| (format!("{PREFIX}{}", v.name), shown.as_str(), *src))
    }

    /// `PROCSHIP_X=value  # source` lines, secrets masked: what `--check-config` prints.
    pub fn render_effective(&self) -> String {
        let mut out = String::new();
        for (var, shown, source) in &self.effective {
            out.push_str(&format!("{PREFIX}{}={shown}  # {source}\n", var.name));
        }
        out
    }

    /// The ingest URL with any password or credential query value masked: safe to log.
    pub fn ingest_url_masked(&self) -> String {
        self.ingest_url
            .as_ref()
            .map_or_else(|| "stdout".into(), |u| mask_url(u.expose()))
    }
}

struct Parser {
    raw: BTreeMap<&'static str, (String, Source)>,
    effective: Vec<(&'static Var, String, Source)>,
}

impl Parser {
    fn var(name: &str) -> &'static Var {
        // Every name passed here is a literal from VARS; an unknown one is a
        // programming error caught by the tests that load the defaults.
        VARS.iter().find(|v| v.name == name).unwrap_or(&VARS[0])
    }

    fn invalid(&self, name: &'static str, accepted: &str) -> ConfigError {
        let value = self
            .raw
            .get(name)
            .map_or(Self::var(name).default, |(v, _)| v.as_str());
        ConfigError::Invalid {
            var: format!("{PREFIX}{name}"),
            value: shown(name, value),
            accepted: accepted.to_string(),
        }
    }

    fn set_effective(&mut self, name: &'static str, value: &str) {
        let var = Self::var(name);
        self.effective.retain(|(v, _, _)| v.name != name);
        self.effective
            .push((var, value.to_string(), Source::Default));
    }

    /// Parses a variable that may be empty (`None` when unset and without default).
    fn opt<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let var = Self::var(name);
        let (value, source) = match self.raw.get(name) {
            Some((v, s)) => (v.clone(), *s),
            None => (var.default.to_string(), Source::Default),
        };
        self.effective.push((var, shown(name, &value), source));
        if value.is_empty() {
            return Ok(None);
        }
        parse(&value)
            .map(Some)
            .map_err(|accepted| self.invalid(name, &accepted))
    }

    fn get<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.opt(name, &parse)? {
            Some(v) => Ok(v),
            None => parse("").map_err(|accepted| self.invalid(name, &accepted)),
        }
    }
}

/// A value as it may be printed: secrets masked, URL credentials masked.
fn shown(name: &str, value: &str) -> String {
    match Parser::var(name) {
        v if v.secret && !value.is_empty() => mask_value(name, value),
        _ if name == "INGEST_URL" => mask_url(value),
        _ => value.to_string(),
    }
}

fn mask_value(name: &str, value: &str) -> String {
    if name == "HEADERS" {
        // Header names help an operator; their values are masked.
        value
            .split(',')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{}={MASK}", k.trim()),
                None => MASK.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    } else {
        MASK.to_string()
    }
}

/// Masks a URL's password and the values of credential-like query parameters.
pub fn mask_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{user}:{MASK}@{host}")
                }
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let masked: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_credential_key(k) => format!("{k}={MASK}"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

fn is_credential_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "p"
        || ["pass", "token", "key", "secret", "auth", "sig"]
            .iter()
            .any(|w| k.contains(w))
}

fn parse_url(s: &str) -> Result<String, String> {
    const ACCEPTED: &str =
        "an http:// or https:// URL with a host, such as http://127.0.0.1:8428/write";
    let uri: ureq::http::Uri = s.parse().map_err(|_| ACCEPTED.to_string())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(s.to_string()),
        _ => Err(ACCEPTED.into()),
    }
}

/// Seconds (fractions allowed) or a number with a unit: ms, s, m, h; at most a day.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // At most a day: anything longer is a typo, and the range keeps
    // Duration arithmetic far from overflow.
    parse_duration_upto(s, 86_400)
}

/// Like `parse_duration`, also with days (`d`), up to `max_secs`.
pub fn parse_duration_upto(s: &str, max_secs: u64) -> Result<Duration, String> {
    const ACCEPTED: &str =
        "a duration: seconds such as 10 or 0.5, or with a unit such as 500ms, 10s, 1m, 1h";
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| ACCEPTED.to_string())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" if max_secs > 86_400 => n * 86_400.0,
        _ => return Err(ACCEPTED.into()),
    };
    if !(0.0..=max_secs as f64).contains(&secs) {
        return Err(match max_secs {
            86_400 => format!("{ACCEPTED}, at most 24h"),
            m => format!("{ACCEPTED}, 2d, at most {}d", m / 86_400),
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err("a duration of at least 10ms, such as 10, 0.5, 500ms or 1m".into());
    }
    Ok(d)
}

/// A byte count, optionally with KiB/MiB/GiB (or KB/MB/GB, K/M/G) units.
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A port (listening on 127.0.0.1), or an ip:port / [ip6]:port.
fn parse_status_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    const ACCEPTED: &str =
        "a port such as 9101 (on 127.0.0.1), or ip:port such as 127.0.0.1:9101 or [::1]:9101";
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(p) = port.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.parse().map_err(|_| ACCEPTED.to_string())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("accepted: true, false".into()),
    }
}

fn parse_dir(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') || !Path::new(s).is_dir() {
        return Err("the absolute path of an existing directory".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_collectors(s: &str) -> Result<Vec<&'static str>, String> {
    let accepted = || {
        format!(
            "default, all, or a comma-separated list of: {} (a leading - removes one, as in default,-processes; a name adds one, as in default,netstat)",
            collect::NAMES.join(", ")
        )
    };
    let mut chosen: Vec<&'static str> = Vec::new();
    for (i, item) in s.split(',').map(str::trim).enumerate() {
        if item == "all" {
            chosen = collect::NAMES.to_vec();
        } else if item == "default" {
            chosen = collect::defaults();
        } else if let Some(name) = item.strip_prefix('-') {
            if i == 0 {
                chosen = collect::defaults();
            }
            let known = collect::NAMES
                .iter()
                .find(|n| **n == name)
                .ok_or_else(accepted)?;
            chosen.retain(|n| n != known);
        } else {
            let item = item.strip_prefix('+').unwrap_or(item);
            let known = collect::NAMES
                .iter()
                .find(|n| **n == item)
                .ok_or_else(accepted)?;
            if !chosen.contains(known) {
                chosen.push(known);
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("at least one collector; {}", accepted()));
    }
    // Run them in the registry's order, whatever order they were named in.
    chosen.sort_by_key(|n| collect::NAMES.iter().position(|x| x == n));
    Ok(chosen)
}

fn valid_tag_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_tags(s: &str) -> Result<Vec<(String, String)>, String> {
    const ACCEPTED: &str = "k=v pairs separated by commas, keys of letters, digits and _ \
         (not starting with a digit, not 'host': use PROCSHIP_HOSTNAME), values without commas or control characters";
    let mut tags: Vec<(String, String)> = Vec::new();
    for item in split_list(s) {
        let (k, v) = item.split_once('=').ok_or(ACCEPTED)?;
        let (k, v) = (k.trim(), v.trim());
        if !valid_tag_key(k) || k == "host" || v.is_empty() || v.chars().any(char::is_control) {
            return Err(ACCEPTED.into());
        }
        if tags.iter().any(|(x, _)| x == k) {
            return Err(format!("{ACCEPTED}; the key {k} is given twice"));
        }
        tags.push((k.to_string(), v.to_string()));
    }
    tags.sort();
    Ok(tags)
}

fn parse_headers(s: &str) -> Result<Vec<(String, Secret)>, String> {
    const ACCEPTED: &str = "Name=Value pairs separated by commas (header names of letters, digits and -; \
         Content-Type, Content-Encoding, Content-Length and Host are set by the agent)";
    let mut out = Vec::new();
    for item in split_list(s) {
        let (k, v) = item.split_once('=').ok_or(ACCEPTED)?;
        let (k, v) = (k.trim(), v.trim());
        let reserved = ["content-type", "content-encoding", "content-length", "host"]
            .contains(&k.to_ascii_lowercase().as_str());
        if k.is_empty()
            || reserved
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || v.chars().any(char::is_control)
        {
            return Err(ACCEPTED.into());
        }
        out.push((k.to_string(), Secret(v.to_string())));
    }
    Ok(out)
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
        && let Ok(s) = std::fs::read_to_string(root.join("etc/hostname"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn err_of(pairs: &[(&str, &str)]) -> ConfigError {
        match Config::from_sources(&[], &env(pairs), &[]) {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_load() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.collectors, collect::defaults());
        assert!(!c.collectors.contains(&"netstat"));
        assert_eq!(c.queue_max_bytes, 8 << 20);
        assert!(c.ingest_url.is_none());
        assert!(!c.hostname.is_empty());
    }

    #[test]
    fn flags_beat_environment_beat_env_file() {
        let file = env(&[("INTERVAL", "1"), ("FORMAT", "influx")]);
        let environment = env(&[("INTERVAL", "2"), ("TIMEOUT", "3")]);
        let flags = env(&[("INTERVAL", "4")]);
        let c = Config::from_sources(&flags, &environment, &file).unwrap();
        assert_eq!(c.interval, Duration::from_secs(4));
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.format, Format::Influx);
        assert!(c.render_effective().contains("PROCSHIP_INTERVAL=4  # flag"));
        assert!(
            c.render_effective()
                .contains("PROCSHIP_TIMEOUT=3  # environment")
        );
        assert!(
            c.render_effective()
                .contains("PROCSHIP_FORMAT=influx  # env file")
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("1e9").is_err());
        assert_eq!(parse_bytes("8MiB"), Some(8 << 20));
        assert_eq!(parse_bytes("512k"), Some(512 << 10));
        assert_eq!(parse_bytes("99999999999999999999G"), None);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("INGEST_URL", "ftp://x"),
            ("FORMAT", "xml"),
            ("INTERVAL", "0"),
            ("JITTER", "soon"),
            ("COLLECTORS", "cpu,gpu"),
            ("TAGS", "host=x"),
            ("RATES", "often"),
            ("PROCESS_TOP", "51"),
            ("PROCESS_MATCH", "(unclosed"),
            ("CGROUP_SLICES", "../etc"),
            ("CGROUP_DEPTH", "0"),
            ("CGROUP_MAX", "0"),
            ("HOSTNAME", "a b"),
            ("HEADERS", "Content-Type=x"),
            ("BATCH_MAX_POINTS", "0"),
            ("FLUSH_INTERVAL", "0ms"),
            ("FLUSH_JITTER", "x"),
            ("QUEUE_MAX_BYTES", "1k"),
            ("SPOOL_DIR", "relative/dir"),
            ("SPOOL_DIR", "/nonexistent/spool"),
            ("SPOOL_MAX_BYTES", "1k"),
            ("SPOOL_SYNC", "sometimes"),
            ("MAX_BATCH_AGE", "0"),
            ("TIMEOUT", "0"),
            ("CONNECT_TIMEOUT", "-3"),
            ("RETRY_INITIAL", "x"),
            ("RETRY_MAX_DELAY", "y"),
            ("COMPRESSION", "zstd"),
            ("SHUTDOWN_TIMEOUT", "x"),
            ("HOST_PROC", "relative"),
            ("HOST_SYS", "relative"),
            ("HOST_ROOT", "relative"),
            ("HOST_PROC", "/nonexistent/proc"),
            ("DISK_NETWORK_FS", "maybe"),
            ("DISK_STATFS_TIMEOUT", "0"),
            ("LOG_LEVEL", "loud"),
            ("LOG_FORMAT", "xml"),
            ("STATUS_ADDR", "localhost:http"),
            ("HEALTH_WINDOW", "0"),
        ];
        for (name, value) in cases {
            match err_of(&[(name, value)]) {
                ConfigError::Invalid { var, value: v, .. } => {
                    assert_eq!(var, format!("{PREFIX}{name}"));
                    assert_eq!(v, shown(name, value));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            err_of(&[("INTERVALL", "3")]),
            ConfigError::Unknown { .. }
        ));
    }

    #[test]
    fn secrets_are_masked_in_errors_and_output() {
        let e = err_of(&[("AUTH_TOKEN", "s3cret token")]);
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let c = Config::from_sources(
            &[],
            &env(&[
                ("AUTH_TOKEN", "s3cret"),
                ("HEADERS", "X-Scope-OrgID=tenant-s3cret"),
                (
                    "INGEST_URL",
                    "http://u:pw-s3cret@127.0.0.1/write?db=x&p=s3cret",
                ),
            ]),
            &[],
        )
        .unwrap();
        let out = c.render_effective();
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("X-Scope-OrgID=****"));
        assert!(out.contains("db=x&p=****"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn collectors_and_tags() {
        assert_eq!(
            parse_collectors("net, cpu,cpu").unwrap(),
            vec!["cpu", "net"]
        );
        let all_but = parse_collectors("-processes").unwrap();
        assert!(!all_but.contains(&"processes") && all_but.contains(&"cpu"));
        assert!(
            !all_but.contains(&"netstat"),
            "removals start from the default set"
        );
        assert!(parse_collectors("all").unwrap().contains(&"netstat"));
        for s in ["default,netstat", "default,+netstat"] {
            let c = parse_collectors(s).unwrap();
            assert_eq!(c.len(), collect::defaults().len() + 1, "{s}");
        }
        assert!(
            parse_collectors(
                "-cpu,-mem,-swap,-diskio,-disk,-net,-system,-kernel,-processes,-pressure,-temp,-netstat,-procstat,-cgroup"
            )
            .is_err()
        );
        assert_eq!(
            parse_tags("role=db, dc=ams").unwrap(),
            vec![("dc".into(), "ams".into()), ("role".into(), "db".into())]
        );
        assert!(parse_tags("1x=y").is_err());
        assert!(parse_tags("a=b,a=c").is_err());
    }

    #[test]
    fn env_file_errors_are_clear_and_do_not_echo_secrets() {
        let dir = std::env::temp_dir().join(format!("procship-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.env");
        std::fs::write(
            &path,
            "PROCSHIP_INTERVAL=5\nPROCSHIP_AUTH_TOKEN='unterminated s3cret\n",
        )
        .unwrap();
        let e = read_env_file(&EnvFile {
            path: path.clone(),
            explicit: true,
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bad.env") && !msg.contains("s3cret"), "{msg}");
        let missing = EnvFile {
            path: dir.join("none.env"),
            explicit: true,
        };
        assert!(
            read_env_file(&missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
        let missing_default = EnvFile {
            path: dir.join("none.env"),
            explicit: false,
        };
        assert_eq!(read_env_file(&missing_default).unwrap(), vec![]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_example_documents_every_variable_with_its_default() {
        let text = include_str!("../.env.example");
        for v in VARS {
            let line = format!("{PREFIX}{}={}", v.name, v.default);
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches(['#', ' ']) == line),
                ".env.example lacks `{line}`"
            );
        }
        for l in text.lines() {
            if let Some(rest) = l.trim_start_matches(['#', ' ']).strip_prefix(PREFIX) {
                let name = rest.split('=').next().unwrap_or("");
                assert!(
                    VARS.iter().any(|v| v.name == name),
                    "unknown {name} in .env.example"
                );
            }
        }
    }
}
