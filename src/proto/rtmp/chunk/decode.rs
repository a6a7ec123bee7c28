//! Chunk decoding and message reassembly with per-chunk-stream state (RTMP 1.0 §5.3).

use bytes::{Buf, Bytes, BytesMut};

use super::{ChunkError, ChunkLimits, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, Message};

const EXTENDED: u32 = 0x00ff_ffff;
const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_ABORT: u8 = 2;

/// Header fields remembered per chunk stream, so fmt 1–3 chunks can omit them.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// Absolute timestamp of the current (or last) message.
    timestamp: u32,
    /// The delta a fmt-3 chunk that starts a new message adds (RTMP 1.0 §5.3.1.2.4).
    delta: u32,
    /// The last fmt 0–2 header had an extended timestamp, so fmt-3 chunks carry one too.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being reassembled, if one is incomplete.
    partial: Option<BytesMut>,
}

/// Reassembles RTMP messages from chunks. See [`ChunkDecoder::decode`].
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    pending_bytes: u64,
}

enum Step {
    NeedMore,
    Partial,
    Complete(Message),
}

fn be24(b: &[u8]) -> u32 {
    b.iter()
        .take(3)
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

fn be32(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

fn le32(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .rev()
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies a chunk size announced by the peer (RTMP 1.0 §5.4.1). Called by `decode` for
    /// Set Chunk Size messages; public for drivers that learn it out of band.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        if size > self.limits.max_chunk_size {
            return Err(ChunkError::ChunkSizeTooLarge {
                size,
                max: self.limits.max_chunk_size,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Decodes one message from the front of `buf`, consuming the chunks it reads.
    /// `Ok(None)` means more bytes are needed: chunks of incomplete messages are consumed and
    /// kept, a partial chunk is left in `buf`. Set Chunk Size and Abort are applied here
    /// before they are returned.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.decode_chunk(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Partial => continue,
                Step::Complete(msg) => {
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    fn apply_control(&mut self, msg: &Message) -> Result<(), ChunkError> {
        match msg.type_id {
            // RTMP 1.0 §5.4.1: 31-bit chunk size, top bit must be zero.
            TYPE_SET_CHUNK_SIZE => {
                let Some(b) = msg.payload.get(..4) else {
                    return Err(ChunkError::MalformedControl {
                        type_id: msg.type_id,
                        len: msg.payload.len(),
                    });
                };
                self.set_chunk_size(be32(b))
            }
            // RTMP 1.0 §5.4.2: discard the partial message on the named chunk stream.
            TYPE_ABORT => {
                let Some(b) = msg.payload.get(..4) else {
                    return Err(ChunkError::MalformedControl {
                        type_id: msg.type_id,
                        len: msg.payload.len(),
                    });
                };
                let csid = be32(b);
                if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid)
                    && s.partial.take().is_some()
                {
                    self.pending_bytes = self.pending_bytes.saturating_sub(u64::from(s.length));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn decode_chunk(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        // RTMP 1.0 §5.3.1.1: basic header, 1 to 3 bytes.
        let Some(&b0) = buf.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, basic_len) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(Step::NeedMore),
            },
            c => (u32::from(c), 1),
        };
        // RTMP 1.0 §5.3.1.2: message header of 11, 7, 3 or 0 bytes by fmt.
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let prev = idx.and_then(|i| self.streams.get(i));
        if prev.is_none() && fmt != 0 {
            return Err(ChunkError::UnopenedChunkStream { csid, fmt });
        }
        let Some(header) = buf.get(basic_len..basic_len + header_len) else {
            return Ok(Step::NeedMore);
        };
        let ts_field = if fmt <= 2 { be24(header) } else { 0 };
        // RTMP 1.0 §5.3.1.3: extended timestamp when the field is 0xFFFFFF; a fmt-3 chunk
        // repeats it when the last fmt 0–2 header on its chunk stream had one.
        let extended = match (fmt, prev) {
            (3, Some(p)) => p.extended,
            _ => ts_field == EXTENDED,
        };
        let ext_at = basic_len + header_len;
        let ext_len = if extended { 4 } else { 0 };
        let ext_value = if extended {
            match buf.get(ext_at..ext_at + 4) {
                Some(b) => be32(b),
                None => return Ok(Step::NeedMore),
            }
        } else {
            ts_field
        };
        let in_progress = prev.is_some_and(|p| p.partial.is_some());
        if in_progress && fmt != 3 {
            return Err(ChunkError::HeaderInsideMessage { csid });
        }

        let (length, type_id, stream_id) = match (fmt, prev) {
            (0, _) => (
                be24(header.get(3..).unwrap_or_default()),
                header.get(6).copied().unwrap_or_default(),
                le32(header.get(7..).unwrap_or_default()),
            ),
            (1, Some(p)) => (
                be24(header.get(3..).unwrap_or_default()),
                header.get(6).copied().unwrap_or_default(),
                p.stream_id,
            ),
            (_, Some(p)) => (p.length, p.type_id, p.stream_id),
            (_, None) => return Err(ChunkError::UnopenedChunkStream { csid, fmt }),
        };
        let (timestamp, delta) = match (fmt, prev) {
            _ if in_progress => prev.map_or((0, 0), |p| (p.timestamp, p.delta)),
            (0, _) => (ext_value, ext_value),
            (1 | 2, Some(p)) => (p.timestamp.wrapping_add(ext_value), ext_value),
            (_, Some(p)) => (p.timestamp.wrapping_add(p.delta), p.delta),
            (_, None) => return Err(ChunkError::UnopenedChunkStream { csid, fmt }),
        };

        let received = match prev.and_then(|p| p.partial.as_ref()) {
            Some(partial) => partial.len(),
            None => {
                if length > self.limits.max_message_len {
                    return Err(ChunkError::MessageTooLarge {
                        len: length,
                        max: self.limits.max_message_len,
                    });
                }
                0
            }
        };
        let remaining = (length as usize).saturating_sub(received);
        let payload_len = remaining.min(self.chunk_size as usize);
        let total = ext_at + ext_len + payload_len;
        if buf.len() < total {
            return Ok(Step::NeedMore);
        }

        // Commit: the whole chunk is present.
        let idx = match idx {
            Some(i) => i,
            None => {
                if self.streams.len() >= self.limits.max_chunk_streams {
                    return Err(ChunkError::TooManyChunkStreams {
                        max: self.limits.max_chunk_streams,
                    });
                }
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    delta: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let Some(stream) = self.streams.get_mut(idx) else {
            return Ok(Step::NeedMore);
        };
        if !in_progress && payload_len < remaining {
            let pending = self.pending_bytes.saturating_add(u64::from(length));
            if pending > self.limits.max_pending_bytes {
                return Err(ChunkError::TooManyPendingBytes {
                    max: self.limits.max_pending_bytes,
                });
            }
            self.pending_bytes = pending;
        }
        if fmt != 3 {
            stream.extended = extended;
        }
        stream.timestamp = timestamp;
        stream.delta = delta;
        stream.length = length;
        stream.type_id = type_id;
        stream.stream_id = stream_id;
        buf.advance(ext_at + ext_len);
        let chunk = buf.split_to(payload_len);

        let payload = match stream.partial.take() {
            // Single-chunk message: copied into its own allocation. A slice of the read buffer
            // would pin the whole buffer (the server reads up to 64 KiB at a time) for as long
            // as the frame lives in the GOP cache: a 300-byte audio frame kept 64 KiB alive, and
            // a 2.6 Mbit/s stream's cache pinned 11 MB instead of 1.3. One copy of at most a
            // chunk per ingested message; watchers still share the result without copies.
            None if payload_len == remaining => Bytes::copy_from_slice(&chunk),
            None => {
                let mut partial = BytesMut::with_capacity(length as usize);
                partial.extend_from_slice(&chunk);
                stream.partial = Some(partial);
                return Ok(Step::Partial);
            }
            Some(mut partial) => {
                partial.extend_from_slice(&chunk);
                if partial.len() < length as usize {
                    stream.partial = Some(partial);
                    return Ok(Step::Partial);
                }
                self.pending_bytes = self.pending_bytes.saturating_sub(u64::from(length));
                partial.freeze()
            }
        };
        Ok(Step::Complete(Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::encode_message;
    use super::*;
    use proptest::prelude::*;

    fn decoder() -> ChunkDecoder {
        ChunkDecoder::new(ChunkLimits::default())
    }

    fn decode_all(d: &mut ChunkDecoder, bytes: &[u8]) -> Vec<Message> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf).unwrap() {
            out.push(m);
        }
        assert!(buf.is_empty(), "{} bytes left", buf.len());
        out
    }

    #[test]
    fn interleaved_chunk_streams_reassemble() {
        // Message A on csid 4 and B on csid 6, 256 bytes each at chunk size 128, interleaved.
        let a = vec![0xaa; 256];
        let b = vec![0xbb; 256];
        let mut enc_a = BytesMut::new();
        let mut enc_b = BytesMut::new();
        encode_message(&mut enc_a, 4, 10, 8, 1, &a, 128);
        encode_message(&mut enc_b, 6, 20, 9, 1, &b, 128);
        // fmt0 chunk = 1 + 11 + 128 = 140 bytes; continuation = 1 + 128.
        let mut wire = Vec::new();
        wire.extend_from_slice(&enc_a[..140]);
        wire.extend_from_slice(&enc_b[..140]);
        wire.extend_from_slice(&enc_a[140..]);
        wire.extend_from_slice(&enc_b[140..]);
        let msgs = decode_all(&mut decoder(), &wire);
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            (msgs[0].csid, msgs[0].timestamp, &msgs[0].payload[..]),
            (4, 10, &a[..])
        );
        assert_eq!(
            (msgs[1].csid, msgs[1].timestamp, &msgs[1].payload[..]),
            (6, 20, &b[..])
        );
    }

    #[test]
    fn header_forms_apply_deltas() {
        // fmt 0 ts 1000, fmt 1 delta 40 (new length/type), fmt 2 delta 33, fmt 3 reuses 33.
        let wire = [
            &[0x05, 0x00, 0x03, 0xe8, 0, 0, 2, 8, 1, 0, 0, 0, 1, 2][..],
            &[0x45, 0, 0, 40, 0, 0, 1, 9, 3],
            &[0x85, 0, 0, 33, 4],
            &[0xc5, 5],
        ]
        .concat();
        let msgs = decode_all(&mut decoder(), &wire);
        let ts: Vec<_> = msgs
            .iter()
            .map(|m| (m.timestamp, m.type_id, m.stream_id))
            .collect();
        assert_eq!(ts, [(1000, 8, 1), (1040, 9, 1), (1073, 9, 1), (1106, 9, 1)]);
        assert_eq!(&msgs[3].payload[..], &[5]);
    }

    #[test]
    fn fmt3_after_fmt0_repeats_the_absolute_timestamp_as_delta() {
        // RTMP 1.0 §5.3.1.2.4: the delta of a type-3 chunk after type 0 is type 0's timestamp.
        let wire = [&[0x05, 0, 0, 10, 0, 0, 1, 8, 1, 0, 0, 0, 7][..], &[0xc5, 8]].concat();
        let msgs = decode_all(&mut decoder(), &wire);
        assert_eq!(msgs[1].timestamp, 20);
    }

    #[test]
    fn extended_timestamp_in_type3_continuation_is_consumed() {
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 4, 0x0123_4567, 9, 1, &[1, 2, 3, 4, 5], 2);
        let mut d = decoder();
        d.set_chunk_size(2).unwrap();
        let msgs = decode_all(&mut d, &wire);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, 0x0123_4567);
        assert_eq!(&msgs[0].payload[..], &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn type3_new_message_after_extended_header_carries_extended_field() {
        // fmt 0 with ext ts 0x01000000, then a fmt-3 chunk starting a new message: it carries
        // the 4-byte extended field too, and the delta (0x01000000) applies again.
        let wire = [
            &[
                0x04, 0xff, 0xff, 0xff, 0, 0, 1, 9, 1, 0, 0, 0, 1, 0, 0, 0, 0xaa,
            ][..],
            &[0xc4, 1, 0, 0, 0, 0xbb],
        ]
        .concat();
        let msgs = decode_all(&mut decoder(), &wire);
        assert_eq!(msgs[0].timestamp, 0x0100_0000);
        assert_eq!(msgs[1].timestamp, 0x0200_0000);
        assert_eq!(&msgs[1].payload[..], &[0xbb]);
    }

    #[test]
    fn set_chunk_size_applies_to_following_chunks() {
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 2, 0, 1, 0, &4096u32.to_be_bytes(), 128);
        encode_message(&mut wire, 4, 0, 9, 1, &[9u8; 3000], 4096);
        let mut d = decoder();
        let msgs = decode_all(&mut d, &wire);
        assert_eq!(d.chunk_size(), 4096);
        assert_eq!(msgs[1].payload.len(), 3000);
    }

    #[test]
    fn set_chunk_size_is_validated() {
        for (size, err) in [
            (0, ChunkError::InvalidChunkSize(0)),
            (0x8000_0000, ChunkError::InvalidChunkSize(0x8000_0000)),
            (
                0x7fff_ffff,
                ChunkError::ChunkSizeTooLarge {
                    size: 0x7fff_ffff,
                    max: 0xff_ffff,
                },
            ),
        ] {
            let mut wire = BytesMut::new();
            encode_message(&mut wire, 2, 0, 1, 0, &u32::to_be_bytes(size), 128);
            assert_eq!(decoder().decode(&mut wire), Err(err));
        }
    }

    #[test]
    fn abort_discards_the_partial_message() {
        let mut full = BytesMut::new();
        encode_message(&mut full, 4, 0, 9, 1, &[1u8; 200], 128);
        let mut wire = BytesMut::from(&full[..140]); // first chunk only
        encode_message(&mut wire, 2, 0, 2, 0, &4u32.to_be_bytes(), 128);
        // After the abort a fresh fmt-0 message on csid 4 is accepted.
        encode_message(&mut wire, 4, 5, 8, 1, &[2u8; 10], 128);
        let mut d = decoder();
        let msgs = decode_all(&mut d, &wire);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].type_id, 2);
        assert_eq!(&msgs[1].payload[..], &[2u8; 10]);
        assert_eq!(d.pending_bytes, 0);
    }

    #[test]
    fn fmt1_on_unopened_chunk_stream_is_an_error() {
        let mut buf = BytesMut::from(&[0x47, 0, 0, 0, 0, 0, 1, 9, 0][..]);
        assert_eq!(
            decoder().decode(&mut buf),
            Err(ChunkError::UnopenedChunkStream { csid: 7, fmt: 1 })
        );
        let mut buf = BytesMut::from(&[0xc7][..]);
        assert_eq!(
            decoder().decode(&mut buf),
            Err(ChunkError::UnopenedChunkStream { csid: 7, fmt: 3 })
        );
    }

    #[test]
    fn message_above_limit_is_rejected_from_its_header() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_len: 1000,
            ..ChunkLimits::default()
        });
        // Only the header: the error comes before any payload arrives.
        let mut buf = BytesMut::from(&[0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(ChunkError::MessageTooLarge {
                len: 0xff_ffff,
                max: 1000
            })
        );
    }

    #[test]
    fn too_many_chunk_streams_is_rejected() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_chunk_streams: 2,
            ..ChunkLimits::default()
        });
        let mut wire = BytesMut::new();
        for csid in 3..6 {
            encode_message(&mut wire, csid, 0, 8, 1, &[0], 128);
        }
        assert!(d.decode(&mut wire).unwrap().is_some());
        assert!(d.decode(&mut wire).unwrap().is_some());
        assert_eq!(
            d.decode(&mut wire),
            Err(ChunkError::TooManyChunkStreams { max: 2 })
        );
    }

    #[test]
    fn pending_bytes_across_chunk_streams_are_bounded() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_pending_bytes: 1000,
            ..ChunkLimits::default()
        });
        let mut wire = BytesMut::new();
        for csid in 3..6 {
            let mut m = BytesMut::new();
            encode_message(&mut m, csid, 0, 9, 1, &[0u8; 400], 128);
            wire.extend_from_slice(&m[..140]);
        }
        assert_eq!(
            d.decode(&mut wire),
            Err(ChunkError::TooManyPendingBytes { max: 1000 })
        );
    }

    #[test]
    fn new_header_inside_incomplete_message_is_an_error() {
        let mut m = BytesMut::new();
        encode_message(&mut m, 4, 0, 9, 1, &[0u8; 200], 128);
        let mut wire = BytesMut::from(&m[..140]);
        encode_message(&mut wire, 4, 0, 9, 1, &[0u8; 10], 128);
        assert_eq!(
            decoder().decode(&mut wire),
            Err(ChunkError::HeaderInsideMessage { csid: 4 })
        );
    }

    #[test]
    fn zero_length_message_is_delivered() {
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 3, 0, 20, 0, &[], 128);
        let msgs = decode_all(&mut decoder(), &wire);
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].payload.is_empty());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips_at_any_chunk_size_and_split(
            msgs in prop::collection::vec(
                (2u32..400, any::<u32>(), 8u8..=9, 0u32..3, prop::collection::vec(any::<u8>(), 0..700)),
                1..6,
            ),
            chunk_size in 1u32..300,
            splits in prop::collection::vec(1usize..200, 1..20),
        ) {
            let mut wire = BytesMut::new();
            encode_message(&mut wire, 2, 0, 1, 0, &chunk_size.to_be_bytes(), 128);
            for (csid, ts, ty, msid, payload) in &msgs {
                encode_message(&mut wire, *csid, *ts, *ty, *msid, payload, chunk_size as usize);
            }
            let mut d = decoder();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = splits[i % splits.len()].min(rest.len());
                i += 1;
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some(m) = d.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got.len(), msgs.len() + 1);
            for (m, (csid, ts, ty, msid, payload)) in got[1..].iter().zip(&msgs) {
                prop_assert_eq!(m.csid, *csid);
                prop_assert_eq!(m.timestamp, *ts);
                prop_assert_eq!(m.type_id, *ty);
                prop_assert_eq!(m.stream_id, *msid);
                prop_assert_eq!(&m.payload[..], &payload[..]);
            }
        }
    }
}
