//! The configuration loader. It knows no feature: every feature (a
//! collector, the batcher, the spool, the shipper, the status endpoint, …)
//! owns the rows of its variables (`Var`: name, default, help, how its value
//! is masked, whether a reload applies it live) and parses them into its own
//! options through `Values`; `settings` gathers the features' tables into
//! one `Table`. What lives here is what every feature shares: the sources
//! and their precedence (flags > process environment > env file), the
//! variable-table mechanics, the value parsers, `Secret` and masking, and
//! the error that exits 78 naming the variable, the masked value and what
//! is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every variable's name starts with this.
pub const PREFIX: &str = "PROCSHIP_";

/// How a variable's value may be shown in `--check-config`, logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Shown as it is.
    None,
    /// Never shown: `****`.
    Secret,
    /// `Name=Value,…` pairs: the names shown, the values masked.
    HeaderValues,
    /// A URL: its password and credential-like query values masked.
    Url,
}

/// What a SIGHUP does with a changed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Applied from the next cycle on, by the feature's own live step.
    Live,
    /// Logged as needing a restart; the running value stays.
    Restart,
}

/// One configuration variable: its name without `PROCSHIP_`, its default as
/// written in `.env.example`, a line of help, how it is masked and whether
/// a reload applies it live.
#[derive(Debug)]
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    pub mask: Mask,
    pub reload: Reload,
}

impl Var {
    /// A plain variable that applies after a restart.
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Var {
        Var {
            name,
            default,
            help,
            mask: Mask::None,
            reload: Reload::Restart,
        }
    }

    /// The same variable, applied live on SIGHUP.
    pub const fn live(self) -> Var {
        Var {
            reload: Reload::Live,
            ..self
        }
    }

    /// The same variable, its value masked as `mask` says.
    pub const fn masked(self, mask: Mask) -> Var {
        Var { mask, ..self }
    }

    pub fn full_name(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }

    /// `value` as it may be printed.
    pub fn shown(&self, value: &str) -> String {
        match self.mask {
            _ if value.is_empty() => String::new(),
            Mask::None => value.to_string(),
            Mask::Secret => MASK.to_string(),
            Mask::Url => mask_url(value),
            Mask::HeaderValues => value
                .split(',')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{}={MASK}", k.trim()),
                    None => MASK.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// One feature's variables under a title: a section of `.env.example`.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub title: &'static str,
    pub vars: &'static [Var],
}

/// Every variable of every feature, in the order `--check-config`,
/// `--help` and `.env.example` list them.
#[derive(Debug, Clone)]
pub struct Table {
    pub sections: Vec<Section>,
}

impl Table {
    pub fn vars(&self) -> impl Iterator<Item = &'static Var> + '_ {
        self.sections.iter().flat_map(|s| s.vars.iter())
    }

    /// The variable of a full name (`PROCSHIP_INTERVAL`).
    pub fn lookup(&self, full_name: &str) -> Option<&'static Var> {
        let short = full_name.strip_prefix(PREFIX)?;
        self.vars().find(|v| v.name == short)
    }

    /// `.env.example`: every variable with its help and default, by section.
    pub fn env_example(&self, preamble: &str) -> String {
        let mut out = preamble.to_string();
        for s in &self.sections {
            out.push_str(&format!("\n## {}\n", s.title));
            for v in s.vars {
                let secret = match v.mask {
                    Mask::Secret | Mask::HeaderValues => " (secret: masked in all output)",
                    Mask::None | Mask::Url => "",
                };
                out.push_str(&format!(
                    "\n# {}{secret}\n# {}={}\n",
                    v.help,
                    v.full_name(),
                    v.default
                ));
            }
        }
        out
    }

    /// The README's table of variables: name, default, meaning (and whether
    /// a reload applies it live).
    pub fn markdown(&self) -> String {
        let mut out =
            String::from("| variable | default | on SIGHUP | meaning |\n|---|---|---|---|\n");
        for v in self.vars() {
            let default = match v.default {
                "" => "(empty)".to_string(),
                d => format!("`{d}`"),
            };
            let reload = match v.reload {
                Reload::Live => "live",
                Reload::Restart => "restart",
            };
            let secret = match v.mask {
                Mask::Secret | Mask::HeaderValues => " **secret**",
                Mask::None | Mask::Url => "",
            };
            out.push_str(&format!(
                "| `{}` | {default} | {reload} | {}{secret} |\n",
                v.full_name(),
                v.help.replace('|', "\\|")
            ));
        }
        out
    }

    /// The man page's variables (roff): a subsection per section, a tagged
    /// paragraph per variable with its help, default and reload class.
    pub fn roff(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            out.push_str(&format!(".SS {}\n", roff_escape(s.title)));
            for v in s.vars {
                let default = match v.default {
                    "" => "empty".to_string(),
                    d => format!("\\fB{}\\fR", roff_escape(d)),
                };
                let reload = match v.reload {
                    Reload::Live => "applied live on SIGHUP",
                    Reload::Restart => "applied at the next start",
                };
                let secret = match v.mask {
                    Mask::Secret | Mask::HeaderValues => " Secret: masked in all output.",
                    Mask::None | Mask::Url => "",
                };
                out.push_str(&format!(
                    ".TP\n.B {}\n{}. Default: {default}; {reload}.{secret}\n",
                    roff_escape(&v.full_name()),
                    roff_escape(v.help.trim_end_matches('.'))
                ));
            }
        }
        out
    }

