//! A publisher's handle on its stream: rebase timestamps, serialise once, hand to every core.
//!
//! The publisher's own core appends each frame to its local ring directly; every other core gets
//! the same `Arc<EncodedFrame>` through one lock-free hop. A publisher that reconnects within the
//! grace window continues the stream's timeline, so players see monotonic timestamps.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use std::sync::atomic::Ordering;

use super::encoded::{EncodedFrame, Variant};
use super::hub::{CoreHub, LocalStream};
use super::registry::{PublishClaim, PublishError, StreamShared};
use crate::media::aac::{self, AacRendition, AacStats};
use crate::media::{Frame, FrameRole, MediaKind};
use crate::metrics::Counter;

/// Gap inserted between the last timestamp of a departed publisher and the first of its
/// successor, so decode timestamps stay strictly increasing.
const RESUME_GAP_MS: u32 = 1;

/// The publisher was replaced by another (takeover); it should disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("another publisher took over this stream")]
pub struct Superseded;

/// A publisher's AAC rendition and what starting one needs.
#[derive(Debug, Default)]
struct AacState {
    /// The stream's AAC rendition, while any watcher wants AAC (see [`crate::media::aac`]).
    rendition: Option<AacRendition>,
    /// The last Opus `SequenceStart` body (its `OpusHead` tells the channel count).
    opus_head: Option<Bytes>,
    /// Set once the rendition failed to start, so it is not retried on every packet.
    failed: bool,
    /// Counters of the renditions this publisher ran, added up.
    stats: AacStats,
}

/// A live publisher of one stream.
#[derive(Debug)]
pub struct Publisher {
    hub: Rc<CoreHub>,
    local: Rc<LocalStream>,
    claim: PublishClaim,
    /// Added (wrapping) to every incoming timestamp; fixed at the first frame.
    offset: Option<u32>,
    last_timestamp: Option<u32>,
    frames: u64,
    /// The AAC rendition's state (boxed: it is large and most publishers never run it).
    audio: Box<AacState>,
    /// The stream's name in logs (see [`Publisher::set_log_name`]).
    shown: String,
}

impl Publisher {
    /// Claims `name` for a publisher on `hub`'s core, under the registry's takeover policy.
    pub fn start(hub: &Rc<CoreHub>, name: &str, now: Instant) -> Result<Self, PublishError> {
        let claim = hub.registry().claim(name, now)?;
        Ok(Self::with_claim(hub, name, claim))
    }

    /// Claims `name` with an explicit takeover policy (the ingest's own, e.g. `ftl.takeover`).
    pub fn start_with_takeover(
        hub: &Rc<CoreHub>,
        name: &str,
        now: Instant,
        takeover: bool,
    ) -> Result<Self, PublishError> {
        let claim = hub.registry().claim_with_takeover(name, now, takeover)?;
        Ok(Self::with_claim(hub, name, claim))
    }

    fn with_claim(hub: &Rc<CoreHub>, name: &str, claim: PublishClaim) -> Self {
        let local = hub.local(name);
        Publisher {
            hub: hub.clone(),
            local,
            claim,
            offset: None,
            last_timestamp: None,
            frames: 0,
            audio: Box::default(),
            shown: match name.split_once('/') {
                Some((app, key)) => format!("{app}/{}", crate::config::redact_key(key)),
                None => crate::config::redact_key(name),
            },
        }
    }

    /// Sets the stream's name as logs show it (`Config::shown_stream_name`); until then the
    /// key part is redacted, as for an RTMP stream key.
    pub fn set_log_name(&mut self, shown: &str) {
        self.shown = shown.to_owned();
    }

    /// True if this publisher replaced a live one.
    pub fn took_over(&self) -> bool {
        self.claim.took_over
    }

    pub fn stream(&self) -> &Arc<StreamShared> {
        &self.claim.stream
    }

    /// Frames published so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Serialises `frame` once and delivers it to every core.
    pub fn push(&mut self, mut frame: Frame) -> Result<(), Superseded> {
        frame.timestamp = self.rebase(frame.timestamp)?;
        let encoded = Arc::new(EncodedFrame::media(frame, self.hub.chunk_size()));
        let opus = encoded.variant == Variant::Opus;
        self.deliver(encoded.clone());
        if opus {
            self.render_aac(&encoded);
        }
        Ok(())
    }

    /// Pushes a frame meant only for the watchers of one audio rendition (an ingest's
    /// `onMetaData` that names the audio codec: one for Opus players, one for AAC players).
    /// `onMetaData` is stamped 0, where FLV demuxers read it as the stream's header.
    pub fn push_variant(&mut self, mut frame: Frame, variant: Variant) -> Result<(), Superseded> {
        if frame.role == FrameRole::Metadata {
            if self.claim.stream.generation() != self.claim.generation {
                return Err(Superseded);
            }
            frame.timestamp = 0;
        } else {
            frame.timestamp = self.rebase(frame.timestamp)?;
        }
        let encoded = EncodedFrame::media_variant(frame, self.hub.chunk_size(), variant);
        self.deliver(Arc::new(encoded));
        Ok(())
    }

