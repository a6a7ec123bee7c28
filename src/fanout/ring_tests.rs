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
        gop_cache: true,
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
    // The header is stamped with the join frame's time, not its own (0).
    assert_eq!(batch[0], hdr.restamped(50).rtmp());
    assert_eq!(batch[1], key(50).rtmp());
    assert_eq!(batch[5], inter(90).rtmp());
}

#[test]
fn without_the_gop_cache_a_joining_watcher_gets_headers_then_waits_for_the_next_keyframe() {
    let mut ring = Ring::new(RingLimits {
        gop_cache: false,
        ..limits()
    });
    let hdr = header();
    ring.push(hdr.clone());
    for (i, ts) in (0..100).step_by(10).enumerate() {
        ring.push(if i % 5 == 0 { key(ts) } else { inter(ts) });
    }
    let mut cursor = ring.join();
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    // Stamped with the time of the head it joined at (the newest frame, 90), like a late
    // joiner's headers with the GOP cache on.
    assert_eq!(
        batch,
        vec![hdr.restamped(90).rtmp().clone()],
        "only the headers, no cached GOP"
    );
    ring.push(inter(100));
    ring.push(key(110));
    ring.push(inter(120));
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(
        batch,
        vec![key(110).rtmp().clone(), inter(120).rtmp().clone()]
    );
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
        header().restamped(1500).rtmp(),
        "the owed sequence header comes first, at the join frame's time"
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

fn ex_audio(ts: u32, body: &'static [u8], variant: Variant) -> Arc<EncodedFrame> {
    Arc::new(EncodedFrame::media_variant(
        Frame::new(MediaKind::Audio, ts, Bytes::from_static(body)),
        CHUNK,
        variant,
    ))
}

#[test]
fn every_audio_config_packet_is_replayed_in_order_and_replaced_only_by_its_own_kind() {
    let mut ring = Ring::new(limits());
    let start = ex_audio(0, b"\x90OpusOpusHead1", Variant::Opus);
    let multichannel = ex_audio(0, b"\x94Opus\x00\x02", Variant::Opus);
    ring.push(header());
    ring.push(start.clone());
    ring.push(multichannel.clone());
    ring.push(key(1000));
    let mut cursor = ring.join();
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(batch[0], header().restamped(1000).rtmp());
    assert_eq!(
        batch[1],
        start.restamped(1000).rtmp(),
        "the OpusHead survives"
    );
    assert_eq!(batch[2], multichannel.restamped(1000).rtmp());
    assert_eq!(batch[3], key(1000).rtmp());

    // A new SequenceStart replaces the old one only; the multichannel config stays.
    let start2 = ex_audio(1100, b"\x90OpusOpusHead2", Variant::Opus);
    ring.push(start2.clone());
    ring.push(key(2000));
    let mut cursor = ring.join();
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(batch.len(), 4);
    assert_eq!(batch[1], multichannel.restamped(2000).rtmp());
    assert_eq!(batch[2], start2.restamped(2000).rtmp());
}

#[test]
fn late_joiners_share_one_restamped_copy_of_each_header() {
    let mut ring = Ring::new(limits());
    ring.push(header());
    ring.push(key(97_834));
    let (_, a) = drain(&ring, &mut ring.join(), Instant::now());
    let (_, b) = drain(&ring, &mut ring.join(), Instant::now());
    assert_eq!(a[0].as_ptr(), b[0].as_ptr(), "built once, shared");
    // RTMP chunk type 0 header: the timestamp is bytes 1..4.
    assert_eq!(&a[0][1..4], &[0x01, 0x7e, 0x2a], "stamped 97 834 ms");
}

#[test]
fn aac_watchers_see_the_rendition_and_passthrough_watchers_the_opus() {
    let mut ring = Ring::new(limits());
    let opus_head = ex_audio(0, b"\x90OpusOpusHead", Variant::Opus);
    let aac_header = ex_audio(0, &[0xaf, 0, 0x11, 0x90], Variant::Aac);
    let opus = ex_audio(20, b"\x91Opus\xfc", Variant::Opus);
    let aac = ex_audio(21, &[0xaf, 1, 0x21], Variant::Aac);
    for f in [&opus_head, &aac_header] {
        ring.push(f.clone());
    }
    ring.push(key(0));
    ring.push(opus.clone());
    ring.push(aac.clone());
    let mut passthrough = ring.join();
    let (_, got) = drain(&ring, &mut passthrough, Instant::now());
    assert_eq!(
        got,
        vec![
            opus_head.rtmp().clone(),
            key(0).rtmp().clone(),
            opus.rtmp().clone()
        ]
    );
    let mut wants_aac = ring.join();
    wants_aac.audio = AudioMode::Aac;
    let (_, got) = drain(&ring, &mut wants_aac, Instant::now());
    assert_eq!(
        got,
        vec![
            aac_header.rtmp().clone(),
            key(0).rtmp().clone(),
            aac.rtmp().clone()
        ]
    );
    let mut silent = ring.join();
    silent.audio = AudioMode::Drop;
    let (_, got) = drain(&ring, &mut silent, Instant::now());
    assert_eq!(got, vec![key(0).rtmp().clone()]);
}

#[test]
fn cached_metadata_is_replayed_at_time_zero_where_demuxers_read_it() {
    let mut ring = Ring::new(limits());
    let mut meta = b"\x02\x00\x0aonMetaData".to_vec();
    meta.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
    let meta = Arc::new(EncodedFrame::media(
        Frame::new(MediaKind::Script, 1200, Bytes::from(meta)),
        CHUNK,
    ));
    ring.push(meta.clone());
    ring.push(header());
    ring.push(key(5000));
    let (_, batch) = drain(&ring, &mut ring.join(), Instant::now());
    assert_eq!(batch[0], meta.restamped(0).rtmp());
    assert_eq!(batch[1], header().restamped(5000).rtmp());
}

/// Pushes video every 40 ms from `from` to `to` (exclusive), a keyframe every 2 s.
fn push_video(ring: &mut Ring, from: u32, to: u32) {
    for ts in (from..to).step_by(40) {
        ring.push(if ts % 2000 == 0 { key(ts) } else { inter(ts) });
    }
}

#[test]
fn frames_before_the_newest_keyframe_past_the_lag_limit_are_not_kept() {
    let mut ring = Ring::new(limits());
    push_video(&mut ring, 0, 4400);
    // Keyframes at 0, 2000, 4000; the newest frame is at 4360 and the lag limit is 1 s: of
    // the GOP before the newest keyframe only what is within 1 s of 4360 stays (from 3360).
    let oldest = ring.entries.front().map(|f| f.timestamp);
    assert_eq!(oldest, Some(3360));
    assert_eq!(ring.len(), (4400 - 3360) / 40);
    let cost: usize = ring.entries.iter().map(|f| f.cost()).sum();
    assert_eq!(ring.bytes(), cost, "the byte count follows the evictions");
    // The newest keyframe and everything after it always stay, however old.
    push_video(&mut ring, 4400, 5800);
    assert_eq!(ring.entries.front().map(|f| f.timestamp), Some(4000));
}

#[test]
fn a_watcher_within_the_lag_limit_loses_nothing_across_a_keyframe() {
    let mut ring = Ring::new(limits());
    push_video(&mut ring, 0, 1800);
    let mut cursor = ring.join();
    let (_, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(batch.len(), 1800 / 40);
    // It stops reading 900 ms before a keyframe and is 900 ms behind when it resumes.
    push_video(&mut ring, 1800, 2720);
    let (fill, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(fill, Fill::Ready);
    assert_eq!(batch.len(), (2720 - 1800) / 40, "every frame, in order");
    assert_eq!(batch[0], inter(1800).rtmp());
    assert_eq!(cursor.dropped_frames, 0);
}

#[test]
fn a_watcher_past_the_lag_limit_whose_frames_were_dropped_resumes_at_the_newest_keyframe() {
    let mut ring = Ring::new(limits());
    push_video(&mut ring, 0, 400);
    let mut cursor = ring.join();
    let _ = drain(&ring, &mut cursor, Instant::now());
    // It reads nothing for 2 s: its next frame (400) is gone by the keyframe at 2000 + 1 s.
    push_video(&mut ring, 400, 3080);
    assert!(ring.entries.front().is_some_and(|f| f.timestamp > 400));
    let (fill, batch) = drain(&ring, &mut cursor, Instant::now());
    assert_eq!(fill, Fill::Ready);
    assert_eq!(batch[0], key(2000).rtmp(), "resumes at the newest keyframe");
    assert_eq!(batch.len(), (3080 - 2000) / 40);
    assert_eq!(cursor.dropped_frames, (2000 - 400) / 40);
}
