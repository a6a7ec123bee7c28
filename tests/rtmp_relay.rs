//! Proves the core RTMP relay with real clients: what the distribution ffmpeg (5.1) publishes
//! reaches ffmpeg players byte-identical (per-packet md5) and gap-free, a player always starts
//! on a keyframe after the sequence header, a player joining mid-GOP gets the cached GOP at once
//! instead of waiting for the next keyframe, and with two workers every player gets media.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::fixtures::Fixture;
use common::framemd5::{self, FrameMd5};
use common::media;
use common::process::wait_until;
use common::server::Server;
use common::{rtmp_raw, tools, unique_key};

#[test]
fn ffmpeg_publish_reaches_ffmpeg_player_byte_identical_starting_on_keyframe() {
    let mut server = Server::start();
    let dir = server.scratch();
    let url = server.url("live", &unique_key("relay"));
    let _publisher = media::publish(Fixture::H264Aac, &url, false, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), &dir, "play");
    player.finish(Duration::from_secs(25));
    server.assert_alive();
    // 5 s of output at 25 fps is 125 packets; 100 leaves room for the player's probe.
    player.assert_faithful(&server, Fixture::H264Aac, 100, "ffmpeg 5.1 player");
}

#[test]
fn with_write_coalescing_a_player_still_gets_every_frame_in_order() {
    // A 40 ms window (longer than a frame interval at 25 fps) makes every write carry frames
    // held back together; the relay must stay byte-identical and gap-free.
    let mut server = Server::start_with(2, Some("[fanout]\nwrite_coalesce_us = 40000\n"));
    let dir = server.scratch();
    let url = server.url("live", &unique_key("coalesce"));
    let _publisher = media::publish(Fixture::H264Aac, &url, false, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), &dir, "play");
    player.finish(Duration::from_secs(25));
    server.assert_alive();
    player.assert_faithful(
        &server,
        Fixture::H264Aac,
        100,
        "player with coalesced writes",
    );
}

#[test]
fn player_joining_mid_gop_starts_from_cached_keyframe_without_waiting() {
    let fixture = Fixture::H264LongGop;
    let mut server = Server::start();
    let dir = server.scratch();
    let url = server.url("live", &unique_key("join"));
    let _publisher = media::publish(fixture, &url, false, &dir, "pub");
    // Join half-way through the first 5 s GOP: the next keyframe is ~2.5 s of real time away.
    std::thread::sleep(Duration::from_millis(2500));
    let started = Instant::now();
    let (mut player, md5_path) = media::play_to_framemd5(&tools::ffmpeg(), &url, &dir, "play");
    let got_first = wait_until(Duration::from_secs(15), || {
        media::framemd5_count(&md5_path) > 0
    });
    let first_packet_after = started.elapsed();
    assert!(
        got_first,
        "player got no video; server stderr:\n{}",
        server.stderr()
    );
    assert!(wait_until(
        Duration::from_secs(10),
        || media::framemd5_count(&md5_path) >= 75
    ));
    player.interrupt_and_wait(Duration::from_secs(5));
    server.assert_alive();

    let source = FrameMd5::of_video_in(&fixture.ffmpeg(), &fixture.path());
    let played = FrameMd5::parse(&std::fs::read_to_string(&md5_path).unwrap());
    let start = framemd5::assert_contiguous_run(&played.video(), &source.video(), "mid-GOP join");
    // Source packet 0 is the keyframe at 0 ms; the next keyframe is packet 125 (5 s). Starting
    // at 0 means the server replayed the cached GOP rather than waiting for packet 125.
    assert_eq!(
        start, 0,
        "the player did not start from the cached GOP's keyframe"
    );
    let half_gop = Duration::from_millis(fixture.gop_ms() / 2);
    assert!(
        first_packet_after < half_gop,
        "first video packet took {first_packet_after:?} (half a GOP is {half_gop:?})"
    );
}

#[test]
fn players_accepted_on_both_workers_all_receive_media() {
    let mut server = Server::start_with(2, None);
    let dir = server.scratch();
    let url = server.url("live", &unique_key("workers"));
    let _publisher = media::publish(Fixture::H264Aac, &url, true, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    // Ten raw players plus six ffmpeg players: SO_REUSEPORT hashes each connection to one of
    // the two workers' listeners, so all sixteen land on one worker with probability 2^-15.
    let deadline = Instant::now() + Duration::from_secs(20);
    let raw_players: Vec<_> = (0..10)
        .map(|_| {
            let mut raw = rtmp_raw::RawRtmp::connected(server.port, "live");
            let msid = raw.create_stream();
            raw.play(msid, url.rsplit('/').next().unwrap_or_default());
            raw
        })
        .collect();
    for (i, mut raw) in raw_players.into_iter().enumerate() {
        let video = std::iter::from_fn(|| raw.read_message(deadline).ok())
            .find(|m| m.type_id == 9 && m.payload.len() > 5);
        assert!(video.is_some(), "raw player {i} received no video");
    }
    let log = server.stderr();
    for worker in ["worker=0", "worker=1"] {
        assert!(
            log.lines()
                .any(|l| l.contains("play started") && l.contains(worker)),
            "no player was accepted on {worker}:\n{log}"
        );
    }
    let players: Vec<_> = (0..6)
        .map(|i| media::play_to_flv(&tools::ffmpeg(), &url, Some(3.0), &dir, &format!("play{i}")))
        .collect();
    let mut players = players;
    for player in &mut players {
        player.finish(Duration::from_secs(30));
    }
    server.assert_alive();
    for (i, player) in players.iter().enumerate() {
        player.assert_faithful(&server, Fixture::H264Aac, 50, &format!("player {i} of 6"));
    }
}
