//! One frame's way through each core, for the benchmarks only (`--features frame-trace`).
//!
//! With the feature on, every worker follows each coded video frame from the publisher's read
//! that completed it (the time [`set_clock`] last gave this thread when the frame was
//! serialised, kept in [`EncodedFrame`]'s `ingested`) to: its append to this core's ring, the
//! first and the last watcher's send that carries it being prepared (the watcher's fill), and
//! the first and the last of those sends completing. Three seconds after a frame reached the
//! ring its [`Row`] is final; the server collects rows with [`take_rows`] and writes them
//! (`crate::server::trace`, `RINGCAST_FRAME_TRACE=DIR`). This layer reads no clock: the server
//! hands it the time of each read and inbox drain with [`set_clock`], and the fill's `now`.
//!
//! Without the feature every hook is an empty inline function and [`Filled`] is empty, so the
//! relay as shipped pays nothing. With it, each prepared and completed send costs a hash-map
//! update: the traced build is a little slower than the real one, which the breakdown notes.
//!
//! [`EncodedFrame`]: super::EncodedFrame

#[cfg(feature = "frame-trace")]
pub use enabled::*;

#[cfg(not(feature = "frame-trace"))]
pub use disabled::*;

/// One frame's way through one core, in microseconds from the publisher's read (-1: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub core: usize,
    /// When the publisher's read completed, in microseconds since the first traced event.
    pub ingested_us: u64,
    pub ring_us: i64,
    pub first_prepared_us: i64,
    pub last_prepared_us: i64,
    pub first_done_us: i64,
    pub last_done_us: i64,
    /// Completed sends that carried the frame (its watchers on this core).
    pub sends: u32,
}

#[cfg(not(feature = "frame-trace"))]
mod disabled {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::fanout::EncodedFrame;

    /// The traced frames of one fill (nothing without the feature).
    #[derive(Debug, Default)]
    pub struct Filled;

    /// Starts tracing on this thread, worker `core`.
    #[inline(always)]
    pub fn start(_core: usize) {}

    /// The time of the read (or inbox drain) this thread is handling.
    #[inline(always)]
    pub fn set_clock(_now: Instant) {}

    /// The clock the server last set, for a frame being serialised.
    #[inline(always)]
    pub fn clock() -> Option<Instant> {
        None
    }

    /// `frame` was appended to this core's ring.
    #[inline(always)]
    pub fn ring(_frame: &Arc<EncodedFrame>) {}

    /// A watcher's fill added `frame` to its batch.
    #[inline(always)]
    pub fn prepared(_frame: &Arc<EncodedFrame>, _now: Instant) {}

    /// The frames the last fill on this thread prepared.
    #[inline(always)]
    pub fn take_filled() -> Filled {
        Filled
    }

    /// The send carrying `filled` completed at `now`.
    #[inline(always)]
    pub fn done(_filled: Filled, _now: Instant) {}

    /// Rows final by `now`.
    #[inline(always)]
    pub fn take_rows(_now: Instant) -> Vec<super::Row> {
        Vec::new()
    }
}

#[cfg(feature = "frame-trace")]
mod enabled {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Row;
    use crate::fanout::{Content, EncodedFrame};
    use crate::media::{FrameRole, MediaKind};

    /// How long after reaching the ring a frame's row is final.
    const SETTLE: Duration = Duration::from_secs(3);

    /// The traced frames of one fill.
    #[derive(Debug, Default)]
    pub struct Filled(Vec<usize>);

    #[derive(Debug)]
    struct Times {
        /// Keeps the frame's allocation (not the frame) alive while it is traced, so no other
        /// frame can be allocated at the address that keys it.
        _pin: std::sync::Weak<EncodedFrame>,
        ingested: Instant,
        ring: Instant,
        first_prepared: Option<Instant>,
        last_prepared: Option<Instant>,
        first_done: Option<Instant>,
        last_done: Option<Instant>,
        sends: u32,
    }

    #[derive(Default)]
    struct Core {
        index: usize,
        on: bool,
        frames: HashMap<usize, Times>,
        filled: Vec<usize>,
        rows: Vec<Row>,
    }

