//! RTP fixed header parsing and building (RFC 3550 §5.1) and FTL's datagram classification.
//!
//! FTL multiplexes media, pings and sender reports on one UDP port and carries payload types above
//! 127 by setting the marker bit, so the second byte of a datagram is read whole: 250 is a ping,
//! 200 a sender report (which is also RTCP's SR type, RFC 5761 §4), anything else is RTP media.
//! Parsing never copies: the payload is a slice of the datagram's `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};

use super::RtpError;
use super::rtcp::{SenderReport, parse_sender_report};

/// Length of the RTP fixed header (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// The second byte of an FTL ping datagram: marker bit + payload type 122 (= PT 250).
pub const FTL_PING_BYTE: u8 = 250;
/// The second byte of an FTL sender report: marker bit + payload type 72 (= PT 200, RTCP SR).
pub const FTL_SENDER_REPORT_BYTE: u8 = 200;
/// Payload type 122 without the marker bit: some clients send it empty; it is ignored.
pub const FTL_EMPTY_PT: u8 = 122;

/// One RTP packet with its payload borrowed (refcounted) from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload with CSRCs, header extension and padding removed.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses an RTP packet. RFC 3550 §5.1 (fixed header), §5.3.1 (extension), padding per §5.1 `P`.
    pub fn parse(datagram: Bytes) -> Result<Self, RtpError> {
        let len = datagram.len();
        let header: [u8; RTP_HEADER_LEN] = match datagram.get(..RTP_HEADER_LEN) {
            Some(h) => h.try_into().map_err(|_| RtpError::Truncated { len })?,
            None => return Err(RtpError::Truncated { len }),
        };
        let version = header[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version });
        }
        let padding = header[0] & 0x20 != 0;
        let extension = header[0] & 0x10 != 0;
        let csrc_count = usize::from(header[0] & 0x0f);
        let marker = header[1] & 0x80 != 0;
        let payload_type = header[1] & 0x7f;
        let sequence = u16::from_be_bytes([header[2], header[3]]);
        let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);

        // CSRC list: 4 bytes each (RFC 3550 §5.1, CC field).
        let mut start = RTP_HEADER_LEN + 4 * csrc_count;
        if start > len {
            return Err(RtpError::HeaderOverrun { needed: start, len });
        }
        if extension {
            // RFC 3550 §5.3.1: 16-bit profile id, 16-bit length in 32-bit words.
            let ext = datagram
                .get(start..start + 4)
                .ok_or(RtpError::HeaderOverrun {
                    needed: start + 4,
                    len,
                })?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start = start + 4 + 4 * words;
            if start > len {
                return Err(RtpError::HeaderOverrun { needed: start, len });
            }
        }
        let mut end = len;
        if padding {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let count = usize::from(datagram.last().copied().unwrap_or(0));
            if count == 0 || count > end - start {
                return Err(RtpError::BadPadding {
                    count,
                    available: end - start,
                });
            }
            end -= count;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            payload: datagram.slice(start..end),
        })
    }

    /// Serialises the packet with a 12-byte header (no CSRCs, extension or padding).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(RTP_HEADER_LEN + self.payload.len());
        write_header(
            &mut out,
            self.marker,
            self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
        );
        out.put_slice(&self.payload);
        out.freeze()
    }
}

/// Writes a 12-byte RTP header (version 2, no padding, extension or CSRCs).
pub fn write_header(
    out: &mut BytesMut,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out.put_u8(0x80);
    out.put_u8((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.put_u16(sequence);
    out.put_u32(timestamp);
    out.put_u32(ssrc);
}

/// What an FTL media datagram is, decided from its first two bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FtlDatagram {
    /// RTP media (H.264 or Opus, routed by SSRC and payload type).
    Media(RtpPacket),
    /// PT 250: a ping the server echoes unchanged so the client measures RTT.
    Ping,
    /// PT 200: an RTCP sender report.
    SenderReport(SenderReport),
    /// An empty PT 122 packet some clients send: ignored.
    Empty,
}

/// Classifies and parses one datagram received on an FTL media port.
pub fn classify_datagram(datagram: Bytes) -> Result<FtlDatagram, RtpError> {
    let (Some(&first), Some(&second)) = (datagram.first(), datagram.get(1)) else {
        return Err(RtpError::Truncated {
            len: datagram.len(),
        });
    };
    let version = first >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion { version });
    }
    match second {
        FTL_PING_BYTE => Ok(FtlDatagram::Ping),
        FTL_SENDER_REPORT_BYTE => Ok(FtlDatagram::SenderReport(parse_sender_report(&datagram)?)),
        _ => {
            let packet = RtpPacket::parse(datagram)?;
            if packet.payload_type == FTL_EMPTY_PT && packet.payload.is_empty() {
                Ok(FtlDatagram::Empty)
            } else {
                Ok(FtlDatagram::Media(packet))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sample() -> RtpPacket {
        RtpPacket {
            marker: true,
            payload_type: 96,
            sequence: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 78,
            payload: Bytes::from_static(b"\x65abc"),
        }
    }

    #[test]
    fn header_round_trips() {
        let p = sample();
        assert_eq!(RtpPacket::parse(p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn truncated_and_bad_version_are_errors() {
        assert_eq!(
            RtpPacket::parse(Bytes::from_static(&[0x80, 96, 0])),
            Err(RtpError::Truncated { len: 3 })
        );
        let mut raw = sample().to_bytes().to_vec();
        raw[0] = 0x40;
        assert_eq!(
            RtpPacket::parse(Bytes::from(raw)),
            Err(RtpError::BadVersion { version: 1 })
        );
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        let mut raw = vec![0x80 | 0x20 | 0x10 | 1, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        raw.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        raw.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one-word extension
        raw.extend_from_slice(b"payload");
        raw.extend_from_slice(&[0, 0, 3]); // 3 padding octets
        let p = RtpPacket::parse(Bytes::from(raw)).unwrap();
        assert_eq!(&p.payload[..], b"payload");
        assert_eq!(p.ssrc, 3);
    }

    #[test]
    fn overruns_are_errors() {
        // CC = 15 but no CSRCs present.
        let raw = vec![0x8f, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert!(matches!(
            RtpPacket::parse(Bytes::from(raw)),
            Err(RtpError::HeaderOverrun { .. })
        ));
        // Extension header claiming 0xffff words.
        let raw = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0xff, 0xff];
        assert!(matches!(
            RtpPacket::parse(Bytes::from(raw)),
            Err(RtpError::HeaderOverrun { .. })
        ));
        // Padding count larger than the payload.
        let raw = vec![0xa0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 9];
        assert!(matches!(
            RtpPacket::parse(Bytes::from(raw)),
            Err(RtpError::BadPadding { .. })
        ));
    }

    #[test]
    fn ftl_high_payload_types_are_classified() {
        let ping = Bytes::from_static(&[0x80, 0xfa, 0, 1, 0, 0, 0, 0, 0, 0, 0, 77, 1, 2, 3, 4]);
        assert_eq!(classify_datagram(ping).unwrap(), FtlDatagram::Ping);
        let empty = Bytes::from_static(&[0x80, 122, 0, 1, 0, 0, 0, 0, 0, 0, 0, 77]);
        assert_eq!(classify_datagram(empty).unwrap(), FtlDatagram::Empty);
        let media = classify_datagram(sample().to_bytes()).unwrap();
        assert!(matches!(media, FtlDatagram::Media(p) if p.payload_type == 96));
    }
}
