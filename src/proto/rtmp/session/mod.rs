//! RTMP sessions: the command layer (RTMP 1.0 §7) over the chunk stream, as quinn-style state
//! machines. [`ServerSession`] serves publishers and players; [`ClientSession`] drives our load
//! generator and tests. Both take bytes through `handle_input`, hand out bytes through
//! `poll_transmit` and report what happened through `poll_event`. No IO, no clock.

mod client;
mod conn;
mod server;
#[cfg(test)]
mod tests;

pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use server::{ServerEvent, ServerSession};

use thiserror::Error;

use super::chunk::{ChunkError, ChunkLimits};
use super::handshake::HandshakeError;
use super::message::MalformedControl;
use crate::proto::amf0::{self, Amf0Error};

/// Everything a session bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub chunk: ChunkLimits,
    pub amf0: amf0::Limits,
    /// Most message streams (`createStream`) open at once.
    pub max_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chunk: ChunkLimits::default(),
            amf0: amf0::Limits::default(),
            max_streams: 8,
        }
    }
}

/// Server session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    pub limits: Limits,
    /// Chunk size for everything we send, announced right after `connect`.
    pub chunk_size: u32,
    /// Window Acknowledgement Size we ask the peer to ack by.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we send (dynamic limit type).
    pub peer_bandwidth: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            limits: Limits::default(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
        }
    }
}

pub use crate::proto::Blame;

/// Why a session ended. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    MalformedControl(#[from] MalformedControl),
    #[error("malformed AMF0 in {what}: {source}")]
    MalformedAmf0 {
        what: &'static str,
        #[source]
        source: Amf0Error,
    },
    #[error("`{command}` before `connect`")]
    NotConnected { command: String },
    #[error("second `connect` on one connection")]
    AlreadyConnected,
    #[error("`{command}` is missing its {argument}")]
    MissingArgument {
        command: &'static str,
        argument: &'static str,
    },
    #[error("`{command}` on message stream {stream_id}, which was never created")]
    UnknownStream { command: String, stream_id: u32 },
    #[error("media on message stream {stream_id}, which is not publishing")]
    MediaOnNonPublishingStream { stream_id: u32 },
    #[error("`{command}` on message stream {stream_id}, which is busy")]
    StreamBusy { command: String, stream_id: u32 },
    #[error("more than {max} message streams")]
    TooManyStreams { max: usize },
    #[error("send_frame called while not publishing")]
    NotPublishing,
}

impl SessionError {
    pub fn blame(&self) -> Blame {
        match self {
            SessionError::Chunk(e) if e.is_limit_exceeded() => Blame::LimitExceeded,
            SessionError::MalformedAmf0 { source, .. } if source.is_limit_exceeded() => {
                Blame::LimitExceeded
            }
            SessionError::TooManyStreams { .. } => Blame::LimitExceeded,
            SessionError::NotPublishing => Blame::Local,
            _ => Blame::PeerMisbehaved,
        }
    }
}

/// Splits a publish/play name into the stream key and its query string:
/// `"key?token=abc"` → `("key", Some("token=abc"))`. Sessions report names unsplit; policy
/// (auth tokens, keys) is the caller's.
pub fn split_stream_name(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((key, query)) => (key, Some(query)),
        None => (name, None),
    }
}

#[cfg(fuzzing)]
/// Fuzz harness: a server session past a simple handshake, fed arbitrary bytes, accepting
/// every publish and play so the media paths are reached.
pub fn fuzz_server(data: &[u8]) {
    let mut s = ServerSession::new(SessionConfig::default(), [7; 1528]);
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&[3]);
    buf.extend_from_slice(&[0; 2 * 1536]);
    buf.extend_from_slice(data);
    loop {
        if s.handle_input(&mut buf).is_err() {
            return;
        }
        let mut answered = false;
        while let Some(ev) = s.poll_event() {
            match ev {
                ServerEvent::PublishRequested { stream_id, .. } => {
                    s.accept_publish(stream_id);
                    answered = true;
                }
                ServerEvent::PlayRequested { stream_id, .. } => {
                    s.accept_play(stream_id);
                    answered = true;
                }
                _ => {}
            }
        }
        while s.poll_transmit().is_some() {}
        if !answered {
            return;
        }
    }
}