    /// The variables of `--help`: one line each, with the default.
    pub fn help(&self) -> String {
        let mut out = String::new();
        for v in self.vars() {
            out.push_str(&format!(
                "  {PREFIX}{:<22} {}  [{}]\n",
                v.name, v.help, v.default
            ));
        }
        out
    }
}

/// `text` safe in a roff line: backslashes and minus signs escaped, and a
/// line that would start with a control character guarded.
pub fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.chars().next() {
        Some('.' | '\'') => format!("\\&{escaped}"),
        _ => escaped,
    }
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

/// A value that must never be printed; `Debug` masks it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// What a masked value prints as.
pub const MASK: &str = "****";

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
    for (i, line) in text.lines().enumerate() {
        // The offending line may hold a secret: name its number, not its text.
        match env_line(line) {
            Ok(Some(kv)) => out.push(kv),
            Ok(None) => {}
            Err(why) => return Err(err(format!("line {}: {why}", i + 1))),
        }
    }
    Ok(out)
}

/// One line of an env file, read as systemd's `EnvironmentFile=` and
/// `docker run --env-file` both read it, so one file means the same to the
/// agent, to the unit and to a container: `KEY=value` taken literally, and
/// comments on lines of their own. What the two read differently is
/// refused, saying why: an inline ` # comment` (both keep it in the value),
/// quotes (systemd removes them, docker keeps them), whitespace around the
/// value (systemd drops it, docker keeps it), a trailing backslash (a line
/// continuation to systemd), `export` (shell syntax neither reads).
pub fn env_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.starts_with("export ") {
        return Err("`export` is shell syntax that systemd's EnvironmentFile= and docker --env-file do not read; write KEY=value".into());
    }
    let (key, value) = line
        .split_once('=')
        .ok_or("expected KEY=value (comments go on lines of their own, starting with #)")?;
    let mut chars = key.chars();
    if !chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err("the name before = must be letters, digits and _ (no spaces around =)".into());
    }
    if value.contains(" #") || value.contains("\t#") {
        return Err("an inline comment: systemd's EnvironmentFile= and docker --env-file keep ` # …` as part of the value; put the comment on a line of its own".into());
    }
    if value.starts_with(['"', '\'']) {
        return Err("a quoted value: systemd removes the quotes but docker --env-file keeps them; write the value without quotes (it is taken literally, $ and # included)".into());
    }
    if value != value.trim() {
        return Err("spaces around the value: systemd drops them but docker --env-file keeps them; remove them".into());
    }
    if value.ends_with('\\') {
        return Err(
            "a trailing backslash continues the line for systemd, not for docker; remove it".into(),
        );
    }
    Ok(Some((key.to_string(), value.to_string())))
}

