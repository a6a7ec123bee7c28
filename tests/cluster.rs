//! Proves scale-out (issue #12) with real peers on loopback: `redis-server` as the stream
//! directory, three ringcast nodes each on its own 127.0.0.x address, HAProxy round robin in
//! front, `ringcast-loadgen` publishers and players, ffmpeg players, and a real nginx-rtmp
//! origin in front of which a static-mode ringcast edge plays.
//!
//! Each test uses its own addresses (127.0.0.1x, .2x, ...), so tests run in parallel safely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::cluster::{
    Balancer, Nginx, Node, Redis, Watchers, eventually, loadgen_publish, summary_field,
};
use common::fixtures::Fixture;
use common::{media, rtmp_raw, tools, unique_key, with_context};

/// Registrations live 5 s: the grace window must outlast them (README "Scale-out").
const GRACE: &str = "[fanout]\npublisher_grace_ms = 15000\n";

fn redis_cluster(redis: &Redis, idle_close_ms: u64) -> String {
    format!(
        "mode = \"redis\"\nredis = \"{}\"\nidle_close_ms = {idle_close_ms}\n",
        redis.url()
    )
}

fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("---- node {} ----\n{}", n.ip, n.stderr()))
        .collect()
}

const UPSTREAMS: &str = "ringcast_cluster_upstreams";
const PULLS: &str = "ringcast_cluster_pulls_total";

#[test]
fn three_nodes_behind_haproxy_feed_300_players_with_one_pull_per_edge() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let redis = Redis::start("127.0.0.10", dir);
    let idle_close = Duration::from_millis(3000);
    let cluster = redis_cluster(&redis, idle_close.as_millis() as u64);
    let nodes: Vec<Node> = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        .iter()
        .enumerate()
        .map(|(i, ip)| Node::start(ip, &format!("n{}", i + 1), &cluster, GRACE, dir))
        .collect();
    let balancer = Balancer::start(
        "127.0.0.10",
        &nodes.iter().map(|n| n.rtmp).collect::<Vec<_>>(),
        dir,
    );
    let stream = format!("live/{}", unique_key("scale"));
    let mut publisher = loadgen_publish(balancer.addr, &stream, dir, "pub");
    let all: Vec<&Node> = nodes.iter().collect();
    let context = || format!("{}\npublisher:\n{}", logs(&all), publisher.stderr());

    with_context(context, || {
        assert!(
            eventually(Duration::from_secs(15), || redis.stream_keys().len() == 1),
            "the stream was never registered in Redis"
        );
        let origin = nodes
            .iter()
            .position(|n| n.metric("ringcast_streams_live") == 1)
            .expect("one node has the publisher");
        let mut watchers = Watchers::start(
            balancer.addr,
            &stream,
            300,
            (20, 8),
            "127.0.1.1-127.0.1.60",
            dir,
            "watch",
        );
        std::thread::sleep(Duration::from_secs(12));
        for (i, node) in nodes.iter().enumerate() {
            let playing = node.metric("ringcast_watchers{protocol=\"rtmp\"}");
            assert!(
                playing >= 90,
                "node {} has only {playing} RTMP watchers: the balancer should spread 300",
                node.ip
            );
            let expected = u64::from(i != origin);
            assert_eq!(node.metric(UPSTREAMS), expected, "upstreams of {}", node.ip);
        }
        let summary = watchers.summary(Duration::from_secs(60));
        assert_eq!(summary_field(&summary, "connected"), 300, "{summary}");
        assert_eq!(summary_field(&summary, "playing"), 300, "{summary}");
        for zero in [
            "errors",
            "disconnects",
            "stalls",
            "lost_frames",
            "connect_failures",
        ] {
            assert_eq!(summary_field(&summary, zero), 0, "{zero}: {summary}");
        }
        // Full rate: 25 fps for every player over the measured window (integer seconds).
        let measured = summary_field(&summary, "measured_secs");
        let frames = summary_field(&summary, "video_frames");
        assert!(
            frames >= 300 * measured * 25 * 9 / 10,
            "{frames} video frames over {measured} s for 300 players: {summary}"
        );
        let left = Instant::now();
        for (i, node) in nodes.iter().enumerate() {
            let expected = u64::from(i != origin);
            assert_eq!(node.metric(PULLS), expected, "pulls of {}", node.ip);
            assert_eq!(
                node.metric("ringcast_cluster_pull_reconnects_total"),
                0,
                "reconnects of {}",
                node.ip
            );
        }
        // The pulls outlive the players by idle_close_ms, then close.
        std::thread::sleep(Duration::from_millis(1000));
        let edges: Vec<&Node> = (0..3).filter(|&i| i != origin).map(|i| &nodes[i]).collect();
        for edge in &edges {
            assert_eq!(
                edge.metric(UPSTREAMS),
                1,
                "{} closed its pull early",
                edge.ip
            );
        }
        assert!(
            eventually(Duration::from_secs(15), || edges
                .iter()
                .all(|e| e.metric(UPSTREAMS) == 0)),
            "the pulls did not close"
        );
        let closed_after = left.elapsed();
        assert!(
            closed_after <= idle_close + Duration::from_millis(2500),
            "the pulls closed {closed_after:?} after the players left (idle_close_ms {idle_close:?})"
        );
    });
    assert!(publisher.is_running(), "the publisher stopped");
}

