//! A frame serialised once for every egress format, shared by reference count.
//!
//! The publisher's core builds one [`EncodedFrame`] per media message: the RTMP chunk bytes
//! (fmt-0 header, the node-wide outgoing chunk size, message stream id 1) are built eagerly,
//! the FLV tag bytes on first use. Every watcher of every core then writes a clone of the same
//! `Bytes`: a refcount increment, never a copy or a re-chunk.
//!
//! A media frame is kept only in its RTMP form: the bare payload is read back out of the chunks
//! ([`rtmp::payload_ranges`]) by the few who need it (the FLV tag, a restamped header, the AAC
//! rendition, a push target with its own chunking). A frame that fits in one chunk (audio,
//! headers, most small video) gives it as a slice, without a copy; a larger one is gathered. So
//! the GOP cache holds each frame once, not twice.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::media::{Frame, FrameRole, MediaKind};
use crate::proto::{flv, rtmp};

/// What the frame carries: media (RTMP/FLV capable) or opaque bytes of an fstream broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Media(MediaKind),
    /// Bytes relayed verbatim; `role` says whether a watcher may start here.
    Opaque,
}

/// Which audio rendition a frame belongs to; a watcher's [`super::AudioMode`] picks which it
/// sees. Everything but Opus audio and its AAC rendition is [`Variant::Common`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Seen by every watcher (video, metadata, audio that is not Opus).
    Common,
    /// The publisher's Opus audio, passed through untouched.
    Opus,
    /// The stream's AAC rendition of its Opus audio (see [`crate::media::aac`]).
    Aac,
}

/// One frame, serialised once, shared by every watcher on every core.
#[derive(Debug)]
pub struct EncodedFrame {
    pub content: Content,
    pub role: FrameRole,
    pub variant: Variant,
    /// The configuration slot of a sequence header or metadata frame in the GOP cache
    /// ([`crate::media::config_key`]); 0 otherwise.
    pub config_key: u16,
    /// Timestamp in milliseconds after the stream's rebasing (monotonic across publisher
    /// reconnects).
    pub timestamp: u32,
    /// The opaque bytes; empty for media, whose body lives in `rtmp`.
    opaque: Bytes,
    /// The message body's length (media).
    payload_len: usize,
    /// RTMP chunk stream bytes; empty for opaque content.
    rtmp: Bytes,
    flv: OnceLock<Bytes>,
    chunk_size: usize,
    /// When the publisher's read that completed this frame returned (benchmark builds only,
    /// see [`super::trace`]).
    #[cfg(feature = "frame-trace")]
    pub ingested: Option<std::time::Instant>,
}

impl EncodedFrame {
    /// Serialises a media frame for RTMP once; FLV is built lazily.
    pub fn media(frame: Frame, chunk_size: usize) -> Self {
        let variant = if crate::media::is_opus_audio(frame.kind, &frame.payload) {
            Variant::Opus
        } else {
            Variant::Common
        };
        Self::media_variant(frame, chunk_size, variant)
    }

    /// Like [`EncodedFrame::media`], for a frame of the given rendition.
    pub fn media_variant(frame: Frame, chunk_size: usize, variant: Variant) -> Self {
        let config_key = match frame.role {
            FrameRole::SequenceHeader | FrameRole::Metadata => {
                crate::media::config_key(frame.kind, &frame.payload)
            }
            _ => 0,
        };
        let csid = csid_of(frame.kind);
        let mut out = BytesMut::with_capacity(rtmp::encoded_len(
            csid,
            frame.timestamp,
            frame.payload.len(),
            chunk_size,
        ));
        rtmp::encode_message(
            &mut out,
            csid,
            frame.timestamp,
            frame.kind.type_id(),
            rtmp::MEDIA_STREAM_ID,
            &frame.payload,
            chunk_size,
        );
        EncodedFrame {
            content: Content::Media(frame.kind),
            role: frame.role,
            variant,
            config_key,
            timestamp: frame.timestamp,
            opaque: Bytes::new(),
            payload_len: frame.payload.len(),
            // Shared (refcounted) from the start: the first watcher's clone must not have to
            // promote a vec-backed buffer, so every clone is a plain refcount increment.
            rtmp: Bytes::from_owner(out),
            flv: OnceLock::new(),
            chunk_size,
            #[cfg(feature = "frame-trace")]
            ingested: super::trace::clock(),
        }
    }

