//! The RTMP connection driver: joins a socket to a sans-IO [`ServerSession`].
//!
//! One task reads: it feeds the session, acts on its events (publish and play requests, media)
//! and, until the connection plays, writes the session's replies itself. A playing connection
//! gets a second task, the watcher write loop ([`super::watch`]), which from then on writes
//! both the session's replies and the media, so the two never interleave mid-message.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::Core;
use super::accept::Accepted;
use super::cluster::Cluster;
use super::fstream::escape_name;
use super::guard::ConnGuard;
use super::limits::IngestMeter;
use super::reader::Reader;
use super::runtime::{self, BufResult};
use super::streams::{Ingest, Viewer};
use super::watch::{Control, LocalNotify};
use crate::config::Config;
use crate::fanout::{AudioMode, Egress, PublishError, StreamState};
use crate::metrics::Protocol;
use crate::proto::rtmp::{
    ChunkLimits, Limits, ServerEvent, ServerSession, SessionConfig, SessionError,
};
use crate::proto::stream_name;

/// True for the names fstream broadcasts use, `fstream/<user>/<channel>`. Checked on the full
/// name: ffmpeg sends `rtmp://host/fstream/fier/chan` as app `fstream/fier`, name `chan`.
fn is_fstream_channel(full: &str) -> bool {
    full.split('/').next() == Some("fstream")
}

/// The stream name for an RTMP app and publish/play name: `app/key`, the query string dropped.
fn stream_name(config: &Config, app: &str, name: &str) -> (String, String) {
    let key = name.split('?').next().unwrap_or(name);
    let full = format!("{app}/{key}");
    let shown = config.shown_stream_name(&full);
    (full, shown)
}

/// What the connection is doing.
enum Role {
    /// Handshaking or connected but neither publishing nor playing yet.
    Pending,
    /// Boxed: the ingest (with its audio rendition state) is far larger than the others.
    Publishing(Box<Ingest>),
    Playing {
        control: Rc<PlayControl>,
    },
}

/// The play side's hooks into the shared write loop.
struct PlayControl {
    session: Rc<RefCell<ServerSession>>,
    stream_id: u32,
    notify: LocalNotify,
    stopped: Cell<bool>,
    /// Announce a publisher's departure at once (UnpublishNotify), not only the stream's end:
    /// set for other nodes' pulls, which then re-resolve instead of waiting out the grace.
    announce_pause: bool,
    /// The cluster and the stream's name: an end because no origin has the stream is told
    /// as `NetStream.Play.StreamNotFound`.
    cluster: (Arc<Cluster>, String),
    /// The session may have bytes to send (set by the reader, cleared by `drain`), so a write
    /// carrying only media never touches the session.
    output_queued: Cell<bool>,
}

impl PlayControl {
    /// Tells the writer the session may have queued bytes (replies, acknowledgements) or the
    /// connection is ending.
    fn wake_writer(&self) {
        self.output_queued.set(true);
        self.notify.notify();
    }
}

impl Control for PlayControl {
    fn protocol(&self) -> Protocol {
        Protocol::Rtmp
    }

    fn drain(&self, batch: &mut Vec<Bytes>) {
        if !self.output_queued.replace(false) {
            return;
        }
        let mut session = self.session.borrow_mut();
        while let Some(bytes) = session.poll_transmit() {
            batch.push(bytes);
        }
    }

