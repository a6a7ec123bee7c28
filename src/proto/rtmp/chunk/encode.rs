//! Chunk encoding: one fmt-0 chunk, then fmt-3 continuations (RTMP 1.0 §5.3.1).
//!
//! This is the fan-out hot path: a frame is chunked once and the bytes shared with every
//! watcher, so the encoder reserves exactly once and writes headers and payload slices straight
//! into the caller's buffer. [`payload_ranges`] is its inverse: where the payload lies in what
//! it wrote, so a frame need not be kept a second time as its bare payload.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::{MAX_CSID, MIN_CSID};

/// Timestamps at or above this value go in the extended timestamp field (RTMP 1.0 §5.3.1.3).
const EXTENDED: u32 = 0x00ff_ffff;

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn chunk_count(payload_len: usize, chunk_size: usize) -> usize {
    payload_len.div_ceil(chunk_size.max(1)).max(1)
}

/// Exactly how many bytes [`encode_message`] writes for these arguments.
pub fn encoded_len(csid: u32, timestamp: u32, payload_len: usize, chunk_size: usize) -> usize {
    let basic = basic_header_len(csid);
    let ext = if timestamp >= EXTENDED { 4 } else { 0 };
    let chunks = chunk_count(payload_len, chunk_size);
    // fmt 0: basic + 11 + ext; each continuation: basic + ext.
    payload_len + basic + 11 + ext + (chunks - 1) * (basic + ext)
}

/// The byte ranges of a message [`encode_message`] wrote with these arguments that hold its
/// payload, in order: one per chunk (one empty range for an empty payload). Concatenated they
/// are the payload; the first alone is all of it when the payload fits in one chunk.
pub fn payload_ranges(
    csid: u32,
    timestamp: u32,
    payload_len: usize,
    chunk_size: usize,
) -> impl Iterator<Item = Range<usize>> {
    let csid = csid.clamp(MIN_CSID, MAX_CSID);
    let chunk_size = chunk_size.max(1);
    let basic = basic_header_len(csid);
    let ext = if timestamp >= EXTENDED { 4 } else { 0 };
    let first_header = basic + 11 + ext;
    // Chunk i's data starts after the fmt-0 header, i full chunks and i continuation headers.
    let stride = chunk_size + basic + ext;
    (0..chunk_count(payload_len, chunk_size)).map(move |i| {
        let start = first_header + i * stride;
        let len = payload_len.saturating_sub(i * chunk_size).min(chunk_size);
        start..start + len
    })
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    // RTMP 1.0 §5.3.1.1: 1-, 2- or 3-byte forms.
    let fmt = fmt << 6;
    match csid {
        0..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let rel = csid - 64;
            out.put_u8(fmt | 1);
            out.put_u8((rel & 0xff) as u8);
            out.put_u8(((rel >> 8) & 0xff) as u8);
        }
    }
}

/// Appends `payload` as one RTMP message: a fmt-0 chunk, then fmt-3 chunks of at most
/// `chunk_size` payload bytes each. When `timestamp >= 0xFFFFFF` every chunk carries the
/// extended timestamp, continuations included (RTMP 1.0 §5.3.1.3, as Flash and ffmpeg expect).
///
/// Preconditions (caller bugs, not wire input): `csid` in `2..=65599`, `payload.len()` at most
/// `0xFFFFFF`, `chunk_size >= 1`. Violations are caught by debug assertions; release builds
/// clamp rather than panic.
pub fn encode_message(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    message_stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    debug_assert!((MIN_CSID..=MAX_CSID).contains(&csid), "csid {csid}");
    debug_assert!(payload.len() <= EXTENDED as usize, "payload too long");
    debug_assert!(chunk_size >= 1, "chunk size 0");
    let csid = csid.clamp(MIN_CSID, MAX_CSID);
    let chunk_size = chunk_size.max(1);
    out.reserve(encoded_len(csid, timestamp, payload.len(), chunk_size));

    let extended = timestamp >= EXTENDED;
    put_basic_header(out, 0, csid);
    // RTMP 1.0 §5.3.1.2.1: timestamp (3), length (3), type (1), stream id (4, little endian).
    let ts_field = if extended { EXTENDED } else { timestamp };
    out.put_uint(u64::from(ts_field), 3);
    out.put_uint(payload.len().min(EXTENDED as usize) as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(message_stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut chunks = payload.chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_output_for_all_header_forms() {
        for csid in [2, 63, 64, 319, 320, 65599] {
            for ts in [0, 0xff_fffe, 0xff_ffff, u32::MAX] {
                for len in [0, 1, 127, 128, 129, 1000] {
                    let mut out = BytesMut::new();
                    let payload = vec![7u8; len];
                    encode_message(&mut out, csid, ts, 9, 1, &payload, 128);
                    assert_eq!(out.len(), encoded_len(csid, ts, len, 128));
                }
            }
        }
    }

    #[test]
    fn payload_ranges_recover_the_payload_for_all_header_forms() {
        for csid in [2, 6, 63, 64, 319, 320, 65599] {
            for ts in [0, 0xff_fffe, 0xff_ffff, u32::MAX] {
                for len in [0, 1, 127, 128, 129, 256, 1000] {
                    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                    let mut out = BytesMut::new();
                    encode_message(&mut out, csid, ts, 9, 1, &payload, 128);
                    let ranges: Vec<_> = payload_ranges(csid, ts, len, 128).collect();
                    assert_eq!(
                        ranges.len(),
                        len.div_ceil(128).max(1),
                        "one range per chunk"
                    );
                    let joined: Vec<u8> = ranges
                        .iter()
                        .flat_map(|r| out[r.clone()].to_vec())
                        .collect();
                    assert_eq!(joined, payload, "csid {csid} ts {ts:#x} len {len}");
                    assert_eq!(
                        ranges.last().map(|r| r.end),
                        Some(out.len()),
                        "ends the message"
                    );
                }
            }
        }
    }

    #[test]
    fn small_message_is_one_fmt0_chunk() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 3, 0x010203, 20, 0x01020304, b"abc", 128);
        assert_eq!(
            &out[..],
            &[
                0x03, 0x01, 0x02, 0x03, 0, 0, 3, 20, 0x04, 0x03, 0x02, 0x01, b'a', b'b', b'c'
            ]
        );
    }

    #[test]
    fn extended_timestamp_is_repeated_in_continuations() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 4, 0x0100_0000, 9, 1, &[0u8; 3], 2);
        assert_eq!(
            &out[..],
            &[
                0x04, 0xff, 0xff, 0xff, 0, 0, 3, 9, 1, 0, 0, 0, 1, 0, 0, 0, 0,
                0, // first chunk
                0xc4, 1, 0, 0, 0, 0, // fmt 3 + extended timestamp + 1 byte
            ]
        );
    }
}
