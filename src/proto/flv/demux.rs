//! Streaming FLV demuxer: bytes in (any split), [`Frame`]s out, payloads sharing the input buffer.
//!
//! Layout parsed (FLV v10.1 §E.2–§E.4.1): the header (`FLV`, version 1, flags, DataOffset), then
//! `PreviousTagSize0`, then tags each followed by their PreviousTagSize. Policy:
//! - audio (8), video (9) and script data (18) tags become frames; other tag types are skipped
//!   byte by byte without buffering them and counted ([`FlvDemuxer::skipped_tags`]);
//! - a tag with the Filter bit (encryption) is an error: its body is not a media payload;
//! - media tags larger than [`Limits::max_tag_size`] are an error, checked from the 11-byte header
//!   before the body is awaited, so the caller never buffers more than the limit;
//! - PreviousTagSize is skipped, not enforced (muxers get it wrong); mismatches are counted;
//! - StreamID (always 0 by spec) and the two reserved bits of the tag type byte are ignored.
//!
//! After an error the demuxer stays failed and returns the same error: the stream cannot be
//! resynchronised.

use bytes::{Buf, Bytes, BytesMut};

use super::{FlvError, HEADER_LEN, PREVIOUS_TAG_SIZE_LEN, SIGNATURE, TAG_HEADER_LEN};
use crate::media::{Frame, MediaKind};

/// Tag bodies smaller than this are copied out of the input rather than sliced from it.
pub const COPY_BELOW: usize = 32 * 1024;

/// Bounds applied to the peer's length fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest media tag body accepted, in bytes. Default 8 MiB (a 4K keyframe is 1–2 MB).
    pub max_tag_size: u32,
    /// Largest FLV header DataOffset accepted (9 for version 1; extra bytes are skipped).
    pub max_header_len: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tag_size: 8 * 1024 * 1024,
            max_header_len: 1024,
        }
    }
}

/// The FLV file header's flags. // FLV v10.1 §E.2
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    pub has_audio: bool,
    pub has_video: bool,
}

#[derive(Debug)]
enum State {
    ExpectHeader,
    SkipHeaderRest(u32),
    ExpectPreviousTagSize,
    ExpectTag,
    SkipTagBody(u32),
    Failed(FlvError),
}

enum TagOutcome {
    Frame(Frame),
    NeedMore,
    Skipping,
}

/// The streaming demuxer. Feed it the receive buffer; see the module doc for the policy.
#[derive(Debug)]
pub struct FlvDemuxer {
    limits: Limits,
    state: State,
    header: Option<FlvHeader>,
    last_tag_size: u32,
    skipped_tags: u64,
    previous_tag_size_mismatches: u64,
}

impl Default for FlvDemuxer {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl FlvDemuxer {
    pub fn new(limits: Limits) -> Self {
        FlvDemuxer {
            limits,
            state: State::ExpectHeader,
            header: None,
            last_tag_size: 0,
            skipped_tags: 0,
            previous_tag_size_mismatches: 0,
        }
    }

    /// The header's flags, once it has been read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Tags of unknown type skipped so far.
    pub fn skipped_tags(&self) -> u64 {
        self.skipped_tags
    }

    /// PreviousTagSize fields that disagreed with the tag before them.
    pub fn previous_tag_size_mismatches(&self) -> u64 {
        self.previous_tag_size_mismatches
    }

    /// Decodes the next frame from the front of `buf`, consuming what it parsed. `Ok(None)` means
    /// "need more bytes"; the bytes of an incomplete tag are left in `buf`. The frame's payload is
    /// split off `buf` (no copy), or copied when smaller than [`COPY_BELOW`] (so a small frame
    /// does not keep a large read buffer alive).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FlvError> {
        match self.step_until_frame(buf) {
            Ok(frame) => Ok(frame),
            Err(err) => {
                self.state = State::Failed(err.clone());
                Err(err)
            }
        }
    }