    /// The same media frame stamped `timestamp` (a cached header replayed to a late joiner at
    /// its join frame's time). Opaque frames are returned as they are.
    pub fn restamped(self: &Arc<Self>, timestamp: u32) -> Arc<Self> {
        match self.content {
            Content::Media(kind) if timestamp != self.timestamp => {
                let frame = Frame {
                    kind,
                    timestamp,
                    role: self.role,
                    payload: self.payload(),
                };
                Arc::new(Self::media_variant(frame, self.chunk_size, self.variant))
            }
            _ => self.clone(),
        }
    }

    /// Wraps opaque bytes. `role` is [`FrameRole::Keyframe`] where a watcher may join.
    pub fn opaque(payload: Bytes, role: FrameRole, timestamp: u32) -> Self {
        EncodedFrame {
            content: Content::Opaque,
            role,
            variant: Variant::Common,
            config_key: 0,
            timestamp,
            payload_len: payload.len(),
            opaque: payload,
            rtmp: Bytes::new(),
            flv: OnceLock::new(),
            chunk_size: 0,
            #[cfg(feature = "frame-trace")]
            ingested: super::trace::clock(),
        }
    }

    /// The RTMP chunk bytes, ready to write to any player.
    pub fn rtmp(&self) -> &Bytes {
        &self.rtmp
    }

    /// The FLV tag (header, body, previous-tag-size), built on first use by any core.
    pub fn flv(&self) -> &Bytes {
        self.flv.get_or_init(|| match self.content {
            Content::Media(kind) => {
                let mut out = BytesMut::new();
                let pieces = self.payload_ranges(kind).map(|r| &self.rtmp[r]);
                // Only a payload over FLV's 24-bit size fails, and no ingest admits one.
                match flv::write_tag_from_pieces(
                    &mut out,
                    kind,
                    self.timestamp,
                    self.payload_len,
                    pieces,
                ) {
                    Ok(()) => Bytes::from_owner(out),
                    Err(_) => Bytes::new(),
                }
            }
            Content::Opaque => self.opaque.clone(),
        })
    }

    /// The message body (media) or the opaque bytes. Free (a slice of the RTMP form) when the
    /// body fits in one chunk; a gathering copy otherwise, so hot paths that need only the
    /// codec header bytes use [`EncodedFrame::payload_head`].
    pub fn payload(&self) -> Bytes {
        let Content::Media(kind) = self.content else {
            return self.opaque.clone();
        };
        let mut ranges = self.payload_ranges(kind);
        let first = ranges.next().unwrap_or_default();
        if first.len() == self.payload_len {
            return self.rtmp.slice(first);
        }
        let mut out = BytesMut::with_capacity(self.payload_len);
        out.extend_from_slice(&self.rtmp[first]);
        for range in ranges {
            out.extend_from_slice(&self.rtmp[range]);
        }
        out.freeze()
    }

    /// The body's first bytes without a copy: all of it when it fits in one chunk, otherwise
    /// the first chunk's worth (at least 128 bytes, more than any codec header).
    pub fn payload_head(&self) -> &[u8] {
        let Content::Media(kind) = self.content else {
            return &self.opaque;
        };
        let first = self.payload_ranges(kind).next().unwrap_or_default();
        &self.rtmp[first]
    }

    /// The opaque bytes of an fstream broadcast frame; empty for media.
    pub fn opaque_bytes(&self) -> &Bytes {
        &self.opaque
    }

    /// Where the body lies in the RTMP form of a media frame of `kind`.
    fn payload_ranges(&self, kind: MediaKind) -> impl Iterator<Item = Range<usize>> {
        rtmp::payload_ranges(
            csid_of(kind),
            self.timestamp,
            self.payload_len,
            self.chunk_size,
        )
    }

