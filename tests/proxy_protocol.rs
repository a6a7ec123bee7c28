//! PROXY protocol on the listeners: raw v1 and v2 headers written before RTMP, fstream, HTTP
//! and FTL make the header's source the client everywhere the server names or counts one (the
//! log, the FTL rate limit); a connection without a valid header is closed alone; and a real
//! HAProxy with `send-proxy-v2` and `send-proxy` in front of the server relays ffmpeg
//! byte-faithfully while its health checks (TCP, and `GET /readyz` on the HTTP port) pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::fixtures::Fixture;
use common::ftl::{read_line, start_ftl};
use common::media;
use common::process::wait_until;
use common::proxy::{Haproxy, v1_header, v2_header, v2_local};
use common::rtmp_raw::{self, RawRtmp, assert_closed_by_server, chunk_message};
use common::server::Server;
use common::{tools, unique_key, with_context};

/// Where the test clients claim to come from: documentation addresses, never contacted.
fn client_v4(port: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], port))
}

fn client_v6(port: u16) -> SocketAddr {
    SocketAddr::new("2001:db8::7".parse().unwrap(), port)
}

fn front_end(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 1], port))
}

fn front_end_v6(port: u16) -> SocketAddr {
    SocketAddr::new("2001:db8::1".parse().unwrap(), port)
}

fn rtmp_server(extra_rtmp: &str) -> Server {
    Server::start_with(
        1,
        Some(&format!("[rtmp]\nproxy_protocol = true\n{extra_rtmp}")),
    )
}

/// An AVC keyframe (NALU packet) whose payload is marked with `n`.
fn keyframe(n: u8) -> Vec<u8> {
    let mut payload = vec![0x17, 0x01, 0, 0, 0, 0, 0, 0, 5, 0x65];
    payload.extend(std::iter::repeat_n(n, 64));
    payload
}

/// A raw RTMP publisher behind `header` on `key`, publishing started.
fn publisher(server: &Server, header: &[u8], key: &str) -> (RawRtmp, u32) {
    let mut client = RawRtmp::over_after(rtmp_raw::tcp(server.port), header, server.port, "live");
    let msid = client.create_stream();
    client.publish(msid, key);
    let status = client.expect_status(Duration::from_secs(10));
    assert_eq!(status, "NetStream.Publish.Start", "{}", server.stderr());
    (client, msid)
}

fn send_video(client: &mut RawRtmp, msid: u32, timestamp: u32, payload: &[u8]) {
    let message = chunk_message(6, timestamp, 9, msid, payload, 128);
    client.send_raw(&message).unwrap();
}

/// Reads until a video message equal to `payload` arrives.
fn expect_video(player: &mut RawRtmp, payload: &[u8], server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match player.read_message(deadline) {
            Ok(m) if m.type_id == 9 && m.payload == payload => return,
            Ok(_) => {}
            Err(e) => panic!(
                "the player never got video {:?}: {e}\nserver stderr:\n{}",
                payload.last(),
                server.stderr()
            ),
        }
    }
}

/// The value of `key` (e.g. `peer=`) in a log line, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line.find(key).map_or(line.len(), |i| i + key.len());
    line[at..].split(' ').next().unwrap_or_default()
}

