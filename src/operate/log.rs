//! Logging: `PROCSHIP_LOG_LEVEL` (applied live on SIGHUP) and
//! `PROCSHIP_LOG_FORMAT`; logs go to stderr, as text (coloured on a
//! terminal) or one JSON object per line.

use std::io::IsTerminal;

use crate::config::{ConfigError, Values, Var};

pub const VARS: &[Var] = &[
    Var::new("LOG_LEVEL", "info", "error | warn | info | debug | trace").live(),
    Var::new("LOG_FORMAT", "text", "text | json (logs go to stderr)"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub level: tracing::Level,
    pub format: LogFormat,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let level = v.get("LOG_LEVEL", |s| {
            s.parse::<tracing::Level>()
                .map_err(|_| "accepted: error, warn, info, debug, trace".to_string())
        })?;
        let format = v.get("LOG_FORMAT", |s| match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("accepted: text, json".into()),
        })?;
        Ok(Options { level, format })
    }
}

/// Changes the log level of the running process (the live step of a reload).
pub type SetLevel = Box<dyn Fn(tracing::Level) + Send>;

/// Sets up logging; returns how to change the level later (SIGHUP).
pub fn init(cfg: &Options) -> SetLevel {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(LevelFilter::from_level(cfg.level));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    match cfg.format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .init(),
    }
    Box::new(move |level| {
        if let Err(e) = handle.reload(LevelFilter::from_level(level)) {
            tracing::warn!("cannot change the log level: {e}");
        }
    })
}
