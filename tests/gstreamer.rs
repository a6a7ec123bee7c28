//! Proves a second, unrelated RTMP client stack plays from ringcast: GStreamer's rtmp2src
//! receives the stream ffmpeg publishes, and the FLV it writes holds the fixture's video packets
//! byte-identical, starting with the sequence header and a keyframe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fixtures::Fixture;
use common::media;
use common::process::wait_until;
use common::server::Server;
use common::{unique_key, with_context};

#[test]
fn gstreamer_rtmp2src_plays_what_ffmpeg_publishes() {
    let mut server = Server::start();
    let dir = server.scratch();
    let url = server.url("live", &unique_key("gst"));
    let _publisher = media::publish(Fixture::H264Aac, &url, true, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let (mut gst, out) = media::gst_play_to_flv(&url, &dir, "gst");
    let grew = wait_until(Duration::from_secs(15), || {
        std::fs::metadata(&out)
            .map(|m| m.len() > 100_000)
            .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_secs(3));
    gst.interrupt_and_wait(Duration::from_secs(5));
    assert!(
        grew,
        "rtmp2src wrote too little; gst stderr:\n{}\nserver stderr:\n{}",
        gst.stderr(),
        server.stderr()
    );
    server.assert_alive();
    with_context(
        || {
            format!(
                "server stderr:\n{}\ngst stderr:\n{}",
                server.stderr(),
                gst.stderr()
            )
        },
        || media::assert_faithful_relay(Fixture::H264Aac, &out, 75, "gstreamer rtmp2src"),
    );
}
