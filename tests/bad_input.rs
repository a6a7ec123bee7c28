//! Proves hostile or broken RTMP input is contained: for each kind of bad bytes (malformed chunk
//! headers, oversized messages, chunks on unopened chunk streams, undecodable or bomb AMF0,
//! commands out of order, handshakes that never finish) the server closes that one connection,
//! stays up, and a healthy publish + play on another key keeps flowing without a gap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::healthy::HealthyStream;
use common::http::metric;
use common::rtmp_raw::{self, Amf, RawRtmp, chunk_message, command};
use common::server::Server;

const CONFIG: &str = "
[rtmp]
handshake_timeout_ms = 1000
max_message_size = 1048576
";

/// How long an immediately-detectable violation may take to close the connection.
const PROMPT: Duration = Duration::from_secs(5);
/// handshake_timeout_ms (1 s) plus margin.
const AFTER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(6);

/// Runs `attack` (which returns the offending connection and how long the server may take to
/// close it) beside a healthy stream, then checks the close, the server and the healthy stream.
fn contained(what: &str, attack: impl FnOnce(u16) -> (TcpStream, Duration)) -> Server {
    let mut server = Server::start_with(1, Some(CONFIG));
    let dir = server.scratch();
    let mut healthy = HealthyStream::start(&server, &dir);
    let (mut conn, within) = attack(server.port);
    rtmp_raw::assert_closed_by_server(&mut conn, within, what);
    healthy.assert_still_flowing(&mut server);
    server
}

/// `ringcast_connection_errors_total{protocol="rtmp",blame=...}` on `server`.
fn rtmp_errors(server: &Server, blame: &str) -> u64 {
    let series = format!("ringcast_connection_errors_total{{protocol=\"rtmp\",blame=\"{blame}\"}}");
    metric(&server.http_addr(), &series)
}

fn after_handshake(port: u16, bytes: &[u8]) -> TcpStream {
    let mut c = RawRtmp::handshaken(port);
    c.send_raw(bytes).expect("send bad bytes");
    c.stream
}

fn after_connect(port: u16, bytes: &[u8]) -> TcpStream {
    let mut c = RawRtmp::connected(port, "live");
    c.send_raw(bytes).expect("send bad bytes");
    c.stream
}

#[test]
fn set_chunk_size_zero_closes_connection() {
    let server = contained("Set Chunk Size 0", |port| {
        let msg = chunk_message(2, 0, 1, 0, &0u32.to_be_bytes(), 128);
        (after_handshake(port, &msg), PROMPT)
    });
    // The protocol error is blamed on the peer, in the log and in the metrics.
    assert_eq!(rtmp_errors(&server, "peer_misbehaved"), 1);
    assert_eq!(rtmp_errors(&server, "limit_exceeded"), 0);
    assert!(
        server
            .stderr()
            .lines()
            .any(|l| l.contains("protocol error") && l.contains("blame=\"peer_misbehaved\"")),
        "no protocol error line with its blame:\n{}",
        server.stderr()
    );
}

#[test]
fn protocol_control_message_with_truncated_body_closes_connection() {
    contained("Set Chunk Size with a 2-byte body", |port| {
        let msg = chunk_message(2, 0, 1, 0, &[0x10, 0x00], 128);
        (after_handshake(port, &msg), PROMPT)
    });
}

#[test]
fn message_longer_than_max_message_size_closes_connection() {
    let server = contained("16 MiB message against a 1 MiB limit", |port| {
        // fmt 0, csid 3, length 0xFFFFFF, type 20 (command), msid 0, then the first 128 bytes.
        let mut bytes = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0x02; 128]);
        (after_handshake(port, &bytes), PROMPT)
    });
    assert_eq!(rtmp_errors(&server, "limit_exceeded"), 1);
    assert_eq!(rtmp_errors(&server, "peer_misbehaved"), 0);
}

