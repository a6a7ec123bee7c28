//! Restream (`[[push]]`) against real receivers: `ffmpeg -listen 1` RTMP servers, an RTMPS
//! receiver (socat's TLS terminator in front of ffmpeg, with a CA the test makes), real
//! nginx-rtmp, a listener that never reads and a port where nothing listens. What the receivers
//! get is compared packet by packet (md5) with the published file; the API, the metrics and the
//! log are read as an operator would, and must never show a push key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::Fixture;
use common::framemd5::{self, FrameMd5};
use common::media::{self, FlvPlayer};
use common::process::{ChildGuard, wait_until};
use common::server::Server;
use common::tls::TestPki;
use common::{free_port, http, tools, unique_key, with_context};

/// `ffmpeg -listen 1 -i rtmp://127.0.0.1:PORT/APP/KEY -c copy -f flv OUT`: an RTMP server that
/// takes one publisher and records what it sends.
fn receiver(dir: &Path, name: &str, port: u16, key: &str, seconds: Option<f64>) -> FlvPlayer {
    let out = dir.join(format!("{name}.flv"));
    let mut cmd = Command::new(tools::ffmpeg());
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-listen", "1"])
        .arg("-i")
        .arg(format!("rtmp://127.0.0.1:{port}/app/{key}"))
        .args(["-map", "0", "-c", "copy"]);
    if let Some(s) = seconds {
        cmd.args(["-t", &s.to_string()]);
    }
    cmd.args(["-f", "flv"]).arg(&out);
    let child = ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")));
    wait_listening(port);
    FlvPlayer { child, out }
}

/// Waits until something listens on 127.0.0.1:`port`, without connecting (ffmpeg -listen 1
/// would take the probe for its one client): reads the kernel's table of listening sockets.
fn wait_listening(port: u16) {
    let needle = format!(":{port:04X} ");
    let listening = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains(&needle) && l.split_whitespace().nth(3) == Some("0A"))
        })
    });
    assert!(listening, "nothing listens on 127.0.0.1:{port}");
}

/// `socat openssl-listen` on 127.0.0.1:`port` with the test PKI's server certificate, relaying
/// the plaintext to 127.0.0.1:`to` (`fork`: every connection, else the first one only).
fn tls_terminator(
    dir: &Path,
    name: &str,
    pki: &TestPki,
    port: u16,
    to: u16,
    fork: bool,
) -> ChildGuard {
    let mut listen = format!(
        "openssl-listen:{port},bind=127.0.0.1,reuseaddr,cert={},key={},verify=0",
        pki.cert_file.display(),
        pki.key_file.display()
    );
    if fork {
        listen.push_str(",fork");
    }
    let mut cmd = Command::new("socat");
    cmd.arg(listen).arg(format!("tcp:127.0.0.1:{to}"));
    let child = ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")));
    wait_listening(port);
    child
}

/// A listener that accepts connections and never reads from them.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (port, handle)
}

/// `GET /api/pushes`, parsed.
fn pushes(server: &Server) -> Vec<serde_json::Value> {
    let body = http::get(&server.http_addr(), "/api/pushes").body_text();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/pushes is not JSON ({e}): {body}"))
}

fn entry(server: &Server, id: &str) -> Option<serde_json::Value> {
    pushes(server).into_iter().find(|p| p["id"] == id)
}

