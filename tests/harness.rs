//! Proves the test harness itself works, without the ringcast server: the framemd5 and FLV
//! readers parse what ffmpeg writes, the comparisons fail when they should (so no relay test
//! can pass vacuously), and the independent raw RTMP client and the ffmpeg publish/capture
//! pipeline work end to end against ffmpeg's own RTMP listen mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::fixtures::Fixture;
use common::framemd5::{self, FrameMd5, PacketRecord};
use common::media;
use common::process::{ChildGuard, wait_until};
use common::rtmp_raw::{Amf, RawRtmp};
use common::{flv, free_port};

const SAMPLE: &str = "#format: frame checksums
#version: 2
#hash: MD5
#extradata 0,                              39, 346c979d266acfd813c09896f53f7ba8
#tb 0: 1/1000
#media_type 0: video
#codec_id 0: h264
#dimensions 0: 320x240
#stream#, dts,        pts, duration,     size, hash
0,        -57,         23,       40,     4748, 5cacddff1366730254820dd7e54dd547
0,        -17,        183,       40,     2205, 3df860393a5399014e02f52a7212d8e6
0,       4080,       4080,       40,     4748, 5cacddff1366730254820dd7e54dd547, S=1,       39, 346c979d266acfd813c09896f53f7ba8
0,         23,        10";

#[test]
fn framemd5_parses_header_records_and_side_data_and_ignores_truncated_tail() {
    let doc = FrameMd5::parse(SAMPLE);
    assert_eq!(doc.video_codec(), Some("h264"));
    assert_eq!(doc.packets.len(), 3, "the side-data line is a packet too");
    assert_eq!(doc.packets[2].md5, "5cacddff1366730254820dd7e54dd547");
    assert_eq!(
        doc.packets[0],
        PacketRecord {
            stream: 0,
            dts: -57,
            pts: 23,
            duration: 40,
            size: 4748,
            md5: "5cacddff1366730254820dd7e54dd547".into()
        }
    );
    assert_eq!(doc.video().len(), 3);
}

#[test]
#[should_panic(expected = "malformed framemd5 line")]
fn framemd5_rejects_malformed_line_in_the_middle() {
    FrameMd5::parse("0, 1, 2\n0, 0, 0, 40, 10, 5cacddff1366730254820dd7e54dd547\n");
}

fn rec(md5: &str) -> PacketRecord {
    PacketRecord {
        stream: 0,
        dts: 0,
        pts: 0,
        duration: 40,
        size: 1,
        md5: md5.into(),
    }
}

#[test]
fn contiguous_run_accepts_wraparound_and_rejects_gaps_and_foreign_packets() {
    let src: Vec<PacketRecord> = ["a", "b", "c", "d"]
        .iter()
        .map(|m| rec(&m.repeat(32)))
        .collect();
    let src_refs: Vec<&PacketRecord> = src.iter().collect();
    let played = [&src[2], &src[3], &src[0], &src[1]];
    assert_eq!(
        framemd5::assert_contiguous_run(&played, &src_refs, "wrap"),
        2
    );
    let gap = [&src[0], &src[2]];
    let result =
        std::panic::catch_unwind(|| framemd5::assert_contiguous_run(&gap, &src_refs, "gap"));
    assert!(result.is_err(), "a gap must fail the check");
    let foreign = rec(&"e".repeat(32));
    let result = std::panic::catch_unwind(|| {
        framemd5::assert_all_in_source(&[&foreign], &src_refs, "foreign")
    });
    assert!(
        result.is_err(),
        "a packet absent from the source must fail the check"
    );
}

#[test]
#[should_panic(expected = "received no video packets")]
fn membership_check_is_never_vacuous() {
    let src = [rec(&"a".repeat(32))];
    framemd5::assert_all_in_source(&[], &[&src[0]], "empty");
}

#[test]
fn amf0_round_trips_a_connect_object() {
    let value = Amf::Object(vec![
        ("app".into(), Amf::str("live")),
        ("n".into(), Amf::Number(3.5)),
        ("b".into(), Amf::Bool(true)),
        ("z".into(), Amf::Null),
    ]);
    let mut bytes = Vec::new();
    value.encode(&mut bytes);
    let mut slice = bytes.as_slice();
    assert_eq!(Amf::decode(&mut slice, 0), Some(value));
    assert!(slice.is_empty());
}

