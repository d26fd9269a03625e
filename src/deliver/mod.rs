//! Delivery: the batcher cuts points into numbered batches; once encoded,
//! the queue holds them (written through to the disk spool when one is
//! set) until the shipper has delivered them, as the retry policy says.

pub mod batch;
pub mod coalesce;
pub mod drain;
pub mod queue;
pub mod resolve;
pub mod retry;
pub mod ship;
pub mod spool;
pub mod tls;
