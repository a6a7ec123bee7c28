//! The life of a stream on this node, written once for every protocol: a publisher's claim,
//! frames and end with its grace window ([`ingest`]), and a watcher's subscription, limits,
//! write loop and end-of-play log ([`egress`]).
//!
//! Drivers (RTMP, FTL, fstream, HTTP-FLV) only speak their protocol and hand over here; nothing
//! in this module reads a socket. Policy that depends on the protocol (which takeover setting
//! applies, what a watcher's end is called in the log) is decided here from the protocol, so two
//! drivers cannot drift apart.

pub mod egress;
pub mod ingest;

pub use egress::Viewer;
pub use ingest::Ingest;
