//! Opus (RFC 7587: one Opus packet per RTP payload) → Enhanced RTMP v2 audio frames.
//!
//! E-RTMP v2 "Enhancing Audio": the first byte is `SoundFormat 9 (ExHeader) << 4 | AudioPacketType`,
//! followed by the 4-byte FourCC `Opus`. SequenceStart (type 0) carries the Opus ID header
//! (`OpusHead`, RFC 7845 §5.1); CodedFrames (type 1) carry one raw Opus packet. So:
//! `90 4F 70 75 73 <OpusHead>` once, then `91 4F 70 75 73 <packet>` per RTP packet.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::{Frame, MediaKind};

/// SoundFormat value signalling the E-RTMP ExAudioTagHeader.
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;
/// AudioPacketType SequenceStart.
pub const AUDIO_PACKET_SEQUENCE_START: u8 = 0;
/// AudioPacketType CodedFrames.
pub const AUDIO_PACKET_CODED_FRAMES: u8 = 1;
/// The audio FourCC of Opus.
pub const FOURCC_OPUS: [u8; 4] = *b"Opus";
/// The encoder lookahead libopus reports at 48 kHz, which FTL clients (libopus) add.
pub const DEFAULT_PRE_SKIP: u16 = 312;

/// The 19-byte Opus ID header, RFC 7845 §5.1: magic, version 1, channel count, pre-skip (LE),
/// input sample rate (LE), output gain (LE, Q7.8) and channel mapping family 0.
pub fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> [u8; 19] {
    let mut head = [0u8; 19];
    head[..8].copy_from_slice(b"OpusHead");
    head[8] = 1;
    head[9] = channels;
    head[10..12].copy_from_slice(&pre_skip.to_le_bytes());
    head[12..16].copy_from_slice(&input_rate.to_le_bytes());
    // head[16..18]: output gain 0; head[18]: mapping family 0 (mono/stereo, no table).
    head
}

fn ex_audio(packet_type: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8((SOUND_FORMAT_EX_HEADER << 4) | packet_type);
    out.put_slice(&FOURCC_OPUS);
    out.put_slice(body);
    out.freeze()
}

/// The SequenceStart frame for FTL's stereo 48 kHz Opus.
pub fn sequence_start_frame(timestamp: u32) -> Frame {
    let head = opus_head(2, DEFAULT_PRE_SKIP, 48_000);
    Frame::new(
        MediaKind::Audio,
        timestamp,
        ex_audio(AUDIO_PACKET_SEQUENCE_START, &head),
    )
}

/// A CodedFrames frame carrying one Opus packet.
pub fn coded_frame(timestamp: u32, packet: &[u8]) -> Frame {
    Frame::new(
        MediaKind::Audio,
        timestamp,
        ex_audio(AUDIO_PACKET_CODED_FRAMES, packet),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FrameRole;

    #[test]
    fn sequence_start_bytes() {
        let f = sequence_start_frame(0);
        assert_eq!(f.role, FrameRole::SequenceHeader);
        assert_eq!(
            &f.payload[..],
            &[
                0x90, b'O', b'p', b'u', b's', // ExHeader | SequenceStart, FourCC
                b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1,
                2, // magic, version, channels
                0x38, 0x01, // pre-skip 312 LE
                0x80, 0xbb, 0x00, 0x00, // 48000 LE
                0, 0, 0, // gain, mapping family
            ]
        );
    }

    #[test]
    fn coded_frame_bytes() {
        let f = coded_frame(20, &[0xfc, 0xff, 0xfe]);
        assert_eq!(f.role, FrameRole::Audio);
        assert_eq!(&f.payload[..], b"\x91Opus\xfc\xff\xfe");
    }
}
