//! The node keeps serving under hostile conditions (issue 13): a stopped log reader does not
//! stall watchers, junk handshakes cost a bounded number of log lines, watchers cut for being
//! slow leave nothing queued in the kernel, the FTL HMAC limit holds for the node, and failed
//! fstream logins lock out the guessing address only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::healthy::HealthyStream;
use common::http::metric;
use common::process::wait_until;
use common::server::Server;
use common::{free_port, with_context};
use ringcast::proto::fstream::encode_request;

/// Opens and closes `n` fstream connections without a handshake (each is logged by the relay).
fn churn_fstream(addr: &str, n: usize) {
    for _ in 0..n {
        if let Ok(c) = TcpStream::connect(addr) {
            drop(c);
        }
    }
}

#[test]
fn a_stopped_log_reader_stalls_no_watcher_and_the_dropped_lines_are_reported_after() {
    let config = "[server]\nlog = \"debug\"\n";
    let mut server = Server::start_with_log_reader(1, Some(config));
    let dir = server.scratch();
    let mut healthy = HealthyStream::start(&server, &dir);
    server.log_reader.as_ref().unwrap().signal("STOP");

    // Thousands of log lines while nobody reads stderr: the pipe (64 KiB) and the queue fill.
    let addr = server.fstream_addr();
    let flood = std::thread::spawn(move || churn_fstream(&addr, 6000));
    healthy.assert_still_flowing(&mut server);
    healthy.assert_still_flowing(&mut server);
    flood.join().unwrap();
    healthy.assert_still_flowing(&mut server);
    let dropped = metric(&server.http_addr(), "ringcast_log_lines_dropped_total");
    assert!(dropped > 0, "the flood did not overflow the log queue");

    server.log_reader.as_ref().unwrap().signal("CONT");
    let reported = wait_until(Duration::from_secs(30), || {
        server.stderr().contains("log lines dropped")
    });
    assert!(
        reported,
        "no 'log lines dropped' line after the reader resumed ({dropped} dropped)"
    );
    healthy.assert_still_flowing(&mut server);
}

#[test]
fn a_handshake_with_hundreds_of_unknown_keys_is_logged_in_a_bounded_number_of_lines() {
    let mut server = Server::start_with(1, None);
    let keys: String = (0..300).map(|i| format!(",junk{i}=1")).collect();
    let frame = encode_request(&format!("watch,user=someone{keys}")).unwrap();
    for _ in 0..20 {
        let mut c = TcpStream::connect(server.fstream_addr()).unwrap();
        c.write_all(&frame).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = wait_until(Duration::from_secs(10), || {
        server.stderr().contains("ignored unknown keys")
    });
    server.assert_alive();
    let log = server.stderr();
    assert!(logged, "no summary line:\n{log}");
    let lines = log.lines().filter(|l| l.contains("junk")).count();
    assert_eq!(
        lines, 1,
        "20 handshakes x 300 unknown keys from one address: one line a minute:\n{log}"
    );
    assert!(log.contains("ignored=300"), "{log}");
    assert!(log.lines().all(|l| l.len() <= ringcast::logging::MAX_LINE));
}

/// Server-side sockets of `port` whose peer is one of `peers`, as `(state, send_q)`.
fn relay_sockets(port: u16, peers: &[u16]) -> Vec<(String, u64)> {
    let out = Command::new("ss").args(["-tanH"]).output().expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (state, send_q, local, peer) = (f.first()?, f.get(2)?, f.get(3)?, f.get(4)?);
            let lport: u16 = local.rsplit(':').next()?.parse().ok()?;
            let pport: u16 = peer.rsplit(':').next()?.parse().ok()?;
            (lport == port && peers.contains(&pport))
                .then(|| ((*state).to_owned(), send_q.parse().unwrap_or(0)))
        })
        .collect()
}

