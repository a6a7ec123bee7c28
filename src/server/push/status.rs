//! What every push is doing, shared by all cores: the board behind `GET /api/pushes` and the
//! `ringcast_push_*` metrics.
//!
//! One [`PushStatus`] per (destination, source stream). Counters are atomics the owning push
//! task bumps; state, error and time of the last change sit behind a small mutex taken on
//! state changes only (never per frame). Stream names are shown with their key redacted and
//! URLs without their query, so nothing here can leak a key.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where a push is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// Connecting, handshaking or waiting for `NetStream.Publish.Start`.
    Connecting,
    /// Publishing: frames flow.
    Live,
    /// The last attempt failed; waiting before the next (1 s doubling to 30 s, with jitter).
    Backoff,
    /// The destination refused the publish (bad key, `BadName`, a close right after
    /// `publish`): retried slowly (every 60 s or more).
    FailedAuth,
    /// The source ended (or the push was removed): nothing is sent.
    Stopped,
}

impl PushState {
    pub const ALL: [PushState; 5] = [
        PushState::Connecting,
        PushState::Live,
        PushState::Backoff,
        PushState::FailedAuth,
        PushState::Stopped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PushState::Connecting => "connecting",
            PushState::Live => "live",
            PushState::Backoff => "backoff",
            PushState::FailedAuth => "failed_auth",
            PushState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct Mutable {
    state: PushState,
    last_error: Option<String>,
    since: SystemTime,
}

/// One push of one source stream to one destination.
#[derive(Debug)]
pub struct PushStatus {
    pub id: String,
    /// The source stream's full name: identity only, never shown.
    source: String,
    /// The source stream, key redacted.
    pub stream: String,
    /// The destination URL without its query.
    pub url: String,
    mutable: Mutex<Mutable>,
    pub reconnects: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub lag_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PushStatus {
    /// `shown` is the stream's name as logs show it (an RTMP key redacted).
    pub fn new(id: &str, stream: &str, shown: String, url: String) -> Self {
        PushStatus {
            id: id.to_owned(),
            source: stream.to_owned(),
            stream: shown,
            url,
            mutable: Mutex::new(Mutable {
                state: PushState::Connecting,
                last_error: None,
                since: SystemTime::now(),
            }),
            reconnects: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            dropped_frames: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> PushState {
        lock(&self.mutable).state
    }

    /// Moves to `state`; `since` changes only when the state does. `error` replaces the last
    /// error when given (a successful `live` keeps the previous one for the record).
    pub fn set(&self, state: PushState, error: Option<String>) {
        let mut m = lock(&self.mutable);
        if m.state != state {
            m.state = state;
            m.since = SystemTime::now();
        }
        if error.is_some() {
            m.last_error = error;
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        let m = lock(&self.mutable);
        let since = m
            .since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Snapshot {
            id: self.id.clone(),
            stream: self.stream.clone(),
            url: self.url.clone(),
            state: m.state,
            last_error: m.last_error.clone(),
            since: rfc3339(since),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            dropped_frames: self.dropped_frames.load(Ordering::Relaxed),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
        }
    }
}

/// One entry of `GET /api/pushes`.
#[derive(Debug, Serialize)]
struct Snapshot {
    id: String,
    stream: String,
    url: String,
    state: PushState,
    last_error: Option<String>,
    since: String,
    reconnects: u64,
    bytes_sent: u64,
    dropped_frames: u64,
    lag_ms: u64,
}

/// Most stopped entries kept for the API; older ones are forgotten first.
const MAX_STOPPED: usize = 256;

/// Every push the node runs or ran, for the API and metrics.
#[derive(Debug, Default)]
pub struct Board {
    entries: Mutex<Vec<Arc<PushStatus>>>,
}

impl Board {
    /// Registers a push starting now, replacing a previous entry of the same (id, stream).
    pub fn start(&self, status: Arc<PushStatus>) {
        let mut entries = lock(&self.entries);
        entries.retain(|e| !(e.id == status.id && e.source == status.source));
        entries.push(status);
        let stopped = entries
            .iter()
            .filter(|e| e.state() == PushState::Stopped)
            .count();
        if stopped > MAX_STOPPED {
            let mut excess = stopped - MAX_STOPPED;
            entries.retain(|e| {
                let drop = excess > 0 && e.state() == PushState::Stopped;
                excess -= usize::from(drop);
                !drop
            });
        }
    }

    /// Forgets every entry of a destination that is no longer configured.
    pub fn retain_ids(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.entries).retain(|e| keep(&e.id));
    }

    fn all(&self) -> Vec<Arc<PushStatus>> {
        let mut all = lock(&self.entries).clone();
        all.sort_by(|a, b| (&a.id, &a.source).cmp(&(&b.id, &b.source)));
        all
    }

    /// The JSON array `GET /api/pushes` answers.
    pub fn to_json(&self) -> String {
        let all: Vec<Snapshot> = self.all().iter().map(|s| s.snapshot()).collect();
        serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The `ringcast_push_*` series, Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let all: Vec<Snapshot> = self.all().iter().map(|s| s.snapshot()).collect();
        type Value = fn(&Snapshot) -> String;
        let series: [(&str, &str, &str, Value); 4] = [
            (
                "ringcast_push_bytes_total",
                "counter",
                "Bytes written to the destination.",
                |s| s.bytes_sent.to_string(),
            ),
            (
                "ringcast_push_reconnects_total",
                "counter",
                "Connections to the destination that failed or ended and were retried.",
                |s| s.reconnects.to_string(),
            ),
            (
                "ringcast_push_dropped_frames_total",
                "counter",
                "Frames skipped because the destination fell behind.",
                |s| s.dropped_frames.to_string(),
            ),
            (
                "ringcast_push_lag_seconds",
                "gauge",
                "How far the destination is behind the newest frame, in media time.",
                |s| format!("{:.3}", s.lag_ms as f64 / 1000.0),
            ),
        ];
        let _ = writeln!(
            out,
            "# HELP ringcast_push_state 1 for the push's current state (connecting, live, backoff, failed_auth, stopped).\n# TYPE ringcast_push_state gauge"
        );
        for s in &all {
            for state in PushState::ALL {
                let _ = writeln!(
                    out,
                    "ringcast_push_state{{id=\"{}\",stream=\"{}\",state=\"{}\"}} {}",
                    escape(&s.id),
                    escape(&s.stream),
                    state.label(),
                    u8::from(s.state == state)
                );
            }
        }
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &all {
                let _ = writeln!(
                    out,
                    "{name}{{id=\"{}\",stream=\"{}\"}} {}",
                    escape(&s.id),
                    escape(&s.stream),
                    value(s)
                );
            }
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `secs` since the epoch as an RFC 3339 UTC time, e.g. `2026-12-06T04:30:00Z`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_531_696), "2026-12-06T04:34:56Z");
    }

    #[test]
    fn the_board_shows_redacted_streams_and_every_field() {
        let board = Board::default();
        let status = Arc::new(PushStatus::new(
            "yt",
            "live/s3cretkey",
            crate::config::Config::default().shown_stream_name("live/s3cretkey"),
            "rtmp://x:1935/app".into(),
        ));
        board.start(status.clone());
        status.set(PushState::Backoff, Some("connection refused".into()));
        PushStatus::add(&status.bytes_sent, 42);
        let json = board.to_json();
        assert!(!json.contains("s3cret"), "{json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let entry = &parsed[0];
        for field in [
            "id",
            "stream",
            "url",
            "state",
            "last_error",
            "since",
            "reconnects",
            "bytes_sent",
            "dropped_frames",
            "lag_ms",
        ] {
            assert!(entry.get(field).is_some(), "{field} missing: {json}");
        }
        assert_eq!(entry["state"], "backoff");
        assert_eq!(entry["stream"], "live/s3****");
        assert_eq!(entry["bytes_sent"], 42);
        let mut metrics = String::new();
        board.render_metrics(&mut metrics);
        assert!(!metrics.contains("s3cret"), "{metrics}");
        assert!(
            metrics.contains(
                "ringcast_push_state{id=\"yt\",stream=\"live/s3****\",state=\"backoff\"} 1"
            )
        );
        assert!(metrics.contains("ringcast_push_bytes_total{id=\"yt\",stream=\"live/s3****\"} 42"));
    }
}
