//! The two RTCP packets FTL uses: the sender report the client sends once a second per SSRC
//! (RFC 3550 §6.4.1) and the generic NACK the server sends for lost packets (RFC 4585 §6.2.1).
//!
//! The NACK builder packs sequence numbers into PID + BLP entries; the parser is for the load
//! generator's publisher, which answers NACKs from its retransmission store.

use bytes::{BufMut, Bytes, BytesMut};

use super::RtpError;

/// RTCP packet type of a sender report (RFC 3550 §12.1).
pub const RTCP_SR: u8 = 200;
/// RTCP packet type of a transport-layer feedback message (RFC 4585 §6.1).
pub const RTCP_RTPFB: u8 = 205;
/// FMT of the generic NACK within RTPFB (RFC 4585 §6.2.1).
pub const NACK_FMT: u8 = 1;
/// Most FCI entries one NACK packet carries: keeps a NACK well inside one MTU.
pub const MAX_NACK_ENTRIES: usize = 64;

/// An RTCP sender report's sender info (RFC 3550 §6.4.1); report blocks are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// 64-bit NTP timestamp: seconds in the high word, fraction in the low word.
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Parses a sender report. RFC 3550 §6.4.1: header, SSRC, NTP (8), RTP ts, packet and octet counts.
pub fn parse_sender_report(buf: &[u8]) -> Result<SenderReport, RtpError> {
    let len = buf.len();
    let b: &[u8; 28] = buf
        .get(..28)
        .and_then(|s| s.try_into().ok())
        .ok_or(RtpError::Truncated { len })?;
    let version = b[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion { version });
    }
    if b[1] != RTCP_SR {
        return Err(RtpError::UnexpectedRtcpType { packet_type: b[1] });
    }
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Ok(SenderReport {
        ssrc: word(4),
        ntp: (u64::from(word(8)) << 32) | u64::from(word(12)),
        rtp_timestamp: word(16),
        packet_count: word(20),
        octet_count: word(24),
    })
}

/// Builds a generic NACK (RFC 4585 §6.2.1) for `lost`, which must be sorted in RTP order and
/// hold at most [`MAX_NACK_ENTRIES`] entries' worth of losses; extra entries are not written.
/// Returns `None` when `lost` is empty.
pub fn build_nack(sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) -> Option<Bytes> {
    let mut entries: Vec<(u16, u16)> = Vec::new();
    for &seq in lost {
        if let Some((pid, blp)) = entries.last_mut() {
            let offset = seq.wrapping_sub(*pid);
            if (1..=16).contains(&offset) {
                *blp |= 1 << (offset - 1);
                continue;
            }
        }
        if entries.len() == MAX_NACK_ENTRIES {
            break;
        }
        entries.push((seq, 0));
    }
    if entries.is_empty() {
        return None;
    }
    // Length in 32-bit words minus one: header + 2 SSRCs = 3 words, one word per FCI entry.
    let words = 2 + entries.len();
    let mut out = BytesMut::with_capacity(4 * (words + 1));
    out.put_u8(0x80 | NACK_FMT);
    out.put_u8(RTCP_RTPFB);
    out.put_u16(u16::try_from(words).unwrap_or(u16::MAX));
    out.put_u32(sender_ssrc);
    out.put_u32(media_ssrc);
    for (pid, blp) in entries {
        out.put_u16(pid);
        out.put_u16(blp);
    }
    Some(out.freeze())
}

/// A parsed generic NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    /// Every sequence number requested, in FCI order.
    pub lost: Vec<u16>,
}

/// Parses a generic NACK (RFC 4585 §6.2.1). The length field is checked against the buffer before
/// anything is allocated.
pub fn parse_nack(buf: &[u8]) -> Result<Nack, RtpError> {
    let len = buf.len();
    let head = buf.get(..12).ok_or(RtpError::Truncated { len })?;
    let version = head[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion { version });
    }
    if head[1] != RTCP_RTPFB || head[0] & 0x1f != NACK_FMT {
        return Err(RtpError::UnexpectedRtcpType {
            packet_type: head[1],
        });
    }
    let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let total = 4 * (words + 1);
    let body = buf
        .get(12..total)
        .ok_or(RtpError::HeaderOverrun { needed: total, len })?;
    let sender_ssrc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let media_ssrc = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let mut lost = Vec::with_capacity(body.len() / 4 * 17);
    for fci in body.chunks_exact(4) {
        let pid = u16::from_be_bytes([fci[0], fci[1]]);
        let blp = u16::from_be_bytes([fci[2], fci[3]]);
        lost.push(pid);
        for bit in 0..16u16 {
            if blp & (1 << bit) != 0 {
                lost.push(pid.wrapping_add(bit + 1));
            }
        }
    }
    Ok(Nack {
        sender_ssrc,
        media_ssrc,
        lost,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn nack_packs_pid_and_blp() {
        let nack = build_nack(1, 78, &[100, 101, 116, 117, 200]).unwrap();
        // header, 2 SSRCs, entries (100, bits for 101 and 116), (117, 0), (200, 0)
        assert_eq!(&nack[..4], &[0x81, 205, 0, 5]);
        assert_eq!(&nack[12..16], &[0, 100, 0x80, 0x01]);
        let parsed = parse_nack(&nack).unwrap();
        assert_eq!(parsed.media_ssrc, 78);
        assert_eq!(parsed.lost, vec![100, 101, 116, 117, 200]);
    }

    #[test]
    fn nack_across_rollover() {
        let nack = build_nack(0, 5, &[65534, 65535, 0, 1]).unwrap();
        assert_eq!(nack.len(), 16);
        assert_eq!(parse_nack(&nack).unwrap().lost, vec![65534, 65535, 0, 1]);
    }

    #[test]
    fn nack_length_is_checked() {
        let mut nack = build_nack(0, 5, &[1]).unwrap().to_vec();
        nack[3] = 50;
        assert!(matches!(
            parse_nack(&nack),
            Err(RtpError::HeaderOverrun { .. })
        ));
        assert!(build_nack(0, 5, &[]).is_none());
    }

    #[test]
    fn sender_report_parses() {
        let mut sr = vec![0x80, 200, 0, 6];
        for w in [77u32, 1, 2, 90_000, 10, 1000] {
            sr.extend_from_slice(&w.to_be_bytes());
        }
        let r = parse_sender_report(&sr).unwrap();
        assert_eq!(r.ssrc, 77);
        assert_eq!(r.ntp, (1 << 32) | 2);
        assert_eq!(r.rtp_timestamp, 90_000);
        assert!(parse_sender_report(&sr[..27]).is_err());
    }
}
