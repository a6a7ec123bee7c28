//! What a watcher's connection speaks, behind one enum the watcher loop drives the same way:
//! RTMP play ([`RtmpPlayer`]), an fstream watch (a handshake frame, then an FLV byte stream read
//! by [`FlvParser`]), HTTP-FLV (a GET, a response head, then the same FLV stream), or the
//! kernel-ceiling framing ([`RawParser`]).
//!
//! The loop calls [`Framing::start`] once the TCP connection is up and [`Framing::handle_input`]
//! for every read; it reads media from the parsed messages and ignores the rest. No sockets here.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::http_flv::{Body, ResponseHead};
use crate::parse::{FlvParser, Parsed, RawParser};
use crate::rtmp_player::{RtmpPlay, RtmpPlayer};

/// What every watcher of a run asks for, built once and shared.
#[derive(Debug, Clone)]
pub enum PlayRequest {
    Rtmp(Rc<RtmpPlay>),
    /// The encoded fstream watch handshake.
    Fstream(Bytes),
    /// The HTTP GET request.
    HttpFlv(Bytes),
    Raw,
}

impl PlayRequest {
    /// The summary's `mode`.
    pub fn mode(&self) -> &'static str {
        match self {
            PlayRequest::Rtmp(_) => "rtmp",
            PlayRequest::Fstream(_) => "fstream",
            PlayRequest::HttpFlv(_) => "http-flv",
            PlayRequest::Raw => "raw",
        }
    }
}

/// One connection's protocol state.
pub enum Framing {
    Rtmp(RtmpPlayer),
    Flv {
        parser: FlvParser,
        /// The HTTP response head still being read (HTTP-FLV only).
        head: Option<ResponseHead>,
        requested_ns: u64,
    },
    Raw {
        parser: RawParser,
        connected_ns: u64,
    },
}

impl Framing {
    /// Starts the protocol on a fresh connection, queueing its first bytes in `out`.
    pub fn start(request: &PlayRequest, out: &mut BytesMut, now_ns: u64) -> Framing {
        match request {
            PlayRequest::Rtmp(play) => Framing::Rtmp(RtmpPlayer::start(play.clone(), out, now_ns)),
            PlayRequest::Fstream(handshake) => {
                out.extend_from_slice(handshake);
                Framing::Flv {
                    parser: FlvParser::default(),
                    head: None,
                    requested_ns: now_ns,
                }
            }
            PlayRequest::HttpFlv(get) => {
                out.extend_from_slice(get);
                Framing::Flv {
                    parser: FlvParser::default(),
                    head: Some(ResponseHead::default()),
                    requested_ns: now_ns,
                }
            }
            PlayRequest::Raw => Framing::Raw {
                parser: RawParser::default(),
                connected_ns: now_ns,
            },
        }
    }

    /// When the stream was asked for (0 while an RTMP player has not sent `play` yet): frames sent
    /// before it are replays, not live latency.
    pub fn requested_ns(&self) -> u64 {
        match self {
            Framing::Rtmp(player) => player.play_sent_ns(),
            Framing::Flv { requested_ns, .. } => *requested_ns,
            Framing::Raw { connected_ns, .. } => *connected_ns,
        }
    }

    /// Handles one read: replies go to `out`, parsed messages to `parsed`.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        now_ns: u64,
        out: &mut BytesMut,
        parsed: &mut Vec<Parsed>,
    ) -> Result<(), String> {
        match self {
            Framing::Rtmp(player) => player.handle_input(data, now_ns, out, parsed),
            Framing::Flv { parser, head, .. } => {
                let body = match head {
                    Some(reading) => match reading.feed(data).map_err(|e| format!("http: {e}"))? {
                        Some(Body(body)) => {
                            *head = None;
                            body
                        }
                        None => return Ok(()),
                    },
                    None => data,
                };
                parser.feed(body, parsed).map_err(|e| format!("flv: {e}"))
            }
            Framing::Raw { parser, .. } => {
                parser.feed(data, parsed);
                Ok(())
            }
        }
    }
}
