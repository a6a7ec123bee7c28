//! The RTMP chunk stream (RTMP 1.0 §5.3): messages split into chunks, chunk streams interleaved.
//!
//! [`ChunkDecoder`] reassembles messages from the peer's chunks with per-chunk-stream state;
//! [`encode_message`] writes one message as a fmt-0 chunk followed by fmt-3 continuations, the
//! form the fan-out serialises once and shares with every watcher. Set Chunk Size and Abort
//! (protocol control types 1 and 2) change the decoder's state, so the decoder applies them
//! itself before returning them. Nothing here does IO.

mod decode;
mod encode;

pub use decode::ChunkDecoder;
pub use encode::{encode_message, encoded_len, payload_ranges};

use bytes::Bytes;
use thiserror::Error;

/// The chunk size both sides start with (RTMP 1.0 §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size Set Chunk Size can carry (31 bits, RTMP 1.0 §5.4.1).
pub const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;
/// Largest message length the 24-bit length field can carry.
pub const MAX_MESSAGE_LEN: u32 = 0x00ff_ffff;
/// Lowest and highest chunk stream ids the basic header can express (RTMP 1.0 §5.3.1.1).
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65599;

/// One reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp in milliseconds (deltas already applied, wrapping at 2^32).
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Decoder bounds. Every length from the wire is checked against these before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest message we reassemble (at most [`MAX_MESSAGE_LEN`]).
    pub max_message_len: u32,
    /// Largest chunk size we let the peer set.
    pub max_chunk_size: u32,
    /// Most chunk streams the peer may open.
    pub max_chunk_streams: usize,
    /// Most bytes of partially reassembled messages, summed over all chunk streams (by the
    /// lengths their headers declare).
    pub max_pending_bytes: u64,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 8 << 20,
            max_chunk_size: MAX_MESSAGE_LEN,
            max_chunk_streams: 64,
            max_pending_bytes: 16 << 20,
        }
    }
}

/// What went wrong in the chunk layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// Peer error: fmt 1–3 needs earlier header fields on this chunk stream (RTMP 1.0 §5.3.1.2).
    #[error("chunk fmt {fmt} on chunk stream {csid}, which has no previous header")]
    UnopenedChunkStream { csid: u32, fmt: u8 },
    /// Peer error: a fmt 0–2 header began a new message while one was still being reassembled.
    #[error("new message header on chunk stream {csid} while a message is incomplete")]
    HeaderInsideMessage { csid: u32 },
    /// Peer error: Set Chunk Size of 0 or with the reserved top bit set.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// Peer error: a protocol control message with a body too short for its type.
    #[error("protocol control message type {type_id} with {len}-byte body")]
    MalformedControl { type_id: u8, len: usize },
    /// Limit: the peer asked for a chunk size above our configured maximum.
    #[error("chunk size {size} exceeds the limit of {max}")]
    ChunkSizeTooLarge { size: u32, max: u32 },
    /// Limit: a message longer than we reassemble.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: u32, max: u32 },
    /// Limit: too many chunk streams opened.
    #[error("more than {max} chunk streams")]
    TooManyChunkStreams { max: usize },
    /// Limit: too many bytes of incomplete messages across chunk streams.
    #[error("more than {max} bytes of incomplete messages")]
    TooManyPendingBytes { max: u64 },
}

impl ChunkError {
    /// True when the peer exceeded a configured limit, false when it broke the protocol.
    pub fn is_limit_exceeded(&self) -> bool {
        matches!(
            self,
            ChunkError::ChunkSizeTooLarge { .. }
                | ChunkError::MessageTooLarge { .. }
                | ChunkError::TooManyChunkStreams { .. }
                | ChunkError::TooManyPendingBytes { .. }
        )
    }
}

#[cfg(fuzzing)]
/// Fuzz harness: decode arbitrary bytes until the decoder needs more input or fails.
pub fn fuzz_decode(data: &[u8]) {
    let mut decoder = ChunkDecoder::new(ChunkLimits {
        max_message_len: 1 << 16,
        ..ChunkLimits::default()
    });
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(_)) = decoder.decode(&mut buf) {}
}
