//! The HTTP listener with real clients: what ffmpeg publishes over RTMP (or broadcasts as FLV
//! over fstream) reaches an ffmpeg player of `http://HOST/APP/KEY.flv` byte-identical and
//! starting on a keyframe; the play rules (fstream channel passwords, `play = false`, waiting
//! or 404 for a stream not live); every malformed or unserved request gets its status and a
//! close while an HTTP-FLV player beside it loses nothing; a slowloris head is cut at the
//! deadline; a reader that stops reading is dropped by the slow-watcher policy; `/healthz`,
//! `/readyz` (503 while draining after SIGTERM) and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::fixtures::Fixture;
use common::healthy::HealthyStream;
use common::http::{self, HttpResponse};
use common::process::wait_until;
use common::rtmp_raw::assert_closed_by_server;
use common::server::Server;
use common::{fstream, media, tools, unique_key, with_context};

fn flv_path(key: &str) -> String {
    format!("/live/{key}.flv")
}

#[test]
fn rtmp_publish_plays_over_http_flv_byte_identical_starting_on_keyframe() {
    let mut server = Server::start();
    let dir = server.scratch();
    let key = unique_key("hflv");
    let _publisher = media::publish(
        Fixture::H264Aac,
        &server.url("live", &key),
        false,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let url = server.http_url(&flv_path(&key));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), &dir, "play");
    player.finish(Duration::from_secs(25));
    server.assert_alive();
    // 5 s of output at 25 fps is 125 packets; 100 leaves room for the player's probe.
    player.assert_faithful(&server, Fixture::H264Aac, 100, "HTTP-FLV player");
    let log = server.stderr();
    assert!(log.contains("HTTP-FLV watch started"), "{log}");
    assert!(!log.contains(&key), "the stream key is in the log:\n{log}");
}

#[test]
fn a_player_that_arrives_before_the_publisher_waits_and_starts_at_the_first_keyframe() {
    let mut server = Server::start();
    let dir = server.scratch();
    let key = unique_key("early");
    let url = server.http_url(&flv_path(&key));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(4.0), &dir, "play");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        player.child.is_running(),
        "the player gave up on a stream not live yet: {}",
        player.stderr()
    );
    let _publisher = media::publish(
        Fixture::H264Aac,
        &server.url("live", &key),
        false,
        &dir,
        "pub",
    );
    player.finish(Duration::from_secs(30));
    server.assert_alive();
    let check = player.assert_faithful(&server, Fixture::H264Aac, 75, "player that came first");
    assert_eq!(
        check.first_source_index, 0,
        "the early player did not start at the stream's first keyframe"
    );
}

#[test]
fn without_waiting_a_stream_that_is_not_live_is_404_and_a_live_one_plays() {
    let mut server = Server::start_with(1, Some("[http]\nwait_for_publisher = false\n"));
    let dir = server.scratch();
    let key = unique_key("nowait");
    let addr = server.http_addr();
    assert_eq!(http::get(&addr, &flv_path(&key)).status, 404);
    let _publisher = media::publish(
        Fixture::H264Aac,
        &server.url("live", &key),
        true,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let head = http::exchange(
        &addr,
        format!("HEAD {} HTTP/1.1\r\nHost: x\r\n\r\n", flv_path(&key)).as_bytes(),
    );
    assert_eq!(head.status, 200, "{}", server.stderr());
    assert_eq!(head.header("content-type"), Some("video/x-flv"));
    assert!(head.body.is_empty(), "a HEAD answer has no body");
    let mut player = media::play_to_flv(
        &tools::ffmpeg(),
        &server.http_url(&flv_path(&key)),
        Some(3.0),
        &dir,
        "play",
    );
    player.finish(Duration::from_secs(25));
    server.assert_alive();
    player.assert_faithful(&server, Fixture::H264Aac, 50, "player of a live stream");
}

/// A server whose users directory holds `fier.ini` (password 123), the fstream reference layout.
fn fstream_server() -> (Server, tempfile::TempDir) {
    let users = tempfile::tempdir().unwrap();
    std::fs::write(users.path().join("fier.ini"), "[DEFAULT]\npassword=123\n").unwrap();
    let config = format!(
        "[fstream]\nusers_dir = {:?}\n",
        users.path().display().to_string()
    );
    (Server::start_with(1, Some(&config)), users)
}

/// The fstream handshake frame: u32 BE length, NUL, payload.
fn fstream_frame(payload: &str) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(payload.as_bytes());
    out
}

