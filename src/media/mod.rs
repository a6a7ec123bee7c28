//! Media frames as they travel from a publisher's session to the fan-out engine.
//!
//! A [`Frame`] is one RTMP media message, which is also the body of one FLV tag: the payload bytes
//! are exactly what RTMP carries after the chunk header and what FLV stores after the 11-byte tag
//! header. Every ingest protocol produces these (RTMP passes them through, FTL builds them from
//! RTP, FLV-over-fstream parses them from tags), and every egress serialises them. Keeping the
//! wire form as the canonical form means a relayed packet is never re-encoded.
//!
//! Classification (keyframe, sequence header, disposable) is read from the first bytes of the
//! payload, for legacy FLV codecs and for Enhanced RTMP (E-RTMP v2) alike. Nothing here does IO.

pub mod aac;
pub mod annexb;
pub mod annexb_chunker;
pub mod avc;
pub mod codec;
pub mod stream_info;

use bytes::Bytes;

/// The RTMP message type / FLV tag type of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// RTMP message type 8, FLV tag type 8.
    Audio,
    /// RTMP message type 9, FLV tag type 9.
    Video,
    /// RTMP message type 18 (AMF0 data), FLV tag type 18: `onMetaData` and friends.
    Script,
}

impl MediaKind {
    /// The RTMP message type id, which is also the FLV tag type.
    pub const fn type_id(self) -> u8 {
        match self {
            MediaKind::Audio => 8,
            MediaKind::Video => 9,
            MediaKind::Script => 18,
        }
    }

    /// The kind for an RTMP message type / FLV tag type, if it is media.
    pub const fn from_type_id(id: u8) -> Option<Self> {
        match id {
            8 => Some(MediaKind::Audio),
            9 => Some(MediaKind::Video),
            18 => Some(MediaKind::Script),
            _ => None,
        }
    }
}

/// What role a frame plays for a player joining mid-stream and for the slow-watcher policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameRole {
    /// Codec configuration (AVC/HEVC/AV1 decoder configuration, AAC AudioSpecificConfig,
    /// OpusHead): cached and replayed to every new player before any coded frame.
    SequenceHeader,
    /// Stream metadata (`onMetaData`): cached and replayed first.
    Metadata,
    /// A video frame a decoder can start from.
    Keyframe,
    /// A video frame that depends on others.
    Inter,
    /// A video frame no other frame depends on (H.263 disposable, legacy frame type 3): the
    /// first thing to drop under pressure.
    Disposable,
    /// A coded audio frame.
    Audio,
    /// Anything else (script data other than metadata, video info/command frames, sequence end).
    Other,
}

/// One media message: an RTMP audio/video/data message, an FLV tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: MediaKind,
    /// Decode timestamp in milliseconds, RTMP's 32-bit clock (wraps after ~49.7 days).
    pub timestamp: u32,
    pub role: FrameRole,
    /// The message body as RTMP carries it and FLV stores it.
    pub payload: Bytes,
}

impl Frame {
    /// Builds a frame and classifies it from its payload.
    pub fn new(kind: MediaKind, timestamp: u32, payload: Bytes) -> Self {
        let role = classify(kind, &payload);
        Frame {
            kind,
            timestamp,
            role,
            payload,
        }
    }

    /// True for a frame a player can start decoding video from.
    pub fn is_keyframe(&self) -> bool {
        self.role == FrameRole::Keyframe
    }
}

/// The AMF0 string `onMetaData`, as it begins a metadata script tag.
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

/// Classifies a payload. Legacy FLV (video_file_format_spec_v10_1 §E.4.2/§E.4.3) and Enhanced
/// RTMP v2 (`IsExHeader` bit) layouts are both understood.
pub fn classify(kind: MediaKind, payload: &[u8]) -> FrameRole {
    match kind {
        MediaKind::Script => {
            if payload.starts_with(ON_METADATA) {
                FrameRole::Metadata
            } else {
                FrameRole::Other
            }
        }
        MediaKind::Audio => classify_audio(payload),
        MediaKind::Video => classify_video(payload),
    }
}

