//! The FTL control driver: joins a TCP control connection to a sans-IO [`ControlSession`] and,
//! once the stream is accepted, starts its UDP media task ([`super::ftl_media`]) on this core.
//!
//! One task reads the control socket, feeds the session and answers its two decisions (the
//! channel key on CONNECT, the UDP port or a refusal at `.`). The media timer task may also end
//! the session (408 no media, idle, takeover): it queues the code, writes it, and shuts the
//! control socket down, so this reader wakes and tears everything down in one place. Deadlines
//! use the core's guard; no read is ever raced against a timer.
//!
//! Decisions: HMAC challenges are rate limited per source IP for the whole node (one count
//! shared by every worker; each control connection counts as one challenge, counted at accept;
//! over the limit the client gets `401` and a close). The UDP port is the first free one of `ftl.udp_port_range`, scanned from a
//! per-core cursor, bound on the control connection's local IP. Keys are never logged.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::Core;
use super::accept::Accepted;
use super::ftl_media::{self, MediaLink};
use super::guard::ConnGuard;
use super::reader::Reader;
use super::runtime::{self, BufResult, UdpSocket};
use super::streams::Ingest;
use crate::config::FtlConfig;
use crate::fanout::PublishError;
use crate::media::stream_info::{Announced, StreamInfo};
use crate::metrics::{AuthFailure, Protocol};
use crate::proto::ftl::{
    CHALLENGE_LEN, ControlConfig, ControlError, ControlEvent, ControlSession, MediaConfig,
    MediaSession, ResponseCode, SourceFilter, StreamAttributes,
};
use crate::proto::rtp::ReorderConfig;

/// Per-core FTL state: the UDP port cursor and the live sessions. (The HMAC rate limit is the
/// node's: [`super::limits::NodeLimits::ftl_challenges`].)
#[derive(Debug, Default)]
pub struct FtlCore {
    next_port: Cell<usize>,
    sessions: RefCell<Vec<Weak<ControlShared>>>,
}

impl FtlCore {
    /// Binds a UDP socket on the first free port of the range, starting after the last one
    /// handed out. Ports of other cores' sessions are busy (no `SO_REUSEPORT` on media ports).
    fn bind_media_port(&self, config: &FtlConfig, ip: IpAddr) -> Option<(UdpSocket, u16)> {
        let range = config.udp_port_range;
        let len = range.len();
        for step in 0..len {
            let index = (self.next_port.get() + step) % len;
            let Ok(offset) = u16::try_from(index) else {
                continue;
            };
            let port = range.start.saturating_add(offset);
            if let Ok(socket) = runtime::bind_udp(SocketAddr::new(ip, port)) {
                self.next_port.set(index + 1);
                return Some((socket, port));
            }
        }
        None
    }

    /// Ends every live FTL stream on this core whose stream name is `stream` (all when `None`)
    /// with `410 server terminate`: what an admin action or a graceful shutdown calls.
    pub async fn terminate(&self, stream: Option<&str>) -> usize {
        let live: Vec<Rc<ControlShared>> = {
            let mut sessions = self.sessions.borrow_mut();
            sessions.retain(|s| s.strong_count() > 0);
            sessions.iter().filter_map(Weak::upgrade).collect()
        };
        let mut ended = 0;
        for session in live {
            let matches =
                stream.is_none_or(|name| session.stream_name.borrow().as_deref() == Some(name));
            if matches {
                session.end_with(ResponseCode::ServerTerminate).await;
                ended += 1;
            }
        }
        ended
    }
}

/// What the control reader and the media tasks share.
#[derive(Debug)]
pub struct ControlShared {
    pub session: RefCell<ControlSession>,
    pub guard: Rc<ConnGuard>,
    pub peer: SocketAddr,
    /// Last control input (a PING every 5 s keeps a live session from going idle).
    pub last_control: Cell<Instant>,
    /// Why the session was ended from outside the reader, for the log.
    pub ended_by: Cell<Option<ResponseCode>>,
    pub stream_name: RefCell<Option<String>>,
}

impl ControlShared {
    /// Queues `code`, writes it and shuts the control socket down (the reader then cleans up).
    pub async fn end_with(&self, code: ResponseCode) {
        if self.ended_by.get().is_none() {
            self.ended_by.set(Some(code));
        }
        self.session.borrow_mut().end(code);
        self.flush().await;
        runtime::shutdown(self.guard.stream());
    }

    /// Writes whatever the session has queued.
    pub async fn flush(&self) {
        let batch: Vec<Bytes> = {
            let mut session = self.session.borrow_mut();
            std::iter::from_fn(|| session.poll_transmit()).collect()
        };
        if !batch.is_empty() {
            let BufResult(_, _) = self.guard.stream().write_vectored_all(batch).await;
        }
    }
}

/// Why the control connection ended, for the log.
#[derive(Debug)]
enum End {
    PeerClosed,
    Disconnected,
    Refused(ResponseCode),
    Protocol(ControlError),
    Io(std::io::Error),
}

