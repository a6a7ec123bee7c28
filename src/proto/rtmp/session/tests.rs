//! Pair tests: a client and a server session joined in memory, with the byte streams cut into
//! pieces of every size down to one byte (quinn's `Pair`), plus bad-input tests on the server.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};

use super::*;
use crate::media::{Frame, MediaKind};
use crate::proto::amf0::{self, Command, Value};
use crate::proto::rtmp::chunk::{ChunkDecoder, ChunkError, ChunkLimits, Message, encode_message};
use crate::proto::rtmp::handshake::ClientHandshake;
use crate::proto::rtmp::message::{ControlMessage, UserControl, type_id};

struct Pair {
    client: ClientSession,
    server: ServerSession,
    /// Bytes in flight client → server and server → client.
    c2s: BytesMut,
    s2c: BytesMut,
    step: usize,
    /// Every byte the client sent, for replay.
    client_wire: BytesMut,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
    accept: bool,
}

impl Pair {
    fn new(step: usize) -> Pair {
        let config = SessionConfig {
            chunk_size: 300,
            ..SessionConfig::default()
        };
        let client_config = ClientConfig {
            chunk_size: 200,
            ..ClientConfig::default()
        };
        Pair {
            client: ClientSession::new(client_config, [0x11; 1528]),
            server: ServerSession::new(config, [0x22; 1528]),
            c2s: BytesMut::new(),
            s2c: BytesMut::new(),
            step,
            client_wire: BytesMut::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            accept: true,
        }
    }

    /// Runs both sides until nothing moves. `server_in`/`client_in` are the receive buffers.
    fn drive(&mut self) {
        let mut server_in = BytesMut::new();
        let mut client_in = BytesMut::new();
        for _ in 0..10_000_000 {
            while let Some(b) = self.client.poll_transmit() {
                self.client_wire.extend_from_slice(&b);
                self.c2s.extend_from_slice(&b);
            }
            while let Some(b) = self.server.poll_transmit() {
                self.s2c.extend_from_slice(&b);
            }
            let n = self.step.min(self.c2s.len());
            server_in.extend_from_slice(&self.c2s.split_to(n));
            self.server.handle_input(&mut server_in).unwrap();
            let mut progress = n > 0;
            while let Some(ev) = self.server.poll_event() {
                progress = true;
                self.answer(&ev);
                self.server_events.push(ev);
            }
            let m = self.step.min(self.s2c.len());
            client_in.extend_from_slice(&self.s2c.split_to(m));
            self.client.handle_input(&mut client_in).unwrap();
            progress |= m > 0;
            while let Some(ev) = self.client.poll_event() {
                progress = true;
                self.client_events.push(ev);
            }
            if !progress && self.c2s.is_empty() && self.s2c.is_empty() {
                assert!(server_in.is_empty() && client_in.is_empty());
                return;
            }
        }
        panic!("pair did not settle");
    }

    fn answer(&mut self, ev: &ServerEvent) {
        match ev {
            ServerEvent::PublishRequested { stream_id, .. } if self.accept => {
                self.server.accept_publish(*stream_id);
            }
            ServerEvent::PlayRequested { stream_id, .. } if self.accept => {
                self.server.accept_play(*stream_id);
            }
            ServerEvent::PlayRequested { stream_id, .. } => {
                self.server.reject_play(
                    *stream_id,
                    "NetStream.Play.StreamNotFound",
                    "No such stream.",
                );
            }
            _ => {}
        }
    }

    fn media(&self) -> Vec<Frame> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Media {
                    stream_id: 1,
                    frame,
                } => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }
}

fn metadata() -> Bytes {
    let mut b = BytesMut::new();
    amf0::encode_str("onMetaData", &mut b);
    amf0::encode(
        &Value::EcmaArray(vec![
            ("width".into(), Value::Number(1280.0)),
            ("videocodecid".into(), Value::string("hvc1")),
        ]),
        &mut b,
    );
    b.freeze()
}

fn test_frames(big: usize) -> Vec<Frame> {
    let mut key = vec![0x17, 1, 0, 0, 0];
    key.extend((0..big).map(|i| i as u8));
    vec![
        Frame::new(MediaKind::Script, 0, metadata()),
        Frame::new(
            MediaKind::Video,
            0,
            Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]),
        ),
        Frame::new(
            MediaKind::Audio,
            0,
            Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        ),
        Frame::new(MediaKind::Video, 33, Bytes::from(key)),
        Frame::new(
            MediaKind::Audio,
            40,
            Bytes::from_static(&[0xaf, 1, 9, 9, 9]),
        ),
        // Enhanced RTMP: ExHeader HEVC coded frame and Opus, passed through untouched.
        Frame::new(
            MediaKind::Video,
            66,
            Bytes::from_static(b"\xa1hvc1\0\0\0xyz"),
        ),
        Frame::new(MediaKind::Audio, 70, Bytes::from_static(b"\x91Opusabc")),
        // Extended timestamps.
        Frame::new(MediaKind::Video, 0x0100_0000, Bytes::from(vec![0x27; 700])),
    ]
}