fn classify_audio(payload: &[u8]) -> FrameRole {
    let Some(&first) = payload.first() else {
        return FrameRole::Other;
    };
    match first >> 4 {
        // AAC: AACPacketType 0 is the AudioSpecificConfig.
        10 => match payload.get(1) {
            Some(0) => FrameRole::SequenceHeader,
            Some(_) => FrameRole::Audio,
            None => FrameRole::Other,
        },
        // E-RTMP ExAudioTagHeader: low nibble is the AudioPacketType.
        9 => match first & 0x0f {
            0 => FrameRole::SequenceHeader, // SequenceStart
            1 => FrameRole::Audio,          // CodedFrames
            4 => FrameRole::SequenceHeader, // MultichannelConfig
            // Multitrack: the inner AudioPacketType is the low nibble of the next byte.
            5 => match payload.get(1).map(|b| b & 0x0f) {
                Some(0 | 4) => FrameRole::SequenceHeader,
                Some(_) => FrameRole::Audio,
                None => FrameRole::Other,
            },
            _ => FrameRole::Other,
        },
        _ => FrameRole::Audio,
    }
}

/// Which configuration slot a codec configuration frame (sequence header or metadata) fills:
/// frames with the same kind and key replace each other in the GOP cache; different keys are
/// all kept and replayed in their order. The key is the E-RTMP packet type (SequenceStart,
/// MultichannelConfig, MPEG2TSSequenceStart) and, for E-RTMP multitrack, the track id in the
/// high byte; legacy FLV and `onMetaData` have one slot each (key 0).
pub fn config_key(kind: MediaKind, payload: &[u8]) -> u16 {
    let (Some(&first), MediaKind::Audio | MediaKind::Video) = (payload.first(), kind) else {
        return 0;
    };
    let (ex, packet_type, multitrack) = match kind {
        MediaKind::Audio => (first >> 4 == 9, first & 0x0f, 5),
        _ => (first & 0x80 != 0, first & 0x0f, 6),
    };
    if !ex {
        return 0;
    }
    if packet_type != multitrack {
        return u16::from(packet_type);
    }
    // Multitrack: [type<<4 | inner packet type] then, unless every track has its own codec
    // (type 2), the FourCC, then the first track's id.
    let Some(&second) = payload.get(1) else {
        return u16::from(packet_type);
    };
    let track_at = if second >> 4 == 2 { 2 } else { 6 };
    let track = payload.get(track_at).copied().unwrap_or(0);
    u16::from(track) << 8 | u16::from(second & 0x0f)
}

/// True for an Enhanced RTMP audio message whose codec is Opus (FourCC `Opus`).
pub fn is_opus_audio(kind: MediaKind, payload: &[u8]) -> bool {
    kind == MediaKind::Audio
        && payload
            .first()
            .is_some_and(|b| b >> 4 == 9 && b & 0x0f != 5)
        && payload.get(1..5) == Some(b"Opus")
}