/// Serves one accepted FTL control connection to its end.
/// `peer` is the client: the PROXY header's source when `ftl.proxy_protocol` is on, so the HMAC
/// rate limit and the UDP media filter both apply to the client, not the balancer.
pub async fn serve(core: Rc<Core>, ftl: Rc<FtlCore>, accepted: Accepted) {
    let Accepted { guard, peer, early } = accepted;
    let cfg = &core.config.ftl;
    let now = Instant::now();
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand::fill(&mut challenge[..]);
    let shared = Rc::new(ControlShared {
        session: RefCell::new(ControlSession::new(ControlConfig::default(), challenge)),
        guard,
        peer,
        last_control: Cell::new(now),
        ended_by: Cell::new(None),
        stream_name: RefCell::new(None),
    });
    ftl.sessions.borrow_mut().push(Rc::downgrade(&shared));
    let mut conn = Connection {
        core: core.clone(),
        ftl: ftl.clone(),
        shared,
        media: None,
    };
    let limit = cfg.hmac_attempts_per_minute_per_ip;
    let end = if core.limits.ftl_challenges.admit(peer.ip(), now, limit) {
        conn.read_loop(early).await
    } else {
        core.node
            .metrics
            .auth_failed(Protocol::Ftl, AuthFailure::RateLimited);
        if let Some(suppressed) = core.log_limiter.allow("ftl-hmac-rate", peer.ip(), now) {
            warn!(%peer, limit, suppressed, "FTL HMAC rate limit exceeded; refusing (logged at most once a minute per address and worker; suppressed = refusals not logged since)");
        }
        conn.shared
            .session
            .borrow_mut()
            .end(ResponseCode::Unauthorized);
        conn.shared.flush().await;
        End::Refused(ResponseCode::Unauthorized)
    };
    conn.finish(end);
}

struct Connection {
    core: Rc<Core>,
    ftl: Rc<FtlCore>,
    shared: Rc<ControlShared>,
    media: Option<Rc<MediaLink>>,
}

impl Connection {
    /// Feeds `input` (the bytes that came with the PROXY header, then each read) to the session
    /// until the connection ends.
    async fn read_loop(&mut self, mut input: BytesMut) -> End {
        let stream = self.shared.guard.stream().clone();
        let mut reader = Reader::default();
        if !input.is_empty()
            && let Some(end) = self.feed(&mut input).await
        {
            return end;
        }
        loop {
            match reader.read_into(&stream, &mut input).await {
                Ok(0) => return End::PeerClosed,
                Ok(_) => {}
                Err(e) => return End::Io(e),
            }
            let now = Instant::now();
            self.shared.guard.note_read(now);
            self.shared.last_control.set(now);
            if let Some(end) = self.feed(&mut input).await {
                return end;
            }
        }
    }

    /// Hands `input` to the session, answers its decisions and writes its replies.
    async fn feed(&mut self, input: &mut BytesMut) -> Option<End> {
        // The session pauses on CONNECT and at `.` until we decide: feed it again after.
        loop {
            let fed = self.shared.session.borrow_mut().handle_input(input);
            if let Err(e) = fed {
                self.shared.flush().await;
                return Some(End::Protocol(e));
            }
            let decided = self.handle_events();
            if self.shared.session.borrow().is_closed() {
                self.shared.flush().await;
                return Some(self.closed_end());
            }
            if !decided {
                break;
            }
        }
        self.shared.flush().await;
        None
    }

    fn closed_end(&self) -> End {
        match self.shared.ended_by.get() {
            Some(code) => End::Refused(code),
            None => End::Disconnected,
        }
    }

    /// Acts on the session's events; true when a decision was made (input may be waiting).
    fn handle_events(&mut self) -> bool {
        let mut decided = false;
        loop {
            let Some(event) = self.shared.session.borrow_mut().poll_event() else {
                return decided;
            };
            match event {
                ControlEvent::Connect { channel_id } => {
                    decided = true;
                    self.check_key(channel_id);
                }
                ControlEvent::StreamRequested {
                    channel_id,
                    attributes,
                } => {
                    decided = true;
                    self.start_stream(channel_id, &attributes);
                }
                ControlEvent::Ping => {}
                ControlEvent::Disconnect => {
                    debug!(peer = %self.shared.peer, "FTL DISCONNECT");
                }
            }
        }
    }

