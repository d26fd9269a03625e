//! What serves the operator: the status endpoint and `procship status`,
//! the agent's own telemetry point, systemd's notify protocol, and logging.

pub mod log;
pub mod notify;
pub mod status;
pub mod telemetry;
