//! Proves the slow-watcher policy: a watcher that stops reading is disconnected once it has
//! been behind for `slow_watcher_disconnect_ms`, while a normal ffmpeg player on the same stream
//! carries on with every packet, in order, no gap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::fixtures::Fixture;
use common::framemd5::{self, FrameMd5};
use common::media;
use common::process::wait_until;
use common::rtmp_raw::{self, RawRtmp};
use common::server::Server;
use common::{tools, unique_key};
use socket2::{Domain, Socket, Type};

const CONFIG: &str = "
[fanout]
watcher_max_lag_ms = 1000
slow_watcher_disconnect_ms = 2000
";

/// A TCP connection with a tiny receive buffer, so the server feels a stalled reader quickly.
fn small_window_connect(port: u16) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).unwrap();
    stream
}

#[test]
fn stalled_watcher_is_disconnected_while_normal_player_loses_nothing() {
    // ~40 Mbit/s, so kernel socket buffers fill within a second or so of stalling.
    let fixture = Fixture::H264Heavy;
    let mut server = Server::start_with(1, Some(CONFIG));
    let dir = server.scratch();
    let key = unique_key("slow");
    let url = server.url("live", &key);
    let _publisher = media::publish(fixture, &url, true, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let (mut player, md5_path) = media::play_to_framemd5(&tools::ffmpeg(), &url, &dir, "play");
    assert!(
        wait_until(Duration::from_secs(15), || media::framemd5_count(&md5_path)
            > 0),
        "normal player got no video; server stderr:\n{}",
        server.stderr()
    );

    let mut stalled = RawRtmp::over(small_window_connect(server.port), server.port, "live");
    let msid = stalled.create_stream();
    stalled.play(msid, &key);
    // Confirm media is flowing to it, then stop reading altogether.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let msg = stalled
            .read_message(deadline)
            .expect("stalled watcher: waiting for first media");
        if msg.type_id == 9 {
            break;
        }
    }
    let count_at_stall = media::framemd5_count(&md5_path);
    // Buffers fill (~1 s) + lag limit (1 s) + disconnect limit (2 s) + generous margin.
    std::thread::sleep(Duration::from_secs(8));
    // If the server closed us, draining reaches EOF/reset; if not, live data keeps coming.
    rtmp_raw::assert_closed_by_server(
        &mut stalled.stream,
        Duration::from_secs(6),
        "stalled watcher",
    );

    let count_after = media::framemd5_count(&md5_path);
    assert!(
        count_after >= count_at_stall + 150,
        "normal player stalled too: {count_at_stall} -> {count_after} packets over 8+ s"
    );
    assert!(
        player.is_running(),
        "normal player exited: {}",
        player.stderr()
    );
    player.interrupt_and_wait(Duration::from_secs(5));
    server.assert_alive();
    let source = FrameMd5::of_video_in(&fixture.ffmpeg(), &fixture.path());
    let played = FrameMd5::parse(&std::fs::read_to_string(&md5_path).unwrap());
    framemd5::assert_contiguous_run(
        &played.video(),
        &source.video(),
        "normal player beside a stalled one",
    );
}
