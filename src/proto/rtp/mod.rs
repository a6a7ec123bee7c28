//! RTP media path for FTL: RTP/RTCP wire formats, the per-SSRC reorder window with NACKs, the
//! H.264 (RFC 6184) depacketiser and packetiser, Opus → Enhanced RTMP mapping and RTP clock
//! unwrapping. Everything is sans-IO: datagrams and `Instant`s come in, packets and frames go out.
//! Socket handling, source-address latching and deadlines are the driver's job.

pub mod avc_frames;
pub mod clock;
pub mod h264;
pub mod jitter;
pub mod opus;
pub mod packet;
pub mod packetize;
pub mod rtcp;

pub use jitter::{Ready, ReorderBuffer, ReorderConfig, ReorderStats};
pub use packet::{FtlDatagram, RtpPacket, classify_datagram};

/// Why an RTP or RTCP datagram was refused. Every variant is the peer's fault and per-datagram:
/// the session drops the datagram, counts it and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("datagram of {len} bytes is too short")]
    Truncated { len: usize },
    #[error("RTP version {version}, expected 2")]
    BadVersion { version: u8 },
    #[error("header needs {needed} bytes but the datagram has {len}")]
    HeaderOverrun { needed: usize, len: usize },
    #[error("padding count {count} exceeds the {available} payload bytes")]
    BadPadding { count: usize, available: usize },
    #[error("unexpected RTCP packet type {packet_type}")]
    UnexpectedRtcpType { packet_type: u8 },
    #[error("SSRC {ssrc} was not announced")]
    UnknownSsrc { ssrc: u32 },
    #[error("payload type {payload_type} does not match the announced one for SSRC {ssrc}")]
    PayloadTypeMismatch { ssrc: u32, payload_type: u8 },
}
