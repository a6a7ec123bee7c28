//! Proves the TLS listener's robustness and operations: bad input on the RTMPS port (plaintext
//! RTMP, a garbage or truncated ClientHello, a client that stops mid-handshake, an oversized
//! record, an alert storm) ends only that connection, within the handshake deadline, with a log
//! line, while an RTMPS stream keeps flowing beside it; SIGHUP swaps the certificate for new
//! connections while an open player keeps receiving, and refuses a broken or mismatched pair;
//! a second ringcast on the same address refuses to start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::free_port;
use common::healthy::HealthyStream;
use common::process::{ChildGuard, wait_until};
use common::server::{Server, server_binary};
use common::tls::{self, TlsServer};

/// The handshake deadline the tests configure (rtmp.handshake_timeout_ms, shared by RTMPS).
const HANDSHAKE_MS: u64 = 3000;

/// What a bad client sends, and whether it then closes its side or goes quiet.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    close_after: bool,
    /// Text the server's log line for this connection must contain.
    logged: &'static str,
}

fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![content_type, 3, 3];
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cases() -> Vec<Case> {
    let mut plaintext_rtmp = vec![3u8];
    plaintext_rtmp.extend(std::iter::repeat_n(0x5au8, 1536));
    // A handshake record holding a ClientHello header whose body is noise.
    let mut garbage = vec![1u8, 0, 0, 60];
    garbage.extend((0..60u8).map(|i| i.wrapping_mul(37)));
    // A record header announcing 512 bytes of ClientHello, then only 40 of them.
    let mut truncated = vec![0x16, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3];
    truncated.extend(std::iter::repeat_n(7u8, 29));
    let mut storm = Vec::new();
    for _ in 0..2000 {
        storm.extend(record(0x15, &[1, 112])); // warning: unrecognized_name
    }
    vec![
        Case {
            name: "plaintext RTMP on the TLS port",
            bytes: plaintext_rtmp,
            close_after: false,
            logged: "plaintext client on the TLS port",
        },
        Case {
            name: "garbage ClientHello",
            bytes: record(0x16, &garbage),
            close_after: false,
            logged: "TLS handshake failed",
        },
        Case {
            name: "truncated ClientHello, then close",
            bytes: truncated.clone(),
            close_after: true,
            logged: "closed by peer mid-handshake",
        },
        Case {
            name: "client stops mid-handshake",
            bytes: truncated,
            close_after: false,
            logged: "handshake not completed in time",
        },
        Case {
            name: "oversized record",
            bytes: vec![0x16, 3, 3, 0xff, 0xff, 1, 0, 0xff, 0xfb],
            close_after: false,
            logged: "MessageTooLarge",
        },
        Case {
            name: "alert storm",
            bytes: storm,
            close_after: false,
            logged: "TooManyWarningAlertsReceived",
        },
    ]
}

/// Sends `case` to `addr` and returns how long the server took to end the connection and the
/// client's local port (the server logs it as the peer).
fn run_case(addr: &str, case: &Case) -> (Duration, u16) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let port = stream.local_addr().unwrap().port();
    stream
        .set_read_timeout(Some(Duration::from_millis(HANDSHAKE_MS * 4)))
        .unwrap();
    let started = Instant::now();
    // The server may close mid-write (it stops at the first bad record): that is the point.
    let _ = stream.write_all(&case.bytes);
    if case.close_after {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {} // an alert, then the close
        }
    }
    (started.elapsed(), port)
}

#[test]
fn each_bad_tls_input_ends_only_its_connection_with_a_log_line_while_an_rtmps_stream_flows() {
    let config = format!("[rtmp]\nhandshake_timeout_ms = {HANDSHAKE_MS}\n");
    let mut tls = TlsServer::start(2, Some(&config));
    let dir = tls.server.scratch();
    let mut healthy = HealthyStream::start_between(
        &tls.server,
        &dir,
        |key| tls.rtmps_url("live", key),
        |key| tls.rtmps_url("live", key),
    );
    let addr = tls.rtmps_addr();
    for case in cases() {
        let (took, port) = run_case(&addr, &case);
        assert!(
            took < Duration::from_millis(HANDSHAKE_MS + 3000),
            "{}: the connection lasted {took:?}, past the {HANDSHAKE_MS} ms handshake deadline",
            case.name
        );
        let peer = format!("peer=127.0.0.1:{port} ");
        let logged = wait_until(Duration::from_secs(5), || {
            tls.server
                .stderr()
                .lines()
                .any(|l| l.contains(&peer) && l.contains(case.logged))
        });
        assert!(
            logged,
            "{}: no log line with `{}` for {peer}; server stderr:\n{}",
            case.name,
            case.logged,
            tls.server.stderr()
        );
    }
    healthy.assert_still_flowing(&mut tls.server);
}

