//! The fstream handshake frame: decoding it on the server, encoding it on the client.
//!
//! `u32 BE LEN`, `0x00`, then LEN bytes of UTF-8 (see the [module doc](super)). The length is
//! checked against the cap as soon as its 4 bytes arrive, before anything else is awaited.
//! Everything after the payload is the broadcaster's stream and is left in the buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::request::{Request, parse_payload};

/// Everything that makes a handshake unacceptable. All variants except
/// [`HandshakeError::AlreadyComplete`] are the peer's fault; none is worth retrying.
/// No variant carries a password or a value that might be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake payload length is 0")]
    EmptyPayload,
    #[error("handshake payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLong { len: u64, max: u64 },
    #[error("expected a NUL byte after the length, found {found:#04x}")]
    MissingNul { found: u8 },
    #[error("handshake payload is not UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// `action` is the first item, cut at any `=` and truncated, so a value never leaks.
    #[error("unknown action {action:?} (expected watch or broadcast)")]
    UnknownAction { action: String },
    #[error("the request names no user")]
    MissingUser,
    /// The item at `index` (the action is item 0) is not `key=value` with a non-empty key.
    #[error("item {index} is not key=value")]
    MalformedPair { index: usize },
    #[error("key {key:?} appears more than once")]
    DuplicateKey { key: String },
    #[error(
        "{key} is empty, too long, or contains '/', '\\', a control character or a leading '.'"
    )]
    BadName { key: &'static str },
    /// `value` is cut to 32 bytes.
    #[error(
        "delay {value:?} is not a number of seconds in 0..={}",
        super::request::MAX_DELAY_SECS
    )]
    BadDelay { value: String },
    #[error("stream= must be APP/KEY: {reason}")]
    BadStream { reason: &'static str },
    #[error("watch names both stream= and an fstream channel (user/channel/channel-password)")]
    ConflictingTarget,
    #[error("stream= is only valid for watch")]
    StreamNotAllowed,
    #[error("decode called again after the handshake completed")]
    AlreadyComplete,
}

impl HandshakeError {
    /// Who is at fault.
    pub fn blame(&self) -> crate::proto::Blame {
        match self {
            HandshakeError::PayloadTooLong { .. } => crate::proto::Blame::LimitExceeded,
            HandshakeError::AlreadyComplete => crate::proto::Blame::Local,
            _ => crate::proto::Blame::PeerMisbehaved,
        }
    }
}

/// Server-side decoder for the one handshake frame at the start of a connection.
#[derive(Debug, Clone)]
pub struct HandshakeDecoder {
    max_len: u32,
    complete: bool,
}

impl Default for HandshakeDecoder {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_LEN)
    }
}

impl HandshakeDecoder {
    /// Default cap on the payload length: 4 KiB.
    pub const DEFAULT_MAX_LEN: u32 = 4096;

    /// A decoder accepting payloads of at most `max_len` bytes.
    pub fn new(max_len: u32) -> Self {
        HandshakeDecoder {
            max_len,
            complete: false,
        }
    }

    /// True once a request has been decoded.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Decodes the handshake from the front of `buf`. `Ok(None)` means "need more bytes" and
    /// consumes nothing. On success exactly the frame is consumed; bytes after it (a
    /// broadcaster's first data) stay in `buf`. On error the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, HandshakeError> {
        if self.complete {
            return Err(HandshakeError::AlreadyComplete);
        }
        let Some(len) = buf.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)) else {
            return Ok(None);
        };
        if len == 0 {
            return Err(HandshakeError::EmptyPayload);
        }
        if len > self.max_len {
            return Err(HandshakeError::PayloadTooLong {
                len: len.into(),
                max: self.max_len.into(),
            });
        }
        match buf.get(4) {
            None => return Ok(None),
            Some(0) => {}
            Some(&found) => return Err(HandshakeError::MissingNul { found }),
        }
        // len <= max_len: u32, so the sum fits usize on every supported target.
        let end = 5 + len as usize;
        let Some(payload) = buf.get(5..end) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(payload).map_err(|e| HandshakeError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let request = parse_payload(text)?;
        buf.advance(end);
        self.complete = true;
        Ok(Some(request))
    }
}

