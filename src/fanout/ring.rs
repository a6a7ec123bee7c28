//! The per-(stream, core) ring: the GOP cache and every local watcher's queue at once.
//!
//! Frames are appended once per core; each watcher holds a [`Cursor`] (a sequence number) into
//! the ring instead of a queue of its own, so appending a frame costs nothing per watcher, and a
//! watcher's "queue" is the distance from its cursor to the head. That distance is bounded: the
//! ring drops its oldest entries past its frame and byte limits, and a watcher whose cursor falls
//! behind (by time or by being overrun) skips forward to the newest keyframe, counting what it
//! dropped. A watcher that stays behind longer than the disconnect limit is told to go.
//!
//! The cached metadata and sequence headers live beside the ring so that a joining watcher (or one
//! that skipped) is always sent the codec configuration before the first keyframe.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::encoded::{Content, EncodedFrame, Variant};
use crate::media::{FrameRole, MediaKind};

/// Bounds and the slow-watcher policy; built from the `[fanout]` config section.
#[derive(Debug, Clone)]
pub struct RingLimits {
    /// Most frames kept in one ring.
    pub max_frames: usize,
    /// Most bytes kept in one ring: each frame's RTMP form, or its bytes if opaque.
    pub max_bytes: usize,
    /// A watcher further behind the head than this (in media time) skips to the newest keyframe.
    pub max_lag: Duration,
    /// A watcher that has been behind for this long is disconnected.
    pub disconnect_after: Duration,
    /// New watchers start at the newest cached keyframe (`fanout.gop_cache`); when false they
    /// start at the live head and wait for the next keyframe (a lower start-up burst, a later
    /// first picture).
    pub gop_cache: bool,
}

impl Default for RingLimits {
    fn default() -> Self {
        RingLimits {
            max_frames: 4096,
            max_bytes: 16 << 20,
            max_lag: Duration::from_millis(1500),
            disconnect_after: Duration::from_secs(5),
            gop_cache: true,
        }
    }
}

/// Codec configuration and metadata frames replayed to a watcher before its first frame: every
/// configuration a track has sent (sequence start, multichannel config, per E-RTMP track, per
/// rendition), oldest first. A new frame replaces only the slot of its own kind and key.
#[derive(Debug, Default)]
struct Headers {
    slots: Vec<(u64, Arc<EncodedFrame>)>,
}

impl Headers {
    fn iter(&self) -> impl Iterator<Item = &(u64, Arc<EncodedFrame>)> {
        self.slots.iter()
    }

    fn set(&mut self, seq: u64, frame: &Arc<EncodedFrame>) {
        self.slots.retain(|(_, f)| {
            !(f.content == frame.content
                && f.variant == frame.variant
                && f.role == frame.role
                && f.config_key == frame.config_key)
        });
        // Appended last: the slots stay in sequence (arrival) order.
        self.slots.push((seq, frame.clone()));
    }
}

/// Headers re-stamped for the join frame a late joiner starts at (sequence headers) or for 0
/// (`onMetaData`): built once per (header,
/// join time) by the first watcher that needs it and shared by the watchers after it.
#[derive(Debug, Default)]
struct Restamped {
    entries: Vec<(u64, u32, Arc<EncodedFrame>)>,
}

impl Restamped {
    fn get(&mut self, seq: u64, timestamp: u32, header: &Arc<EncodedFrame>) -> Arc<EncodedFrame> {
        if header.timestamp == timestamp {
            return header.clone();
        }
        if let Some((_, _, f)) = self
            .entries
            .iter()
            .find(|(s, t, _)| *s == seq && *t == timestamp)
        {
            return f.clone();
        }
        // Only the newest join time (and metadata's 0) is worth keeping.
        self.entries.retain(|(_, t, _)| *t == timestamp || *t == 0);
        let restamped = header.restamped(timestamp);
        self.entries.push((seq, timestamp, restamped.clone()));
        restamped
    }
}

/// One stream's frames on one core.
#[derive(Debug)]
pub struct Ring {
    limits: RingLimits,
    entries: VecDeque<Arc<EncodedFrame>>,
    /// Sequence number of `entries[0]`.
    front_seq: u64,
    bytes: usize,
    headers: Headers,
    restamped: RefCell<Restamped>,
    /// Sequence number of the newest keyframe still in the ring.
    last_keyframe: Option<u64>,
    /// Whether the stream has carried video: if so, watchers start on a keyframe.
    has_video: bool,
    /// Whether the stream has carried opaque bytes (an fstream broadcast).
    has_opaque: bool,
    /// The first frame of the stream's current coalescing hold on this core (see
    /// [`super::wake`]): fills stop before it until the hold ends, so a watcher that was busy
    /// writing when a held frame arrived does not send it alone on its next pass.
    held_from: Option<u64>,
}

