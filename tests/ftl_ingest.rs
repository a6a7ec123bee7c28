//! Proves FTL ingest end to end: the loadgen's FTL publisher (real H.264 Annex-B and Ogg Opus
//! made here with ffmpeg) publishes to ringcast over TCP control + RTP/UDP, and real players
//! play `rtmp://…/ftl/77`.
//!
//! Audio: FTL audio is Opus. Players that ask for it (HTTP-FLV `?audio=opus`, RTMP players
//! listing Opus in `fourCcList`) get Enhanced RTMP Opus tags; every other player gets the
//! stream's AAC rendition (see tests/audio_rendition.rs).
//!
//! The HMAC test vector is a unit test in `src/proto/ftl/mod.rs`. Every wait has a generous
//! deadline; nothing asserts on timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::framemd5::assert_contiguous_run;
use common::ftl::{
    Loadgen, SECRET, assert_code_then_close, control, decode_errors, decoded_video, field,
    logged_udp_port, make_sources, raw_stream_request, read_line, start_ftl,
};
use common::media;
use common::process::{run_ok, wait_until};
use common::{tools, with_context};

#[test]
fn loadgen_publish_plays_on_modern_ffmpeg_with_opus_audio() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &[],
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let url = format!(
        "http://127.0.0.1:{}/ftl/77.flv?audio=opus",
        ftl.server.http_port
    );
    let mut player = media::play_to_flv(&tools::ffmpeg_modern(), &url, Some(4.0), &dir, "play");
    player.finish(Duration::from_secs(30));
    let summary = loadgen.summary(Duration::from_secs(40));
    let context = || {
        format!(
            "server stderr:\n{}\nplayer stderr:\n{}\n{}",
            ftl.server.stderr(),
            player.stderr(),
            loadgen.logs()
        )
    };
    with_context(context, || {
        assert_eq!(
            field(&summary, "server_code"),
            -1,
            "the server ended the stream: {summary}"
        );
        let modern = tools::ffmpeg_modern();
        let errors = decode_errors(&modern, &player.out, &["0:v", "0:a"]);
        assert!(errors.trim().is_empty(), "decode errors: {errors}");
        let played = decoded_video(&modern, &player.out);
        assert!(
            played.video().len() > 25,
            "only {} video frames played",
            played.video().len()
        );
        let source = decoded_video(&modern, &h264);
        assert_contiguous_run(&played.video(), &source.video(), "FTL → E-RTMP video");
        let probe = Command::new(&modern)
            .arg("-hide_banner")
            .arg("-i")
            .arg(&player.out)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&probe.stderr);
        assert!(
            listing.lines().any(|l| l.contains("Audio: opus")),
            "played stream has no Opus audio:\n{listing}"
        );
    });
}

#[test]
fn wrong_key_gets_405_and_close_then_right_key_streams() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let mut c = control(ftl.ftl);
    c.write_all(b"HMAC\r\n\r\n").unwrap();
    let challenge_line = read_line(&mut c).unwrap();
    let challenge = hex::decode(challenge_line.strip_prefix("200 ").unwrap()).unwrap();
    assert_eq!(challenge.len(), 128);
    let digest = hex::encode(ringcast::proto::ftl::hmac_digest(
        b"not-the-secret",
        &challenge,
    ));
    c.write_all(format!("CONNECT 77 ${digest}\r\n\r\n").as_bytes())
        .unwrap();
    assert_code_then_close(&mut c, "405", "wrong key");

    let (h264, ogg) = make_sources(&dir);
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &["--duration", "5"],
        &dir,
        "retry",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (mut player, md5) = media::play_to_framemd5(
        &tools::ffmpeg_modern(),
        &ftl.server.url("ftl", "77"),
        &dir,
        "play",
    );
    let flowing = wait_until(Duration::from_secs(20), || media::framemd5_count(&md5) > 10);
    let summary = loadgen.summary(Duration::from_secs(40));
    player.kill();
    with_context(
        || {
            format!(
                "server stderr:\n{}\n{}\nplayer:\n{}",
                ftl.server.stderr(),
                loadgen.logs(),
                player.stderr()
            )
        },
        || {
            assert!(
                flowing,
                "the retry with the right key did not reach the player"
            );
            assert_eq!(field(&summary, "server_code"), -1, "{summary}");
        },
    );
}