fn publish_pair(step: usize, frames: &[Frame]) -> Pair {
    let mut p = Pair::new(step);
    p.client.connect("live/", "rtmp://localhost/live");
    p.client.publish("key?token=abc");
    p.drive();
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::PublishStarted { stream_id: 1 }))
    );
    for f in frames {
        p.client.send_frame(f).unwrap();
    }
    p.drive();
    p
}

#[test]
fn publish_delivers_identical_frames_at_every_step_size() {
    let frames = test_frames(50_000);
    for step in [1, 2, 3, 5, 7, 13, 64, 129, 1000, 4096, usize::MAX] {
        let p = publish_pair(step, &frames);
        assert_eq!(
            p.server_events.first(),
            Some(&ServerEvent::Connected {
                app: "live".into(),
                tc_url: Some("rtmp://localhost/live".into())
            })
        );
        assert!(p.server_events.contains(&ServerEvent::PublishRequested {
            stream_id: 1,
            app: "live".into(),
            name: "key?token=abc".into(),
            publish_type: "live".into(),
        }));
        assert_eq!(p.media(), frames, "step {step}");
        assert_eq!(p.server.out_chunk_size(), 300);
    }
}

#[test]
fn metadata_arrives_unwrapped_from_set_data_frame() {
    let p = publish_pair(usize::MAX, &test_frames(10));
    let meta = &p.media()[0];
    assert_eq!(meta.role, crate::media::FrameRole::Metadata);
    assert_eq!(meta.payload, metadata());
}

#[test]
fn client_stream_split_at_every_offset_gives_the_same_server_events() {
    let frames = test_frames(300);
    let reference = publish_pair(usize::MAX, &frames);
    let wire = reference.client_wire.clone();
    for cut in 0..=wire.len() {
        let mut server = ServerSession::new(SessionConfig::default(), [0x22; 1528]);
        let mut events = Vec::new();
        let mut buf = BytesMut::new();
        for piece in [&wire[..cut], &wire[cut..]] {
            buf.extend_from_slice(piece);
            loop {
                server.handle_input(&mut buf).unwrap();
                let mut answered = false;
                while let Some(ev) = server.poll_event() {
                    if let ServerEvent::PublishRequested { stream_id, .. } = ev {
                        server.accept_publish(stream_id);
                        answered = true;
                    }
                    events.push(ev);
                }
                if !answered {
                    break;
                }
            }
        }
        assert!(buf.is_empty(), "cut {cut}");
        assert_eq!(events, reference.server_events, "cut {cut}");
    }
}

#[test]
fn unpublish_is_reported_once_for_fcunpublish_then_delete_stream() {
    let mut p = publish_pair(usize::MAX, &[]);
    let cmd = |name: &str, txn: f64, arg: Value| Command {
        name: name.into(),
        transaction_id: txn,
        command_object: Value::Null,
        args: vec![arg],
    };
    let conn = p.client.conn_for_test();
    conn.send_command(0, &cmd("FCUnpublish", 6.0, Value::string("key?token=abc")));
    // Media still in flight after FCUnpublish is dropped, not an error.
    conn.send_raw(6, 99, type_id::VIDEO, 1, &[0x27, 1]);
    conn.send_command(0, &cmd("deleteStream", 7.0, Value::Number(1.0)));
    p.drive();
    let unpublished = p
        .server_events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Unpublished { stream_id: 1 }))
        .count();
    assert_eq!(unpublished, 1);
    assert!(p.media().is_empty());
}

#[test]
fn play_is_accepted_and_media_reaches_the_player() {
    for step in [1, 3, 17, usize::MAX] {
        let mut p = Pair::new(step);
        p.client.connect("live", "rtmp://localhost/live");
        p.client.play("cam");
        p.drive();
        assert!(p.server_events.contains(&ServerEvent::PlayRequested {
            stream_id: 1,
            app: "live".into(),
            name: "cam".into(),
        }));
        let codes: Vec<_> = p
            .client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status { code, .. } => Some(code.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"]);
        assert!(
            p.client_events
                .contains(&ClientEvent::PlayStarted { stream_id: 1 })
        );

        // The fan-out writes pre-chunked media with the server's chunk size.
        p.client_events.clear();
        let frames = test_frames(5000);
        for f in &frames {
            encode_message(
                &mut p.s2c,
                6,
                f.timestamp,
                f.kind.type_id(),
                crate::proto::rtmp::MEDIA_STREAM_ID,
                &f.payload,
                p.server.out_chunk_size() as usize,
            );
        }
        p.server.notify_unpublish(1);
        p.drive();
        let got: Vec<_> = p
            .client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got, frames);
        assert!(matches!(
            p.client_events.last(),
            Some(ClientEvent::Status { code, .. }) if code == "NetStream.Play.UnpublishNotify"
        ));
    }
}