/// The server log's lines containing `what`.
fn log_lines(server: &Server, what: &str) -> Vec<String> {
    server
        .stderr()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

#[test]
fn rtmp_behind_v1_and_v2_headers_plays_and_logs_the_headers_client() {
    let mut server = rtmp_server("");
    let key = unique_key("pp");
    // v2, sent in the same write as C0+C1: those bytes must reach the RTMP session.
    let v2 = v2_header(client_v4(40001), front_end(1935), &[]);
    let (mut publisher, msid) = publisher(&server, &v2, &key);
    send_video(&mut publisher, msid, 0, &keyframe(1));

    // v1 on its own, then the handshake: the header and the protocol in separate reads.
    let mut stream = rtmp_raw::tcp(server.port);
    stream
        .write_all(&v1_header(client_v6(40002), front_end_v6(1935)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut player = RawRtmp::over(stream, server.port, "live");
    let player_msid = player.create_stream();
    player.play(player_msid, &key);
    expect_video(&mut player, &keyframe(1), &server);
    send_video(&mut publisher, msid, 40, &keyframe(2));
    expect_video(&mut player, &keyframe(2), &server);
    server.assert_alive();

    with_context(
        || server.stderr(),
        || {
            let published = log_lines(&server, "publish started");
            assert_eq!(published.len(), 1, "{published:?}");
            assert!(
                published[0].contains("peer=203.0.113.7:40001"),
                "{published:?}"
            );
            let played = log_lines(&server, "play started");
            assert_eq!(played.len(), 1, "{played:?}");
            assert!(played[0].contains("peer=[2001:db8::7]:40002"), "{played:?}");
            let rtmp = log_lines(&server, "ringcast::server::rtmp");
            assert!(
                !rtmp.iter().any(|l| l.contains("peer=127.0.0.1")),
                "the socket peer was logged instead of the header's client: {rtmp:?}"
            );
        },
    );
}

/// Connects to `port`, sends `bytes`, and expects the server to close the connection; returns
/// the client's own address (what the server must log as the peer).
fn refused_connection(server: &Server, bytes: &[u8], what: &str) -> SocketAddr {
    let mut stream = rtmp_raw::tcp(server.port);
    let local = stream.local_addr().unwrap();
    stream.write_all(bytes).unwrap();
    assert_closed_by_server(&mut stream, Duration::from_secs(10), what);
    local
}

#[test]
fn connections_without_a_valid_header_are_closed_alone() {
    let mut server = rtmp_server("handshake_timeout_ms = 2000\n");
    let key = unique_key("pp");
    let v2 = v2_header(client_v4(40011), front_end(1935), &[]);
    let (mut publisher, msid) = publisher(&server, &v2, &key);
    send_video(&mut publisher, msid, 0, &keyframe(1));
    let v1 = v1_header(client_v4(40012), front_end(1935));
    let mut player = RawRtmp::over_after(rtmp_raw::tcp(server.port), &v1, server.port, "live");
    let player_msid = player.create_stream();
    player.play(player_msid, &key);
    expect_video(&mut player, &keyframe(1), &server);

    // A client that went around the balancer: refused at its first byte, logged with the
    // socket's address since there is no other.
    let direct = refused_connection(&server, &rtmp_raw::c0c1(), "RTMP without a header");
    // Headers that are not quite right.
    let mixed = b"PROXY TCP4 203.0.113.7 2001:db8::1 4000 1935\r\n";
    let malformed = refused_connection(
        &server,
        &[&mixed[..], &rtmp_raw::c0c1()].concat(),
        "v1 mixing families",
    );
    let mut huge = common::proxy::V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let too_long = refused_connection(&server, &huge, "v2 announcing 64 KiB");
    // A header that never completes is cut at the handshake deadline.
    let stalled = refused_connection(&server, b"PROXY TCP4 203.0.113.", "half a header");

    send_video(&mut publisher, msid, 40, &keyframe(2));
    expect_video(&mut player, &keyframe(2), &server);
    server.assert_alive();
    with_context(
        || server.stderr(),
        || {
            let refused = log_lines(&server, "no valid PROXY protocol header");
            let line_of = |peer: SocketAddr| {
                let needle = format!("peer={peer} ");
                refused.iter().find(|l| l.contains(&needle)).cloned()
            };
            let direct = line_of(direct).expect("no log line for the direct client");
            assert!(
                direct.contains(r#"starts with "\x03\x00\x00"#)
                    && direct.contains("protocol=\"rtmp\""),
                "{direct}"
            );
            let malformed = line_of(malformed).expect("no log line for the mixed-family v1");
            assert!(
                malformed.contains("PROXY v1 line is malformed"),
                "{malformed}"
            );
            let too_long = line_of(too_long).expect("no log line for the oversized v2");
            assert!(too_long.contains("exceeds the limit"), "{too_long}");
            let cut = log_lines(
                &server,
                "connection closed before its PROXY protocol header",
            );
            assert!(
                cut.iter().any(|l| l.contains(&format!("peer={stalled} "))
                    && l.contains("handshake not completed in time")),
                "{cut:?}"
            );
        },
    );
}

#[test]
fn a_local_header_keeps_the_socket_peer() {
    let server = rtmp_server("");
    let stream = rtmp_raw::tcp(server.port);
    let local = stream.local_addr().unwrap();
    let mut player = RawRtmp::over_after(stream, &v2_local(), server.port, "live");
    let msid = player.create_stream();
    player.play(msid, &unique_key("local"));
    let needle = format!("peer={local} ");
    assert!(
        wait_until(Duration::from_secs(10), || {
            log_lines(&server, "play started")
                .iter()
                .any(|l| l.contains(&needle))
        }),
        "no play logged for {local}:\n{}",
        server.stderr()
    );
}

/// An fstream handshake frame: big-endian length, NUL, payload.
fn fstream_frame(payload: &str) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(payload.as_bytes());
    out
}

#[test]
fn fstream_behind_headers_relays_and_logs_the_headers_client() {
    let config = "[fanout]\npublisher_grace_ms = 500\n[fstream]\nproxy_protocol = true\n\n[[fstream.users]]\nname = \"fier\"\npassword = \"123\"\n";
    let mut server = Server::start_with(1, Some(config));
    let channel = unique_key("ch");
    let mut watcher = TcpStream::connect(server.fstream_addr()).unwrap();
    let watch = fstream_frame(&format!("watch,user=fier,channel={channel}"));
    watcher
        .write_all(&[v1_header(client_v6(40022), front_end_v6(61920)), watch].concat())
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            !log_lines(&server, "waiting for the channel's broadcaster").is_empty()
        }),
        "{}",
        server.stderr()
    );
    // Header, handshake and the first data in one write: all of it must reach the broadcast.
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut broadcaster = TcpStream::connect(server.fstream_addr()).unwrap();
    let broadcast = fstream_frame(&format!(
        "broadcast,user=fier,user-password=123,channel={channel}"
    ));
    broadcaster
        .write_all(
            &[
                v2_header(client_v4(40021), front_end(61920), &[]),
                broadcast,
                data.clone(),
            ]
            .concat(),
        )
        .unwrap();
    drop(broadcaster);
    watcher
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut received = Vec::new();
    watcher.read_to_end(&mut received).unwrap();
    assert!(
        received == data,
        "the watcher got {} bytes, not the {} sent",
        received.len(),
        data.len()
    );

    // No header: closed, nothing else disturbed.
    let mut direct = TcpStream::connect(server.fstream_addr()).unwrap();
    direct
        .write_all(&fstream_frame("watch,user=fier,channel=x"))
        .unwrap();
    assert_closed_by_server(
        &mut direct,
        Duration::from_secs(10),
        "fstream without a header",
    );
    server.assert_alive();
    with_context(
        || server.stderr(),
        || {
            let started = log_lines(&server, "fstream broadcast started");
            assert!(
                started.iter().all(|l| l.contains("peer=203.0.113.7:40021")),
                "{started:?}"
            );
            assert_eq!(started.len(), 1);
            let waiting = log_lines(&server, "waiting for the channel's broadcaster");
            assert!(
                waiting[0].contains("peer=[2001:db8::7]:40022"),
                "{waiting:?}"
            );
            let refused = log_lines(&server, "no valid PROXY protocol header");
            assert!(
                refused
                    .iter()
                    .any(|l| l.contains("protocol=\"fstream\"") && l.contains("peer=127.0.0.1:")),
                "{refused:?}"
            );
        },
    );
}