    /// Feeds an Opus frame to the stream's AAC rendition, starting it when the first watcher
    /// that wants AAC appeared and stopping it when the last one left.
    fn render_aac(&mut self, frame: &EncodedFrame) {
        let payload = frame.payload();
        let packet_type = payload.first().map(|b| b & 0x0f);
        if packet_type == Some(0) {
            self.audio.opus_head = Some(payload.slice(5..));
        }
        let wanted = self.claim.stream.aac_demand.load(Ordering::Acquire) > 0;
        if !wanted {
            if let Some(aac) = self.audio.rendition.take() {
                self.stop_aac(aac);
            }
            self.audio.failed = false;
            return;
        }
        if packet_type != Some(1) || self.audio.failed {
            return;
        }
        let packet = payload.get(5..).unwrap_or_default();
        if self.audio.rendition.is_none() {
            let channels = aac::channels_of(self.audio.opus_head.as_deref(), packet);
            match AacRendition::new(channels, self.hub.aac_bitrate_kbps()) {
                Ok(aac) => {
                    tracing::info!(
                        stream = %self.shown,
                        channels,
                        bitrate_kbps = self.hub.aac_bitrate_kbps(),
                        "AAC rendition started"
                    );
                    let header = aac.sequence_header().clone();
                    self.deliver_aac(frame.timestamp, header);
                    self.audio.rendition = Some(aac);
                }
                Err(error) => {
                    tracing::warn!(stream = %self.shown, %error, "AAC rendition unavailable");
                    self.audio.failed = true;
                    return;
                }
            }
        }
        let mut out: [Option<(u32, Bytes)>; 8] = Default::default();
        let mut n = 0;
        let Some(aac) = self.audio.rendition.as_mut() else {
            return;
        };
        let skipped = aac
            .push_opus(frame.timestamp, packet, |ts, body| {
                if let Some(slot) = out.get_mut(n) {
                    *slot = Some((ts, body));
                    n += 1;
                }
            })
            .is_err();
        if skipped {
            tracing::debug!(stream = %self.shown, "AAC rendition skipped a packet that is not Opus audio");
        }
        for (ts, body) in out.into_iter().flatten() {
            self.deliver_aac(ts, body);
        }
    }

    fn deliver_aac(&mut self, timestamp: u32, body: Bytes) {
        let frame = Frame::new(MediaKind::Audio, timestamp, body);
        let encoded = EncodedFrame::media_variant(frame, self.hub.chunk_size(), Variant::Aac);
        self.deliver(Arc::new(encoded));
    }

    fn stop_aac(&mut self, aac: AacRendition) {
        let stats = aac.stats();
        self.audio.stats.opus_packets += stats.opus_packets;
        self.audio.stats.aac_frames += stats.aac_frames;
        self.audio.stats.skipped += stats.skipped;
        self.audio.stats.resyncs += stats.resyncs;
        tracing::info!(
            stream = %self.shown,
            opus_packets = stats.opus_packets,
            aac_frames = stats.aac_frames,
            skipped_packets = stats.skipped,
            resyncs = stats.resyncs,
            "AAC rendition stopped"
        );
    }

    /// True while this publisher runs the stream's AAC rendition.
    pub fn aac_running(&self) -> bool {
        self.audio.rendition.is_some()
    }

    /// Counters of the AAC renditions this publisher ran (the running one included).
    pub fn aac_stats(&self) -> AacStats {
        let mut total = self.audio.stats;
        if let Some(aac) = &self.audio.rendition {
            let s = aac.stats();
            total.opus_packets += s.opus_packets;
            total.aac_frames += s.aac_frames;
            total.skipped += s.skipped;
            total.resyncs += s.resyncs;
        }
        total
    }

    /// Delivers opaque bytes (an fstream broadcast) to every core, shared like media frames.
    /// `role` is [`FrameRole::Keyframe`] where a new watcher may start (an Annex-B SPS/IDR join
    /// point); `timestamp` is the broadcast's clock in milliseconds, which drives the same lag
    /// policy as media timestamps.
    pub fn push_opaque(
        &mut self,
        bytes: Bytes,
        role: FrameRole,
        timestamp: u32,
    ) -> Result<(), Superseded> {
        let timestamp = self.rebase(timestamp)?;
        self.deliver(Arc::new(EncodedFrame::opaque(bytes, role, timestamp)));
        Ok(())
    }

    /// Checks the claim and moves `timestamp` onto the stream's timeline.
    fn rebase(&mut self, timestamp: u32) -> Result<u32, Superseded> {
        if self.claim.stream.generation() != self.claim.generation {
            return Err(Superseded);
        }
        let offset = *self
            .offset
            .get_or_insert_with(|| match self.claim.resume_after {
                Some(last) => last.wrapping_add(RESUME_GAP_MS).wrapping_sub(timestamp),
                None => 0,
            });
        let timestamp = timestamp.wrapping_add(offset);
        let newest = match self.last_timestamp {
            // Audio and video interleave slightly out of order: keep the newest (wrap-aware).
            Some(last) if (timestamp.wrapping_sub(last) as i32) < 0 => last,
            _ => timestamp,
        };
        if self.last_timestamp != Some(newest) {
            self.claim.stream.note_timestamp(newest);
        }
        self.last_timestamp = Some(newest);
        Ok(timestamp)
    }

    fn deliver(&mut self, encoded: Arc<EncodedFrame>) {
        self.hub
            .registry()
            .forward(&self.claim.stream, self.hub.core(), &encoded);
        self.local.push(encoded);
        self.frames += 1;
        self.hub.metrics().add(Counter::FramesIngested, 1);
    }

    /// Ends this publisher. Returns the stream and generation to expire after the grace window,
    /// or `None` if it had already been superseded.
    pub fn finish(mut self, now: Instant) -> Option<(Arc<StreamShared>, u64)> {
        if let Some(aac) = self.audio.rendition.take() {
            self.stop_aac(aac);
        }
        let released = self.hub.registry().release(
            &self.claim.stream,
            self.claim.generation,
            self.last_timestamp,
            now,
        );
        released.then(|| (self.claim.stream.clone(), self.claim.generation))
    }
}
