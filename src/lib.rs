//! procship: a lean host-telemetry push agent for Linux. The path of a
//! point (docs/ARCHITECTURE.md): `collect` → `deliver::batch` → `encode` →
//! `deliver::queue` (and `deliver::spool`) → `deliver::ship`. What serves the
//! operator is in `operate`; `config` is the loader every feature's options
//! are read through, `settings` assembles them, `agent` composes the parts.

/// Who the agent is, on the wire: the HTTP User-Agent and the json envelope's `agent`.
pub const AGENT: &str = concat!("procship/", env!("CARGO_PKG_VERSION"));

// The bottom: the data model and clock, counters, the loader, host facts.
pub mod config;
pub mod host;
pub mod point;
pub mod stats;

// The path of a point.
pub mod collect;
pub mod deliver;
pub mod encode;
pub mod schedule;

// What serves the operator, and what composes it all.
pub mod agent;
pub mod operate;
pub mod settings;
pub mod usage;
