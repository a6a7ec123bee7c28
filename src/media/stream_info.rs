//! `onMetaData` for ingests that carry none (FTL): built from what the handshake announced
//! (width, height, codecs) and what the stream shows (frame rate from the video timestamps,
//! audio channels from the Opus packets), as an RTMP publisher's encoder would send it.
//!
//! [`StreamInfo`] watches the frames go by and, once about a second of video has passed, yields
//! the metadata bodies once: one for players that get the stream's Opus audio and one for
//! players that get its AAC rendition (they differ in `audiocodecid`). No IO here.

use bytes::{Bytes, BytesMut};

use super::{Frame, MediaKind};
use crate::proto::amf0::{self, Value};

/// Video timestamps spanning this long (ms) give the frame rate.
const PROBE_MS: u32 = 1000;
/// FLV VideoCodecID of H.264.
const AVC: f64 = 7.0;
/// FLV SoundFormat of AAC.
const AAC: f64 = 10.0;
/// E-RTMP: a FourCC as `audiocodecid` ('Opus' as a big-endian number).
const OPUS_FOURCC: f64 = 0x4f70_7573 as f64;

/// What the handshake announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announced {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub has_video: bool,
    pub has_audio: bool,
    /// Who made the stream (`VendorName VendorVersion`), for `encoder`.
    pub encoder: String,
}

/// The two `onMetaData` bodies: for Opus players and for AAC players.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPair {
    pub opus: Bytes,
    pub aac: Bytes,
}

/// Watches a stream's frames until its metadata can be written.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    announced: Announced,
    first_video: Option<u32>,
    video_frames: u32,
    channels: Option<u8>,
    done: bool,
}

impl StreamInfo {
    pub fn new(announced: Announced) -> Self {
        StreamInfo {
            announced,
            ..StreamInfo::default()
        }
    }

    /// Notes `frame`; returns the metadata once enough of the stream was seen.
    pub fn observe(&mut self, frame: &Frame) -> Option<MetadataPair> {
        if self.done {
            return None;
        }
        match frame.kind {
            MediaKind::Video => {
                let first = *self.first_video.get_or_insert(frame.timestamp);
                self.video_frames += 1;
                let span = frame.timestamp.wrapping_sub(first);
                if span >= PROBE_MS && self.video_frames > 1 {
                    let fps = f64::from(self.video_frames - 1) * 1000.0 / f64::from(span);
                    self.done = true;
                    return Some(self.build(Some((fps * 1000.0).round() / 1000.0)));
                }
            }
            MediaKind::Audio if self.channels.is_none() => {
                // E-RTMP Opus coded frame: the TOC byte's stereo flag.
                if frame.payload.first() == Some(&0x91) {
                    self.channels = Some(super::aac::channels_of(None, &frame.payload[5..]));
                }
                if !self.announced.has_video && self.channels.is_some() {
                    self.done = true;
                    return Some(self.build(None));
                }
            }
            _ => {}
        }
        None
    }

    fn build(&self, framerate: Option<f64>) -> MetadataPair {
        MetadataPair {
            opus: self.body(framerate, OPUS_FOURCC),
            aac: self.body(framerate, AAC),
        }
    }

    fn body(&self, framerate: Option<f64>, audio_codec: f64) -> Bytes {
        let a = &self.announced;
        let mut props: Vec<(String, Value)> = Vec::new();
        let mut num = |k: &str, v: f64| props.push((k.to_owned(), Value::Number(v)));
        if a.has_video {
            if let Some(w) = a.width {
                num("width", f64::from(w));
            }
            if let Some(h) = a.height {
                num("height", f64::from(h));
            }
            if let Some(fps) = framerate {
                num("framerate", fps);
            }
            num("videocodecid", AVC);
        }
        if a.has_audio {
            let channels = self.channels.unwrap_or(2);
            num("audiocodecid", audio_codec);
            num("audiosamplerate", 48_000.0);
            num("audiosamplesize", 16.0);
            num("audiochannels", f64::from(channels));
            props.push(("stereo".to_owned(), Value::Boolean(channels == 2)));
        }
        if !a.encoder.is_empty() {
            props.push(("encoder".to_owned(), Value::string(a.encoder.clone())));
        }
        let mut out = BytesMut::with_capacity(256);
        amf0::encode(&Value::string("onMetaData"), &mut out);
        amf0::encode(&Value::EcmaArray(props), &mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::media::FrameRole;

    #[test]
    fn metadata_carries_the_announced_size_and_the_measured_frame_rate() {
        let mut info = StreamInfo::new(Announced {
            width: Some(1280),
            height: Some(720),
            has_video: true,
            has_audio: true,
            encoder: "OBS 30".into(),
        });
        let audio = Frame::new(MediaKind::Audio, 0, Bytes::from_static(b"\x91Opus\xfc\xff"));
        assert!(info.observe(&audio).is_none());
        let mut got = None;
        for i in 0..40u32 {
            let v = Frame::new(
                MediaKind::Video,
                i * 40,
                Bytes::from_static(&[0x27, 1, 0, 0, 0]),
            );
            if let Some(m) = info.observe(&v) {
                got = Some(m);
                break;
            }
        }
        let pair = got.unwrap();
        let limits = amf0::Limits::default();
        let values = amf0::decode_all(&pair.aac, &limits).unwrap();
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        let meta = &values[1];
        assert_eq!(meta.get("framerate").and_then(Value::as_number), Some(25.0));
        assert_eq!(meta.get("width").and_then(Value::as_number), Some(1280.0));
        assert_eq!(
            meta.get("audiocodecid").and_then(Value::as_number),
            Some(10.0)
        );
        assert_eq!(
            meta.get("audiochannels").and_then(Value::as_number),
            Some(2.0)
        );
        let opus = amf0::decode_all(&pair.opus, &limits).unwrap();
        assert_eq!(
            opus[1].get("audiocodecid").and_then(Value::as_number),
            Some(OPUS_FOURCC)
        );
        assert_eq!(
            crate::media::classify(MediaKind::Script, &pair.aac),
            FrameRole::Metadata
        );
    }
}
