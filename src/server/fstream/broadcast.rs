//! An fstream broadcaster: authenticate, sniff the first bytes, claim `fstream/<user>/<channel>`
//! and push every read into the fan-out until the peer leaves.
//!
//! The format decides how bytes enter the fan-out (see [`Format`]): FLV is demuxed into media
//! frames (so RTMP players and FLV watchers get sequence headers and keyframe starts); H.264
//! Annex-B is cut at SPS/IDR join points ([`AnnexBChunker`]) and relayed byte-exact; anything
//! else is relayed byte-exact, one chunk per read. Opaque chunks carry the broadcast's clock in
//! milliseconds, which drives the same lag policy as media timestamps.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::{debug, info, warn};

use super::{ChannelInfo, Conn, Format, authenticate, escape_name, shown_name};
use crate::fanout::PublishError;
use crate::media::FrameRole;
use crate::media::annexb_chunker::{AnnexBChunker, Chunk};
use crate::metrics::{AuthFailure, Protocol};
use crate::proto::flv::{self, FlvDemuxer, Sniffed};
use crate::proto::fstream::Request;
use crate::server::streams::Ingest;

/// Most bytes held back waiting for an SPS's IDR before they are relayed anyway.
const MAX_HELD_FOR_JOIN: usize = 4 << 20;

/// How the broadcast ended, for the session log.
enum End {
    PeerClosed,
    Io(String),
    BadFlv(String),
    Superseded,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::PeerClosed => f.write_str("broadcaster closed the connection"),
            End::Io(reason) => f.write_str(reason),
            End::BadFlv(reason) => write!(f, "malformed FLV: {reason}"),
            End::Superseded => f.write_str("replaced by a new broadcaster (takeover)"),
        }
    }
}

/// The per-format state that turns reads into fan-out pushes.
enum Intake {
    Flv(FlvDemuxer),
    AnnexB(AnnexBChunker, Vec<Chunk>),
    Opaque,
}

/// Serves a broadcaster to its end.
pub async fn run(mut conn: Conn, request: Request) {
    let peer = conn.peer;
    let name = request.stream_name();
    let shown = shown_name(&conn.core.config, &request);
    let cfg = &conn.core.config.fstream;
    if !login(&conn, &request, &shown) {
        conn.close();
        return;
    }
    if let Some(delay) = request.delay {
        debug!(%peer, delay, "fstream: delay accepted and ignored (ringcast relays each read as it arrives)");
    }
    conn.guard
        .set_idle_limit(Some(Duration::from_millis(cfg.broadcaster_idle_timeout_ms)));

    let Some(format) = sniff_format(&mut conn).await else {
        conn.close();
        return;
    };
    let mut publisher = match Ingest::claim(&conn.core, Protocol::Fstream, &name, shown.clone()) {
        Ok(publisher) => publisher,
        Err(PublishError::InUse) => {
            warn!(%peer, stream = %shown, "fstream broadcast refused: channel already live (fanout.takeover is off)");
            conn.close();
            return;
        }
    };
    let generation = publisher.generation();
    conn.core.fstream.set(
        &name,
        ChannelInfo {
            generation,
            password: request.channel_password.clone(),
            format,
        },
    );
    info!(%peer, stream = %shown, %format, took_over = publisher.took_over(), "fstream broadcast started");

    let started = Instant::now();
    let mut intake = match format {
        Format::Flv => Intake::Flv(FlvDemuxer::default()),
        Format::AnnexB => Intake::AnnexB(AnnexBChunker::new(MAX_HELD_FOR_JOIN), Vec::new()),
        Format::Opaque => Intake::Opaque,
    };
    let mut bytes_in = conn.input.len() as u64;
    let end = loop {
        let clock = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        if let Err(end) = intake.push(&mut publisher, &mut conn.input, clock) {
            break end;
        }
        let read = conn.read_more().await;
        match read {
            Ok(n) if n > 0 => bytes_in += n as u64,
            Ok(_) => break End::PeerClosed,
            Err(_) => break End::Io(conn.describe_io_end(&read)),
        }
    };
    let end = match conn.guard.cut() {
        Some(cut) => End::Io(cut.to_string()),
        None => end,
    };
    if let Intake::AnnexB(chunker, out) = &mut intake {
        chunker.finish(out);
        let clock = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let _ = push_chunks(&mut publisher, out, clock);
    }
    info!(%peer, stream = %shown, %format, bytes_in, pushed = publisher.frames(), reason = %end, "fstream broadcast ended");
    conn.close();
    conn.core.fstream.remove(&name, generation);
    publisher.end();
}

