//! The client session: handshake, `connect`, then publish (and `send_frame`) or play (and
//! `ClientEvent::Media`). Used by the load generator and by the server's pair tests.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::conn::{Conn, decode_command};
use super::{Limits, SessionError};
use crate::media::{Frame, FrameRole, MediaKind};
use crate::proto::amf0::{Command, Value, encode_str};
use crate::proto::rtmp::chunk::Message;
use crate::proto::rtmp::csid;
use crate::proto::rtmp::handshake::{ClientHandshake, RANDOM_SIZE};
use crate::proto::rtmp::message::type_id;

/// Client session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    pub limits: Limits,
    /// Chunk size for what we send, announced before `connect`.
    pub chunk_size: u32,
    /// Use the FP9 digest handshake (as ffmpeg and OBS do) rather than the simple one.
    pub digest_handshake: bool,
    /// Announce the Enhanced RTMP `fourCcList` in `connect` (needed only to send or receive
    /// HEVC, AV1 or VP9; some servers refuse a `connect` carrying it).
    pub four_cc_list: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            limits: Limits::default(),
            chunk_size: 4096,
            digest_handshake: true,
            four_cc_list: true,
        }
    }
}

/// What the client session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// Every `onStatus` (and the info object of an `_error`).
    Status {
        code: String,
        level: String,
        description: String,
    },
    /// `NetStream.Publish.Start` arrived: `send_frame` may be called.
    PublishStarted { stream_id: u32 },
    /// `NetStream.Play.Start` arrived: media follows.
    PlayStarted { stream_id: u32 },
    /// A media message on the playing stream.
    Media(Frame),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    None,
    Publish(String),
    Play(String),
}

#[derive(Debug)]
enum Phase {
    Handshake(Box<ClientHandshake>),
    /// Handshake done; `connect` sent once `connect()` is called.
    Ready,
    Connecting,
    Connected,
}

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 4.0;