#[test]
fn an_fstream_flv_broadcast_plays_over_http_flv_with_its_channel_password() {
    let (mut server, _users) = fstream_server();
    let dir = server.scratch();
    let addr = server.http_addr();
    let channel = unique_key("chan");
    let path = format!("/fstream/fier/{channel}.flv");
    assert_eq!(
        http::get(&addr, &path).status,
        404,
        "a channel that is not live"
    );
    let (_source, _broadcaster) = fstream::broadcast_flv(
        &server,
        Fixture::H264Aac,
        &format!("broadcast,user=fier,user-password=123,channel={channel},channel-password=4 5&6"),
        &dir,
        "bcast",
    );
    assert!(
        wait_until(Duration::from_secs(20), || server
            .stderr()
            .contains("fstream broadcast started")),
        "the broadcast did not start: {}",
        server.stderr()
    );
    std::thread::sleep(Duration::from_millis(1000));
    for query in ["", "?channel-password=wrong", "?channel-password=4+5"] {
        let refused = http::get(&addr, &format!("{path}{query}"));
        assert_eq!(
            refused.status,
            403,
            "query {query:?}: {}",
            refused.body_text()
        );
    }
    // The password "4 5&6", form-encoded.
    let url = server.http_url(&format!("{path}?channel-password=4+5%266"));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), &dir, "play");
    player.finish(Duration::from_secs(30));
    server.assert_alive();
    player.assert_faithful(&server, Fixture::H264Aac, 100, "HTTP-FLV player of fstream");
    let log = server.stderr();
    assert!(
        !log.contains("4 5&6") && !log.contains("channel-password="),
        "a password or query is in the log:\n{log}"
    );

    // A channel of opaque bytes has no FLV form.
    let opaque = unique_key("raw");
    let mut raw = TcpStream::connect(server.fstream_addr()).unwrap();
    raw.write_all(&fstream_frame(&format!(
        "broadcast,user=fier,user-password=123,channel={opaque}"
    )))
    .unwrap();
    raw.write_all(&[0x55; 64]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        server.stderr().matches("fstream broadcast started").count() >= 2
    }));
    let refused = http::get(&addr, &format!("/fstream/fier/{opaque}.flv"));
    assert_eq!(refused.status, 406, "{}", refused.body_text());
}

/// Sends `request` and checks the answer's status, that the server closed (the helper reads to
/// the close), and that the body gives a reason.
fn assert_refused(addr: &str, request: &[u8], status: u16, what: &str) -> HttpResponse {
    let response = http::exchange(addr, request);
    assert_eq!(
        response.status,
        status,
        "{what}: {} {}",
        response.head,
        response.body_text()
    );
    assert!(!response.body.is_empty(), "{what}: no reason in the body");
    response
}

#[test]
fn bad_requests_get_their_status_while_an_http_flv_player_plays_on() {
    let config = "[[rtmp.apps]]\nname = \"private\"\nplay = false\n";
    let mut server = Server::start_with(1, Some(config));
    let dir = server.scratch();
    let mut healthy = HealthyStream::start_over_http(&server, &dir);
    let addr = server.http_addr();

    assert_eq!(http::get(&addr, "/nope").status, 404);
    assert_eq!(http::get(&addr, "/live/no-suffix").status, 404);
    assert_eq!(http::get(&addr, "/live//x.flv").status, 404);
    // A refused watch is a well-formed request: it closes only when asked to.
    assert_refused(
        &addr,
        b"GET /private/k.flv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        403,
        "play = false",
    );
    assert_refused(
        &addr,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00],
        400,
        "a TLS hello",
    );
    assert_refused(
        &addr,
        b"\x03\x00\x00\x00\x00\x00\x00\x00",
        400,
        "an RTMP C0C1",
    );
    assert_refused(&addr, b"GET / HTTP/1.1\r\n\r\n", 400, "no Host");
    assert_refused(
        &addr,
        b"GET /%zz.flv HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "bad escape",
    );
    assert_refused(&addr, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2");
    let post = assert_refused(
        &addr,
        b"POST /live/k.flv HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        405,
        "POST",
    );
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    let mut oversize = b"GET /live/k.flv HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    oversize.resize(16 * 1024, b'a');
    oversize.extend_from_slice(b"\r\n\r\n");
    assert_refused(&addr, &oversize, 431, "a 16 KiB head");
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..40 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_refused(&addr, &many, 431, "40 header fields");

    healthy.assert_still_flowing(&mut server);
    assert_eq!(http::get(&addr, "/healthz").status, 200);
}

#[test]
fn a_request_head_that_does_not_arrive_in_time_is_cut() {
    let mut server = Server::start_with(1, Some("[http]\nrequest_timeout_ms = 1000\n"));
    let addr = server.http_addr();
    // Half a request line, then silence.
    let mut silent = http::connect(&addr);
    silent.write_all(b"GET /live/x.fl").unwrap();
    // A byte every 300 ms: never idle, still too slow for the whole head.
    let mut trickle = http::connect(&addr);
    let trickler = std::thread::spawn(move || {
        let started = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).is_err() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("the trickling client was never cut");
    });
    let silent_took = assert_closed_by_server(&mut silent, Duration::from_secs(10), "silent");
    assert!(
        silent_took >= Duration::from_millis(900),
        "cut after {silent_took:?}, before the 1 s deadline"
    );
    let trickle_took = trickler.join().unwrap();
    assert!(
        trickle_took < Duration::from_secs(10),
        "trickler cut only after {trickle_took:?}"
    );
    server.assert_alive();
    assert_eq!(http::get(&addr, "/healthz").status, 200);
    let log = server.stderr();
    assert!(
        log.matches("HTTP connection closed before its request arrived")
            .count()
            >= 2,
        "{log}"
    );
}