#[test]
fn ftl_rate_limit_counts_the_headers_client_not_the_balancer() {
    let ftl = start_ftl("hmac_attempts_per_minute_per_ip = 1\nproxy_protocol = true");
    let challenge = |client: SocketAddr| {
        let mut stream = TcpStream::connect(ftl.ftl).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let header = v1_header(client, front_end(8084));
        stream
            .write_all(&[&header[..], b"HMAC\r\n\r\n"].concat())
            .unwrap();
        stream
    };
    // Every connection comes from 127.0.0.1; only the headers' clients differ.
    let mut first = challenge(client_v4(40031));
    let line = read_line(&mut first);
    assert!(
        line.as_deref().is_some_and(|l| l.starts_with("200 ")),
        "{line:?}"
    );
    let mut other = challenge(SocketAddr::from(([203, 0, 113, 8], 40032)));
    let line = read_line(&mut other);
    assert!(
        line.as_deref().is_some_and(|l| l.starts_with("200 ")),
        "another client behind the same balancer was limited: {line:?}\n{}",
        ftl.server.stderr()
    );
    let mut again = challenge(client_v4(40033));
    common::ftl::assert_code_then_close(&mut again, "401", "the first client's second challenge");
    let limited = log_lines(&ftl.server, "FTL HMAC rate limit exceeded");
    assert!(
        limited.iter().any(|l| l.contains("peer=203.0.113.7:40033")),
        "{limited:?}"
    );
}

