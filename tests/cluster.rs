//! Proves scale-out (issue #12) with real peers on loopback: `redis-server` as the stream
//! directory, three ringcast nodes each on its own 127.0.0.x address, HAProxy round robin in
//! front, `ringcast-loadgen` publishers and players, ffmpeg players, and a real nginx-rtmp
//! origin in front of which a static-mode ringcast edge plays.
//!
//! Each test uses its own addresses (127.0.0.1x, .2x, ...), so tests run in parallel safely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    Balancer, Nginx, Node, Redis, Watchers, eventually, loadgen_publish, summary_field,
};
#[allow(unused_imports)]
use common::fixtures::Fixture;
use common::{media, tools, unique_key, with_context};

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
            (25, 10),
            "127.0.1.1-127.0.1.60",
            dir,
            "watch",
        );
        std::thread::sleep(Duration::from_secs(15));
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
        for zero in ["errors", "disconnects", "stalls", "lost_frames", "connect_failures"] {
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
            assert_eq!(edge.metric(UPSTREAMS), 1, "{} closed its pull early", edge.ip);
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