#[test]
fn watchers_cut_for_never_reading_leave_nothing_queued_on_the_relay() {
    let config = "[fanout]\nwatcher_max_lag_ms = 500\nslow_watcher_disconnect_ms = 1500\n";
    let mut server = Server::start_with(1, Some(config));
    let dir = server.scratch();
    let mut healthy = HealthyStream::start(&server, &dir);
    // Never-reading HTTP-FLV watchers with a small receive window: they stop the relay's writes.
    let path = format!("/live/{}.flv", healthy.key);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).unwrap();
        let addr: SocketAddr = server.http_addr().parse().unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut c: TcpStream = socket.into();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        c.write_all(request.as_bytes()).unwrap();
        clients.push(c);
    }
    let peers: Vec<u16> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    let http = server.http_addr();
    let series = "ringcast_slow_watcher_disconnects_total{protocol=\"http-flv\"}";
    let cut = wait_until(Duration::from_secs(60), || metric(&http, series) >= 20);
    assert!(cut, "the policy did not cut the 20 never-reading watchers");
    let drained = wait_until(Duration::from_secs(10), || {
        relay_sockets(server.http_port, &peers)
            .iter()
            .all(|(_, q)| *q == 0)
    });
    with_context(
        || server.stderr(),
        || {
            let left = relay_sockets(server.http_port, &peers);
            assert!(drained, "bytes still queued for cut watchers: {left:?}");
            assert!(
                left.is_empty(),
                "cut watchers' sockets should be reset, not left closing: {left:?}"
            );
        },
    );
    // The clients see a reset, not an orderly end of stream after what was queued.
    let mut reset = 0;
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::ConnectionReset {
                        reset += 1;
                    }
                    break;
                }
            }
        }
    }
    assert!(reset >= 1, "no watcher saw a reset");
    healthy.assert_still_flowing(&mut server);
}

#[test]
fn with_two_workers_one_address_gets_no_more_than_the_configured_ftl_challenges() {
    use ringcast::proto::ftl::client;
    let ftl_port = free_port();
    let (start, end) = common::ftl::free_udp_range();
    let config =
        format!("[ftl]\nudp_port_range = \"{start}-{end}\"\nhmac_attempts_per_minute_per_ip = 5\n");
    let server = Server::start_with_args(
        2,
        Some(&config),
        &[
            "--ftl".into(),
            format!("127.0.0.1:{ftl_port}"),
            "--ftl-key".into(),
            "77-SECRET".into(),
        ],
    );
    let ftl = SocketAddr::from(([127, 0, 0, 1], ftl_port));
    let mut challenges = 0;
    for _ in 0..16 {
        let mut c = common::ftl::control(ftl);
        let _ = c.write_all(&client::hmac_request());
        let line = common::ftl::read_line(&mut c).unwrap_or_default();
        if client::parse_reply(&line)
            .and_then(|r| r.challenge())
            .is_some()
        {
            challenges += 1;
        } else {
            assert!(line.starts_with("401"), "refusal is 401, got {line:?}");
        }
    }
    with_context(
        || server.stderr(),
        || {
            assert_eq!(challenges, 5, "challenges for one address in a minute");
            let series = "ringcast_auth_failures_total{protocol=\"ftl\",reason=\"rate_limited\"}";
            assert_eq!(metric(&server.http_addr(), series), 11);
        },
    );
}

/// Sends an fstream broadcast handshake from `source` and some opaque bytes; returns once the
/// relay closed the connection or `wait` passed (a broadcast that was accepted stays open).
fn fstream_broadcast_from(
    source: [u8; 4],
    addr: &str,
    password: &str,
    wait: Duration,
) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a 127/8 source address");
    let addr: SocketAddr = addr.parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut c: TcpStream = socket.into();
    let frame = encode_request(&format!("broadcast,user=alice,user-password={password}")).unwrap();
    c.write_all(&frame).unwrap();
    let _ = c.write_all(&[0x55; 1024]);
    c.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    let _ = c.read(&mut buf);
    c
}

#[test]
fn failed_fstream_logins_lock_out_the_guessing_address_but_not_the_user_elsewhere() {
    let users = tempfile::tempdir().unwrap();
    let config = format!(
        "[fstream]\nusers_dir = {:?}\nlogin_failures_per_ip = 3\n\n[[fstream.users]]\nname = \"alice\"\npassword = \"right\"\n",
        users.path().display().to_string()
    );
    let server = Server::start_with(1, Some(&config));
    let (fstream, http) = (server.fstream_addr(), server.http_addr());
    let short = Duration::from_secs(10);
    for _ in 0..3 {
        fstream_broadcast_from([127, 0, 0, 1], &fstream, "wrong", short);
    }
    let failures = |reason: &str| {
        metric(
            &http,
            &format!("ringcast_auth_failures_total{{protocol=\"fstream\",reason=\"{reason}\"}}"),
        )
    };
    // The right password from the guessing address is refused without a check.
    fstream_broadcast_from([127, 0, 0, 1], &fstream, "right", short);
    let live = "ringcast_publishers{protocol=\"fstream\"}";
    with_context(
        || server.stderr(),
        || {
            assert_eq!(failures("wrong_password"), 3);
            assert_eq!(failures("locked_out"), 1);
            assert_eq!(metric(&http, live), 0, "the locked-out address broadcast");
        },
    );
    // The same user from another address logs in and broadcasts.
    let _broadcaster =
        fstream_broadcast_from([127, 0, 0, 2], &fstream, "right", Duration::from_secs(1));
    let started = wait_until(Duration::from_secs(10), || metric(&http, live) == 1);
    with_context(
        || server.stderr(),
        || {
            assert!(started, "alice from 127.0.0.2 could not broadcast");
            assert_eq!(failures("locked_out"), 1);
        },
    );
}

