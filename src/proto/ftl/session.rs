//! The server side of the FTL control channel (TCP 8084), quinn-style: feed bytes with
//! [`ControlSession::handle_input`], drain [`poll_transmit`](ControlSession::poll_transmit) and
//! [`poll_event`](ControlSession::poll_event), answer the two decisions that need the
//! application (the channel's key: [`verify_connect`](ControlSession::verify_connect); the UDP port
//! or a refusal: [`accept_stream`](ControlSession::accept_stream) / [`end`](ControlSession::end)).
//!
//! Lines end in `\n`; `\r` is stripped and empty lines are skipped (the reference client sends
//! `\r\n\r\n`). While waiting for the application, input is left in the buffer untouched so
//! replies keep their order; call `handle_input` again after deciding.
//!
//! Decisions: any line after `.` other than PING/DISCONNECT (attributes included) is a 400 and
//! closes the session — the announced stream cannot change once requested. CONNECT before HMAC,
//! malformed lines and over-long lines are 400 + close. Deadlines (auth within 5 s, media silence)
//! are enforced by the driver with [`end`](ControlSession::end), since this type reads no clock.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::attributes::{AttributeSet, StreamAttributes};
use super::{CHALLENGE_LEN, ControlError, DIGEST_LEN, ResponseCode, verify_digest};

/// Limits of one control session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlConfig {
    /// Longest line accepted, in bytes (the reference client's own limit is 512).
    pub max_line: usize,
    /// Attribute lines accepted before `.`, at most.
    pub max_attributes: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            max_line: 1024,
            max_attributes: 64,
        }
    }
}

/// What the application must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// The client sent CONNECT: look up the channel's key and call `verify_connect`.
    Connect { channel_id: u32 },
    /// The client finished its attributes: call `accept_stream` with a UDP port, or `end`.
    StreamRequested {
        channel_id: u32,
        attributes: StreamAttributes,
    },
    /// A PING was answered with 201 (the stream is alive).
    Ping,
    /// The client sent DISCONNECT; the session is closed.
    Disconnect,
}

#[derive(Debug)]
enum State {
    ExpectHmac,
    ExpectConnect,
    /// Waiting for the application's `verify_connect`.
    ExpectKeyCheck {
        channel_id: u32,
        digest: [u8; DIGEST_LEN],
    },
    ExpectAttributes {
        channel_id: u32,
        attributes: AttributeSet,
    },
    /// Waiting for the application's `accept_stream` or `end`.
    ExpectAccept {
        channel_id: u32,
    },
    Live {
        channel_id: u32,
    },
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ExpectHmac => "expecting HMAC",
            State::ExpectConnect => "expecting CONNECT",
            State::ExpectKeyCheck { .. } => "checking the key",
            State::ExpectAttributes { .. } => "expecting attributes",
            State::ExpectAccept { .. } => "deciding on the stream",
            State::Live { .. } => "live",
            State::Closed => "closed",
        }
    }
}

/// One FTL control connection, server side.
#[derive(Debug)]
pub struct ControlSession {
    config: ControlConfig,
    challenge: [u8; CHALLENGE_LEN],
    state: State,
    transmit: VecDeque<Bytes>,
    events: VecDeque<ControlEvent>,
}

/// Commands are matched case-insensitively on their first word.
fn command_is(line: &str, command: &str) -> bool {
    let word = line.split_ascii_whitespace().next().unwrap_or("");
    word.eq_ignore_ascii_case(command)
}

fn truncated(line: &str) -> String {
    line.chars().take(32).collect()
}

impl ControlSession {
    /// A session that will send `challenge` (fresh random bytes from the caller) after `HMAC`.
    pub fn new(config: ControlConfig, challenge: [u8; CHALLENGE_LEN]) -> Self {
        ControlSession {
            config,
            challenge,
            state: State::ExpectHmac,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// True once the session has nothing left to do but flush `poll_transmit` and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True once the stream was accepted and is live.
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Live { .. })
    }