    fn step_until_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FlvError> {
        loop {
            match self.state {
                State::Failed(ref err) => return Err(err.clone()),
                State::ExpectHeader => {
                    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
                        return Ok(None);
                    };
                    self.read_header(header)?;
                    buf.advance(HEADER_LEN);
                }
                State::SkipHeaderRest(n) | State::SkipTagBody(n) => {
                    let skip = n.min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
                    buf.advance(skip as usize);
                    let left = n - skip;
                    if left > 0 {
                        self.state = match self.state {
                            State::SkipHeaderRest(_) => State::SkipHeaderRest(left),
                            _ => State::SkipTagBody(left),
                        };
                        return Ok(None);
                    }
                    self.state = State::ExpectPreviousTagSize;
                }
                State::ExpectPreviousTagSize => {
                    let Some(field) = buf.first_chunk::<PREVIOUS_TAG_SIZE_LEN>() else {
                        return Ok(None);
                    };
                    // FLV v10.1 §E.3: size of the previous tag including its 11-byte header.
                    if u32::from_be_bytes(*field) != self.last_tag_size {
                        self.previous_tag_size_mismatches += 1;
                    }
                    buf.advance(PREVIOUS_TAG_SIZE_LEN);
                    self.state = State::ExpectTag;
                }
                State::ExpectTag => match self.read_tag(buf)? {
                    TagOutcome::Frame(frame) => return Ok(Some(frame)),
                    TagOutcome::NeedMore => return Ok(None),
                    TagOutcome::Skipping => {}
                },
            }
        }
    }

    /// FLV v10.1 §E.2: Signature "FLV", Version 1, TypeFlags, DataOffset (UI32).
    fn read_header(&mut self, header: &[u8; HEADER_LEN]) -> Result<(), FlvError> {
        let [s0, s1, s2, s3, flags, o0, o1, o2, o3] = *header;
        if [s0, s1, s2, s3] != SIGNATURE {
            return Err(FlvError::NotFlv {
                found: [s0, s1, s2, s3],
            });
        }
        let len = u32::from_be_bytes([o0, o1, o2, o3]);
        if len < HEADER_LEN as u32 || len > self.limits.max_header_len {
            return Err(FlvError::BadHeaderLength {
                len,
                max: self.limits.max_header_len,
            });
        }
        self.header = Some(FlvHeader {
            has_audio: flags & 0x04 != 0,
            has_video: flags & 0x01 != 0,
        });
        self.last_tag_size = 0;
        self.state = State::SkipHeaderRest(len - HEADER_LEN as u32);
        Ok(())
    }

    /// FLV v10.1 §E.4.1: Reserved(2) Filter(1) TagType(5), DataSize UI24, Timestamp UI24,
    /// TimestampExtended UI8, StreamID UI24, then DataSize bytes of body.
    fn read_tag(&mut self, buf: &mut BytesMut) -> Result<TagOutcome, FlvError> {
        let Some(header) = buf.first_chunk::<TAG_HEADER_LEN>() else {
            return Ok(TagOutcome::NeedMore);
        };
        let [b0, s2, s1, s0, t2, t1, t0, t3, _, _, _] = *header;
        let tag_type = b0 & 0x1f;
        if b0 & 0x20 != 0 {
            return Err(FlvError::FilteredTag { tag_type });
        }
        let size = u32::from_be_bytes([0, s2, s1, s0]);
        let timestamp = u32::from_be_bytes([t3, t2, t1, t0]);
        self.last_tag_size = size + TAG_HEADER_LEN as u32;
        let Some(kind) = MediaKind::from_type_id(tag_type) else {
            self.skipped_tags += 1;
            buf.advance(TAG_HEADER_LEN);
            self.state = State::SkipTagBody(size);
            return Ok(TagOutcome::Skipping);
        };
        if size > self.limits.max_tag_size {
            return Err(FlvError::TagTooLarge {
                len: size,
                max: self.limits.max_tag_size,
            });
        }
        // size <= 0xff_ffff, so it fits usize on every supported target.
        let body_len = size as usize;
        if buf.len() < TAG_HEADER_LEN + body_len {
            return Ok(TagOutcome::NeedMore);
        }
        buf.advance(TAG_HEADER_LEN);
        let payload = if body_len < COPY_BELOW {
            // A small tag gets its own allocation: a slice would pin the whole read buffer
            // (up to 64 KiB) for as long as the frame stays in the GOP cache.
            let payload = Bytes::copy_from_slice(buf.get(..body_len).unwrap_or_default());
            buf.advance(body_len);
            payload
        } else {
            buf.split_to(body_len).freeze()
        };
        self.state = State::ExpectPreviousTagSize;
        Ok(TagOutcome::Frame(Frame::new(kind, timestamp, payload)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::{BufMut, Bytes};
    use proptest::prelude::*;

    use super::*;
    use crate::proto::flv::{file_header, write_tag};

    fn stream_of(frames: &[Frame]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(&file_header(true, true));
        for frame in frames {
            write_tag(&mut out, frame).unwrap();
        }
        out.to_vec()
    }

    /// Feeds `bytes` in pieces of the given sizes (cycled), draining frames after each piece.
    fn demux_in_pieces(bytes: &[u8], sizes: &[usize]) -> Result<Vec<Frame>, FlvError> {
        let mut demuxer = FlvDemuxer::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut rest = bytes;
        let mut sizes = sizes.iter().copied().cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
            buf.put_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = demuxer.decode(&mut buf)? {
                frames.push(frame);
            }
        }
        if !buf.is_empty() {
            // A complete stream leaves nothing behind; report leftovers as a fake frame count.
            frames.push(Frame::new(MediaKind::Script, u32::MAX, buf.freeze()));
        }
        Ok(frames)
    }

    fn video(ts: u32, len: usize) -> Frame {
        let mut payload = vec![0x27, 1, 0, 0, 0];
        payload.resize(len.max(5), 0xab);
        Frame::new(MediaKind::Video, ts, Bytes::from(payload))
    }

    #[test]
    fn extended_timestamps_survive() {
        let frames = [
            video(0xff_ffff, 9),
            video(0x0100_0000, 9),
            video(u32::MAX, 9),
        ];
        let got = demux_in_pieces(&stream_of(&frames), &[7]).unwrap();
        assert_eq!(got, frames);
    }

    #[test]
    fn large_payloads_share_the_input_buffer_and_small_ones_are_copied_out() {
        let bytes = stream_of(&[video(1, COPY_BELOW), video(2, 100)]);
        let mut buf = BytesMut::from(&bytes[..]);
        let base = buf.as_ptr() as usize;
        let end = base + buf.len();
        let mut demuxer = FlvDemuxer::default();
        let large = demuxer.decode(&mut buf).unwrap().unwrap();
        assert_eq!(large.payload.as_ptr() as usize, base + 13 + 11);
        let small = demuxer.decode(&mut buf).unwrap().unwrap();
        let at = small.payload.as_ptr() as usize;
        assert!(
            !(base..end).contains(&at),
            "a small frame must not pin the input"
        );
    }

    #[test]
    fn non_flv_is_rejected() {
        let mut demuxer = FlvDemuxer::default();
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let err = FlvError::NotFlv { found: *b"GET " };
        assert_eq!(demuxer.decode(&mut buf), Err(err.clone()));
        // Stays failed.
        assert_eq!(demuxer.decode(&mut buf), Err(err));
        let mut v2 = BytesMut::from(&b"FLV\x02\x05\0\0\0\x09"[..]);
        assert!(matches!(
            FlvDemuxer::default().decode(&mut v2),
            Err(FlvError::NotFlv { .. })
        ));
    }

    #[test]
    fn bad_header_length_is_rejected() {
        for len in [0u32, 8, 1025, u32::MAX] {
            let mut buf = BytesMut::from(&b"FLV\x01\x05"[..]);
            buf.put_u32(len);
            assert_eq!(
                FlvDemuxer::default().decode(&mut buf),
                Err(FlvError::BadHeaderLength { len, max: 1024 })
            );
        }
    }

    #[test]
    fn longer_header_is_skipped() {
        let mut bytes = b"FLV\x01\x01\0\0\0\x0cXYZ\0\0\0\0".to_vec();
        let frame = video(5, 20);
        let mut tag = BytesMut::new();
        write_tag(&mut tag, &frame).unwrap();
        bytes.extend_from_slice(&tag);
        assert_eq!(demux_in_pieces(&bytes, &[1]).unwrap(), vec![frame]);
    }

    #[test]
    fn oversized_tag_is_rejected_from_its_header() {
        let limits = Limits {
            max_tag_size: 100,
            ..Limits::default()
        };
        let mut demuxer = FlvDemuxer::new(limits);
        let mut buf = BytesMut::from(&file_header(true, true)[..]);
        // Header of a 101-byte video tag, body not sent: refused without waiting for it.
        buf.put_slice(&[9, 0, 0, 101, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            demuxer.decode(&mut buf),
            Err(FlvError::TagTooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn filtered_tag_is_an_error() {
        let mut buf = BytesMut::from(&file_header(true, true)[..]);
        buf.put_slice(&[0x20 | 9, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x17]);
        assert_eq!(
            FlvDemuxer::default().decode(&mut buf),
            Err(FlvError::FilteredTag { tag_type: 9 })
        );
    }

    #[test]
    fn unknown_tags_are_skipped_and_counted() {
        let a = video(1, 10);
        let b = video(2, 12);
        let mut bytes = stream_of(std::slice::from_ref(&a));
        // A tag of type 15 with a 3-byte body, its PreviousTagSize, then a normal tag.
        bytes.extend_from_slice(&[15, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14]);
        let mut tail = BytesMut::new();
        write_tag(&mut tail, &b).unwrap();
        bytes.extend_from_slice(&tail);
        for piece in [1, 2, 5, 1000] {
            let mut demuxer = FlvDemuxer::default();
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for chunk in bytes.chunks(piece) {
                buf.put_slice(chunk);
                while let Some(f) = demuxer.decode(&mut buf).unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(frames, vec![a.clone(), b.clone()]);
            assert_eq!(demuxer.skipped_tags(), 1);
            assert_eq!(demuxer.previous_tag_size_mismatches(), 0);
        }
    }

    #[test]
    fn wrong_previous_tag_size_is_counted_not_fatal() {
        let mut bytes = stream_of(&[video(1, 10), video(2, 10)]);
        let first_trailer = 13 + 11 + 10;
        bytes[first_trailer + 3] ^= 0xff;
        let mut demuxer = FlvDemuxer::default();
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(demuxer.decode(&mut buf).unwrap().is_some());
        assert!(demuxer.decode(&mut buf).unwrap().is_some());
        assert_eq!(demuxer.previous_tag_size_mismatches(), 1);
        assert_eq!(
            demuxer.header(),
            Some(FlvHeader {
                has_audio: true,
                has_video: true
            })
        );
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            prop_oneof![
                Just(MediaKind::Audio),
                Just(MediaKind::Video),
                Just(MediaKind::Script)
            ],
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, ts, payload)| Frame::new(kind, ts, Bytes::from(payload)))
    }

    proptest! {
        #[test]
        fn write_then_demux_round_trips_at_any_split(
            frames in proptest::collection::vec(arb_frame(), 0..20),
            sizes in proptest::collection::vec(1usize..80, 1..10),
        ) {
            let got = demux_in_pieces(&stream_of(&frames), &sizes).unwrap();
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut input = b"FLV\x01\x05\0\0\0\x09".to_vec();
            input.extend_from_slice(&bytes);
            let _ = demux_in_pieces(&input, &[3]);
        }
    }
}

/// libFuzzer harness (`fuzz/fuzz_targets/flv_demux.rs`): demuxes `data` (after a 1-byte piece
/// size) whole and in pieces and checks both agree, and that frames re-mux to the same frames.
#[cfg(fuzzing)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub fn fuzz_demux(data: &[u8]) {
    use bytes::BufMut;
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_tag_size: 4096,
        max_header_len: 64,
    };
    let run = |piece: usize| -> (Vec<Frame>, Option<FlvError>) {
        let mut demuxer = FlvDemuxer::new(limits);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in data.chunks(piece.max(1)) {
            buf.put_slice(chunk);
            loop {
                match demuxer.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(err) => return (frames, Some(err)),
                }
            }
        }
        (frames, None)
    };
    let whole = run(data.len());
    let split = run(usize::from(piece));
    assert_eq!(whole, split, "split invariance");
    let mut again = BytesMut::from(&super::file_header(true, true)[..]);
    for frame in &whole.0 {
        super::write_tag(&mut again, frame).unwrap();
    }
    let mut demuxer = FlvDemuxer::new(limits);
    for frame in &whole.0 {
        assert_eq!(demuxer.decode(&mut again).unwrap().as_ref(), Some(frame));
    }
}
