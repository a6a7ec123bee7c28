//! Depacketising one 1080p-sized access unit (~60 KB in FU-A packets) and framing it as FLV.

use std::collections::VecDeque;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::proto::rtp::RtpPacket;
use ringcast::proto::rtp::avc_frames::AvcFramer;
use ringcast::proto::rtp::h264::{DepacketizerLimits, H264Depacketizer};
use ringcast::proto::rtp::packetize::{FTL_MTU, H264Packetizer};

fn access_unit() -> Vec<Bytes> {
    let mut packetizer = H264Packetizer::new(78, 96, FTL_MTU, 0);
    let sps: &[u8] = &[0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];
    let mut slice = vec![0x65u8];
    slice.extend((0..60_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    packetizer.packetize(3000, &[sps, pps, &slice])
}

fn depacketize(c: &mut Criterion) {
    let datagrams = access_unit();
    let packets: Vec<RtpPacket> = datagrams
        .iter()
        .filter_map(|d| RtpPacket::parse(d.clone()).ok())
        .collect();
    let bytes: usize = datagrams.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("h264");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("depacketize_60k_fu_a", |b| {
        let mut depack = H264Depacketizer::new(DepacketizerLimits::default());
        b.iter(|| {
            for packet in &packets {
                let _ = depack.push(packet);
            }
            depack.poll_access_unit()
        });
    });
    group.bench_function("parse_depacketize_frame_60k", |b| {
        let mut depack = H264Depacketizer::new(DepacketizerLimits::default());
        let mut framer = AvcFramer::new();
        let mut frames = VecDeque::new();
        b.iter(|| {
            for datagram in &datagrams {
                if let Ok(packet) = RtpPacket::parse(datagram.clone()) {
                    let _ = depack.push(&packet);
                }
            }
            if let Some(au) = depack.poll_access_unit() {
                framer.push_access_unit(0, &au.nals, &mut frames);
            }
            frames.pop_front()
        });
    });
    group.finish();
}

criterion_group!(benches, depacketize);
criterion_main!(benches);