fn assert_fixture_video(fixture: Fixture) {
    let bytes = std::fs::read(fixture.path()).unwrap();
    let summary = flv::assert_starts_with_keyframe(&bytes, fixture.flv_fourcc(), "fixture");
    let keyframes = summary.coded_video().filter(|t| t.frame_type == 1).count();
    let frames = summary.coded_video().count();
    assert!(frames >= 240, "{fixture:?}: {frames} coded video frames");
    let expected_keyframes = (frames as u64 * 40).div_ceil(fixture.gop_ms()) as usize;
    assert!(
        keyframes.abs_diff(expected_keyframes) <= 1,
        "{fixture:?}: {keyframes} keyframes in {frames} frames, GOP {} ms",
        fixture.gop_ms()
    );
    let md5 = FrameMd5::of_video_in(&fixture.ffmpeg(), &fixture.path());
    assert_eq!(md5.video_codec(), Some(fixture.video_codec()));
    assert_eq!(
        md5.video().len(),
        frames,
        "{fixture:?}: framemd5 and FLV tag counts differ"
    );
}

#[test]
fn fixture_h264_has_one_second_gops_and_parses() {
    assert_fixture_video(Fixture::H264Aac);
}

#[test]
fn fixture_long_gop_has_five_second_gops() {
    assert_fixture_video(Fixture::H264LongGop);
}

#[test]
fn fixture_heavy_is_high_bitrate() {
    assert_fixture_video(Fixture::H264Heavy);
    let len = std::fs::metadata(Fixture::H264Heavy.path()).unwrap().len();
    assert!(len > 20_000_000, "heavy fixture is only {len} bytes");
}

#[test]
fn fixture_hevc_is_enhanced_flv() {
    assert_fixture_video(Fixture::HevcAac);
}

#[test]
fn fixture_av1_is_enhanced_flv() {
    assert_fixture_video(Fixture::Av1Aac);
}

/// ffmpeg as an RTMP server (`-listen 1`) that writes what it receives to `out`.
fn ffmpeg_listener(ffmpeg: &Path, port: u16, out: &Path, dir: &Path) -> ChildGuard {
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-listen",
        "1",
        "-i",
    ])
    .arg(format!("rtmp://127.0.0.1:{port}/live/k"))
    .args(["-map", "0", "-c", "copy", "-f", "flv"])
    .arg(out);
    let guard = ChildGuard::spawn("ffmpeg-listen", &mut cmd, dir.join("listen.stderr"));
    // ffmpeg's listener accepts exactly one connection, so probe readiness via /proc, not connect.
    let ready = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string("/proc/net/tcp")
            .map(|t| t.contains(&format!(":{port:04X} 00000000:0000 0A")))
            .unwrap_or(false)
    });
    assert!(ready, "ffmpeg -listen did not listen on {port}");
    guard
}

fn relay_through_ffmpeg_listener(fixture: Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("received.flv");
    let mut listener = ffmpeg_listener(&fixture.ffmpeg(), port, &out, dir.path());
    let url = format!("rtmp://127.0.0.1:{port}/live/k");
    let mut publisher = media::publish_with(fixture, &url, false, false, dir.path(), "pub");
    assert!(
        publisher.wait_timeout(Duration::from_secs(60)).is_some(),
        "publisher hung"
    );
    assert!(
        listener.wait_timeout(Duration::from_secs(20)).is_some(),
        "listener hung"
    );
    let check = media::assert_faithful_relay(fixture, &out, 200, "ffmpeg listen capture");
    assert_eq!(check.first_source_index, 0);
}

#[test]
fn capture_pipeline_verifies_h264_through_ffmpeg_rtmp_listener() {
    relay_through_ffmpeg_listener(Fixture::H264Aac);
}

#[test]
fn capture_pipeline_verifies_hevc_through_ffmpeg_rtmp_listener() {
    relay_through_ffmpeg_listener(Fixture::HevcAac);
}

#[test]
fn capture_pipeline_verifies_av1_through_ffmpeg_rtmp_listener() {
    relay_through_ffmpeg_listener(Fixture::Av1Aac);
}

#[test]
fn raw_client_publishes_to_ffmpeg_rtmp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("received.flv");
    let _listener = ffmpeg_listener(&common::tools::ffmpeg(), port, &out, dir.path());
    let mut client = RawRtmp::connected(port, "live");
    let msid = client.create_stream();
    assert!(msid > 0, "createStream returned stream id {msid}");
    client.publish(msid, "k");
    assert_eq!(
        client.expect_status(Duration::from_secs(10)),
        "NetStream.Publish.Start"
    );
}

#[test]
fn free_ports_are_never_handed_out_twice_in_one_process() {
    // The kernel may give a just-released port out again; a server started with two
    // listeners on one port refuses to start, so the harness must never repeat itself.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let port = free_port();
        assert!(seen.insert(port), "port {port} handed out twice");
    }
}