    fn state_changed(&self, state: StreamState) {
        // Players (ffmpeg among them) treat UnpublishNotify as end of stream, so a publisher
        // leaving within the grace window is not announced: the player just sees a pause,
        // then the returning publisher's headers and frames. Only the real end is announced.
        let (cluster, name) = &self.cluster;
        if state == StreamState::Ended && cluster.was_not_found(name) {
            self.session.borrow_mut().reject_play(
                self.stream_id,
                "NetStream.Play.StreamNotFound",
                "no node of the cluster has this stream",
            );
            self.output_queued.set(true);
        } else if state == StreamState::Ended
            || (self.announce_pause && state == StreamState::Waiting)
        {
            self.session.borrow_mut().notify_unpublish(self.stream_id);
            self.output_queued.set(true);
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.get()
    }

    fn notify(&self) -> &LocalNotify {
        &self.notify
    }
}

/// Why a connection ended, for the log.
enum End {
    PeerClosed,
    Protocol(SessionError),
    Refused(&'static str),
    Superseded,
    Io(std::io::Error),
}

struct Connection {
    core: Rc<Core>,
    guard: Rc<ConnGuard>,
    session: Rc<RefCell<ServerSession>>,
    peer: SocketAddr,
    role: Role,
    app: Option<String>,
    /// A connection on the cluster's inter-node listener: another node pulling a stream.
    peer_node: bool,
}

/// Serves one accepted RTMP connection to its end.
pub async fn serve(core: Rc<Core>, accepted: Accepted) {
    serve_as(core, accepted, false).await;
}

/// Serves a connection on the cluster's inter-node listener: another node's pull. It may only
/// play, only a stream live on this node (else `NetStream.Play.StreamNotFound`, so the puller
/// re-resolves), is never itself pulled from elsewhere (no loops), and hears at once when the
/// publisher leaves.
pub async fn serve_peer(core: Rc<Core>, accepted: Accepted) {
    serve_as(core, accepted, true).await;
}

async fn serve_as(core: Rc<Core>, accepted: Accepted, peer_node: bool) {
    let Accepted { guard, peer, early } = accepted;
    let cfg = &core.config.rtmp;
    let session = ServerSession::new(
        SessionConfig {
            limits: Limits {
                chunk: ChunkLimits {
                    max_message_len: cfg.max_message_size,
                    max_chunk_streams: cfg.max_chunk_streams as usize,
                    ..ChunkLimits::default()
                },
                ..Limits::default()
            },
            chunk_size: cfg.chunk_size,
            window_ack_size: cfg.window_ack_size,
            peer_bandwidth: cfg.window_ack_size,
        },
        handshake_random(),
    );
    guard.set_idle_limit(Some(Duration::from_millis(cfg.idle_timeout_ms)));
    let mut conn = Connection {
        core: core.clone(),
        guard,
        session: Rc::new(RefCell::new(session)),
        peer,
        role: Role::Pending,
        app: None,
        peer_node,
    };
    let end = conn.read_loop(early).await;
    conn.finish(end);
}

fn handshake_random() -> [u8; 1528] {
    let mut random = [0u8; 1528];
    rand::fill(&mut random[..]);
    random
}

impl Connection {
    /// Feeds `input` (the bytes that came with the PROXY header, then each read) to the session
    /// until the connection ends.
    async fn read_loop(&mut self, mut input: BytesMut) -> End {
        let stream = self.guard.stream().clone();
        let mut reader = Reader::default();
        if !input.is_empty()
            && let Some(end) = self.feed(&mut input).await
        {
            return end;
        }
        let cfg = &self.core.config.rtmp;
        let sustain = Duration::from_millis(cfg.max_publish_sustain_ms);
        let mut ingest = IngestMeter::new(cfg.max_publish_kbps, sustain);
        loop {
            let n = match reader.read_into(&stream, &mut input).await {
                Ok(0) => return End::PeerClosed,
                Ok(n) => n,
                Err(e) => return End::Io(e),
            };
            let now = Instant::now();
            self.guard.note_read(now);
            if matches!(self.role, Role::Publishing { .. }) && ingest.add(n, now) {
                let limit_kbps = self.core.config.rtmp.max_publish_kbps;
                warn!(peer = %self.peer, limit_kbps, "publisher disconnected: above rtmp.max_publish_kbps for rtmp.max_publish_sustain_ms");
                return End::Refused("publisher above the ingest limit");
            }
            if let Some(end) = self.feed(&mut input).await {
                return end;
            }
        }
    }

    /// Hands `input` to the session, acts on its events and writes its replies.
    async fn feed(&mut self, input: &mut BytesMut) -> Option<End> {
        // The session stops consuming input while a publish or play request awaits our
        // decision; we decide at once, so feed it again until it has taken what it can.
        loop {
            let before = input.len();
            if let Err(e) = self.session.borrow_mut().handle_input(input) {
                return Some(End::Protocol(e));
            }
            if let Some(end) = self.handle_events() {
                self.flush().await;
                return Some(end);
            }
            if input.is_empty() || input.len() == before {
                break;
            }
        }
        self.flush().await;
        None
    }

    /// Writes the session's replies: directly before play starts, via the writer after.
    async fn flush(&self) {
        match &self.role {
            Role::Playing { control } => control.wake_writer(),
            _ => {
                let mut batch = Vec::new();
                {
                    let mut session = self.session.borrow_mut();
                    while let Some(bytes) = session.poll_transmit() {
                        batch.push(bytes);
                    }
                }
                if !batch.is_empty() {
                    let BufResult(_, _) = self.guard.stream().write_vectored_all(batch).await;
                }
            }
        }
    }

