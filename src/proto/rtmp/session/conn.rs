//! State both session roles share: the chunk decoder, the outgoing buffer, the outgoing chunk
//! size and acknowledgement accounting (RTMP 1.0 §5.4.3–§5.4.4).

use bytes::{Bytes, BytesMut};

use super::SessionError;
use crate::proto::amf0::{self, Command, Value};
use crate::proto::rtmp::chunk::{ChunkDecoder, DEFAULT_CHUNK_SIZE, Message, encode_message};
use crate::proto::rtmp::csid;
use crate::proto::rtmp::message::{ControlMessage, UserControl, type_id};

#[derive(Debug)]
pub(super) struct Conn {
    pub decoder: ChunkDecoder,
    out: BytesMut,
    out_chunk_size: u32,
    /// Bytes received after the handshake, wrapping as the ack sequence number does.
    received: u32,
    last_ack: u32,
    /// The peer's Window Acknowledgement Size; 0 until it sends one.
    peer_window: u32,
}

impl Conn {
    pub fn new(limits: crate::proto::rtmp::chunk::ChunkLimits) -> Self {
        Conn {
            decoder: ChunkDecoder::new(limits),
            out: BytesMut::new(),
            out_chunk_size: DEFAULT_CHUNK_SIZE,
            received: 0,
            last_ack: 0,
            peer_window: 0,
        }
    }

    pub fn out_buf(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    pub fn out_chunk_size(&self) -> u32 {
        self.out_chunk_size
    }

    /// Hands out everything queued. The whole buffer goes, spare capacity included: `split()`
    /// would keep the handshake's 3 KiB reservation alive for the connection's lifetime, which
    /// at thousands of players is most of their memory.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out).freeze())
    }

    /// Decodes the next message, counting the bytes consumed towards acknowledgement.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, SessionError> {
        let before = buf.len();
        let msg = self.decoder.decode(buf)?;
        let consumed = u32::try_from(before.saturating_sub(buf.len())).unwrap_or(u32::MAX);
        self.received = self.received.wrapping_add(consumed);
        // RTMP 1.0 §5.4.3: acknowledge once a window's worth has arrived since the last ack.
        if self.peer_window > 0 && self.received.wrapping_sub(self.last_ack) >= self.peer_window {
            self.last_ack = self.received;
            self.send_control(ControlMessage::Acknowledgement {
                sequence: self.received,
            });
        }
        Ok(msg)
    }

    pub fn send_control(&mut self, m: ControlMessage) {
        m.write(&mut self.out, self.out_chunk_size as usize);
    }

    /// Announces and switches to a new outgoing chunk size.
    pub fn set_out_chunk_size(&mut self, size: u32) {
        let size = size.clamp(1, crate::proto::rtmp::chunk::MAX_CHUNK_SIZE);
        self.send_control(ControlMessage::SetChunkSize(size));
        self.out_chunk_size = size;
    }

    pub fn send_command(&mut self, stream_id: u32, cmd: &Command) {
        let mut body = BytesMut::new();
        cmd.encode(&mut body);
        self.send_raw(csid::COMMAND, 0, type_id::AMF0_COMMAND, stream_id, &body);
    }

    /// Sends an AMF0 data message (type 18) made of `values`.
    pub fn send_data(&mut self, stream_id: u32, values: &[Value]) {
        let mut body = BytesMut::new();
        for v in values {
            amf0::encode(v, &mut body);
        }
        self.send_raw(csid::DATA, 0, type_id::AMF0_DATA, stream_id, &body);
    }

    pub fn send_raw(&mut self, csid: u32, ts: u32, ty: u8, stream_id: u32, body: &[u8]) {
        encode_message(
            &mut self.out,
            csid,
            ts,
            ty,
            stream_id,
            body,
            self.out_chunk_size as usize,
        );
    }

    /// Handles the protocol control and user control messages both roles treat alike.
    /// Returns the parsed message, or `None` when `msg` is not a control message.
    pub fn handle_control(
        &mut self,
        msg: &Message,
    ) -> Result<Option<ControlMessage>, SessionError> {
        let Some(control) = ControlMessage::parse(msg.type_id, &msg.payload)? else {
            return Ok(None);
        };
        match control {
            ControlMessage::WindowAckSize(size) => self.peer_window = size,
            ControlMessage::UserControl(UserControl::PingRequest(t)) => {
                self.send_control(ControlMessage::UserControl(UserControl::PingResponse(t)));
            }
            // Set Chunk Size and Abort were applied by the decoder; the rest is advisory.
            _ => {}
        }
        Ok(Some(control))
    }
}

/// Decodes an AMF0 command body (type 20, or type 17 whose first byte is an AMF3 marker).
pub(super) fn decode_command(
    msg: &Message,
    limits: &amf0::Limits,
) -> Result<Option<Command>, SessionError> {
    let body = match msg.type_id {
        type_id::AMF0_COMMAND => &msg.payload[..],
        type_id::AMF3_COMMAND => msg.payload.get(1..).unwrap_or_default(),
        _ => return Ok(None),
    };
    Command::decode(body, limits)
        .map(Some)
        .map_err(|source| SessionError::MalformedAmf0 {
            what: "command",
            source,
        })
}

/// An `onStatus` command (RTMP 1.0 §7.2.2): transaction 0, null command object, info object.
pub(super) fn on_status(level: &str, code: &str, description: &str) -> Command {
    Command {
        name: "onStatus".into(),
        transaction_id: 0.0,
        command_object: Value::Null,
        args: vec![Value::object([
            ("level", Value::string(level)),
            ("code", Value::string(code)),
            ("description", Value::string(description)),
        ])],
    }
}