/// A sans-IO RTMP client connection.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    conn: Conn,
    connect_args: Option<(String, String)>,
    intent: Intent,
    stream_id: Option<u32>,
    publishing: bool,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// Queues C0 and C1 at once.
    pub fn new(config: ClientConfig, handshake_random: [u8; RANDOM_SIZE]) -> Self {
        let mut conn = Conn::new(config.limits.chunk);
        let hs = if config.digest_handshake {
            ClientHandshake::new(handshake_random, conn.out_buf())
        } else {
            ClientHandshake::new_simple(handshake_random, conn.out_buf())
        };
        ClientSession {
            config,
            phase: Phase::Handshake(Box::new(hs)),
            conn,
            connect_args: None,
            intent: Intent::None,
            stream_id: None,
            publishing: false,
            events: VecDeque::new(),
        }
    }

    /// Connects to `app`; sent as soon as the handshake completes.
    pub fn connect(&mut self, app: &str, tc_url: &str) {
        self.connect_args = Some((app.to_owned(), tc_url.to_owned()));
        if matches!(self.phase, Phase::Ready) {
            self.send_connect();
        }
    }

    /// Publishes `name` once connected: releaseStream, FCPublish, createStream, publish.
    pub fn publish(&mut self, name: &str) {
        self.intent = Intent::Publish(name.to_owned());
        if matches!(self.phase, Phase::Connected) {
            self.start_stream();
        }
    }

    /// Plays `name` once connected: createStream, play.
    pub fn play(&mut self, name: &str) {
        self.intent = Intent::Play(name.to_owned());
        if matches!(self.phase, Phase::Connected) {
            self.start_stream();
        }
    }

    /// Ends the publish as encoders do: `FCUnpublish`, then `deleteStream`. The caller closes
    /// the connection after writing what this queues.
    pub fn unpublish(&mut self) {
        let (true, Some(stream_id), Intent::Publish(name)) =
            (self.publishing, self.stream_id, self.intent.clone())
        else {
            return;
        };
        self.send("FCUnpublish", 6.0, 0, vec![Value::string(name)]);
        self.send(
            "deleteStream",
            7.0,
            0,
            vec![Value::Number(f64::from(stream_id))],
        );
        self.publishing = false;
    }

    /// Sends one frame on the publishing stream. Metadata is wrapped in `@setDataFrame`.
    pub fn send_frame(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let (true, Some(stream_id)) = (self.publishing, self.stream_id) else {
            return Err(SessionError::NotPublishing);
        };
        let (chunk_stream, ty) = match frame.kind {
            MediaKind::Audio => (csid::AUDIO, type_id::AUDIO),
            MediaKind::Video => (csid::VIDEO, type_id::VIDEO),
            MediaKind::Script => (csid::DATA, type_id::AMF0_DATA),
        };
        if frame.role == FrameRole::Metadata {
            let mut body = BytesMut::with_capacity(frame.payload.len() + 16);
            encode_str("@setDataFrame", &mut body);
            body.extend_from_slice(&frame.payload);
            self.conn
                .send_raw(chunk_stream, frame.timestamp, ty, stream_id, &body);
        } else {
            self.conn
                .send_raw(chunk_stream, frame.timestamp, ty, stream_id, &frame.payload);
        }
        Ok(())
    }

    /// Consumes all complete input from `buf`.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        if let Phase::Handshake(hs) = &mut self.phase {
            if !hs.handle_input(buf, self.conn.out_buf())? {
                return Ok(());
            }
            self.phase = Phase::Ready;
            self.conn.set_out_chunk_size(self.config.chunk_size);
            if self.connect_args.is_some() {
                self.send_connect();
            }
        }
        while let Some(msg) = self.conn.decode(buf)? {
            self.handle_message(msg)?;
        }
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.conn.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The chunk size of what this session sends.
    pub fn out_chunk_size(&self) -> u32 {
        self.conn.out_chunk_size()
    }

    /// The message stream id `createStream` returned, once it has.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream_id
    }

    #[cfg(test)]
    pub(super) fn conn_for_test(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn send_connect(&mut self) {
        let Some((app, tc_url)) = &self.connect_args else {
            return;
        };
        let mut fields = vec![
            ("app", Value::string(app.as_str())),
            ("type", Value::string("nonprivate")),
            ("flashVer", Value::string("FMLE/3.0 (compatible; ringcast)")),
            ("tcUrl", Value::string(tc_url.as_str())),
        ];
        if self.config.four_cc_list {
            fields.push((
                "fourCcList",
                Value::StrictArray(vec![
                    Value::string("hvc1"),
                    Value::string("av01"),
                    Value::string("vp09"),
                ]),
            ));
        }
        let cmd = Command {
            name: "connect".into(),
            transaction_id: TXN_CONNECT,
            command_object: Value::object(fields),
            args: Vec::new(),
        };
        self.conn.send_command(0, &cmd);
        self.phase = Phase::Connecting;
    }

    fn start_stream(&mut self) {
        if let Intent::Publish(name) = &self.intent {
            let name = name.clone();
            for (i, cmd) in ["releaseStream", "FCPublish"].into_iter().enumerate() {
                self.send(cmd, 2.0 + i as f64, 0, vec![Value::string(name.as_str())]);
            }
        }
        if self.intent != Intent::None {
            self.send("createStream", TXN_CREATE_STREAM, 0, Vec::new());
        }
    }

    fn send(&mut self, name: &str, txn: f64, stream_id: u32, args: Vec<Value>) {
        let cmd = Command {
            name: name.into(),
            transaction_id: txn,
            command_object: Value::Null,
            args,
        };
        self.conn.send_command(stream_id, &cmd);
    }

    fn handle_message(&mut self, msg: Message) -> Result<(), SessionError> {
        if self.conn.handle_control(&msg)?.is_some() {
            return Ok(());
        }
        match msg.type_id {
            type_id::AUDIO | type_id::VIDEO | type_id::AMF0_DATA => {
                self.handle_media(msg);
                Ok(())
            }
            type_id::AMF0_COMMAND | type_id::AMF3_COMMAND => {
                if let Some(cmd) = decode_command(&msg, &self.config.limits.amf0)? {
                    self.handle_command(cmd);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn handle_media(&mut self, msg: Message) {
        if self.stream_id != Some(msg.stream_id) || self.publishing {
            return;
        }
        let Some(kind) = MediaKind::from_type_id(msg.type_id) else {
            return;
        };
        if kind == MediaKind::Script
            && (msg.payload.starts_with(b"\x02\x00\x11|RtmpSampleAccess")
                || msg.payload.starts_with(b"\x02\x00\x08onStatus"))
        {
            return;
        }
        self.events.push_back(ClientEvent::Media(Frame::new(
            kind,
            msg.timestamp,
            msg.payload,
        )));
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == TXN_CONNECT => {
                self.phase = Phase::Connected;
                self.events.push_back(ClientEvent::Connected);
                self.start_stream();
            }
            "_result" if cmd.transaction_id == TXN_CREATE_STREAM => {
                let id = cmd.arg(0).and_then(Value::as_number).unwrap_or(0.0);
                if !(1.0..=f64::from(u32::MAX)).contains(&id) {
                    return;
                }
                let id = id as u32;
                self.stream_id = Some(id);
                match self.intent.clone() {
                    Intent::Publish(name) => {
                        let args = vec![Value::string(name), Value::string("live")];
                        self.send("publish", 5.0, id, args);
                    }
                    Intent::Play(name) => {
                        self.send(
                            "play",
                            5.0,
                            id,
                            vec![Value::string(name), Value::Number(-2.0)],
                        );
                    }
                    Intent::None => {}
                }
            }
            "onStatus" | "_error" => {
                let info = cmd.arg(0);
                let field = |k: &str| {
                    info.and_then(|i| i.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let code = field("code");
                if let Some(stream_id) = self.stream_id {
                    match code.as_str() {
                        "NetStream.Publish.Start" => {
                            self.publishing = true;
                            self.events
                                .push_back(ClientEvent::PublishStarted { stream_id });
                        }
                        "NetStream.Play.Start" => {
                            self.events
                                .push_back(ClientEvent::PlayStarted { stream_id });
                        }
                        _ => {}
                    }
                }
                self.events.push_back(ClientEvent::Status {
                    code,
                    level: field("level"),
                    description: field("description"),
                });
            }
            _ => {}
        }
    }
}