    fn handle_events(&mut self) -> Option<End> {
        loop {
            let event = self.session.borrow_mut().poll_event()?;
            match event {
                ServerEvent::Connected { app, .. } => {
                    self.guard.set_handshake_deadline(None);
                    debug!(peer = %self.peer, %app, "connected");
                    self.app = Some(app);
                }
                ServerEvent::PublishRequested {
                    stream_id,
                    app,
                    name,
                    ..
                } => {
                    if let Some(end) = self.start_publish(stream_id, &app, &name) {
                        return Some(end);
                    }
                }
                ServerEvent::PlayRequested {
                    stream_id,
                    app,
                    name,
                } => {
                    if let Some(end) = self.start_play(stream_id, &app, &name) {
                        return Some(end);
                    }
                }
                ServerEvent::Media { frame, .. } => {
                    if let Role::Publishing(ingest) = &mut self.role
                        && ingest.push(frame).is_err()
                    {
                        return Some(End::Superseded);
                    }
                }
                ServerEvent::Unpublished { .. } => self.stop_publishing(),
                ServerEvent::PlayStopped { .. } => {
                    if let Role::Playing { control } = &self.role {
                        control.stopped.set(true);
                        control.wake_writer();
                    }
                }
            }
        }
    }

    fn start_publish(&mut self, stream_id: u32, app: &str, name: &str) -> Option<End> {
        let (full, shown) = stream_name(&self.core.config, app, name);
        let cfg = &self.core.config;
        if !matches!(self.role, Role::Pending) {
            self.session.borrow_mut().reject_publish(
                stream_id,
                "NetStream.Publish.BadName",
                "this connection is already publishing or playing",
            );
            return Some(End::Refused("publish on a busy connection"));
        }
        if self.peer_node {
            self.session.borrow_mut().reject_publish(
                stream_id,
                "NetStream.Publish.BadName",
                "the cluster listener serves pulls only",
            );
            return Some(End::Refused("publish on the cluster listener"));
        }
        if let Err(e) = stream_name::check(&full) {
            warn!(peer = %self.peer, stream = %escape_name(&shown), reason = %e, "publish refused: not a stream name");
            self.session.borrow_mut().reject_publish(
                stream_id,
                "NetStream.Publish.BadName",
                "not a stream name (APP/KEY)",
            );
            return Some(End::Refused("not a stream name"));
        }
        if is_fstream_channel(&full) {
            // fstream channels are claimed by authenticated fstream broadcasters only.
            warn!(peer = %self.peer, stream = %shown, "publish refused: the fstream app is reserved for fstream broadcasts");
            self.session.borrow_mut().reject_publish(
                stream_id,
                "NetStream.Publish.BadName",
                "the fstream app is reserved for fstream broadcasts",
            );
            return Some(End::Refused("publish into the fstream app"));
        }
        if !cfg
            .rtmp
            .publish_allowed(app, name.split('?').next().unwrap_or(name))
        {
            warn!(peer = %self.peer, stream = %shown, "publish refused: key not allowed");
            self.session.borrow_mut().reject_publish(
                stream_id,
                "NetStream.Publish.Unauthorized",
                "stream key not allowed",
            );
            return Some(End::Refused("publish key not allowed"));
        }
        match Ingest::claim(&self.core, Protocol::Rtmp, &full, shown.clone()) {
            Ok(ingest) => {
                info!(
                    peer = %self.peer,
                    worker = self.core.index,
                    stream = %shown,
                    took_over = ingest.took_over(),
                    "publish started"
                );
                self.session.borrow_mut().accept_publish(stream_id);
                self.role = Role::Publishing(Box::new(ingest));
                None
            }
            Err(PublishError::InUse) => {
                warn!(peer = %self.peer, stream = %shown, "publish refused: stream already live");
                self.session.borrow_mut().reject_publish(
                    stream_id,
                    "NetStream.Publish.BadName",
                    "stream is already being published",
                );
                Some(End::Refused("stream already live"))
            }
        }
    }

