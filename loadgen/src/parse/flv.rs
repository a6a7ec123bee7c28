//! The FLV byte stream an fstream watch delivers: the file header, PreviousTagSize0, then tags
//! (11-byte header, body, 4-byte PreviousTagSize). FLV v10.1 §E.2–§E.4.1.
//!
//! Bodies are never buffered: a video tag yields its first [`PROBE_END`](crate::synth::PROBE_END)
//! bytes, every tag its length, the rest is skipped as it arrives. The stream comes from the relay's
//! FLV muxer, so it is checked strictly: a tag type other than audio, video or script data, or a
//! PreviousTagSize that is not the tag's size, means the framing is lost (or the channel is not
//! FLV at all) and is an error. After an error the parser stays failed.

use super::{Head, ParseError, Parsed};

/// `FLV` and version 1. // FLV v10.1 §E.2
const SIGNATURE: [u8; 4] = *b"FLV\x01";
const FILE_HEADER_LEN: usize = 9;
/// Largest DataOffset accepted (9 for version 1; anything beyond is skipped).
const MAX_FILE_HEADER_LEN: u32 = 1024;
const TAG_HEADER_LEN: usize = 11;
const PREVIOUS_TAG_SIZE_LEN: usize = 4;

#[derive(Debug, Clone)]
enum State {
    /// Gathering the 9-byte file header.
    ExpectFileHeader,
    /// Skipping file header bytes past the 9 we know (DataOffset > 9).
    SkipHeaderRest(u32),
    /// Gathering a PreviousTagSize that must equal `expected` (0 after the file header).
    ExpectPreviousTagSize {
        expected: u32,
    },
    /// Gathering an 11-byte tag header.
    ExpectTagHeader,
    /// Inside a tag body of `len` bytes, `left` still to come.
    Body {
        type_id: u8,
        len: u32,
        left: u32,
        head: Head,
    },
    Failed(ParseError),
}

/// A streaming FLV reader; feed it every byte received after the fstream handshake.
#[derive(Debug, Clone)]
pub struct FlvParser {
    state: State,
    /// Header bytes gathered so far (file header, tag header or PreviousTagSize).
    gathered: [u8; TAG_HEADER_LEN],
    have: usize,
}

impl Default for FlvParser {
    fn default() -> Self {
        FlvParser {
            state: State::ExpectFileHeader,
            gathered: [0; TAG_HEADER_LEN],
            have: 0,
        }
    }
}

