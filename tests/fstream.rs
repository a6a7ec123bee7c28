//! fstream served by ringcast, with real clients: the reference `ffmpeg | fstream` pipelines
//! using `ringcast fstream` as the client, byte-exact opaque relay to several watchers, FLV
//! broadcasts that RTMP players can play, RTMP streams watched over fstream, and every kind of
//! bad handshake refused while a healthy broadcast keeps flowing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fixtures::Fixture;
use common::fstream::{broadcast_flv, client as ringcast_fstream};
use common::process::{ChildGuard, run_with_timeout, wait_until};
use common::rtmp_raw::assert_closed_by_server;
use common::server::Server;
use common::{media, tools, unique_key, with_context};

const BROADCAST_FIER: &str = "broadcast,user=fier,user-password=123";

/// A server whose users directory holds `fier.ini` (password 123), the reference layout, with
/// short timeouts so the bad-input cases resolve quickly.
fn start_server() -> (Server, tempfile::TempDir) {
    start_server_with("")
}

/// [`start_server`] with `extra` appended to the `[fanout]` section.
fn start_server_with(extra_fanout: &str) -> (Server, tempfile::TempDir) {
    let users = tempfile::tempdir().unwrap();
    std::fs::create_dir(users.path().join("users")).unwrap();
    std::fs::write(
        users.path().join("users/fier.ini"),
        "[DEFAULT]\npassword=123\n",
    )
    .unwrap();
    let config = format!(
        "[fstream]\nusers_dir = {:?}\nhandshake_timeout_ms = 2000\nbroadcaster_idle_timeout_ms = 2000\n\n[fanout]\npublisher_grace_ms = 500\n{extra_fanout}\n",
        users.path().join("users").display().to_string()
    );
    (Server::start_with(1, Some(&config)), users)
}

/// `ringcast fstream ADDR watch,...` writing what it receives to `DIR/NAME.out`.
fn watch_to_file(server: &Server, payload: &str, dir: &Path, name: &str) -> (ChildGuard, PathBuf) {
    let out = dir.join(format!("{name}.out"));
    let file = std::fs::File::create(&out).unwrap();
    let child = ChildGuard::spawn_with(
        name,
        &mut ringcast_fstream(server, payload),
        Stdio::null(),
        Stdio::from(file),
        dir.join(format!("{name}.stderr")),
    );
    (child, out)
}

/// `ringcast fstream ADDR watch,... | ffmpeg -i - -map 0:v -f framemd5 OUT`: the watcher's bytes
/// decoded by ffmpeg (framemd5 of decoded frames), errors logged to its stderr.
fn watch_and_decode(
    server: &Server,
    payload: &str,
    dir: &Path,
    name: &str,
) -> (ChildGuard, ChildGuard, PathBuf) {
    let mut client = ChildGuard::spawn_with(
        &format!("{name}-client"),
        &mut ringcast_fstream(server, payload),
        Stdio::null(),
        Stdio::piped(),
        dir.join(format!("{name}-client.stderr")),
    );
    let out = dir.join(format!("{name}.framemd5"));
    let mut cmd = Command::new(tools::ffmpeg());
    cmd.args(["-hide_banner", "-loglevel", "error", "-i", "-"])
        .args(["-map", "0:v", "-flush_packets", "1", "-f", "framemd5"])
        .arg(&out);
    let decoder = ChildGuard::spawn_with(
        &format!("{name}-ffmpeg"),
        &mut cmd,
        Stdio::from(client.take_stdout()),
        Stdio::null(),
        dir.join(format!("{name}-ffmpeg.stderr")),
    );
    (client, decoder, out)
}

/// `ffmpeg -re -f lavfi testsrc2 -c:v libx264 -g 25 -f h264 - | ringcast fstream ADDR PAYLOAD`.
fn broadcast_h264(
    server: &Server,
    payload: &str,
    seconds: Option<u32>,
    dir: &Path,
    name: &str,
) -> (ChildGuard, ChildGuard) {
    let mut cmd = Command::new(tools::ffmpeg());
    cmd.args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x240:rate=25"]);
    if let Some(s) = seconds {
        cmd.args(["-t", &s.to_string()]);
    }
    cmd.args([
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    ])
    .args(["-g", "25", "-f", "h264", "-"]);
    let mut encoder = ChildGuard::spawn_with(
        &format!("{name}-ffmpeg"),
        &mut cmd,
        Stdio::null(),
        Stdio::piped(),
        dir.join(format!("{name}-ffmpeg.stderr")),
    );
    let client = ChildGuard::spawn_with(
        &format!("{name}-client"),
        &mut ringcast_fstream(server, payload),
        Stdio::from(encoder.take_stdout()),
        Stdio::null(),
        dir.join(format!("{name}-client.stderr")),
    );
    (encoder, client)
}