fn wait_state(server: &Server, id: &str, states: &[&str], timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let found = entry(server, id);
        if let Some(e) = &found
            && states.iter().any(|s| e["state"] == *s)
        {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "push {id} never reached {states:?}; last: {found:?}\nserver stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn push_toml(id: &str, from: &str, url: &str, key: &str) -> String {
    format!("[[push]]\nid = \"{id}\"\nfrom = \"{from}\"\nurl = \"{url}\"\nkey = \"{key}\"\n")
}

/// Asserts none of `secrets` appears in the log, the API or the metrics.
fn assert_no_secret_shown(server: &Server, secrets: &[&str]) {
    let api = http::get(&server.http_addr(), "/api/pushes").body_text();
    let metrics = http::get(&server.http_addr(), "/metrics").body_text();
    let log = server.stderr();
    for secret in secrets {
        assert!(!api.contains(secret), "{secret} in /api/pushes:\n{api}");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

fn finish_and_check(server: &Server, rx: &mut FlvPlayer, min_packets: usize, what: &str) {
    if rx.child.wait_timeout(Duration::from_secs(30)).is_none() {
        rx.stop();
    }
    rx.assert_faithful(server, Fixture::H264Aac, min_packets, what);
}

#[test]
fn one_stream_reaches_every_destination_while_broken_ones_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (key_a, key_b) = (unique_key("pushsecretA"), unique_key("pushsecretB"));
    let key_hole = unique_key("pushsecretHole");
    let key_refused = unique_key("pushsecretRefused");
    let query_token = unique_key("querysecret");
    let (port_a, port_b) = (free_port(), free_port());
    let mut rx_a = receiver(dir, "rx-a", port_a, &key_a, None);
    let mut rx_b = receiver(dir, "rx-b", port_b, &key_b, None);
    let (hole, _hole_thread) = black_hole();
    let refused = free_port();
    // RTMPS: TLS (a CA the test makes, trusted through tls_ca) in front of an ffmpeg receiver.
    let key_tls = unique_key("pushsecretTls");
    let (pki, _leaf) = TestPki::new();
    let (port_tls, port_tls_rx) = (free_port(), free_port());
    let mut rx_tls = receiver(dir, "rx-tls", port_tls_rx, &key_tls, None);
    let _socat = tls_terminator(dir, "socat", &pki, port_tls, port_tls_rx, false);
    // The same certificate without tls_ca: webpki's roots do not know the test CA.
    let port_untrusted = free_port();
    let _socat_untrusted = tls_terminator(
        dir,
        "socat-untrusted",
        &pki,
        port_untrusted,
        free_port(),
        true,
    );
    let source = unique_key("src");
    let from = format!("live/{source}");
    let config = [
        push_toml(
            "a",
            &from,
            &format!("rtmp://127.0.0.1:{port_a}/app"),
            &key_a,
        ),
        push_toml(
            "b",
            &from,
            &format!("rtmp://127.0.0.1:{port_b}/app"),
            &key_b,
        ),
        push_toml(
            "hole",
            &from,
            &format!("rtmp://127.0.0.1:{hole}/app"),
            &key_hole,
        ),
        push_toml(
            "refused",
            &from,
            &format!("rtmp://127.0.0.1:{refused}/app?token={query_token}"),
            &key_refused,
        ),
        push_toml(
            "tls",
            &from,
            &format!("rtmps://127.0.0.1:{port_tls}/app"),
            &key_tls,
        ),
        format!("tls_ca = \"{}\"\n", pki.ca_file.display()),
        push_toml(
            "untrusted",
            &from,
            &format!("rtmps://127.0.0.1:{port_untrusted}/app"),
            "pushsecretUntrusted",
        ),
    ]
    .concat();
    let mut server = Server::start_with(2, Some(&config));
    let url = server.url("live", &source);
    let started = Instant::now();
    let mut publisher = media::publish(Fixture::H264Aac, &url, false, dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), dir, "play");

    wait_state(&server, "a", &["live"], Duration::from_secs(15));
    wait_state(&server, "b", &["live"], Duration::from_secs(15));
    wait_state(&server, "tls", &["live"], Duration::from_secs(15));
    let untrusted = wait_state(&server, "untrusted", &["backoff"], Duration::from_secs(15));
    assert!(
        untrusted["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("certificate")),
        "{untrusted}"
    );
    let refused_entry = wait_state(&server, "refused", &["backoff"], Duration::from_secs(15));
    assert!(
        refused_entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{refused_entry}"
    );
    assert!(
        !refused_entry["url"]
            .as_str()
            .unwrap()
            .contains(&query_token)
    );
    // The black hole accepts and never answers: the handshake times out (10 s).
    let hole_entry = wait_state(&server, "hole", &["backoff"], Duration::from_secs(30));
    assert!(hole_entry["last_error"].as_str().is_some(), "{hole_entry}");

    let all = pushes(&server);
    assert_eq!(all.len(), 6, "{all:?}");
    for e in &all {
        for field in [
            "id",
            "stream",
            "url",
            "state",
            "last_error",
            "since",
            "reconnects",
            "bytes_sent",
            "dropped_frames",
            "lag_ms",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let metrics = http::get(&server.http_addr(), "/metrics").body_text();
    for series in [
        "ringcast_push_state{id=\"a\"",
        "ringcast_push_bytes_total{id=\"a\"",
        "ringcast_push_reconnects_total{id=\"refused\"",
        "ringcast_push_dropped_frames_total{id=\"b\"",
        "ringcast_push_lag_seconds{id=\"hole\"",
    ] {
        assert!(metrics.contains(series), "no {series} in /metrics");
    }

    // The publisher and the local player keep real time despite the broken destinations.
    player.finish(Duration::from_secs(25));
    player.assert_faithful(&server, Fixture::H264Aac, 100, "local player");
    let status = publisher.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "publisher: {}",
        publisher.stderr()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "a 10 s file took {took:?} to publish"
    );

    // Once the source ends (after the grace window), the receivers see the end and close.
    finish_and_check(&server, &mut rx_a, 200, "receiver a");
    finish_and_check(&server, &mut rx_b, 200, "receiver b");
    finish_and_check(&server, &mut rx_tls, 200, "RTMPS receiver");
    wait_state(&server, "a", &["stopped"], Duration::from_secs(20));
    server.assert_alive();
    assert_no_secret_shown(
        &server,
        &[
            &key_a,
            &key_b,
            &key_hole,
            &key_refused,
            &query_token,
            &source,
        ],
    );
}

#[test]
fn a_receiver_that_goes_away_and_comes_back_gets_the_stream_again_from_a_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key = unique_key("pushsecretBack");
    let port = free_port();
    let mut first = receiver(dir, "rx-first", port, &key, Some(5.0));
    let source = unique_key("src");
    let config = push_toml(
        "back",
        &format!("live/{source}"),
        &format!("rtmp://127.0.0.1:{port}/app"),
        &key,
    );
    let mut server = Server::start_with(1, Some(&config));
    let url = server.url("live", &source);
    let _publisher = media::publish(Fixture::H264Aac, &url, true, dir, "pub");
    assert!(first.child.wait_timeout(Duration::from_secs(30)).is_some());
    first.assert_faithful(&server, Fixture::H264Aac, 50, "first receiver");
    // Gone: the push backs off and retries on its own.
    wait_state(
        &server,
        "back",
        &["backoff", "connecting"],
        Duration::from_secs(20),
    );
    let mut second = receiver(dir, "rx-second", port, &key, Some(5.0));
    assert!(
        second.child.wait_timeout(Duration::from_secs(60)).is_some(),
        "the receiver that came back got no stream; server stderr:\n{}\nreceiver stderr:\n{}",
        server.stderr(),
        second.stderr()
    );
    second.assert_faithful(&server, Fixture::H264Aac, 50, "receiver that came back");
    let e = entry(&server, "back").unwrap();
    assert!(e["reconnects"].as_u64().unwrap() >= 1, "{e}");
    server.assert_alive();
    assert_no_secret_shown(&server, &[&key, &source]);
}

#[test]
fn a_source_that_reconnects_within_grace_keeps_its_destinations_connected() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key = unique_key("pushsecretGrace");
    let port = free_port();
    let mut rx = receiver(dir, "rx", port, &key, None);
    let source = unique_key("src");
    let config = format!(
        "[fanout]\npublisher_grace_ms = 5000\n{}",
        push_toml(
            "grace",
            &format!("live/{source}"),
            &format!("rtmp://127.0.0.1:{port}/app"),
            &key,
        )
    );
    let mut server = Server::start_with(1, Some(&config));
    let url = server.url("live", &source);
    let mut first = media::publish(Fixture::H264Aac, &url, true, dir, "pub-1");
    wait_state(&server, "grace", &["live"], Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    first.kill();
    std::thread::sleep(Duration::from_secs(2));
    let mut second = media::publish(Fixture::H264Aac, &url, false, dir, "pub-2");
    std::thread::sleep(Duration::from_secs(4));
    let e = entry(&server, "grace").unwrap();
    assert_eq!(e["state"], "live", "{e}");
    assert_eq!(e["reconnects"], 0, "the destination was reconnected: {e}");
    assert!(rx.child.is_running(), "the receiver lost its connection");
    let live_logs = server.stderr().matches("push live").count();
    assert_eq!(live_logs, 1, "one connection for both publishers");
    assert!(second.wait_timeout(Duration::from_secs(30)).is_some());
    if rx.child.wait_timeout(Duration::from_secs(30)).is_none() {
        rx.stop();
    }
    // Two gap-free runs: the first publisher's, then the second's from its first packet.
    let source = FrameMd5::of_video_in(&tools::ffmpeg(), &Fixture::H264Aac.path());
    let played = FrameMd5::of_video_in(&tools::ffmpeg(), &rx.out);
    let (source, played) = (source.video(), played.video());
    let split = (1..played.len())
        .rev()
        .find(|&j| played[j].md5 == source[0].md5)
        .unwrap_or_else(|| panic!("the second publisher's first packet never arrived"));
    framemd5::assert_contiguous_run(&played[..split], &source, "first publisher's run");
    framemd5::assert_contiguous_run(&played[split..], &source, "second publisher's run");
    assert!(
        played.len() - split >= 200,
        "second run: {}",
        played.len() - split
    );
    server.assert_alive();
}

#[test]
fn nginx_rtmp_receives_the_push_and_plays_it_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let port = free_port();
    let _nginx = nginx_rtmp(dir, port);
    let key = unique_key("pushsecretNginx");
    let source = unique_key("src");
    let config = push_toml(
        "nginx",
        &format!("live/{source}"),
        &format!("rtmp://127.0.0.1:{port}/live"),
        &key,
    );
    let mut server = Server::start_with(1, Some(&config));
    let url = server.url("live", &source);
    let _publisher = media::publish(Fixture::H264Aac, &url, true, dir, "pub");
    wait_state(&server, "nginx", &["live"], Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    let nginx_url = format!("rtmp://127.0.0.1:{port}/live/{key}");
    let mut player = media::play_to_flv(&tools::ffmpeg(), &nginx_url, Some(5.0), dir, "play");
    player.finish(Duration::from_secs(30));
    with_context(
        || std::fs::read_to_string(dir.join("nginx/error.log")).unwrap_or_default(),
        || {
            player.assert_faithful(
                &server,
                Fixture::H264Aac,
                100,
                "played back from nginx-rtmp",
            )
        },
    );
    server.assert_alive();
    assert_no_secret_shown(&server, &[&key, &source]);
}

/// Debian's nginx with libnginx-mod-rtmp, in the foreground with its own config, pid and logs.
fn nginx_rtmp(dir: &Path, port: u16) -> ChildGuard {
    let d = dir.join("nginx");
    std::fs::create_dir_all(d.join("logs")).unwrap();
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
        d = d.display()
    );
    let conf_path = d.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(nginx_binary());
    cmd.arg("-c").arg(&conf_path).arg("-p").arg(&d);
    let child = ChildGuard::spawn("nginx", &mut cmd, d.join("nginx.stderr"));
    wait_listening(port);
    child
}

fn nginx_binary() -> PathBuf {
    let debian = Path::new("/usr/sbin/nginx");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

#[test]
fn sighup_adds_and_removes_destinations_without_touching_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (key_keep, key_gone, key_new) = (
        unique_key("pushsecretKeep"),
        unique_key("pushsecretGone"),
        unique_key("pushsecretNew"),
    );
    let (port_keep, port_gone, port_new) = (free_port(), free_port(), free_port());
    let mut rx_keep = receiver(dir, "rx-keep", port_keep, &key_keep, None);
    let mut rx_gone = receiver(dir, "rx-gone", port_gone, &key_gone, None);
    let mut rx_new = receiver(dir, "rx-new", port_new, &key_new, Some(5.0));
    let source = unique_key("src");
    let from = format!("live/{source}");
    let keep = push_toml(
        "keep",
        &from,
        &format!("rtmp://127.0.0.1:{port_keep}/app"),
        &key_keep,
    );
    let gone = push_toml(
        "gone",
        &from,
        &format!("rtmp://127.0.0.1:{port_gone}/app"),
        &key_gone,
    );
    let new = push_toml(
        "new",
        &from,
        &format!("rtmp://127.0.0.1:{port_new}/app"),
        &key_new,
    );
    let server = Server::start_with(2, Some(&format!("{keep}{gone}")));
    let url = server.url("live", &source);
    let _publisher = media::publish(Fixture::H264Aac, &url, true, dir, "pub");
    wait_state(&server, "keep", &["live"], Duration::from_secs(15));
    wait_state(&server, "gone", &["live"], Duration::from_secs(15));

    // A config that does not parse changes nothing.
    let config_path = server.scratch().join("ringcast.toml");
    std::fs::write(&config_path, format!("{keep}[[push]]\nid = \n")).unwrap();
    server.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || server
            .stderr()
            .contains("did not load")),
        "the failed reload is not logged"
    );
    assert_eq!(entry(&server, "gone").unwrap()["state"], "live");

    std::fs::write(&config_path, format!("{keep}{new}")).unwrap();
    server.signal("HUP");
    wait_state(&server, "new", &["live"], Duration::from_secs(15));
    // The removed destination's connection ends; its receiver sees the end of the stream.
    assert!(
        rx_gone
            .child
            .wait_timeout(Duration::from_secs(15))
            .is_some(),
        "the removed destination is still connected"
    );
    assert!(entry(&server, "gone").is_none(), "removed from the API");
    assert!(rx_new.child.wait_timeout(Duration::from_secs(30)).is_some());
    rx_new.assert_faithful(&server, Fixture::H264Aac, 50, "added destination");
    let kept = entry(&server, "keep").unwrap();
    assert_eq!(kept["state"], "live", "{kept}");
    assert_eq!(kept["reconnects"], 0, "{kept}");
    assert!(
        rx_keep.child.is_running(),
        "the kept destination was disconnected"
    );
    assert_eq!(
        server
            .stderr()
            .lines()
            .filter(|l| l.contains("push live") && l.contains("push=keep"))
            .count(),
        1,
        "the kept destination connected more than once"
    );
    rx_keep.stop();
    assert_no_secret_shown(&server, &[&key_keep, &key_gone, &key_new, &source]);
}