/// One variable's value in effect, where it came from, and how it prints.
#[derive(Debug, Clone)]
pub struct Setting {
    pub var: &'static Var,
    /// The value as it may be printed (masked as the variable says).
    pub shown: String,
    pub source: Source,
    /// The value itself, for telling whether a reload changed it.
    value: Secret,
}

/// The value of every variable in effect: what `--check-config` prints and
/// `/status` shows, and what a reload compares.
#[derive(Debug, Clone, Default)]
pub struct Effective(Vec<Setting>);

impl Effective {
    pub fn iter(&self) -> impl Iterator<Item = &Setting> {
        self.0.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.0.iter().find(|s| s.var.name == name)
    }

    /// `PROCSHIP_X=value  # source` lines, secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            out.push_str(&format!(
                "{}={}  # {}\n",
                s.var.full_name(),
                s.shown,
                s.source
            ));
        }
        out
    }

    /// The variables whose values differ, secrets compared by value.
    pub fn changed(&self, new: &Effective) -> Vec<&'static Var> {
        self.0
            .iter()
            .filter(|s| new.get(s.var.name).is_none_or(|n| n.value != s.value))
            .map(|s| s.var)
            .collect()
    }

    /// After a reload: `applied` variables take their new setting, the
    /// others keep the one still in effect.
    pub fn merged(&self, new: &Effective, applied: &[&'static Var]) -> Effective {
        let pick = |s: &Setting| {
            let take = applied.iter().any(|v| v.name == s.var.name);
            match new.get(s.var.name) {
                Some(n) if take => n.clone(),
                _ => s.clone(),
            }
        };
        Effective(self.0.iter().map(pick).collect())
    }
}

/// The raw values of one load, read by each feature's parser. Every value
/// read is recorded (masked) for `Effective`.
pub struct Values {
    vars: Vec<&'static Var>,
    raw: BTreeMap<&'static str, (String, Source)>,
    effective: Vec<Setting>,
}

impl Values {
    /// Gathers the three sources; the strongest one that sets a non-empty
    /// value wins. Every `PROCSHIP_*` name must be in `table`.
    pub fn from_sources(
        table: &Table,
        flags: &[(String, String)],
        environment: &[(String, String)],
        env_file: &[(String, String)],
    ) -> Result<Values, ConfigError> {
        let mut raw = BTreeMap::new();
        for (source, pairs) in [
            (Source::EnvFile, env_file),
            (Source::Environment, environment),
            (Source::Flag, flags),
        ] {
            for (k, v) in pairs.iter().filter(|(k, _)| k.starts_with(PREFIX)) {
                let var = table.lookup(k).ok_or_else(|| ConfigError::Unknown {
                    var: k.clone(),
                    source,
                })?;
                if !v.trim().is_empty() {
                    raw.insert(var.name, (v.trim().to_string(), source));
                }
            }
        }
        Ok(Values {
            vars: table.vars().collect(),
            raw,
            effective: Vec::new(),
        })
    }

    /// Only the defaults of `table` (tests, benches).
    pub fn defaults(table: &Table) -> Values {
        Values {
            vars: table.vars().collect(),
            raw: BTreeMap::new(),
            effective: Vec::new(),
        }
    }

    /// Only the defaults of one feature's rows (its tests).
    pub fn defaults_of(vars: &'static [Var]) -> Values {
        Values::defaults(&Table {
            sections: vec![Section { title: "", vars }],
        })
    }