fn framemd5_frames(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| !l.starts_with('#')).count())
        .unwrap_or(0)
}

fn stderr_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the server's log has `count` lines containing `needle`.
fn wait_for_log(server: &Server, needle: &str, count: usize) -> bool {
    wait_until(Duration::from_secs(20), || {
        server.stderr().matches(needle).count() >= count
    })
}

#[test]
fn reference_pipeline_h264_broadcast_decodes_at_early_and_late_watchers() {
    let (mut server, _users) = start_server();
    let dir = server.scratch();
    let watch = "watch,user=fier,channel=exampleChannel,channel-password=456";
    let (mut early_client, mut early, early_md5) = watch_and_decode(&server, watch, &dir, "early");
    assert!(wait_for_log(
        &server,
        "waiting for the channel's broadcaster",
        1
    ));
    let payload = format!("{BROADCAST_FIER},channel=exampleChannel,channel-password=456");
    let (_encoder, _broadcaster) = broadcast_h264(&server, &payload, Some(6), &dir, "bcast");
    // Join 2.5 s in, mid-GOP: the watcher must start at an SPS/IDR join point.
    std::thread::sleep(Duration::from_millis(2500));
    let (mut late_client, mut late, late_md5) = watch_and_decode(&server, watch, &dir, "late");
    // The broadcast ends after 6 s of media; the watchers' connections close after the grace.
    let early_log = early.stderr_path.clone().unwrap();
    let late_log = late.stderr_path.clone().unwrap();
    let context = || {
        format!(
            "server:\n{}\nearly ffmpeg:\n{}\nlate ffmpeg:\n{}\nbroadcast ffmpeg:\n{}\nbroadcast client:\n{}",
            server.stderr(),
            stderr_of(&early_log),
            stderr_of(&late_log),
            stderr_of(&dir.join("bcast-ffmpeg.stderr")),
            stderr_of(&dir.join("bcast-client.stderr")),
        )
    };
    with_context(context, || {
        assert!(
            early.wait_timeout(Duration::from_secs(60)).is_some(),
            "early decoder still running"
        );
        assert!(
            late.wait_timeout(Duration::from_secs(30)).is_some(),
            "late decoder still running"
        );
        let early_frames = framemd5_frames(&early_md5);
        let late_frames = framemd5_frames(&late_md5);
        assert!(
            early_frames >= 100,
            "early watcher decoded {early_frames} frames"
        );
        assert!(late_frames > 0, "late watcher decoded no frames");
        assert!(
            late_frames < early_frames,
            "the late watcher joined mid-stream"
        );
        for (who, child) in [("early", &early), ("late", &late)] {
            let errors = child.stderr();
            assert!(
                errors.trim().is_empty(),
                "{who} decoder reported errors:\n{errors}"
            );
        }
    });
    for client in [&mut early_client, &mut late_client] {
        assert!(client.wait_timeout(Duration::from_secs(10)).is_some());
    }
    server.assert_alive();
}

