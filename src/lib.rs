//! ringcast: a live-media fan-out node.
//!
//! The crate is split by what may touch the outside world:
//! - [`proto`], [`media`] and [`fanout`] are sans-IO: no sockets, no runtime, no clock reads.
//!   They are driven by bytes and timestamps passed in, so they are fuzzable and testable in memory.
//! - [`server`] is the only code that touches sockets and the io_uring runtime.
//! - [`client`] holds the blocking command-line clients (`ringcast fstream`).
//! - [`config`] is the typed TOML configuration with its embedded defaults.
//! - [`logging`] is the non-blocking log writer (a thread behind a bounded queue).
//! - [`metrics`] holds the per-core counters behind `/metrics` (no IO).

pub mod cli;
pub mod client;
pub mod config;
pub mod fanout;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod proto;
pub mod server;