#[test]
fn an_oversized_record_after_the_handshake_ends_that_connection_with_a_tls_error_logged() {
    let mut tls = TlsServer::start(1, None);
    let dir = tls.server.scratch();
    let mut healthy = HealthyStream::start_between(
        &tls.server,
        &dir,
        |key| tls.rtmps_url("live", key),
        |key| tls.rtmps_url("live", key),
    );
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client =
        rustls::ClientConnection::new(tls::client_config(&tls.pki.ca_file), name).unwrap();
    let mut tcp = TcpStream::connect(tls.rtmps_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while client.is_handshaking() {
        client.complete_io(&mut tcp).unwrap();
    }
    let port = tcp.local_addr().unwrap().port();
    // An application-data record announcing 65 535 bytes: over TLS's 16 KiB + 256 limit.
    let mut record = vec![0x17, 3, 3, 0xff, 0xff];
    record.extend(std::iter::repeat_n(0u8, 4096));
    let _ = tcp.write_all(&record);
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
    let peer = format!("peer=127.0.0.1:{port} ");
    let logged = wait_until(Duration::from_secs(5), || {
        tls.server
            .stderr()
            .lines()
            .any(|l| l.contains(&peer) && l.contains("TLS error"))
    });
    assert!(
        logged,
        "no TLS error logged for {peer}; server stderr:\n{}",
        tls.server.stderr()
    );
    healthy.assert_still_flowing(&mut tls.server);
}

#[test]
fn sighup_presents_the_new_certificate_to_new_connections_and_keeps_open_players() {
    let mut tls = TlsServer::start(2, None);
    let dir = tls.server.scratch();
    let addr = tls.rtmps_addr();
    let ca = tls.pki.ca_file.clone();
    assert_eq!(
        tls::presented_certificate(&addr, &ca).unwrap(),
        tls.leaf.der
    );
    let mut healthy = HealthyStream::start_between(
        &tls.server,
        &dir,
        |key| tls.rtmps_url("live", key),
        |key| tls.rtmps_url("live", key),
    );

    let second = tls.pki.issue("ringcast test server 2");
    tls.pki.install(&second);
    tls.server.signal("HUP");
    let swapped = wait_until(Duration::from_secs(10), || {
        tls::presented_certificate(&addr, &ca).ok().as_ref() == Some(&second.der)
    });
    assert!(
        swapped,
        "new connections still get the old certificate; server stderr:\n{}",
        tls.server.stderr()
    );
    healthy.assert_still_flowing(&mut tls.server);

    // A certificate file that does not parse: refused, named, the current one stays.
    std::fs::write(
        &tls.pki.cert_file,
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    tls.server.signal("HUP");
    let cert_name = tls.pki.cert_file.display().to_string();
    let refused = wait_until(Duration::from_secs(10), || {
        tls.server
            .stderr()
            .lines()
            .any(|l| l.contains("reload refused") && l.contains(&cert_name))
    });
    assert!(
        refused,
        "no refusal naming {cert_name}; server stderr:\n{}",
        tls.server.stderr()
    );
    assert_eq!(tls::presented_certificate(&addr, &ca).unwrap(), second.der);

    // A valid certificate with another certificate's key: refused too.
    let third = tls.pki.issue("ringcast test server 3");
    std::fs::write(&tls.pki.cert_file, &third.cert_pem).unwrap();
    std::fs::write(&tls.pki.key_file, &second.key_pem).unwrap();
    let before = tls.server.stderr().matches("reload refused").count();
    tls.server.signal("HUP");
    let refused_again = wait_until(Duration::from_secs(10), || {
        tls.server.stderr().matches("reload refused").count() > before
    });
    assert!(
        refused_again,
        "a mismatched key was not refused; server stderr:\n{}",
        tls.server.stderr()
    );
    assert_eq!(tls::presented_certificate(&addr, &ca).unwrap(), second.der);
    healthy.assert_still_flowing(&mut tls.server);
}

#[test]
fn a_second_ringcast_on_the_same_address_refuses_to_start_unless_handing_over() {
    let mut first = Server::start();
    let dir = first.scratch();
    let taken = format!("127.0.0.1:{}", first.port);
    let mut cmd = Command::new(server_binary());
    cmd.args(["--rtmp", &taken, "--workers", "1"])
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--fstream", &format!("127.0.0.1:{}", free_port())]);
    let mut second = ChildGuard::spawn("second", &mut cmd, dir.join("second.stderr"));
    let status = second
        .wait_timeout(Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "the second ringcast kept running; stderr:\n{}",
                second.stderr()
            )
        });
    assert!(
        !status.success(),
        "the second ringcast exited with {status}"
    );
    let stderr = second.stderr();
    assert!(
        stderr.contains("another process already listens") && stderr.contains(&taken),
        "the refusal does not name the address: {stderr}"
    );
    first.assert_alive();
    assert!(
        TcpStream::connect(&taken).is_ok(),
        "the first ringcast stopped accepting"
    );

    // A deliberate hand-over (--handover) starts and shares the address until the old one goes.
    cmd.arg("--handover");
    let mut successor = ChildGuard::spawn("successor", &mut cmd, dir.join("successor.stderr"));
    let ready = wait_until(Duration::from_secs(15), || {
        successor.stderr().contains("ringcast is ready")
    });
    assert!(
        ready,
        "the hand-over ringcast did not start: {}",
        successor.stderr()
    );
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(15)).is_some(),
        "the old ringcast did not stop"
    );
    assert!(
        successor.is_running(),
        "the successor exited: {}",
        successor.stderr()
    );
    assert!(
        TcpStream::connect(&taken).is_ok(),
        "the successor does not accept on {taken}"
    );
}
