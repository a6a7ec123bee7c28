#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::{Frame, MediaKind};

const CHUNK: usize = 4096;

fn video(ts: u32, first: u8, second: u8) -> Arc<EncodedFrame> {
    let payload = Bytes::from(vec![first, second, 0, 0, 0, ts as u8, (ts >> 8) as u8]);
    Arc::new(EncodedFrame::media(
        Frame::new(MediaKind::Video, ts, payload),
        CHUNK,
    ))
}

fn key(ts: u32) -> Arc<EncodedFrame> {
    video(ts, 0x17, 1)
}

fn inter(ts: u32) -> Arc<EncodedFrame> {
    video(ts, 0x27, 1)
}

fn header() -> Arc<EncodedFrame> {
    video(0, 0x17, 0)
}

fn audio(ts: u32) -> Arc<EncodedFrame> {
    Arc::new(EncodedFrame::media(
        Frame::new(MediaKind::Audio, ts, Bytes::from_static(&[0xaf, 1, 9])),
        CHUNK,
    ))
}

fn limits() -> RingLimits {
    RingLimits {
        max_frames: 1000,
        max_bytes: 1 << 20,
        max_lag: Duration::from_millis(1000),
        disconnect_after: Duration::from_secs(5),
    }
}

/// Drains everything a cursor can take right now, returning the timestamps delivered.
fn drain(ring: &Ring, cursor: &mut Cursor, now: Instant) -> (Fill, Vec<Bytes>) {
    let mut batch = Vec::new();
    let mut last = Fill::Idle;
    loop {
        match ring.fill(cursor, Egress::Rtmp, now, &mut batch, 4, usize::MAX) {
            Fill::Ready => last = Fill::Ready,
            other => return (if other == Fill::Idle { last } else { other }, batch),
        }
    }
}

#[test]
fn joining_watcher_gets_headers_then_the_newest_gop() {
    let mut ring = Ring::new(limits());
    let hdr = header();
    ring.push(hdr.clone());
    for (i, ts) in (0..100).step_by(10).enumerate() {
        ring.push(if i % 5 == 0 { key(ts) } else { inter(ts) });
    }
    let mut cursor = ring.join();
    let (fill, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(fill, Fill::Ready);
    // header, then the keyframe at ts 50 and the four inter frames after it
    assert_eq!(batch.len(), 6);
    assert_eq!(batch[0], hdr.rtmp());
    assert_eq!(batch[1], key(50).rtmp());
    assert_eq!(batch[5], inter(90).rtmp());
}

#[test]
fn batches_are_refcount_clones_of_the_shared_encoding() {
    let mut ring = Ring::new(limits());
    let k = key(0);
    ring.push(k.clone());
    let mut cursor = ring.join();
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].as_ptr(), k.rtmp().as_ptr(), "no copy per watcher");
}

#[test]
fn watcher_at_head_is_idle_until_a_frame_arrives() {
    let mut ring = Ring::new(limits());
    ring.push(key(0));
    let mut cursor = ring.join();
    let now = Instant::now();
    drain(&ring, &mut cursor, now);
    let mut batch = Vec::new();
    assert_eq!(
        ring.fill(&mut cursor, Egress::Rtmp, now, &mut batch, 8, usize::MAX),
        Fill::Idle
    );
    ring.push(inter(40));
    assert_eq!(
        ring.fill(&mut cursor, Egress::Rtmp, now, &mut batch, 8, usize::MAX),
        Fill::Ready
    );
    assert_eq!(batch, vec![inter(40).rtmp().clone()]);
}