/// A watcher's position in a ring, with its drop counter and lag state.
#[derive(Debug, Clone)]
pub struct Cursor {
    next_seq: u64,
    /// Header sequence numbers below this were already delivered.
    headers_sent_below: u64,
    /// Waiting for a keyframe: non-header frames are dropped until one arrives.
    skipping: bool,
    behind_since: Option<Instant>,
    /// Which audio this watcher is sent.
    pub audio: AudioMode,
    /// Frames this watcher skipped.
    pub dropped_frames: u64,
}

/// What audio a watcher is sent. Video, metadata and every other codec pass through untouched
/// in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioMode {
    /// The publisher's audio as sent (Opus stays Opus).
    #[default]
    Passthrough,
    /// AAC: Opus audio is replaced by the stream's AAC rendition (other audio passes through).
    Aac,
    /// No audio at all.
    Drop,
}

impl AudioMode {
    /// True when a watcher in this mode is sent `frame`.
    pub fn admits(self, frame: &EncodedFrame) -> bool {
        match self {
            AudioMode::Passthrough => frame.variant != Variant::Aac,
            AudioMode::Aac => frame.variant != Variant::Opus,
            AudioMode::Drop => frame.content != Content::Media(MediaKind::Audio),
        }
    }
}

/// What [`Ring::fill`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Frames were appended to the batch (perhaps after skipping some).
    Ready,
    /// The watcher is at the head: wait for the next frame.
    Idle,
    /// The watcher has been behind longer than the policy allows.
    Disconnect,
}

/// Which serialised form a watcher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    Rtmp,
    Flv,
    /// Opaque fstream bytes verbatim; media streams are not delivered to it.
    Raw,
}

impl Egress {
    fn bytes_of(self, frame: &EncodedFrame) -> Option<&Bytes> {
        match (self, frame.content) {
            (Egress::Rtmp, Content::Media(_)) => Some(frame.rtmp()),
            (Egress::Flv, Content::Media(_)) => Some(frame.flv()),
            (Egress::Raw, Content::Opaque) => Some(frame.opaque_bytes()),
            _ => None,
        }
    }
}

impl Ring {
    pub fn new(limits: RingLimits) -> Self {
        Ring {
            limits,
            entries: VecDeque::new(),
            front_seq: 0,
            bytes: 0,
            headers: Headers::default(),
            restamped: RefCell::new(Restamped::default()),
            last_keyframe: None,
            has_video: false,
            has_opaque: false,
            held_from: None,
        }
    }

    /// Sequence number the next appended frame will get.
    pub fn head_seq(&self) -> u64 {
        self.front_seq + self.entries.len() as u64
    }

    /// Number of frames held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes per second of `egress`'s serialised form over the frames held, in media time;
    /// `None` until they span at least 100 ms (or if their timestamps are not sane).
    pub fn egress_rate(&self, egress: Egress) -> Option<u64> {
        let first = self.entries.front()?.timestamp;
        let last = self.entries.back()?.timestamp;
        let span_ms = u64::from(last.wrapping_sub(first));
        if !(100..=600_000).contains(&span_ms) {
            return None;
        }
        let bytes: u64 = self
            .entries
            .iter()
            .filter_map(|f| egress.bytes_of(f))
            .map(|b| b.len() as u64)
            .sum();
        Some(bytes.saturating_mul(1000) / span_ms)
    }