    fn start_play(&mut self, stream_id: u32, app: &str, name: &str) -> Option<End> {
        let (full, shown) = stream_name(&self.core.config, app, name);
        if !matches!(self.role, Role::Pending) {
            self.session.borrow_mut().reject_play(
                stream_id,
                "NetStream.Play.Failed",
                "this connection is already publishing or playing",
            );
            return Some(End::Refused("play on a busy connection"));
        }
        if let Err(e) = stream_name::check(&full) {
            warn!(peer = %self.peer, stream = %escape_name(&shown), reason = %e, "play refused: not a stream name");
            self.session.borrow_mut().reject_play(
                stream_id,
                "NetStream.Play.StreamNotFound",
                "not a stream name (APP/KEY)",
            );
            return Some(End::Refused("not a stream name"));
        }
        if self.peer_node {
            let live = self
                .core
                .hub
                .registry()
                .get(&full)
                .is_some_and(|stream| stream.is_live());
            if !live || is_fstream_channel(&full) {
                info!(peer = %self.peer, stream = %shown, "cluster pull refused: not live here");
                self.session.borrow_mut().reject_play(
                    stream_id,
                    "NetStream.Play.StreamNotFound",
                    "the stream is not live on this node",
                );
                return Some(End::Refused("pull of a stream not live here"));
            }
        } else if !self.core.config.rtmp.play_allowed(app) {
            self.session.borrow_mut().reject_play(
                stream_id,
                "NetStream.Play.Failed",
                "playing this app is not allowed",
            );
            return Some(End::Refused("play not allowed"));
        }
        if is_fstream_channel(&full)
            && let Some(reason) = self.fstream_play_refusal(&full)
        {
            warn!(peer = %self.peer, stream = %shown, reason, "play refused");
            self.session
                .borrow_mut()
                .reject_play(stream_id, "NetStream.Play.Failed", reason);
            return Some(End::Refused("fstream channel not playable over RTMP"));
        }
        self.session.borrow_mut().accept_play(stream_id);
        info!(peer = %self.peer, worker = self.core.index, stream = %shown, "play started");
        let control = Rc::new(PlayControl {
            session: self.session.clone(),
            stream_id,
            notify: LocalNotify::default(),
            stopped: Cell::new(false),
            announce_pause: self.peer_node,
            cluster: (self.core.cluster.clone(), full.clone()),
            // accept_play's replies are already queued.
            output_queued: Cell::new(true),
        });
        let mut viewer = Viewer::subscribe(
            &self.core,
            &self.guard,
            self.peer,
            Protocol::Rtmp,
            (full, shown),
            Egress::Rtmp,
        );
        // Enhanced RTMP players that listed Opus get it as published; the others get AAC.
        viewer
            .watcher()
            .set_audio(if self.session.borrow().takes_opus() {
                AudioMode::Passthrough
            } else {
                AudioMode::Aac
            });
        // Dropping the viewer at the end shuts the socket down, so the reader ends too.
        runtime::spawn(viewer.play(control.clone())).detach();
        self.role = Role::Playing { control };
        None
    }

    /// RTMP has no place for an fstream channel password, so RTMP players may play only a live
    /// fstream channel whose broadcaster set none. A channel that is not live is refused rather
    /// than waited for: its password is unknown until its broadcaster arrives.
    fn fstream_play_refusal(&self, full: &str) -> Option<&'static str> {
        match self.core.fstream.get(full) {
            Some(info) if info.password.is_none() => None,
            Some(_) => Some("this fstream channel has a password: watch it over fstream"),
            None => Some("no such fstream channel is live"),
        }
    }

    /// Ends this connection's publisher, if it has one: the stream outlives it by the grace
    /// window, then ends unless someone re-published.
    fn stop_publishing(&mut self) {
        match std::mem::replace(&mut self.role, Role::Pending) {
            Role::Publishing(ingest) => {
                info!(peer = %self.peer, stream = %ingest.shown(), frames = ingest.frames(), "publish ended");
                ingest.end();
            }
            other => self.role = other,
        }
    }

    fn finish(mut self, end: End) {
        let peer = self.peer;
        match (&end, self.guard.cut()) {
            (_, Some(cut)) => info!(%peer, reason = %cut, "connection closed"),
            (End::PeerClosed, _) => debug!(%peer, "connection closed by peer"),
            (End::Protocol(e), _) => {
                let blame = e.blame();
                self.core.count_protocol_error(Protocol::Rtmp, blame);
                warn!(%peer, reason = %e, blame = blame.label(), "connection closed: protocol error")
            }
            (End::Refused(reason), _) => info!(%peer, reason, "connection closed: refused"),
            (End::Superseded, _) => info!(%peer, "publisher replaced by a new one (takeover)"),
            // Bad TLS records after the handshake (the transport reports them as invalid data).
            (End::Io(e), _) if e.kind() == std::io::ErrorKind::InvalidData => {
                warn!(%peer, error = %e, "connection closed: TLS error")
            }
            (End::Io(e), _) => debug!(%peer, error = %e, "connection closed: io error"),
        }
        self.stop_publishing();
        if let Role::Playing { control } = &self.role {
            control.stopped.set(true);
            control.wake_writer();
        }
        self.guard.stream().shutdown();
    }
}