#[test]
fn lagging_watcher_jumps_to_the_newer_keyframe_and_counts_drops() {
    let mut ring = Ring::new(limits());
    ring.push(header());
    ring.push(key(0));
    let mut cursor = ring.join();
    // The watcher reads nothing while 2 s of media arrive (keyframe every 500 ms).
    for ts in (50..2000).step_by(50) {
        ring.push(if ts % 500 == 0 { key(ts) } else { inter(ts) });
        ring.push(audio(ts));
    }
    let (fill, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(fill, Fill::Ready);
    assert_eq!(
        batch[0],
        header().rtmp(),
        "the owed sequence header comes first"
    );
    assert_eq!(batch[1], key(1500).rtmp(), "resumes at the newest keyframe");
    assert!(
        cursor.dropped_frames > 50,
        "dropped {}",
        cursor.dropped_frames
    );
}

#[test]
fn overrun_watcher_waits_for_the_next_keyframe() {
    let mut small = limits();
    small.max_frames = 8;
    small.max_lag = Duration::from_secs(3600);
    let mut ring = Ring::new(small);
    ring.push(key(0));
    let mut cursor = ring.join();
    for ts in 1..20 {
        ring.push(inter(ts));
    }
    let (fill, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(fill, Fill::Idle);
    assert!(
        batch.is_empty(),
        "inter frames after an overrun are skipped"
    );
    assert!(cursor.is_skipping());
    assert!(cursor.dropped_frames >= 12);
    ring.push(key(20));
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(batch, vec![key(20).rtmp().clone()]);
}

#[test]
fn watcher_behind_past_the_limit_is_disconnected() {
    let mut ring = Ring::new(limits());
    ring.push(key(0));
    let mut cursor = ring.join();
    // No newer keyframe to jump to: the watcher stays behind.
    for ts in (40..3000).step_by(40) {
        ring.push(inter(ts));
    }
    let start = Instant::now();
    let mut batch = Vec::new();
    assert_eq!(
        ring.fill(&mut cursor, Egress::Rtmp, start, &mut batch, 1, usize::MAX),
        Fill::Ready
    );
    assert_eq!(
        ring.fill(
            &mut cursor,
            Egress::Rtmp,
            start + Duration::from_secs(6),
            &mut batch,
            1,
            usize::MAX
        ),
        Fill::Disconnect
    );
}

#[test]
fn ring_keeps_one_previous_gop_and_respects_the_byte_limit() {
    let mut ring = Ring::new(limits());
    for ts in 0..300 {
        ring.push(if ts % 100 == 0 { key(ts) } else { inter(ts) });
    }
    // keyframes at 0, 100, 200: the GOP starting at 100 and the current one remain.
    assert_eq!(ring.len(), 200);
    let mut tiny = limits();
    tiny.max_bytes = 2000;
    let mut ring = Ring::new(tiny);
    for ts in 0..300 {
        ring.push(inter(ts));
    }
    assert!(ring.bytes() <= 2000);
}

#[test]
fn raw_egress_sees_only_opaque_bytes() {
    let mut ring = Ring::new(limits());
    ring.push(key(0));
    ring.push(Arc::new(EncodedFrame::opaque(
        Bytes::from_static(b"hello"),
        crate::media::FrameRole::Other,
        0,
    )));
    let mut cursor = ring.join();
    let mut batch = Vec::new();
    ring.fill(
        &mut cursor,
        Egress::Raw,
        Instant::now(),
        &mut batch,
        8,
        usize::MAX,
    );
    assert_eq!(batch, vec![Bytes::from_static(b"hello")]);
}

fn opaque(ts: u32, role: crate::media::FrameRole) -> Arc<EncodedFrame> {
    Arc::new(EncodedFrame::opaque(
        Bytes::from_static(b"0123456789"),
        role,
        ts,
    ))
}

#[test]
fn overrun_opaque_watcher_without_join_points_is_disconnected_not_skipped() {
    let mut small = limits();
    small.max_frames = 16;
    let mut ring = Ring::new(small);
    let mut cursor = ring.join();
    for ts in 0..40 {
        ring.push(opaque(ts, crate::media::FrameRole::Other));
    }
    let mut batch = Vec::new();
    let fill = ring.fill(
        &mut cursor,
        Egress::Raw,
        Instant::now(),
        &mut batch,
        8,
        usize::MAX,
    );
    assert_eq!(fill, Fill::Disconnect);
    assert!(batch.is_empty(), "no bytes after a hole");
}

#[test]
fn overrun_opaque_watcher_with_join_points_resumes_at_the_newest() {
    let mut small = limits();
    small.max_frames = 16;
    let mut ring = Ring::new(small);
    let mut cursor = ring.join();
    for ts in 0..40 {
        let role = if ts % 10 == 0 {
            crate::media::FrameRole::Keyframe
        } else {
            crate::media::FrameRole::Other
        };
        ring.push(opaque(ts, role));
    }
    let mut batch = Vec::new();
    let fill = ring.fill(
        &mut cursor,
        Egress::Raw,
        Instant::now(),
        &mut batch,
        64,
        usize::MAX,
    );
    assert_eq!(fill, Fill::Ready);
    assert_eq!(batch.len(), 10, "from the join point at 30 to the head");
    assert!(cursor.dropped_frames > 0);
}