    /// The channel named by CONNECT, once known.
    pub fn channel_id(&self) -> Option<u32> {
        match self.state {
            State::ExpectKeyCheck { channel_id, .. }
            | State::ExpectAttributes { channel_id, .. }
            | State::ExpectAccept { channel_id }
            | State::Live { channel_id } => Some(channel_id),
            _ => None,
        }
    }

    /// Consumes complete lines from the front of `buf`. An error has already queued its response
    /// code and closed the session; the driver flushes `poll_transmit` and closes the socket.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), ControlError> {
        loop {
            match self.state {
                State::Closed => {
                    buf.clear();
                    return Ok(());
                }
                State::ExpectKeyCheck { .. } | State::ExpectAccept { .. } => return Ok(()),
                _ => {}
            }
            let max = self.config.max_line;
            let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > max {
                    let len = buf.len();
                    buf.clear();
                    return self.fail(ControlError::LineTooLong { len, max });
                }
                return Ok(());
            };
            let raw = buf.split_to(newline + 1);
            let mut line = raw.get(..newline).unwrap_or_default();
            while let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > max {
                return self.fail(ControlError::LineTooLong {
                    len: line.len(),
                    max,
                });
            }
            let Ok(text) = std::str::from_utf8(line) else {
                return self.fail(ControlError::NotUtf8);
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            if let Err(err) = self.handle_line(text) {
                return self.fail(err);
            }
        }
    }

    fn fail(&mut self, err: ControlError) -> Result<(), ControlError> {
        self.end(err.response_code());
        Err(err)
    }

    fn reply(&mut self, text: String) {
        self.transmit.push_back(Bytes::from(text));
    }

    fn handle_line(&mut self, line: &str) -> Result<(), ControlError> {
        if command_is(line, "DISCONNECT") {
            self.state = State::Closed;
            self.events.push_back(ControlEvent::Disconnect);
            return Ok(());
        }
        let unexpected = |state: &State| ControlError::UnexpectedCommand {
            command: truncated(line),
            state: state.name(),
        };
        match &mut self.state {
            State::ExpectHmac => {
                if !command_is(line, "HMAC") {
                    return Err(unexpected(&self.state));
                }
                let hex = hex::encode(self.challenge);
                self.reply(format!("200 {hex}\n"));
                self.state = State::ExpectConnect;
            }
            State::ExpectConnect => {
                if !command_is(line, "CONNECT") {
                    return Err(unexpected(&self.state));
                }
                let (channel_id, digest) = parse_connect(line)?;
                self.state = State::ExpectKeyCheck { channel_id, digest };
                self.events.push_back(ControlEvent::Connect { channel_id });
            }
            State::ExpectAttributes {
                channel_id,
                attributes,
            } => {
                let channel_id = *channel_id;
                if line == "." {
                    let attributes = std::mem::take(attributes).finish()?;
                    self.state = State::ExpectAccept { channel_id };
                    self.events.push_back(ControlEvent::StreamRequested {
                        channel_id,
                        attributes,
                    });
                } else if command_is(line, "PING") {
                    self.pong();
                } else {
                    let Some((key, value)) = line.split_once(':') else {
                        return Err(ControlError::MalformedAttribute {
                            line: truncated(line),
                        });
                    };
                    attributes.set(key.trim(), value.trim(), self.config.max_attributes)?;
                }
            }
            State::Live { .. } => {
                if command_is(line, "PING") {
                    self.pong();
                } else if line == "." || line.contains(':') {
                    return Err(ControlError::AttributeAfterEnd);
                } else {
                    return Err(unexpected(&self.state));
                }
            }
            State::ExpectKeyCheck { .. } | State::ExpectAccept { .. } | State::Closed => {}
        }
        Ok(())
    }

    fn pong(&mut self) {
        self.reply(format!("{}\n", ResponseCode::Ping.code()));
        self.events.push_back(ControlEvent::Ping);
    }

    /// Checks the CONNECT digest against the channel's secret in constant time. On success
    /// answers `200`; on failure answers `405` and closes. False also when no CONNECT is pending.
    pub fn verify_connect(&mut self, secret: &[u8]) -> bool {
        let State::ExpectKeyCheck { channel_id, digest } = self.state else {
            return false;
        };
        if verify_digest(secret, &self.challenge, &digest) {
            self.reply(format!("{}\n", ResponseCode::Ok.code()));
            self.state = State::ExpectAttributes {
                channel_id,
                attributes: AttributeSet::default(),
            };
            true
        } else {
            self.end(ResponseCode::InvalidStreamKey);
            false
        }
    }

    /// Accepts the requested stream: `200. Use UDP port N`, then live. Ignored in other states.
    pub fn accept_stream(&mut self, udp_port: u16) {
        if let State::ExpectAccept { channel_id } = self.state {
            self.reply(format!("200. Use UDP port {udp_port}\n"));
            self.state = State::Live { channel_id };
        }
    }

    /// Ends the session with `<code>\n` (e.g. 410 server terminate, 408 no media, 406 in use).
    pub fn end(&mut self, code: ResponseCode) {
        if !self.is_closed() {
            self.reply(format!("{}\n", code.code()));
            self.state = State::Closed;
        }
    }

    /// The next bytes to write to the socket.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ControlEvent> {
        self.events.pop_front()
    }
}