#[test]
fn the_api_requires_the_bearer_token_when_one_is_set() {
    let server = Server::start_with(1, Some("[http]\napi_token = \"tok-s3cret\"\n"));
    let addr = server.http_addr();
    let ask = |auth: &str| {
        http::exchange(
            &addr,
            format!("GET /api/pushes HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    assert_eq!(ask("").status, 401);
    assert_eq!(ask("Authorization: Bearer wrong\r\n").status, 401);
    let ok = ask("Authorization: Bearer tok-s3cret\r\n");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body_text().trim(), "[]");
    // Metrics and health stay open.
    assert_eq!(http::get(&addr, "/metrics").status, 200);
    assert!(!server.stderr().contains("tok-s3cret"));
}

/// A destination that completes the RTMP handshake (RTMP 1.0 §5.2: C0+C1 in, S0+S1+S2 out, C2
/// in) and then sends `after`.
fn hostile_destination(after: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut c0c1 = vec![0u8; 1537];
            if stream.read_exact(&mut c0c1).is_err() {
                continue;
            }
            let mut reply = vec![3u8];
            reply.extend_from_slice(&[0u8; 1536]);
            reply.extend_from_slice(&c0c1[1..]);
            let _ = stream.write_all(&reply);
            let mut c2 = vec![0u8; 1536];
            let _ = stream.read_exact(&mut c2);
            let _ = stream.write_all(&after);
            held.push(stream);
        }
    });
    port
}

