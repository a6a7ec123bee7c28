//! The server session: handshake, `connect`, stream creation, publish/play requests and media
//! intake. Policy (which names may publish or play) belongs to the caller, which answers
//! `PublishRequested`/`PlayRequested` with `accept_*`/`reject_*`.
//!
//! Ordering rule: after queuing a `PublishRequested` or `PlayRequested` event, `handle_input`
//! stops interpreting input until the caller answers, leaving later bytes in the buffer. A
//! pipelining client's media is then never judged against an undecided stream. Real clients
//! wait for `NetStream.Publish.Start` anyway; drivers must bound their read buffer regardless.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::conn::{Conn, decode_command, on_status};
use super::{SessionConfig, SessionError};
use crate::media::{Frame, MediaKind};
use crate::proto::amf0::{Command, Value};
use crate::proto::rtmp::chunk::Message;
use crate::proto::rtmp::handshake::{RANDOM_SIZE, ServerHandshake};
use crate::proto::rtmp::message::{ControlMessage, UserControl, type_id};

/// What the server session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// `connect` succeeded; the session has already replied (Window Ack Size, Set Peer
    /// Bandwidth, Set Chunk Size, `_result` NetConnection.Connect.Success).
    Connected { app: String, tc_url: Option<String> },
    /// Answer with `accept_publish` or `reject_publish`. `name` is as sent, query string
    /// included (see `split_stream_name`).
    PublishRequested {
        stream_id: u32,
        app: String,
        name: String,
        publish_type: String,
    },
    /// Answer with `accept_play` or `reject_play`. `name` is as sent, query string included.
    PlayRequested {
        stream_id: u32,
        app: String,
        name: String,
    },
    /// Audio, video or data of a publishing stream. `@setDataFrame` is unwrapped, so metadata
    /// payloads begin with the `onMetaData` string as FLV stores them.
    Media { stream_id: u32, frame: Frame },
    /// A publishing stream ended (FCUnpublish, closeStream or deleteStream).
    Unpublished { stream_id: u32 },
    /// A playing stream ended (closeStream or deleteStream).
    PlayStopped { stream_id: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamState {
    Idle,
    PublishRequested {
        name: String,
    },
    Publishing {
        name: String,
    },
    /// Unpublished (FCUnpublish, closeStream): stray media in flight is dropped, not an error.
    Unpublished,
    PlayRequested,
    Playing,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    state: StreamState,
}

#[derive(Debug)]
enum Phase {
    Handshake(Box<ServerHandshake>),
    ExpectConnect,
    Connected { app: String },
}

/// The AMF0 string `@setDataFrame`, as it begins a metadata data message from a publisher.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// A sans-IO RTMP server connection.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    phase: Phase,
    conn: Conn,
    streams: Vec<Stream>,
    next_stream_id: u32,
    events: VecDeque<ServerEvent>,
    /// The client's `connect` listed Opus in its E-RTMP `fourCcList`.
    takes_opus: bool,
}

impl ServerSession {
    /// `handshake_random` fills S1/S2.
    pub fn new(config: SessionConfig, handshake_random: [u8; RANDOM_SIZE]) -> Self {
        ServerSession {
            config,
            phase: Phase::Handshake(Box::new(ServerHandshake::new(handshake_random))),
            conn: Conn::new(config.limits.chunk),
            streams: Vec::new(),
            next_stream_id: 1,
            events: VecDeque::new(),
            takes_opus: false,
        }
    }

    /// True when the client's `connect` advertised Opus in its Enhanced RTMP `fourCcList`
    /// (such a player is sent Opus as published; others get the AAC rendition).
    pub fn takes_opus(&self) -> bool {
        self.takes_opus
    }

    /// The chunk size of everything this connection sends, the fan-out's chunks included.
    pub fn out_chunk_size(&self) -> u32 {
        self.conn.out_chunk_size()
    }

    /// True while a publish or play request waits for the caller's answer; input is not
    /// interpreted meanwhile.
    pub fn is_awaiting_decision(&self) -> bool {
        self.streams.iter().any(|s| {
            matches!(
                s.state,
                StreamState::PublishRequested { .. } | StreamState::PlayRequested
            )
        })
    }