    /// A name a feature reads must be one of its rows: an unknown one is a
    /// programming error, loud in debug builds and tests.
    fn var(&self, name: &str) -> Result<&'static Var, ConfigError> {
        let found = self.vars.iter().copied().find(|v| v.name == name);
        debug_assert!(
            found.is_some(),
            "{PREFIX}{name} is not in the variable table"
        );
        found.ok_or_else(|| {
            ConfigError::Usage(format!(
                "internal error: {PREFIX}{name} is read but not in the variable table"
            ))
        })
    }

    fn raw_or_default(&self, var: &'static Var) -> (String, Source) {
        self.raw
            .get(var.name)
            .cloned()
            .unwrap_or_else(|| (var.default.to_string(), Source::Default))
    }

    /// The error for `name`'s current value: the variable, the value
    /// (masked) and what is accepted.
    pub fn invalid(&self, name: &str, accepted: &str) -> ConfigError {
        match self.var(name) {
            Ok(var) => ConfigError::Invalid {
                var: var.full_name(),
                value: var.shown(&self.raw_or_default(var).0),
                accepted: accepted.to_string(),
            },
            Err(e) => e,
        }
    }

    /// Records a default worked out at load time (the host's name).
    pub fn set_default(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let var = self.var(name)?;
        self.effective.retain(|s| s.var.name != name);
        self.effective.push(Setting {
            var,
            shown: var.shown(value),
            source: Source::Default,
            value: Secret::new(value),
        });
        Ok(())
    }

    /// Parses a variable that may be empty (`None` when unset and without default).
    pub fn opt<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let var = self.var(name)?;
        let (value, source) = self.raw_or_default(var);
        self.effective.retain(|s| s.var.name != name);
        self.effective.push(Setting {
            var,
            shown: var.shown(&value),
            source,
            value: Secret::new(value.clone()),
        });
        if value.is_empty() {
            return Ok(None);
        }
        parse(&value)
            .map(Some)
            .map_err(|accepted| self.invalid(name, &accepted))
    }

    /// Parses a variable; an empty value goes to `parse` too.
    pub fn get<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.opt(name, &parse)? {
            Some(v) => Ok(v),
            None => parse("").map_err(|accepted| self.invalid(name, &accepted)),
        }
    }

    /// What was read, in the table's order. Every row must have been read
    /// by its feature (debug builds check).
    pub fn finish(mut self) -> Effective {
        let order = |s: &Setting| self.vars.iter().position(|v| v.name == s.var.name);
        let mut effective = std::mem::take(&mut self.effective);
        effective.sort_by_key(|s| order(s));
        debug_assert_eq!(
            effective.len(),
            self.vars.len(),
            "every variable in the table is read by its feature"
        );
        Effective(effective)
    }
}

/// Splits a comma-separated list, dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
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

pub fn parse_url(s: &str) -> Result<String, String> {
    const ACCEPTED: &str =
        "an http:// or https:// URL with a host, such as http://127.0.0.1:8428/write";
    let uri: ureq::http::Uri = s.parse().map_err(|_| ACCEPTED.to_string())?;
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // After the host (an IPv6 literal ends with `]`), a `:` starts the port.
    let after_host = host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "{ACCEPTED}; the port must be a number from 0 to 65535"
        ));
    }
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

pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
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

pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("accepted: true, false".into()),
    }
}