/// A TCP connection with a tiny receive buffer, so the server feels a stalled reader quickly.
fn small_window_connect(port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    socket.into()
}

#[test]
fn an_http_flv_watcher_that_stops_reading_is_dropped_by_the_slow_watcher_policy() {
    let config = "[fanout]\nwatcher_max_lag_ms = 1000\nslow_watcher_disconnect_ms = 2000\n";
    let mut server = Server::start_with(1, Some(config));
    let dir = server.scratch();
    let key = unique_key("slowhttp");
    let _publisher = media::publish(
        Fixture::H264Heavy,
        &server.url("live", &key),
        true,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut stalled = small_window_connect(server.http_port);
    stalled
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", flv_path(&key)).as_bytes())
        .unwrap();
    // Never read: buffers fill (~1 s) + lag limit (1 s) + disconnect limit (2 s) + margin.
    std::thread::sleep(Duration::from_secs(8));
    assert_closed_by_server(
        &mut stalled,
        Duration::from_secs(6),
        "stalled HTTP-FLV watcher",
    );
    server.assert_alive();
    let addr = server.http_addr();
    with_context(
        || server.stderr(),
        || {
            assert!(
                http::metric(
                    &addr,
                    "ringcast_slow_watcher_disconnects_total{protocol=\"http-flv\"}"
                ) >= 1
            );
            assert_eq!(
                http::metric(&addr, "ringcast_watchers{protocol=\"http-flv\"}"),
                0
            );
        },
    );
}

#[test]
fn health_readiness_and_cors_preflight_on_one_kept_alive_connection() {
    let mut server = Server::start();
    let addr = server.http_addr();
    let mut conn = http::connect(&addr);
    let mut ask = |request: &str, head_only: bool| {
        conn.write_all(request.as_bytes()).unwrap();
        http::read_response(&mut conn, head_only)
    };
    let health = ask("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!((health.status, health.body_text().as_str()), (200, "ok\n"));
    assert_eq!(health.header("access-control-allow-origin"), Some("*"));
    let ready = ask("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(ready.status, 200);
    let head = ask("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4"))
    );
    let preflight = ask(
        "OPTIONS /live/k.flv HTTP/1.1\r\nHost: x\r\nOrigin: http://player.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
        true,
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("GET"))
    );
    let last = ask(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(last.status, 200);
    assert_closed_by_server(&mut conn, Duration::from_secs(5), "after Connection: close");
    server.assert_alive();
}

#[test]
fn readyz_is_503_while_draining_after_sigterm_and_the_server_then_exits() {
    let mut server = Server::start_with(1, Some("[server]\nshutdown_drain_ms = 3000\n"));
    let addr = server.http_addr();
    assert_eq!(http::get(&addr, "/readyz").status, 200);
    assert_eq!(http::metric(&addr, "ringcast_ready"), 1);
    server.signal("TERM");
    assert!(
        wait_until(Duration::from_secs(2), || http::get(&addr, "/readyz")
            .status
            == 503),
        "readiness was not withdrawn: {}",
        server.stderr()
    );
    // Draining: still serving everything else.
    assert_eq!(http::get(&addr, "/healthz").status, 200);
    assert_eq!(http::metric(&addr, "ringcast_ready"), 0);
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "the server did not exit cleanly after the drain: {status:?}\n{}",
        server.stderr()
    );
    assert!(server.stderr().contains("draining"));
}

#[test]
fn metrics_follow_a_publisher_and_an_http_flv_watcher() {
    let mut server = Server::start();
    let dir = server.scratch();
    let addr = server.http_addr();
    let watchers = "ringcast_watchers{protocol=\"http-flv\"}";
    let bytes = "ringcast_watcher_bytes_sent_total{protocol=\"http-flv\"}";
    assert_eq!(http::metric(&addr, watchers), 0);
    assert_eq!(http::metric(&addr, "ringcast_streams_live"), 0);
    let mut healthy = HealthyStream::start_over_http(&server, &dir);
    with_context(
        || server.stderr(),
        || {
            assert_eq!(http::metric(&addr, watchers), 1);
            assert_eq!(
                http::metric(&addr, "ringcast_publishers{protocol=\"rtmp\"}"),
                1
            );
            assert_eq!(http::metric(&addr, "ringcast_streams_live"), 1);
            assert!(http::metric(&addr, "ringcast_frames_ingested_total") > 0);
            assert!(
                http::metric(
                    &addr,
                    "ringcast_connections_accepted_total{listener=\"rtmp\"}"
                ) >= 1
            );
            // The player's connection plus this scrape's own, at least.
            assert!(
                http::metric(
                    &addr,
                    "ringcast_connections_accepted_total{listener=\"http\"}"
                ) >= 2
            );
            let sent = http::metric(&addr, bytes);
            assert!(wait_until(Duration::from_secs(5), || http::metric(
                &addr, bytes
            ) > sent));
        },
    );
    healthy.player.interrupt_and_wait(Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || http::metric(&addr, watchers)
            == 0),
        "the watcher gauge did not go back down: {}",
        http::get(&addr, "/metrics").body_text()
    );
    server.assert_alive();
}
