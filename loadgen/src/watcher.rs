//! Watchers: many non-blocking sockets on one epoll loop (mio), each an RTMP player, an fstream
//! watcher reading FLV, or a raw reader of the kernel-ceiling framing, measuring latency, time to
//! first frame, rate, stalls and frame gaps.
//!
//! One thread, one shared read buffer, and per watcher only a small parser state, so thousands
//! of watchers cost little memory and CPU next to the relay they load. What each protocol needs
//! (handshakes, answers to the server, framing) lives behind [`Framing`]; this loop only
//! connects, reads, writes and counts. Video without a probe (a real file) still counts for time
//! to first frame and frames, never for latency or gaps.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ringcast::media::{FrameRole, MediaKind, classify};

use crate::framing::{Framing, PlayRequest};
use crate::parse::Parsed;
use crate::stats::{Summary, WatcherStats, new_histogram, to_pairs};
use crate::synth::{monotonic_ns, read_probe};
use crate::tls::Sock;

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub target: SocketAddr,
    /// What to ask for, one per stream: watcher `n` plays `requests[n % len]`.
    pub requests: Vec<PlayRequest>,
    /// How a watcher reads when its socket is readable.
    pub read: ReadMode,
    /// The index of this process's first watcher among all processes' (for `requests`).
    pub first_watcher: u64,
    pub watchers: u64,
    pub sources: Vec<Ipv4Addr>,
    pub ramp_per_sec: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub stall_after: Duration,
    pub quiet: bool,
    pub label: String,
    /// RTMPS: the client TLS settings.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// How a watcher reads when its socket is readable.
#[derive(Debug, Clone, Copy)]
pub enum ReadMode {
    /// One read of at most this many bytes per readiness, as a level-triggered event loop with
    /// a small buffer does (a socket with more queued is read again on the next pass, after
    /// every other ready socket had its turn): what typical players and load tools do, and the
    /// conservative figure, since a frame that spans several reads waits for the passes.
    Once(usize),
    /// Read until the socket is empty into one large buffer, every frame parsed as soon as
    /// it is there: the least the client adds to the latency.
    Drain(usize),
}

impl ReadMode {
    fn buffer_len(self) -> usize {
        match self {
            ReadMode::Once(n) | ReadMode::Drain(n) => n.max(1),
        }
    }
}

struct Watcher {
    stream: Sock<TcpStream>,
    /// Index into [`WatchConfig::requests`].
    request: usize,
    /// Read once more on the next pass (`ReadMode::Once`: the last read filled the buffer).
    read_again: bool,
    /// `None` while the TCP connect is in progress.
    framing: Option<Framing>,
    out: BytesMut,
    started_ns: u64,
    stats: WatcherStats,
}

/// The error text for an orderly close by the server (counted as a disconnect, not an error).
const CLOSED_BY_PEER: &str = "closed by peer";

#[derive(Default)]
struct Totals {
    connected: u64,
    playing: u64,
    connect_failures: u64,
    errors: u64,
    disconnects: u64,
    bytes: u64,
    first_error: Option<String>,
}

struct Run {
    cfg: WatchConfig,
    poll: Poll,
    watchers: Vec<Option<Watcher>>,
    buf: Vec<u8>,
    /// Watchers to read again on the next pass (`ReadMode::Once`).
    read_again: Vec<usize>,
    parsed: Vec<Parsed>,
    latency: Histogram<u64>,
    ttff: Histogram<u64>,
    totals: Totals,
    measuring: bool,
}

/// True for a coded video frame a player would show (not a sequence header or an info frame).
fn is_picture(head: &[u8]) -> bool {
    matches!(
        classify(MediaKind::Video, head),
        FrameRole::Keyframe | FrameRole::Inter | FrameRole::Disposable
    )
}