/// A seeded xorshift stream: reproducible "random" bytes without a dev-dependency.
fn seeded_bytes(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn opaque_bytes_arrive_byte_identical_at_three_watchers() {
    let (mut server, _users) = start_server();
    let dir = server.scratch();
    let data = seeded_bytes(4 << 20, 0x9e37_79b9_7f4a_7c15);
    let input = dir.join("random.bin");
    std::fs::write(&input, &data).unwrap();
    let watch = "watch,user=fier,channel=random,channel-password=s3cret";
    let mut watchers: Vec<_> = (0..3)
        .map(|i| watch_to_file(&server, watch, &dir, &format!("watcher{i}")))
        .collect();
    assert!(wait_for_log(
        &server,
        "waiting for the channel's broadcaster",
        3
    ));
    let mut broadcaster = ChildGuard::spawn_with(
        "broadcaster",
        &mut ringcast_fstream(
            &server,
            &format!("{BROADCAST_FIER},channel=random,channel-password=s3cret,delay=0.1"),
        ),
        Stdio::from(std::fs::File::open(&input).unwrap()),
        Stdio::null(),
        dir.join("broadcaster.stderr"),
    );
    with_context(
        || server.stderr(),
        || {
            let status = broadcaster.wait_timeout(Duration::from_secs(30)).unwrap();
            assert!(status.success(), "broadcaster: {}", broadcaster.stderr());
            for (i, (child, out)) in watchers.iter_mut().enumerate() {
                assert!(
                    child.wait_timeout(Duration::from_secs(30)).is_some(),
                    "watcher {i} did not end with the broadcast"
                );
                let got = std::fs::read(&*out).unwrap();
                assert_eq!(got.len(), data.len(), "watcher {i}: byte count");
                assert!(got == data, "watcher {i}: bytes differ");
            }
        },
    );
    server.assert_alive();
}

#[test]
fn flv_broadcast_over_fstream_plays_over_rtmp_and_fstream() {
    let (mut server, _users) = start_server();
    let dir = server.scratch();
    let channel = unique_key("flv");
    let (_source, _broadcaster) = broadcast_flv(
        &server,
        Fixture::H264Aac,
        &format!("{BROADCAST_FIER},channel={channel}"),
        &dir,
        "bcast",
    );
    assert!(wait_for_log(&server, "fstream broadcast started", 1));
    std::thread::sleep(Duration::from_millis(1000));
    let url = server.url("fstream", &format!("fier/{channel}"));
    let mut player = media::play_to_flv(&tools::ffmpeg(), &url, Some(5.0), &dir, "rtmp-play");
    let (mut watcher, watched) = watch_to_file(
        &server,
        &format!("watch,user=fier,channel={channel}"),
        &dir,
        "fs-watch",
    );
    player.finish(Duration::from_secs(40));
    watcher.wait_timeout(Duration::from_secs(30));
    server.assert_alive();
    with_context(
        || format!("server:\n{}\nplayer:\n{}", server.stderr(), player.stderr()),
        || {
            media::assert_faithful_relay(Fixture::H264Aac, &player.out, 100, "RTMP player");
            media::assert_faithful_relay(Fixture::H264Aac, &watched, 100, "fstream watcher");
        },
    );
}

#[test]
fn rtmp_stream_watched_over_fstream_is_flv_ffmpeg_plays() {
    let (mut server, _users) = start_server();
    let dir = server.scratch();
    let key = unique_key("tofs");
    let _publisher = media::publish(
        Fixture::H264Aac,
        &server.url("live", &key),
        false,
        &dir,
        "pub",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (mut watcher, watched) = watch_to_file(
        &server,
        &format!("watch,stream=live/{key}"),
        &dir,
        "fs-watch",
    );
    let (mut client, mut decoder, md5) =
        watch_and_decode(&server, &format!("watch,stream=live/{key}"), &dir, "decode");
    let decoder_log = decoder.stderr_path.clone().unwrap();
    let context = || {
        format!(
            "server:\n{}\ndecoder:\n{}",
            server.stderr(),
            stderr_of(&decoder_log)
        )
    };
    with_context(context, || {
        // The publisher sends the 10 s fixture once; the stream ends after the grace window.
        assert!(watcher.wait_timeout(Duration::from_secs(40)).is_some());
        assert!(decoder.wait_timeout(Duration::from_secs(20)).is_some());
        media::assert_faithful_relay(Fixture::H264Aac, &watched, 100, "fstream watcher");
        let frames = framemd5_frames(&md5);
        assert!(frames >= 100, "ffmpeg decoded {frames} frames");
        assert!(decoder.stderr().trim().is_empty(), "decode errors");
    });
    client.wait_timeout(Duration::from_secs(5));
    server.assert_alive();
}

/// Sends a raw handshake frame (`len`, then `rest` as-is) and expects the server to close.
fn assert_refused(server: &Server, bytes: &[u8], what: &str) {
    let mut stream = TcpStream::connect(server.fstream_addr()).unwrap();
    stream.write_all(bytes).unwrap();
    assert_closed_by_server(&mut stream, Duration::from_secs(20), what);
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(payload);
    out
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn bad_handshakes_are_refused_while_a_healthy_broadcast_flows() {
    let (mut server, _users) = start_server();
    let dir = server.scratch();
    let payload = format!("{BROADCAST_FIER},channel=healthy,channel-password=456");
    let (_encoder, _broadcaster) = broadcast_h264(&server, &payload, None, &dir, "healthy");
    let (_watcher, watched) = watch_to_file(
        &server,
        "watch,user=fier,channel=healthy,channel-password=456",
        &dir,
        "healthy-watch",
    );
    assert!(
        wait_until(Duration::from_secs(20), || file_len(&watched) > 0),
        "healthy watcher got nothing; server:\n{}",
        server.stderr()
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length 0", vec![0, 0, 0, 0, 0]),
        ("length 2^32-1", vec![0xff, 0xff, 0xff, 0xff, 0]),
        ("missing NUL", {
            let mut f = frame(b"watch,user=fier");
            f[4] = b'w';
            f
        }),
        ("non-UTF-8", frame(&[0xff, 0xfe, 0xfd])),
        ("unknown action", frame(b"listen,user=fier")),
        ("missing user", frame(b"watch,channel=healthy")),
        (
            "wrong user password",
            frame(b"broadcast,user=fier,user-password=nope,channel=other"),
        ),
        (
            "unknown user",
            frame(b"broadcast,user=nobody,user-password=123,channel=other"),
        ),
        (
            "wrong channel password",
            frame(b"watch,user=fier,channel=healthy,channel-password=wrong"),
        ),
        (
            "missing channel password",
            frame(b"watch,user=fier,channel=healthy"),
        ),
        (
            "second broadcaster on a live channel",
            [
                frame(payload.as_bytes()),
                vec![0, 0, 0, 1, 0x67, 0x42, 0, 0x1e],
            ]
            .concat(),
        ),
        // Valid and authenticated, then silence: the idle timeout closes it.
        (
            "broadcaster that sends nothing",
            frame(b"broadcast,user=fier,user-password=123,channel=silent"),
        ),
        // Half a handshake: the handshake deadline closes it.
        ("incomplete handshake", vec![0, 0, 0, 20, 0, b'w']),
    ];
    for (what, bytes) in &cases {
        with_context(|| server.stderr(), || assert_refused(&server, bytes, what));
    }

    // A watcher of a channel nobody broadcasts is not refused: it waits, as RTMP players do.
    let mut waiting = TcpStream::connect(server.fstream_addr()).unwrap();
    waiting
        .write_all(&frame(b"watch,user=fier,channel=nobody-here"))
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 16];
    let err = waiting
        .read(&mut buf)
        .expect_err("waiting watcher got data or EOF");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));

    // RTMP has no place for a channel password: a protected channel is not playable over RTMP.
    let mut rtmp_player =
        media::player_command(&tools::ffmpeg(), &server.url("fstream", "fier/healthy"));
    rtmp_player.args(["-t", "1", "-f", "null", "-"]);
    let played = run_with_timeout("rtmp-player", &mut rtmp_player, Duration::from_secs(30));
    assert!(
        !played.status.success(),
        "an RTMP player got a password-protected fstream channel"
    );

    let log = server.stderr();
    for needle in [
        "this fstream channel has a password",
        "fstream handshake refused",
        "authentication failed",
        "wrong channel password",
        "channel already live",
        "sent no data",
        "fstream connection closed before its handshake completed",
    ] {
        assert!(log.contains(needle), "no log line with {needle:?}:\n{log}");
    }
    // The healthy broadcast kept flowing through all of it.
    let before = file_len(&watched);
    assert!(
        wait_until(Duration::from_secs(20), || file_len(&watched)
            > before + 10_000),
        "healthy watcher stalled at {before} bytes; server:\n{}",
        server.stderr()
    );
    server.assert_alive();
}