impl FlvParser {
    /// Consumes all of `input`, pushing each tag to `out` as soon as its body is complete.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Parsed>) -> Result<(), ParseError> {
        match self.step_all(input, out) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.state = State::Failed(err.clone());
                Err(err)
            }
        }
    }

    fn step_all(&mut self, mut input: &[u8], out: &mut Vec<Parsed>) -> Result<(), ParseError> {
        loop {
            match &mut self.state {
                State::Failed(err) => return Err(err.clone()),
                State::SkipHeaderRest(left) => {
                    let n = (*left as usize).min(input.len());
                    input = &input[n..];
                    *left -= n as u32;
                    if *left > 0 {
                        return Ok(());
                    }
                    self.state = State::ExpectPreviousTagSize { expected: 0 };
                }
                State::Body {
                    type_id,
                    len,
                    left,
                    head,
                } => {
                    let n = (*left as usize).min(input.len());
                    if *type_id == 9 {
                        head.fill(&input[..n]);
                    }
                    input = &input[n..];
                    *left -= n as u32;
                    if *left > 0 {
                        return Ok(());
                    }
                    let len = *len;
                    out.push(match *type_id {
                        9 => Parsed::Video {
                            len: len as usize,
                            head: *head,
                        },
                        8 => Parsed::Audio { len: len as usize },
                        t => Parsed::Control {
                            type_id: t,
                            body: Vec::new(),
                        },
                    });
                    self.state = State::ExpectPreviousTagSize {
                        expected: len + TAG_HEADER_LEN as u32,
                    };
                }
                State::ExpectFileHeader => {
                    if !self.gather(&mut input, FILE_HEADER_LEN) {
                        return Ok(());
                    }
                    self.state = self.file_header()?;
                }
                State::ExpectPreviousTagSize { expected } => {
                    let expected = *expected;
                    if !self.gather(&mut input, PREVIOUS_TAG_SIZE_LEN) {
                        return Ok(());
                    }
                    let g = self.gathered;
                    let found = u32::from_be_bytes([g[0], g[1], g[2], g[3]]);
                    // FLV v10.1 §E.3: the size of the previous tag including its header.
                    if found != expected {
                        return Err(ParseError::PreviousTagSizeMismatch { expected, found });
                    }
                    self.state = State::ExpectTagHeader;
                }
                State::ExpectTagHeader => {
                    if !self.gather(&mut input, TAG_HEADER_LEN) {
                        return Ok(());
                    }
                    self.state = self.tag_header()?;
                }
            }
        }
    }

    /// Moves bytes from `input` into `gathered` until it holds `want`; true when it does (and
    /// resets it for the next field).
    fn gather(&mut self, input: &mut &[u8], want: usize) -> bool {
        let n = (want - self.have).min(input.len());
        self.gathered[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        *input = &input[n..];
        if self.have < want {
            return false;
        }
        self.have = 0;
        true
    }

    /// FLV v10.1 §E.2: Signature "FLV", Version 1, TypeFlags, DataOffset (UI32).
    fn file_header(&self) -> Result<State, ParseError> {
        let g = &self.gathered;
        let found = [g[0], g[1], g[2], g[3]];
        if found != SIGNATURE {
            return Err(ParseError::NotFlv { found });
        }
        let offset = u32::from_be_bytes([g[5], g[6], g[7], g[8]]);
        if !(FILE_HEADER_LEN as u32..=MAX_FILE_HEADER_LEN).contains(&offset) {
            return Err(ParseError::BadFlvHeaderLength(offset));
        }
        Ok(State::SkipHeaderRest(offset - FILE_HEADER_LEN as u32))
    }

    /// FLV v10.1 §E.4.1: Reserved(2) Filter(1) TagType(5), DataSize UI24, Timestamp UI24,
    /// TimestampExtended UI8, StreamID UI24.
    fn tag_header(&self) -> Result<State, ParseError> {
        let g = &self.gathered;
        let type_id = g[0];
        if !matches!(type_id, 8 | 9 | 18) {
            return Err(ParseError::BadTagType(type_id));
        }
        let len = u32::from_be_bytes([0, g[1], g[2], g[3]]);
        Ok(State::Body {
            type_id,
            len,
            left: len,
            head: Head::EMPTY,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::BytesMut;
    use ringcast::media::{Frame, MediaKind};
    use ringcast::proto::flv::{file_header, write_tag};

    use super::*;
    use crate::synth::{
        aac_frame, aac_sequence_header, avc_sequence_header, read_probe, video_frame,
    };

    /// An `onMetaData` script body with an empty ECMA array.
    const SCRIPT: &[u8] = b"\x02\x00\x0aonMetaData\x08\0\0\0\0\0\0\x09";
    /// Where the first tag's PreviousTagSize starts: file header (13) + script tag.
    const FIRST_SIZE_AT: usize = 13 + 11 + SCRIPT.len();

    /// A relay-style FLV stream: header, sequence headers, metadata, two probed video frames with
    /// audio between them. Returns the bytes and the expected video lengths.
    fn stream() -> (Vec<u8>, Vec<usize>) {
        let mut out = BytesMut::new();
        out.extend_from_slice(&file_header(true, true));
        let script = bytes::Bytes::from_static(SCRIPT);
        let frames = [
            Frame::new(MediaKind::Script, 0, script),
            Frame::new(MediaKind::Video, 0, avc_sequence_header()),
            Frame::new(MediaKind::Audio, 0, aac_sequence_header()),
            Frame::new(MediaKind::Video, 0, video_frame(5000, true, 41, 1_000)),
            Frame::new(MediaKind::Audio, 21, aac_frame(300)),
            Frame::new(MediaKind::Video, 33, video_frame(700, false, 42, 2_000)),
        ];
        for f in &frames {
            write_tag(&mut out, f).unwrap();
        }
        (out.to_vec(), vec![avc_sequence_header().len(), 5000, 700])
    }

    fn check(parsed: &[Parsed], video_lens: &[usize]) {
        let videos: Vec<_> = parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Video { len, head } => Some((*len, read_probe(head.as_slice()))),
                _ => None,
            })
            .collect();
        let lens: Vec<_> = videos.iter().map(|v| v.0).collect();
        assert_eq!(lens, video_lens);
        assert_eq!(videos[0].1, None, "a sequence header carries no probe");
        let probe = videos[1].1.unwrap();
        assert_eq!(
            (probe.seq, probe.sent_ns, probe.keyframe),
            (41, 1_000, true)
        );
        let probe = videos[2].1.unwrap();
        assert_eq!(
            (probe.seq, probe.sent_ns, probe.keyframe),
            (42, 2_000, false)
        );
        let audio = parsed
            .iter()
            .filter(|p| matches!(p, Parsed::Audio { .. }))
            .count();
        assert_eq!(audio, 2);
        assert!(matches!(parsed[0], Parsed::Control { type_id: 18, .. }));
        assert_eq!(parsed.len(), 6);
    }

    #[test]
    fn tags_survive_every_two_way_split() {
        let (bytes, lens) = stream();
        for split in 0..=bytes.len() {
            let mut parser = FlvParser::default();
            let mut out = Vec::new();
            parser.feed(&bytes[..split], &mut out).unwrap();
            parser.feed(&bytes[split..], &mut out).unwrap();
            check(&out, &lens);
        }
    }

    #[test]
    fn tags_survive_uneven_reads_and_single_bytes() {
        let (bytes, lens) = stream();
        for sizes in [&[1usize][..], &[3, 7, 11, 2], &[13, 1, 500, 4], &[4096]] {
            let mut parser = FlvParser::default();
            let mut out = Vec::new();
            let mut rest = &bytes[..];
            for &n in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (read, tail) = rest.split_at(n.min(rest.len()));
                parser.feed(read, &mut out).unwrap();
                rest = tail;
            }
            check(&out, &lens);
        }
    }

    #[test]
    fn a_tag_is_reported_before_its_previous_tag_size_arrives() {
        let (bytes, _) = stream();
        let mut parser = FlvParser::default();
        let mut out = Vec::new();
        parser.feed(&bytes[..FIRST_SIZE_AT], &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn longer_file_headers_are_skipped() {
        let (bytes, lens) = stream();
        let mut long = bytes[..9].to_vec();
        long[8] = 12;
        long.extend_from_slice(&[0xee; 3]);
        long.extend_from_slice(&bytes[9..]);
        let mut out = Vec::new();
        FlvParser::default().feed(&long, &mut out).unwrap();
        check(&out, &lens);
    }

    #[test]
    fn garbage_is_an_error_and_stays_one() {
        let mut parser = FlvParser::default();
        let err = ParseError::NotFlv { found: *b"GET " };
        assert_eq!(
            parser.feed(b"GET / HTTP/1.1\r\n", &mut Vec::new()),
            Err(err.clone())
        );
        assert_eq!(
            parser.feed(&file_header(true, true), &mut Vec::new()),
            Err(err)
        );

        let (bytes, _) = stream();
        let mut bad_type = bytes.clone();
        bad_type[13] = 0x07;
        assert_eq!(
            FlvParser::default().feed(&bad_type, &mut Vec::new()),
            Err(ParseError::BadTagType(0x07))
        );
        let mut filtered = bytes.clone();
        filtered[13] |= 0x20;
        assert_eq!(
            FlvParser::default().feed(&filtered, &mut Vec::new()),
            Err(ParseError::BadTagType(0x32))
        );
        let mut bad_size = bytes.clone();
        bad_size[FIRST_SIZE_AT + 3] ^= 1;
        let mut out = Vec::new();
        assert_eq!(
            FlvParser::default().feed(&bad_size, &mut out),
            Err(ParseError::PreviousTagSizeMismatch {
                expected: 11 + SCRIPT.len() as u32,
                found: (11 + SCRIPT.len() as u32) ^ 1
            })
        );
        assert_eq!(out.len(), 1, "the tag before the bad size was complete");
        let mut bad_first = bytes.clone();
        bad_first[12] = 1;
        assert!(matches!(
            FlvParser::default().feed(&bad_first, &mut Vec::new()),
            Err(ParseError::PreviousTagSizeMismatch { expected: 0, .. })
        ));
        let mut bad_offset = bytes;
        bad_offset[8] = 3;
        assert_eq!(
            FlvParser::default().feed(&bad_offset, &mut Vec::new()),
            Err(ParseError::BadFlvHeaderLength(3))
        );
    }
}
