//! The RTMP chunk-stream parser for players, fed from the first byte after the handshake.
//!
//! Media messages yield their first bytes and length only; small control and command messages
//! are kept whole (up to [`MAX_CONTROL_LEN`]) because the player must answer them. RTMP 1.0 §5.3
//! (chunk format).

use super::{Head, MAX_CONTROL_LEN, ParseError, Parsed};

const MAX_CHUNK_SIZE: u32 = 0x00ff_ffff;
const MAX_CHUNK_STREAMS: usize = 64;

#[derive(Debug, Clone)]
struct ChunkStream {
    csid: u32,
    len: u32,
    type_id: u8,
    extended: bool,
    /// Bytes of the current message still to come; 0 between messages.
    left: u32,
    head: Head,
    body: Vec<u8>,
}

/// An RTMP chunk-stream parser fed from the first byte after the handshake.
#[derive(Debug)]
pub struct RtmpParser {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    hdr: Vec<u8>,
    /// (index into `streams`, bytes of the current chunk still to come).
    in_chunk: Option<(usize, u32)>,
}

impl Default for RtmpParser {
    fn default() -> Self {
        RtmpParser {
            chunk_size: 128,
            streams: Vec::new(),
            hdr: Vec::with_capacity(18),
            in_chunk: None,
        }
    }
}

impl RtmpParser {
    /// How many header bytes `hdr` needs in total, given what it holds.
    fn needed(&self) -> usize {
        let Some(&b0) = self.hdr.first() else {
            return 1;
        };
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let msg = [11, 7, 3, 0][(b0 >> 6) as usize];
        if self.hdr.len() < basic + msg {
            return basic + msg;
        }
        let ext = if msg >= 3 {
            let t = &self.hdr[basic..basic + 3];
            t == [0xff, 0xff, 0xff]
        } else {
            let csid = self.csid(basic);
            self.streams
                .iter()
                .find(|s| s.csid == csid)
                .is_some_and(|s| s.extended)
        };
        basic + msg + if ext { 4 } else { 0 }
    }

    fn csid(&self, basic: usize) -> u32 {
        let h = &self.hdr;
        match basic {
            2 => 64 + h[1] as u32,
            3 => 64 + h[1] as u32 + 256 * h[2] as u32,
            _ => (h[0] & 0x3f) as u32,
        }
    }

