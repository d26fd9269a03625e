//! The integration tests, one binary: the real `procship` binary run with a
//! clean environment in its own temporary directory, against real HTTP
//! listeners, sockets and (in `backends`) the real servers from Debian's
//! packages, all on 127.0.0.1. `util` holds what they share.

mod alerts;
mod alloc;
mod backends;
mod cli;
mod delivery;
mod formats;
mod layers;
mod live;
mod node_exporter;
mod notify;
mod proxy;
mod reload;
mod site;
mod spool;
mod status;
mod tls;
mod util;

/// Counts allocations per thread, for `alloc`'s tests of a steady cycle.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