#[test]
fn destinations_that_answer_garbage_or_huge_replies_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Garbage right from the first byte.
    let garbage = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                use std::io::Write;
                let _ = stream.write_all(&[0x42; 4096]);
                held.push(stream);
            }
        });
        port
    };
    // After the handshake, a command message declaring 16 MiB (fmt 0, csid 3, type 20).
    let mut huge = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
    huge.extend_from_slice(&[0x02; 128]);
    let huge_port = hostile_destination(huge);
    // After the handshake, silence: `connect` is never answered.
    let silent_port = hostile_destination(Vec::new());
    let key = unique_key("pushsecretGood");
    let port = free_port();
    let mut rx = receiver(dir, "rx", port, &key, None);
    let source = unique_key("src");
    let from = format!("live/{source}");
    let config = [
        push_toml("good", &from, &format!("rtmp://127.0.0.1:{port}/app"), &key),
        push_toml(
            "garbage",
            &from,
            &format!("rtmp://127.0.0.1:{garbage}/app"),
            "k1",
        ),
        push_toml(
            "huge",
            &from,
            &format!("rtmp://127.0.0.1:{huge_port}/app"),
            "k2",
        ),
        push_toml(
            "silent",
            &from,
            &format!("rtmp://127.0.0.1:{silent_port}/app"),
            "k3",
        ),
    ]
    .concat();
    let server = Server::start_with(2, Some(&config));
    let url = server.url("live", &source);
    let _publisher = media::publish(Fixture::H264Aac, &url, false, dir, "pub");
    wait_state(&server, "good", &["live"], Duration::from_secs(15));
    for id in ["garbage", "huge"] {
        let e = wait_state(&server, id, &["backoff"], Duration::from_secs(20));
        let error = e["last_error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.contains("protocol error") || error.contains("handshake"),
            "{id}: {e}"
        );
    }
    // Connected but never answering `connect`: cut at the publish deadline.
    let e = wait_state(&server, "silent", &["backoff"], Duration::from_secs(30));
    assert!(e["last_error"].as_str().is_some(), "{e}");
    finish_and_check(&server, &mut rx, 200, "the healthy destination");
}

