//! A frame serialised once for every egress format, shared by reference count.
//!
//! The publisher's core builds one [`EncodedFrame`] per media message: the RTMP chunk bytes
//! (fmt-0 header, the node-wide outgoing chunk size, message stream id 1) are built eagerly,
//! the FLV tag bytes on first use. Every watcher of every core then writes a clone of the same
//! `Bytes`: a refcount increment, never a copy or a re-chunk.

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
    /// The message body (media) or the opaque bytes.
    pub payload: Bytes,
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
        let csid = match frame.kind {
            MediaKind::Audio => rtmp::csid::AUDIO,
            MediaKind::Video => rtmp::csid::VIDEO,
            MediaKind::Script => rtmp::csid::DATA,
        };
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
            payload: frame.payload,
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
                    payload: self.payload.clone(),
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
            payload,
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
                let frame = Frame {
                    kind,
                    timestamp: self.timestamp,
                    role: self.role,
                    payload: self.payload.clone(),
                };
                let mut out = BytesMut::with_capacity(flv::tag_len(&frame));
                // Only a payload over FLV's 24-bit size fails, and no ingest admits one.
                match flv::write_tag(&mut out, &frame) {
                    Ok(()) => Bytes::from_owner(out),
                    Err(_) => Bytes::new(),
                }
            }
            Content::Opaque => self.payload.clone(),
        })
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
        self.payload.len() + self.rtmp.len()
    }
}