/// ffmpeg publishes and plays through HAProxy (`server_options` on its server line) in front of
/// a `proxy_protocol` listener; the relay must be byte-faithful and the log must name the
/// clients (127.0.0.1), not HAProxy's side of the connection (made from 127.0.0.2).
fn relay_through_haproxy(send_proxy: &str, check: Check) {
    let mut server = Server::start_with(
        1,
        Some(
            "[server]\nlog = \"info,ringcast::server::accept=debug\"\n\
             [rtmp]\nproxy_protocol = true\n[http]\nproxy_protocol = true\n",
        ),
    );
    let dir = server.scratch();
    let backend = SocketAddr::from(([127, 0, 0, 1], server.port));
    // Health checks too, with a header of their own (LOCAL in v2): a TCP connect to the RTMP
    // port, or `GET /readyz` on the HTTP port (`check-send-proxy`, since that port expects one
    // too), as a balancer that drains nodes on readiness would. The accept module's debug lines
    // show each header's client and the socket behind it.
    let (check_options, backend_lines) = match check {
        Check::Tcp => (String::new(), ""),
        Check::Readyz => (
            format!("port {} check-send-proxy", server.http_port),
            "option httpchk GET /readyz\n    http-check expect status 200",
        ),
    };
    let options = format!("{send_proxy} source 127.0.0.2 check inter 500ms {check_options}");
    let mut haproxy = Haproxy::start(backend, &options, backend_lines, &dir);
    let url = haproxy.url("live", &unique_key("haproxy"));
    let _publisher = media::publish(Fixture::H264Aac, &url, false, &dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), &dir, "play");
    player.finish(Duration::from_secs(25));
    server.assert_alive();
    haproxy.assert_alive();
    player.assert_faithful(&server, Fixture::H264Aac, 100, send_proxy);
    with_context(
        || {
            format!(
                "server:\n{}\nhaproxy:\n{}",
                server.stderr(),
                haproxy.stderr()
            )
        },
        || {
            let headers = log_lines(&server, "PROXY header");
            for what in ["publish started", "play started"] {
                let lines = log_lines(&server, what);
                assert_eq!(lines.len(), 1, "{what}: {lines:?}");
                // The client as the header names it, and HAProxy's socket behind it.
                let peer = field(&lines[0], "peer=");
                assert!(peer.starts_with("127.0.0.1:"), "{what}: {lines:?}");
                let relayed = format!("peer={peer} via=127.0.0.2:");
                assert!(
                    headers.iter().any(|l| l.contains(&relayed)),
                    "{what}: {headers:?}"
                );
            }
            // HAProxy's own health checks carry a header too, and are accepted.
            assert!(
                headers.iter().any(|l| l.contains("peer=127.0.0.2:")),
                "no health check seen: {headers:?}"
            );
            assert!(
                log_lines(&server, "no valid PROXY protocol header").is_empty(),
                "HAProxy's connections were refused"
            );
            assert!(
                !haproxy.stderr().contains("is DOWN"),
                "HAProxy's health checks failed"
            );
        },
    );
}

/// How HAProxy checks the node.
enum Check {
    Tcp,
    Readyz,
}

#[test]
fn ffmpeg_through_haproxy_send_proxy_v2_is_relayed_byte_faithfully() {
    relay_through_haproxy("send-proxy-v2", Check::Readyz);
}

#[test]
fn ffmpeg_through_haproxy_send_proxy_v1_is_relayed_byte_faithfully() {
    relay_through_haproxy("send-proxy", Check::Tcp);
}

#[test]
fn http_behind_headers_answers_and_logs_the_headers_client() {
    let config = "[http]\nproxy_protocol = true\nwait_for_publisher = false\n";
    let server = Server::start_with(1, Some(config));
    let addr = server.http_addr();
    let request = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let header = v1_header(client_v4(40041), front_end(8080));
    let health = common::http::exchange(&addr, &[header, request("/healthz")].concat());
    assert_eq!((health.status, health.body_text().as_str()), (200, "ok\n"));
    let header = v2_header(client_v6(40042), front_end_v6(8080), &[]);
    let missing = common::http::exchange(&addr, &[header, request("/live/nobody.flv")].concat());
    assert_eq!(missing.status, 404);
    let mut direct = common::http::connect(&addr);
    direct.write_all(&request("/healthz")).unwrap();
    assert_closed_by_server(
        &mut direct,
        Duration::from_secs(10),
        "HTTP without a header",
    );
    with_context(
        || server.stderr(),
        || {
            let refused = log_lines(&server, "HTTP-FLV watch refused");
            assert!(
                refused
                    .iter()
                    .any(|l| l.contains("peer=[2001:db8::7]:40042")),
                "{refused:?}"
            );
            let no_header = log_lines(&server, "no valid PROXY protocol header");
            assert!(
                no_header
                    .iter()
                    .any(|l| l.contains("protocol=\"http\"") && l.contains("GET /healthz")),
                "{no_header:?}"
            );
        },
    );
}