impl Run {
    fn fail(&mut self, idx: usize, err: String) {
        let Some(w) = self.watchers[idx].take() else {
            return;
        };
        if w.framing.is_none() {
            self.totals.connect_failures += 1;
        } else if err == CLOSED_BY_PEER {
            self.totals.disconnects += 1;
        } else {
            self.totals.errors += 1;
        }
        if self.totals.first_error.is_none() {
            self.totals.first_error = Some(err);
        }
        let mut stream = w.stream.tcp;
        self.poll.registry().deregister(&mut stream).ok();
    }

    fn start(&mut self, n: u64) -> io::Result<()> {
        let src = if self.cfg.sources.is_empty() {
            None
        } else {
            Some(self.cfg.sources[n as usize % self.cfg.sources.len()])
        };
        let std_stream = match crate::net::connect_from(src, self.cfg.target) {
            Ok(s) => s,
            Err(e) => {
                self.totals.connect_failures += 1;
                self.totals
                    .first_error
                    .get_or_insert_with(|| format!("connect: {e}"));
                return Ok(());
            }
        };
        let mut tcp = TcpStream::from_std(std_stream);
        let idx = self.watchers.len();
        self.poll.registry().register(
            &mut tcp,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let tls = match &self.cfg.tls {
            Some(config) => Some(Box::new(crate::tls::session(config, self.cfg.target)?)),
            None => None,
        };
        let stream = Sock { tcp, tls };
        self.watchers.push(Some(Watcher {
            stream,
            request: ((self.cfg.first_watcher + n) % self.cfg.requests.len().max(1) as u64)
                as usize,
            read_again: false,
            framing: None,
            out: BytesMut::new(),
            started_ns: monotonic_ns(),
            stats: WatcherStats::default(),
        }));
        Ok(())
    }

    fn on_event(&mut self, idx: usize, readable: bool) {
        let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if w.framing.is_none() {
            match w.stream.tcp.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {e}")),
            }
            if let Err(e) = w.stream.tcp.peer_addr() {
                if e.kind() == io::ErrorKind::NotConnected {
                    return;
                }
                return self.fail(idx, format!("connect: {e}"));
            }
            self.totals.connected += 1;
            w.framing = Some(Framing::start(
                &self.cfg.requests[w.request],
                &mut w.out,
                monotonic_ns(),
            ));
        }
        // A watcher queued to read again gets its one read of this pass there.
        let queued = w.read_again;
        if let Err(e) = self.flush(idx) {
            return self.fail(idx, format!("write: {e}"));
        }
        if readable
            && !queued
            && let Err(e) = self.read(idx)
        {
            return self.fail(idx, e);
        }
        if let Err(e) = self.flush(idx) {
            self.fail(idx, format!("write: {e}"));
        }
    }