/// Connects and sends the handshake for `payload`.
fn connect(server: &Server, payload: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.fstream_addr()).unwrap();
    stream.write_all(&frame(payload.as_bytes())).unwrap();
    stream
}

/// Reads until the server closes, with a generous deadline.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

/// Waits until the server log shows `count` broadcasts started.
fn wait_for_broadcasts(server: &Server, count: usize) {
    assert!(
        wait_for_log(server, "fstream broadcast started", count),
        "broadcasts did not start; server:\n{}",
        server.stderr()
    );
}

#[test]
fn one_user_broadcasts_several_channels_at_once() {
    let (mut server, _users) = start_server();
    let mut watch_one = connect(&server, "watch,user=fier,channel=one");
    let mut watch_two = connect(&server, "watch,user=fier,channel=two");
    assert!(wait_for_log(
        &server,
        "waiting for the channel's broadcaster",
        2
    ));
    let one = seeded_bytes(256 << 10, 1);
    let two = seeded_bytes(256 << 10, 2);
    let mut bcast_one = connect(&server, &format!("{BROADCAST_FIER},channel=one"));
    let mut bcast_two = connect(&server, &format!("{BROADCAST_FIER},channel=two"));
    bcast_one.write_all(&one).unwrap();
    bcast_two.write_all(&two).unwrap();
    wait_for_broadcasts(&server, 2);
    drop(bcast_one);
    drop(bcast_two);
    with_context(
        || server.stderr(),
        || {
            assert!(read_to_close(&mut watch_one) == one, "channel one differs");
            assert!(read_to_close(&mut watch_two) == two, "channel two differs");
        },
    );
    server.assert_alive();
}

