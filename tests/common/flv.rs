//! A minimal FLV tag reader (legacy and Enhanced RTMP video headers), independent of the
//! library, used to check what a player captured: codec, sequence header first, first coded
//! video frame is a keyframe. A truncated last tag (a killed writer) ends the list quietly.

/// One video tag's header facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoTag {
    pub timestamp_ms: u32,
    /// 1 = keyframe, 2 = inter frame, 5 = command frame (FLV spec, E.4.3.1).
    pub frame_type: u8,
    /// `avc1` for legacy codec id 7, the FourCC for Enhanced RTMP, `legacyN` otherwise.
    pub codec: String,
    pub is_sequence_header: bool,
    pub is_coded_frame: bool,
    pub enhanced: bool,
}

/// Counts of a parsed FLV file.
#[derive(Clone, Debug, Default)]
pub struct FlvSummary {
    pub video: Vec<VideoTag>,
    pub audio_tags: usize,
    pub script_tags: usize,
}

impl FlvSummary {
    pub fn coded_video(&self) -> impl Iterator<Item = &VideoTag> {
        self.video.iter().filter(|t| t.is_coded_frame)
    }
}

/// Parses FLV bytes; panics if the file does not start with an FLV header.
pub fn parse(bytes: &[u8]) -> FlvSummary {
    assert!(
        bytes.len() >= 9 && &bytes[..3] == b"FLV",
        "not an FLV file ({} bytes)",
        bytes.len()
    );
    let header_len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let mut pos = header_len + 4; // skip PreviousTagSize0
    let mut summary = FlvSummary::default();
    while pos + 11 <= bytes.len() {
        let tag_type = bytes[pos] & 0x1f;
        let size = u32::from_be_bytes([0, bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([
            bytes[pos + 7],
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
        ]);
        let body_start = pos + 11;
        let body_end = body_start + size;
        if body_end > bytes.len() {
            break;
        }
        let body = &bytes[body_start..body_end];
        match tag_type {
            8 => summary.audio_tags += 1,
            18 => summary.script_tags += 1,
            9 if !body.is_empty() => summary.video.push(video_tag(ts, body)),
            _ => {}
        }
        pos = body_end + 4;
    }
    summary
}

fn video_tag(timestamp_ms: u32, body: &[u8]) -> VideoTag {
    let b0 = body[0];
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: IsExHeader | FrameType(3) | PacketType(4), then a FourCC.
        let packet_type = b0 & 0x0f;
        let codec = body.get(1..5).map_or_else(
            || "????".to_owned(),
            |f| String::from_utf8_lossy(f).into_owned(),
        );
        VideoTag {
            timestamp_ms,
            frame_type: (b0 >> 4) & 0x07,
            codec,
            is_sequence_header: packet_type == 0,
            is_coded_frame: packet_type == 1 || packet_type == 3,
            enhanced: true,
        }
    } else {
        let frame_type = b0 >> 4;
        let codec_id = b0 & 0x0f;
        let avc_packet_type = body.get(1).copied();
        let (codec, seq, coded) = if codec_id == 7 {
            (
                "avc1".to_owned(),
                avc_packet_type == Some(0),
                avc_packet_type == Some(1),
            )
        } else {
            (format!("legacy{codec_id}"), false, frame_type != 5)
        };
        VideoTag {
            timestamp_ms,
            frame_type,
            codec,
            is_sequence_header: seq,
            is_coded_frame: coded && frame_type != 5,
            enhanced: false,
        }
    }
}

/// Asserts a captured FLV carries `codec` video whose sequence header precedes the first coded
/// frame, and that this first coded frame is a keyframe. Returns the summary for more checks.
pub fn assert_starts_with_keyframe(bytes: &[u8], codec: &str, what: &str) -> FlvSummary {
    let summary = parse(bytes);
    let first_coded = summary
        .video
        .iter()
        .position(|t| t.is_coded_frame)
        .unwrap_or_else(|| {
            panic!(
                "{what}: no coded video frame in {} video tags",
                summary.video.len()
            )
        });
    let first_seq = summary.video.iter().position(|t| t.is_sequence_header);
    assert!(
        first_seq.is_some_and(|s| s < first_coded),
        "{what}: no video sequence header before the first coded frame"
    );
    let tag = &summary.video[first_coded];
    assert_eq!(
        tag.codec, codec,
        "{what}: video codec of the first coded frame"
    );
    assert_eq!(
        tag.frame_type, 1,
        "{what}: the first coded video frame is not a keyframe: {tag:?}"
    );
    summary
}