#[test]
fn origin_killed_publisher_returns_on_another_node_and_an_edge_player_keeps_playing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let redis = Redis::start("127.0.0.20", dir);
    let cluster = redis_cluster(&redis, 3000);
    let mut nodes: Vec<Node> = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
        .iter()
        .enumerate()
        .map(|(i, ip)| Node::start(ip, &format!("n{}", i + 1), &cluster, GRACE, dir))
        .collect();
    let balancer = Balancer::start(
        "127.0.0.20",
        &nodes.iter().map(|n| n.rtmp).collect::<Vec<_>>(),
        dir,
    );
    let stream = format!("live/{}", unique_key("failover"));
    let balanced = format!("rtmp://{}/{stream}", balancer.addr);
    let mut publisher = media::publish(Fixture::H264Aac, &balanced, true, dir, "pub1");
    assert!(
        eventually(Duration::from_secs(15), || redis.stream_keys().len() == 1),
        "the stream was never registered; {}",
        logs(&nodes.iter().collect::<Vec<_>>())
    );
    let origin = nodes
        .iter()
        .position(|n| n.metric("ringcast_streams_live") == 1)
        .expect("one node has the publisher");
    // A player on each other node: after the failover one of them has the publisher, the
    // other pulls from it.
    let mut players: Vec<(usize, common::process::ChildGuard, std::path::PathBuf)> = (0..3)
        .filter(|&i| i != origin)
        .map(|i| {
            let name = format!("player{i}");
            let (player, md5) =
                media::play_to_framemd5(&tools::ffmpeg(), &nodes[i].url(&stream), dir, &name);
            (i, player, md5)
        })
        .collect();
    let flowing = eventually(Duration::from_secs(20), || {
        players
            .iter()
            .all(|(_, _, md5)| media::framemd5_count(md5) > 50)
    });
    let context =
        |nodes: &[&Node], players: &[(usize, common::process::ChildGuard, std::path::PathBuf)]| {
            let players: String = players
                .iter()
                .map(|(i, p, _)| format!("player on node {i}:\n{}\n", p.stderr()))
                .collect();
            format!("{}\n{players}", logs(nodes))
        };
    assert!(
        flowing,
        "the edge players never played; {}",
        context(&nodes.iter().collect::<Vec<_>>(), &players)
    );

    nodes[origin].kill();
    publisher.kill();
    let before: Vec<usize> = players
        .iter()
        .map(|(_, _, md5)| media::framemd5_count(md5))
        .collect();
    // The publisher reconnects through the balancer, which skips the dead node.
    let _publisher = media::publish(Fixture::H264Aac, &balanced, true, dir, "pub2");
    let resumed = eventually(Duration::from_secs(40), || {
        players
            .iter()
            .zip(&before)
            .all(|((_, _, md5), before)| media::framemd5_count(md5) > before + 100)
    });
    let survivors: Vec<&Node> = (0..3).filter(|&i| i != origin).map(|i| &nodes[i]).collect();
    let context = context(&survivors, &players);
    with_context(
        || context.clone(),
        || {
            assert!(resumed, "an edge player did not resume after the failover");
            for (i, player, _) in &mut players {
                assert!(
                    player.is_running(),
                    "the player on node {i} lost its connection"
                );
            }
            // One survivor got the publisher; the other re-pulled from it.
            let repulled = survivors
                .iter()
                .filter(|n| n.metric("ringcast_cluster_pull_reconnects_total") >= 1)
                .count();
            assert!(repulled >= 1, "no edge re-resolved its pull");
            // The dead origin's registration lapsed and the new publisher's node registered.
            let dead = format!("n{} ", origin + 1);
            let moved = eventually(Duration::from_secs(15), || {
                let keys = redis.stream_keys();
                keys.len() == 1 && {
                    let owner = redis.cli(&["GET", &keys[0]]);
                    owner.starts_with('n') && !owner.starts_with(&dead)
                }
            });
            assert!(moved, "the stream did not move off the dead origin");
        },
    );
}