#[test]
fn with_takeover_a_second_broadcaster_replaces_the_first() {
    let (mut server, _users) = start_server_with("takeover = true");
    let payload = format!("{BROADCAST_FIER},channel=handover");
    let mut watcher = connect(&server, "watch,user=fier,channel=handover");
    assert!(wait_for_log(
        &server,
        "waiting for the channel's broadcaster",
        1
    ));
    let mut first = connect(&server, &payload);
    first.write_all(b"first broadcaster ").unwrap();
    wait_for_broadcasts(&server, 1);
    let mut second = connect(&server, &payload);
    second.write_all(b"second broadcaster").unwrap();
    wait_for_broadcasts(&server, 2);
    // The first is told to go at its next write.
    let _ = first.write_all(b"ignored");
    with_context(
        || server.stderr(),
        || {
            assert_closed_by_server(&mut first, Duration::from_secs(20), "replaced broadcaster");
            drop(second);
            let got = read_to_close(&mut watcher);
            assert_eq!(got, b"first broadcaster second broadcaster");
        },
    );
    server.assert_alive();
}

#[test]
fn the_client_fails_when_its_broadcast_is_refused() {
    let (mut server, _users) = start_server();
    let dir = server.scratch();
    let input = dir.join("data.bin");
    std::fs::write(&input, seeded_bytes(8 << 20, 3)).unwrap();
    let mut client = ChildGuard::spawn_with(
        "refused",
        &mut ringcast_fstream(&server, "broadcast,user=fier,user-password=wrong,channel=x"),
        Stdio::from(std::fs::File::open(&input).unwrap()),
        Stdio::null(),
        dir.join("refused.stderr"),
    );
    let status = client.wait_timeout(Duration::from_secs(30));
    let status = status.expect("the refused client did not exit");
    assert!(!status.success(), "client exited 0 after being refused");
    assert!(
        client.stderr().contains("closed the connection"),
        "{}",
        client.stderr()
    );
    server.assert_alive();
}

#[test]
fn a_watcher_that_stops_reading_is_dropped_and_the_others_get_every_byte() {
    let (mut server, _users) =
        start_server_with("max_gop_bytes = 4194304\nslow_watcher_disconnect_ms = 2000");
    let data = seeded_bytes(32 << 20, 4);
    let mut fast = connect(&server, "watch,user=fier,channel=pressure");
    let _stuck = connect(&server, "watch,user=fier,channel=pressure");
    assert!(wait_for_log(
        &server,
        "waiting for the channel's broadcaster",
        2
    ));
    let reader = std::thread::spawn(move || read_to_close(&mut fast));
    let mut broadcaster = connect(&server, &format!("{BROADCAST_FIER},channel=pressure"));
    // Paced at ~6 MB/s: far more than the stuck watcher's socket buffers hold, gentle on CPU.
    for piece in data.chunks(64 << 10) {
        broadcaster.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(broadcaster);
    let got = reader.join().unwrap();
    with_context(
        || server.stderr(),
        || {
            assert_eq!(got.len(), data.len(), "fast watcher: byte count");
            assert!(got == data, "fast watcher: bytes differ");
            let log = server.stderr();
            assert!(
                log.lines().any(|l| l.contains("play ended")
                    && l.contains("protocol=\"fstream\"")
                    && (l.contains("too slow") || l.contains("slow watcher"))),
                "the stuck watcher was not dropped"
            );
        },
    );
    server.assert_alive();
}