#[test]
fn five_percent_loss_is_nacked_exactly_and_played_video_has_no_missing_frames() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    // The player joins first and stays to the end, so it sees every access unit.
    let url = ftl.server.url("ftl", "77");
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &["--loss", "0.05", "--seed", "7"],
        &dir,
        "lossy",
    );
    let mut player = media::play_to_flv(&tools::ffmpeg_modern(), &url, None, &dir, "play");
    let summary = loadgen.summary(Duration::from_secs(60));
    // Let the tail reach the player, then stop it (ffmpeg finalises the file on SIGINT).
    std::thread::sleep(Duration::from_millis(1500));
    player.stop();
    with_context(
        || {
            format!(
                "server stderr:\n{}\n{}\nplayer:\n{}",
                ftl.server.stderr(),
                loadgen.logs(),
                player.stderr()
            )
        },
        || {
            let dropped = field(&summary, "dropped");
            assert!(
                dropped > 5,
                "too few packets dropped to prove anything: {summary}"
            );
            assert_eq!(
                field(&summary, "nacked_not_dropped"),
                0,
                "NACKs for packets that were not lost: {summary}"
            );
            assert_eq!(
                field(&summary, "dropped_not_nacked"),
                0,
                "lost packets never NACKed: {summary}"
            );
            assert!(field(&summary, "retransmitted") >= dropped, "{summary}");
            let modern = tools::ffmpeg_modern();
            let errors = decode_errors(&modern, &player.out, &["0:v"]);
            assert!(errors.trim().is_empty(), "decode errors: {errors}");
            let played = decoded_video(&modern, &player.out);
            let source = decoded_video(&modern, &h264);
            assert_contiguous_run(&played.video(), &source.video(), "lossy FTL video");
            // The player joined before the publisher: it must have every access unit but the
            // few the stream may have started before its subscription took effect.
            let missing = source.video().len().saturating_sub(played.video().len());
            assert!(
                missing <= 25,
                "{missing} of {} source frames never played",
                source.video().len()
            );
        },
    );
}

#[test]
fn legacy_ffmpeg_plays_the_video_of_an_ftl_stream() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &[],
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.join("legacy.flv");
    let mut cmd = media::player_command(&tools::ffmpeg(), &ftl.server.url("ftl", "77"));
    cmd.args(["-map", "0:v", "-c", "copy", "-t", "3", "-f", "flv"])
        .arg(&out);
    let played = run_ok("ffmpeg 5.1 player", &mut cmd, Duration::from_secs(40));
    let _ = loadgen.summary(Duration::from_secs(40));
    with_context(
        || {
            format!(
                "server stderr:\n{}\nplayer:\n{}",
                ftl.server.stderr(),
                String::from_utf8_lossy(&played.stderr)
            )
        },
        || {
            let errors = decode_errors(&tools::ffmpeg(), &out, &["0:v"]);
            assert!(
                errors.trim().is_empty(),
                "ffmpeg 5.1 decode errors: {errors}"
            );
            let frames = decoded_video(&tools::ffmpeg(), &out);
            assert!(
                frames.video().len() > 25,
                "ffmpeg 5.1 played {} frames",
                frames.video().len()
            );
            let source = decoded_video(&tools::ffmpeg(), &h264);
            assert_contiguous_run(&frames.video(), &source.video(), "FTL video on ffmpeg 5.1");
        },
    );
}

