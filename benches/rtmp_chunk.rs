//! Criterion benches of the RTMP chunk hot path: encoding a frame once for fan-out, and
//! reassembling a publisher's chunks.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::proto::rtmp::chunk::{ChunkDecoder, ChunkLimits, encode_message, encoded_len};
use std::hint::black_box;

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtmp_encode_message");
    for (name, len) in [("video_50k", 50_000usize), ("audio_400", 400)] {
        let payload = vec![0x27u8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(encoded_len(6, 1000, len, 4096));
                encode_message(
                    &mut out,
                    6,
                    black_box(1000),
                    9,
                    1,
                    black_box(&payload),
                    4096,
                );
                out.freeze()
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtmp_decode");
    for (name, len, chunk) in [
        ("video_50k_cs4096", 50_000usize, 4096u32),
        ("audio_400_cs128", 400, 128),
    ] {
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 2, 0, 1, 0, &chunk.to_be_bytes(), 128);
        for i in 0..16 {
            encode_message(
                &mut wire,
                6,
                i * 33,
                9,
                1,
                &vec![0x27u8; len],
                chunk as usize,
            );
        }
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut d = ChunkDecoder::new(ChunkLimits::default());
                let mut buf = BytesMut::from(&wire[..]);
                let mut n = 0;
                while let Ok(Some(m)) = d.decode(&mut buf) {
                    n += m.payload.len();
                }
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
