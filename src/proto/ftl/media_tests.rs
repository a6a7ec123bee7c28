//! End-to-end tests of [`MediaSession`]: the load generator's packetisers on one side, lossy
//! delivery with NACK-driven retransmission in between, frames out on the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::attributes::{StreamAttributes, TrackCodec, TrackInfo};
use super::media::{MediaConfig, MediaSession};
use crate::media::{Frame, FrameRole, MediaKind};
use crate::proto::rtp::RtpError;
use crate::proto::rtp::packetize::{FTL_MTU, H264Packetizer, OpusPacketizer, RetransmitStore};
use crate::proto::rtp::rtcp::parse_nack;

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

/// A small deterministic generator (xorshift64*), seeded per test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn attributes() -> StreamAttributes {
    StreamAttributes {
        protocol_version: "0.9".into(),
        video: Some(TrackInfo {
            codec: TrackCodec::H264,
            payload_type: 96,
            ssrc: 78,
            width: Some(1280),
            height: Some(720),
        }),
        audio: Some(TrackInfo {
            codec: TrackCodec::Opus,
            payload_type: 97,
            ssrc: 77,
            width: None,
            height: None,
        }),
        ..StreamAttributes::default()
    }
}

/// `count` access units: a keyframe (with SPS/PPS) every 30, inter frames otherwise.
fn access_units(rng: &mut Rng, count: usize) -> Vec<Vec<Vec<u8>>> {
    (0..count)
        .map(|i| {
            let key = i % 30 == 0;
            let size = if key {
                20_000
            } else {
                200 + rng.below(6000) as usize
            };
            let mut slice = vec![if key { 0x65 } else { 0x41 }];
            slice.extend((0..size).map(|_| rng.next() as u8));
            if key {
                vec![SPS.to_vec(), PPS.to_vec(), slice]
            } else {
                vec![slice]
            }
        })
        .collect()
}

/// The FLV body the framer must produce for an access unit.
fn expected_body(au: &[Vec<u8>]) -> Bytes {
    let key = au.iter().any(|n| n[0] & 0x1f == 5);
    let mut body = BytesMut::new();
    body.put_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
    for nal in au.iter().filter(|n| !matches!(n[0] & 0x1f, 7..=9)) {
        body.put_u32(nal.len() as u32);
        body.put_slice(nal);
    }
    body.freeze()
}

fn packetize(aus: &[Vec<Vec<u8>>], first_seq: u16) -> Vec<Bytes> {
    let mut p = H264Packetizer::new(78, 96, FTL_MTU, first_seq);
    let mut out = Vec::new();
    for (i, au) in aus.iter().enumerate() {
        let nals: Vec<&[u8]> = au.iter().map(Vec::as_slice).collect();
        out.extend(p.packetize(i as u32 * 3000, &nals));
    }
    out
}

fn frames(session: &mut MediaSession) -> Vec<Frame> {
    std::iter::from_fn(|| session.poll_frame()).collect()
}

#[test]
fn nacks_exactly_the_lost_packets_and_every_access_unit_comes_out() {
    let mut rng = Rng(0x5eed_1234);
    let aus = access_units(&mut rng, 200);
    // Start near the top of the sequence space so the stream rolls over 65535 → 0.
    let datagrams = packetize(&aus, 65_200);
    let mut store = RetransmitStore::new();
    for d in &datagrams {
        store.insert(d.clone());
    }
    let mut session = MediaSession::new(&attributes(), MediaConfig::default());
    let mut lost = BTreeSet::new();
    let mut nacked = BTreeSet::new();
    let mut out = Vec::new();
    let mut now = Instant::now();
    let tail = datagrams.len() - 20;
    for (i, d) in datagrams.iter().enumerate() {
        now += Duration::from_millis(1);
        let seq = u16::from_be_bytes([d[2], d[3]]);
        // 5 % loss, never the first packet nor the last 20 (no later packet would reveal them).
        if i > 0 && i < tail && rng.below(100) < 5 {
            lost.insert(seq);
            continue;
        }
        session.handle_datagram(now, d.clone()).unwrap();
        while let Some(t) = session.poll_transmit() {
            let nack = parse_nack(&t).unwrap();
            assert_eq!(nack.media_ssrc, 78);
            for &seq in &nack.lost {
                assert!(nacked.insert(seq), "seq {seq} NACKed twice");
            }
            for resend in store.answer(&nack) {
                session.handle_datagram(now, resend).unwrap();
            }
        }
        out.extend(frames(&mut session));
    }
    assert!(
        lost.len() > 20,
        "the test should lose packets ({})",
        lost.len()
    );
    assert_eq!(nacked, lost);
    let stats = session.stats();
    assert_eq!(stats.video.lost, 0);
    assert_eq!(stats.video.recovered, lost.len() as u64);
    assert_eq!(stats.depacketizer.access_units_dropped, 0);

    assert_eq!(out[0].role, FrameRole::SequenceHeader);
    let coded: Vec<&Frame> = out
        .iter()
        .filter(|f| f.role != FrameRole::SequenceHeader)
        .collect();
    assert_eq!(coded.len(), aus.len());
    for (i, (frame, au)) in coded.iter().zip(&aus).enumerate() {
        assert_eq!(frame.payload, expected_body(au), "access unit {i}");
        assert_eq!(frame.timestamp, coded[0].timestamp + (i as u32 * 3000) / 90);
    }
}