#[test]
fn redis_stopped_mid_stream_viewers_keep_playing_and_new_streams_register_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut redis = Redis::start("127.0.0.30", dir);
    let cluster = redis_cluster(&redis, 3000);
    let origin = Node::start("127.0.0.31", "n1", &cluster, GRACE, dir);
    let edge = Node::start("127.0.0.32", "n2", &cluster, GRACE, dir);
    let first = format!("live/{}", unique_key("redis-a"));
    let _pub_a = media::publish(Fixture::H264Aac, &origin.url(&first), true, dir, "pub-a");
    assert!(eventually(Duration::from_secs(15), || redis
        .stream_keys()
        .len()
        == 1));
    let (mut player, md5) =
        media::play_to_framemd5(&tools::ffmpeg(), &edge.url(&first), dir, "player-a");
    let player_log = player.stderr_path.clone().unwrap_or_default();
    let context = || {
        let player = std::fs::read_to_string(&player_log).unwrap_or_default();
        format!("{}\nplayer:\n{player}", logs(&[&origin, &edge]))
    };
    with_context(context, || {
        assert!(eventually(
            Duration::from_secs(20),
            || media::framemd5_count(&md5) > 25
        ));
        for node in [&origin, &edge] {
            assert_eq!(node.metric("ringcast_cluster_directory_up"), 1);
        }

        redis.stop();
        assert!(
            eventually(Duration::from_secs(15), || [&origin, &edge]
                .iter()
                .all(|n| n.metric("ringcast_cluster_directory_up") == 0)),
            "directory_up did not drop to 0"
        );
        let during = media::framemd5_count(&md5);
        assert!(
            eventually(Duration::from_secs(15), || media::framemd5_count(&md5)
                > during + 100),
            "the edge player stalled while Redis was down"
        );
        assert!(player.is_running(), "the edge player was disconnected");
        for node in [&origin, &edge] {
            assert_eq!(
                node.readyz(),
                200,
                "/readyz of {} while Redis is down",
                node.ip
            );
        }
        // A stream published while Redis is down cannot be found from the edge yet.
        let second = format!("live/{}", unique_key("redis-b"));
        let _pub_b = media::publish(Fixture::H264Aac, &origin.url(&second), true, dir, "pub-b");
        let (mut player_b, md5_b) =
            media::play_to_framemd5(&tools::ffmpeg(), &edge.url(&second), dir, "player-b");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            media::framemd5_count(&md5_b),
            0,
            "played without a directory"
        );
        player_b.kill();

        redis.restart();
        assert!(
            eventually(Duration::from_secs(20), || redis.stream_keys().len() == 2),
            "the streams did not register again: {:?}",
            redis.stream_keys()
        );
        let (mut player_c, md5_c) =
            media::play_to_framemd5(&tools::ffmpeg(), &edge.url(&second), dir, "player-c");
        assert!(
            eventually(Duration::from_secs(20), || media::framemd5_count(&md5_c)
                > 25),
            "the stream registered after Redis returned does not play on the edge"
        );
        assert!(
            player.is_running(),
            "the first edge player was disconnected"
        );
        player_c.kill();
    });
    player.kill();
}

#[test]
fn static_edge_in_front_of_nginx_rtmp_plays_identical_packets() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let nginx = Nginx::start("127.0.0.41", dir);
    let cluster = format!(
        "mode = \"static\"\norigins = [\"rtmp://{}/live\"]\nidle_close_ms = 3000\n",
        nginx.rtmp
    );
    let edge = Node::start("127.0.0.42", "edge", &cluster, "", dir);
    let key = unique_key("nginx");
    let origin_url = format!("rtmp://{}/live/{key}", nginx.rtmp);
    let publisher = media::publish(Fixture::H264Aac, &origin_url, false, dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(
        &tools::ffmpeg(),
        &edge.url(&format!("live/{key}")),
        Some(5.0),
        dir,
        "play",
    );
    player.finish(Duration::from_secs(30));
    let context = || {
        format!(
            "{}\nnginx:\n{}\npublisher:\n{}\nplayer:\n{}",
            logs(&[&edge]),
            nginx.stderr(),
            publisher.stderr(),
            player.child.stderr()
        )
    };
    with_context(context, || {
        media::assert_faithful_relay(Fixture::H264Aac, &player.out, 100, "edge of nginx-rtmp");
        assert_eq!(edge.metric(PULLS), 1);
    });
}

