//! The node-wide stream registry and the lock-free links between cores.
//!
//! The registry maps a stream name (`app/key`) to its [`StreamShared`]: who publishes it, and one
//! [`CoreLink`] per core, a bounded lock-free queue through which the publisher's core hands each
//! serialised frame to every other core exactly once. The registry's mutex is taken only when a
//! publisher arrives or leaves; the per-frame path is atomics and `ArrayQueue` pushes.
//!
//! Wakes are batched: a core's [`CoreInbox`] is woken once however many frames for however many
//! streams arrive before it drains.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_queue::{ArrayQueue, SegQueue};
use futures_util::task::AtomicWaker;

use super::encoded::EncodedFrame;

/// Frames in flight from one core to another for one stream. A core that falls this far
/// behind loses the frames and resynchronises on the next keyframe.
const LINK_CAPACITY: usize = 1024;

/// A message from a stream's publishing core to the other cores.
#[derive(Debug, Clone)]
pub enum StreamMsg {
    Frame(Arc<EncodedFrame>),
    /// A publisher started (first time, after a reconnect, or a takeover).
    PublisherJoined,
    /// The publisher left; the stream waits out the grace window.
    PublisherLeft,
    /// The stream is over (grace expired): watchers are disconnected.
    Ended,
}

/// One stream's queue towards one core.
#[derive(Debug)]
pub struct CoreLink {
    queue: ArrayQueue<StreamMsg>,
    /// Already in the core's ready list (not yet drained).
    scheduled: AtomicBool,
    /// Messages were lost because the queue was full.
    overrun: AtomicBool,
}

/// Per-core wake-up point for cross-core traffic.
#[derive(Debug, Default)]
pub struct CoreInbox {
    ready: SegQueue<Arc<StreamShared>>,
    notified: AtomicBool,
    waker: AtomicWaker,
}

impl CoreInbox {
    /// Registers the draining task's waker and reports whether there is work. Register first,
    /// then test, so a notification between the two is never lost.
    pub fn poll_notified(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.waker.register(cx.waker());
        if self.notified.swap(false, Ordering::AcqRel) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Next stream with messages for this core.
    pub fn pop_ready(&self) -> Option<Arc<StreamShared>> {
        self.ready.pop()
    }
}

/// Who is publishing a stream, guarded by the stream's mutex (publisher arrival/departure only).
#[derive(Debug, Default)]
struct PublishState {
    live: bool,
    /// When the last publisher left (for the grace window).
    left_at: Option<Instant>,
    /// Last timestamp sent to watchers, so a reconnecting publisher continues after it.
    last_timestamp: Option<u32>,
}

/// A stream as every core sees it.
#[derive(Debug)]
pub struct StreamShared {
    pub name: String,
    links: Box<[CoreLink]>,
    /// Bumped for every new publisher: a superseded publisher notices on its next frame.
    generation: AtomicU64,
    state: Mutex<PublishState>,
    /// Cores that have at least one watcher of this stream (for metrics and cleanup).
    pub watcher_count: AtomicUsize,
    /// Watchers (on any core) that want the AAC rendition of this stream's Opus audio: the
    /// publisher's core runs the rendition while this is above zero.
    pub aac_demand: AtomicUsize,
    /// The newest timestamp the live publisher has sent (`u64::MAX`: none yet), so a takeover
    /// continues the live timeline.
    live_timestamp: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; if one ever did, the state is still
    // consistent (plain fields), so recover rather than spread the panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamShared {
    /// The current publisher generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records the newest timestamp the live publisher has sent (one relaxed store per frame).
    pub(crate) fn note_timestamp(&self, timestamp: u32) {
        self.live_timestamp
            .store(u64::from(timestamp), Ordering::Relaxed);
    }

    fn live_timestamp(&self) -> Option<u32> {
        u32::try_from(self.live_timestamp.load(Ordering::Relaxed)).ok()
    }

    /// True while a publisher is connected.
    pub fn is_live(&self) -> bool {
        lock(&self.state).live
    }

    /// Hands a message to `core`'s queue and schedules the core. Returns false if it was lost.
    pub(crate) fn send_to(self: &Arc<Self>, inbox: &CoreInbox, core: usize, msg: StreamMsg) {
        let Some(link) = self.links.get(core) else {
            return;
        };
        if link.queue.push(msg).is_err() {
            link.overrun.store(true, Ordering::Release);
        }
        if !link.scheduled.swap(true, Ordering::AcqRel) {
            inbox.ready.push(self.clone());
        }
        inbox.notify();
    }

