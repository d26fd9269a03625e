//! procship: a lean host-telemetry push agent for Linux. See DESIGN.md for
//! the path of a point: collect → batch → queue → ship.

pub mod agent;
pub mod batch;
pub mod collect;
pub mod config;
pub mod encode;
pub mod notify;
pub mod point;
pub mod queue;
pub mod resolve;
pub mod retry;
pub mod schedule;
pub mod ship;
pub mod spool;
pub mod stats;
pub mod status;
pub mod telemetry;
