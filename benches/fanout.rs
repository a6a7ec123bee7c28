//! Fan-out of one frame to N local watchers on one core: the publisher serialises the frame
//! once and appends it to the ring, then every watcher gathers its write batch (a refcount
//! clone of the shared RTMP bytes). Run: `cargo bench --bench fanout`.

#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::fanout::{CoreHub, Egress, PublishPolicy, Publisher, Registry, RingLimits};
use ringcast::media::{Frame, MediaKind};

fn video_frame(ts: u32, key: bool) -> Frame {
    let mut payload = vec![0u8; 10_000];
    payload[0] = if key { 0x17 } else { 0x27 };
    payload[1] = 1;
    Frame::new(MediaKind::Video, ts, Bytes::from(payload))
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_one_frame");
    for &n in &[1usize, 100, 1_000, 10_000] {
        let registry = Arc::new(Registry::new(
            1,
            PublishPolicy {
                takeover: false,
                grace: std::time::Duration::ZERO,
            },
        ));
        let hub = Rc::new(CoreHub::new(0, registry, RingLimits::default()));
        let mut publisher = Publisher::start(&hub, "live/bench", Instant::now()).expect("claim");
        publisher.push(video_frame(0, true)).expect("push");
        let mut watchers: Vec<_> = (0..n)
            .map(|_| hub.watch("live/bench", Egress::Rtmp))
            .collect();
        let mut batches: Vec<Vec<Bytes>> = (0..n).map(|_| Vec::with_capacity(64)).collect();
        let now = Instant::now();
        for (w, b) in watchers.iter_mut().zip(&mut batches) {
            w.fill(now, b, 64, usize::MAX);
            b.clear();
        }
        let mut ts = 0u32;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| {
                ts = ts.wrapping_add(33);
                publisher.push(video_frame(ts, false)).expect("push");
                for (w, b) in watchers.iter_mut().zip(&mut batches) {
                    black_box(w.fill(now, b, 64, usize::MAX));
                    b.clear();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