#[test]
fn rejected_play_reports_an_error_status() {
    let mut p = Pair::new(usize::MAX);
    p.accept = false;
    p.client.connect("live", "rtmp://localhost/live");
    p.client.play("missing");
    p.drive();
    assert!(p.client_events.contains(&ClientEvent::Status {
        code: "NetStream.Play.StreamNotFound".into(),
        level: "error".into(),
        description: "No such stream.".into(),
    }));
    assert!(
        !p.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::PlayStarted { .. }))
    );
}

#[test]
fn send_frame_before_publish_start_is_a_local_error() {
    let mut c = ClientSession::new(ClientConfig::default(), [0; 1528]);
    let err = c
        .send_frame(&Frame::new(MediaKind::Audio, 0, Bytes::new()))
        .unwrap_err();
    assert_eq!(err.blame(), Blame::Local);
}

// --- bad input against a bare server ---------------------------------------------------

/// A server past a simple handshake, and the buffer to feed it.
fn handshaken_server(limits: Limits) -> ServerSession {
    let config = SessionConfig {
        limits,
        ..SessionConfig::default()
    };
    let mut server = ServerSession::new(config, [3; 1528]);
    let mut wire = BytesMut::new();
    ClientHandshake::new_simple([4; 1528], &mut wire);
    wire.extend_from_slice(&[0; 1536]); // C2
    server.handle_input(&mut wire).unwrap();
    assert!(wire.is_empty());
    server.poll_transmit();
    server
}

fn command(name: &str, txn: f64, obj: Value, args: Vec<Value>) -> BytesMut {
    let mut body = BytesMut::new();
    Command {
        name: name.into(),
        transaction_id: txn,
        command_object: obj,
        args,
    }
    .encode(&mut body);
    body
}

fn send(server: &mut ServerSession, msid: u32, ty: u8, body: &[u8]) -> Result<(), SessionError> {
    let mut wire = BytesMut::new();
    encode_message(&mut wire, 3, 0, ty, msid, body, 128);
    server.handle_input(&mut wire)
}

fn connect(server: &mut ServerSession) {
    let obj = Value::object([("app", Value::string("live"))]);
    let body = command("connect", 1.0, obj, vec![]);
    send(server, 0, type_id::AMF0_COMMAND, &body).unwrap();
}

fn server_output(server: &mut ServerSession) -> Vec<Message> {
    let mut d = ChunkDecoder::new(ChunkLimits::default());
    let mut out = Vec::new();
    while let Some(mut b) = server.poll_transmit().map(BytesMut::from) {
        while let Some(m) = d.decode(&mut b).unwrap() {
            out.push(m);
        }
    }
    out
}

#[test]
fn fmt1_on_unopened_chunk_stream_closes_the_session() {
    let mut s = handshaken_server(Limits::default());
    let mut wire = BytesMut::from(&[0x45, 0, 0, 0, 0, 0, 1, 20, 5][..]);
    assert_eq!(
        s.handle_input(&mut wire),
        Err(SessionError::Chunk(ChunkError::UnopenedChunkStream {
            csid: 5,
            fmt: 1
        }))
    );
}

#[test]
fn message_above_limit_closes_the_session_as_limit_exceeded() {
    let mut limits = Limits::default();
    limits.chunk.max_message_len = 1000;
    let mut s = handshaken_server(limits);
    let err = send(&mut s, 1, type_id::VIDEO, &[0; 1001]).unwrap_err();
    assert_eq!(
        err,
        SessionError::Chunk(ChunkError::MessageTooLarge {
            len: 1001,
            max: 1000
        })
    );
    assert_eq!(err.blame(), Blame::LimitExceeded);
}

#[test]
fn amf0_garbage_in_a_command_is_a_peer_error() {
    let mut s = handshaken_server(Limits::default());
    let err = send(
        &mut s,
        0,
        type_id::AMF0_COMMAND,
        &[0x02, 0x00, 0x07, b'c', 0x42],
    )
    .unwrap_err();
    assert!(matches!(err, SessionError::MalformedAmf0 { .. }), "{err}");
    assert_eq!(err.blame(), Blame::PeerMisbehaved);
}

#[test]
fn publish_before_connect_is_a_protocol_violation() {
    let mut s = handshaken_server(Limits::default());
    let body = command("publish", 5.0, Value::Null, vec![Value::string("k")]);
    assert_eq!(
        send(&mut s, 1, type_id::AMF0_COMMAND, &body),
        Err(SessionError::NotConnected {
            command: "publish".into()
        })
    );
}

