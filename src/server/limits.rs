//! Per-IP limits that hold for the whole node, whichever worker accepted the connection.
//!
//! A [`PerIpWindow`] counts events per source IP over a sliding window; every worker shares one
//! (behind an `Arc` in [`NodeLimits`]), so `N` workers do not multiply a limit by `N`. The map
//! itself is bounded: at [`MAX_TRACKED_IPS`] addresses, stale entries are swept, and if none is
//! stale the least recently seen address is forgotten. Each address keeps at most `limit`
//! timestamps. The lock is held for a few hash-map operations per refused or limited event
//! (an HMAC challenge, a failed login), never per media packet.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Config;

/// Most source addresses one window remembers.
pub const MAX_TRACKED_IPS: usize = 65_536;

/// Events per source IP over a sliding window.
#[derive(Debug)]
pub struct PerIpWindow {
    window: Duration,
    max_ips: usize,
    events: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl PerIpWindow {
    pub fn new(window: Duration) -> Self {
        Self::with_capacity(window, MAX_TRACKED_IPS)
    }

    pub fn with_capacity(window: Duration, max_ips: usize) -> Self {
        PerIpWindow {
            window,
            max_ips: max_ips.max(1),
            events: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an event from `ip` at `now` if fewer than `limit` happened within the window;
    /// false (nothing recorded) when `ip` is at the limit. A `limit` of 0 admits everything.
    pub fn admit(&self, ip: IpAddr, now: Instant, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let mut events = self.lock();
        let times = self.entry(&mut events, ip, now);
        if times.len() >= limit as usize {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Records an event from `ip` at `now`, keeping at most `limit` (the newest).
    pub fn record(&self, ip: IpAddr, now: Instant, limit: u32) {
        let mut events = self.lock();
        let times = self.entry(&mut events, ip, now);
        times.push_back(now);
        while times.len() > limit.max(1) as usize {
            times.pop_front();
        }
    }

    /// Events from `ip` within the window ending at `now`.
    pub fn count(&self, ip: IpAddr, now: Instant) -> usize {
        let ip = ip.to_canonical();
        let events = self.lock();
        events.get(&ip).map_or(0, |times| {
            times
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < self.window)
                .count()
        })
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// `ip`'s timestamps with the expired ones gone, making room in the map first if needed.
    fn entry<'a>(
        &self,
        events: &'a mut HashMap<IpAddr, VecDeque<Instant>>,
        ip: IpAddr,
        now: Instant,
    ) -> &'a mut VecDeque<Instant> {
        let ip = ip.to_canonical();
        if !events.contains_key(&ip) && events.len() >= self.max_ips {
            let window = self.window;
            events.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if events.len() >= self.max_ips {
                let oldest = events
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    events.remove(&oldest);
                }
            }
        }
        let times = events.entry(ip).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        times
    }
}

/// The node's per-IP limits, shared by every worker.
#[derive(Debug)]
pub struct NodeLimits {
    /// FTL HMAC challenges (`ftl.hmac_attempts_per_minute_per_ip`).
    pub ftl_challenges: PerIpWindow,
    /// Failed fstream broadcaster logins (`fstream.login_failures_per_ip` within
    /// `fstream.login_lockout_ms`).
    pub fstream_failures: PerIpWindow,
}

impl NodeLimits {
    pub fn new(config: &Config) -> Self {
        NodeLimits {
            ftl_challenges: PerIpWindow::new(Duration::from_secs(60)),
            fstream_failures: PerIpWindow::new(Duration::from_millis(
                config.fstream.login_lockout_ms,
            )),
        }
    }
}

/// A sustained-rate limit on one publisher's input: bytes are counted per second, and the
/// publisher is over the limit once every second of `sustain` exceeded `max_bytes_per_sec`.
#[derive(Debug)]
pub struct IngestMeter {
    max_bytes_per_sec: u64,
    sustain: Duration,
    second_started: Option<Instant>,
    bytes: u64,
    over_since: Option<Instant>,
}

impl IngestMeter {
    /// A meter for `max_kbps` kilobits per second (0: never over).
    pub fn new(max_kbps: u32, sustain: Duration) -> Self {
        IngestMeter {
            max_bytes_per_sec: u64::from(max_kbps) * 1000 / 8,
            sustain,
            second_started: None,
            bytes: 0,
            over_since: None,
        }
    }

    /// Counts `n` bytes received at `now`; true once the publisher has been over the limit
    /// for the whole sustain period.
    pub fn add(&mut self, n: usize, now: Instant) -> bool {
        if self.max_bytes_per_sec == 0 {
            return false;
        }
        let started = *self.second_started.get_or_insert(now);
        if now.saturating_duration_since(started) >= Duration::from_secs(1) {
            // A second is over: was it above the limit?
            if self.bytes > self.max_bytes_per_sec {
                self.over_since.get_or_insert(started);
            } else {
                self.over_since = None;
            }
            self.second_started = Some(now);
            self.bytes = 0;
        }
        self.bytes = self.bytes.saturating_add(n as u64);
        self.over_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.sustain)
    }
}

/// How often one cause from one address may be logged, per worker.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most (cause, address) pairs one worker's [`LogLimiter`] remembers.
const LOG_KEYS: usize = 4096;

/// Rate limits repeated log lines of one worker: one line per cause and source address per
/// [`LOG_EVERY`], which then says how many were suppressed since the last one.
#[derive(Debug, Default)]
pub struct LogLimiter {
    /// By (cause, address): when the last line was logged, and lines held back since.
    seen: RefCell<HashMap<LogKey, (Instant, u64)>>,
}

type LogKey = (&'static str, IpAddr);

impl LogLimiter {
    /// `Some(suppressed)` when the line for `cause` from `ip` may be logged now (`suppressed`:
    /// lines held back since the last one); `None` when it is to be suppressed. Use
    /// [`IpAddr::from([0, 0, 0, 0])`] for causes without an address.
    pub fn allow(&self, cause: &'static str, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut seen = self.seen.borrow_mut();
        let key = (cause, ip.to_canonical());
        if let Some((last, suppressed)) = seen.get_mut(&key) {
            if now.saturating_duration_since(*last) < LOG_EVERY {
                *suppressed += 1;
                return None;
            }
            let held = *suppressed;
            *last = now;
            *suppressed = 0;
            return Some(held);
        }
        if seen.len() >= LOG_KEYS {
            seen.retain(|_, (last, _)| now.saturating_duration_since(*last) < LOG_EVERY);
            if seen.len() >= LOG_KEYS {
                // Flooded by distinct addresses: this cause is logged once per window at most.
                seen.clear();
            }
        }
        seen.insert(key, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_limit_is_per_ip_and_slides_with_the_window() {
        let w = PerIpWindow::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(w.admit(ip("127.0.0.1"), t0, 2));
        assert!(w.admit(ip("127.0.0.1"), t0, 2));
        assert!(!w.admit(ip("127.0.0.1"), t0, 2));
        assert!(w.admit(ip("127.0.0.2"), t0, 2));
        assert!(w.admit(ip("::ffff:127.0.0.3"), t0, 1));
        assert!(
            !w.admit(ip("127.0.0.3"), t0, 1),
            "v4-mapped is the same address"
        );
        assert!(w.admit(ip("127.0.0.1"), t0 + Duration::from_secs(60), 2));
        assert!(w.admit(ip("127.0.0.1"), t0, 0), "0 disables the limit");
    }

    #[test]
    fn the_map_of_addresses_stays_bounded() {
        let w = PerIpWindow::with_capacity(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + i));
            w.record(addr, t0 + Duration::from_millis(u64::from(i)), 5);
        }
        assert!(w.tracked() <= 100);
        // The newest address is still counted.
        assert_eq!(w.count(ip("127.0.3.231"), t0 + Duration::from_secs(1)), 1);
    }

    #[test]
    fn a_repeated_cause_is_logged_once_per_window_with_the_count_it_held_back() {
        let limiter = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.allow("x", ip("127.0.0.1"), t0), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.allow("x", ip("127.0.0.1"), t0), None);
        }
        assert_eq!(limiter.allow("y", ip("127.0.0.1"), t0), Some(0));
        assert_eq!(limiter.allow("x", ip("127.0.0.2"), t0), Some(0));
        assert_eq!(limiter.allow("x", ip("127.0.0.1"), t0 + LOG_EVERY), Some(5));
    }

    #[test]
    fn a_publisher_is_over_the_ingest_limit_only_when_it_stays_above_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 1000 kbit/s = 125 000 bytes/s, for 3 s.
        let mut meter = IngestMeter::new(1000, Duration::from_secs(3));
        let mut over = false;
        for ms in (0..10_000).step_by(100) {
            // 200 000 bytes/s: above the limit.
            over |= meter.add(20_000, at(ms));
            if over {
                assert!(ms >= 3000, "over after {ms} ms");
                break;
            }
        }
        assert!(over, "a sustained excess is caught");
        // A burst of one second, then calm: never over.
        let mut meter = IngestMeter::new(1000, Duration::from_secs(3));
        for ms in (0..10_000).step_by(100) {
            let n = if ms < 1000 { 100_000 } else { 5_000 };
            assert!(!meter.add(n, at(ms)), "burst at {ms} ms is not sustained");
        }
        assert!(!IngestMeter::new(0, Duration::ZERO).add(usize::MAX, t0));
    }

    #[test]
    fn record_keeps_at_most_the_limit() {
        let w = PerIpWindow::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..50 {
            w.record(ip("127.0.0.1"), t0, 3);
        }
        assert_eq!(w.count(ip("127.0.0.1"), t0), 3);
    }
}
