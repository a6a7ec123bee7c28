//! Cuts an H.264 Annex-B byte stream into relay chunks whose boundaries fall on join points.
//!
//! An fstream broadcaster sends raw Annex-B in reads cut anywhere. The fan-out starts a new
//! watcher at the newest chunk marked as a join point, so that chunk must *begin* exactly where
//! a decoder can start (the AUD/SPS opening an SPS→IDR run, see [`JoinPoint`]). The chunker
//! therefore splits each read at every confirmed join point, and holds back the bytes of an
//! unconfirmed candidate (an SPS whose IDR has not arrived yet) until it is confirmed or
//! cancelled — normally a few hundred bytes, for one read. A candidate held past
//! `max_held` bytes is given up and relayed as ordinary bytes, so memory stays bounded whatever
//! the peer sends. The concatenation of the emitted chunks is always exactly the input.
//!
//! Zero-copy: chunks are split off the caller's buffer. No IO, no clock.

use bytes::{Bytes, BytesMut};

use super::annexb::JoinPoint;

/// One relay chunk and whether a watcher may start decoding at its first byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Bytes,
    pub join_point: bool,
}

/// See the module doc.
#[derive(Debug)]
pub struct AnnexBChunker {
    join: JoinPoint,
    /// Bytes received but not yet emitted; they start at absolute offset `held_start`.
    held: BytesMut,
    held_start: u64,
    /// The held bytes begin at a confirmed join point.
    held_is_join: bool,
    max_held: usize,
}

impl AnnexBChunker {
    /// A chunker that holds back at most `max_held` bytes for an unconfirmed join point.
    pub fn new(max_held: usize) -> Self {
        AnnexBChunker {
            join: JoinPoint::new(),
            held: BytesMut::new(),
            held_start: 0,
            held_is_join: false,
            max_held,
        }
    }

    /// Bytes held back, waiting for a candidate join point to be confirmed or cancelled.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Feeds the next bytes of the stream and appends the chunks now ready to `out`.
    pub fn push(&mut self, data: BytesMut, out: &mut Vec<Chunk>) {
        let mut joins: Vec<u64> = Vec::new();
        self.join.push(&data, |offset| joins.push(offset));
        self.held.unsplit(data);
        for offset in joins {
            // A join point inside bytes already given up on (past `max_held`) cannot be cut.
            let Some(index) = offset
                .checked_sub(self.held_start)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i <= self.held.len())
            else {
                continue;
            };
            self.emit(index, out);
            self.held_is_join = true;
        }
        // Hold back from a possible join point, and any start code cut by the read boundary (its
        // NAL header, still unseen, may be an SPS whose join point starts at those zeros).
        let ready = match self.join.hold_from() {
            Some(candidate) if candidate >= self.held_start => {
                usize::try_from(candidate - self.held_start).unwrap_or(usize::MAX)
            }
            _ => self.held.len() - partial_start_code_len(&self.held),
        }
        .min(self.held.len());
        let ready = if self.held.len() - ready > self.max_held {
            self.held.len()
        } else {
            ready
        };
        self.emit(ready, out);
    }

    /// Emits whatever is still held (end of stream).
    pub fn finish(&mut self, out: &mut Vec<Chunk>) {
        self.emit(self.held.len(), out);
    }

    fn emit(&mut self, len: usize, out: &mut Vec<Chunk>) {
        if len == 0 {
            return;
        }
        let bytes = self.held.split_to(len).freeze();
        self.held_start += len as u64;
        out.push(Chunk {
            bytes,
            join_point: std::mem::take(&mut self.held_is_join),
        });
    }
}

/// Length of the suffix of `bytes` that may be the beginning of a start code whose NAL header
/// has not arrived: up to three zeros, or `00 00 01` / `00 00 00 01`.
fn partial_start_code_len(bytes: &[u8]) -> usize {
    let tail = &bytes[bytes.len().saturating_sub(4)..];
    if let [.., 0, 0, 1] = tail {
        return if tail.len() == 4 && tail[0] == 0 {
            4
        } else {
            3
        };
    }
    tail.iter().rev().take(3).take_while(|&&b| b == 0).count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0x00, 0x1e];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce];
    const IDR: &[u8] = &[0, 0, 1, 0x65, 0x88, 0x84, 0x21];
    const SLICE: &[u8] = &[0, 0, 1, 0x41, 0x9a, 0x02];

    fn gop() -> Vec<u8> {
        [AUD, SPS, PPS, IDR, AUD, SLICE, AUD, SLICE].concat()
    }

    fn run(stream: &[u8], split: usize) -> Vec<Chunk> {
        let mut chunker = AnnexBChunker::new(1 << 20);
        let mut out = Vec::new();
        for piece in stream.chunks(split.max(1)) {
            chunker.push(BytesMut::from(piece), &mut out);
        }
        chunker.finish(&mut out);
        out
    }

    #[test]
    fn join_chunks_begin_at_the_aud_before_each_sps() {
        let stream = [gop(), gop(), gop()].concat();
        let chunks = run(&stream, 5);
        let joins: Vec<&Chunk> = chunks.iter().filter(|c| c.join_point).collect();
        assert_eq!(joins.len(), 3);
        for chunk in joins {
            assert!(chunk.bytes.starts_with(AUD), "{:?}", chunk.bytes);
        }
    }

    #[test]
    fn partial_start_codes_are_recognised() {
        assert_eq!(partial_start_code_len(&[0x55, 0, 0, 0, 1]), 4);
        assert_eq!(partial_start_code_len(&[0x55, 0, 0, 1]), 3);
        assert_eq!(partial_start_code_len(&[0x55, 0, 0]), 2);
        assert_eq!(partial_start_code_len(&[0, 0, 0, 0, 0]), 3);
        assert_eq!(partial_start_code_len(&[0x55, 1]), 0);
        assert_eq!(partial_start_code_len(&[]), 0);
    }

    #[test]
    fn join_points_survive_every_read_boundary() {
        let stream = [gop(), [SPS, PPS, IDR, SLICE].concat(), gop()].concat();
        for split in 1..stream.len() {
            let chunks = run(&stream, split);
            let joins = chunks.iter().filter(|c| c.join_point).count();
            assert_eq!(joins, 3, "split {split}");
        }
    }

    #[test]
    fn a_candidate_past_the_hold_limit_is_released() {
        let mut chunker = AnnexBChunker::new(16);
        let mut out = Vec::new();
        chunker.push(BytesMut::from(SPS), &mut out);
        chunker.push(BytesMut::from(&[0x11u8; 64][..]), &mut out);
        assert_eq!(chunker.held(), 0);
        let total: usize = out.iter().map(|c| c.bytes.len()).sum();
        assert_eq!(total, SPS.len() + 64);
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_the_input(split in 1usize..40, gops in 1usize..4, noise in proptest::collection::vec(0x10u8.., 0..64)) {
            let mut stream = noise;
            for _ in 0..gops {
                stream.extend_from_slice(&gop());
            }
            let chunks = run(&stream, split);
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.iter().copied()).collect();
            prop_assert_eq!(joined, stream);
            prop_assert!(chunks.iter().filter(|c| c.join_point).all(|c| c.bytes.starts_with(AUD)));
        }
    }
}
