//! RTP timestamps → RTMP milliseconds.
//!
//! Each track's 32-bit RTP clock (90 kHz video, 48 kHz audio) is unwrapped to 64 bits with serial
//! arithmetic, so the wrap after 2^32 ticks (13 h of video) is a normal step. Tracks share one
//! base: the first packet of the stream maps to 0 ms, and the first packet of any other track maps
//! to its arrival time relative to that first packet (arrival instants are passed in). Sender
//! reports are not used: arrival alignment is within a few ms for FTL's paced sender and cannot
//! be poisoned by a client's bad NTP clock.

use std::time::Instant;

/// Unwraps one track's RTP clock.
#[derive(Debug, Clone, Copy)]
pub struct TrackClock {
    rate: u32,
    /// (extended timestamp of the track's first packet, its millisecond position)
    anchor: Option<(i64, i64)>,
    last: i64,
}

impl TrackClock {
    /// A clock running at `rate` Hz (must be non-zero; 0 is treated as 1).
    pub fn new(rate: u32) -> Self {
        TrackClock {
            rate: rate.max(1),
            anchor: None,
            last: 0,
        }
    }

    fn extend(&mut self, ts: u32) -> i64 {
        let delta = i64::from(ts.wrapping_sub(self.last as u32) as i32);
        self.last = self.last.saturating_add(delta);
        self.last
    }

    fn millis(&mut self, ts: u32, start_ms: impl FnOnce() -> i64) -> u32 {
        let (anchor_ts, anchor_ms) = match self.anchor {
            Some(anchor) => anchor,
            None => {
                self.last = i64::from(ts);
                let anchor = (self.last, start_ms());
                self.anchor = Some(anchor);
                anchor
            }
        };
        let ext = self.extend(ts);
        let ticks = i128::from(ext - anchor_ts);
        let ms = i128::from(anchor_ms) + ticks * 1000 / i128::from(self.rate);
        // RTMP timestamps are a wrapping 32-bit millisecond clock; negative values clamp to 0.
        (ms.max(0) as u64) as u32
    }
}

/// The common millisecond timeline of one FTL stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamClock {
    origin: Option<Instant>,
}

impl StreamClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Milliseconds for `ts` on `track`, which received its packet at `now`.
    pub fn timestamp_ms(&mut self, track: &mut TrackClock, now: Instant, ts: u32) -> u32 {
        let origin = *self.origin.get_or_insert(now);
        track.millis(ts, || {
            i64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(i64::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn video_clock_unwraps_across_32_bit_wrap() {
        let t = Instant::now();
        let mut stream = StreamClock::new();
        let mut video = TrackClock::new(90_000);
        let start = u32::MAX - 90_000 + 1;
        assert_eq!(stream.timestamp_ms(&mut video, t, start), 0);
        assert_eq!(
            stream.timestamp_ms(&mut video, t, start.wrapping_add(45_000)),
            500
        );
        assert_eq!(stream.timestamp_ms(&mut video, t, 0), 1000);
        assert_eq!(stream.timestamp_ms(&mut video, t, 90_000), 2000);
        // A slightly older timestamp (reordering) stays on the same side of the wrap.
        assert_eq!(stream.timestamp_ms(&mut video, t, u32::MAX), 999);
    }

    #[test]
    fn second_track_starts_at_its_arrival_time() {
        let t = Instant::now();
        let mut stream = StreamClock::new();
        let mut video = TrackClock::new(90_000);
        let mut audio = TrackClock::new(48_000);
        assert_eq!(stream.timestamp_ms(&mut video, t, 1234), 0);
        let later = t + Duration::from_millis(40);
        assert_eq!(stream.timestamp_ms(&mut audio, later, 999_999), 40);
        assert_eq!(stream.timestamp_ms(&mut audio, later, 999_999 + 960), 60);
    }
}