    /// True when the frame is media (can be carried by RTMP and FLV).
    pub fn is_media(&self) -> bool {
        matches!(self.content, Content::Media(_))
    }

    /// True when this frame may wait (up to `fanout.write_coalesce_us`) for the next one that
    /// cannot, so both leave in one write: audio, metadata and sequence headers. Coded video
    /// frames and opaque bytes wake their watchers at once.
    pub fn may_wait(&self) -> bool {
        match self.content {
            Content::Media(MediaKind::Audio | MediaKind::Script) => true,
            Content::Media(MediaKind::Video) => self.role == FrameRole::SequenceHeader,
            Content::Opaque => false,
        }
    }

    /// Bytes this frame accounts for in ring memory limits.
    pub fn cost(&self) -> usize {
        self.opaque.len() + self.rtmp.len()
    }
}

fn csid_of(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => rtmp::csid::AUDIO,
        MediaKind::Video => rtmp::csid::VIDEO,
        MediaKind::Script => rtmp::csid::DATA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(timestamp: u32, len: usize) -> Frame {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        Frame::new(MediaKind::Video, timestamp, Bytes::from(body))
    }

    #[test]
    fn the_payload_is_read_back_from_the_rtmp_form_whatever_its_chunking() {
        for len in [0, 1, 127, 128, 129, 4096, 4097, 100_000] {
            for timestamp in [0, 0x00ff_ffff, u32::MAX] {
                let frame = video(timestamp, len);
                let encoded = EncodedFrame::media(frame.clone(), 128);
                assert_eq!(
                    encoded.payload(),
                    frame.payload,
                    "len {len} ts {timestamp:#x}"
                );
                let head = &frame.payload[..len.min(128)];
                assert_eq!(encoded.payload_head(), head, "len {len} ts {timestamp:#x}");
            }
        }
    }

    #[test]
    fn a_one_chunk_payload_is_a_slice_of_the_rtmp_form_not_a_copy() {
        let encoded = EncodedFrame::media(video(40, 300), 4096);
        let payload = encoded.payload();
        let rtmp = encoded.rtmp().as_ptr_range();
        assert!(rtmp.contains(&payload.as_ptr()), "shares the RTMP bytes");
    }

    #[test]
    fn a_media_frame_is_kept_once_so_it_costs_its_rtmp_form() {
        let encoded = EncodedFrame::media(video(40, 100_000), 4096);
        assert_eq!(encoded.cost(), encoded.rtmp().len());
        assert!(encoded.cost() < 100_000 + 100, "{}", encoded.cost());
    }

    #[test]
    fn the_flv_tag_is_the_tag_of_the_original_frame() {
        for len in [5, 5000, 100_000] {
            let frame = video(0x0100_0000, len);
            let mut expected = BytesMut::new();
            assert_eq!(flv::write_tag(&mut expected, &frame), Ok(()));
            let encoded = EncodedFrame::media(frame, 4096);
            assert_eq!(encoded.flv()[..], expected[..], "len {len}");
        }
    }

    #[test]
    fn a_restamped_header_carries_the_same_payload() {
        let header = Arc::new(EncodedFrame::media(video(0, 9000), 4096));
        let restamped = header.restamped(1234);
        assert_eq!(restamped.timestamp, 1234);
        assert_eq!(restamped.payload(), header.payload());
    }

    #[test]
    fn opaque_bytes_are_their_own_payload() {
        let bytes = Bytes::from_static(b"FLV\x01 opaque");
        let frame = EncodedFrame::opaque(bytes.clone(), FrameRole::Keyframe, 7);
        assert_eq!(frame.payload(), bytes);
        assert_eq!(frame.payload_head(), &bytes[..]);
        assert_eq!(frame.opaque_bytes(), &bytes);
        assert_eq!(frame.flv(), &bytes);
        assert_eq!(frame.cost(), bytes.len());
    }
}