    /// Applies a complete header in `hdr`; returns the stream index and chunk payload length.
    fn apply_header(&mut self) -> Result<(usize, u32), ParseError> {
        let b0 = self.hdr[0];
        let fmt = b0 >> 6;
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let csid = self.csid(basic);
        let idx = match self.streams.iter().position(|s| s.csid == csid) {
            Some(i) => i,
            None if fmt == 0 => {
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(ParseError::TooManyChunkStreams);
                }
                self.streams.push(ChunkStream {
                    csid,
                    len: 0,
                    type_id: 0,
                    extended: false,
                    left: 0,
                    head: Head::EMPTY,
                    body: Vec::new(),
                });
                self.streams.len() - 1
            }
            None => return Err(ParseError::NoPreviousHeader { csid }),
        };
        let m = &self.hdr[basic..];
        let s = &mut self.streams[idx];
        if fmt < 3 {
            if s.left != 0 {
                return Err(ParseError::HeaderMidMessage { csid });
            }
            s.extended = m[..3] == [0xff, 0xff, 0xff];
        }
        if fmt <= 1 {
            s.len = u32::from_be_bytes([0, m[3], m[4], m[5]]);
            s.type_id = m[6];
        }
        if s.left == 0 {
            s.left = s.len;
            s.head = Head::EMPTY;
            s.body.clear();
        }
        let chunk = s.left.min(self.chunk_size);
        Ok((idx, chunk))
    }

    /// Consumes all of `input`, pushing complete messages to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Parsed>) -> Result<(), ParseError> {
        loop {
            let Some((idx, want)) = self.in_chunk else {
                while self.hdr.len() < self.needed() {
                    let Some((&b, rest)) = input.split_first() else {
                        return Ok(());
                    };
                    self.hdr.push(b);
                    input = rest;
                }
                let (idx, chunk) = self.apply_header()?;
                self.hdr.clear();
                self.in_chunk = Some((idx, chunk));
                if chunk == 0 {
                    self.finish_chunk(idx, out)?;
                }
                continue;
            };
            let n = (want as usize).min(input.len());
            let (data, rest) = input.split_at(n);
            input = rest;
            let s = &mut self.streams[idx];
            s.head.fill(data);
            if !matches!(s.type_id, 8 | 9) && s.body.len() < MAX_CONTROL_LEN {
                let keep = (MAX_CONTROL_LEN - s.body.len()).min(data.len());
                s.body.extend_from_slice(&data[..keep]);
            }
            s.left -= n as u32;
            let want = want - n as u32;
            if want > 0 {
                self.in_chunk = Some((idx, want));
                return Ok(());
            }
            self.finish_chunk(idx, out)?;
        }
    }

    fn finish_chunk(&mut self, idx: usize, out: &mut Vec<Parsed>) -> Result<(), ParseError> {
        self.in_chunk = None;
        let s = &mut self.streams[idx];
        if s.left > 0 {
            return Ok(());
        }
        let len = s.len as usize;
        let msg = match s.type_id {
            9 => Parsed::Video { len, head: s.head },
            8 => Parsed::Audio { len },
            t => Parsed::Control {
                type_id: t,
                body: std::mem::take(&mut s.body),
            },
        };
        if let Parsed::Control { type_id: 1, body } = &msg {
            let size = body
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
                .unwrap_or(0);
            if size == 0 || size > MAX_CHUNK_SIZE {
                return Err(ParseError::BadChunkSize(size));
            }
            self.chunk_size = size;
        }
        out.push(msg);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::synth::{read_probe, video_frame};
    use bytes::BytesMut;
    use ringcast::proto::rtmp::encode_message;

    fn stream(chunk_size: usize) -> (Vec<u8>, Vec<u8>) {
        let mut out = BytesMut::new();
        let mut set = BytesMut::new();
        encode_message(
            &mut set,
            2,
            0,
            1,
            0,
            &(chunk_size as u32).to_be_bytes(),
            128,
        );
        out.extend_from_slice(&set);
        let v = video_frame(10_000, true, 7, 99);
        encode_message(&mut out, 6, 0x0100_0000, 9, 1, &v, chunk_size);
        encode_message(&mut out, 4, 40, 8, 1, &[0xaf, 1, 2, 3], chunk_size);
        encode_message(&mut out, 6, 0x0100_0021, 9, 1, &v, chunk_size);
        (out.to_vec(), v.to_vec())
    }

    fn check(parsed: &[Parsed], v: &[u8]) {
        assert_eq!(parsed.len(), 4);
        assert!(matches!(parsed[0], Parsed::Control { type_id: 1, .. }));
        for i in [1, 3] {
            let Parsed::Video { len, head } = &parsed[i] else {
                panic!("{:?}", parsed[i]);
            };
            assert_eq!(*len, v.len());
            assert_eq!(read_probe(head.as_slice()).unwrap().seq, 7);
        }
        assert_eq!(parsed[2], Parsed::Audio { len: 4 });
    }

    #[test]
    fn rtmp_messages_survive_every_split() {
        for chunk_size in [128, 4096] {
            let (bytes, v) = stream(chunk_size);
            for split in (0..bytes.len()).step_by(37).chain([1, bytes.len() - 1]) {
                let mut p = RtmpParser::default();
                let mut out = Vec::new();
                p.feed(&bytes[..split], &mut out).unwrap();
                p.feed(&bytes[split..], &mut out).unwrap();
                check(&out, &v);
            }
        }
    }

    #[test]
    fn rtmp_byte_at_a_time() {
        let (bytes, v) = stream(4096);
        let mut p = RtmpParser::default();
        let mut out = Vec::new();
        for b in &bytes {
            p.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        check(&out, &v);
    }

    #[test]
    fn rtmp_continuation_without_header_is_an_error() {
        let mut p = RtmpParser::default();
        let err = p.feed(&[0xc6, 0, 0], &mut Vec::new()).unwrap_err();
        assert_eq!(err, ParseError::NoPreviousHeader { csid: 6 });
    }
}
