//! Proves publisher lifecycle rules: a publisher that drops and is replaced within
//! `publisher_grace_ms` does not end the stream for its players (the player stays connected and
//! keeps receiving the new publisher's media), and a second publisher on a live key is refused
//! with `NetStream.Publish.BadName` while the first one carries on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fixtures::Fixture;
use common::framemd5::{self, FrameMd5};
use common::media;
use common::process::wait_until;
use common::rtmp_raw::RawRtmp;
use common::server::Server;
use common::{tools, unique_key};

#[test]
fn publisher_replaced_within_grace_window_keeps_player_receiving() {
    let config = "[fanout]\npublisher_grace_ms = 5000\n";
    let mut server = Server::start_with(1, Some(config));
    let dir = server.scratch();
    let url = server.url("live", &unique_key("grace"));
    let mut first = media::publish(Fixture::H264Aac, &url, true, &dir, "pub-a");
    std::thread::sleep(Duration::from_millis(1500));
    let (mut player, md5_path) = media::play_to_framemd5(&tools::ffmpeg(), &url, &dir, "play");
    assert!(
        wait_until(Duration::from_secs(15), || media::framemd5_count(&md5_path)
            > 0),
        "player got no video from publisher A; server stderr:\n{}",
        server.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    first.kill();
    std::thread::sleep(Duration::from_millis(1000));
    let _second = media::publish(Fixture::H264Aac, &url, true, &dir, "pub-b");
    std::thread::sleep(Duration::from_millis(1000));
    let after_b_started = media::framemd5_count(&md5_path);
    std::thread::sleep(Duration::from_secs(4));
    let later = media::framemd5_count(&md5_path);
    assert!(
        player.is_running(),
        "player exited across the publisher switch; player stderr:\n{}\nserver stderr:\n{}",
        player.stderr(),
        server.stderr()
    );
    assert!(
        later >= after_b_started + 50,
        "player stopped receiving after publisher B started: {after_b_started} -> {later} packets in 4 s"
    );
    player.interrupt_and_wait(Duration::from_secs(5));
    server.assert_alive();
    let source = FrameMd5::of_video_in(&tools::ffmpeg(), &Fixture::H264Aac.path());
    let played = FrameMd5::parse(&std::fs::read_to_string(&md5_path).unwrap());
    framemd5::assert_all_in_source(
        &played.video(),
        &source.video(),
        "player across publisher switch",
    );
}

#[test]
fn second_publisher_on_live_key_is_refused_with_bad_name() {
    let config = "[fanout]\ntakeover = false\n";
    let mut server = Server::start_with(1, Some(config));
    let dir = server.scratch();
    let key = unique_key("dup");
    let url = server.url("live", &key);
    let mut first = media::publish(Fixture::H264Aac, &url, true, &dir, "pub-a");
    std::thread::sleep(Duration::from_millis(1500));
    let mut intruder = RawRtmp::connected(server.port, "live");
    let msid = intruder.create_stream();
    intruder.publish(msid, &key);
    assert_eq!(
        intruder.expect_status(Duration::from_secs(10)),
        "NetStream.Publish.BadName"
    );
    // The first publisher is untouched: still running, and its stream still plays.
    assert!(
        first.is_running(),
        "first publisher exited: {}",
        first.stderr()
    );
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(2.0), &dir, "play");
    player.finish(Duration::from_secs(20));
    server.assert_alive();
    player.assert_faithful(
        &server,
        Fixture::H264Aac,
        25,
        "player of the first publisher",
    );
}
