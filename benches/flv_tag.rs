//! FLV hot-path micro-benchmarks: serialising one 50 KB video frame (contiguous copy vs zero-copy
//! parts) and demuxing a stream of tags.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::media::{Frame, MediaKind};
use ringcast::proto::flv::{FlvDemuxer, TagParts, file_header, tag_len, write_tag};

fn video_frame(len: usize, timestamp: u32) -> Frame {
    let mut payload = vec![0x27, 1, 0, 0, 0];
    payload.resize(len, 0x5a);
    Frame::new(MediaKind::Video, timestamp, Bytes::from(payload))
}

fn write(c: &mut Criterion) {
    let frame = video_frame(50 * 1024, 0x0123_4567);
    let mut group = c.benchmark_group("flv_write_50k_video");
    group.throughput(Throughput::Bytes(tag_len(&frame) as u64));
    group.bench_function("write_tag_contiguous", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(tag_len(&frame));
            let _ = write_tag(&mut out, black_box(&frame));
            out.freeze()
        })
    });
    group.bench_function("tag_parts_zero_copy", |b| {
        b.iter(|| TagParts::new(black_box(&frame)))
    });
    group.finish();
}

fn demux(c: &mut Criterion) {
    // One second of a 30 fps, ~4 Mbit/s stream with 50 audio frames: 80 tags.
    let mut stream = BytesMut::from(&file_header(true, true)[..]);
    let mut tags = 0u64;
    for i in 0..30u32 {
        let len = if i == 0 { 60_000 } else { 15_000 };
        let _ = write_tag(&mut stream, &video_frame(len, i * 33));
        tags += 1;
    }
    for i in 0..50u32 {
        let audio = Frame::new(MediaKind::Audio, i * 20, Bytes::from(vec![0xaf; 370]));
        let _ = write_tag(&mut stream, &audio);
        tags += 1;
    }
    let stream = stream.freeze();
    let mut group = c.benchmark_group("flv_demux");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function(format!("{tags}_tags_in_16k_reads"), |b| {
        b.iter(|| {
            let mut demuxer = FlvDemuxer::default();
            let mut buf = BytesMut::new();
            let mut frames = 0u32;
            for chunk in stream.chunks(16 * 1024) {
                buf.extend_from_slice(chunk);
                while let Ok(Some(frame)) = demuxer.decode(&mut buf) {
                    black_box(&frame);
                    frames += 1;
                }
            }
            frames
        })
    });
    group.finish();
}

criterion_group!(benches, write, demux);
criterion_main!(benches);
