//! The RTMP side of a watcher: the simple handshake, `connect` / `createStream` / `play`, and the
//! control traffic a player must answer (acknowledgements, ping responses). Media messages pass
//! through to the watcher loop untouched.
//!
//! Uses ringcast's sans-IO handshake and command encoding and [`RtmpParser`]; no sockets here:
//! bytes in, bytes to send appended to the caller's output buffer.

use std::rc::Rc;

use bytes::BytesMut;
use ringcast::proto::amf0::{Command, Limits as AmfLimits, Value};
use ringcast::proto::rtmp::{ClientHandshake, encode_message};

use crate::parse::{Parsed, RtmpParser};

const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 2.0;
const TXN_PLAY: f64 = 3.0;
/// RTMP 1.0 §5.4: message type ids the player reads or writes.
const ACKNOWLEDGEMENT: u8 = 3;
const USER_CONTROL: u8 = 4;
const WINDOW_ACK_SIZE: u8 = 5;
const COMMAND_AMF0: u8 = 20;

/// What every RTMP watcher of a run plays, built once.
#[derive(Debug, Clone)]
pub struct RtmpPlay {
    pub app: String,
    pub stream: String,
    pub tc_url: String,
    /// List Opus in the connect's `fourCcList` (an Enhanced RTMP player).
    pub opus: bool,
}

enum Phase {
    /// Waiting for S0S1S2; bytes gathered so far.
    Handshake(Box<ClientHandshake>, BytesMut),
    Session,
}

/// One player connection's RTMP state.
pub struct RtmpPlayer {
    play: Rc<RtmpPlay>,
    phase: Phase,
    parser: RtmpParser,
    ack_window: u32,
    unacked: u32,
    received: u32,
    play_sent_ns: u64,
}

fn command(out: &mut BytesMut, stream_id: u32, name: &str, txn: f64, args: Vec<Value>) {
    let cmd = Command {
        name: name.into(),
        transaction_id: txn,
        command_object: Value::Null,
        args,
    };
    let mut body = BytesMut::new();
    cmd.encode(&mut body);
    encode_message(out, CSID_COMMAND, 0, COMMAND_AMF0, stream_id, &body, 128);
}

fn connect(out: &mut BytesMut, play: &RtmpPlay) {
    let mut props = vec![
        ("app".into(), Value::String(play.app.clone())),
        ("tcUrl".into(), Value::String(play.tc_url.clone())),
        ("fpad".into(), Value::Boolean(false)),
        ("capabilities".into(), Value::Number(15.0)),
        ("audioCodecs".into(), Value::Number(3191.0)),
        ("videoCodecs".into(), Value::Number(252.0)),
        ("videoFunction".into(), Value::Number(1.0)),
    ];
    if play.opus {
        props.push((
            "fourCcList".into(),
            Value::StrictArray(vec![Value::string("avc1"), Value::string("Opus")]),
        ));
    }
    let connect = Command {
        name: "connect".into(),
        transaction_id: TXN_CONNECT,
        command_object: Value::Object(props),
        args: Vec::new(),
    };
    let mut body = BytesMut::new();
    connect.encode(&mut body);
    encode_message(out, CSID_COMMAND, 0, COMMAND_AMF0, 0, &body, 128);
}

impl RtmpPlayer {
    /// Starts the handshake once the TCP connection is up: C0C1 goes to `out`.
    pub fn start(play: Rc<RtmpPlay>, out: &mut BytesMut, now_ns: u64) -> RtmpPlayer {
        let mut random = [0u8; ringcast::proto::rtmp::handshake::RANDOM_SIZE];
        random[..8].copy_from_slice(&now_ns.to_be_bytes());
        let handshake = ClientHandshake::new_simple(random, out);
        RtmpPlayer {
            play,
            phase: Phase::Handshake(Box::new(handshake), BytesMut::new()),
            parser: RtmpParser::default(),
            ack_window: 0,
            unacked: 0,
            received: 0,
            play_sent_ns: 0,
        }
    }

    /// When `play` was sent (0 before).
    pub fn play_sent_ns(&self) -> u64 {
        self.play_sent_ns
    }

    /// Handles bytes from the server: answers what needs answering into `out` and appends every
    /// parsed message to `parsed` (control messages included; the loop reads only media).
    pub fn handle_input(
        &mut self,
        data: &[u8],
        now_ns: u64,
        out: &mut BytesMut,
        parsed: &mut Vec<Parsed>,
    ) -> Result<(), String> {
        self.received = self.received.wrapping_add(data.len() as u32);
        self.unacked = self.unacked.saturating_add(data.len() as u32);
        let first = parsed.len();
        match &mut self.phase {
            Phase::Handshake(handshake, gathered) => {
                gathered.extend_from_slice(data);
                let done = handshake
                    .handle_input(gathered, out)
                    .map_err(|e| format!("handshake: {e}"))?;
                if !done {
                    return Ok(());
                }
                let rest = std::mem::take(gathered);
                self.phase = Phase::Session;
                connect(out, &self.play);
                command(out, 0, "createStream", TXN_CREATE_STREAM, vec![]);
                self.parser.feed(&rest, parsed).map_err(|e| e.to_string())?;
            }
            Phase::Session => self.parser.feed(data, parsed).map_err(|e| e.to_string())?,
        }
        for msg in &parsed[first..] {
            if let Parsed::Control { type_id, body } = msg {
                self.handle_control(*type_id, body, now_ns, out)?;
            }
        }
        // Acknowledgement once a window's worth arrived. RTMP 1.0 §5.4.3.
        if self.ack_window > 0 && self.unacked >= self.ack_window {
            self.unacked = 0;
            let received = self.received.to_be_bytes();
            encode_message(out, CSID_CONTROL, 0, ACKNOWLEDGEMENT, 0, &received, 128);
        }
        Ok(())
    }

    fn handle_control(
        &mut self,
        type_id: u8,
        body: &[u8],
        now_ns: u64,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        match type_id {
            WINDOW_ACK_SIZE if body.len() >= 4 => {
                self.ack_window = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            }
            // User control: answer PingRequest (6) with PingResponse (7). RTMP 1.0 §7.1.7.
            USER_CONTROL if body.len() >= 6 && body[..2] == [0, 6] => {
                let mut pong = [0u8; 6];
                pong[1] = 7;
                pong[2..].copy_from_slice(&body[2..6]);
                encode_message(out, CSID_CONTROL, 0, USER_CONTROL, 0, &pong, 128);
            }
            COMMAND_AMF0 => {
                let Ok(cmd) = Command::decode(body, &AmfLimits::default()) else {
                    return Ok(());
                };
                match cmd.name.as_str() {
                    "_result" if cmd.transaction_id == TXN_CREATE_STREAM => {
                        let id = cmd.arg(0).and_then(Value::as_number).unwrap_or(1.0) as u32;
                        let args =
                            vec![Value::String(self.play.stream.clone()), Value::Number(-1.0)];
                        command(out, id, "play", TXN_PLAY, args);
                        self.play_sent_ns = now_ns;
                    }
                    "_error" => return Err(format!("server error: {:?}", cmd.arg(0))),
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}
