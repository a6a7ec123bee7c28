//! Message type ids, protocol control messages (RTMP 1.0 §5.4) and user control messages
//! (RTMP 1.0 §6.2, §7.1.7): parsing from message bodies and writing as chunked messages.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::chunk::encode_message;
use super::csid;

/// RTMP message type ids (RTMP 1.0 §5.4, §7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_COMMAND: u8 = 20;
}

/// User control event types (RTMP 1.0 §7.1.7).
mod event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// A user control event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// An event type we do not interpret (e.g. Flash's buffer empty/ready, 31/32).
    Other(u16),
}

/// A protocol control or user control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMessage {
    SetChunkSize(u32),
    Abort {
        csid: u32,
    },
    /// Bytes received so far (RTMP 1.0 §5.4.3).
    Acknowledgement {
        sequence: u32,
    },
    WindowAckSize(u32),
    /// `limit`: 0 hard, 1 soft, 2 dynamic (RTMP 1.0 §5.4.5).
    SetPeerBandwidth {
        size: u32,
        limit: u8,
    },
    UserControl(UserControl),
}

/// A control message whose body is too short for its type (peer error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("control message type {type_id} with a {len}-byte body")]
pub struct MalformedControl {
    pub type_id: u8,
    pub len: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

impl ControlMessage {
    /// Parses a control message body. `Ok(None)` when `type_id` is not a control type.
    pub fn parse(type_id: u8, body: &[u8]) -> Result<Option<ControlMessage>, MalformedControl> {
        let bad = MalformedControl {
            type_id,
            len: body.len(),
        };
        let word = u32_at(body, 0);
        let msg = match type_id {
            type_id::SET_CHUNK_SIZE => ControlMessage::SetChunkSize(word.ok_or(bad)?),
            type_id::ABORT => ControlMessage::Abort {
                csid: word.ok_or(bad)?,
            },
            type_id::ACKNOWLEDGEMENT => ControlMessage::Acknowledgement {
                sequence: word.ok_or(bad)?,
            },
            type_id::WINDOW_ACK_SIZE => ControlMessage::WindowAckSize(word.ok_or(bad)?),
            type_id::SET_PEER_BANDWIDTH => ControlMessage::SetPeerBandwidth {
                size: word.ok_or(bad.clone())?,
                limit: body.get(4).copied().ok_or(bad)?,
            },
            type_id::USER_CONTROL => {
                let kind = body
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or(bad.clone())?;
                let arg = u32_at(body, 2);
                let ev = match kind {
                    event::STREAM_BEGIN => UserControl::StreamBegin(arg.ok_or(bad)?),
                    event::STREAM_EOF => UserControl::StreamEof(arg.ok_or(bad)?),
                    event::STREAM_DRY => UserControl::StreamDry(arg.ok_or(bad)?),
                    event::SET_BUFFER_LENGTH => UserControl::SetBufferLength {
                        stream_id: arg.ok_or(bad.clone())?,
                        millis: u32_at(body, 6).ok_or(bad)?,
                    },
                    event::STREAM_IS_RECORDED => UserControl::StreamIsRecorded(arg.ok_or(bad)?),
                    event::PING_REQUEST => UserControl::PingRequest(arg.ok_or(bad)?),
                    event::PING_RESPONSE => UserControl::PingResponse(arg.ok_or(bad)?),
                    other => UserControl::Other(other),
                };
                ControlMessage::UserControl(ev)
            }
            _ => return Ok(None),
        };
        Ok(Some(msg))
    }

    /// Appends this message, chunked, on the protocol control chunk stream with message
    /// stream id 0 and timestamp 0.
    pub fn write(&self, out: &mut BytesMut, chunk_size: usize) {
        let mut body = [0u8; 10];
        let mut b = &mut body[..];
        let ty = match *self {
            ControlMessage::SetChunkSize(size) => {
                b.put_u32(size);
                type_id::SET_CHUNK_SIZE
            }
            ControlMessage::Abort { csid } => {
                b.put_u32(csid);
                type_id::ABORT
            }
            ControlMessage::Acknowledgement { sequence } => {
                b.put_u32(sequence);
                type_id::ACKNOWLEDGEMENT
            }
            ControlMessage::WindowAckSize(size) => {
                b.put_u32(size);
                type_id::WINDOW_ACK_SIZE
            }
            ControlMessage::SetPeerBandwidth { size, limit } => {
                b.put_u32(size);
                b.put_u8(limit);
                type_id::SET_PEER_BANDWIDTH
            }
            ControlMessage::UserControl(ev) => {
                let (kind, a, c) = match ev {
                    UserControl::StreamBegin(id) => (event::STREAM_BEGIN, id, None),
                    UserControl::StreamEof(id) => (event::STREAM_EOF, id, None),
                    UserControl::StreamDry(id) => (event::STREAM_DRY, id, None),
                    UserControl::SetBufferLength { stream_id, millis } => {
                        (event::SET_BUFFER_LENGTH, stream_id, Some(millis))
                    }
                    UserControl::StreamIsRecorded(id) => (event::STREAM_IS_RECORDED, id, None),
                    UserControl::PingRequest(t) => (event::PING_REQUEST, t, None),
                    UserControl::PingResponse(t) => (event::PING_RESPONSE, t, None),
                    UserControl::Other(kind) => (kind, 0, None),
                };
                b.put_u16(kind);
                b.put_u32(a);
                if let Some(c) = c {
                    b.put_u32(c);
                }
                type_id::USER_CONTROL
            }
        };
        let len = 10 - b.len();
        encode_message(
            out,
            csid::PROTOCOL_CONTROL,
            0,
            ty,
            0,
            body.get(..len).unwrap_or_default(),
            chunk_size,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::chunk::{ChunkDecoder, ChunkLimits};
    use super::*;

    #[test]
    fn control_messages_round_trip_through_chunks() {
        let all = [
            ControlMessage::SetChunkSize(4096),
            ControlMessage::Abort { csid: 4 },
            ControlMessage::Acknowledgement { sequence: 123 },
            ControlMessage::WindowAckSize(2_500_000),
            ControlMessage::SetPeerBandwidth {
                size: 2_500_000,
                limit: 2,
            },
            ControlMessage::UserControl(UserControl::StreamBegin(1)),
            ControlMessage::UserControl(UserControl::StreamEof(1)),
            ControlMessage::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            }),
            ControlMessage::UserControl(UserControl::PingRequest(77)),
            ControlMessage::UserControl(UserControl::PingResponse(77)),
        ];
        let mut wire = BytesMut::new();
        for m in &all {
            m.write(&mut wire, 128);
        }
        let mut d = ChunkDecoder::new(ChunkLimits::default());
        for m in &all {
            let msg = d.decode(&mut wire).unwrap().unwrap();
            assert_eq!(
                ControlMessage::parse(msg.type_id, &msg.payload).unwrap(),
                Some(*m)
            );
        }
    }

    #[test]
    fn short_control_bodies_are_rejected() {
        assert_eq!(
            ControlMessage::parse(type_id::WINDOW_ACK_SIZE, &[0, 1]),
            Err(MalformedControl { type_id: 5, len: 2 })
        );
        assert!(ControlMessage::parse(type_id::USER_CONTROL, &[0, 3, 0, 0, 0, 1]).is_err());
        assert_eq!(ControlMessage::parse(type_id::VIDEO, &[]), Ok(None));
    }
}