    fn flush(&mut self, idx: usize) -> io::Result<()> {
        let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
            return Ok(());
        };
        // TLS: the handshake and records queued by a read go out even with nothing to say.
        w.stream.flush()?;
        while !w.out.is_empty() {
            match w.stream.write(&w.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => w.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads as the read mode says: once (queueing the watcher for another read on the next
    /// pass when the buffer came back full), or until the socket is empty.
    fn read(&mut self, idx: usize) -> Result<(), String> {
        let once = matches!(self.cfg.read, ReadMode::Once(_));
        loop {
            let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
                return Ok(());
            };
            let Some(framing) = w.framing.as_mut() else {
                return Ok(());
            };
            let n = match w.stream.read(&mut self.buf) {
                Ok(0) => return Err(CLOSED_BY_PEER.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            let now = monotonic_ns();
            if self.measuring {
                w.stats.bytes += n as u64;
                self.totals.bytes += n as u64;
            }
            w.stats
                .on_tick(now, true, self.cfg.stall_after.as_nanos() as u64);
            self.parsed.clear();
            framing.handle_input(&self.buf[..n], now, &mut w.out, &mut self.parsed)?;
            // Edge-triggered epoll reports no new readiness for what is left: come back for it.
            // (TLS may hold decrypted bytes beyond a full buffer; a short read means empty.)
            let more = n == self.buf.len() || w.stream.tls.is_some();
            if once && more && !w.read_again {
                w.read_again = true;
                self.read_again.push(idx);
            }
            self.handle_media(idx, now);
            if once {
                return Ok(());
            }
        }
    }

    /// The next pass for `queued`, the watchers whose last read (in an earlier pass) filled the
    /// buffer: one read each. Those it fills again are queued for the pass after.
    fn read_queued(&mut self, queued: Vec<usize>) {
        for idx in queued {
            let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            w.read_again = false;
            if let Err(e) = self.read(idx) {
                self.fail(idx, e);
                continue;
            }
            if let Err(e) = self.flush(idx) {
                self.fail(idx, format!("write: {e}"));
            }
        }
    }

    /// Accounts the media of one read: time to first frame, frames, gaps and latency.
    fn handle_media(&mut self, idx: usize, now: u64) {
        let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let requested_ns = w.framing.as_ref().map_or(0, Framing::requested_ns);
        for msg in self.parsed.drain(..) {
            match msg {
                Parsed::Video { head, .. } => {
                    let head = head.as_slice();
                    if !is_picture(head) {
                        continue;
                    }
                    if w.stats.first_frame_ns.is_none() {
                        w.stats.first_frame_ns = Some(now);
                        self.totals.playing += 1;
                        self.ttff
                            .saturating_record((now.saturating_sub(w.started_ns) / 1000).max(1));
                    }
                    let Some(p) = read_probe(head) else {
                        if self.measuring {
                            w.stats.video_frames += 1;
                        }
                        continue;
                    };
                    if self.measuring {
                        w.stats.on_probe(p);
                        if requested_ns > 0 && p.sent_ns >= requested_ns {
                            self.latency
                                .saturating_record((now.saturating_sub(p.sent_ns) / 1000).max(1));
                        }
                    } else {
                        w.stats.last_seq = Some(p.seq);
                    }
                }
                Parsed::Audio { .. } => w.stats.audio_frames += 1,
                Parsed::Control { .. } => {}
            }
        }
    }

    fn tick(&mut self, now: u64) {
        let stall = self.cfg.stall_after.as_nanos() as u64;
        for w in self.watchers.iter_mut().flatten() {
            w.stats.on_tick(now, false, stall);
        }
    }

    fn start_measuring(&mut self) {
        self.measuring = true;
        self.latency.reset();
        for w in self.watchers.iter_mut().flatten() {
            let last = w.stats.last_seq;
            let first = w.stats.first_frame_ns;
            let last_data = w.stats.last_data_ns;
            w.stats = WatcherStats {
                last_seq: last,
                first_frame_ns: first,
                last_data_ns: last_data,
                ..WatcherStats::default()
            };
        }
    }

    fn progress(&self, elapsed: f64, last_bytes: &mut u64, last_t: &mut f64) {
        if self.cfg.quiet {
            return;
        }
        let dt = (elapsed - *last_t).max(1e-3);
        let rate = (self.totals.bytes - *last_bytes) as f64 * 8.0 / dt / 1e9;
        *last_bytes = self.totals.bytes;
        *last_t = elapsed;
        let stalled = self
            .watchers
            .iter()
            .flatten()
            .filter(|w| w.stats.in_stall)
            .count();
        // No probes (a real file, or still warming up): no latency to show, rather than 0.
        let p99 = if self.latency.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1}ms",
                self.latency.value_at_quantile(0.99) as f64 / 1000.0
            )
        };
        eprintln!(
            "{}t={elapsed:5.1}s open={} playing={} fail={} drop={} stalled={stalled} {rate:.3} Gbit/s p99={p99}{}",
            self.cfg.label,
            self.watchers.iter().flatten().count(),
            self.totals.playing,
            self.totals.connect_failures,
            self.totals.disconnects,
            if self.measuring { "" } else { " (warm-up)" },
        );
    }

    fn summary(&self) -> Summary {
        let mut s = Summary {
            mode: self.cfg.requests[0].mode().into(),
            read: match self.cfg.read {
                ReadMode::Once(n) => format!("once {n}"),
                ReadMode::Drain(n) => format!("drain {n}"),
            },
            streams: self.cfg.requests.len() as u64,
            target: self.cfg.target.to_string(),
            processes: 1,
            watchers_requested: self.cfg.watchers,
            connected: self.totals.connected,
            playing: self.totals.playing,
            connect_failures: self.totals.connect_failures,
            errors: self.totals.errors,
            disconnects: self.totals.disconnects,
            measured_secs: self
                .cfg
                .duration
                .saturating_sub(self.cfg.warmup)
                .as_secs_f64(),
            bytes: self.totals.bytes,
            latency_us: to_pairs(&self.latency),
            ttff_us: to_pairs(&self.ttff),
            first_error: self.totals.first_error.clone(),
            ..Summary::default()
        };
        for w in self.watchers.iter().flatten() {
            s.video_frames += w.stats.video_frames;
            s.lost_frames += w.stats.lost;
            s.skipped_frames += w.stats.skipped;
            s.stalls += w.stats.stalls;
            s.stall_secs += w.stats.stall_ns as f64 / 1e9;
        }
        s.finish();
        s
    }
}

/// Runs the watchers for the configured duration and returns the summary.
pub fn run(cfg: WatchConfig) -> io::Result<Summary> {
    let mut run = Run {
        poll: Poll::new()?,
        watchers: Vec::with_capacity(cfg.watchers as usize),
        buf: vec![0; cfg.read.buffer_len()],
        read_again: Vec::new(),
        parsed: Vec::new(),
        latency: new_histogram(),
        ttff: new_histogram(),
        totals: Totals::default(),
        measuring: cfg.warmup.is_zero(),
        cfg,
    };
    let mut events = Events::with_capacity(4096);
    let start = monotonic_ns();
    let end = start + run.cfg.duration.as_nanos() as u64;
    let warm_end = start + run.cfg.warmup.as_nanos() as u64;
    let mut started = 0u64;
    let mut next_tick = start + 250_000_000;
    let mut next_progress = start + 1_000_000_000;
    let (mut last_bytes, mut last_t) = (0u64, 0.0f64);
    loop {
        let now = monotonic_ns();
        if now >= end {
            break;
        }
        if !run.measuring && now >= warm_end {
            run.start_measuring();
        }
        let due = if run.cfg.ramp_per_sec <= 0.0 {
            run.cfg.watchers
        } else {
            let secs = (now - start) as f64 / 1e9;
            ((secs * run.cfg.ramp_per_sec) as u64 + 1).min(run.cfg.watchers)
        };
        while started < due {
            run.start(started)?;
            started += 1;
        }
        if now >= next_tick {
            run.tick(now);
            next_tick = now + 250_000_000;
        }
        if now >= next_progress {
            run.progress((now - start) as f64 / 1e9, &mut last_bytes, &mut last_t);
            next_progress += 1_000_000_000;
        }
        let timeout = if !run.read_again.is_empty() {
            0
        } else if started < run.cfg.watchers {
            5
        } else {
            100
        };
        match run
            .poll
            .poll(&mut events, Some(Duration::from_millis(timeout)))
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Sockets left with data by the last pass are read once after the new events, as a
        // level-triggered loop would take them in this pass; sockets this pass's reads left
        // with data wait for the next one.
        let again = std::mem::take(&mut run.read_again);
        for ev in events.iter() {
            run.on_event(ev.token().0, ev.is_readable() || ev.is_read_closed());
        }
        run.read_queued(again);
    }
    Ok(run.summary())
}