#[test]
fn bad_input_ends_only_the_offending_session_and_the_stream_keeps_playing() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &["--duration", "16"],
        &dir,
        "pub",
    );
    let mut server = ftl.server;
    let port_known = wait_until(Duration::from_secs(15), || {
        logged_udp_port(&server).is_some()
    });
    assert!(port_known, "no FTL session started: {}", server.stderr());
    let media_port = logged_udp_port(&server).unwrap();
    let (mut player, md5) = media::play_to_framemd5(
        &tools::ffmpeg_modern(),
        &server.url("ftl", "77"),
        &dir,
        "play",
    );
    assert!(
        wait_until(Duration::from_secs(20), || media::framemd5_count(&md5) > 5),
        "stream never played: {}",
        server.stderr()
    );

    let media_addr = SocketAddr::from(([127, 0, 0, 1], media_port));
    // Garbage and a wrong SSRC from the control IP (another port: the filter has latched the
    // publisher's), and valid-looking RTP from another loopback IP.
    let same_ip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_ip = UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut wrong_ssrc = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    wrong_ssrc.extend_from_slice(&[0x65; 100]);
    let mut right_ssrc = vec![0x80, 96, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 78];
    right_ssrc.extend_from_slice(&[0x41; 100]);
    for i in 0..200u32 {
        same_ip
            .send_to(&i.to_be_bytes().repeat(i as usize % 40), media_addr)
            .unwrap();
        same_ip.send_to(&wrong_ssrc, media_addr).unwrap();
        other_ip.send_to(&right_ssrc, media_addr).unwrap();
    }

    // A 10 kB control line: 400 and close.
    let mut c = control(ftl.ftl);
    // Written 1 kB at a time so the server has read all of it when it closes (no RST that
    // could discard its reply); writes fail once it has closed.
    for _ in 0..10 {
        if c.write_all(&[b'A'; 1024]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.write_all(b"\n");
    assert_code_then_close(&mut c, "400", "10 kB control line");
    // CONNECT before HMAC: 400 and close.
    let mut c = control(ftl.ftl);
    c.write_all(format!("CONNECT 77 ${}\r\n\r\n", "00".repeat(64)).as_bytes())
        .unwrap();
    assert_code_then_close(&mut c, "400", "CONNECT before HMAC");

    let before = media::framemd5_count(&md5);
    let still_flowing = wait_until(Duration::from_secs(20), || {
        media::framemd5_count(&md5) > before + 25
    });
    server.assert_alive();
    let summary = loadgen.summary(Duration::from_secs(60));
    player.kill();
    let log = server.stderr();
    with_context(
        || {
            format!(
                "server stderr:\n{log}\n{}\nplayer:\n{}",
                loadgen.logs(),
                player.stderr()
            )
        },
        || {
            assert!(
                still_flowing,
                "the FTL stream stopped playing after the bad input"
            );
            assert_eq!(
                field(&summary, "server_code"),
                -1,
                "the publisher's session was ended: {summary}"
            );
            let wait = Instant::now() + Duration::from_secs(10);
            while !server.stderr().contains("FTL media ended") && Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(100));
            }
            let log = server.stderr();
            let ended = log
                .lines()
                .find(|l| l.contains("FTL media ended"))
                .expect("no session summary logged");
            let foreign: u64 = ended
                .split("foreign=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .expect("foreign counter");
            assert!(
                foreign >= 600,
                "foreign datagrams were not all dropped and counted: {ended}"
            );
        },
    );
}

#[test]
fn no_media_after_accept_gets_408() {
    let ftl = start_ftl("");
    let (mut c, reply) = raw_stream_request(ftl.ftl);
    let reply = reply.unwrap_or_default();
    assert!(reply.starts_with("200. Use UDP port "), "{reply}");
    // no_media_timeout_ms is 4 s; the read timeout is 15 s.
    assert_code_then_close(&mut c, "408", "no media");
}

#[test]
fn second_publisher_gets_406_when_takeover_is_off() {
    let ftl = start_ftl("takeover = false");
    let (_first, reply) = raw_stream_request(ftl.ftl);
    assert!(reply.unwrap_or_default().starts_with("200. Use UDP port "));
    let (mut second, reply) = raw_stream_request(ftl.ftl);
    assert_eq!(reply.as_deref(), Some("406"), "{}", ftl.server.stderr());
    assert_eq!(read_line(&mut second), None, "no close after 406");
}

