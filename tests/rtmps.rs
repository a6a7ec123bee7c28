//! Proves RTMPS and HTTPS on the shared network layer with real clients and a certificate
//! authority made in the test: ffmpeg 5.1 publishes over `rtmps://` and players over RTMPS,
//! RTMP and HTTPS get packets identical to the source; the reverse direction; ffmpeg 9 carries
//! HEVC over Enhanced RTMP on RTMPS; GStreamer's rtmp2src plays over RTMPS; HTTP endpoints answer
//! over HTTPS; and the outbound `connect` verifies certificates by default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use common::fixtures::Fixture;
use common::media;
use common::process::{ChildGuard, wait_until};
use common::tls::{self, TlsServer};
use common::{tools, unique_key, with_context};
use ringcast::server::net::{ClientTls, connect};
use ringcast::server::reader::Reader;

#[test]
fn ffmpeg_publishes_over_rtmps_and_rtmps_and_rtmp_players_get_identical_packets() {
    let mut tls = TlsServer::start(2, None);
    let dir = tls.server.scratch();
    let key = unique_key("rtmps");
    let _publisher = media::publish(
        Fixture::H264Aac,
        &tls.rtmps_url("live", &key),
        false,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let ffmpeg = tools::ffmpeg();
    let mut over_tls = media::play_to_flv(
        &ffmpeg,
        &tls.rtmps_url("live", &key),
        Some(5.0),
        &dir,
        "play-tls",
    );
    let mut over_tcp = media::play_to_flv(
        &ffmpeg,
        &tls.server.url("live", &key),
        Some(5.0),
        &dir,
        "play-tcp",
    );
    over_tls.finish(Duration::from_secs(25));
    over_tcp.finish(Duration::from_secs(25));
    tls.server.assert_alive();
    over_tls.assert_faithful(&tls.server, Fixture::H264Aac, 100, "RTMPS player");
    over_tcp.assert_faithful(
        &tls.server,
        Fixture::H264Aac,
        100,
        "RTMP player of an RTMPS publish",
    );
}

#[test]
fn a_stream_published_over_rtmp_plays_over_rtmps_and_over_https_flv() {
    let mut tls = TlsServer::start(1, None);
    let dir = tls.server.scratch();
    let key = unique_key("reverse");
    let _publisher = media::publish(
        Fixture::H264Aac,
        &tls.server.url("live", &key),
        false,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let ffmpeg = tools::ffmpeg();
    let mut rtmps = media::play_to_flv(
        &ffmpeg,
        &tls.rtmps_url("live", &key),
        Some(5.0),
        &dir,
        "play-rtmps",
    );
    let mut https = media::play_to_flv(
        &ffmpeg,
        &tls.https_url(&format!("/live/{key}.flv")),
        Some(5.0),
        &dir,
        "play-https",
    );
    rtmps.finish(Duration::from_secs(25));
    https.finish(Duration::from_secs(25));
    tls.server.assert_alive();
    rtmps.assert_faithful(
        &tls.server,
        Fixture::H264Aac,
        100,
        "RTMPS player of an RTMP publish",
    );
    https.assert_faithful(&tls.server, Fixture::H264Aac, 100, "HTTP-FLV over HTTPS");
}

#[test]
fn ffmpeg9_publishes_hevc_over_enhanced_rtmp_on_rtmps_and_the_codec_survives() {
    let fixture = Fixture::HevcAac;
    let mut tls = TlsServer::start(1, None);
    let dir = tls.server.scratch();
    let url = tls.rtmps_url("live", &unique_key("ertmps"));
    // ffmpeg 9 verifies certificates (OpenSSL): both sides trust the test CA, so this also
    // proves the certificate chain and the 127.0.0.1 name check.
    let ca = tls.pki.ca_file.display().to_string();
    let mut publish = Command::new(tools::ffmpeg_modern());
    publish
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(fixture.path())
        .args([
            "-map",
            "0",
            "-c",
            "copy",
            "-rtmp_enhanced_codecs",
            fixture.flv_fourcc(),
        ])
        .args(["-f", "flv", "-ca_file", &ca, &url]);
    let _publisher = ChildGuard::spawn("pub", &mut publish, dir.join("pub.stderr"));
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.join("play.flv");
    let mut play = Command::new(tools::ffmpeg_modern());
    play.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-rw_timeout",
        "15000000",
    ])
    .args([
        "-ca_file", &ca, "-i", &url, "-map", "0", "-c", "copy", "-t", "5", "-f", "flv",
    ])
    .arg(&out);
    let child = ChildGuard::spawn("play", &mut play, dir.join("play.stderr"));
    let mut player = media::FlvPlayer { child, out };
    player.finish(Duration::from_secs(25));
    tls.server.assert_alive();
    player.assert_faithful(&tls.server, fixture, 100, "HEVC over E-RTMP on RTMPS");
}