    fn check_key(&mut self, channel_id: u32) {
        let cfg = &self.core.config.ftl;
        let mut session = self.shared.session.borrow_mut();
        let ok = match cfg.channel(channel_id) {
            Some(channel) => session.verify_connect(channel.key.expose().as_bytes()),
            None => {
                session.end(ResponseCode::InvalidStreamKey);
                false
            }
        };
        if ok {
            debug!(peer = %self.shared.peer, channel_id, "FTL key verified");
        } else {
            let peer = self.shared.peer;
            self.core
                .node
                .metrics
                .auth_failed(Protocol::Ftl, AuthFailure::WrongKey);
            if let Some(suppressed) =
                self.core
                    .log_limiter
                    .allow("ftl-key-refused", peer.ip(), Instant::now())
            {
                warn!(%peer, channel_id, suppressed, "FTL key refused (405)");
            }
            self.shared
                .ended_by
                .set(Some(ResponseCode::InvalidStreamKey));
        }
    }

    fn refuse(&self, code: ResponseCode) {
        self.shared.ended_by.set(Some(code));
        self.shared.session.borrow_mut().end(code);
    }

    fn start_stream(&mut self, channel_id: u32, attributes: &StreamAttributes) {
        let config = &self.core.config;
        let cfg = &config.ftl;
        let Some(channel) = cfg.channel(channel_id) else {
            self.refuse(ResponseCode::InvalidStreamKey);
            return;
        };
        let name = cfg.stream_name(channel);
        let peer = self.shared.peer;
        let local_ip = match self.shared.guard.stream().local_addr() {
            Ok(addr) => addr.ip(),
            Err(e) => {
                warn!(%peer, error = %e, "FTL: no local address for the control socket");
                self.refuse(ResponseCode::InternalError);
                return;
            }
        };
        let now = Instant::now();
        let publisher = match Ingest::claim(
            &self.core,
            Protocol::Ftl,
            &name,
            config.shown_stream_name(&name),
        ) {
            Ok(publisher) => publisher,
            Err(PublishError::InUse) => {
                warn!(%peer, stream = %name, "FTL publish refused: channel in use (406)");
                self.refuse(ResponseCode::ChannelInUse);
                return;
            }
        };
        let Some((socket, port)) = self.ftl.bind_media_port(cfg, local_ip) else {
            warn!(%peer, range = %cfg.udp_port_range, "FTL: no free UDP port in the range");
            publisher.end();
            self.refuse(ResponseCode::InternalError);
            return;
        };
        let media = MediaSession::new(
            attributes,
            MediaConfig {
                nack: cfg.nack,
                reorder: ReorderConfig {
                    loss_threshold: cfg.reorder_window_packets.max(1),
                    ..ReorderConfig::default()
                },
                local_ssrc: rand::random(),
                ..MediaConfig::default()
            },
        );
        let advertised = cfg.advertised_port(port);
        self.shared.session.borrow_mut().accept_stream(advertised);
        self.shared.guard.set_handshake_deadline(None);
        *self.shared.stream_name.borrow_mut() = Some(name.clone());
        info!(%peer, stream = %name, udp_port = port, advertised, took_over = publisher.took_over(), "FTL publish started");
        let link = ftl_media::start(
            self.core.clone(),
            self.shared.clone(),
            socket,
            media,
            SourceFilter::new(peer.ip()),
            publisher,
            StreamInfo::new(Announced {
                width: attributes.video.as_ref().and_then(|v| v.width),
                height: attributes.video.as_ref().and_then(|v| v.height),
                has_video: attributes.video.is_some(),
                has_audio: attributes.audio.is_some(),
                encoder: format!("{} {}", attributes.vendor_name, attributes.vendor_version)
                    .trim()
                    .to_owned(),
            }),
            name,
            now,
        );
        self.media = Some(link);
    }

    fn finish(self, end: End) {
        let peer = self.shared.peer;
        match (&end, self.shared.guard.cut()) {
            (_, Some(cut)) => info!(%peer, reason = %cut, "FTL control closed"),
            (End::PeerClosed, _) => debug!(%peer, "FTL control closed by peer"),
            (End::Disconnected, _) => debug!(%peer, "FTL session ended by DISCONNECT"),
            (End::Refused(code), _) => info!(%peer, code = code.code(), "FTL session ended"),
            (End::Protocol(e), _) => {
                let blame = e.blame();
                self.core.count_protocol_error(Protocol::Ftl, blame);
                warn!(%peer, reason = %e, blame = blame.label(), "FTL control closed: protocol error")
            }
            (End::Io(e), _) => debug!(%peer, error = %e, "FTL control closed: io error"),
        }
        if let Some(media) = self.media {
            media.note_end(match (&end, self.shared.guard.cut()) {
                (_, Some(cut)) => format!("control connection cut: {cut}"),
                (End::Disconnected, _) => "clean DISCONNECT".to_owned(),
                (End::Refused(ResponseCode::ServerTerminate), _) => "shutdown (410)".to_owned(),
                (End::Refused(code), _) => format!("ended with {}", code.code()),
                (End::Protocol(reason), _) => format!("protocol error: {reason}"),
                (End::PeerClosed | End::Io(_), _) => "control connection lost".to_owned(),
            });
            media.stop();
        }
        runtime::shutdown(self.shared.guard.stream());
    }
}
