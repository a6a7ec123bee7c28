//! One core's view of the fan-out: its local copy of every stream and the watchers on it.
//!
//! Everything here is `Rc`/`RefCell`/`Cell`: a [`CoreHub`] never leaves its core. Frames reach
//! a [`LocalStream`] either directly (the publisher is on this core) or through the core's
//! inbox (see [`super::registry`]); either way they are appended once to the local ring, and the
//! waiting watchers are woken once each.

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::encoded::EncodedFrame;
use super::registry::{Registry, StreamMsg, StreamShared};
use super::ring::{AudioMode, Cursor, Egress, Fill, Ring, RingLimits};
use super::wake::DeferredWakes;
use crate::metrics::CoreMetrics;

/// Whether a stream currently has a publisher, as a watcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// No publisher yet, or waiting out the grace window after one left.
    Waiting,
    Live,
    /// Over: watchers should close.
    Ended,
}

/// A stream on this core: the ring plus the watchers waiting for it to grow.
#[derive(Debug)]
pub struct LocalStream {
    pub shared: Arc<StreamShared>,
    ring: RefCell<Ring>,
    state: Cell<StreamState>,
    /// Bumped on every change a watcher may care about (new frames, state changes).
    version: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// Spare vector swapped with `waiters` while waking, so waking never allocates.
    waking: RefCell<Vec<Waker>>,
    /// Wakers held back by frames that may wait (see [`super::wake`]), until a frame that may
    /// not or until the hold is old enough.
    held: RefCell<Vec<Waker>>,
    /// Numbers this stream's holds (see [`DeferredWakes`]): bumped when a hold begins. Whether
    /// one is on is the ring's to say ([`Ring::is_holding`]): it keeps the held frames.
    hold_id: Cell<u64>,
    /// The core's coalescing window, when `fanout.write_coalesce_us` is on.
    deferred: Option<Rc<DeferredWakes>>,
    watchers: Cell<usize>,
}

impl LocalStream {
    fn new(
        shared: Arc<StreamShared>,
        limits: RingLimits,
        deferred: Option<Rc<DeferredWakes>>,
    ) -> Self {
        let state = if shared.is_live() {
            StreamState::Live
        } else {
            StreamState::Waiting
        };
        LocalStream {
            shared,
            ring: RefCell::new(Ring::new(limits)),
            state: Cell::new(state),
            version: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            waking: RefCell::new(Vec::new()),
            held: RefCell::new(Vec::new()),
            hold_id: Cell::new(0),
            deferred,
            watchers: Cell::new(0),
        }
    }

    pub fn state(&self) -> StreamState {
        self.state.get()
    }

