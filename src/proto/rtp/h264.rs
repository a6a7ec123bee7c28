//! H.264 RTP depacketiser (RFC 6184, non-interleaved mode): single NAL unit packets (types 1–23),
//! STAP-A (24) and FU-A (28) into access units.
//!
//! An access unit ends at the marker bit (RFC 6184 §5.1) or when the RTP timestamp changes.
//! Anything broken is dropped and counted, never guessed at: an FU-A without its start fragment, a
//! sequence gap inside a fragmented NAL, a STAP-A whose lengths overrun the packet, and any access
//! unit that a reported loss ([`H264Depacketizer::handle_loss`]) may have touched.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::packet::RtpPacket;

/// NAL unit type of an aggregation packet (RFC 6184 §5.7.1).
pub const NAL_STAP_A: u8 = 24;
/// NAL unit type of a fragmentation unit (RFC 6184 §5.8).
pub const NAL_FU_A: u8 = 28;

/// Size limits for one access unit; checked before any buffer grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepacketizerLimits {
    /// Bytes of NAL data in one access unit, at most.
    pub max_access_unit: usize,
    /// NAL units in one access unit, at most.
    pub max_nals: usize,
}

impl Default for DepacketizerLimits {
    fn default() -> Self {
        DepacketizerLimits {
            max_access_unit: 8 << 20,
            max_nals: 1024,
        }
    }
}

/// One coded picture: NAL units without start codes or length prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP timestamp (90 kHz).
    pub timestamp: u32,
    pub nals: Vec<Bytes>,
}

/// Why a packet or an access unit was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    #[error("empty RTP payload")]
    EmptyPayload,
    #[error("unsupported NAL unit type {nal_type} (STAP-B, MTAP, FU-B or reserved)")]
    UnsupportedNalType { nal_type: u8 },
    #[error("STAP-A unit length {len} overruns the {remaining} bytes left in the packet")]
    StapOverrun { len: usize, remaining: usize },
    #[error("FU-A fragment without a start fragment")]
    FuWithoutStart,
    #[error("FU-A with both start and end bits set")]
    FuStartAndEnd,
    #[error("sequence gap inside a fragmented NAL unit")]
    FuSequenceGap,
    #[error("access unit exceeds {max} bytes")]
    AccessUnitTooLarge { max: usize },
    #[error("access unit exceeds {max} NAL units")]
    TooManyNals { max: usize },
}

/// Counters, snapshotted by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    pub access_units: u64,
    /// Packets refused (any [`H264Error`]).
    pub packets_dropped: u64,
    /// FU-A fragments that arrived without their start fragment.
    pub fu_without_start: u64,
    /// Access units discarded because of a loss or a refused packet.
    pub access_units_dropped: u64,
}

#[derive(Debug)]
struct Fragment {
    buf: BytesMut,
    last_seq: u16,
}

/// Reassembles access units from in-order RTP packets of one H.264 stream.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    limits: DepacketizerLimits,
    timestamp: Option<u32>,
    nals: Vec<Bytes>,
    size: usize,
    fragment: Option<Fragment>,
    /// The access unit being built lost a piece: drop it when it completes.
    broken: bool,
    ready: VecDeque<AccessUnit>,
    stats: DepacketizerStats,
}

impl H264Depacketizer {
    pub fn new(limits: DepacketizerLimits) -> Self {
        H264Depacketizer {
            limits,
            ..Self::default()
        }
    }

    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Packets were lost before the next one: the access unit in progress (and the next one, if
    /// the loss was its beginning) cannot be trusted.
    pub fn handle_loss(&mut self) {
        self.fragment = None;
        self.broken = true;
    }

    /// Feeds one packet, in sequence order. Completed access units are queued for
    /// [`poll_access_unit`](Self::poll_access_unit). An error means the packet was dropped (and
    /// the access unit it belonged to will be); it is never fatal.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<(), H264Error> {
        if self.timestamp.is_some_and(|ts| ts != packet.timestamp) {
            // RFC 6184 §5.1: a new timestamp starts a new access unit even if the marker was lost.
            self.finish();
        }
        self.timestamp = Some(packet.timestamp);
        let result = self.push_payload(packet);
        if let Err(err) = result {
            self.stats.packets_dropped += 1;
            if err == H264Error::FuWithoutStart {
                self.stats.fu_without_start += 1;
            }
            self.fragment = None;
            self.broken = true;
        }
        if packet.marker {
            self.finish();
        }
        result
    }

    /// The next complete access unit.
    pub fn poll_access_unit(&mut self) -> Option<AccessUnit> {
        self.ready.pop_front()
    }

    fn push_payload(&mut self, packet: &RtpPacket) -> Result<(), H264Error> {
        let payload = &packet.payload;
        let &header = payload.first().ok_or(H264Error::EmptyPayload)?;
        let nal_type = header & 0x1f;
        if nal_type != NAL_FU_A && self.fragment.take().is_some() {
            // The fragmented NAL never got its end: whatever follows belongs to a broken unit.
            self.broken = true;
        }
        match nal_type {
            1..=23 => self.add_nal(payload.clone()),
            NAL_STAP_A => self.push_stap_a(payload),
            NAL_FU_A => self.push_fu_a(packet),
            _ => Err(H264Error::UnsupportedNalType { nal_type }),
        }
    }