    /// Appends a frame, updating the header cache and evicting past the limits.
    pub fn push(&mut self, frame: Arc<EncodedFrame>) {
        let seq = self.head_seq();
        let is_video = frame.content == Content::Media(MediaKind::Video);
        self.has_video |= is_video || frame.role == FrameRole::Keyframe;
        self.has_opaque |= frame.content == Content::Opaque;
        match (frame.content, frame.role) {
            (Content::Media(MediaKind::Video | MediaKind::Audio), FrameRole::SequenceHeader)
            | (Content::Media(MediaKind::Script), FrameRole::Metadata) => {
                self.headers.set(seq, &frame);
            }
            (_, FrameRole::Keyframe) => {
                self.last_keyframe = Some(seq);
                // A new GOP begins: keep one GOP of history for watchers a little behind.
                self.evict_before_gop();
            }
            _ => {}
        }
        let newest_ts = (frame.role != FrameRole::Metadata).then_some(frame.timestamp);
        self.bytes += frame.cost();
        self.entries.push_back(frame);
        if let Some(newest_ts) = newest_ts {
            self.evict_past_lag(newest_ts);
        }
        while self.entries.len() > self.limits.max_frames
            || (self.bytes > self.limits.max_bytes && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    /// Drops everything before the GOP that precedes the newest keyframe, so one full GOP of
    /// history stays for watchers a little behind.
    fn evict_before_gop(&mut self) {
        let Some(newest) = self.last_keyframe else {
            return;
        };
        let keep_from = self
            .entries
            .iter()
            .enumerate()
            .take((newest - self.front_seq) as usize)
            .rev()
            .find(|(_, f)| f.role == FrameRole::Keyframe)
            .map(|(i, _)| self.front_seq + i as u64);
        if let Some(keep_from) = keep_from {
            while self.front_seq < keep_from {
                self.pop_front();
            }
        }
    }

    /// Drops frames from before the newest keyframe that are further behind the newest frame
    /// (`newest_ts`) than `max_lag`. A watcher still at one of them is past the lag policy's
    /// limit with a newer keyframe to go to, so [`Ring::fill`] would move it there anyway;
    /// keeping them only cost memory (with 2 s GOPs and the default 1.5 s, about half of what
    /// a ring held). Metadata is stamped 0 and never counts as the newest frame.
    fn evict_past_lag(&mut self, newest_ts: u32) {
        let Some(keyframe) = self.last_keyframe else {
            return;
        };
        let max_lag_ms = u64::try_from(self.limits.max_lag.as_millis()).unwrap_or(u64::MAX);
        while self.front_seq < keyframe {
            let Some(front) = self.entries.front() else {
                break;
            };
            // RTMP timestamps wrap at 2^32 ms: the signed difference is the distance.
            let behind_ms = i64::from(newest_ts.wrapping_sub(front.timestamp) as i32);
            if behind_ms <= 0 || behind_ms.unsigned_abs() <= max_lag_ms {
                break;
            }
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.cost();
            self.front_seq += 1;
            if self.last_keyframe.is_some_and(|k| k < self.front_seq) {
                self.last_keyframe = None;
            }
        }
    }

    /// The cached video sequence header, if the stream sent one.
    pub fn video_header(&self) -> Option<&Arc<EncodedFrame>> {
        self.headers
            .slots
            .iter()
            .rev()
            .find(|(_, f)| {
                f.content == Content::Media(MediaKind::Video) && f.role == FrameRole::SequenceHeader
            })
            .map(|(_, f)| f)
    }

    /// Forgets every frame (a cross-core overrun): cursors resynchronise on the next keyframe.
    pub fn discontinuity(&mut self) {
        while !self.entries.is_empty() {
            self.pop_front();
        }
        self.held_from = None;
    }

    /// Holds the newest frame back from fills, with any after it, unless a hold is on already
    /// (which it then joins). Returns true when this began a hold. See [`Ring::end_hold`].
    pub fn hold_newest(&mut self) -> bool {
        if self.held_from.is_some() {
            return false;
        }
        self.held_from = self.head_seq().checked_sub(1);
        self.held_from.is_some()
    }

    /// True while a hold is on.
    pub fn is_holding(&self) -> bool {
        self.held_from.is_some()
    }

    /// Ends the hold: fills take the held frames again.
    pub fn end_hold(&mut self) {
        self.held_from = None;
    }

    /// A cursor for a new watcher: at the newest keyframe when there is one and the GOP cache
    /// is on, else at the head waiting for the next keyframe; after the headers either way.
    pub fn join(&self) -> Cursor {
        let (next_seq, skipping) = match self.last_keyframe {
            Some(k) if self.limits.gop_cache => (k, false),
            _ => (self.head_seq(), self.has_video),
        };
        Cursor {
            next_seq,
            headers_sent_below: 0,
            skipping,
            behind_since: None,
            audio: AudioMode::Passthrough,
            dropped_frames: 0,
        }
    }

    /// Appends the bytes this watcher should write next to `batch`, at most `max_items` slices
    /// and roughly `max_bytes`, applying the slow-watcher policy. Each appended item is a
    /// refcount clone of the shared serialised form.
    pub fn fill(
        &self,
        cursor: &mut Cursor,
        egress: Egress,
        now: Instant,
        batch: &mut Vec<Bytes>,
        max_items: usize,
        max_bytes: usize,
    ) -> Fill {
        self.fill_with(cursor, now, max_items, max_bytes, |frame| {
            let b = egress.bytes_of(frame)?;
            batch.push(b.clone());
            super::trace::prepared(frame, now);
            Some(b.len())
        })
    }

    /// [`Ring::fill`] for a caller that serialises frames itself (a push to another server):
    /// `take` is offered each frame due, in order, and returns the bytes it queued, or `None`
    /// when it does not carry that frame. At most `max_items` frames, roughly `max_bytes`.
    pub fn fill_with(
        &self,
        cursor: &mut Cursor,
        now: Instant,
        max_items: usize,
        max_bytes: usize,
        mut take: impl FnMut(&Arc<EncodedFrame>) -> Option<usize>,
    ) -> Fill {
        let head = self.head_seq();
        let lag = self.lag(cursor);
        let newer_keyframe = self.last_keyframe.is_some_and(|k| k > cursor.next_seq);
        // Overrun (the frames it needed are gone), or behind with a newer keyframe to jump to.
        let overrun = cursor.next_seq < self.front_seq;
        if overrun && self.has_opaque && !self.has_video {
            // Opaque bytes with no join point: skipping ahead would hand the watcher a byte
            // stream with a hole in it. Dropping the watcher is the honest outcome.
            cursor.dropped_frames += self.front_seq - cursor.next_seq;
            return Fill::Disconnect;
        }
        if overrun || (lag > self.limits.max_lag && newer_keyframe) {
            self.resync(cursor, head);
        }
        if self.lag(cursor) <= self.limits.max_lag {
            cursor.behind_since = None;
        } else if cursor.behind_since.is_none() {
            cursor.behind_since = Some(now);
        }
        if let Some(since) = cursor.behind_since
            && now.saturating_duration_since(since) >= self.limits.disconnect_after
        {
            return Fill::Disconnect;
        }

        let mut items = 0;
        let mut bytes = 0;
        // Headers first: any cached header older than the cursor that it has not been sent,
        // stamped with the time of the frame the watcher continues at (a late joiner's
        // configuration must not sit seconds or minutes before its first frame).
        let join_ts = self
            .entries
            .get(cursor.next_seq.saturating_sub(self.front_seq) as usize)
            .or(self.entries.back())
            .map(|f| f.timestamp);
        for (seq, frame) in self.headers.iter() {
            if *seq < cursor.next_seq
                && *seq >= cursor.headers_sent_below
                && cursor.audio.admits(frame)
            {
                // `onMetaData` goes at 0: FLV demuxers (ffmpeg's) read it as the stream's
                // header only there; at any other time it becomes a data stream that holds
                // `-map 0 -t N` players open.
                let ts = match frame.role {
                    FrameRole::Metadata => Some(0),
                    _ => join_ts,
                };
                let frame = match ts {
                    Some(ts) => self.restamped.borrow_mut().get(*seq, ts, frame),
                    None => frame.clone(),
                };
                if let Some(n) = take(&frame) {
                    bytes += n;
                    items += 1;
                }
            }
        }
        cursor.headers_sent_below = cursor.next_seq;

        let until = self.held_from.map_or(head, |held| held.min(head));
        while cursor.next_seq < until && items < max_items && bytes < max_bytes {
            let Some(frame) = self
                .entries
                .get((cursor.next_seq - self.front_seq) as usize)
            else {
                break;
            };
            cursor.next_seq += 1;
            if cursor.skipping {
                match frame.role {
                    FrameRole::Keyframe => cursor.skipping = false,
                    FrameRole::SequenceHeader | FrameRole::Metadata => {}
                    _ => {
                        cursor.dropped_frames += 1;
                        continue;
                    }
                }
            }
            if cursor.audio.admits(frame)
                && let Some(n) = take(frame)
            {
                bytes += n;
                items += 1;
            }
        }
        cursor.headers_sent_below = cursor.next_seq;
        if items > 0 { Fill::Ready } else { Fill::Idle }
    }

    /// Moves a lagging or overrun cursor to the newest keyframe (or to the head, waiting for
    /// one), counting the frames it skips. Headers in the skipped range stay owed to it.
    fn resync(&self, cursor: &mut Cursor, head: u64) {
        let target = match self.last_keyframe {
            Some(k) if k > cursor.next_seq => k,
            _ => head,
        };
        let from = cursor.next_seq.max(self.front_seq);
        let skipped = target.saturating_sub(cursor.next_seq);
        let headers_skipped = self
            .entries
            .range((from - self.front_seq) as usize..(target - self.front_seq) as usize)
            .filter(|f| matches!(f.role, FrameRole::SequenceHeader | FrameRole::Metadata))
            .count() as u64;
        cursor.dropped_frames += skipped - headers_skipped.min(skipped);
        cursor.next_seq = target;
        cursor.skipping = target == head && self.has_video;
    }

    /// How far (in media time) the cursor's next frame is behind the newest frame.
    pub fn lag(&self, cursor: &Cursor) -> Duration {
        let (Some(newest), Some(next)) = (
            self.entries.back(),
            self.entries
                .get(cursor.next_seq.saturating_sub(self.front_seq) as usize),
        ) else {
            return Duration::ZERO;
        };
        // RTMP timestamps wrap at 2^32 ms: the signed difference is the distance.
        let diff = newest.timestamp.wrapping_sub(next.timestamp) as i32;
        Duration::from_millis(diff.max(0) as u64)
    }
}

impl Cursor {
    /// True while the watcher is waiting for a keyframe.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
