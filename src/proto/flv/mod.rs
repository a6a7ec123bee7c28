//! FLV container framing: the file header, tag serialisation for egress, a streaming demuxer for
//! FLV carried over fstream, and a sniffer for the first bytes of an fstream broadcast.
//!
//! Everything here is sans-IO: bytes in, [`Frame`](crate::media::Frame)s or bytes out. No sockets,
//! no runtime, no clock. Spec: Adobe "Video File Format Specification v10.1", Annex E
//! (`// FLV v10.1 §E.x` next to each parser).
//!
//! - [`mux`]: [`file_header`], [`tag_header`], [`write_tag`], [`write_tag_from_pieces`],
//!   [`TagParts`] (hot path, once per frame).
//! - [`demux`]: [`FlvDemuxer`], which turns a byte stream into frames sharing the input buffer.
//! - [`mod@sniff`]: [`sniff()`], FLV vs H.264 Annex-B vs opaque for an fstream broadcast.

pub mod demux;
pub mod mux;
pub mod sniff;

pub use demux::{FlvDemuxer, FlvHeader, Limits};
pub use mux::{TagParts, file_header, tag_header, tag_len, write_tag, write_tag_from_pieces};
pub use sniff::{SNIFF_LEN, Sniffed, sniff};

/// The FLV signature plus version 1: `FLV\x01`. // FLV v10.1 §E.2
pub const SIGNATURE: [u8; 4] = *b"FLV\x01";
/// Length of the FLV file header (DataOffset for version 1). // FLV v10.1 §E.2
pub const HEADER_LEN: usize = 9;
/// Length of an FLV tag header (without the filter's encryption headers). // FLV v10.1 §E.4.1
pub const TAG_HEADER_LEN: usize = 11;
/// Length of a PreviousTagSize field. // FLV v10.1 §E.3
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// The largest tag body FLV can describe: DataSize is a UI24. // FLV v10.1 §E.4.1
pub const MAX_DATA_SIZE: usize = 0x00ff_ffff;

/// Everything that can go wrong while muxing or demuxing FLV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The stream does not begin with `FLV\x01`.
    #[error("not an FLV version 1 stream (first bytes {found:02x?})")]
    NotFlv { found: [u8; 4] },
    /// The header's DataOffset is below 9 or above the configured limit.
    #[error("FLV header length {len} outside 9..={max}")]
    BadHeaderLength { len: u32, max: u32 },
    /// A media tag's DataSize is above the configured limit.
    #[error("FLV tag of {len} bytes exceeds the limit of {max}")]
    TagTooLarge { len: u32, max: u32 },
    /// The tag's Filter bit is set (encrypted / pre-processed body): we cannot relay it.
    #[error("FLV tag type {tag_type} has the Filter (encryption) bit set")]
    FilteredTag { tag_type: u8 },
    /// A frame's payload does not fit FLV's 24-bit DataSize (mux side).
    #[error("frame payload of {len} bytes does not fit an FLV tag (max {max})")]
    PayloadTooLarge { len: usize, max: usize },
}