/// Client side: frames `payload` (e.g. `watch,user=fier,channel=x`) for sending. The payload is
/// not validated beyond being non-empty and fitting the 32-bit length.
pub fn encode_request(payload: &str) -> Result<Bytes, HandshakeError> {
    if payload.is_empty() {
        return Err(HandshakeError::EmptyPayload);
    }
    let len = u32::try_from(payload.len()).map_err(|_| HandshakeError::PayloadTooLong {
        len: payload.len() as u64,
        max: u32::MAX.into(),
    })?;
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u32(len);
    out.put_u8(0);
    out.put_slice(payload.as_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::proto::fstream::{Action, Secret};

    const WATCH: &str = "watch,user=fier,channel=exampleChannel,channel-password=123";
    const BROADCAST: &str = "broadcast,user=fier,user-password=123,delay=0.1,channel=exampleChannel,channel-password=456";

    fn decode_all(bytes: &[u8]) -> Result<Option<Request>, HandshakeError> {
        HandshakeDecoder::default().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn readme_watch_example_parses_exactly() {
        let request = decode_all(&encode_request(WATCH).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            request,
            Request {
                action: Action::Watch,
                user: "fier".into(),
                user_password: None,
                channel: "exampleChannel".into(),
                channel_password: Some(Secret::new("123")),
                delay: None,
                stream: None,
                audio: None,
                unknown_keys: vec![],
            }
        );
        assert_eq!(request.stream_name(), "fstream/fier/exampleChannel");
    }

    #[test]
    fn readme_broadcast_example_parses_exactly() {
        let request = decode_all(&encode_request(BROADCAST).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            request,
            Request {
                action: Action::Broadcast,
                user: "fier".into(),
                user_password: Some(Secret::new("123")),
                channel: "exampleChannel".into(),
                channel_password: Some(Secret::new("456")),
                delay: Some(0.1),
                stream: None,
                audio: None,
                unknown_keys: vec![],
            }
        );
    }

    #[test]
    fn length_counts_only_the_string() {
        let frame = encode_request("watch,user=a").unwrap();
        assert_eq!(&frame[..5], &[0, 0, 0, 12, 0]);
        assert_eq!(&frame[5..], b"watch,user=a");
    }

    #[test]
    fn split_at_every_offset_and_trailing_bytes_stay() {
        let mut wire = encode_request(BROADCAST).unwrap().to_vec();
        wire.extend_from_slice(b"\0\0\0\x01\x67");
        for split in 0..wire.len() {
            let mut decoder = HandshakeDecoder::default();
            let mut buf = BytesMut::from(&wire[..split]);
            let early = decoder.decode(&mut buf).unwrap();
            let complete = split >= wire.len() - 5;
            assert_eq!(early.is_some(), complete, "split {split}");
            if !complete {
                assert_eq!(buf.len(), split, "nothing consumed before completion");
                buf.extend_from_slice(&wire[split..]);
                assert!(decoder.decode(&mut buf).unwrap().is_some());
            } else {
                buf.extend_from_slice(&wire[split..]);
            }
            assert_eq!(&buf[..], b"\0\0\0\x01\x67");
            assert!(decoder.is_complete());
            assert_eq!(
                decoder.decode(&mut buf),
                Err(HandshakeError::AlreadyComplete)
            );
        }
    }

    #[test]
    fn zero_length_is_refused() {
        assert_eq!(decode_all(&[0, 0, 0, 0]), Err(HandshakeError::EmptyPayload));
        assert_eq!(encode_request(""), Err(HandshakeError::EmptyPayload));
    }

    #[test]
    fn huge_length_is_refused_from_four_bytes() {
        assert_eq!(
            decode_all(&[0xff, 0xff, 0xff, 0xff]),
            Err(HandshakeError::PayloadTooLong {
                len: u64::from(u32::MAX),
                max: 4096
            })
        );
        let mut small = HandshakeDecoder::new(8);
        assert_eq!(
            small.decode(&mut BytesMut::from(
                &encode_request("watch,user=a").unwrap()[..]
            )),
            Err(HandshakeError::PayloadTooLong { len: 12, max: 8 })
        );
    }

    #[test]
    fn missing_nul_is_refused() {
        assert_eq!(
            decode_all(b"\0\0\0\x0cwatch,user=a"),
            Err(HandshakeError::MissingNul { found: b'w' })
        );
    }

    #[test]
    fn non_utf8_is_refused() {
        assert_eq!(
            decode_all(b"\0\0\0\x0c\0watch,user\xff\xfe"),
            Err(HandshakeError::NotUtf8 { valid_up_to: 10 })
        );
    }

    #[test]
    fn unknown_action_and_missing_user_are_refused() {
        let refused = |payload: &str| decode_all(&encode_request(payload).unwrap());
        assert_eq!(
            refused("publish,user=a"),
            Err(HandshakeError::UnknownAction {
                action: "publish".into()
            })
        );
        assert_eq!(
            refused("user-password=hunter2,watch"),
            Err(HandshakeError::UnknownAction {
                action: "user-password".into()
            })
        );
        assert_eq!(refused("watch"), Err(HandshakeError::MissingUser));
        assert_eq!(
            refused("broadcast,channel=x,user-password=1"),
            Err(HandshakeError::MissingUser)
        );
    }

    #[test]
    fn debug_never_shows_passwords() {
        let request = decode_all(&encode_request(BROADCAST).unwrap())
            .unwrap()
            .unwrap();
        let shown = format!("{request:?} {request:#?}");
        assert!(!shown.contains("123") && !shown.contains("456"), "{shown}");
        assert!(shown.contains("****"));
    }
}

/// libFuzzer harness (`fuzz/fuzz_targets/fstream_handshake.rs`): decodes `data` (after a 1-byte
/// split point) whole and split and checks both agree; frames the input as a payload to reach the
/// pair parser directly; checks accepted requests re-encode to themselves and redact passwords.
#[cfg(fuzzing)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub fn fuzz_handshake(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = HandshakeDecoder::new(256).decode(&mut BytesMut::from(data));
    let (a, b) = data.split_at(usize::from(split).min(data.len()));
    let mut decoder = HandshakeDecoder::new(256);
    let mut buf = BytesMut::from(a);
    let split_result = match decoder.decode(&mut buf) {
        Ok(None) => {
            buf.extend_from_slice(b);
            decoder.decode(&mut buf)
        }
        other => other,
    };
    assert_eq!(whole, split_result, "split invariance");
    if let Some(text) = std::str::from_utf8(data).ok().filter(|t| !t.is_empty()) {
        let framed = encode_request(text).unwrap();
        let mut buf = BytesMut::from(&framed[..]);
        if let Ok(Some(request)) = HandshakeDecoder::new(1 << 20).decode(&mut buf) {
            assert!(buf.is_empty());
            check_redacted(&request);
        }
    }
    if let Ok(Some(request)) = whole {
        let len = data
            .first_chunk::<4>()
            .map_or(0, |l| u32::from_be_bytes(*l));
        let payload = data.get(5..5 + len as usize).unwrap();
        let text = std::str::from_utf8(payload).unwrap();
        let again = HandshakeDecoder::default()
            .decode(&mut BytesMut::from(&encode_request(text).unwrap()[..]))
            .unwrap();
        assert_eq!(again.as_ref(), Some(&request));
        check_redacted(&request);
    }
}

#[cfg(fuzzing)]
#[allow(clippy::panic)]
fn check_redacted(request: &Request) {
    let shown = format!("{request:?}");
    let passwords = usize::from(request.user_password.is_some())
        + usize::from(request.channel_password.is_some());
    assert!(shown.matches("****").count() >= passwords);
}
