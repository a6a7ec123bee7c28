//! A frame serialised once for every egress format, shared by reference count.
//!
//! The publisher's core builds one [`EncodedFrame`] per media message: the RTMP chunk bytes
//! (fmt-0 header, the node-wide outgoing chunk size, message stream id 1) are built eagerly,
//! the FLV tag bytes on first use. Every watcher of every core then writes a clone of the same
//! `Bytes`: a refcount increment, never a copy or a re-chunk.

use std::sync::OnceLock;

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

/// One frame, serialised once, shared by every watcher on every core.
#[derive(Debug)]
pub struct EncodedFrame {
    pub content: Content,
    pub role: FrameRole,
    /// Timestamp in milliseconds after the stream's rebasing (monotonic across publisher
    /// reconnects).
    pub timestamp: u32,
    /// The message body (media) or the opaque bytes.
    pub payload: Bytes,
    /// RTMP chunk stream bytes; empty for opaque content.
    rtmp: Bytes,
    flv: OnceLock<Bytes>,
}

impl EncodedFrame {
    /// Serialises a media frame for RTMP once; FLV is built lazily.
    pub fn media(frame: Frame, chunk_size: usize) -> Self {
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
            timestamp: frame.timestamp,
            payload: frame.payload,
            // Shared (refcounted) from the start: the first watcher's clone must not have to
            // promote a vec-backed buffer, so every clone is a plain refcount increment.
            rtmp: Bytes::from_owner(out),
            flv: OnceLock::new(),
        }
    }

    /// Wraps opaque bytes. `role` is [`FrameRole::Keyframe`] where a watcher may join.
    pub fn opaque(payload: Bytes, role: FrameRole, timestamp: u32) -> Self {
        EncodedFrame {
            content: Content::Opaque,
            role,
            timestamp,
            payload,
            rtmp: Bytes::new(),
            flv: OnceLock::new(),
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