fn classify_video(payload: &[u8]) -> FrameRole {
    let Some(&first) = payload.first() else {
        return FrameRole::Other;
    };
    if first & 0x80 != 0 {
        // E-RTMP ExVideoTagHeader: bits 6..4 frame type, bits 3..0 VideoPacketType.
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0f;
        return match packet_type {
            0 | 5 => FrameRole::SequenceHeader, // SequenceStart, MPEG2TSSequenceStart
            4 => FrameRole::Metadata,           // HDR metadata: keep it with the headers
            // Multitrack: a sequence start inside is still a sequence header.
            6 if payload.get(1).is_some_and(|b| matches!(b & 0x0f, 0 | 5)) => {
                FrameRole::SequenceHeader
            }
            1 | 3 | 6 => video_frame_role(frame_type), // CodedFrames, CodedFramesX, Multitrack
            _ => FrameRole::Other,                     // SequenceEnd, ModEx, reserved
        };
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    // AVC (7) and the legacy HEVC (12) / AV1 (13) ids some encoders use carry an
    // AVCPacketType byte: 0 is the decoder configuration record.
    if matches!(codec_id, 7 | 12 | 13) && payload.get(1) == Some(&0) {
        return FrameRole::SequenceHeader;
    }
    video_frame_role(frame_type)
}

fn video_frame_role(frame_type: u8) -> FrameRole {
    match frame_type {
        1 => FrameRole::Keyframe,
        2 => FrameRole::Inter,
        3 => FrameRole::Disposable,
        4 => FrameRole::Keyframe, // generated keyframe (server-side seek)
        _ => FrameRole::Other,    // 5: video info / command frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_avc_roles() {
        assert_eq!(
            classify(MediaKind::Video, &[0x17, 0, 0, 0, 0]),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(MediaKind::Video, &[0x17, 1, 0, 0, 0]),
            FrameRole::Keyframe
        );
        assert_eq!(
            classify(MediaKind::Video, &[0x27, 1, 0, 0, 0]),
            FrameRole::Inter
        );
        assert_eq!(
            classify(MediaKind::Video, &[0x37, 1, 0, 0, 0]),
            FrameRole::Disposable
        );
        assert_eq!(
            classify(MediaKind::Video, &[0x57, 0, 0, 0, 0]),
            FrameRole::SequenceHeader
        );
    }

    #[test]
    fn enhanced_rtmp_video_roles() {
        // IsExHeader | keyframe | SequenceStart, FourCC hvc1
        assert_eq!(
            classify(MediaKind::Video, b"\x90hvc1"),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(MediaKind::Video, b"\x91hvc1\0\0\0"),
            FrameRole::Keyframe
        );
        assert_eq!(classify(MediaKind::Video, b"\xa3av01"), FrameRole::Inter);
        assert_eq!(classify(MediaKind::Video, b"\x92av01"), FrameRole::Other);
    }

    #[test]
    fn audio_roles() {
        assert_eq!(
            classify(MediaKind::Audio, &[0xaf, 0, 0x12, 0x10]),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(MediaKind::Audio, &[0xaf, 1, 0x21]),
            FrameRole::Audio
        );
        assert_eq!(
            classify(MediaKind::Audio, b"\x90Opus"),
            FrameRole::SequenceHeader
        );
        assert_eq!(classify(MediaKind::Audio, b"\x91Opus"), FrameRole::Audio);
        assert_eq!(classify(MediaKind::Audio, &[0x2f, 0xff]), FrameRole::Audio);
        assert_eq!(classify(MediaKind::Audio, &[]), FrameRole::Other);
    }

    #[test]
    fn config_keys_separate_sequence_start_multichannel_config_and_tracks() {
        let start = config_key(MediaKind::Audio, b"\x90Opus\x01");
        let multichannel = config_key(MediaKind::Audio, b"\x94Opus\x00");
        assert_ne!(start, multichannel);
        assert_eq!(config_key(MediaKind::Audio, &[0xaf, 0, 0x12, 0x10]), 0);
        // Multitrack (OneTrack, SequenceStart, Opus, track 1) vs track 2.
        let t1 = config_key(MediaKind::Audio, b"\x95\x00Opus\x01");
        let t2 = config_key(MediaKind::Audio, b"\x95\x00Opus\x02");
        assert_ne!(t1, t2);
        assert_eq!(
            classify(MediaKind::Audio, b"\x95\x00Opus\x01"),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(MediaKind::Audio, b"\x95\x01Opus\x01"),
            FrameRole::Audio
        );
        assert!(is_opus_audio(MediaKind::Audio, b"\x91Opus\xfc"));
        assert!(!is_opus_audio(MediaKind::Audio, &[0xaf, 1, 0x21]));
    }

    #[test]
    fn metadata_is_recognised() {
        let mut meta = ON_METADATA.to_vec();
        meta.extend_from_slice(&[0x08, 0, 0, 0, 0]);
        assert_eq!(classify(MediaKind::Script, &meta), FrameRole::Metadata);
        assert_eq!(
            classify(MediaKind::Script, b"\x02\x00\x04ping"),
            FrameRole::Other
        );
    }
}