#[test]
fn opus_audio_from_ftl_reaches_destinations_as_aac_or_not_at_all() {
    use common::ftl::{Loadgen, SECRET, make_sources, start_ftl};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (port_aac, port_drop) = (free_port(), free_port());
    let mut rx_aac = receiver(dir, "rx-aac", port_aac, "77", None);
    let mut rx_drop = receiver(dir, "rx-drop", port_drop, "77", None);
    let config = [
        push_toml(
            "aac",
            "ftl/77",
            &format!("rtmp://127.0.0.1:{port_aac}/app"),
            "{key}",
        ),
        push_toml(
            "drop",
            "ftl/77",
            &format!("rtmp://127.0.0.1:{port_drop}/app"),
            "{key}",
        ),
        "audio = \"drop\"\n".to_owned(),
    ]
    .concat();
    let ftl = start_ftl(&config);
    let (h264, ogg) = make_sources(dir);
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &[],
        dir,
        "pub",
    );
    wait_state(&ftl.server, "aac", &["live"], Duration::from_secs(20));
    wait_state(&ftl.server, "drop", &["live"], Duration::from_secs(20));
    loadgen.summary(Duration::from_secs(40));
    let e = entry(&ftl.server, "aac").unwrap();
    assert!(e["last_error"].is_null(), "{e}");
    let streams_of = |rx: &mut FlvPlayer| {
        if rx.child.wait_timeout(Duration::from_secs(30)).is_none() {
            rx.stop();
        }
        let out = Command::new(tools::ffmpeg())
            .args(["-hide_banner", "-i"])
            .arg(&rx.out)
            .args(["-map", "0", "-c", "copy", "-f", "framemd5", "-"])
            .output()
            .unwrap();
        let doc = FrameMd5::parse(&String::from_utf8_lossy(&out.stdout));
        assert!(
            doc.video().len() > 50,
            "only {} video packets",
            doc.video().len()
        );
        // Audio and video only (ffmpeg may add a data stream for metadata text fields).
        let mut codecs: Vec<String> = doc
            .codecs
            .iter()
            .filter(|(i, _)| {
                doc.media_types
                    .get(i)
                    .is_some_and(|t| t == "audio" || t == "video")
            })
            .map(|(_, c)| c.clone())
            .collect();
        codecs.sort();
        codecs
    };
    assert_eq!(
        streams_of(&mut rx_aac),
        ["aac", "h264"],
        "the AAC destination"
    );
    assert_eq!(
        streams_of(&mut rx_drop),
        ["h264"],
        "the audio = \"drop\" destination"
    );
}
