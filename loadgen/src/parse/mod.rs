//! Lean stream parsers for watchers, one per framing a watcher can read: RTMP chunks after the
//! handshake ([`rtmp`]), an FLV byte stream from an fstream watch ([`flv`]), and the
//! kernel-ceiling baseline's length-prefixed framing ([`raw`]).
//!
//! None reassembles media: a video message yields only its first [`PROBE_END`] bytes and its
//! length, so a watcher's cost is the kernel copy plus a few bytes of header work per message.
//! Everything from the wire is bounds-checked and an error ends the connection, never a panic.
//! No IO here: bytes in, [`Parsed`] out.

pub mod flv;
pub mod raw;
pub mod rtmp;

pub use flv::FlvParser;
pub use raw::RawParser;
pub use rtmp::RtmpParser;

use crate::synth::PROBE_END;

/// Largest non-media message body kept whole.
pub const MAX_CONTROL_LEN: usize = 64 * 1024;

/// What a parser reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete video message: its length and first bytes.
    Video { len: usize, head: Head },
    /// A complete audio message.
    Audio { len: usize },
    /// A complete non-media message (RTMP type id and body; FLV script tags have an empty body).
    Control { type_id: u8, body: Vec<u8> },
}

/// The first bytes of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub bytes: [u8; PROBE_END],
    pub len: usize,
}

impl Head {
    pub const EMPTY: Head = Head {
        bytes: [0; PROBE_END],
        len: 0,
    };

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends as much of `data` as still fits.
    pub fn fill(&mut self, data: &[u8]) {
        let n = (PROBE_END - self.len).min(data.len());
        self.bytes[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
    }
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// RTMP: fmt 1..3 on a chunk stream with no previous header.
    NoPreviousHeader { csid: u32 },
    /// RTMP: more chunk streams than a player ever needs.
    TooManyChunkStreams,
    /// RTMP: a Set Chunk Size of 0 or above 2^24 - 1.
    BadChunkSize(u32),
    /// RTMP: a fmt 0..2 header that changes a message in flight (RTMP forbids it).
    HeaderMidMessage { csid: u32 },
    /// FLV: the stream does not begin with `FLV\x01`.
    NotFlv { found: [u8; 4] },
    /// FLV: the header's DataOffset is below 9 or absurdly large.
    BadFlvHeaderLength(u32),
    /// FLV: a tag type other than audio (8), video (9) or script data (18), or with the Filter
    /// (encryption) bit set: after the header this means the framing was lost.
    BadTagType(u8),
    /// FLV: a PreviousTagSize that is not the tag's size (11 + DataSize).
    PreviousTagSizeMismatch { expected: u32, found: u32 },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
