//! FTL (Faster Than Light) ingest, sans-IO.
//!
//! - [`session::ControlSession`]: the server side of the TCP control channel (HMAC challenge,
//!   CONNECT, attributes, `.`, PING, DISCONNECT), driven by bytes in / bytes and events out.
//! - [`client`]: the client's lines and reply parsing, for the load generator's publisher.
//! - [`media::MediaSession`]: one stream's RTP datagrams → [`Frame`](crate::media::Frame)s.
//! - [`source::SourceFilter`]: which UDP source a media port accepts.
//!
//! Protocol facts: `reference/ftl-protocol-notes.md` (FTL 0.9). No sockets, runtime or clock here.

pub mod attributes;
pub mod client;
pub mod media;
pub mod session;
pub mod source;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

pub use attributes::{StreamAttributes, TrackCodec, TrackInfo};
pub use media::{MediaConfig, MediaSession, MediaStats};
pub use session::{ControlConfig, ControlEvent, ControlSession};
pub use source::SourceFilter;

/// Length of the HMAC challenge the server sends (bytes, before hex encoding).
pub const CHALLENGE_LEN: usize = 128;
/// Length of an HMAC-SHA512 digest.
pub const DIGEST_LEN: usize = 64;

/// FTL control response codes (`ftl-protocol-notes.md`, "Response codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ResponseCode {
    Ok = 200,
    Ping = 201,
    BadRequest = 400,
    Unauthorized = 401,
    OldVersion = 402,
    AudioSsrcCollision = 403,
    VideoSsrcCollision = 404,
    InvalidStreamKey = 405,
    ChannelInUse = 406,
    RegionUnsupported = 407,
    NoMediaTimeout = 408,
    GameBlocked = 409,
    ServerTerminate = 410,
    InternalError = 500,
}

impl ResponseCode {
    /// The numeric code sent on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The response code for a number, if FTL defines it.
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            200 => ResponseCode::Ok,
            201 => ResponseCode::Ping,
            400 => ResponseCode::BadRequest,
            401 => ResponseCode::Unauthorized,
            402 => ResponseCode::OldVersion,
            403 => ResponseCode::AudioSsrcCollision,
            404 => ResponseCode::VideoSsrcCollision,
            405 => ResponseCode::InvalidStreamKey,
            406 => ResponseCode::ChannelInUse,
            407 => ResponseCode::RegionUnsupported,
            408 => ResponseCode::NoMediaTimeout,
            409 => ResponseCode::GameBlocked,
            410 => ResponseCode::ServerTerminate,
            500 => ResponseCode::InternalError,
            _ => return None,
        })
    }
}

/// Why the control session refused its peer. Every variant is the client's fault; the session has
/// already queued `<code>\n` (see [`ControlError::response_code`]) and moved to closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control line of {len} bytes exceeds the {max}-byte limit")]
    LineTooLong { len: usize, max: usize },
    #[error("control line is not UTF-8")]
    NotUtf8,
    #[error("unexpected command {command:?} while {state}")]
    UnexpectedCommand {
        command: String,
        state: &'static str,
    },
    #[error("malformed CONNECT line")]
    MalformedConnect,
    #[error("malformed attribute line {line:?}")]
    MalformedAttribute { line: String },
    #[error("attribute {key:?} has an invalid value")]
    InvalidAttributeValue { key: &'static str },
    #[error("attribute sent after the stream was requested")]
    AttributeAfterEnd,
    #[error("more than {max} attribute lines")]
    TooManyAttributes { max: usize },
    #[error("protocol version {version:?} is too old")]
    OldVersion { version: String },
    #[error("stream refused: {reason}")]
    InvalidStream {
        code: ResponseCode,
        reason: &'static str,
    },
}

impl ControlError {
    /// Who is at fault.
    pub fn blame(&self) -> crate::proto::Blame {
        match self {
            ControlError::LineTooLong { .. } | ControlError::TooManyAttributes { .. } => {
                crate::proto::Blame::LimitExceeded
            }
            _ => crate::proto::Blame::PeerMisbehaved,
        }
    }