    /// Drains this stream's messages for `core`, reporting an overrun first if one happened.
    pub fn drain(&self, core: usize, mut each: impl FnMut(Option<StreamMsg>)) {
        let Some(link) = self.links.get(core) else {
            return;
        };
        // Clear before draining: a push after this point schedules the stream again.
        link.scheduled.store(false, Ordering::Release);
        if link.overrun.swap(false, Ordering::AcqRel) {
            each(None);
        }
        while let Some(msg) = link.queue.pop() {
            each(Some(msg));
        }
    }
}

/// Why a publish request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("stream is already being published")]
    InUse,
}

/// Whether a second publisher replaces the first, and how long a stream outlives its publisher.
#[derive(Debug, Clone)]
pub struct PublishPolicy {
    pub takeover: bool,
    pub grace: Duration,
}

/// The claim a publisher holds on a stream.
#[derive(Debug)]
pub struct PublishClaim {
    pub stream: Arc<StreamShared>,
    pub generation: u64,
    /// Where this publisher's timestamps must continue from (a reconnect within the grace
    /// window), if anywhere.
    pub resume_after: Option<u32>,
    /// An earlier publisher was superseded by this one (takeover).
    pub took_over: bool,
}

/// All streams of this node, and every core's inbox.
#[derive(Debug)]
pub struct Registry {
    streams: Mutex<HashMap<String, Arc<StreamShared>>>,
    inboxes: Box<[Arc<CoreInbox>]>,
    policy: PublishPolicy,
}

impl Registry {
    pub fn new(cores: usize, policy: PublishPolicy) -> Self {
        Registry {
            streams: Mutex::new(HashMap::new()),
            inboxes: (0..cores.max(1))
                .map(|_| Arc::new(CoreInbox::default()))
                .collect(),
            policy,
        }
    }

    /// Number of cores (runtimes) this registry links.
    pub fn cores(&self) -> usize {
        self.inboxes.len()
    }

    /// The inbox of `core`.
    pub fn inbox(&self, core: usize) -> Option<&Arc<CoreInbox>> {
        self.inboxes.get(core)
    }

    /// The stream called `name`, creating it (with no publisher) if needed.
    pub fn stream(&self, name: &str) -> Arc<StreamShared> {
        self.entry(&mut lock(&self.streams), name)
    }

    /// Like [`Registry::stream`], with one more watcher counted under the registry lock, so
    /// [`Registry::forget_if_unused`] (which checks the count under the same lock) can never
    /// drop a stream a watcher is joining. The watcher gives it back with `watcher_count`.
    pub fn watch(&self, name: &str) -> Arc<StreamShared> {
        let stream = self.entry(&mut lock(&self.streams), name);
        stream.watcher_count.fetch_add(1, Ordering::AcqRel);
        stream
    }

