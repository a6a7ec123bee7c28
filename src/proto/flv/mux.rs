//! FLV serialisation for egress (HTTP-FLV, fstream watch): the file header and one tag per frame.
//!
//! **Which form the fan-out should use:** [`write_tag`] (or [`write_tag_from_pieces`], for a frame
//! held as the pieces of its RTMP form), once per frame, into a fresh `BytesMut` that is then
//! frozen and shared by every watcher. It copies the payload once per frame (a 50 KB
//! keyframe is a few microseconds of `memcpy`), and in exchange every watcher queues one
//! contiguous `Bytes` per frame: one iovec and one refcount per watcher per frame. [`TagParts`]
//! avoids that one copy but costs three iovecs/refcounts per watcher per frame, which loses as
//! soon as a frame has more than a handful of watchers; use it only for one-off writers (a single
//! recorder, tests). `benches/flv_tag.rs` measures both.

use bytes::{BufMut, Bytes, BytesMut};

use super::{FlvError, MAX_DATA_SIZE, PREVIOUS_TAG_SIZE_LEN, SIGNATURE, TAG_HEADER_LEN};
use crate::media::{Frame, MediaKind};

/// The 9-byte FLV header followed by PreviousTagSize0 (always 0). // FLV v10.1 §E.2, §E.3
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    // TypeFlags: bits 7..3 reserved, bit 2 audio, bit 1 reserved, bit 0 video.
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    let [s0, s1, s2, s3] = SIGNATURE;
    [s0, s1, s2, s3, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Total bytes [`write_tag`] appends for `frame`: tag header, payload, PreviousTagSize.
pub fn tag_len(frame: &Frame) -> usize {
    TAG_HEADER_LEN + frame.payload.len() + PREVIOUS_TAG_SIZE_LEN
}

fn data_size(len: usize) -> Result<u32, FlvError> {
    if len > MAX_DATA_SIZE {
        return Err(FlvError::PayloadTooLarge {
            len,
            max: MAX_DATA_SIZE,
        });
    }
    // MAX_DATA_SIZE < u32::MAX, so this cannot fail after the check above.
    u32::try_from(len).map_err(|_| FlvError::PayloadTooLarge {
        len,
        max: MAX_DATA_SIZE,
    })
}

/// The 11-byte tag header for `frame`. // FLV v10.1 §E.4.1
///
/// TagType (Filter bit clear), DataSize (UI24), Timestamp (lower 24 bits), TimestampExtended
/// (upper 8 bits), StreamID (always 0). Fails only when the payload exceeds 16 MiB − 1, which no
/// ingest produces (RTMP message lengths are 24-bit too).
pub fn tag_header(frame: &Frame) -> Result<[u8; 11], FlvError> {
    header_for(frame.kind, frame.timestamp, frame.payload.len())
}

fn header_for(kind: MediaKind, timestamp: u32, payload_len: usize) -> Result<[u8; 11], FlvError> {
    let [_, s2, s1, s0] = data_size(payload_len)?.to_be_bytes();
    let [t3, t2, t1, t0] = timestamp.to_be_bytes();
    Ok([kind.type_id(), s2, s1, s0, t2, t1, t0, t3, 0, 0, 0])
}

/// Appends the whole tag for `frame` to `out`: header, payload, PreviousTagSize (11 + DataSize).
/// On error nothing is written.
pub fn write_tag(out: &mut BytesMut, frame: &Frame) -> Result<(), FlvError> {
    write_tag_from_pieces(
        out,
        frame.kind,
        frame.timestamp,
        frame.payload.len(),
        [&frame.payload[..]],
    )
}

/// Like [`write_tag`] for a payload held in pieces (a frame kept only in its RTMP chunked form):
/// the pieces are copied in order, once. `payload_len` is their total length (the caller's
/// invariant; the tag would be malformed otherwise, which debug builds assert).
pub fn write_tag_from_pieces<'a>(
    out: &mut BytesMut,
    kind: MediaKind,
    timestamp: u32,
    payload_len: usize,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), FlvError> {
    let header = header_for(kind, timestamp, payload_len)?;
    out.reserve(TAG_HEADER_LEN + payload_len + PREVIOUS_TAG_SIZE_LEN);
    let start = out.len();
    out.put_slice(&header);
    for piece in pieces {
        out.put_slice(piece);
    }
    debug_assert_eq!(
        out.len() - start,
        TAG_HEADER_LEN + payload_len,
        "pieces' length"
    );
    out.put_u32(previous_tag_size(payload_len));
    Ok(())
}