    /// The code the server answers with before closing.
    pub fn response_code(&self) -> ResponseCode {
        match self {
            ControlError::OldVersion { .. } => ResponseCode::OldVersion,
            ControlError::InvalidStream { code, .. } => *code,
            _ => ResponseCode::BadRequest,
        }
    }
}

/// HMAC-SHA512 of `challenge` keyed with the stream key's secret: what the client sends after `$`.
pub fn hmac_digest(secret: &[u8], challenge: &[u8]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    // HMAC accepts keys of any length, so construction cannot fail.
    if let Ok(mut mac) = <Hmac<Sha512> as KeyInit>::new_from_slice(secret) {
        mac.update(challenge);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Constant-time check of a client's digest.
pub fn verify_digest(secret: &[u8], challenge: &[u8], digest: &[u8]) -> bool {
    match <Hmac<Sha512> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(challenge);
            mac.verify_slice(digest).is_ok()
        }
        Err(_) => false,
    }
}

/// Splits a stream key `{channel}-{secret}` into channel id and secret. Like the reference client,
/// `,` and `_` are accepted as separators and a leading `re_` is stripped.
pub fn parse_stream_key(key: &str) -> Option<(u32, &str)> {
    let key = key.strip_prefix("re_").unwrap_or(key);
    let (channel, secret) = key.split_once(['-', ',', '_'])?;
    let channel = channel.parse().ok()?;
    (!secret.is_empty()).then_some((channel, secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The full example of `ftl-establishing-a-connection.md`.
    pub(crate) const DOC_CHALLENGE: &str = "5e0c41f532c44e01b06cdb3ca5d8dc699d3a031e716a63a137a6899d6bc7832b77b591e8a03e9f14e20bbccc1b0b674450a45b275461857efda6434d64993253dd534220c45f197c6dad61bdc0bae12fd1442e22939e650731e4ee51d03632a108b5f50831ca6f239876f348123b6d15bf31a4882ef75b4a57dfa8273f05432a";
    pub(crate) const DOC_DIGEST: &str = "319f678a5871a2197fac50b314fd62435904aaabddaf87ec65f9c05351425d95f06d9e525c40ca9d344e4b22bdafdf64769a431464fabd9fac86cef820e5c0a1";
    pub(crate) const DOC_KEY: &str = "77-ieDQxSZ7q58EEeLTvja4QKKGzndwUkVQ";

    #[test]
    fn documented_connect_digest_verifies() {
        let challenge = hex::decode(DOC_CHALLENGE).unwrap();
        assert_eq!(challenge.len(), CHALLENGE_LEN);
        let (channel, secret) = parse_stream_key(DOC_KEY).unwrap();
        assert_eq!(channel, 77);
        assert_eq!(secret, "ieDQxSZ7q58EEeLTvja4QKKGzndwUkVQ");
        let digest = hmac_digest(secret.as_bytes(), &challenge);
        assert_eq!(hex::encode(digest), DOC_DIGEST);
        assert!(verify_digest(secret.as_bytes(), &challenge, &digest));
        assert!(!verify_digest(b"wrong", &challenge, &digest));
    }

    #[test]
    fn stream_key_separators() {
        assert_eq!(parse_stream_key("77,abc"), Some((77, "abc")));
        assert_eq!(parse_stream_key("re_77_abc"), Some((77, "abc")));
        assert_eq!(parse_stream_key("77-a-b"), Some((77, "a-b")));
        assert_eq!(parse_stream_key("x-abc"), None);
        assert_eq!(parse_stream_key("77-"), None);
        assert_eq!(parse_stream_key("77abc"), None);
    }

    #[test]
    fn response_codes_round_trip() {
        for code in [
            200, 201, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 500,
        ] {
            assert_eq!(ResponseCode::from_code(code).unwrap().code(), code);
        }
        assert_eq!(ResponseCode::from_code(999), None);
    }
}

#[cfg(test)]
mod media_tests;