    pub fn ring(&self) -> Ref<'_, Ring> {
        self.ring.borrow()
    }

    /// Number of watchers on this core.
    pub fn watchers(&self) -> usize {
        self.watchers.get()
    }

    /// Appends a frame and wakes the watchers (or holds their wakes, see [`super::wake`]).
    pub fn push(self: &Rc<Self>, frame: Arc<EncodedFrame>) {
        let may_wait = self.append(frame);
        self.changed(may_wait);
    }

    /// Appends a frame to the ring; returns whether it may wait. With coalescing on and
    /// watchers here, a frame that may wait is held back from fills: it joins the current hold,
    /// or starts one, timed by the core's [`DeferredWakes`]. A frame that may not wait ends the
    /// hold: it carries the held ones with it.
    fn append(self: &Rc<Self>, frame: Arc<EncodedFrame>) -> bool {
        let may_wait = frame.may_wait();
        super::trace::ring(&frame);
        let mut ring = self.ring.borrow_mut();
        ring.push(frame);
        if !may_wait {
            ring.end_hold();
        } else if let Some(deferred) = &self.deferred
            && self.watchers.get() > 0
            && ring.hold_newest()
        {
            self.hold_id.set(self.hold_id.get().wrapping_add(1));
            deferred.hold(self.clone(), self.hold_id.get());
        }
        may_wait
    }

    /// Applies one message from another core; returns whether it may wait for the next one
    /// before the watchers are woken (only frames that may wait do).
    fn apply(self: &Rc<Self>, msg: Option<StreamMsg>) -> bool {
        match msg {
            None => self.ring.borrow_mut().discontinuity(),
            Some(StreamMsg::Frame(frame)) => return self.append(frame),
            Some(StreamMsg::PublisherJoined) => self.state.set(StreamState::Live),
            Some(StreamMsg::PublisherLeft) => self.state.set(StreamState::Waiting),
            Some(StreamMsg::Ended) => self.state.set(StreamState::Ended),
        }
        false
    }

    /// Bumps the version and wakes every waiting watcher once, with what was held before;
    /// while the stream holds (a change that `may_wait`, coalescing on), the wakes are held
    /// too. Any other change ends the hold.
    fn changed(&self, may_wait: bool) {
        self.version.set(self.version.get().wrapping_add(1));
        if may_wait && self.ring.borrow().is_holding() {
            self.held
                .borrow_mut()
                .append(&mut self.waiters.borrow_mut());
            return;
        }
        self.end_hold();
    }

    /// Ends hold `id` if it is still the stream's current one (a frame that may not wait may
    /// have ended it already) and wakes its watchers; returns how many. Called when the hold
    /// is old enough. The held frames become deliverable, which is a change: the version moves,
    /// or a watcher that went back to waiting after they arrived would sleep through it.
    pub(super) fn release_held(&self, id: u64) -> usize {
        if id != self.hold_id.get() || !self.ring.borrow().is_holding() {
            return 0;
        }
        self.version.set(self.version.get().wrapping_add(1));
        self.end_hold()
    }

    /// Ends the hold (the ring gives the held frames to fills again) and wakes every watcher
    /// waiting or held; returns how many.
    fn end_hold(&self) -> usize {
        self.ring.borrow_mut().end_hold();
        let mut waking = self.waking.borrow_mut();
        std::mem::swap(&mut *waking, &mut *self.waiters.borrow_mut());
        waking.append(&mut self.held.borrow_mut());
        let woken = waking.len();
        self.wake_in_turn(&mut waking);
        woken
    }

    /// Wakes (and empties) `wakers`, starting at an offset that moves with every version.
    /// Woken tasks run, and queue their wakers again, in the order they were woken: without the
    /// offset the watcher that joined first would always be served first and the last one
    /// always last, a whole core's worth of sends behind. The offset follows a Weyl sequence
    /// (the version times the golden ratio), so every position comes first in turn.
    fn wake_in_turn(&self, wakers: &mut Vec<Waker>) {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let spread = self.version.get().wrapping_mul(GOLDEN) >> 32;
        let start = usize::try_from(spread % wakers.len().max(1) as u64).unwrap_or(0);
        // From `start` to the end, then from the front: no element is moved to reorder.
        for waker in wakers.drain(start..) {
            waker.wake();
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }

    /// Ready once the stream changed since `seen` (which is then updated). The waker is queued
    /// at most once per version (`registered` remembers the version it was queued for): a
    /// watcher woken by something else meanwhile (its connection's control bytes) and polled
    /// again must not be queued, and woken, twice.
    pub fn poll_changed(
        &self,
        cx: &mut Context<'_>,
        seen: &mut u64,
        registered: &mut Option<u64>,
    ) -> Poll<()> {
        let now = self.version.get();
        if now != *seen {
            *seen = now;
            return Poll::Ready(());
        }
        if *registered != Some(now) {
            *registered = Some(now);
            self.waiters.borrow_mut().push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The outgoing RTMP chunk size unless the hub is told otherwise (`rtmp.chunk_size`'s default).
pub const DEFAULT_CHUNK_SIZE: usize = 4096;

/// The fan-out state of one core.
#[derive(Debug)]
pub struct CoreHub {
    core: usize,
    registry: Arc<Registry>,
    limits: RingLimits,
    /// The RTMP chunk size every frame published on this core is serialised with.
    chunk_size: usize,
    streams: RefCell<HashMap<String, Rc<LocalStream>>>,
    deferred: Option<Rc<DeferredWakes>>,
    metrics: CoreMetrics,
    aac_bitrate_kbps: u32,
}

/// The AAC rendition's bitrate unless configured (`[audio] aac_bitrate_kbps`).
pub const DEFAULT_AAC_BITRATE_KBPS: u32 = 128;

impl CoreHub {
    pub fn new(core: usize, registry: Arc<Registry>, limits: RingLimits) -> Self {
        CoreHub {
            core,
            registry,
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: RefCell::new(HashMap::new()),
            deferred: None,
            metrics: CoreMetrics::detached(),
            aac_bitrate_kbps: DEFAULT_AAC_BITRATE_KBPS,
        }
    }

    /// Sets the bitrate of the AAC renditions this core's publishers make.
    pub fn with_aac_bitrate(mut self, kbps: u32) -> Self {
        self.aac_bitrate_kbps = kbps;
        self
    }

    /// The bitrate of the AAC renditions this core's publishers make, in kbit/s.
    pub fn aac_bitrate_kbps(&self) -> u32 {
        self.aac_bitrate_kbps
    }

    /// Serialises frames published on this core with RTMP chunks of `chunk_size` bytes (the
    /// node's `rtmp.chunk_size`), so every player gets the same bytes.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// The outgoing RTMP chunk size of frames published on this core.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Counts this core's fan-out (frames ingested) in `metrics`, the node's block for this
    /// core, instead of a detached one.
    pub fn with_metrics(mut self, metrics: CoreMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// This core's counters.
    pub fn metrics(&self) -> &CoreMetrics {
        &self.metrics
    }

    /// Defers this core's watcher wakes to a coalescing window; the caller runs the window
    /// (waits on [`CoreHub::deferred_wakes`], sleeps, wakes them all).
    pub fn deferring_wakes(mut self) -> Self {
        self.deferred = Some(Rc::new(DeferredWakes::default()));
        self
    }

    /// The wakes held back for the coalescing window, if coalescing is on.
    pub fn deferred_wakes(&self) -> Option<&Rc<DeferredWakes>> {
        self.deferred.as_ref()
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// This core's copy of `name`, created (empty, waiting) if needed. The registry is asked
    /// every time, so a copy of a stream the registry has since forgotten is replaced rather
    /// than handed out (one lock per publisher or watcher start, never per frame).
    pub fn local(&self, name: &str) -> Rc<LocalStream> {
        let shared = self.registry.stream(name);
        self.local_for(&shared)
    }

    fn local_for(&self, shared: &Arc<StreamShared>) -> Rc<LocalStream> {
        let mut streams = self.streams.borrow_mut();
        match streams.get(&shared.name) {
            // A stream that ended and was re-created has a new `StreamShared`: replace ours.
            Some(local) if Arc::ptr_eq(&local.shared, shared) => local.clone(),
            _ => {
                let local = Rc::new(LocalStream::new(
                    shared.clone(),
                    self.limits.clone(),
                    self.deferred.clone(),
                ));
                streams.insert(shared.name.clone(), local.clone());
                local
            }
        }
    }

    /// Applies everything other cores (and state changes) sent to this core, then wakes the
    /// watchers of each stream that changed, once.
    pub fn drain_inbox(&self) {
        let Some(inbox) = self.registry.inbox(self.core) else {
            return;
        };
        while let Some(shared) = inbox.pop_ready() {
            let local = self.local_for(&shared);
            let mut may_wait = true;
            shared.drain(self.core, |msg| may_wait &= local.apply(msg));
            local.changed(may_wait);
            if local.state() == StreamState::Ended {
                self.streams.borrow_mut().remove(&shared.name);
            }
        }
    }

    /// Starts a watcher of `name` on this core, positioned at the newest keyframe.
    pub fn watch(&self, name: &str, egress: Egress) -> Watcher {
        let shared = self.registry.watch(name);
        let stream = self.local_for(&shared);
        stream.watchers.set(stream.watchers.get() + 1);
        let cursor = stream.ring().join();
        Watcher {
            stream,
            cursor,
            egress,
            seen_version: u64::MAX,
            registered_version: None,
            bytes_sent: 0,
        }
    }

    /// Forgets `name` if nobody ever published it and its watchers are gone: this core's copy
    /// once it has no watcher here, the registry's entry once no core has one. Drivers call it
    /// after a watcher ends, so a watcher of a name never published (a typo, a scanner) leaves
    /// nothing behind. A stream that had a publisher stays (its grace window, its GOP cache)
    /// until it ends. Returns true if the registry's entry went too.
    pub fn forget_if_unused(&self, name: &str) -> bool {
        let mut streams = self.streams.borrow_mut();
        let Some(local) = streams.get(name) else {
            return false;
        };
        if local.watchers() > 0 || local.shared.generation() > 0 {
            return false;
        }
        let shared = local.shared.clone();
        streams.remove(name);
        drop(streams);
        self.registry.forget_if_unused(&shared)
    }

    /// Number of streams present on this core.
    pub fn stream_count(&self) -> usize {
        self.streams.borrow().len()
    }
}

/// One watcher's subscription: its cursor into the local ring and its counters.
#[derive(Debug)]
pub struct Watcher {
    stream: Rc<LocalStream>,
    cursor: Cursor,
    egress: Egress,
    seen_version: u64,
    /// The stream version this watcher's waker is queued for, if any.
    registered_version: Option<u64>,
    /// Bytes this watcher's writer reported as written.
    pub bytes_sent: u64,
}

impl Watcher {
    /// Appends this watcher's next slices (refcount clones) to `batch`.
    pub fn fill(
        &mut self,
        now: Instant,
        batch: &mut Vec<Bytes>,
        max_items: usize,
        max_bytes: usize,
    ) -> Fill {
        self.stream.ring().fill(
            &mut self.cursor,
            self.egress,
            now,
            batch,
            max_items,
            max_bytes,
        )
    }

    /// [`Watcher::fill`] for a writer that serialises frames itself (see [`Ring::fill_with`]).
    pub fn fill_with(
        &mut self,
        now: Instant,
        max_items: usize,
        max_bytes: usize,
        take: impl FnMut(&Arc<EncodedFrame>) -> Option<usize>,
    ) -> Fill {
        self.stream
            .ring()
            .fill_with(&mut self.cursor, now, max_items, max_bytes, take)
    }

    /// The stream's cached video sequence header, if any.
    pub fn video_header(&self) -> Option<Arc<EncodedFrame>> {
        self.stream.ring().video_header().cloned()
    }

    /// How far (in media time) this watcher's next frame is behind the newest one.
    pub fn lag(&self) -> std::time::Duration {
        self.stream.ring().lag(&self.cursor)
    }

    /// Ready when the stream has new frames or a new state.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.stream
            .poll_changed(cx, &mut self.seen_version, &mut self.registered_version)
    }

    pub fn state(&self) -> StreamState {
        self.stream.state()
    }

    /// Chooses the audio this watcher is sent: [`AudioMode::Aac`] (the stream's AAC rendition
    /// of Opus audio, made once per stream while any watcher asks for it), passthrough, or none.
    /// Without the `aac` feature, AAC falls back to passthrough. Call it before the first fill;
    /// calling it later is allowed (the next fill follows the new mode).
    pub fn set_audio(&mut self, mode: AudioMode) {
        let mode = match mode {
            AudioMode::Aac if !crate::media::aac::AVAILABLE => AudioMode::Passthrough,
            mode => mode,
        };
        let demand = &self.stream.shared.aac_demand;
        match (self.cursor.audio == AudioMode::Aac, mode == AudioMode::Aac) {
            (false, true) => {
                demand.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                demand.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        self.cursor.audio = mode;
    }

    /// The audio this watcher is sent.
    pub fn audio(&self) -> AudioMode {
        self.cursor.audio
    }

    /// Changes the serialised form this watcher writes. Used before its first write, when the
    /// protocol learns what the stream carries only after subscribing (an fstream watcher that
    /// joined before its broadcaster).
    pub fn set_egress(&mut self, egress: Egress) {
        self.egress = egress;
    }

    pub fn stream_name(&self) -> &str {
        &self.stream.shared.name
    }

    /// Bytes per second this watcher's stream carries in its serialised form, measured over
    /// the frames in the ring (`None` before there is enough to measure).
    pub fn stream_rate(&self) -> Option<u64> {
        self.stream.ring().egress_rate(self.egress)
    }

    /// Frames this watcher skipped under the slow-watcher policy.
    pub fn dropped_frames(&self) -> u64 {
        self.cursor.dropped_frames
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.cursor.audio == AudioMode::Aac {
            self.stream.shared.aac_demand.fetch_sub(1, Ordering::AcqRel);
        }
        self.stream
            .watchers
            .set(self.stream.watchers.get().saturating_sub(1));
        self.stream
            .shared
            .watcher_count
            .fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake, Waker};
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::fanout::{PublishPolicy, Publisher};
    use crate::media::{Frame, MediaKind};

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn one_core() -> Rc<CoreHub> {
        let registry = Arc::new(Registry::new(
            1,
            PublishPolicy {
                takeover: false,
                grace: Duration::ZERO,
            },
        ));
        Rc::new(CoreHub::new(0, registry, RingLimits::default()))
    }

    #[test]
    fn a_watcher_polled_twice_between_frames_is_woken_once() {
        let hub = one_core();
        let mut publisher = Publisher::start(&hub, "live/wake", Instant::now()).unwrap();
        let mut watcher = hub.watch("live/wake", Egress::Rtmp);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        // The first poll sees the initial version; the next two are pending (the second as if
        // the task had been woken by its connection instead).
        let _ = watcher.poll_changed(&mut cx);
        assert!(watcher.poll_changed(&mut cx).is_pending());
        assert!(watcher.poll_changed(&mut cx).is_pending());
        let payload = Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]);
        publisher
            .push(Frame::new(MediaKind::Video, 0, payload))
            .unwrap();
        assert_eq!(counter.0.load(Ordering::Relaxed), 1, "woken exactly once");
        assert!(watcher.poll_changed(&mut cx).is_ready());
    }

    /// Records, in a log shared by all watchers, which watcher was woken.
    struct OrderWaker {
        id: usize,
        log: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl Wake for OrderWaker {
        fn wake(self: Arc<Self>) {
            self.log.lock().unwrap().push(self.id);
        }
    }

    #[test]
    fn watchers_are_woken_once_each_but_not_always_in_the_same_order() {
        const WATCHERS: usize = 8;
        let hub = one_core();
        let mut publisher = Publisher::start(&hub, "live/order", Instant::now()).unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut watchers: Vec<_> = (0..WATCHERS)
            .map(|id| {
                let waker = Waker::from(Arc::new(OrderWaker {
                    id,
                    log: log.clone(),
                }));
                (hub.watch("live/order", Egress::Rtmp), waker)
            })
            .collect();
        // Everyone parks, in joining order.
        for (watcher, waker) in &mut watchers {
            let mut cx = Context::from_waker(waker);
            let _ = watcher.poll_changed(&mut cx);
            assert!(watcher.poll_changed(&mut cx).is_pending());
        }
        let mut firsts = std::collections::HashSet::new();
        for ts in 0..16 {
            publisher.push(keyframe(ts * 33)).unwrap();
            let order = std::mem::take(&mut *log.lock().unwrap());
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..WATCHERS).collect::<Vec<_>>(), "each once");
            firsts.insert(order[0]);
            // As an executor would: each woken task runs, sees the frame and parks again, in
            // the order it was woken.
            for id in order {
                let (watcher, waker) = &mut watchers[id];
                let mut cx = Context::from_waker(waker);
                assert!(watcher.poll_changed(&mut cx).is_ready());
                assert!(watcher.poll_changed(&mut cx).is_pending());
            }
        }
        assert!(
            firsts.len() >= WATCHERS / 2,
            "the first watcher served moves around: {firsts:?}"
        );
    }

    fn two_cores() -> (Arc<Registry>, Rc<CoreHub>, Rc<CoreHub>) {
        let registry = Arc::new(Registry::new(
            2,
            PublishPolicy {
                takeover: false,
                grace: Duration::ZERO,
            },
        ));
        let hub = |core| Rc::new(CoreHub::new(core, registry.clone(), RingLimits::default()));
        (registry.clone(), hub(0), hub(1))
    }

    fn keyframe(ts: u32) -> Frame {
        Frame::new(
            MediaKind::Video,
            ts,
            Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]),
        )
    }

    #[test]
    fn a_name_nobody_published_is_forgotten_when_its_last_watcher_leaves() {
        let (registry, hub0, hub1) = two_cores();
        let w0 = hub0.watch("live/typo", Egress::Rtmp);
        let w1 = hub1.watch("live/typo", Egress::Rtmp);
        drop(w0);
        assert!(!hub0.forget_if_unused("live/typo"), "core 1 still waits");
        assert_eq!(hub0.stream_count(), 0);
        assert!(registry.get("live/typo").is_some());
        drop(w1);
        assert!(hub1.forget_if_unused("live/typo"));
        assert_eq!(hub1.stream_count(), 0);
        assert!(registry.get("live/typo").is_none());

        // A stream that had a publisher is kept for its GOP cache and grace window.
        let mut publisher = Publisher::start(&hub0, "live/real", Instant::now()).unwrap();
        publisher.push(keyframe(0)).unwrap();
        drop(hub0.watch("live/real", Egress::Rtmp));
        assert!(!hub0.forget_if_unused("live/real"));
        assert!(registry.get("live/real").is_some());
        assert_eq!(hub0.stream_count(), 1);
    }

    #[test]
    fn a_copy_of_a_forgotten_stream_is_replaced_before_a_new_watcher_joins() {
        let (registry, hub0, hub1) = two_cores();
        // Core 1's copy outlives the registry entry (its driver has not cleaned up yet).
        drop(hub1.watch("live/late", Egress::Rtmp));
        drop(hub0.watch("live/late", Egress::Rtmp));
        assert!(hub0.forget_if_unused("live/late"));
        assert!(registry.get("live/late").is_none());
        assert_eq!(hub1.stream_count(), 1, "core 1's stale copy");

        // A watcher joining on core 1 must see the frames of the stream published now.
        let mut watcher = hub1.watch("live/late", Egress::Rtmp);
        let mut publisher = Publisher::start(&hub0, "live/late", Instant::now()).unwrap();
        publisher.push(keyframe(0)).unwrap();
        hub1.drain_inbox();
        let mut batch = Vec::new();
        assert_eq!(
            watcher.fill(Instant::now(), &mut batch, 16, 1 << 20),
            Fill::Ready
        );
        assert!(!batch.is_empty(), "the watcher is on an orphaned copy");
    }

    /// A coalescing core, a live stream on it and one watcher parked on a counting waker.
    fn coalescing_watcher(
        name: &str,
    ) -> (Rc<CoreHub>, Publisher, Watcher, Arc<CountingWaker>, Waker) {
        let registry = Arc::new(Registry::new(
            1,
            PublishPolicy {
                takeover: false,
                grace: Duration::ZERO,
            },
        ));
        let hub = Rc::new(CoreHub::new(0, registry, RingLimits::default()).deferring_wakes());
        let (publisher, watcher, counter, waker) = parked_watcher(&hub, name);
        (hub, publisher, watcher, counter, waker)
    }

    /// A live stream `name` on `hub` and one watcher of it parked on a counting waker.
    fn parked_watcher(
        hub: &Rc<CoreHub>,
        name: &str,
    ) -> (Publisher, Watcher, Arc<CountingWaker>, Waker) {
        let mut publisher = Publisher::start(hub, name, Instant::now()).unwrap();
        publisher.push(keyframe(0)).unwrap();
        let mut watcher = hub.watch(name, Egress::Rtmp);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let _ = watcher.poll_changed(&mut cx);
        assert!(watcher.poll_changed(&mut cx).is_pending());
        (publisher, watcher, counter, waker)
    }

    /// Ticks the core's window until every hold made so far has ended (two half windows);
    /// returns how many watchers were woken.
    fn let_every_hold_end(hub: &CoreHub) -> usize {
        let deferred = hub.deferred_wakes().unwrap();
        deferred.tick() + deferred.tick()
    }

    fn wakes(counter: &CountingWaker) -> usize {
        counter.0.load(Ordering::Relaxed)
    }

    /// Consumes a wake and parks the watcher again.
    fn repark(watcher: &mut Watcher, waker: &Waker) {
        let mut cx = Context::from_waker(waker);
        assert!(watcher.poll_changed(&mut cx).is_ready());
        assert!(watcher.poll_changed(&mut cx).is_pending());
    }

    #[test]
    fn held_audio_is_released_by_the_second_tick_after_its_hold() {
        let (hub, mut publisher, _watcher, counter, _waker) = coalescing_watcher("live/tick");
        let deferred = hub.deferred_wakes().unwrap().clone();
        publisher.push(audio(10)).unwrap();
        assert_eq!(deferred.tick(), 0, "held for less than half a window");
        assert_eq!(wakes(&counter), 0);
        assert_eq!(deferred.tick(), 1, "held for at least half a window");
        assert_eq!(wakes(&counter), 1);
        assert_eq!(deferred.tick(), 0, "nothing left held");
    }

    #[test]
    fn another_streams_window_does_not_release_a_hold_early() {
        let (hub, mut first, _w1, first_wakes, _k1) = coalescing_watcher("live/a");
        let (mut second, _w2, second_wakes, _k2) = parked_watcher(&hub, "live/b");
        let deferred = hub.deferred_wakes().unwrap().clone();
        first.push(audio(10)).unwrap();
        assert_eq!(deferred.tick(), 0);
        // The second stream's audio arrives just before the first stream's hold is due.
        second.push(audio(10)).unwrap();
        assert_eq!(deferred.tick(), 1, "only the older hold is due");
        assert_eq!((wakes(&first_wakes), wakes(&second_wakes)), (1, 0));
        assert_eq!(deferred.tick(), 1);
        assert_eq!((wakes(&first_wakes), wakes(&second_wakes)), (1, 1));
    }

    #[test]
    fn a_hold_ended_by_video_does_not_release_the_next_hold_early() {
        let (hub, mut publisher, mut watcher, counter, waker) = coalescing_watcher("live/stale");
        let deferred = hub.deferred_wakes().unwrap().clone();
        publisher.push(audio(10)).unwrap();
        assert_eq!(deferred.tick(), 0);
        publisher.push(inter(33)).unwrap();
        assert_eq!(
            wakes(&counter),
            1,
            "the video woke the watcher, audio included"
        );
        repark(&mut watcher, &waker);
        // A new hold; the old one's entry is due at the next tick but no longer current.
        publisher.push(audio(31)).unwrap();
        assert_eq!(deferred.tick(), 0, "the stale entry releases nothing");
        assert_eq!(wakes(&counter), 1);
        assert_eq!(deferred.tick(), 1, "the new hold waits its own half window");
        assert_eq!(wakes(&counter), 2);
    }

    fn audio(ts: u32) -> Frame {
        Frame::new(MediaKind::Audio, ts, Bytes::from_static(&[0xaf, 1, 0x21]))
    }

    fn inter(ts: u32) -> Frame {
        Frame::new(
            MediaKind::Video,
            ts,
            Bytes::from_static(&[0x27, 1, 0, 0, 0, 7]),
        )
    }

    #[test]
    fn coalescing_holds_audio_wakes_until_the_window_ends() {
        let (hub, mut publisher, mut watcher, counter, waker) = coalescing_watcher("live/held");
        publisher.push(audio(10)).unwrap();
        publisher.push(audio(31)).unwrap();
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            0,
            "audio waits for the window"
        );
        assert_eq!(let_every_hold_end(&hub), 1);
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            1,
            "one wake for both frames"
        );
        let mut cx = Context::from_waker(&waker);
        assert!(watcher.poll_changed(&mut cx).is_ready());
        assert_eq!(let_every_hold_end(&hub), 0, "the window is over");
    }

    #[test]
    fn coalescing_never_delays_video_and_releases_held_audio_with_it() {
        let (hub, mut publisher, mut watcher, counter, _waker) = coalescing_watcher("live/video");
        publisher.push(audio(10)).unwrap();
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        publisher.push(inter(33)).unwrap();
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            1,
            "the video frame wakes the watcher at once, audio included"
        );
        let mut batch = Vec::new();
        watcher.fill(Instant::now(), &mut batch, 16, 1 << 20);
        assert!(batch.len() >= 2, "audio and video leave in one write");
        assert_eq!(let_every_hold_end(&hub), 0, "nothing left held");
        assert_eq!(counter.0.load(Ordering::Relaxed), 1, "not woken twice");
    }

    /// Takes what the watcher can send now, as its write loop does after each write.
    fn fill_now(watcher: &mut Watcher) -> (Fill, usize) {
        let mut batch = Vec::new();
        let fill = watcher.fill(Instant::now(), &mut batch, 16, 1 << 20);
        (fill, batch.len())
    }

    #[test]
    fn a_watcher_busy_writing_when_audio_arrives_does_not_then_send_it_alone() {
        let (_hub, mut publisher, mut watcher, _counter, _waker) = coalescing_watcher("live/busy");
        assert_eq!(fill_now(&mut watcher), (Fill::Ready, 1), "the keyframe");
        // Its write is in flight (it is not parked) when audio arrives; the write completes and
        // the loop fills again: the audio is held, so there is nothing to send yet.
        publisher.push(audio(10)).unwrap();
        assert_eq!(fill_now(&mut watcher), (Fill::Idle, 0));
        publisher.push(inter(33)).unwrap();
        assert_eq!(
            fill_now(&mut watcher),
            (Fill::Ready, 2),
            "the audio leaves with the video, in one write"
        );
    }

    #[test]
    fn a_held_frame_is_filled_and_its_waiting_watcher_woken_when_the_hold_ends() {
        let (hub, mut publisher, mut watcher, counter, _waker) = coalescing_watcher("live/ends");
        // The watcher is parked: the audio holds its wake, and a fill meanwhile stops before
        // the audio (here: the keyframe only).
        publisher.push(audio(10)).unwrap();
        assert_eq!(
            fill_now(&mut watcher),
            (Fill::Ready, 1),
            "the keyframe, not the audio"
        );
        assert_eq!(fill_now(&mut watcher), (Fill::Idle, 0));
        assert_eq!(let_every_hold_end(&hub), 1, "the hold's end wakes it");
        assert_eq!(wakes(&counter), 1);
        assert_eq!(
            fill_now(&mut watcher),
            (Fill::Ready, 1),
            "the audio, at last"
        );
    }

    #[test]
    fn without_coalescing_audio_is_filled_at_once() {
        let (_hub, mut publisher, mut watcher, counter, _waker) = {
            let registry = Arc::new(Registry::new(
                1,
                PublishPolicy {
                    takeover: false,
                    grace: Duration::ZERO,
                },
            ));
            let hub = Rc::new(CoreHub::new(0, registry, RingLimits::default()));
            let (publisher, watcher, counter, waker) = parked_watcher(&hub, "live/plain");
            (hub, publisher, watcher, counter, waker)
        };
        assert_eq!(fill_now(&mut watcher), (Fill::Ready, 1));
        publisher.push(audio(10)).unwrap();
        assert_eq!(wakes(&counter), 1, "woken at once");
        assert_eq!(fill_now(&mut watcher), (Fill::Ready, 1));
    }

    #[test]
    fn a_watcher_that_went_back_to_wait_during_a_hold_sees_a_change_when_it_ends() {
        let (hub, mut publisher, mut watcher, counter, waker) = coalescing_watcher("live/again");
        publisher.push(inter(33)).unwrap();
        assert_eq!(wakes(&counter), 1);
        assert_eq!(
            fill_now(&mut watcher),
            (Fill::Ready, 2),
            "the keyframe and the video"
        );
        // Audio arrives while it writes; its next pass finds nothing it may send and it waits,
        // queued at the version that already includes the audio.
        publisher.push(audio(40)).unwrap();
        assert_eq!(fill_now(&mut watcher), (Fill::Idle, 0));
        repark(&mut watcher, &waker);
        assert_eq!(let_every_hold_end(&hub), 1);
        let mut cx = Context::from_waker(&waker);
        assert!(
            watcher.poll_changed(&mut cx).is_ready(),
            "the hold's end is a change, or the watcher would sleep through it"
        );
        assert_eq!(fill_now(&mut watcher), (Fill::Ready, 1));
    }
}