/// `CONNECT <channel> $<128 hex digits>`.
fn parse_connect(line: &str) -> Result<(u32, [u8; DIGEST_LEN]), ControlError> {
    let mut words = line.split_ascii_whitespace().skip(1);
    let channel = words.next().and_then(|c| c.parse().ok());
    let hex_digest = words.next().and_then(|d| d.strip_prefix('$'));
    let (Some(channel), Some(hex_digest), None) = (channel, hex_digest, words.next()) else {
        return Err(ControlError::MalformedConnect);
    };
    let mut digest = [0u8; DIGEST_LEN];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| ControlError::MalformedConnect)?;
    Ok((channel, digest))
}

#[cfg(fuzzing)]
/// Fuzz harness: the first byte picks split points, the rest is fed as client input.
pub fn fuzz_control(data: &[u8]) {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let challenge = [7; CHALLENGE_LEN];
    let mut session = ControlSession::new(ControlConfig::default(), challenge);
    let mut buf = BytesMut::new();
    if step & 0x80 != 0 {
        // Start authenticated so the fuzzer reaches attributes and the live state.
        let digest = hex::encode(super::hmac_digest(b"secret", &challenge));
        buf.extend_from_slice(format!("HMAC\nCONNECT 1 ${digest}\n").as_bytes());
    }
    for chunk in input.chunks(usize::from(step & 0x7f).max(1)) {
        buf.extend_from_slice(chunk);
        if session.handle_input(&mut buf).is_err() {
            break;
        }
        while let Some(event) = session.poll_event() {
            match event {
                ControlEvent::Connect { .. } => {
                    session.verify_connect(b"secret");
                }
                ControlEvent::StreamRequested { .. } => session.accept_stream(9000),
                ControlEvent::Ping | ControlEvent::Disconnect => {}
            }
        }
        if session.handle_input(&mut buf).is_err() {
            break;
        }
        while session.poll_transmit().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::proto::ftl::client;
    use crate::proto::ftl::tests::{DOC_CHALLENGE, DOC_DIGEST, DOC_KEY};
    use crate::proto::ftl::{StreamAttributes, TrackCodec, TrackInfo, parse_stream_key};

    const SECRET: &[u8] = b"ieDQxSZ7q58EEeLTvja4QKKGzndwUkVQ";

    fn doc_challenge() -> [u8; CHALLENGE_LEN] {
        let mut c = [0u8; CHALLENGE_LEN];
        hex::decode_to_slice(DOC_CHALLENGE, &mut c).unwrap();
        c
    }

    /// The documented example's client bytes, with the reference client's `\r\n\r\n` framing.
    fn doc_client_bytes() -> Vec<u8> {
        let mut lines = vec!["HMAC".to_owned(), format!("CONNECT 77 ${DOC_DIGEST}")];
        lines.extend(
            [
                "ProtocolVersion: 0.9",
                "VendorName: OBS Studio",
                "VendorVersion: 27.0.1-1",
                "Video: true",
                "VideoCodec: H264",
                "VideoHeight: 720",
                "VideoWidth: 1280",
                "VideoPayloadType: 96",
                "VideoIngestSSRC: 78",
                "Audio: true",
                "AudioCodec: OPUS",
                "AudioPayloadType: 97",
                "AudioIngestSSRC: 77",
                ".",
                "PING 77",
                "DISCONNECT",
            ]
            .map(str::to_owned),
        );
        lines
            .iter()
            .flat_map(|l| format!("{l}\r\n\r\n").into_bytes())
            .collect()
    }

    /// Drives a session with `input` split at `split`, acting like a server application.
    fn run(input: &[u8], split: usize, secret: &[u8]) -> (String, Vec<ControlEvent>, bool) {
        let mut s = ControlSession::new(ControlConfig::default(), doc_challenge());
        let mut buf = BytesMut::new();
        let mut out = String::new();
        let mut events = Vec::new();
        let mut failed = false;
        let (a, b) = input.split_at(split);
        for chunk in [a, b] {
            buf.extend_from_slice(chunk);
            loop {
                failed |= s.handle_input(&mut buf).is_err();
                let mut acted = false;
                while let Some(e) = s.poll_event() {
                    match &e {
                        ControlEvent::Connect { channel_id } => {
                            assert_eq!(*channel_id, 77);
                            s.verify_connect(secret);
                            acted = true;
                        }
                        ControlEvent::StreamRequested { .. } => {
                            s.accept_stream(65534);
                            acted = true;
                        }
                        _ => {}
                    }
                    events.push(e);
                }
                if !acted {
                    break;
                }
            }
            while let Some(t) = s.poll_transmit() {
                out.push_str(std::str::from_utf8(&t).unwrap());
            }
        }
        (out, events, failed || !s.is_closed())
    }

    #[test]
    fn documented_example_at_every_split() {
        let input = doc_client_bytes();
        let expected = format!("200 {DOC_CHALLENGE}\n200\n200. Use UDP port 65534\n201\n");
        for split in 0..=input.len() {
            let (out, events, failed) = run(&input, split, SECRET);
            assert!(!failed, "split {split}");
            assert_eq!(out, expected, "split {split}");
            assert_eq!(events.len(), 4);
            let ControlEvent::StreamRequested { attributes, .. } = &events[1] else {
                panic!("expected StreamRequested");
            };
            let video = attributes.video.as_ref().unwrap();
            assert_eq!(
                (video.payload_type, video.ssrc, video.width),
                (96, 78, Some(1280))
            );
            assert_eq!(attributes.audio.as_ref().unwrap().ssrc, 77);
            assert_eq!(attributes.vendor_name, "OBS Studio");
            assert_eq!(events[2], ControlEvent::Ping);
            assert_eq!(events[3], ControlEvent::Disconnect);
        }
    }

    #[test]
    fn wrong_key_answers_405_and_closes() {
        let input = doc_client_bytes();
        let (out, events, _) = run(&input, 0, b"not-the-key");
        assert_eq!(out, format!("200 {DOC_CHALLENGE}\n405\n"));
        assert_eq!(events, vec![ControlEvent::Connect { channel_id: 77 }]);
    }

    #[test]
    fn connect_before_hmac_is_400() {
        let mut s = ControlSession::new(ControlConfig::default(), [1; CHALLENGE_LEN]);
        let mut buf = BytesMut::from(format!("CONNECT 77 ${DOC_DIGEST}\n").as_bytes());
        assert!(matches!(
            s.handle_input(&mut buf),
            Err(ControlError::UnexpectedCommand { .. })
        ));
        assert_eq!(s.poll_transmit().unwrap(), "400\n");
        assert!(s.is_closed());
        assert!(s.poll_event().is_none());
    }

    #[test]
    fn ten_kilobyte_line_is_400_without_waiting_for_newline() {
        let mut s = ControlSession::new(ControlConfig::default(), [1; CHALLENGE_LEN]);
        let mut buf = BytesMut::from(&[b'A'; 10_000][..]);
        assert_eq!(
            s.handle_input(&mut buf),
            Err(ControlError::LineTooLong {
                len: 10_000,
                max: 1024
            })
        );
        assert_eq!(s.poll_transmit().unwrap(), "400\n");
        assert!(s.is_closed());
        assert!(buf.is_empty());
    }

    fn live_session() -> ControlSession {
        let challenge = doc_challenge();
        let mut s = ControlSession::new(ControlConfig::default(), challenge);
        let (channel, secret) = parse_stream_key(DOC_KEY).unwrap();
        let attrs = StreamAttributes {
            protocol_version: "0.9".into(),
            video: Some(TrackInfo {
                codec: TrackCodec::H264,
                payload_type: 96,
                ssrc: 78,
                width: None,
                height: None,
            }),
            ..StreamAttributes::default()
        };
        let mut buf = BytesMut::from(&client::hmac_request()[..]);
        s.handle_input(&mut buf).unwrap();
        let reply = s.poll_transmit().unwrap();
        let reply = client::parse_reply(std::str::from_utf8(&reply).unwrap()).unwrap();
        let got = reply.challenge().unwrap();
        buf.extend_from_slice(&client::connect_line(channel, secret.as_bytes(), &got));
        buf.extend_from_slice(&client::attribute_lines(&attrs));
        s.handle_input(&mut buf).unwrap();
        assert!(s.verify_connect(secret.as_bytes()));
        s.handle_input(&mut buf).unwrap();
        assert!(matches!(s.poll_event(), Some(ControlEvent::Connect { .. })));
        let Some(ControlEvent::StreamRequested { attributes, .. }) = s.poll_event() else {
            panic!("expected StreamRequested");
        };
        assert_eq!(attributes.video, attrs.video);
        s.accept_stream(9000);
        let replies: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert_eq!(replies, vec!["200\n", "200. Use UDP port 9000\n"]);
        let port = client::parse_reply("200. Use UDP port 9000")
            .unwrap()
            .udp_port();
        assert_eq!(port, Some(9000));
        assert!(s.is_live());
        s
    }

    #[test]
    fn attributes_after_dot_are_400() {
        let mut s = live_session();
        let mut buf = BytesMut::from(&b"VideoWidth: 1920\n"[..]);
        assert_eq!(
            s.handle_input(&mut buf),
            Err(ControlError::AttributeAfterEnd)
        );
        assert_eq!(s.poll_transmit().unwrap(), "400\n");
        assert!(s.is_closed());
    }

    #[test]
    fn server_can_end_a_live_stream() {
        let mut s = live_session();
        s.end(ResponseCode::ServerTerminate);
        assert_eq!(s.poll_transmit().unwrap(), "410\n");
        assert!(s.is_closed());
        s.end(ResponseCode::InternalError);
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn malformed_connect_and_missing_tracks_are_400() {
        let mut s = ControlSession::new(ControlConfig::default(), [1; CHALLENGE_LEN]);
        let mut buf = BytesMut::from(&b"HMAC\nCONNECT 77 $zz\n"[..]);
        assert_eq!(
            s.handle_input(&mut buf),
            Err(ControlError::MalformedConnect)
        );
        let digest = hex::encode(crate::proto::ftl::hmac_digest(b"k", &[1; CHALLENGE_LEN]));
        let mut s = ControlSession::new(ControlConfig::default(), [1; CHALLENGE_LEN]);
        let mut buf =
            BytesMut::from(format!("HMAC\nCONNECT 5 ${digest}\nVendorName: x\n.\n").as_bytes());
        s.handle_input(&mut buf).unwrap();
        assert!(s.verify_connect(b"k"));
        assert!(s.handle_input(&mut buf).is_err());
        let sent: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert_eq!(sent.last().unwrap(), "400\n");
    }
}