/// Authenticates the broadcaster unless its address is locked out after too many failed
/// logins (`fstream.login_failures_per_ip` within `fstream.login_lockout_ms`): a locked-out
/// address is refused without a password check; other addresses are not affected. Refusals are
/// counted by reason and logged at most once a minute per address and reason.
fn login(conn: &Conn, request: &Request, shown: &str) -> bool {
    let core = &conn.core;
    let cfg = &core.config.fstream;
    let peer = conn.peer;
    let now = Instant::now();
    let failures = &core.limits.fstream_failures;
    let limit = cfg.login_failures_per_ip;
    let refused = if limit > 0 && failures.count(peer.ip(), now) >= limit as usize {
        AuthFailure::LockedOut
    } else {
        match authenticate(cfg, &request.user, request.user_password.as_ref()) {
            Ok(()) => return true,
            Err(e) => {
                failures.record(peer.ip(), now, limit);
                e.metric()
            }
        }
    };
    core.node.metrics.auth_failed(Protocol::Fstream, refused);
    if let Some(suppressed) = core.log_limiter.allow(refused.label(), peer.ip(), now) {
        let user = escape_name(&request.user);
        warn!(%peer, %user, stream = %escape_name(shown), reason = refused.label(), suppressed, "fstream broadcast refused: authentication failed (logged at most once a minute per address and reason)");
    }
    false
}

/// Reads until the first bytes say what the broadcast is. `None`: the peer left or timed out
/// first (logged).
async fn sniff_format(conn: &mut Conn) -> Option<Format> {
    loop {
        let prefix = &conn.input[..conn.input.len().min(flv::SNIFF_LEN)];
        match flv::sniff(prefix) {
            Sniffed::Flv => return Some(Format::Flv),
            Sniffed::AnnexB => return Some(Format::AnnexB),
            Sniffed::Opaque => return Some(Format::Opaque),
            Sniffed::NeedMore => {}
        }
        let read = conn.read_more().await;
        match read {
            Ok(n) if n > 0 => {}
            // A few bytes and then EOF: still a (tiny) broadcast.
            Ok(_) if !conn.input.is_empty() && conn.guard.cut().is_none() => {
                return Some(Format::Opaque);
            }
            _ => {
                warn!(peer = %conn.peer, reason = %conn.describe_io_end(&read), "fstream broadcast closed: the broadcaster sent no data");
                return None;
            }
        }
    }
}

impl Intake {
    /// Moves everything usable in `input` into the fan-out.
    fn push(
        &mut self,
        publisher: &mut Ingest,
        input: &mut BytesMut,
        clock: u32,
    ) -> Result<(), End> {
        match self {
            Intake::Flv(demuxer) => loop {
                match demuxer.decode(input) {
                    Ok(Some(frame)) => publisher.push(frame).map_err(|_| End::Superseded)?,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(End::BadFlv(e.to_string())),
                }
            },
            Intake::AnnexB(chunker, out) => {
                if !input.is_empty() {
                    chunker.push(input.split(), out);
                }
                push_chunks(publisher, out, clock)
            }
            Intake::Opaque => {
                if input.is_empty() {
                    return Ok(());
                }
                publisher
                    .push_opaque(input.split().freeze(), FrameRole::Other, clock)
                    .map_err(|_| End::Superseded)
            }
        }
    }
}

fn push_chunks(publisher: &mut Ingest, out: &mut Vec<Chunk>, clock: u32) -> Result<(), End> {
    for chunk in out.drain(..) {
        let role = if chunk.join_point {
            FrameRole::Keyframe
        } else {
            FrameRole::Other
        };
        publisher
            .push_opaque(chunk.bytes, role, clock)
            .map_err(|_| End::Superseded)?;
    }
    Ok(())
}
