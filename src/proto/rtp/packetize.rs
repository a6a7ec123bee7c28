//! Client-side RTP packetisers for the load generator's FTL publisher: H.264 (RFC 6184 single NAL
//! unit and FU-A packets), Opus (RFC 7587) and the retransmission store that answers NACKs.

use bytes::{BufMut, Bytes, BytesMut};

use super::h264::NAL_FU_A;
use super::packet::{RTP_HEADER_LEN, write_header};
use super::rtcp::Nack;

/// FTL's largest datagram (the reference client's MTU).
pub const FTL_MTU: usize = 1392;
/// Packets the reference client keeps per SSRC for retransmission.
pub const RETRANSMIT_CAPACITY: usize = 2048;

/// Splits an Annex-B byte stream (start codes `00 00 01` / `00 00 00 01`) into NAL units.
pub fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &(_, body)) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(stream.len(), |&(code, _)| code);
        // Trailing zeros belong to the next 4-byte start code (or are trailing_zero_8bits).
        while end > body && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > body {
            nals.push(&stream[body..end]);
        }
    }
    nals
}

/// Packetises H.264 access units for one SSRC.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    ssrc: u32,
    payload_type: u8,
    mtu: usize,
    sequence: u16,
}

impl H264Packetizer {
    /// `mtu` is the largest datagram; it is raised to at least 64 bytes.
    pub fn new(ssrc: u32, payload_type: u8, mtu: usize, first_sequence: u16) -> Self {
        H264Packetizer {
            ssrc,
            payload_type,
            mtu: mtu.max(64),
            sequence: first_sequence,
        }
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// One access unit given as NAL units (no start codes) → RTP datagrams; the last has the
    /// marker bit. Empty NAL units are skipped.
    pub fn packetize(&mut self, timestamp: u32, nals: &[&[u8]]) -> Vec<Bytes> {
        let max_payload = self.mtu - RTP_HEADER_LEN;
        let nals: Vec<&[u8]> = nals.iter().copied().filter(|n| !n.is_empty()).collect();
        let mut out = Vec::new();
        for (i, nal) in nals.iter().enumerate() {
            let last_nal = i + 1 == nals.len();
            if nal.len() <= max_payload {
                // RFC 6184 §5.6: single NAL unit packet.
                out.push(self.packet(last_nal, timestamp, &[], nal));
                continue;
            }
            // RFC 6184 §5.8: FU-A; the NAL header is rebuilt from indicator and FU header.
            let header = nal[0];
            let indicator = (header & 0xe0) | NAL_FU_A;
            let chunk = max_payload - 2;
            let body = &nal[1..];
            let count = body.len().div_ceil(chunk);
            for (n, piece) in body.chunks(chunk).enumerate() {
                let start = n == 0;
                let end = n + 1 == count;
                let fu_header = (u8::from(start) << 7) | (u8::from(end) << 6) | (header & 0x1f);
                out.push(self.packet(last_nal && end, timestamp, &[indicator, fu_header], piece));
            }
        }
        out
    }

    /// An Annex-B access unit → RTP datagrams.
    pub fn packetize_annex_b(&mut self, timestamp: u32, access_unit: &[u8]) -> Vec<Bytes> {
        let nals = split_annex_b(access_unit);
        self.packetize(timestamp, &nals)
    }

    fn packet(&mut self, marker: bool, timestamp: u32, prefix: &[u8], body: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(RTP_HEADER_LEN + prefix.len() + body.len());
        write_header(
            &mut out,
            marker,
            self.payload_type,
            self.sequence,
            timestamp,
            self.ssrc,
        );
        out.put_slice(prefix);
        out.put_slice(body);
        self.sequence = self.sequence.wrapping_add(1);
        out.freeze()
    }
}

/// Packetises Opus packets (RFC 7587 §4.2: one Opus packet per RTP payload, marker unset).
#[derive(Debug, Clone)]
pub struct OpusPacketizer {
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
}

impl OpusPacketizer {
    pub fn new(ssrc: u32, payload_type: u8, first_sequence: u16) -> Self {
        OpusPacketizer {
            ssrc,
            payload_type,
            sequence: first_sequence,
        }
    }

    /// One Opus packet at `timestamp` (48 kHz) → one RTP datagram.
    pub fn packetize(&mut self, timestamp: u32, opus: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(RTP_HEADER_LEN + opus.len());
        write_header(
            &mut out,
            false,
            self.payload_type,
            self.sequence,
            timestamp,
            self.ssrc,
        );
        out.put_slice(opus);
        self.sequence = self.sequence.wrapping_add(1);
        out.freeze()
    }
}

/// The last [`RETRANSMIT_CAPACITY`] datagrams of one SSRC, by sequence number; resent unchanged.
#[derive(Debug)]
pub struct RetransmitStore {
    slots: Vec<Option<(u16, Bytes)>>,
}

impl Default for RetransmitStore {
    fn default() -> Self {
        RetransmitStore {
            slots: vec![None; RETRANSMIT_CAPACITY],
        }
    }
}

impl RetransmitStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers a sent datagram (its sequence number is read from bytes 2..4).
    pub fn insert(&mut self, datagram: Bytes) {
        let Some(seq) = datagram.get(2..4).map(|s| u16::from_be_bytes([s[0], s[1]])) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(usize::from(seq) % RETRANSMIT_CAPACITY) {
            *slot = Some((seq, datagram));
        }
    }

    /// The stored datagram with sequence number `seq`, if still held.
    pub fn get(&self, seq: u16) -> Option<Bytes> {
        match self.slots.get(usize::from(seq) % RETRANSMIT_CAPACITY) {
            Some(Some((stored, datagram))) if *stored == seq => Some(datagram.clone()),
            _ => None,
        }
    }

    /// The datagrams a NACK asks for that are still held.
    pub fn answer(&self, nack: &Nack) -> Vec<Bytes> {
        nack.lost.iter().filter_map(|&seq| self.get(seq)).collect()
    }
}
