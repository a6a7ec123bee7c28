//! The stream description a client sends between CONNECT and `.`: `Key: Value` lines, validated
//! into [`StreamAttributes`] when the `.` arrives.
//!
//! Keys are matched case-insensitively; unknown keys are kept (bounded) and reported, never fatal.
//! At `.` the server requires at least one enabled track, and for each enabled track a supported
//! codec (H264 video, OPUS audio), a non-zero payload type below 128 and a non-zero SSRC.

use super::{ControlError, ResponseCode};

/// Codecs FTL carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackCodec {
    H264,
    Opus,
}

impl TrackCodec {
    /// The name used in the `VideoCodec` / `AudioCodec` attribute.
    pub const fn name(self) -> &'static str {
        match self {
            TrackCodec::H264 => "H264",
            TrackCodec::Opus => "OPUS",
        }
    }
}

/// One announced media track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub codec: TrackCodec,
    pub payload_type: u8,
    pub ssrc: u32,
    /// Video only; `None` when not announced.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// A validated stream description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamAttributes {
    pub protocol_version: String,
    pub vendor_name: String,
    pub vendor_version: String,
    pub video: Option<TrackInfo>,
    pub audio: Option<TrackInfo>,
    /// Attributes the server does not know, in arrival order (bounded).
    pub unknown: Vec<(String, String)>,
}

/// Unknown attributes remembered, at most.
const MAX_UNKNOWN: usize = 32;

#[derive(Debug, Default, Clone)]
struct TrackBuilder {
    enabled: Option<bool>,
    codec: Option<String>,
    payload_type: Option<u32>,
    ssrc: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
}

/// Attributes collected so far.
#[derive(Debug, Default, Clone)]
pub struct AttributeSet {
    lines: usize,
    protocol_version: Option<String>,
    vendor_name: Option<String>,
    vendor_version: Option<String>,
    video: TrackBuilder,
    audio: TrackBuilder,
    unknown: Vec<(String, String)>,
}

fn number(key: &'static str, value: &str) -> Result<u32, ControlError> {
    value
        .parse()
        .map_err(|_| ControlError::InvalidAttributeValue { key })
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ControlError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ControlError::InvalidAttributeValue { key })
    }
}