pub fn parse_dir(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') || !Path::new(s).is_dir() {
        return Err("the absolute path of an existing directory".into());
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn urls_need_a_scheme_a_host_and_a_real_port() {
        for ok in [
            "http://127.0.0.1:8428/write",
            "https://u:p@vm.example:443/api/v1/write",
            "http://[::1]:9/x",
            "http://h/",
        ] {
            assert_eq!(parse_url(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "ftp://h/",
            "http://:80/",
            "http://h:99999/w",
            "http://[::1]:70000/",
            "h:80",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(
            parse_url("http://h:99999/")
                .unwrap_err()
                .contains("0 to 65535")
        );
    }

    #[test]
    fn masks_by_the_row() {
        let url = Var::new("U", "", "").masked(Mask::Url);
        assert_eq!(
            url.shown("http://u:pw@h/write?db=x&token=t"),
            "http://u:****@h/write?db=x&token=****"
        );
        let headers = Var::new("H", "", "").masked(Mask::HeaderValues);
        assert_eq!(headers.shown("A=1, B=2"), "A=****,B=****");
        assert_eq!(Var::new("S", "", "").masked(Mask::Secret).shown("x"), MASK);
        assert_eq!(Var::new("P", "", "").shown("x"), "x");
    }

    static ROWS: &[Var] = &[
        Var::new("A", "1", "a").live(),
        Var::new("B", "", "b").masked(Mask::Secret),
    ];

    fn load(env: &[(&str, &str)]) -> Effective {
        let table = Table {
            sections: vec![Section {
                title: "t",
                vars: ROWS,
            }],
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect();
        let mut v = Values::from_sources(&table, &[], &env, &[]).unwrap();
        v.get("A", |s| Ok(s.to_string())).unwrap();
        v.opt("B", |s| Ok(s.to_string())).unwrap();
        v.finish()
    }

    #[test]
    fn changes_are_found_by_value_and_merged_by_the_plan() {
        let old = load(&[("B", "secret-1")]);
        let new = load(&[("A", "2"), ("B", "secret-2")]);
        let changed: Vec<&str> = old.changed(&new).iter().map(|v| v.name).collect();
        assert_eq!(changed, ["A", "B"], "secrets compare by value, not by mask");
        let merged = old.merged(&new, &[&ROWS[0]]);
        assert_eq!(merged.get("A").map(|s| s.shown.as_str()), Some("2"));
        assert_eq!(merged.get("A").map(|s| s.source), Some(Source::Environment));
        assert_eq!(merged.get("B").map(|s| s.shown.as_str()), Some(MASK));
        assert!(old.changed(&load(&[("B", "secret-1")])).is_empty());
    }

    #[test]
    #[should_panic(expected = "not in the variable table")]
    fn reading_a_name_without_a_row_is_loud() {
        let mut v = Values::defaults_of(ROWS);
        let _ = v.get("NOPE", |s| Ok(s.to_string()));
    }

    #[test]
    fn env_lines_mean_what_systemd_and_docker_both_read() {
        let ok = |l: &str| env_line(l).unwrap();
        assert_eq!(ok("# a comment"), None);
        assert_eq!(ok("   # indented comment"), None);
        assert_eq!(ok(""), None);
        assert_eq!(
            ok("PROCSHIP_AUTH_TOKEN=a$b#c=d"),
            Some(("PROCSHIP_AUTH_TOKEN".into(), "a$b#c=d".into())),
            "literal: $, # and = in a value"
        );
        assert_eq!(
            ok("PROCSHIP_TAGS="),
            Some(("PROCSHIP_TAGS".into(), String::new()))
        );
        for (line, why) in [
            ("PROCSHIP_JITTER=10s   # spread", "inline comment"),
            ("PROCSHIP_JITTER=10s\t# spread", "inline comment"),
            ("PROCSHIP_HEADERS='X-A=1'", "quoted value"),
            ("PROCSHIP_HEADERS=\"X-A=1\"", "quoted value"),
            ("PROCSHIP_FORMAT=influx ", "spaces around the value"),
            ("PROCSHIP_FORMAT= influx", "spaces around the value"),
            ("PROCSHIP_FORMAT = influx", "no spaces around ="),
            ("export PROCSHIP_FORMAT=influx", "`export`"),
            ("PROCSHIP_FORMAT", "expected KEY=value"),
            ("PROCSHIP_TAGS=a=b\\", "trailing backslash"),
        ] {
            let e = env_line(line).unwrap_err();
            assert!(e.contains(why), "{line:?}: {e}");
        }
    }

    #[test]
    fn env_file_errors_are_clear_and_do_not_echo_secrets() {
        let dir = std::env::temp_dir().join(format!("procship-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.env");
        std::fs::write(&path, "PROCSHIP_INTERVAL=5\nPROCSHIP_AUTH_TOKEN='s3cret'\n").unwrap();
        let e = read_env_file(&EnvFile {
            path: path.clone(),
            explicit: true,
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bad.env") && !msg.contains("s3cret"), "{msg}");
        assert!(msg.contains("line 2: a quoted value"), "{msg}");
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
}