    /// RFC 6184 §5.7.1: STAP-A header, then (16-bit size, NAL unit) repeated.
    fn push_stap_a(&mut self, payload: &Bytes) -> Result<(), H264Error> {
        // Validate every length before adding anything, so a bad packet adds nothing.
        let mut units = Vec::new();
        let mut pos = 1usize;
        while pos < payload.len() {
            let size_bytes = payload.get(pos..pos + 2).ok_or(H264Error::StapOverrun {
                len: 2,
                remaining: payload.len() - pos,
            })?;
            let len = usize::from(u16::from_be_bytes([size_bytes[0], size_bytes[1]]));
            let start = pos + 2;
            let remaining = payload.len() - start;
            if len == 0 || len > remaining {
                return Err(H264Error::StapOverrun { len, remaining });
            }
            units.push(payload.slice(start..start + len));
            pos = start + len;
        }
        for unit in units {
            self.add_nal(unit)?;
        }
        Ok(())
    }

    /// RFC 6184 §5.8: FU indicator (F, NRI, type 28), FU header (S, E, R, NAL type).
    fn push_fu_a(&mut self, packet: &RtpPacket) -> Result<(), H264Error> {
        let payload = &packet.payload;
        let (Some(&indicator), Some(&fu_header)) = (payload.first(), payload.get(1)) else {
            return Err(H264Error::EmptyPayload);
        };
        let data = payload.get(2..).unwrap_or_default();
        let start = fu_header & 0x80 != 0;
        let end = fu_header & 0x40 != 0;
        if start && end {
            return Err(H264Error::FuStartAndEnd);
        }
        if start {
            if self.fragment.take().is_some() {
                self.broken = true;
            }
            self.check_size(1 + data.len())?;
            let mut buf = BytesMut::with_capacity(data.len() * 8 + 1);
            buf.extend_from_slice(&[(indicator & 0xe0) | (fu_header & 0x1f)]);
            buf.extend_from_slice(data);
            self.fragment = Some(Fragment {
                buf,
                last_seq: packet.sequence,
            });
            return Ok(());
        }
        let Some(fragment) = self.fragment.as_ref() else {
            return Err(H264Error::FuWithoutStart);
        };
        if packet.sequence != fragment.last_seq.wrapping_add(1) {
            return Err(H264Error::FuSequenceGap);
        }
        let total = fragment.buf.len() + data.len();
        self.check_size(total)?;
        let Some(fragment) = self.fragment.as_mut() else {
            return Err(H264Error::FuWithoutStart);
        };
        fragment.buf.extend_from_slice(data);
        fragment.last_seq = packet.sequence;
        if end && let Some(fragment) = self.fragment.take() {
            return self.add_nal(fragment.buf.freeze());
        }
        Ok(())
    }

    fn check_size(&self, extra: usize) -> Result<(), H264Error> {
        let max = self.limits.max_access_unit;
        match self.size.checked_add(extra) {
            Some(total) if total <= max => Ok(()),
            _ => Err(H264Error::AccessUnitTooLarge { max }),
        }
    }

    fn add_nal(&mut self, nal: Bytes) -> Result<(), H264Error> {
        self.check_size(nal.len())?;
        if self.nals.len() >= self.limits.max_nals {
            return Err(H264Error::TooManyNals {
                max: self.limits.max_nals,
            });
        }
        self.size += nal.len();
        self.nals.push(nal);
        Ok(())
    }

    /// Ends the access unit in progress: queues it if intact, drops it otherwise.
    fn finish(&mut self) {
        let nals = std::mem::take(&mut self.nals);
        let timestamp = self.timestamp.take();
        self.size = 0;
        if self.fragment.take().is_some() {
            self.broken = true;
        }
        if std::mem::take(&mut self.broken) {
            self.stats.access_units_dropped += 1;
            return;
        }
        if let Some(timestamp) = timestamp
            && !nals.is_empty()
        {
            self.stats.access_units += 1;
            self.ready.push_back(AccessUnit { timestamp, nals });
        }
    }
}

