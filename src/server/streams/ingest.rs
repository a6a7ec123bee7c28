//! A publisher's life, the same for every ingest: claim the stream name, push frames, and at
//! the end hand the stream to the grace window, after which it ends unless the publisher (or
//! another one) came back.
//!
//! The takeover policy is the ingest's: `ftl.takeover` for FTL (a reconnecting OBS takes its
//! channel back by default), `fanout.takeover` for RTMP and fstream. While an [`Ingest`] lives,
//! its publisher is counted in `ringcast_publishers{protocol}`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;

use crate::fanout::{PublishError, Publisher, Superseded, Variant};
use crate::media::{Frame, FrameRole};
use crate::metrics::{Counter, Protocol, Tracked};
use crate::server::Core;
use crate::server::cluster::Registration;
use crate::server::runtime;

/// A live publisher of one stream on this core.
#[derive(Debug)]
pub struct Ingest {
    core: Rc<Core>,
    publisher: Publisher,
    protocol: Protocol,
    /// The stream name as logs show it (an RTMP key redacted).
    shown: String,
    _counted: Tracked,
    /// The stream's entry in the cluster directory, while this publisher holds it.
    _registration: Option<Registration>,
}

impl Ingest {
    /// Claims `name` for a publisher of `protocol` on `core`. `shown` is the name for logs.
    pub fn claim(
        core: &Rc<Core>,
        protocol: Protocol,
        name: &str,
        shown: String,
    ) -> Result<Self, PublishError> {
        let takeover = match protocol {
            Protocol::Ftl => core.config.ftl.takeover,
            _ => core.config.fanout.takeover,
        };
        // A pull only stands in for the real publisher: a local one always replaces it.
        let takeover = takeover || core.cluster.is_pulling(name);
        let mut ingest = Self::start(core, protocol, name, shown, takeover)?;
        ingest._registration = core.cluster.register(name);
        Ok(ingest)
    }

    /// Claims `name` for a cluster pull (this node relays another node's stream): counted as
    /// an RTMP publisher, never registered in the directory, and never taking over a local
    /// publisher.
    pub fn claim_pulled(core: &Rc<Core>, name: &str, shown: String) -> Result<Self, PublishError> {
        Self::start(core, Protocol::Rtmp, name, shown, false)
    }

    fn start(
        core: &Rc<Core>,
        protocol: Protocol,
        name: &str,
        shown: String,
        takeover: bool,
    ) -> Result<Self, PublishError> {
        let mut publisher =
            Publisher::start_with_takeover(&core.hub, name, Instant::now(), takeover)?;
        publisher.set_log_name(&shown);
        let _counted = core.hub.metrics().track(Counter::Publishers(protocol));
        Ok(Ingest {
            core: core.clone(),
            publisher,
            protocol,
            shown,
            _counted,
            _registration: None,
        })
    }

    /// True if this publisher replaced a live one.
    pub fn took_over(&self) -> bool {
        self.publisher.took_over()
    }

    /// The stream's publisher generation this claim holds.
    pub fn generation(&self) -> u64 {
        self.publisher.stream().generation()
    }

    /// Frames published so far.
    pub fn frames(&self) -> u64 {
        self.publisher.frames()
    }

    /// The stream name as logs show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Serialises `frame` once and delivers it to every core. `Err` once another publisher
    /// took the stream over: the caller should disconnect.
    pub fn push(&mut self, frame: Frame) -> Result<(), Superseded> {
        self.publisher.push(frame)
    }

    /// Delivers a frame only the watchers of one audio rendition see (an `onMetaData` naming
    /// the audio codec); see [`Publisher::push_variant`].
    pub fn push_variant(&mut self, frame: Frame, variant: Variant) -> Result<(), Superseded> {
        self.publisher.push_variant(frame, variant)
    }

    /// Delivers opaque bytes (an fstream broadcast); see [`Publisher::push_opaque`].
    pub fn push_opaque(
        &mut self,
        bytes: Bytes,
        role: FrameRole,
        timestamp: u32,
    ) -> Result<(), Superseded> {
        self.publisher.push_opaque(bytes, role, timestamp)
    }

    /// Ends this publisher. The stream outlives it by `fanout.publisher_grace_ms`, so a
    /// publisher that reconnects continues it (watchers see a pause, not an end); after that
    /// it ends unless someone re-published.
    pub fn end(self) {
        let Ingest {
            core,
            publisher,
            protocol,
            shown,
            _counted,
            _registration,
        } = self;
        // The directory entry goes at once (its owner only): the publisher may come back on
        // another node, which should not wait for it to lapse.
        drop(_registration);
        let Some((stream, generation)) = publisher.finish(Instant::now()) else {
            // Superseded by a takeover: the new publisher owns the stream now.
            return;
        };
        let registry = core.hub.registry().clone();
        let grace = Duration::from_millis(core.config.fanout.publisher_grace_ms);
        let protocol = protocol.label();
        runtime::spawn(async move {
            runtime::sleep(grace).await;
            if registry.expire(&stream, generation, Instant::now()) {
                info!(stream = %shown, protocol, "stream ended: publisher did not return within the grace window");
            }
        })
        .detach();
    }
}
