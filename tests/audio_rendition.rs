//! Proves the AAC rendition and the timeline fixes with real players (issue "FTL plays
//! everywhere"):
//!
//! - an FTL stream (the loadgen's FTL publisher, real H.264 and real Opus made here) plays on
//!   Debian's ffmpeg 5.1 with no `-map`, over RTMP and HTTP-FLV, with `Audio: aac`, 6 s of video
//!   and audio for a late joiner with `-t 6`, and on GStreamer 1.22 (`avdec_aac` + video);
//! - an RTMP player that lists Opus in its `fourCcList` gets the published Opus packets
//!   byte-identical, while a plain one gets AAC that keeps flowing past Ogg headers and garbage
//!   sent mid-stream as audio packets;
//! - a player joining an ffmpeg 9 HEVC + Opus publish late gets the OpusHead and remuxes;
//! - takeovers (FTL and RTMP) never step a player's timestamps back.
//!
//! Every wait has a generous deadline; nothing asserts on timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ftl::{Loadgen, SECRET, field, make_sources, start_ftl};
use common::process::{ChildGuard, run_with_timeout};
use common::rtmp_raw::{Amf, Message, RawRtmp, chunk_message};
use common::server::Server;
use common::{tools, unique_key, with_context};

/// The packets of an Ogg Opus file (OpusHead and OpusTags first), by page lacing.
fn ogg_packets(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() && &data[at..at + 4] == b"OggS" {
        let segments = data[at + 26] as usize;
        let table = &data[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(&data[body..body + lace as usize]);
            body += lace as usize;
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    packets
}

/// The last `frame=N` ffmpeg printed.
fn frames_reported(stderr: &str) -> u64 {
    stderr
        .rsplit("frame=")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Seconds of 16-bit PCM in a WAV file written by ffmpeg.
fn wav_seconds(path: &Path) -> f64 {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let data = std::fs::read(path).unwrap_or_default();
    let channels = data.get(22).copied().unwrap_or(2).max(1) as f64;
    len.saturating_sub(44) as f64 / (48_000.0 * 2.0 * channels)
}

/// `ffmpeg -i URL -t 6 -f null -` (plain, no -map) plus the first 6 s of audio as WAV.
fn plain_ffmpeg_plays(ffmpeg: &Path, url: &str, wav: &Path) -> (bool, String) {
    let out = run_with_timeout(
        "ffmpeg 5.1 plain player",
        Command::new(ffmpeg)
            .args(["-hide_banner", "-y", "-rw_timeout", "15000000", "-i", url])
            .args(["-t", "6", "-f", "null", "-", "-map", "0:a", "-t", "6"])
            .arg(wav),
        Duration::from_secs(60),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_ftl_stream_plays_with_aac_on_ffmpeg_5_1_over_rtmp_and_http_flv_and_on_gstreamer() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let mut loadgen = Loadgen::start(
        ftl.ftl,
        &format!("77-{SECRET}"),
        &h264,
        &ogg,
        &["--duration", "40"],
        &dir,
        "pub",
    );
    // Late joiners: the stream has run a while before anyone plays.
    std::thread::sleep(Duration::from_millis(2500));
    let rtmp = ftl.server.url("ftl", "77");
    let http = format!("http://127.0.0.1:{}/ftl/77.flv", ftl.server.http_port);
    let gst_out = dir.join("gst.out");
    let mut gst = ChildGuard::spawn_with(
        "gst",
        Command::new(tools::gst_launch())
            .args(["-e", "rtmp2src"])
            .arg(format!("location={rtmp}"))
            .args([
                "timeout=15",
                "!",
                "flvdemux",
                "name=d",
                "d.audio",
                "!",
                "queue",
                "!",
                "aacparse",
                "!",
                "avdec_aac",
                "!",
                "fakesink",
                "name=a",
                "silent=false",
                "d.video",
                "!",
                "queue",
                "!",
                "h264parse",
                "!",
                "avdec_h264",
                "!",
                "fakesink",
                "name=v",
                "silent=false",
                "-v",
            ]),
        Stdio::null(),
        Stdio::from(std::fs::File::create(&gst_out).unwrap()),
        dir.join("gst.stderr"),
    );
    let http_wav = dir.join("http.wav");
    let http_player =
        std::thread::spawn(move || plain_ffmpeg_plays(&tools::ffmpeg(), &http, &http_wav));
    let (rtmp_ok, rtmp_log) = plain_ffmpeg_plays(&tools::ffmpeg(), &rtmp, &dir.join("rtmp.wav"));
    let (http_ok, http_log) = http_player.join().unwrap();
    // SIGINT: with -e, GStreamer ends the stream and flushes what it printed.
    gst.interrupt_and_wait(Duration::from_secs(10));
    let gst_log = std::fs::read_to_string(&gst_out).unwrap_or_default();
    loadgen.summary(Duration::from_secs(60));
    with_context(
        || {
            format!(
                "server stderr:\n{}\nRTMP player:\n{rtmp_log}\nHTTP player:\n{http_log}\ngst stderr:\n{}\n{}",
                ftl.server.stderr(),
                gst.stderr(),
                loadgen.logs()
            )
        },
        || {
            for (what, ok, log, wav) in [
                ("RTMP", rtmp_ok, &rtmp_log, "rtmp.wav"),
                ("HTTP-FLV", http_ok, &http_log, "http.wav"),
            ] {
                assert!(ok, "ffmpeg 5.1 over {what} failed");
                assert!(log.contains("Audio: aac"), "{what}: no AAC audio listed");
                let frames = frames_reported(log);
                assert!(frames >= 150, "{what}: {frames} video frames in 6 s");
                // The rendition starts when the first AAC player arrives, so a late joiner's
                // audio begins a little after its video (which starts at the cached keyframe).
                let seconds = wav_seconds(&dir.join(wav));
                assert!(
                    (4.5..=6.5).contains(&seconds),
                    "{what}: {seconds:.2} s of audio"
                );
            }
            let audio_buffers = gst_log.matches("/GstFakeSink:a:").count();
            let video_buffers = gst_log.matches("/GstFakeSink:v:").count();
            assert!(
                audio_buffers > 20,
                "GStreamer decoded {audio_buffers} AAC buffers"
            );
            assert!(
                video_buffers > 20,
                "GStreamer decoded {video_buffers} video frames"
            );
        },
    );
    assert_eq!(
        field(
            &std::fs::read_to_string(dir.join("pub.json")).unwrap_or_default(),
            "server_code"
        ),
        -1
    );
}

const AUDIO_CSID: u8 = 6;

/// A raw RTMP publisher of `live/<key>`.
fn raw_publisher(port: u16, key: &str) -> (RawRtmp, u32) {
    let mut publisher = RawRtmp::connected(port, "live");
    let msid = publisher.create_stream();
    publisher.publish(msid, key);
    let status = publisher.expect_status(Duration::from_secs(10));
    assert_eq!(status, "NetStream.Publish.Start");
    (publisher, msid)
}

/// A raw RTMP player of `live/<key>` (with `extra` connect properties), reading in a thread
/// until `stop_after` ms of media or the deadline; returns every media message.
fn raw_player(
    port: u16,
    app: &str,
    key: &str,
    extra: Vec<(String, Amf)>,
    stop_after: u32,
) -> std::thread::JoinHandle<Vec<Message>> {
    let mut player = RawRtmp::connected_with(port, app, extra);
    let msid = player.create_stream();
    player.play(msid, key);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut media = Vec::new();
        loop {
            let msg = match player.read_message(deadline) {
                Ok(msg) => msg,
                Err(e) => {
                    let tail: Vec<(u8, u32, usize)> = media
                        .iter()
                        .rev()
                        .take(4)
                        .map(|m: &Message| (m.type_id, m.timestamp, m.payload.len()))
                        .collect();
                    eprintln!(
                        "raw player stopped after {} media messages ({tail:?}): {e}",
                        media.len()
                    );
                    break;
                }
            };
            if matches!(msg.type_id, 8 | 9 | 18) {
                let done = msg.timestamp >= stop_after;
                media.push(msg);
                if done {
                    break;
                }
            }
        }
        media
    })
}

fn ex_audio(packet_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x90 | packet_type];
    out.extend_from_slice(b"Opus");
    out.extend_from_slice(body);
    out
}

#[test]
fn opus_listing_players_get_opus_byte_identical_and_others_aac_that_survives_garbage() {
    let server = Server::start();
    let dir = server.scratch();
    let (_, ogg) = make_sources(&dir);
    let packets = ogg_packets(&ogg);
    assert!(packets[0].starts_with(b"OpusHead") && packets.len() > 300);
    let key = unique_key("opus");
    let four_cc = vec![(
        "fourCcList".to_owned(),
        Amf::StrictArray(vec![Amf::str("avc1"), Amf::str("Opus")]),
    )];
    let sent_until = 20 * (packets.len() as u32 - 3);
    let opus_player = raw_player(server.port, "live", &key, four_cc, sent_until);
    let aac_player = raw_player(server.port, "live", &key, Vec::new(), sent_until - 200);
    std::thread::sleep(Duration::from_millis(500));

    let (mut publisher, msid) = raw_publisher(server.port, &key);
    let mut sent = vec![(0, ex_audio(0, &packets[0]))];
    let garbage_at = 3000;
    for (i, packet) in packets[2..].iter().enumerate() {
        let ts = 20 * i as u32;
        if ts == garbage_at {
            // What the reference FTL client sends when it loops: the Ogg header pages, then
            // bytes that are not Opus at all.
            for junk in [&packets[0][..], &packets[1][..], &[0xff; 7][..], &[][..]] {
                sent.push((ts, ex_audio(1, junk)));
            }
        }
        sent.push((ts, ex_audio(1, packet)));
    }
    for (ts, body) in &sent {
        let bytes = chunk_message(AUDIO_CSID, *ts, 8, msid, body, 128);
        publisher.send_raw(&bytes).unwrap();
        // Twice real time: fast, yet far from the slow-watcher policy on a loaded machine.
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent: Vec<Vec<u8>> = sent.into_iter().map(|(_, body)| body).collect();
    let opus = opus_player.join().unwrap();
    let aac = aac_player.join().unwrap();
    with_context(
        || format!("server stderr:\n{}", server.stderr()),
        || {
            let got: Vec<&Vec<u8>> = opus
                .iter()
                .filter(|m| m.type_id == 8)
                .map(|m| &m.payload)
                .collect();
            assert_eq!(
                got.len(),
                sent.len(),
                "Opus player got {} of {} audio messages",
                got.len(),
                sent.len()
            );
            assert!(
                got.iter().zip(&sent).all(|(a, b)| *a == b),
                "Opus packets were altered"
            );

            let audio: Vec<&Message> = aac.iter().filter(|m| m.type_id == 8).collect();
            assert!(
                audio.iter().all(|m| m.payload[0] == 0xaf),
                "a plain player got non-AAC audio"
            );
            assert_eq!(
                audio[0].payload[..2],
                [0xaf, 0],
                "AAC sequence header first"
            );
            assert!(
                audio.windows(2).all(|w| w[1].timestamp >= w[0].timestamp),
                "AAC timestamps step back"
            );
            let after = audio
                .iter()
                .filter(|m| m.timestamp > garbage_at + 1000)
                .count();
            assert!(after > 50, "only {after} AAC frames after the garbage");
            let expected = (sent_until - 200) as usize * 48 / 1024;
            assert!(
                audio.len() * 10 >= expected * 9,
                "{} AAC frames, expected about {expected}",
                audio.len()
            );
        },
    );
}

#[test]
fn a_late_joiner_of_an_hevc_opus_publish_gets_the_opus_head_and_remuxes() {
    let server = Server::start();
    let dir = server.scratch();
    let key = unique_key("hevc");
    let url = server.url("live", &key);
    let modern = tools::ffmpeg_modern();
    let _publisher = ChildGuard::spawn(
        "ffmpeg 9 HEVC + Opus publisher",
        Command::new(&modern)
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t",
                "30",
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-g",
                "25",
            ])
            .args([
                "-x265-params",
                "log-level=error",
                "-c:a",
                "libopus",
                "-f",
                "flv",
            ])
            .arg(&url),
        dir.join("pub.stderr"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.join("remux.flv");
    let http = format!(
        "http://127.0.0.1:{}/live/{key}.flv?audio=opus",
        server.http_port
    );
    let mut results = Vec::new();
    for (what, source) in [
        ("RTMP (fourCcList-less: AAC)", url.clone()),
        ("HTTP-FLV ?audio=opus", http),
    ] {
        let played = run_with_timeout(
            "ffmpeg 9 remuxing player",
            Command::new(&modern)
                .args([
                    "-hide_banner",
                    "-y",
                    "-rw_timeout",
                    "15000000",
                    "-i",
                    &source,
                ])
                .args(["-c", "copy", "-t", "3", "-f", "flv"])
                .arg(&out),
            Duration::from_secs(60),
        );
        results.push((
            what,
            played.status.success(),
            String::from_utf8_lossy(&played.stderr).into_owned(),
        ));
    }
    with_context(
        || {
            format!(
                "server stderr:\n{}\nplayers:\n{results:#?}",
                server.stderr()
            )
        },
        || {
            for (what, ok, log) in &results {
                assert!(ok, "{what}: the remux failed");
                assert!(log.contains("Video: hevc"), "{what}: no HEVC");
            }
            assert!(
                results[1].2.contains("Audio: opus"),
                "HTTP-FLV ?audio=opus is not Opus"
            );
            assert!(results[0].2.contains("Audio: aac"), "RTMP is not AAC");
        },
    );
}

/// Timestamps of the audio and video a raw player received, each track never stepping back.
fn assert_monotonic(media: &[Message], what: &str) {
    for type_id in [8, 9] {
        let ts: Vec<u32> = media
            .iter()
            .filter(|m| m.type_id == type_id)
            .map(|m| m.timestamp)
            .collect();
        assert!(
            ts.len() > 10,
            "{what}: only {} messages of type {type_id}",
            ts.len()
        );
        if let Some(w) = ts.windows(2).find(|w| w[1] < w[0]) {
            panic!(
                "{what}: type {type_id} timestamps step back: {} → {}",
                w[0], w[1]
            );
        }
    }
}

#[test]
fn an_rtmp_takeover_continues_the_players_timeline() {
    let server = Server::start_with(1, Some("[fanout]\ntakeover = true\n"));
    let key = unique_key("take");
    let player = raw_player(server.port, "live", &key, Vec::new(), 1_000_000);
    let send = |publisher: &mut RawRtmp, msid: u32, frames: u32| {
        for i in 0..frames {
            let ts = i * 40;
            let video: &[u8] = if i % 25 == 0 {
                &[0x17, 1, 0, 0, 0, 1, 2]
            } else {
                &[0x27, 1, 0, 0, 0, 3]
            };
            publisher
                .send_raw(&chunk_message(7, ts, 9, msid, video, 128))
                .unwrap();
            publisher
                .send_raw(&chunk_message(
                    AUDIO_CSID,
                    ts,
                    8,
                    msid,
                    &[0xaf, 1, 0x21, 0x10],
                    128,
                ))
                .unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let (mut first, msid) = raw_publisher(server.port, &key);
    first
        .send_raw(&chunk_message(
            7,
            0,
            9,
            msid,
            &[0x17, 0, 0, 0, 0, 1, 0x64],
            128,
        ))
        .unwrap();
    first
        .send_raw(&chunk_message(
            AUDIO_CSID,
            0,
            8,
            msid,
            &[0xaf, 0, 0x11, 0x90],
            128,
        ))
        .unwrap();
    send(&mut first, msid, 150); // 6 s of media
    let (mut second, msid2) = raw_publisher(server.port, &key);
    send(&mut second, msid2, 75);
    drop(second);
    drop(first);
    std::thread::sleep(Duration::from_millis(500));
    drop(server);
    let media = player.join().unwrap();
    assert_monotonic(&media, "RTMP takeover");
}

#[test]
fn an_ftl_takeover_continues_the_players_timeline() {
    let ftl = start_ftl("");
    let dir = ftl.server.scratch();
    let (h264, ogg) = make_sources(&dir);
    let key = format!("77-{SECRET}");
    let mut first = Loadgen::start(
        ftl.ftl,
        &key,
        &h264,
        &ogg,
        &["--duration", "12"],
        &dir,
        "first",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let player = raw_player(ftl.server.port, "ftl", "77", Vec::new(), 1_000_000);
    std::thread::sleep(Duration::from_secs(5));
    let mut second = Loadgen::start(
        ftl.ftl,
        &key,
        &h264,
        &ogg,
        &["--duration", "4"],
        &dir,
        "second",
    );
    second.summary(Duration::from_secs(40));
    first.summary(Duration::from_secs(40));
    let stderr = ftl.server.stderr();
    drop(ftl);
    let media = player.join().unwrap();
    with_context(
        || format!("server stderr:\n{stderr}"),
        || assert_monotonic(&media, "FTL takeover"),
    );
}

/// The first byte of every audio tag's body in FLV `bytes` (after the 13-byte file header).
fn flv_audio_heads(bytes: &[u8]) -> Vec<u8> {
    let mut heads = Vec::new();
    let mut at = 13;
    while at + 11 <= bytes.len() {
        let size = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if at + 11 + size > bytes.len() {
            break;
        }
        if bytes[at] == 8 && size > 0 {
            heads.push(bytes[at + 11]);
        }
        at += 11 + size + 4;
    }
    heads
}

#[test]
fn http_flv_and_fstream_watchers_get_aac_unless_they_ask_for_opus() {
    use std::io::{Read, Write};
    let server = Server::start();
    let dir = server.scratch();
    let (_, ogg) = make_sources(&dir);
    let packets = ogg_packets(&ogg);
    let key = unique_key("flvaudio");
    let http = |query: &str| {
        let mut stream = common::http::connect(&server.http_addr());
        write!(
            stream,
            "GET /live/{key}.flv{query} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        stream
    };
    let (mut http_aac, mut http_opus) = (http(""), http("?audio=opus"));
    let fstream = |extra: &str, name: &str| {
        let out = dir.join(format!("{name}.flv"));
        let mut cmd = common::fstream::client(&server, &format!("watch,stream=live/{key}{extra}"));
        let child = ChildGuard::spawn_with(
            name,
            &mut cmd,
            Stdio::null(),
            Stdio::from(std::fs::File::create(&out).unwrap()),
            dir.join(format!("{name}.stderr")),
        );
        (child, out)
    };
    let (mut fs_aac, fs_aac_out) = fstream("", "fs-aac");
    let (mut fs_opus, fs_opus_out) = fstream(",audio=opus", "fs-opus");
    std::thread::sleep(Duration::from_millis(500));
    let (mut publisher, msid) = raw_publisher(server.port, &key);
    let head = ex_audio(0, &packets[0]);
    publisher
        .send_raw(&chunk_message(AUDIO_CSID, 0, 8, msid, &head, 128))
        .unwrap();
    for (i, packet) in packets[2..200].iter().enumerate() {
        let body = ex_audio(1, packet);
        publisher
            .send_raw(&chunk_message(
                AUDIO_CSID,
                20 * i as u32,
                8,
                msid,
                &body,
                128,
            ))
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let read_all = |stream: &mut std::net::TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        buf.split_off(body)
    };
    let (got_http_aac, got_http_opus) = (read_all(&mut http_aac), read_all(&mut http_opus));
    fs_aac.kill();
    fs_opus.kill();
    let got_fs_aac = std::fs::read(&fs_aac_out).unwrap_or_default();
    let got_fs_opus = std::fs::read(&fs_opus_out).unwrap_or_default();
    with_context(
        || format!("server stderr:\n{}", server.stderr()),
        || {
            for (what, flv, opus) in [
                ("HTTP-FLV", &got_http_aac, false),
                ("HTTP-FLV ?audio=opus", &got_http_opus, true),
                ("fstream", &got_fs_aac, false),
                ("fstream audio=opus", &got_fs_opus, true),
            ] {
                let heads = flv_audio_heads(flv);
                assert!(heads.len() > 50, "{what}: {} audio tags", heads.len());
                let expected = if opus { 0x90 } else { 0xa0 };
                assert!(
                    heads.iter().all(|h| h & 0xf0 == expected),
                    "{what}: audio tags {:x?}",
                    &heads[..heads.len().min(8)]
                );
            }
        },
    );
}
