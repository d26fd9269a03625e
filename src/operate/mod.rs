//! What serves the operator: the status endpoint and `procship status`,
//! the agent's own telemetry point, systemd's notify protocol, logging,
//! and the agent's footprint after start-up.

pub mod footprint;
pub mod log;
pub mod notify;
pub mod status;
pub mod telemetry;