#[test]
fn media_on_a_stream_that_is_not_publishing_is_an_error() {
    let mut s = handshaken_server(Limits::default());
    connect(&mut s);
    let body = command("createStream", 2.0, Value::Null, vec![]);
    send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap();
    assert_eq!(
        send(&mut s, 1, type_id::VIDEO, &[0x17, 1]),
        Err(SessionError::MediaOnNonPublishingStream { stream_id: 1 })
    );
}

#[test]
fn connect_reply_carries_control_messages_and_echoes_fourcc_list() {
    let mut s = handshaken_server(Limits::default());
    let list = Value::StrictArray(vec![Value::string("hvc1")]);
    let obj = Value::object([("app", Value::string("live")), ("fourCcList", list.clone())]);
    let body = command("connect", 1.0, obj, vec![]);
    send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap();
    let out = server_output(&mut s);
    let types: Vec<u8> = out.iter().map(|m| m.type_id).collect();
    assert_eq!(types, [5, 6, 1, 20]);
    let result = Command::decode(&out[3].payload, &amf0::Limits::default()).unwrap();
    assert_eq!(result.name, "_result");
    assert_eq!(result.command_object.get("fourCcList"), Some(&list));
    let info = &result.args[0];
    assert_eq!(
        info.get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(info.get("objectEncoding"), Some(&Value::Number(0.0)));
    assert!(!s.takes_opus(), "hvc1 only: the player gets AAC");
}

#[test]
fn a_connect_listing_opus_marks_the_player_as_taking_opus() {
    let mut s = handshaken_server(Limits::default());
    let list = Value::StrictArray(vec![Value::string("avc1"), Value::string("Opus")]);
    let obj = Value::object([("app", Value::string("live")), ("fourCcList", list)]);
    let body = command("connect", 1.0, obj, vec![]);
    send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap();
    assert!(s.takes_opus());
}

#[test]
fn create_stream_allocates_ids_from_one_up_to_the_limit() {
    let mut s = handshaken_server(Limits {
        max_streams: 2,
        ..Limits::default()
    });
    connect(&mut s);
    server_output(&mut s);
    for id in 1..=2 {
        let body = command("createStream", 2.0, Value::Null, vec![]);
        send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap();
        let out = server_output(&mut s);
        let result = Command::decode(&out[0].payload, &amf0::Limits::default()).unwrap();
        assert_eq!(result.args, [Value::Number(f64::from(id))]);
    }
    let body = command("createStream", 3.0, Value::Null, vec![]);
    let err = send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap_err();
    assert_eq!(err.blame(), Blame::LimitExceeded);
}

#[test]
fn unknown_command_with_transaction_gets_an_error_reply() {
    let mut s = handshaken_server(Limits::default());
    connect(&mut s);
    server_output(&mut s);
    let body = command("frobnicate", 7.0, Value::Null, vec![]);
    send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap();
    let out = server_output(&mut s);
    let reply = Command::decode(&out[0].payload, &amf0::Limits::default()).unwrap();
    assert_eq!((reply.name.as_str(), reply.transaction_id), ("_error", 7.0));
    let body = command("frobnicate", 0.0, Value::Null, vec![]);
    send(&mut s, 0, type_id::AMF0_COMMAND, &body).unwrap();
    assert!(server_output(&mut s).is_empty());
}

#[test]
fn ping_request_gets_a_ping_response() {
    let mut s = handshaken_server(Limits::default());
    let mut wire = BytesMut::new();
    ControlMessage::UserControl(UserControl::PingRequest(1234)).write(&mut wire, 128);
    s.handle_input(&mut wire).unwrap();
    let out = server_output(&mut s);
    assert_eq!(
        ControlMessage::parse(out[0].type_id, &out[0].payload).unwrap(),
        Some(ControlMessage::UserControl(UserControl::PingResponse(1234)))
    );
}

#[test]
fn acknowledgement_is_sent_when_the_peer_window_is_crossed() {
    let mut s = handshaken_server(Limits::default());
    let mut wire = BytesMut::new();
    ControlMessage::WindowAckSize(100).write(&mut wire, 128);
    s.handle_input(&mut wire).unwrap();
    assert!(server_output(&mut s).is_empty());
    // Unknown message types are ignored but still count towards the window.
    send(&mut s, 0, 0x30, &[0; 90]).unwrap();
    let out = server_output(&mut s);
    let acks: Vec<_> = out
        .iter()
        .filter_map(|m| match ControlMessage::parse(m.type_id, &m.payload) {
            Ok(Some(ControlMessage::Acknowledgement { sequence })) => Some(sequence),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [16 + 12 + 90]);
}

#[test]
fn split_stream_name_separates_the_query() {
    assert_eq!(split_stream_name("key?token=1"), ("key", Some("token=1")));
    assert_eq!(split_stream_name("key"), ("key", None));
}