#[cfg(fuzzing)]
/// Fuzz harness: feeds `data` as a sequence of length-prefixed RTP payloads.
pub fn fuzz_depacketize(data: &[u8]) {
    let mut depack = H264Depacketizer::new(DepacketizerLimits {
        max_access_unit: 1 << 16,
        max_nals: 64,
    });
    let mut rest = data;
    let mut seq = 0u16;
    while let [len, flags, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        let packet = RtpPacket {
            marker: flags & 1 != 0,
            payload_type: 96,
            sequence: seq.wrapping_add(u16::from(flags >> 6)),
            timestamp: u32::from(flags >> 4 & 3),
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        };
        seq = packet.sequence.wrapping_add(1);
        if flags & 2 != 0 {
            depack.handle_loss();
        }
        let _ = depack.push(&packet);
        while depack.poll_access_unit().is_some() {}
        rest = next;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::proto::rtp::packetize::H264Packetizer;
    use proptest::prelude::*;

    fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn depacketize(datagrams: &[Bytes]) -> (Vec<AccessUnit>, H264Depacketizer) {
        let mut d = H264Depacketizer::new(DepacketizerLimits::default());
        for dg in datagrams {
            let _ = d.push(&RtpPacket::parse(dg.clone()).unwrap());
        }
        let aus = std::iter::from_fn(|| d.poll_access_unit()).collect();
        (aus, d)
    }

    #[test]
    fn fu_a_without_start_is_dropped_and_counted() {
        let mut d = H264Depacketizer::new(DepacketizerLimits::default());
        assert_eq!(
            d.push(&rtp(1, 0, false, &[0x7c, 0x05, 1, 2])),
            Err(H264Error::FuWithoutStart)
        );
        assert!(d.push(&rtp(2, 0, true, &[0x7c, 0x45, 3])).is_err());
        assert!(d.poll_access_unit().is_none());
        assert_eq!(d.stats().fu_without_start, 2);
        // The next access unit is clean.
        d.push(&rtp(3, 3000, true, &[0x41, 9])).unwrap();
        assert_eq!(
            d.poll_access_unit().unwrap().nals,
            vec![Bytes::from_static(&[0x41, 9])]
        );
    }

    #[test]
    fn stap_a_length_overrun_is_refused() {
        let mut d = H264Depacketizer::new(DepacketizerLimits::default());
        let err = d.push(&rtp(1, 0, true, &[0x18, 0, 2, 0x67, 1, 0, 9, 0x68]));
        assert_eq!(
            err,
            Err(H264Error::StapOverrun {
                len: 9,
                remaining: 1
            })
        );
        assert!(d.poll_access_unit().is_none());
        d.push(&rtp(2, 1, true, &[0x18, 0, 2, 0x67, 1, 0, 1, 0x68]))
            .unwrap();
        let au = d.poll_access_unit().unwrap();
        assert_eq!(
            au.nals,
            vec![Bytes::from_static(&[0x67, 1]), Bytes::from_static(&[0x68])]
        );
    }

    #[test]
    fn sequence_gap_mid_fu_discards_unit() {
        let mut d = H264Depacketizer::new(DepacketizerLimits::default());
        d.push(&rtp(1, 0, false, &[0x7c, 0x85, 1])).unwrap();
        assert_eq!(
            d.push(&rtp(3, 0, true, &[0x7c, 0x45, 3])),
            Err(H264Error::FuSequenceGap)
        );
        assert!(d.poll_access_unit().is_none());
        assert_eq!(d.stats().access_units_dropped, 1);
    }

    #[test]
    fn timestamp_change_ends_unit_without_marker() {
        let mut d = H264Depacketizer::new(DepacketizerLimits::default());
        d.push(&rtp(1, 0, false, &[0x41, 1])).unwrap();
        d.push(&rtp(2, 3000, true, &[0x41, 2])).unwrap();
        assert_eq!(d.poll_access_unit().unwrap().timestamp, 0);
        assert_eq!(d.poll_access_unit().unwrap().timestamp, 3000);
    }

    #[test]
    fn loss_drops_the_unit_in_progress() {
        let mut d = H264Depacketizer::new(DepacketizerLimits::default());
        d.push(&rtp(1, 0, false, &[0x41, 1])).unwrap();
        d.handle_loss();
        d.push(&rtp(3, 0, true, &[0x41, 2])).unwrap();
        assert!(d.poll_access_unit().is_none());
        d.push(&rtp(4, 3000, true, &[0x41, 3])).unwrap();
        assert!(d.poll_access_unit().is_some());
    }

    #[test]
    fn oversized_access_unit_is_refused() {
        let mut d = H264Depacketizer::new(DepacketizerLimits {
            max_access_unit: 10,
            max_nals: 4,
        });
        assert!(d.push(&rtp(1, 0, true, &[0x41; 11])).is_err());
        assert!(d.poll_access_unit().is_none());
    }

    proptest! {
        #[test]
        fn packetizer_round_trip(
            nals in prop::collection::vec(
                (1u8..=23, prop::collection::vec(any::<u8>(), 0..5000)), 1..6),
            mtu in 64usize..1500,
            seq in any::<u16>(),
        ) {
            let nals: Vec<Vec<u8>> = nals
                .into_iter()
                .map(|(t, mut body)| { body.insert(0, 0x60 | t); body })
                .collect();
            let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
            let mut p = H264Packetizer::new(7, 96, mtu, seq);
            let datagrams = p.packetize(90_000, &refs);
            prop_assert!(datagrams.iter().all(|d| d.len() <= mtu));
            let (aus, _) = depacketize(&datagrams);
            prop_assert_eq!(aus.len(), 1);
            let got: Vec<&[u8]> = aus[0].nals.iter().map(|b| &b[..]).collect();
            prop_assert_eq!(got, refs);
        }
    }
}
