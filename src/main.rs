//! Command line, logging, signals and exit codes; the work is in the library.

use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;

use nix::sys::signal::{SigSet, Signal};
use procship::agent::{self, Control};
use procship::config::{self, ConfigError, EX_CONFIG, EnvFile, PREFIX};
use procship::operate::log;
use procship::settings::{self, Settings};

enum Mode {
    Run,
    Status,
    Once,
    CheckConfig,
    EnvExample,
    Help,
    Version,
}

struct Args {
    mode: Mode,
    env_file: EnvFile,
    flags: Vec<(String, String)>,
}

/// `sysexits`' EX_USAGE: the command line itself is wrong (an unknown
/// option, a missing value).
const EX_USAGE: u8 = 64;

/// Why the command line was refused: a usage error (64), or a value the
/// configuration refuses (78), such as a secret given as a flag.
enum ArgError {
    Usage(String),
    Config(ConfigError),
}

fn parse_args() -> Result<Args, ArgError> {
    use lexopt::prelude::*;
    let usage = |msg: String| ArgError::Usage(format!("{msg}; see procship --help"));
    let mut p = lexopt::Parser::from_env();
    let mut args = Args {
        mode: Mode::Run,
        env_file: EnvFile::default(),
        flags: Vec::new(),
    };
    while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Long("once") => args.mode = Mode::Once,
            Long("check-config") => args.mode = Mode::CheckConfig,
            Long("env-example") => args.mode = Mode::EnvExample,
            Short('h') | Long("help") => args.mode = Mode::Help,
            Short('V') | Long("version") => args.mode = Mode::Version,
            Long("env-file") => {
                let v = p.value().map_err(|e| usage(e.to_string()))?;
                args.env_file = EnvFile {
                    path: v.into(),
                    explicit: true,
                };
            }
            Long(name) => {
                // Every variable is also a flag: --interval 5 sets PROCSHIP_INTERVAL.
                let name = name.to_string();
                let var = format!("{PREFIX}{}", name.to_ascii_uppercase().replace('-', "_"));
                let Some(row) = settings::table().lookup(&var) else {
                    return Err(usage(format!("unknown option --{name}")));
                };
                let v = p.value().map_err(|e| usage(e.to_string()))?;
                let v = v
                    .into_string()
                    .map_err(|_| usage(format!("--{name}: value is not UTF-8")))?;
                if row.shown(&v) != v {
                    // Every user can read a process's command line.
                    return Err(ArgError::Config(ConfigError::Usage(format!(
                        "--{name} would show a secret to every user of the host in /proc/PID/cmdline; \
                         set {var} in the env file (--env-file) or the environment instead"
                    ))));
                }
                args.flags.push((var, v));
            }
            Value(v) if v == "status" => args.mode = Mode::Status,
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    Ok(args)
}

fn load(args: &Args) -> Result<Settings, ConfigError> {
    load_over(args, &[])
}

/// Builds the configuration, leaving out environment entries that are
/// copies of the env file as it was at start (`from_file`): under systemd,
/// `EnvironmentFile=` puts the file into the environment, which would
/// otherwise outrank the file's new values on SIGHUP.
fn load_over(args: &Args, from_file: &[(String, String)]) -> Result<Settings, ConfigError> {
    let file = config::read_env_file(&args.env_file)?;
    let environment: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(PREFIX))
        .filter(|kv| !from_file.contains(kv))
        .collect();
    Settings::from_sources(&args.flags, &environment, &file)
}

/// Blocks SIGTERM, SIGINT and SIGHUP in every thread and turns them into
/// `Control` messages from one small thread (no async-signal-safety puzzles).
fn signal_channel() -> std::io::Result<mpsc::Receiver<Control>> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(std::io::Error::from)?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("procship-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                let msg = if sig == Signal::SIGHUP {
                    Control::Reload
                } else {
                    Control::Stop
                };
                tracing::info!(signal = %sig, "signal received");
                if tx.send(msg).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(ArgError::Usage(e)) => {
            eprintln!("procship: {e}");
            return ExitCode::from(EX_USAGE);
        }
        Err(ArgError::Config(e)) => {
            eprintln!("procship: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match args.mode {
        Mode::Help => {
            print!("{}", procship::usage::help());
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("{}", procship::usage::version());
            return ExitCode::SUCCESS;
        }
        Mode::EnvExample => {
            print!("{}", settings::env_example());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("procship: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let result = match args.mode {
        Mode::Status => return procship::operate::status::client::run(&cfg.status),
        Mode::CheckConfig => {
            print!(
                "# procship {}: configuration is valid\n{}",
                env!("CARGO_PKG_VERSION"),
                cfg.effective.render()
            );
            Ok(())
        }
        Mode::Once => {
            let _ = log::init(&cfg.log);
            agent::once(&cfg).and_then(|body| {
                let mut out = std::io::stdout().lock();
                out.write_all(&body)?;
                out.flush()
            })
        }
        _ => {
            // What the env file said at start: its copies in the
            // environment (systemd's EnvironmentFile=) yield to its new
            // values on SIGHUP.
            let at_start = config::read_env_file(&args.env_file).unwrap_or_default();
            let reload = agent::Reload {
                load: Box::new(move || load_over(&args, &at_start)),
                set_level: log::init(&cfg.log),
            };
            match signal_channel().map(|rx| agent::run(cfg, rx, reload)) {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(agent::RunError::Config(msg))) => {
                    // Logging is up: the message goes where the operator looks.
                    tracing::error!("cannot start: {msg}");
                    return ExitCode::from(EX_CONFIG);
                }
                Ok(Err(agent::RunError::Io(e))) | Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("procship: {e}");
            ExitCode::FAILURE
        }
    }
}