    fn entry(
        &self,
        streams: &mut HashMap<String, Arc<StreamShared>>,
        name: &str,
    ) -> Arc<StreamShared> {
        streams
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(StreamShared {
                    name: name.to_owned(),
                    links: (0..self.inboxes.len())
                        .map(|_| CoreLink {
                            queue: ArrayQueue::new(LINK_CAPACITY),
                            scheduled: AtomicBool::new(false),
                            overrun: AtomicBool::new(false),
                        })
                        .collect(),
                    generation: AtomicU64::new(0),
                    state: Mutex::new(PublishState::default()),
                    watcher_count: AtomicUsize::new(0),
                    aac_demand: AtomicUsize::new(0),
                    live_timestamp: AtomicU64::new(u64::MAX),
                })
            })
            .clone()
    }

    /// The stream called `name` if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<StreamShared>> {
        lock(&self.streams).get(name).cloned()
    }

    /// Names of the streams with a live publisher.
    pub fn live_streams(&self) -> Vec<String> {
        lock(&self.streams)
            .values()
            .filter(|s| s.is_live())
            .map(|s| s.name.clone())
            .collect()
    }

    /// Names of the streams that have had a publisher and have not ended: live, or within the
    /// grace window after their publisher left.
    pub fn published_streams(&self) -> Vec<String> {
        lock(&self.streams)
            .values()
            .filter(|s| s.generation() > 0)
            .map(|s| s.name.clone())
            .collect()
    }

    /// Claims `name` for a new publisher, applying the node's takeover policy and the grace
    /// window.
    pub fn claim(&self, name: &str, now: Instant) -> Result<PublishClaim, PublishError> {
        self.claim_with_takeover(name, now, self.policy.takeover)
    }

    /// Claims `name` like [`Registry::claim`], with the ingest's own takeover policy (FTL has
    /// `ftl.takeover`, independent of the RTMP one): `takeover` false refuses a live stream.
    pub fn claim_with_takeover(
        &self,
        name: &str,
        now: Instant,
        takeover: bool,
    ) -> Result<PublishClaim, PublishError> {
        let mut streams = lock(&self.streams);
        let stream = self.entry(&mut streams, name);
        let mut state = lock(&stream.state);
        // The stream's state is held before the registry is released, so a concurrent
        // `forget_if_unused` (registry, then state) sees this claim and keeps the stream.
        drop(streams);
        let took_over = state.live;
        if state.live && !takeover {
            return Err(PublishError::InUse);
        }
        let resume_after = match state.left_at {
            // The superseded publisher never released: continue from what it last sent.
            _ if took_over => stream.live_timestamp().or(state.last_timestamp),
            Some(left) if now.saturating_duration_since(left) <= self.policy.grace => {
                state.last_timestamp
            }
            _ => None,
        };
        state.live = true;
        state.left_at = None;
        let generation = stream.generation.fetch_add(1, Ordering::AcqRel) + 1;
        drop(state);
        self.broadcast(&stream, StreamMsg::PublisherJoined);
        Ok(PublishClaim {
            stream,
            generation,
            resume_after,
            took_over,
        })
    }

    /// Records that the publisher of `generation` left at `now` after sending `last_timestamp`.
    /// Returns false if it had already been superseded.
    pub fn release(
        &self,
        stream: &Arc<StreamShared>,
        generation: u64,
        last_timestamp: Option<u32>,
        now: Instant,
    ) -> bool {
        let mut state = lock(&stream.state);
        if stream.generation() != generation {
            return false;
        }
        state.live = false;
        state.left_at = Some(now);
        if last_timestamp.is_some() {
            state.last_timestamp = last_timestamp;
        }
        drop(state);
        self.broadcast(stream, StreamMsg::PublisherLeft);
        true
    }

    /// Ends the stream if nobody re-published it since `generation` left and the grace window
    /// has passed. Returns true if it ended.
    pub fn expire(&self, stream: &Arc<StreamShared>, generation: u64, now: Instant) -> bool {
        let mut streams = lock(&self.streams);
        let state = lock(&stream.state);
        let expired = !state.live
            && stream.generation() == generation
            && state
                .left_at
                .is_some_and(|left| now.saturating_duration_since(left) >= self.policy.grace);
        drop(state);
        if expired {
            streams.remove(&stream.name);
            drop(streams);
            self.broadcast(stream, StreamMsg::Ended);
        }
        expired
    }

    /// Removes a stream that never had a publisher and has no watchers left (on any core), if
    /// it is still the registry's entry for its name. Returns true if it was removed.
    pub fn forget_if_unused(&self, stream: &Arc<StreamShared>) -> bool {
        let mut streams = lock(&self.streams);
        let state = lock(&stream.state);
        let unused = !state.live
            && state.left_at.is_none()
            && stream.generation() == 0
            && stream.watcher_count.load(Ordering::Acquire) == 0
            && streams
                .get(&stream.name)
                .is_some_and(|current| Arc::ptr_eq(current, stream));
        drop(state);
        if unused {
            streams.remove(&stream.name);
        }
        unused
    }

    /// Sends `msg` to every core (including the caller's: each core applies its own messages
    /// through its inbox, which keeps one path for frames and state changes).
    pub fn broadcast(&self, stream: &Arc<StreamShared>, msg: StreamMsg) {
        for (core, inbox) in self.inboxes.iter().enumerate() {
            stream.send_to(inbox, core, msg.clone());
        }
    }

    /// Sends a frame to every core except `own_core`, which the caller serves directly.
    pub fn forward(&self, stream: &Arc<StreamShared>, own_core: usize, frame: &Arc<EncodedFrame>) {
        for (core, inbox) in self.inboxes.iter().enumerate() {
            if core != own_core {
                stream.send_to(inbox, core, StreamMsg::Frame(frame.clone()));
            }
        }
    }
}
