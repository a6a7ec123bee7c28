//! The kernel-ceiling baseline's framing: `u32 BE length`, `u8 type` (8 audio, 9 video), then
//! the body. No handshake, nothing to answer.

use super::{Head, Parsed};

/// The kernel-ceiling framing: `u32 BE length`, `u8 type` (8 audio, 9 video), then the body.
#[derive(Debug, Default)]
pub struct RawParser {
    hdr: Vec<u8>,
    /// (type, total length, bytes left, head)
    in_msg: Option<(u8, u32, u32, Head)>,
}

/// Bytes of the raw framing's header.
pub const RAW_HEADER: usize = 5;

impl RawParser {
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Parsed>) {
        loop {
            let Some((ty, len, left, mut head)) = self.in_msg else {
                while self.hdr.len() < RAW_HEADER {
                    let Some((&b, rest)) = input.split_first() else {
                        return;
                    };
                    self.hdr.push(b);
                    input = rest;
                }
                let len = u32::from_be_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]]);
                self.in_msg = Some((self.hdr[4], len, len, Head::EMPTY));
                self.hdr.clear();
                continue;
            };
            let n = (left as usize).min(input.len());
            head.fill(&input[..n]);
            input = &input[n..];
            let left = left - n as u32;
            if left > 0 {
                self.in_msg = Some((ty, len, left, head));
                return;
            }
            self.in_msg = None;
            let len = len as usize;
            out.push(match ty {
                9 => Parsed::Video { len, head },
                8 => Parsed::Audio { len },
                t => Parsed::Control {
                    type_id: t,
                    body: Vec::new(),
                },
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::synth::{read_probe, video_frame};

    #[test]
    fn raw_framing_splits() {
        let v = video_frame(500, false, 3, 5);
        let mut bytes = Vec::new();
        for _ in 0..2 {
            bytes.extend_from_slice(&(v.len() as u32).to_be_bytes());
            bytes.push(9);
            bytes.extend_from_slice(&v);
        }
        for split in 0..bytes.len() {
            let mut p = RawParser::default();
            let mut out = Vec::new();
            p.feed(&bytes[..split], &mut out);
            p.feed(&bytes[split..], &mut out);
            assert_eq!(out.len(), 2);
            let Parsed::Video { head, .. } = &out[1] else {
                panic!()
            };
            assert_eq!(read_probe(head.as_slice()).unwrap().seq, 3);
        }
    }
}
