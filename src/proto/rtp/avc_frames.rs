//! H.264 access units → FLV/RTMP video [`Frame`]s (legacy AVC tags, video_file_format_spec v10.1
//! §E.4.3.1): `[frame_type << 4 | 7, AVCPacketType 1, composition time 0 (3 bytes)]` followed by
//! each NAL unit as a 4-byte length + NAL.
//!
//! SPS, PPS and access unit delimiters are stripped from coded frames; an AVC sequence header
//! (`0x17 0x00 0 0 0` + AVCDecoderConfigurationRecord) is emitted whenever the parameter sets first
//! appear or change, before the frame that carried them. A frame is a keyframe only when it holds
//! an IDR slice. Video is dropped until the first keyframe for which parameter sets are known.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::avc::{AvcDecoderConfig, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS, nal_type};
use crate::media::{Frame, MediaKind};

/// FLV CodecID of AVC.
const CODEC_AVC: u8 = 7;
const FRAME_KEY: u8 = 1;
const FRAME_INTER: u8 = 2;

/// Counters, snapshotted by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AvcFramerStats {
    pub frames: u64,
    pub keyframes: u64,
    pub sequence_headers: u64,
    /// Access units dropped while waiting for the first keyframe with parameter sets.
    pub dropped_before_keyframe: u64,
}

/// Turns access units into video frames; one per H.264 stream.
#[derive(Debug, Default)]
pub struct AvcFramer {
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The record last sent, to detect changes.
    sent_record: Option<Bytes>,
    started: bool,
    stats: AvcFramerStats,
}

impl AvcFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> AvcFramerStats {
        self.stats
    }

    /// Converts one access unit at `timestamp` (ms); frames are appended to `out` in order.
    pub fn push_access_unit(&mut self, timestamp: u32, nals: &[Bytes], out: &mut VecDeque<Frame>) {
        let mut keyframe = false;
        let mut coded_len = 0usize;
        for nal in nals {
            match nal_type(nal) {
                Some(NAL_SPS) => self.sps = Some(nal.clone()),
                Some(NAL_PPS) => self.pps = Some(nal.clone()),
                Some(NAL_AUD) | None => {}
                Some(t) => {
                    keyframe |= t == NAL_IDR;
                    coded_len += 4 + nal.len();
                }
            }
        }
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && let Ok(config) = AvcDecoderConfig::from_parameter_sets(
                std::slice::from_ref(sps),
                std::slice::from_ref(pps),
            )
        {
            let record = config.to_bytes();
            if self.sent_record.as_ref() != Some(&record) {
                let mut body = BytesMut::with_capacity(5 + record.len());
                body.put_slice(&[(FRAME_KEY << 4) | CODEC_AVC, 0, 0, 0, 0]);
                body.put_slice(&record);
                out.push_back(Frame::new(MediaKind::Video, timestamp, body.freeze()));
                self.sent_record = Some(record);
                self.stats.sequence_headers += 1;
            }
        }
        if coded_len == 0 {
            return;
        }
        if !self.started {
            if !(keyframe && self.sent_record.is_some()) {
                self.stats.dropped_before_keyframe += 1;
                return;
            }
            self.started = true;
        }
        let frame_type = if keyframe { FRAME_KEY } else { FRAME_INTER };
        let mut body = BytesMut::with_capacity(5 + coded_len);
        body.put_slice(&[(frame_type << 4) | CODEC_AVC, 1, 0, 0, 0]);
        for nal in nals {
            if matches!(nal_type(nal), Some(NAL_SPS | NAL_PPS | NAL_AUD) | None) {
                continue;
            }
            body.put_u32(nal.len() as u32);
            body.put_slice(nal);
        }
        out.push_back(Frame::new(MediaKind::Video, timestamp, body.freeze()));
        self.stats.frames += 1;
        if keyframe {
            self.stats.keyframes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::media::FrameRole;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn keyframe_needs_idr_and_gets_sequence_header_first() {
        let mut framer = AvcFramer::new();
        let mut out = VecDeque::new();
        // Inter frame before any keyframe: dropped.
        framer.push_access_unit(0, &[b(&[0x41, 1])], &mut out);
        assert!(out.is_empty());
        // SPS/PPS with a non-IDR slice: header goes out, the frame does not.
        framer.push_access_unit(33, &[b(SPS), b(PPS), b(&[0x41, 2])], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].role, FrameRole::SequenceHeader);
        out.clear();
        framer.push_access_unit(
            66,
            &[b(&[0x09, 0xf0]), b(SPS), b(PPS), b(&[0x65, 9, 9])],
            &mut out,
        );
        assert_eq!(out.len(), 1, "unchanged parameter sets are not resent");
        let key = &out[0];
        assert!(key.is_keyframe());
        assert_eq!(
            &key.payload[..],
            &[0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 9, 9]
        );
        out.clear();
        framer.push_access_unit(99, &[b(&[0x41, 7])], &mut out);
        assert_eq!(out[0].role, FrameRole::Inter);
        assert_eq!(&out[0].payload[..5], &[0x27, 1, 0, 0, 0]);
    }

    #[test]
    fn changed_parameter_sets_resend_header() {
        let mut framer = AvcFramer::new();
        let mut out = VecDeque::new();
        framer.push_access_unit(0, &[b(SPS), b(PPS), b(&[0x65, 1])], &mut out);
        framer.push_access_unit(
            1,
            &[b(&[0x67, 0x64, 0, 0x28]), b(PPS), b(&[0x65, 1])],
            &mut out,
        );
        let roles: Vec<_> = out.iter().map(|f| f.role).collect();
        assert_eq!(
            roles,
            [
                FrameRole::SequenceHeader,
                FrameRole::Keyframe,
                FrameRole::SequenceHeader,
                FrameRole::Keyframe
            ]
        );
        let record = AvcDecoderConfig::parse(&out[2].payload.slice(5..)).unwrap();
        assert_eq!(record.profile, 0x64);
    }
}