    /// Consumes all complete input from `buf` (except while a decision is pending, see the
    /// module doc). Incomplete trailing bytes stay in `buf`.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        if let Phase::Handshake(hs) = &mut self.phase {
            if !hs.handle_input(buf, self.conn.out_buf())? {
                return Ok(());
            }
            self.phase = Phase::ExpectConnect;
        }
        while !self.is_awaiting_decision() {
            let Some(msg) = self.conn.decode(buf)? else {
                break;
            };
            self.handle_message(msg)?;
        }
        Ok(())
    }

    /// Outgoing bytes, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.conn.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Sends StreamBegin and `NetStream.Publish.Start`; media on the stream is now delivered.
    pub fn accept_publish(&mut self, stream_id: u32) {
        let Some(s) = self.stream_mut(stream_id) else {
            return;
        };
        let StreamState::PublishRequested { name } = &s.state else {
            tracing::debug!(stream_id, "accept_publish without a pending request");
            return;
        };
        let desc = format!("{name} is now published.");
        s.state = StreamState::Publishing { name: name.clone() };
        self.conn
            .send_control(ControlMessage::UserControl(UserControl::StreamBegin(
                stream_id,
            )));
        let status = on_status("status", "NetStream.Publish.Start", &desc);
        self.conn.send_command(stream_id, &status);
    }

    /// Sends an error-level status (e.g. `NetStream.Publish.BadName`,
    /// `NetStream.Publish.Unauthorized`) and returns the stream to idle.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.reject(stream_id, code, description);
    }

    /// Sends StreamBegin, `NetStream.Play.Reset`, `NetStream.Play.Start` and
    /// `|RtmpSampleAccess`; the caller then writes media with this message stream id.
    pub fn accept_play(&mut self, stream_id: u32) {
        let Some(s) = self.stream_mut(stream_id) else {
            return;
        };
        if s.state != StreamState::PlayRequested {
            tracing::debug!(stream_id, "accept_play without a pending request");
            return;
        }
        s.state = StreamState::Playing;
        self.conn
            .send_control(ControlMessage::UserControl(UserControl::StreamBegin(
                stream_id,
            )));
        let reset = on_status("status", "NetStream.Play.Reset", "Playing and resetting.");
        self.conn.send_command(stream_id, &reset);
        let start = on_status("status", "NetStream.Play.Start", "Started playing.");
        self.conn.send_command(stream_id, &start);
        self.conn.send_data(
            stream_id,
            &[
                Value::string("|RtmpSampleAccess"),
                Value::Boolean(true),
                Value::Boolean(true),
            ],
        );
    }

    /// Sends an error-level status (e.g. `NetStream.Play.StreamNotFound`).
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.reject(stream_id, code, description);
    }

    /// Tells a player its stream's publisher left: `NetStream.Play.UnpublishNotify`, StreamEOF.
    pub fn notify_unpublish(&mut self, stream_id: u32) {
        let status = on_status(
            "status",
            "NetStream.Play.UnpublishNotify",
            "Stream unpublished.",
        );
        self.conn.send_command(stream_id, &status);
        self.conn
            .send_control(ControlMessage::UserControl(UserControl::StreamEof(
                stream_id,
            )));
    }

    /// Tells a player a publisher (re)started: StreamBegin, `NetStream.Play.PublishNotify`.
    pub fn notify_publish(&mut self, stream_id: u32) {
        self.conn
            .send_control(ControlMessage::UserControl(UserControl::StreamBegin(
                stream_id,
            )));
        let status = on_status(
            "status",
            "NetStream.Play.PublishNotify",
            "Stream published.",
        );
        self.conn.send_command(stream_id, &status);
    }

    fn reject(&mut self, stream_id: u32, code: &str, description: &str) {
        let Some(s) = self.stream_mut(stream_id) else {
            return;
        };
        s.state = StreamState::Idle;
        self.conn
            .send_command(stream_id, &on_status("error", code, description));
    }

    fn stream_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    fn handle_message(&mut self, msg: Message) -> Result<(), SessionError> {
        if self.conn.handle_control(&msg)?.is_some() {
            return Ok(());
        }
        match msg.type_id {
            type_id::AUDIO | type_id::VIDEO | type_id::AMF0_DATA => self.handle_media(msg),
            type_id::AMF0_COMMAND | type_id::AMF3_COMMAND => {
                if let Some(cmd) = decode_command(&msg, &self.config.limits.amf0)? {
                    self.handle_command(msg.stream_id, cmd)?;
                }
                Ok(())
            }
            other => {
                tracing::debug!(type_id = other, "ignoring message type");
                Ok(())
            }
        }
    }

    fn handle_media(&mut self, msg: Message) -> Result<(), SessionError> {
        let stream_id = msg.stream_id;
        let state = self
            .streams
            .iter()
            .find(|s| s.id == stream_id)
            .map(|s| &s.state);
        match state {
            Some(StreamState::Publishing { .. }) => {}
            Some(StreamState::Unpublished) => {
                tracing::debug!(stream_id, "dropping media after unpublish");
                return Ok(());
            }
            _ => return Err(SessionError::MediaOnNonPublishingStream { stream_id }),
        }
        let Some(kind) = MediaKind::from_type_id(msg.type_id) else {
            return Ok(());
        };
        let mut payload = msg.payload;
        if kind == MediaKind::Script && payload.starts_with(SET_DATA_FRAME) {
            payload = payload.slice(SET_DATA_FRAME.len()..);
        }
        let frame = Frame::new(kind, msg.timestamp, payload);
        self.events
            .push_back(ServerEvent::Media { stream_id, frame });
        Ok(())
    }

    fn app(&self, command: &str) -> Result<String, SessionError> {
        match &self.phase {
            Phase::Connected { app } => Ok(app.clone()),
            _ => Err(SessionError::NotConnected {
                command: command.to_owned(),
            }),
        }
    }

    fn handle_command(&mut self, msid: u32, cmd: Command) -> Result<(), SessionError> {
        let txn = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => self.handle_connect(&cmd),
            "createStream" => {
                self.app("createStream")?;
                let max = self.config.limits.max_streams;
                if self.streams.len() >= max {
                    return Err(SessionError::TooManyStreams { max });
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.checked_add(1).unwrap_or(1);
                self.streams.push(Stream {
                    id,
                    state: StreamState::Idle,
                });
                self.reply_result(txn, Value::Number(f64::from(id)));
                Ok(())
            }
            "publish" => {
                let app = self.app("publish")?;
                let name = string_arg(&cmd, 0, "publish", "stream name")?;
                let publish_type = cmd.arg(1).and_then(Value::as_str).unwrap_or("live");
                let publish_type = publish_type.to_owned();
                self.request(
                    msid,
                    "publish",
                    StreamState::PublishRequested { name: name.clone() },
                )?;
                self.events.push_back(ServerEvent::PublishRequested {
                    stream_id: msid,
                    app,
                    name,
                    publish_type,
                });
                Ok(())
            }
            "play" => {
                let app = self.app("play")?;
                // Start, duration and reset arguments are ignored: live only.
                let name = string_arg(&cmd, 0, "play", "stream name")?;
                self.request(msid, "play", StreamState::PlayRequested)?;
                self.events.push_back(ServerEvent::PlayRequested {
                    stream_id: msid,
                    app,
                    name,
                });
                Ok(())
            }
            "releaseStream" => {
                self.app("releaseStream")?;
                self.reply_result(txn, Value::Undefined);
                Ok(())
            }
            "FCPublish" => {
                self.app("FCPublish")?;
                let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
                let reply = on_status("status", "NetStream.Publish.Start", name);
                let reply = Command {
                    name: "onFCPublish".into(),
                    ..reply
                };
                self.conn.send_command(0, &reply);
                Ok(())
            }
            "FCUnpublish" => {
                let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
                let found = self
                    .streams
                    .iter_mut()
                    .find(|s| matches!(&s.state, StreamState::Publishing { name: n } if n == name));
                if let Some(s) = found {
                    s.state = StreamState::Unpublished;
                    let stream_id = s.id;
                    self.events
                        .push_back(ServerEvent::Unpublished { stream_id });
                }
                Ok(())
            }
            "closeStream" => {
                self.end_stream(msid, false);
                Ok(())
            }
            "deleteStream" => {
                let id = cmd.arg(0).and_then(Value::as_number).unwrap_or(-1.0);
                if id >= 1.0 && id <= f64::from(u32::MAX) {
                    self.end_stream(id as u32, true);
                }
                Ok(())
            }
            "getStreamLength" => {
                self.reply_result(txn, Value::Number(0.0));
                Ok(())
            }
            "_result" | "_error" | "onStatus" | "_checkbw" => Ok(()),
            other => {
                tracing::debug!(command = other, "ignoring unknown command");
                if txn > 0.0 {
                    let err = Command {
                        name: "_error".into(),
                        transaction_id: txn,
                        command_object: Value::Null,
                        args: vec![Value::object([
                            ("level", Value::string("error")),
                            ("code", Value::string("NetConnection.Call.Failed")),
                            (
                                "description",
                                Value::string(format!("unknown command {other}")),
                            ),
                        ])],
                    };
                    self.conn.send_command(0, &err);
                }
                Ok(())
            }
        }
    }

    fn handle_connect(&mut self, cmd: &Command) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::ExpectConnect) {
            return Err(SessionError::AlreadyConnected);
        }
        let obj = &cmd.command_object;
        let app = obj
            .get("app")
            .and_then(Value::as_str)
            .ok_or(SessionError::MissingArgument {
                command: "connect",
                argument: "app",
            })?
            .trim_end_matches('/')
            .to_owned();
        let tc_url = obj.get("tcUrl").and_then(Value::as_str).map(str::to_owned);
        self.takes_opus = matches!(
            obj.get("fourCcList"),
            Some(Value::StrictArray(list))
                if list.iter().any(|v| v.as_str() == Some("Opus"))
        );

        self.conn
            .send_control(ControlMessage::WindowAckSize(self.config.window_ack_size));
        self.conn.send_control(ControlMessage::SetPeerBandwidth {
            size: self.config.peer_bandwidth,
            limit: 2,
        });
        self.conn.set_out_chunk_size(self.config.chunk_size);

        let mut props = vec![
            ("fmsVer".to_owned(), Value::string("FMS/3,0,1,123")),
            ("capabilities".to_owned(), Value::Number(31.0)),
        ];
        // Enhanced RTMP: echo the client's codec list; media passes through untouched, so
        // whatever it can send we can relay.
        for key in [
            "fourCcList",
            "videoFourCcInfoMap",
            "audioFourCcInfoMap",
            "capsEx",
        ] {
            if let Some(v) = obj.get(key) {
                props.push((key.to_owned(), v.clone()));
            }
        }
        let result = Command {
            name: "_result".into(),
            transaction_id: cmd.transaction_id,
            command_object: Value::Object(props),
            args: vec![Value::object([
                ("level", Value::string("status")),
                ("code", Value::string("NetConnection.Connect.Success")),
                ("description", Value::string("Connection succeeded.")),
                ("objectEncoding", Value::Number(0.0)),
            ])],
        };
        self.conn.send_command(0, &result);
        self.phase = Phase::Connected { app: app.clone() };
        self.events
            .push_back(ServerEvent::Connected { app, tc_url });
        Ok(())
    }

    /// Moves an idle stream into a requested state.
    fn request(&mut self, msid: u32, command: &str, next: StreamState) -> Result<(), SessionError> {
        let Some(s) = self.stream_mut(msid) else {
            return Err(SessionError::UnknownStream {
                command: command.to_owned(),
                stream_id: msid,
            });
        };
        if !matches!(s.state, StreamState::Idle | StreamState::Unpublished) {
            return Err(SessionError::StreamBusy {
                command: command.to_owned(),
                stream_id: msid,
            });
        }
        s.state = next;
        Ok(())
    }

    fn end_stream(&mut self, stream_id: u32, delete: bool) {
        let Some(pos) = self.streams.iter().position(|s| s.id == stream_id) else {
            return;
        };
        let Some(s) = self.streams.get_mut(pos) else {
            return;
        };
        // A closed publishing stream drops stray media still in flight; it may publish again.
        s.state = match s.state {
            StreamState::Publishing { .. } | StreamState::PublishRequested { .. } => {
                self.events
                    .push_back(ServerEvent::Unpublished { stream_id });
                StreamState::Unpublished
            }
            StreamState::Playing | StreamState::PlayRequested => {
                self.events
                    .push_back(ServerEvent::PlayStopped { stream_id });
                StreamState::Idle
            }
            StreamState::Unpublished => StreamState::Unpublished,
            StreamState::Idle => StreamState::Idle,
        };
        if delete {
            self.streams.remove(pos);
        }
    }

    fn reply_result(&mut self, txn: f64, value: Value) {
        let result = Command {
            name: "_result".into(),
            transaction_id: txn,
            command_object: Value::Null,
            args: vec![value],
        };
        self.conn.send_command(0, &result);
    }
}

fn string_arg(
    cmd: &Command,
    i: usize,
    command: &'static str,
    argument: &'static str,
) -> Result<String, SessionError> {
    cmd.arg(i)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(SessionError::MissingArgument { command, argument })
}
