//! A healthy stream running beside a misbehaving client: an ffmpeg publisher (looping the H.264
//! fixture) and an ffmpeg player (RTMP or HTTP-FLV) recording framemd5 lines, so a test can assert that whatever it
//! did to the server, this stream kept flowing and the server is still alive.

use std::path::Path;
use std::time::Duration;

use super::fixtures::Fixture;
use super::framemd5::{self, FrameMd5};
use super::media;
use super::process::{ChildGuard, wait_until};
use super::server::Server;
use super::{tools, unique_key};

pub struct HealthyStream {
    pub publisher: ChildGuard,
    pub player: ChildGuard,
    pub md5_path: std::path::PathBuf,
    /// The stream key, published as `live/KEY`.
    pub key: String,
}

impl HealthyStream {
    /// Starts publisher and RTMP player on a fresh key and waits until the player receives
    /// video.
    pub fn start(server: &Server, dir: &Path) -> HealthyStream {
        HealthyStream::start_with_player(server, dir, |key| server.url("live", key))
    }

    /// Publishes to `publish_url(key)` and plays `player_url(key)` (e.g. both over RTMPS).
    pub fn start_between(
        server: &Server,
        dir: &Path,
        publish_url: impl Fn(&str) -> String,
        player_url: impl Fn(&str) -> String,
    ) -> HealthyStream {
        HealthyStream::start_urls(server, dir, publish_url, player_url)
    }

    /// Like [`HealthyStream::start`], the player reading HTTP-FLV (`/live/KEY.flv`).
    pub fn start_over_http(server: &Server, dir: &Path) -> HealthyStream {
        HealthyStream::start_with_player(server, dir, |key| {
            server.http_url(&format!("/live/{key}.flv"))
        })
    }

    /// Publishes over RTMP on a fresh key; the player reads `player_url(key)`.
    fn start_with_player(
        server: &Server,
        dir: &Path,
        player_url: impl Fn(&str) -> String,
    ) -> HealthyStream {
        HealthyStream::start_urls(server, dir, |key| server.url("live", key), player_url)
    }

    fn start_urls(
        server: &Server,
        dir: &Path,
        publish_url: impl Fn(&str) -> String,
        player_url: impl Fn(&str) -> String,
    ) -> HealthyStream {
        let key = unique_key("healthy");
        let url = publish_url(&key);
        let publisher = media::publish(Fixture::H264Aac, &url, true, dir, "healthy-pub");
        std::thread::sleep(Duration::from_millis(1500));
        let (player, md5_path) =
            media::play_to_framemd5(&tools::ffmpeg(), &player_url(&key), dir, "healthy-play");
        let mut stream = HealthyStream {
            publisher,
            player,
            md5_path,
            key,
        };
        let flowing = wait_until(Duration::from_secs(15), || {
            media::framemd5_count(&stream.md5_path) > 0
        });
        if !flowing {
            panic!(
                "healthy stream never reached its player; server stderr:\n{}\nplayer stderr:\n{}\npublisher stderr:\n{}",
                server.stderr(),
                stream.player.stderr(),
                stream.publisher.stderr()
            );
        }
        stream.assert_processes_alive(server);
        stream
    }

    fn assert_processes_alive(&mut self, server: &Server) {
        for child in [&mut self.publisher, &mut self.player] {
            if let Some(status) = child.try_status() {
                panic!(
                    "healthy {} exited with {status}; its stderr:\n{}\nserver stderr:\n{}",
                    child.name(),
                    child.stderr(),
                    server.stderr()
                );
            }
        }
    }

    /// Asserts the player keeps receiving for two more seconds (at least one second of video at
    /// 25 fps), that every packet it got is a gap-free run of the source, and that the server,
    /// publisher and player are all still running.
    pub fn assert_still_flowing(&mut self, server: &mut Server) {
        server.assert_alive();
        let before = media::framemd5_count(&self.md5_path);
        std::thread::sleep(Duration::from_secs(2));
        let after = media::framemd5_count(&self.md5_path);
        server.assert_alive();
        self.assert_processes_alive(server);
        assert!(
            after >= before + 25,
            "healthy stream stalled: {before} -> {after} video packets in 2 s; server stderr:\n{}",
            server.stderr()
        );
        let played = FrameMd5::parse(&std::fs::read_to_string(&self.md5_path).unwrap_or_default());
        let source = FrameMd5::of_video_in(&tools::ffmpeg(), &Fixture::H264Aac.path());
        framemd5::assert_contiguous_run(&played.video(), &source.video(), "healthy stream");
    }
}