#[test]
fn gstreamer_rtmp2src_plays_over_rtmps() {
    let mut tls = TlsServer::start(1, None);
    let dir = tls.server.scratch();
    let key = unique_key("gst");
    let _publisher = media::publish(
        Fixture::H264Aac,
        &tls.rtmps_url("live", &key),
        true,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.join("gst.flv");
    let mut cmd = Command::new(tools::gst_launch());
    cmd.args(["-q", "-e", "rtmp2src"])
        .arg(format!("location={}", tls.rtmps_url("live", &key)))
        .args(["timeout=15", "tls-validation-flags=0", "!", "filesink"])
        .arg(format!("location={}", out.display()));
    let mut gst = ChildGuard::spawn("gst", &mut cmd, dir.join("gst.stderr"));
    let grew = wait_until(Duration::from_secs(20), || {
        std::fs::metadata(&out)
            .map(|m| m.len() > 100_000)
            .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_secs(3));
    gst.interrupt_and_wait(Duration::from_secs(5));
    assert!(
        grew,
        "rtmp2src over RTMPS wrote too little; gst stderr:\n{}\nserver stderr:\n{}",
        gst.stderr(),
        tls.server.stderr()
    );
    tls.server.assert_alive();
    with_context(
        || {
            format!(
                "server stderr:\n{}\ngst stderr:\n{}",
                tls.server.stderr(),
                gst.stderr()
            )
        },
        || media::assert_faithful_relay(Fixture::H264Aac, &out, 75, "rtmp2src over RTMPS"),
    );
}

#[test]
fn https_serves_health_and_metrics_with_the_certificate_expiry() {
    let tls = TlsServer::start(1, None);
    let addr = format!("127.0.0.1:{}", tls.https_port);
    let health = tls::https_get(&addr, &tls.pki.ca_file, "/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "healthz over HTTPS: {health}"
    );
    let metrics = tls::https_get(&addr, &tls.pki.ca_file, "/metrics");
    let expiry = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringcast_tls_cert_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no expiry metric over HTTPS:\n{metrics}"));
    let expiry: i64 = expiry.trim().parse().expect("expiry is a number");
    // rcgen's default validity ends in 4096: far in the future, and a real date.
    assert!(expiry > 4_000_000_000, "expiry {expiry}");
}

/// Runs `f` on a one-off runtime of the server's own kind.
fn on_runtime<T>(f: impl AsyncFnOnce() -> T) -> T {
    let rt = ringcast::server::runtime::Runtime::new().unwrap();
    rt.block_on(f())
}

#[test]
fn outbound_connect_verifies_the_certificate_and_carries_an_rtmp_handshake() {
    let tls = TlsServer::start(1, None);
    let port = tls.rtmps_port;
    let timeout = Duration::from_secs(10);
    on_runtime(async || {
        // Trusting the test CA: the handshake succeeds, SNI localhost matches the certificate.
        let trusted = ClientTls::from_ca_file(&tls.pki.ca_file).unwrap();
        let named = trusted.clone().with_server_name("localhost");
        let conn = connect("127.0.0.1", port, Some(&named), timeout)
            .await
            .unwrap();
        assert!(conn.is_tls());
        assert_eq!(conn.peer_certificate().unwrap(), tls.leaf.der);
        // An RTMP handshake through it: C0+C1 out, S0+S1(+S2) back, decrypted.
        let mut c0c1 = vec![3u8];
        c0c1.extend(std::iter::repeat_n(7u8, 1536));
        conn.write_all(c0c1).await.unwrap();
        let (mut reader, mut input) = (Reader::default(), BytesMut::new());
        while input.len() < 1537 {
            let n = reader.read_into(&conn, &mut input).await.unwrap();
            assert!(n > 0, "server closed during the RTMP handshake");
        }
        assert_eq!(input[0], 3, "S0 is RTMP version 3");

        // The certificate is for localhost and 127.0.0.1, not for another name.
        let wrong = trusted.with_server_name("wrong.example");
        let err = connect("127.0.0.1", port, Some(&wrong), timeout)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "wrong name: {err}");

        // Default roots (webpki) do not know the test CA: checks are on by default.
        let public = ClientTls::webpki_roots().unwrap();
        let err = connect("127.0.0.1", port, Some(&public), timeout)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("certificate"),
            "unknown issuer: {err}"
        );

        // Plain TCP to the RTMP port.
        let plain = connect("127.0.0.1", tls.server.port, None, timeout)
            .await
            .unwrap();
        assert!(!plain.is_tls());
        plain.write_all(vec![3u8; 1537]).await.unwrap();
        let mut input = BytesMut::new();
        let n = Reader::default()
            .read_into(&plain, &mut input)
            .await
            .unwrap();
        assert!(n > 0 && input[0] == 3);
    });
}

#[test]
fn a_stream_published_over_rtmps_is_watched_over_fstream_as_identical_flv() {
    // A short grace window: the stream ends soon after the fixture does, ending the watch.
    let mut tls = TlsServer::start(1, Some("[fanout]\npublisher_grace_ms = 500\n"));
    let dir = tls.server.scratch();
    let key = unique_key("tlsfs");
    let _publisher = media::publish(
        Fixture::H264Aac,
        &tls.rtmps_url("live", &key),
        false,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.join("fs-watch.flv");
    let mut cmd = common::fstream::client(&tls.server, &format!("watch,stream=live/{key}"));
    let mut watcher = ChildGuard::spawn_with(
        "fs-watch",
        &mut cmd,
        std::process::Stdio::null(),
        std::process::Stdio::from(std::fs::File::create(&out).unwrap()),
        dir.join("fs-watch.stderr"),
    );
    let ended = watcher.wait_timeout(Duration::from_secs(40)).is_some();
    tls.server.assert_alive();
    assert!(ended, "the fstream watch did not end with the stream");
    with_context(
        || format!("server stderr:\n{}", tls.server.stderr()),
        || media::assert_faithful_relay(Fixture::H264Aac, &out, 100, "fstream watcher of RTMPS"),
    );
}
