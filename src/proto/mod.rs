//! Sans-IO protocol codecs and session state machines.
//!
//! Nothing here opens a socket, spawns a task or reads the clock: input arrives as bytes (and,
//! where a protocol needs it, a timestamp passed in), output leaves through `poll_*` methods.
//! A CI check (`tests/layering.rs`) keeps runtime and socket imports out of this tree.

pub mod amf0;
pub mod flv;
pub mod fstream;
pub mod ftl;
pub mod http;
pub mod proxy;
pub mod resp;
pub mod rtmp;
pub mod rtp;
pub mod stream_name;

/// Who is at fault when a protocol error ends a connection: what the log line says and what
/// `ringcast_connection_errors_total{blame}` counts. Split like rustls's errors (bad input vs a
/// peer over a limit) so an operator can tell an attack or a broken client from limits set too
/// tight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The peer broke the protocol or sent garbage.
    PeerMisbehaved,
    /// The peer exceeded a configured limit (the input may be valid).
    LimitExceeded,
    /// The local application misused the API (e.g. sent a frame before publishing).
    Local,
}

impl Blame {
    pub const ALL: [Blame; 3] = [Blame::PeerMisbehaved, Blame::LimitExceeded, Blame::Local];

    /// The label value and the log's `blame` field.
    pub fn label(self) -> &'static str {
        match self {
            Blame::PeerMisbehaved => "peer_misbehaved",
            Blame::LimitExceeded => "limit_exceeded",
            Blame::Local => "local",
        }
    }
}
