//! The UDP side of one FTL stream: a receive task feeding the sans-IO [`MediaSession`] and the
//! stream's [`Publisher`](crate::fanout::Publisher), and a timer task driving NACK retries and the session deadlines.
//!
//! Both tasks run on the control connection's core and share the session through a `RefCell`
//! (never borrowed across an await). The receive loop is the only reader of the socket; the timer
//! task never races it: it calls `handle_timeout`, sends what the session queued, and ends the
//! session through the control channel (`408` when no media arrived, a silent close when control
//! and media both went quiet). Stopping wakes the pending receive by shutting the socket's read
//! side and sending it an empty datagram.
//!
//! Receive path: io_uring multishot receive with provided buffers (`recv_from_multi`, the
//! runtime's buffer pool sized in [`super::runtime::build`]); each datagram is copied once out of
//! the pool buffer. The counters report datagrams per receive submission.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use socket2::SockRef;
use tracing::{debug, info};

use super::Core;
use super::ftl::ControlShared;
use super::runtime::{self, BufResult, UdpSocket};
use super::streams::Ingest;
use crate::fanout::Variant;
use crate::media::stream_info::StreamInfo;
use crate::media::{Frame, MediaKind};
use crate::metrics::Counter;
use crate::proto::ftl::{MediaSession, ResponseCode, SourceFilter};

/// Longest the timer task sleeps between deadline checks.
const TICK: Duration = Duration::from_millis(100);

/// Receive-path counters (the session's own counters come from `MediaSession::stats`).
#[derive(Debug, Default, Clone, Copy)]
struct RecvCounters {
    /// Receive submissions (multishot arms).
    recv_calls: u64,
    datagrams: u64,
    bytes: u64,
    /// From an address the source filter refused.
    foreign: u64,
    /// Dropped by the session (malformed, unknown SSRC, wrong payload type).
    rejected: u64,
    frames: u64,
}

struct MediaState {
    session: MediaSession,
    filter: SourceFilter,
    publisher: Option<Ingest>,
    counters: RecvCounters,
    last_media: Instant,
    media_seen: bool,
    /// Builds the stream's `onMetaData` (FTL carries none).
    info: StreamInfo,
}

/// The control driver's handle on a stream's media tasks.
pub struct MediaLink {
    core: Rc<Core>,
    control: Rc<ControlShared>,
    socket: UdpSocket,
    state: RefCell<MediaState>,
    stopped: Cell<bool>,
    name: String,
    accepted_at: Instant,
    /// Why the session ended, for its end-of-session line (the first reason noted wins).
    end_reason: RefCell<Option<String>>,
}

/// Starts the receive and timer tasks of an accepted stream.
#[allow(clippy::too_many_arguments)]
pub fn start(
    core: Rc<Core>,
    control: Rc<ControlShared>,
    socket: UdpSocket,
    session: MediaSession,
    filter: SourceFilter,
    publisher: Ingest,
    info: StreamInfo,
    name: String,
    now: Instant,
) -> Rc<MediaLink> {
    core.hub.metrics().add(Counter::FtlSessions, 1);
    let link = Rc::new(MediaLink {
        core: core.clone(),
        control,
        socket,
        state: RefCell::new(MediaState {
            session,
            filter,
            publisher: Some(publisher),
            counters: RecvCounters::default(),
            last_media: now,
            media_seen: false,
            info,
        }),
        stopped: Cell::new(false),
        name,
        accepted_at: now,
        end_reason: RefCell::new(None),
    });
    runtime::spawn(link.clone().receive_loop()).detach();
    runtime::spawn(link.clone().timer_loop()).detach();
    link
}

impl MediaLink {
    /// Notes why the session is ending, unless a reason was already noted.
    pub fn note_end(&self, reason: impl Into<String>) {
        let mut slot = self.end_reason.borrow_mut();
        if slot.is_none() {
            *slot = Some(reason.into());
        }
    }

