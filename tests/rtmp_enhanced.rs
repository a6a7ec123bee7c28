//! Proves Enhanced RTMP relay: a modern ffmpeg publishing HEVC (`hvc1`) or AV1 (`av01`) in
//! E-RTMP video tags is played back by a modern ffmpeg as the same codec, starting with the
//! sequence header and a keyframe, every packet byte-identical and gap-free.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fixtures::Fixture;
use common::media;
use common::server::Server;
use common::{tools, unique_key};

fn relay_enhanced(fixture: Fixture) {
    let mut server = Server::start();
    let dir = server.scratch();
    let url = server.url("live", &unique_key("ertmp"));
    let _publisher = media::publish(fixture, &url, false, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(&tools::ffmpeg_modern(), &url, Some(5.0), &dir, "play");
    player.finish(Duration::from_secs(25));
    server.assert_alive();
    player.assert_faithful(&server, fixture, 100, &format!("{fixture:?} over E-RTMP"));
}

#[test]
fn hevc_over_enhanced_rtmp_is_relayed_byte_identical() {
    relay_enhanced(Fixture::HevcAac);
}

#[test]
fn av1_over_enhanced_rtmp_is_relayed_byte_identical() {
    relay_enhanced(Fixture::Av1Aac);
}