#[test]
fn unknown_channel_gets_405_and_close() {
    let ftl = start_ftl("");
    let mut c = control(ftl.ftl);
    c.write_all(b"HMAC\n").unwrap();
    let line = read_line(&mut c).unwrap();
    let challenge = hex::decode(line.strip_prefix("200 ").unwrap()).unwrap();
    let digest = hex::encode(ringcast::proto::ftl::hmac_digest(
        SECRET.as_bytes(),
        &challenge,
    ));
    c.write_all(format!("CONNECT 78 ${digest}\n").as_bytes())
        .unwrap();
    assert_code_then_close(&mut c, "405", "unknown channel");
}

#[test]
fn attributes_after_the_stream_request_get_400_and_close() {
    let ftl = start_ftl("");
    let (mut c, reply) = raw_stream_request(ftl.ftl);
    assert!(reply.unwrap_or_default().starts_with("200. Use UDP port "));
    c.write_all(b"VideoCodec: H264\r\n\r\n").unwrap();
    assert_code_then_close(&mut c, "400", "attribute after '.'");
}

#[test]
fn hmac_challenges_are_rate_limited_per_source_ip() {
    let ftl = start_ftl("hmac_attempts_per_minute_per_ip = 2");
    for _ in 0..2 {
        let mut c = control(ftl.ftl);
        c.write_all(b"HMAC\n").unwrap();
        let line = read_line(&mut c).unwrap();
        assert!(line.starts_with("200 "), "{line}");
    }
    let mut c = control(ftl.ftl);
    let _ = c.write_all(b"HMAC\n");
    assert_code_then_close(&mut c, "401", "third challenge within a minute");
    // Another source IP has its own budget.
    let local = SocketAddr::from(([127, 0, 0, 2], 0));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&ftl.ftl.into()).unwrap();
    let mut other: TcpStream = socket.into();
    other
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    other.write_all(b"HMAC\n").unwrap();
    let line = read_line(&mut other).unwrap();
    assert!(line.starts_with("200 "), "{line}");
}

#[test]
fn a_reconnecting_streamer_takes_over_by_default() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let key = format!("77-{SECRET}");
    let mut first = Loadgen::start(
        ftl.ftl,
        &key,
        &h264,
        &ogg,
        &["--duration", "30"],
        &dir,
        "first",
    );
    let (mut player, md5) = media::play_to_framemd5(
        &tools::ffmpeg_modern(),
        &ftl.server.url("ftl", "77"),
        &dir,
        "play",
    );
    let playing = wait_until(Duration::from_secs(20), || media::framemd5_count(&md5) > 10);
    let mut second = Loadgen::start(
        ftl.ftl,
        &key,
        &h264,
        &ogg,
        &["--duration", "4"],
        &dir,
        "second",
    );
    let first_summary = first.summary(Duration::from_secs(40));
    let second_summary = second.summary(Duration::from_secs(40));
    let after_takeover = media::framemd5_count(&md5);
    player.kill();
    with_context(
        || {
            format!(
                "server stderr:\n{}\n{}\n{}",
                ftl.server.stderr(),
                first.logs(),
                second.logs()
            )
        },
        || {
            assert!(playing, "the first publisher never reached the player");
            assert_eq!(
                field(&first_summary, "server_code"),
                902,
                "the first session was not closed: {first_summary}"
            );
            assert_eq!(
                field(&second_summary, "server_code"),
                -1,
                "{second_summary}"
            );
            assert!(
                after_takeover > 10 + 25,
                "the player did not keep playing after the takeover ({after_takeover} frames)"
            );
        },
    );
}

#[test]
fn shutdown_ends_live_ftl_streams_with_410() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let key = format!("77-{SECRET}");
    let mut publisher = Loadgen::start(
        ftl.ftl,
        &key,
        &h264,
        &ogg,
        &["--duration", "30"],
        &dir,
        "pub",
    );
    let live = wait_until(Duration::from_secs(20), || {
        logged_udp_port(&ftl.server).is_some()
    });
    assert!(
        live,
        "the FTL stream never started: {}",
        ftl.server.stderr()
    );
    std::thread::sleep(Duration::from_secs(1));
    ftl.server.signal("TERM");
    let summary = publisher.summary(Duration::from_secs(20));
    assert_eq!(
        field(&summary, "server_code"),
        410,
        "server stderr:\n{}\n{}",
        ftl.server.stderr(),
        publisher.logs()
    );
}