#[test]
fn fmt1_chunk_on_unopened_chunk_stream_closes_connection() {
    contained("fmt 1 on unopened csid 5", |port| {
        // fmt 1: timestamp delta, length 4, type 20; no fmt 0 ever opened csid 5.
        let bytes = [0x45, 0, 0, 0, 0, 0, 4, 20, 0x05, 0x05, 0x05, 0x05];
        (after_handshake(port, &bytes), PROMPT)
    });
}

#[test]
fn fmt2_chunk_on_unopened_chunk_stream_closes_connection() {
    contained("fmt 2 on unopened csid 6", |port| {
        let mut bytes = vec![0x86, 0, 0, 0];
        bytes.extend_from_slice(&[0x05; 64]);
        (after_handshake(port, &bytes), PROMPT)
    });
}

#[test]
fn fmt3_chunk_on_unopened_chunk_stream_closes_connection() {
    contained("fmt 3 on unopened csid 63", |port| {
        (after_handshake(port, &[0xff; 256]), PROMPT)
    });
}

#[test]
fn undecodable_amf0_command_closes_connection() {
    contained("AMF0 garbage as the first command", |port| {
        let msg = chunk_message(3, 0, 20, 0, &[0xff; 64], 128);
        (after_handshake(port, &msg), PROMPT)
    });
}

#[test]
fn amf0_string_longer_than_its_message_closes_connection() {
    contained(
        "AMF0 string claiming 65535 bytes in a 10-byte message",
        |port| {
            let body = [0x02, 0xff, 0xff, b'c', b'o', b'n', b'n', b'e', b'c', b't'];
            (
                after_handshake(port, &chunk_message(3, 0, 20, 0, &body, 128)),
                PROMPT,
            )
        },
    );
}

#[test]
fn amf0_objects_nested_ten_thousand_deep_close_connection_without_crashing() {
    contained("AMF0 object nested 10 000 deep", |port| {
        let mut body = command("connect", 1.0, &[]);
        for _ in 0..10_000 {
            body.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        (
            after_handshake(port, &chunk_message(3, 0, 20, 0, &body, 128)),
            PROMPT,
        )
    });
}

#[test]
fn amf0_garbage_after_connect_closes_connection() {
    contained("AMF0 garbage after connect", |port| {
        let msg = chunk_message(
            3,
            0,
            20,
            0,
            &[0x02, 0x00, 0x04, b'p', b'l', 0xee, 0xee, 0x11],
            128,
        );
        (after_connect(port, &msg), PROMPT)
    });
}

#[test]
fn play_before_connect_closes_connection() {
    contained("play before connect", |port| {
        let body = command("play", 0.0, &[Amf::Null, Amf::str("somekey")]);
        (
            after_handshake(port, &chunk_message(8, 0, 20, 1, &body, 128)),
            PROMPT,
        )
    });
}

#[test]
fn publish_before_connect_closes_connection() {
    contained("publish before connect", |port| {
        let body = command(
            "publish",
            0.0,
            &[Amf::Null, Amf::str("somekey"), Amf::str("live")],
        );
        (
            after_handshake(port, &chunk_message(8, 0, 20, 1, &body, 128)),
            PROMPT,
        )
    });
}

#[test]
fn silent_connection_is_closed_after_handshake_timeout() {
    contained("connection that never sends a byte", |port| {
        (rtmp_raw::tcp(port), AFTER_HANDSHAKE_TIMEOUT)
    });
}

#[test]
fn c0_only_connection_is_closed_after_handshake_timeout() {
    contained("C0 without C1", |port| {
        let mut conn = rtmp_raw::tcp(port);
        conn.write_all(&[0x03]).unwrap();
        (conn, AFTER_HANDSHAKE_TIMEOUT)
    });
}

#[test]
fn handshake_without_c2_is_closed_after_handshake_timeout() {
    contained("C0C1 without C2", |port| {
        let mut conn = rtmp_raw::tcp(port);
        conn.write_all(&rtmp_raw::c0c1()).unwrap();
        (conn, AFTER_HANDSHAKE_TIMEOUT)
    });
}