    /// Ends the media side: finishes the publisher (grace window), logs the counters and wakes
    /// the receive loop so the socket closes. Idempotent.
    pub fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        let (publisher, counters, stats) = {
            let mut state = self.state.borrow_mut();
            (
                state.publisher.take(),
                state.counters,
                state.session.stats(),
            )
        };
        if let Some(publisher) = publisher {
            publisher.end();
        }
        let per_call = if counters.recv_calls == 0 {
            0.0
        } else {
            counters.datagrams as f64 / counters.recv_calls as f64
        };
        let reason = self
            .end_reason
            .borrow()
            .clone()
            .unwrap_or_else(|| "ended".to_owned());
        info!(
            stream = %self.name,
            %reason,
            duration_s = self.accepted_at.elapsed().as_secs_f64(),
            frames = counters.frames,
            video_frames = stats.video_frames,
            audio_frames = stats.audio_frames,
            datagrams = counters.datagrams,
            bytes = counters.bytes,
            recv_submissions = counters.recv_calls,
            datagrams_per_submission = per_call,
            foreign = counters.foreign,
            dropped = counters.rejected + counters.foreign,
            malformed = stats.malformed,
            unknown_ssrc = stats.unknown_ssrc,
            payload_type_mismatch = stats.payload_type_mismatch,
            pings = stats.pings,
            lost = stats.video.lost,
            nacks_sent = stats.video.nacks_sent,
            recovered = stats.video.recovered,
            "FTL media ended"
        );
        // Wake the pending receive: shutting the read side down completes it on Linux; the
        // empty datagram to itself covers the rest.
        let _ = SockRef::from(&self.socket).shutdown(std::net::Shutdown::Read);
        if let Ok(local) = self.socket.local_addr()
            && let Ok(waker) = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0))
        {
            let _ = waker.send_to(&[], local);
        }
    }

    /// Receives with io_uring multishot `recvmsg` into the runtime's provided-buffer pool: one
    /// submission yields completions for many datagrams. A multishot receive ends when the pool
    /// runs dry (the datagrams wait in the socket buffer) and is simply re-armed.
    async fn receive_loop(self: Rc<Self>) {
        'arm: while !self.stopped.get() {
            self.state.borrow_mut().counters.recv_calls += 1;
            let stream = self.socket.recv_from_multi();
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let received = match item {
                    Ok(received) => received,
                    Err(e) => {
                        debug!(stream = %self.name, error = %e, "FTL media receive failed");
                        if e.raw_os_error() == Some(libc::ENOBUFS) {
                            continue 'arm;
                        }
                        break 'arm;
                    }
                };
                if self.stopped.get() {
                    break 'arm;
                }
                let Some(from) = received.addr().and_then(|a| a.as_socket()) else {
                    continue;
                };
                // Copied out so the pool buffer goes straight back to the kernel.
                let datagram = Bytes::copy_from_slice(received.data());
                drop(received);
                self.handle_datagram(from, datagram).await;
            }
        }
        if !self.stopped.get() {
            // The media socket failed under a live session: end the session as a whole.
            self.note_end("media socket failed");
            runtime::shutdown(self.control.guard.stream());
        }
        self.stop();
    }

    async fn handle_datagram(&self, from: SocketAddr, datagram: Bytes) {
        let now = Instant::now();
        super::trace::clock();
        let (transmit, peer, superseded) = {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            state.counters.datagrams += 1;
            state.counters.bytes += datagram.len() as u64;
            if !state.filter.accepts(from) {
                state.counters.foreign += 1;
                return;
            }
            match state.session.handle_datagram(now, datagram) {
                Ok(()) => state.filter.latch(from),
                Err(_) => state.counters.rejected += 1,
            }
            let stats = state.session.stats();
            if stats.video.received + stats.audio.received > 0 {
                state.media_seen = true;
                state.last_media = now;
            }
            let superseded = push_frames(state);
            let transmit: Vec<Bytes> =
                std::iter::from_fn(|| state.session.poll_transmit()).collect();
            (transmit, state.filter.peer(), superseded)
        };
        self.send(peer, transmit).await;
        if superseded {
            self.superseded();
        }
    }

    async fn send(&self, peer: Option<SocketAddr>, transmit: Vec<Bytes>) {
        let Some(peer) = peer else {
            return;
        };
        for datagram in transmit {
            let BufResult(_, _) = self.socket.send_to(datagram, peer).await;
        }
    }

    fn superseded(&self) {
        info!(stream = %self.name, "FTL publisher replaced by a new one (takeover)");
        self.note_end("taken over");
        let mut state = self.state.borrow_mut();
        state.publisher = None;
        drop(state);
        runtime::shutdown(self.control.guard.stream());
    }

    async fn timer_loop(self: Rc<Self>) {
        let cfg = &self.core.config.ftl;
        let no_media = Duration::from_millis(cfg.no_media_timeout_ms);
        let idle = Duration::from_millis(cfg.idle_timeout_ms);
        while !self.stopped.get() {
            let now = Instant::now();
            let wake = self
                .state
                .borrow()
                .session
                .poll_timeout()
                .map_or(now + TICK, |t| t.clamp(now, now + TICK));
            runtime::sleep_until(wake).await;
            if self.stopped.get() {
                break;
            }
            let now = Instant::now();
            let (transmit, peer, superseded, media_seen, last_media) = {
                let mut guard = self.state.borrow_mut();
                let state = &mut *guard;
                state.session.handle_timeout(now);
                let superseded = push_frames(state);
                let transmit: Vec<Bytes> =
                    std::iter::from_fn(|| state.session.poll_transmit()).collect();
                (
                    transmit,
                    state.filter.peer(),
                    superseded,
                    state.media_seen,
                    state.last_media,
                )
            };
            self.send(peer, transmit).await;
            if superseded {
                self.superseded();
                break;
            }
            if !media_seen && now.saturating_duration_since(self.accepted_at) >= no_media {
                info!(stream = %self.name, "FTL: no media arrived in time (408)");
                self.note_end("no media (408)");
                self.control.end_with(ResponseCode::NoMediaTimeout).await;
                break;
            }
            let last_control = self.control.last_control.get();
            if now.saturating_duration_since(last_media.max(last_control)) >= idle {
                info!(stream = %self.name, "FTL: control and media idle; closing");
                self.note_end("control and media idle");
                runtime::shutdown(self.control.guard.stream());
                break;
            }
        }
    }
}

/// Moves the session's frames into the publisher; true when the publisher was superseded.
fn push_frames(state: &mut MediaState) -> bool {
    while let Some(frame) = state.session.poll_frame() {
        let Some(publisher) = state.publisher.as_mut() else {
            continue;
        };
        if let Some(meta) = state.info.observe(&frame) {
            let ts = frame.timestamp;
            let script = |body| Frame::new(MediaKind::Script, ts, body);
            if publisher
                .push_variant(script(meta.opus), Variant::Opus)
                .is_err()
                || publisher
                    .push_variant(script(meta.aac), Variant::Aac)
                    .is_err()
            {
                return true;
            }
        }
        if publisher.push(frame).is_err() {
            return true;
        }
        state.counters.frames += 1;
    }
    false
}