    thread_local! {
        static CORE: RefCell<Core> = RefCell::new(Core::default());
        static CLOCK: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    /// The first traced event of the process, so rows from every core share one origin.
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    fn traced(frame: &EncodedFrame) -> bool {
        frame.content == Content::Media(MediaKind::Video)
            && matches!(
                frame.role,
                FrameRole::Keyframe | FrameRole::Inter | FrameRole::Disposable
            )
    }

    fn key(frame: &Arc<EncodedFrame>) -> usize {
        Arc::as_ptr(frame) as usize
    }

    pub fn start(core: usize) {
        CORE.with_borrow_mut(|c| {
            c.index = core;
            c.on = true;
        });
    }

    pub fn set_clock(now: Instant) {
        EPOCH.get_or_init(|| now);
        CLOCK.set(Some(now));
    }

    pub fn clock() -> Option<Instant> {
        CLOCK.get()
    }

    pub fn ring(frame: &Arc<EncodedFrame>) {
        let (Some(ingested), Some(now)) = (frame.ingested, CLOCK.get()) else {
            return;
        };
        if !traced(frame) {
            return;
        }
        CORE.with_borrow_mut(|c| {
            if !c.on {
                return;
            }
            if c.frames.contains_key(&key(frame)) {
                return; // Already traced (a second push of the same frame).
            }
            c.frames.insert(
                key(frame),
                Times {
                    _pin: Arc::downgrade(frame),
                    ingested,
                    ring: now.max(ingested),
                    first_prepared: None,
                    last_prepared: None,
                    first_done: None,
                    last_done: None,
                    sends: 0,
                },
            );
        });
    }

    pub fn prepared(frame: &Arc<EncodedFrame>, now: Instant) {
        CORE.with_borrow_mut(|c| {
            if let Some(t) = c.frames.get_mut(&key(frame)) {
                t.first_prepared.get_or_insert(now);
                t.last_prepared = Some(now);
                c.filled.push(key(frame));
            }
        });
    }

    pub fn take_filled() -> Filled {
        CORE.with_borrow_mut(|c| Filled(std::mem::take(&mut c.filled)))
    }

    pub fn done(filled: Filled, now: Instant) {
        if filled.0.is_empty() {
            return;
        }
        CORE.with_borrow_mut(|c| {
            for k in filled.0 {
                if let Some(t) = c.frames.get_mut(&k) {
                    t.first_done.get_or_insert(now);
                    t.last_done = Some(now);
                    t.sends += 1;
                }
            }
        });
    }

    pub fn take_rows(now: Instant) -> Vec<Row> {
        CORE.with_borrow_mut(|c| {
            let settled: Vec<usize> = c
                .frames
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(t.ring) >= SETTLE)
                .map(|(k, _)| *k)
                .collect();
            for k in settled {
                if let Some(t) = c.frames.remove(&k) {
                    let row = c.row(&t);
                    c.rows.push(row);
                }
            }
            std::mem::take(&mut c.rows)
        })
    }

    impl Core {
        fn row(&self, t: &Times) -> Row {
            let us = |at: Option<Instant>| {
                at.map_or(-1, |at| {
                    i64::try_from(at.saturating_duration_since(t.ingested).as_micros())
                        .unwrap_or(i64::MAX)
                })
            };
            let epoch = EPOCH.get().copied().unwrap_or(t.ingested);
            Row {
                core: self.index,
                ingested_us: u64::try_from(t.ingested.saturating_duration_since(epoch).as_micros())
                    .unwrap_or(u64::MAX),
                ring_us: us(Some(t.ring)),
                first_prepared_us: us(t.first_prepared),
                last_prepared_us: us(t.last_prepared),
                first_done_us: us(t.first_done),
                last_done_us: us(t.last_done),
                sends: t.sends,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[cfg(feature = "frame-trace")]
    #[test]
    fn a_traced_frame_reports_each_stage_from_the_publishers_read() {
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use bytes::Bytes;

        use super::*;
        use crate::fanout::EncodedFrame;
        use crate::media::{Frame, MediaKind};

        let ms = Duration::from_millis;
        let read = Instant::now();
        start(3);
        set_clock(read);
        let keyframe = Arc::new(EncodedFrame::media(
            Frame::new(
                MediaKind::Video,
                0,
                Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]),
            ),
            4096,
        ));
        let audio = Arc::new(EncodedFrame::media(
            Frame::new(MediaKind::Audio, 0, Bytes::from_static(&[0xaf, 1, 0x21])),
            4096,
        ));
        set_clock(read + ms(1));
        ring(&keyframe);
        ring(&audio);
        prepared(&keyframe, read + ms(2));
        prepared(&audio, read + ms(2));
        done(take_filled(), read + ms(5));
        prepared(&keyframe, read + ms(3));
        done(take_filled(), read + ms(7));
        assert!(take_rows(read + ms(100)).is_empty(), "not final yet");
        let rows = take_rows(read + ms(1) + Duration::from_secs(3));
        assert_eq!(
            rows,
            [Row {
                core: 3,
                ingested_us: rows[0].ingested_us,
                ring_us: 1000,
                first_prepared_us: 2000,
                last_prepared_us: 3000,
                first_done_us: 5000,
                last_done_us: 7000,
                sends: 2,
            }],
            "only the video frame is traced"
        );
    }
}