#[test]
fn without_nack_broken_access_units_are_dropped_not_emitted() {
    let mut rng = Rng(42);
    let aus = access_units(&mut rng, 60);
    let datagrams = packetize(&aus, 0);
    let config = MediaConfig {
        nack: false,
        ..MediaConfig::default()
    };
    let mut session = MediaSession::new(&attributes(), config);
    let now = Instant::now();
    for (i, d) in datagrams.iter().enumerate() {
        if i > 0 && rng.below(100) < 5 {
            continue;
        }
        session.handle_datagram(now, d.clone()).unwrap();
        assert!(session.poll_transmit().is_none());
    }
    let out = frames(&mut session);
    let expected: BTreeSet<Bytes> = aus.iter().map(|au| expected_body(au)).collect();
    let coded: Vec<&Frame> = out
        .iter()
        .filter(|f| f.role != FrameRole::SequenceHeader)
        .collect();
    assert!(!coded.is_empty() && coded.len() < aus.len());
    for frame in coded {
        assert!(
            expected.contains(&frame.payload),
            "a damaged frame was emitted"
        );
    }
    assert!(session.stats().video.lost > 0);
}

#[test]
fn audio_waits_for_video_and_pings_echo() {
    let mut session = MediaSession::new(&attributes(), MediaConfig::default());
    let t = Instant::now();
    let mut opus = OpusPacketizer::new(77, 97, 100);
    // Speed-test blast before any video: dropped.
    session
        .handle_datagram(t, opus.packetize(0, &[0xfc, 1]))
        .unwrap();
    let ping = Bytes::from_static(&[0x80, 0xfa, 0, 1, 0, 0, 0, 9, 0, 0, 0, 78, 1, 2, 3, 4]);
    session.handle_datagram(t, ping.clone()).unwrap();
    assert_eq!(session.poll_transmit(), Some(ping));
    let empty = Bytes::from_static(&[0x80, 122, 0, 1, 0, 0, 0, 9, 0, 0, 0, 78]);
    session.handle_datagram(t, empty).unwrap();

    let mut video = H264Packetizer::new(78, 96, FTL_MTU, 7);
    for d in video.packetize(0, &[SPS, PPS, &[0x65, 1, 2, 3]]) {
        session.handle_datagram(t, d).unwrap();
    }
    let later = t + Duration::from_millis(20);
    session
        .handle_datagram(later, opus.packetize(960, &[0xfc, 2]))
        .unwrap();
    session
        .handle_datagram(later, opus.packetize(1920, &[0xfc, 3]))
        .unwrap();
    let out = frames(&mut session);
    let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.role, f.timestamp)).collect();
    assert_eq!(
        kinds,
        vec![
            (MediaKind::Video, FrameRole::SequenceHeader, 0),
            (MediaKind::Video, FrameRole::Keyframe, 0),
            (MediaKind::Audio, FrameRole::SequenceHeader, 20),
            (MediaKind::Audio, FrameRole::Audio, 20),
            (MediaKind::Audio, FrameRole::Audio, 40),
        ]
    );
    assert_eq!(&out[3].payload[..], b"\x91Opus\xfc\x02");
    let stats = session.stats();
    assert_eq!(
        (stats.audio_before_video, stats.pings, stats.empty),
        (1, 1, 1)
    );
}

#[test]
fn foreign_ssrc_wrong_payload_type_and_garbage_are_counted() {
    let mut session = MediaSession::new(&attributes(), MediaConfig::default());
    let t = Instant::now();
    let mut stranger = OpusPacketizer::new(1234, 97, 0);
    assert_eq!(
        session.handle_datagram(t, stranger.packetize(0, &[1])),
        Err(RtpError::UnknownSsrc { ssrc: 1234 })
    );
    let mut wrong_pt = OpusPacketizer::new(78, 100, 0);
    assert!(matches!(
        session.handle_datagram(t, wrong_pt.packetize(0, &[1])),
        Err(RtpError::PayloadTypeMismatch { .. })
    ));
    assert!(
        session
            .handle_datagram(t, Bytes::from_static(b"GET / HTTP/1.1"))
            .is_err()
    );
    let stats = session.stats();
    assert_eq!(
        (
            stats.unknown_ssrc,
            stats.payload_type_mismatch,
            stats.malformed
        ),
        (1, 1, 1)
    );
    assert!(session.poll_frame().is_none());
}
