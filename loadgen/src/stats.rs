//! Per-watcher counters, the per-process summary, and merging summaries across processes.
//!
//! Histograms travel between processes as `(value, count)` pairs of recorded buckets, so a
//! parent merges its children's JSON without losing precision beyond the histogram's own.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::synth::Probe;

/// Three significant figures, values up to an hour in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}"))
}

/// What one watcher has seen, updated per parsed message.
#[derive(Debug, Default, Clone)]
pub struct WatcherStats {
    pub bytes: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub last_seq: Option<u64>,
    pub lost: u64,
    pub skipped: u64,
    pub first_frame_ns: Option<u64>,
    pub last_data_ns: u64,
    pub in_stall: bool,
    pub stalls: u64,
    pub stall_ns: u64,
}

impl WatcherStats {
    /// Accounts one probed video frame. A gap that ends on a keyframe is the relay skipping a
    /// slow watcher to the next keyframe ("skipped"); any other gap is "lost". A sequence that
    /// goes backwards (a GOP cache replay after reconnect) just restarts the count.
    pub fn on_probe(&mut self, p: Probe) {
        self.video_frames += 1;
        if let Some(last) = self.last_seq
            && p.seq > last + 1
        {
            let gap = p.seq - last - 1;
            if p.keyframe {
                self.skipped += gap;
            } else {
                self.lost += gap;
            }
        }
        self.last_seq = Some(p.seq);
    }

    /// Called on every read with data, and on a timer with `data = false`.
    pub fn on_tick(&mut self, now_ns: u64, data: bool, stall_after_ns: u64) {
        if data {
            if self.in_stall {
                self.in_stall = false;
                self.stall_ns += now_ns.saturating_sub(self.last_data_ns);
            }
            self.last_data_ns = now_ns;
        } else if !self.in_stall
            && self.last_data_ns != 0
            && now_ns.saturating_sub(self.last_data_ns) > stall_after_ns
        {
            self.in_stall = true;
            self.stalls += 1;
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// A run's result: what the JSON summary holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub mode: String,
    /// How watchers read: `once 16384` (one read of at most that many bytes per readiness) or
    /// `drain 262144` (read until empty).
    #[serde(default)]
    pub read: String,
    /// Streams the watchers were spread over (round-robin).
    #[serde(default)]
    pub streams: u64,
    pub target: String,
    pub processes: u32,
    pub watchers_requested: u64,
    pub connected: u64,
    pub playing: u64,
    pub connect_failures: u64,
    pub errors: u64,
    pub disconnects: u64,
    /// Seconds over which bytes and stalls were counted (after the warm-up).
    pub measured_secs: f64,
    pub bytes: u64,
    pub delivered_gbps: f64,
    pub mean_watcher_mbps: f64,
    pub video_frames: u64,
    pub lost_frames: u64,
    pub skipped_frames: u64,
    pub stalls: u64,
    pub stall_secs: f64,
    pub latency_ms: Percentiles,
    pub ttff_ms: Percentiles,
    /// Latency histogram in microseconds, as `(value, count)` pairs.
    pub latency_us: Vec<(u64, u64)>,
    /// Time to first frame histogram in microseconds.
    pub ttff_us: Vec<(u64, u64)>,
    pub first_error: Option<String>,
}

/// Recorded buckets of a histogram.
pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Rebuilds a histogram from pairs.
pub fn from_pairs(pairs: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = new_histogram();
    for &(v, c) in pairs {
        h.saturating_record_n(v, c);
    }
    h
}

impl Summary {
    /// Fills the derived fields (rates, percentiles) from the raw ones.
    pub fn finish(&mut self) {
        let lat = from_pairs(&self.latency_us);
        let ttff = from_pairs(&self.ttff_us);
        self.latency_ms = Percentiles::of(&lat);
        self.ttff_ms = Percentiles::of(&ttff);
        if self.measured_secs > 0.0 {
            self.delivered_gbps = self.bytes as f64 * 8.0 / self.measured_secs / 1e9;
            if self.playing > 0 {
                self.mean_watcher_mbps = self.delivered_gbps * 1000.0 / self.playing as f64;
            }
        }
    }

    /// Merges several processes' summaries of one run.
    pub fn merge(parts: &[Summary]) -> Summary {
        let mut out = Summary::default();
        let mut lat = new_histogram();
        let mut ttff = new_histogram();
        for p in parts {
            if out.mode.is_empty() {
                out.mode = p.mode.clone();
                out.read = p.read.clone();
                out.streams = p.streams;
                out.target = p.target.clone();
            }
            out.processes += p.processes.max(1);
            out.watchers_requested += p.watchers_requested;
            out.connected += p.connected;
            out.playing += p.playing;
            out.connect_failures += p.connect_failures;
            out.errors += p.errors;
            out.disconnects += p.disconnects;
            out.measured_secs = out.measured_secs.max(p.measured_secs);
            out.bytes += p.bytes;
            out.video_frames += p.video_frames;
            out.lost_frames += p.lost_frames;
            out.skipped_frames += p.skipped_frames;
            out.stalls += p.stalls;
            out.stall_secs += p.stall_secs;
            lat.add(from_pairs(&p.latency_us)).ok();
            ttff.add(from_pairs(&p.ttff_us)).ok();
            if out.first_error.is_none() {
                out.first_error = p.first_error.clone();
            }
        }
        out.latency_us = to_pairs(&lat);
        out.ttff_us = to_pairs(&ttff);
        out.finish();
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn probe(seq: u64, keyframe: bool) -> Probe {
        Probe {
            seq,
            sent_ns: 0,
            keyframe,
        }
    }

    #[test]
    fn gaps_split_into_lost_and_skipped() {
        let mut s = WatcherStats::default();
        for (seq, key) in [
            (10, true),
            (11, false),
            (14, false),
            (20, true),
            (21, false),
        ] {
            s.on_probe(probe(seq, key));
        }
        assert_eq!((s.lost, s.skipped, s.video_frames), (2, 5, 5));
    }

    #[test]
    fn stall_counted_once_and_timed() {
        let mut s = WatcherStats::default();
        let sec = 1_000_000_000;
        s.on_tick(sec, true, sec);
        s.on_tick(2 * sec + 1, false, sec);
        s.on_tick(3 * sec, false, sec);
        assert_eq!(s.stalls, 1);
        s.on_tick(4 * sec, true, sec);
        assert_eq!(s.stall_ns, 3 * sec);
        assert!(!s.in_stall);
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mk = |vals: &[u64], bytes| {
            let mut h = new_histogram();
            for &v in vals {
                h.record(v).unwrap();
            }
            let mut s = Summary {
                bytes,
                playing: vals.len() as u64,
                measured_secs: 10.0,
                latency_us: to_pairs(&h),
                ..Summary::default()
            };
            s.finish();
            s
        };
        let a = mk(&[1000, 2000], 1_000_000_000);
        let b = mk(&[3000, 4000, 100_000], 250_000_000);
        let m = Summary::merge(&[a, b]);
        assert_eq!(m.latency_ms.count, 5);
        assert_eq!(m.playing, 5);
        assert_eq!(m.processes, 2);
        assert!((m.delivered_gbps - 1.0).abs() < 1e-9);
        assert!((m.latency_ms.max - 100.0).abs() < 0.1);
        let json = serde_json::to_string(&m).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.latency_us, m.latency_us);
    }
}