impl AttributeSet {
    /// Records one `Key: Value` line (already split and trimmed). `max_lines` bounds the total.
    pub fn set(&mut self, key: &str, value: &str, max_lines: usize) -> Result<(), ControlError> {
        self.lines += 1;
        if self.lines > max_lines {
            return Err(ControlError::TooManyAttributes { max: max_lines });
        }
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "protocolversion" => self.protocol_version = Some(value.to_owned()),
            "vendorname" => self.vendor_name = Some(value.to_owned()),
            "vendorversion" => self.vendor_version = Some(value.to_owned()),
            "video" => self.video.enabled = Some(boolean("Video", value)?),
            "videocodec" => self.video.codec = Some(value.to_owned()),
            "videopayloadtype" => {
                self.video.payload_type = Some(number("VideoPayloadType", value)?)
            }
            "videoingestssrc" => self.video.ssrc = Some(number("VideoIngestSSRC", value)?),
            "videowidth" => self.video.width = Some(number("VideoWidth", value)?),
            "videoheight" => self.video.height = Some(number("VideoHeight", value)?),
            "audio" => self.audio.enabled = Some(boolean("Audio", value)?),
            "audiocodec" => self.audio.codec = Some(value.to_owned()),
            "audiopayloadtype" => {
                self.audio.payload_type = Some(number("AudioPayloadType", value)?)
            }
            "audioingestssrc" => self.audio.ssrc = Some(number("AudioIngestSSRC", value)?),
            _ => {
                if self.unknown.len() < MAX_UNKNOWN {
                    self.unknown.push((key.to_owned(), value.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// Validates the set at `.`.
    pub fn finish(self) -> Result<StreamAttributes, ControlError> {
        let protocol_version = self.protocol_version.unwrap_or_default();
        if let Some((major, minor)) = protocol_version.split_once('.') {
            let version = (major.parse::<u32>(), minor.parse::<u32>());
            if let (Ok(major), Ok(minor)) = version
                && (major, minor) < (0, 9)
            {
                return Err(ControlError::OldVersion {
                    version: protocol_version,
                });
            }
        }
        let video = build_track(self.video, TrackCodec::H264, "video")?;
        let audio = build_track(self.audio, TrackCodec::Opus, "audio")?;
        if video.is_none() && audio.is_none() {
            return Err(ControlError::InvalidStream {
                code: ResponseCode::BadRequest,
                reason: "no audio or video track",
            });
        }
        if let (Some(v), Some(a)) = (&video, &audio)
            && v.ssrc == a.ssrc
        {
            // Media is routed by SSRC: one SSRC cannot name both tracks.
            return Err(ControlError::InvalidStream {
                code: ResponseCode::AudioSsrcCollision,
                reason: "audio SSRC equals video SSRC",
            });
        }
        Ok(StreamAttributes {
            protocol_version,
            vendor_name: self.vendor_name.unwrap_or_default(),
            vendor_version: self.vendor_version.unwrap_or_default(),
            video,
            audio,
            unknown: self.unknown,
        })
    }
}

fn build_track(
    track: TrackBuilder,
    codec: TrackCodec,
    kind: &'static str,
) -> Result<Option<TrackInfo>, ControlError> {
    if track.enabled != Some(true) {
        return Ok(None);
    }
    let refuse = |reason| ControlError::InvalidStream {
        code: ResponseCode::BadRequest,
        reason,
    };
    let codec_ok = track
        .codec
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case(codec.name()));
    if !codec_ok {
        return Err(refuse(match kind {
            "video" => "video codec is not H264",
            _ => "audio codec is not OPUS",
        }));
    }
    let payload_type = match track.payload_type {
        Some(pt @ 1..=127) => pt as u8,
        _ => return Err(refuse("payload type missing, zero or above 127")),
    };
    let ssrc = match track.ssrc {
        Some(ssrc) if ssrc != 0 => ssrc,
        _ => return Err(refuse("SSRC missing or zero")),
    };
    Ok(Some(TrackInfo {
        codec,
        payload_type,
        ssrc,
        width: track.width,
        height: track.height,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(lines: &[(&str, &str)]) -> AttributeSet {
        let mut s = AttributeSet::default();
        for (k, v) in lines {
            s.set(k, v, 64).unwrap();
        }
        s
    }

    #[test]
    fn video_only_stream_is_accepted() {
        let attrs = set(&[
            ("Video", "true"),
            ("VideoCodec", "H264"),
            ("VideoPayloadType", "96"),
            ("VideoIngestSSRC", "78"),
            ("X-Custom", "1"),
        ])
        .finish()
        .unwrap();
        assert_eq!(attrs.video.unwrap().ssrc, 78);
        assert!(attrs.audio.is_none());
        assert_eq!(attrs.unknown, vec![("X-Custom".into(), "1".into())]);
    }

    #[test]
    fn invalid_streams_are_refused() {
        let no_tracks = set(&[("ProtocolVersion", "0.9")]).finish();
        assert_eq!(
            no_tracks.unwrap_err().response_code(),
            ResponseCode::BadRequest
        );
        let vp8 = set(&[
            ("Video", "true"),
            ("VideoCodec", "VP8"),
            ("VideoPayloadType", "96"),
            ("VideoIngestSSRC", "78"),
        ])
        .finish();
        assert!(vp8.is_err());
        let zero_ssrc = set(&[
            ("Audio", "true"),
            ("AudioCodec", "OPUS"),
            ("AudioPayloadType", "97"),
            ("AudioIngestSSRC", "0"),
        ])
        .finish();
        assert!(zero_ssrc.is_err());
        let old = set(&[("ProtocolVersion", "0.8")]).finish();
        assert_eq!(old.unwrap_err().response_code(), ResponseCode::OldVersion);
        let mut s = AttributeSet::default();
        assert!(s.set("VideoPayloadType", "abc", 64).is_err());
        assert!(s.set("A", "b", 1).is_err());
    }
}
