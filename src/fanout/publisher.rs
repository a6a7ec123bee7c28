//! A publisher's handle on its stream: rebase timestamps, serialise once, hand to every core.
//!
//! The publisher's own core appends each frame to its local ring directly; every other core gets
//! the same `Arc<EncodedFrame>` through one lock-free hop. A publisher that reconnects within the
//! grace window continues the stream's timeline, so players see monotonic timestamps.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::encoded::EncodedFrame;
use super::hub::{CoreHub, LocalStream};
use super::registry::{PublishClaim, PublishError, StreamShared};
use crate::media::{Frame, FrameRole};
use crate::metrics::Counter;

/// Gap inserted between the last timestamp of a departed publisher and the first of its
/// successor, so decode timestamps stay strictly increasing.
const RESUME_GAP_MS: u32 = 1;

/// The publisher was replaced by another (takeover); it should disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("another publisher took over this stream")]
pub struct Superseded;

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
        }
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
        self.deliver(encoded);
        Ok(())
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
        self.last_timestamp = Some(match self.last_timestamp {
            // Audio and video interleave slightly out of order: keep the newest (wrap-aware).
            Some(last) if (timestamp.wrapping_sub(last) as i32) < 0 => last,
            _ => timestamp,
        });
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
    pub fn finish(self, now: Instant) -> Option<(Arc<StreamShared>, u64)> {
        let released = self.hub.registry().release(
            &self.claim.stream,
            self.claim.generation,
            self.last_timestamp,
            now,
        );
        released.then(|| (self.claim.stream.clone(), self.claim.generation))
    }
}
