//! The sans-IO RTMP stack: handshake, chunk stream, protocol control messages and the
//! server and client session state machines built from them.
//!
//! Layers, bottom up: [`handshake`] (C0/C1/C2, simple and FP9 digest), [`chunk`] (message
//! (de)chunking), [`message`] (protocol control and user control messages), [`session`]
//! (commands, streams, events). No sockets, runtime or clock reads: bytes in, bytes and events
//! out. Spec: Adobe "Real-Time Messaging Protocol (RTMP) specification" 1.0, cited as
//! `RTMP 1.0 §x`.

pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;

pub use chunk::{
    ChunkDecoder, ChunkError, ChunkLimits, Message, encode_message, encoded_len, payload_ranges,
};
pub use handshake::{ClientHandshake, HandshakeError, HandshakeKind, ServerHandshake};
pub use session::{
    ClientConfig, ClientEvent, ClientSession, Limits, ServerEvent, ServerSession, SessionConfig,
    SessionError, split_stream_name,
};

/// Chunk stream ids this crate uses for what it sends. Every message is written with a fmt-0
/// header, so sharing a chunk stream between messages is safe; the ids only mirror common
/// practice (Flash, ffmpeg) to ease reading captures.
pub mod csid {
    pub const PROTOCOL_CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const DATA: u32 = 5;
    pub const VIDEO: u32 = 6;
}

/// The message stream id the fan-out writes media with: the first (and only) stream a
/// session's `createStream` allocates.
pub const MEDIA_STREAM_ID: u32 = 1;