fn previous_tag_size(payload_len: usize) -> u32 {
    // Only called after `data_size` accepted the length, so this fits; saturate rather than panic.
    u32::try_from(TAG_HEADER_LEN + payload_len).unwrap_or(u32::MAX)
}

/// A tag as three pieces, the payload shared with the frame (no copy). See the module doc for
/// when to prefer [`write_tag`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagParts {
    pub header: [u8; 11],
    pub payload: Bytes,
    pub previous_tag_size: [u8; 4],
}

impl TagParts {
    /// Splits `frame` into header, shared payload and trailer.
    pub fn new(frame: &Frame) -> Result<Self, FlvError> {
        Ok(TagParts {
            header: tag_header(frame)?,
            payload: frame.payload.clone(),
            previous_tag_size: previous_tag_size(frame.payload.len()).to_be_bytes(),
        })
    }

    /// Total length on the wire.
    pub fn len(&self) -> usize {
        TAG_HEADER_LEN + self.payload.len() + PREVIOUS_TAG_SIZE_LEN
    }

    /// Never true: a tag has at least its header and trailer.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_header_layout() {
        assert_eq!(
            file_header(true, true),
            *b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
        );
        assert_eq!(file_header(false, true)[4], 0x01);
        assert_eq!(file_header(true, false)[4], 0x04);
        assert_eq!(file_header(false, false)[4], 0x00);
    }

    #[test]
    fn tag_header_splits_extended_timestamp() {
        let frame = Frame::new(
            MediaKind::Video,
            0x1234_5678,
            Bytes::from_static(&[0x17, 1, 0, 0, 0]),
        );
        assert_eq!(
            tag_header(&frame),
            Ok([9, 0, 0, 5, 0x34, 0x56, 0x78, 0x12, 0, 0, 0])
        );
    }

    #[test]
    fn write_tag_appends_header_payload_and_previous_size() {
        let frame = Frame::new(MediaKind::Audio, 7, Bytes::from_static(&[0xaf, 1, 2]));
        let mut out = BytesMut::new();
        assert_eq!(write_tag(&mut out, &frame), Ok(()));
        assert_eq!(
            &out[..],
            &[8, 0, 0, 3, 0, 0, 7, 0, 0, 0, 0, 0xaf, 1, 2, 0, 0, 0, 14]
        );
        assert_eq!(out.len(), tag_len(&frame));
        let parts = TagParts::new(&frame);
        assert!(parts.is_ok_and(|p| {
            let mut joined = p.header.to_vec();
            joined.extend_from_slice(&p.payload);
            joined.extend_from_slice(&p.previous_tag_size);
            joined == out[..] && p.len() == out.len()
        }));
    }

    #[test]
    fn a_tag_from_pieces_equals_the_tag_of_their_concatenation() {
        let frame = Frame::new(
            MediaKind::Video,
            0x0102_0304,
            Bytes::from_static(b"abcdefg"),
        );
        let mut whole = BytesMut::new();
        assert_eq!(write_tag(&mut whole, &frame), Ok(()));
        let mut pieced = BytesMut::new();
        let pieces: [&[u8]; 3] = [b"abc", b"", b"defg"];
        assert_eq!(
            write_tag_from_pieces(&mut pieced, MediaKind::Video, 0x0102_0304, 7, pieces),
            Ok(())
        );
        assert_eq!(pieced, whole);
    }

    #[test]
    fn oversized_payload_is_refused_without_writing() {
        let frame = Frame::new(
            MediaKind::Video,
            0,
            Bytes::from(vec![0x27; MAX_DATA_SIZE + 1]),
        );
        let mut out = BytesMut::new();
        assert_eq!(
            write_tag(&mut out, &frame),
            Err(FlvError::PayloadTooLarge {
                len: MAX_DATA_SIZE + 1,
                max: MAX_DATA_SIZE
            })
        );
        assert!(out.is_empty());
    }
}
