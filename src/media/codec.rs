//! Which codec a frame carries, read from its first bytes (legacy FLV or Enhanced RTMP), for
//! egress decisions such as whether a destination can take the audio. No IO.

/// True for audio in Opus: the Enhanced RTMP ExAudioTagHeader (sound format 9) with FourCC
/// `Opus`. Legacy FLV has no Opus id.
pub fn audio_is_opus(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b >> 4 == 9) && payload.get(1..5) == Some(b"Opus")
}

/// True for video in an Enhanced RTMP ExVideoTagHeader (HEVC, AV1, VP9 and AVC sent that way):
/// a receiver must have announced the codec in `fourCcList` to get it.
pub fn video_is_enhanced(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x80 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_and_enhanced_video_are_recognised() {
        assert!(audio_is_opus(b"\x90Opus\x01"));
        assert!(audio_is_opus(b"\x91Opus"));
        assert!(!audio_is_opus(b"\xaf\x01\x21"));
        assert!(!audio_is_opus(b"\x90mp4a"));
        assert!(!audio_is_opus(b""));
        assert!(video_is_enhanced(b"\x90hvc1"));
        assert!(!video_is_enhanced(b"\x17\x00"));
        assert!(!video_is_enhanced(b""));
    }
}