#[test]
fn http_flv_paths_are_split_on_literal_separators_and_decoded_once_under_the_name_rules() {
    let server = Server::start_with(1, Some("[http]\nwait_for_publisher = false\n"));
    let http = server.http_addr();
    let body = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = common::http::exchange(&http, request.as_bytes());
        (response.status, response.body_text())
    };
    // A stream name: refused only because nothing publishes it.
    for named in [
        "/live/k.flv",
        "/live/k%41.flv",
        "http://127.0.0.1/live/k.flv",
        "/fstream/u/c.flv",
    ] {
        let (status, text) = body(named);
        assert!(
            status == 404 && text.contains("not live") || text.contains("fstream channel"),
            "{named}: {status} {text}"
        );
    }
    // Not a stream name at all: no such endpoint.
    for not_named in [
        "/live/k%2eflv",
        "/live%2Fk.flv",
        "/live/k%2Fx.flv",
        "/live/a/b/c.flv",
        "/live/a%E2%80%AEb.flv",
        "/live/a%E2%80%8Bb.flv",
        "/live/%2e%2e.flv",
    ] {
        let (status, text) = body(not_named);
        assert_eq!((status, text.as_str()), (404, "not found\n"), "{not_named}");
    }
}

#[test]
fn rtmp_names_outside_the_stream_name_rules_are_refused() {
    let server = Server::start_with(1, None);
    let dir = server.scratch();
    let url = server.url("live", "a/b/c");
    let mut play = common::media::player_command(&common::tools::ffmpeg(), &url);
    play.args(["-t", "1", "-f", "null", "-"]);
    let out = common::process::run_with_timeout("ffmpeg play", &mut play, Duration::from_secs(60));
    assert!(!out.status.success(), "playing live/a/b/c should fail");
    let publisher = common::media::publish(
        common::fixtures::Fixture::H264Aac,
        &server.url("live", "x\u{200b}y"),
        false,
        &dir,
        "zero-width-pub",
    );
    let refused = wait_until(Duration::from_secs(30), || {
        server.stderr().matches("not a stream name").count() >= 2
    });
    drop(publisher);
    let log = server.stderr();
    assert!(refused, "play and publish not refused:\n{log}");
    assert!(
        !log.contains('\u{200b}'),
        "the raw character reached the log"
    );
}

#[test]
fn fstream_user_names_with_invisible_or_bidi_characters_are_refused_and_not_logged_raw() {
    let server = Server::start_with(1, None);
    for user in ["fi\u{202e}er", "fi\u{200b}er", "fi\u{2066}er"] {
        let frame = encode_request(&format!("broadcast,user={user},user-password=x")).unwrap();
        let mut c = TcpStream::connect(server.fstream_addr()).unwrap();
        c.write_all(&frame).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)), "closed");
    }
    let refused = wait_until(Duration::from_secs(10), || {
        server.stderr().matches("fstream handshake refused").count() >= 3
    });
    let log = server.stderr();
    assert!(refused, "{log}");
    for c in ['\u{202e}', '\u{200b}', '\u{2066}'] {
        assert!(!log.contains(c), "{c:?} reached the log");
    }
}

#[test]
fn a_publisher_above_the_ingest_limit_for_the_sustain_period_is_disconnected() {
    let config = "[rtmp]\nmax_publish_kbps = 20\nmax_publish_sustain_ms = 2000\n";
    let server = Server::start_with(1, Some(config));
    let dir = server.scratch();
    let publisher = common::media::publish(
        common::fixtures::Fixture::H264Aac,
        &server.url("live", &common::unique_key("fat")),
        true,
        &dir,
        "fat-pub",
    );
    let cut = wait_until(Duration::from_secs(30), || {
        server.stderr().contains("above rtmp.max_publish_kbps")
    });
    drop(publisher);
    assert!(cut, "{}", server.stderr());
}