/// Plays `stream` on `node` with the raw client; returns the status codes until the server
/// ends the play (UnpublishNotify or StreamNotFound), panicking after `timeout`.
fn raw_play_until_told(node: &Node, stream: &str, timeout: Duration) -> Vec<String> {
    let (app, key) = stream.split_once('/').unwrap();
    let tcp = std::net::TcpStream::connect(node.rtmp).unwrap();
    let mut rtmp = rtmp_raw::RawRtmp::over(tcp, node.rtmp.port(), app);
    let msid = rtmp.create_stream();
    rtmp.play(msid, key);
    let deadline = Instant::now() + timeout;
    let mut codes = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let code = rtmp.expect_status(left);
        let last = code.contains("UnpublishNotify") || code.contains("StreamNotFound");
        codes.push(code);
        if last {
            return codes;
        }
    }
}

#[test]
fn bad_directory_entries_and_garbage_on_the_cluster_listener_never_stick_a_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let redis = Redis::start("127.0.0.50", dir);
    let cluster = redis_cluster(&redis, 3000);
    let mut edge = Node::start(
        "127.0.0.51",
        "edge",
        &cluster,
        "[rtmp]\nhandshake_timeout_ms = 2000\n",
        dir,
    );
    let context = || logs(&[&edge]);
    with_context(context, || {
        // Garbage, then a peer that says nothing, on the inter-node listener: closed.
        let mut garbage = std::net::TcpStream::connect(edge.cluster).unwrap();
        let _ = garbage.write_all(&[0x42; 4096]);
        rtmp_raw::assert_closed_by_server(&mut garbage, Duration::from_secs(10), "garbage");
        let mut stalled = std::net::TcpStream::connect(edge.cluster).unwrap();
        rtmp_raw::assert_closed_by_server(&mut stalled, Duration::from_secs(15), "stalled");

        // Another node asking for a stream not live here is told at once; it may not publish.
        let tcp = std::net::TcpStream::connect(edge.cluster).unwrap();
        let mut peer = rtmp_raw::RawRtmp::over(tcp, edge.cluster.port(), "live");
        let msid = peer.create_stream();
        peer.play(msid, "nothing-here");
        let code = peer.expect_status(Duration::from_secs(10));
        assert_eq!(code, "NetStream.Play.StreamNotFound");

        // A directory entry naming a dead address, then one that does not parse: the pull
        // fails with a logged reason and retries; after the wait the viewer is told the
        // stream was not found.
        let dead = format!("live/{}", unique_key("dead"));
        let dead_key = ringcast::server::cluster::directory::key(&dead);
        redis.cli(&["SET", &dead_key, "ghost 127.0.0.59:9", "EX", "60"]);
        let codes = raw_play_until_told(&edge, &dead, Duration::from_secs(30));
        assert!(
            codes.last().unwrap() == "NetStream.Play.StreamNotFound",
            "{codes:?}"
        );
        let garbled = format!("live/{}", unique_key("garbled"));
        let garbled_key = ringcast::server::cluster::directory::key(&garbled);
        redis.cli(&["SET", &garbled_key, "\u{1}%%%", "EX", "60"]);
        let codes = raw_play_until_told(&edge, &garbled, Duration::from_secs(30));
        assert!(
            codes.last().unwrap() == "NetStream.Play.StreamNotFound",
            "{codes:?}"
        );

        let log = edge.stderr();
        assert!(
            log.contains("pull failed; retrying"),
            "no logged pull failure"
        );
        assert!(log.contains("does not parse"), "no logged parse failure");
        assert!(!log.contains("panicked"), "the node panicked");
        assert_eq!(edge.readyz(), 200);
    });
    edge.assert_alive();
}

#[test]
fn static_edge_of_a_ringcast_origin_relays_enhanced_rtmp_hevc_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin = Node::start(
        "127.0.0.61",
        "origin",
        "mode = \"standalone\"
",
        "",
        dir,
    );
    let cluster = format!("mode = \"static\"\norigins = [\"{}\"]\n", origin.cluster);
    let edge = Node::start("127.0.0.62", "edge", &cluster, "", dir);
    let stream = format!("live/{}", unique_key("hevc"));
    let publisher = media::publish(Fixture::HevcAac, &origin.url(&stream), false, dir, "pub");
    std::thread::sleep(Duration::from_millis(1500));
    let mut player = media::play_to_flv(
        &tools::ffmpeg_modern(),
        &edge.url(&stream),
        Some(5.0),
        dir,
        "play",
    );
    player.finish(Duration::from_secs(30));
    let context = || {
        format!(
            "{}\npublisher:\n{}\nplayer:\n{}",
            logs(&[&origin, &edge]),
            publisher.stderr(),
            player.child.stderr()
        )
    };
    with_context(context, || {
        media::assert_faithful_relay(Fixture::HevcAac, &player.out, 100, "HEVC through an edge");
        assert_eq!(edge.metric(PULLS), 1);
    });
}
