//! Real clients against the server: ffmpeg publishers, ffmpeg players that capture what they
//! receive (`-c copy` into FLV or framemd5), GStreamer's rtmp2src, and the end-to-end check that
//! a capture is a faithful relay of a fixture.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::fixtures::Fixture;
use super::flv;
use super::framemd5::{self, FrameMd5};
use super::process::ChildGuard;
use super::server::Server;
use super::tools;
use super::with_context;

/// `ffmpeg -re [-stream_loop -1] -i FILE -c copy -f flv URL`, the way OBS-like publishers push.
pub fn publish(fixture: Fixture, url: &str, looped: bool, dir: &Path, name: &str) -> ChildGuard {
    publish_with(fixture, url, true, looped, dir, name)
}

/// Like [`publish`]; `realtime = false` drops `-re` and pushes as fast as the peer reads.
pub fn publish_with(
    fixture: Fixture,
    url: &str,
    realtime: bool,
    looped: bool,
    dir: &Path,
    name: &str,
) -> ChildGuard {
    let mut cmd = Command::new(fixture.ffmpeg());
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if realtime {
        cmd.arg("-re");
    }
    if looped {
        cmd.args(["-stream_loop", "-1"]);
    }
    cmd.arg("-i")
        .arg(fixture.path())
        .args(["-map", "0", "-c", "copy"]);
    if fixture.flv_fourcc() != "avc1" {
        // Announce E-RTMP support in connect (`fourCcList`), as OBS does.
        cmd.args(["-rtmp_enhanced_codecs", fixture.flv_fourcc()]);
    }
    cmd.args(["-f", "flv", url]);
    ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")))
}

/// An ffmpeg player writing what it receives, unchanged (`-c copy`), to an FLV file.
pub struct FlvPlayer {
    pub child: ChildGuard,
    pub out: PathBuf,
}

/// `ffmpeg` reading `url` as a player does in every test: quiet, overwriting its output, and
/// giving up after 15 s without data; the caller adds the output options.
pub fn player_command(ffmpeg: &Path, url: &str) -> Command {
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-rw_timeout",
        "15000000",
        "-i",
        url,
    ]);
    cmd
}

/// Starts `ffmpeg -i URL -map 0 -c copy [-t SECS] -f flv OUT`.
pub fn play_to_flv(
    ffmpeg: &Path,
    url: &str,
    seconds: Option<f64>,
    dir: &Path,
    name: &str,
) -> FlvPlayer {
    let out = dir.join(format!("{name}.flv"));
    let mut cmd = player_command(ffmpeg, url);
    cmd.args(["-map", "0", "-c", "copy"]);
    if let Some(s) = seconds {
        cmd.args(["-t", &s.to_string()]);
    }
    cmd.args(["-f", "flv"]).arg(&out);
    let child = ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")));
    FlvPlayer { child, out }
}

impl FlvPlayer {
    /// Waits for a `-t` player to exit on its own, stopping it at `timeout`.
    pub fn finish(&mut self, timeout: Duration) {
        if self.child.wait_timeout(timeout).is_none() {
            self.child.interrupt_and_wait(Duration::from_secs(5));
        }
    }

    /// Stops the player with SIGINT (ffmpeg then finalises the file).
    pub fn stop(&mut self) {
        self.child.interrupt_and_wait(Duration::from_secs(5));
    }

    pub fn stderr(&self) -> String {
        self.child.stderr()
    }

    /// [`assert_faithful_relay`] on this player's capture; on failure the panic carries the
    /// server's and the player's stderr.
    pub fn assert_faithful(
        &self,
        server: &Server,
        fixture: Fixture,
        min_packets: usize,
        what: &str,
    ) -> RelayCheck {
        with_context(
            || {
                format!(
                    "server stderr:\n{}\nplayer stderr:\n{}",
                    server.stderr(),
                    self.stderr()
                )
            },
            || assert_faithful_relay(fixture, &self.out, min_packets, what),
        )
    }
}

/// An ffmpeg player that appends one framemd5 line per received video packet and flushes each,
/// so a test can watch the count grow while the stream is live.
pub fn play_to_framemd5(ffmpeg: &Path, url: &str, dir: &Path, name: &str) -> (ChildGuard, PathBuf) {
    let out = dir.join(format!("{name}.framemd5"));
    let mut cmd = player_command(ffmpeg, url);
    cmd.args([
        "-map",
        "0:v",
        "-c",
        "copy",
        "-flush_packets",
        "1",
        "-f",
        "framemd5",
    ])
    .arg(&out);
    let child = ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")));
    (child, out)
}

/// Video packets recorded so far by a [`play_to_framemd5`] player.
pub fn framemd5_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| FrameMd5::parse(&t).video().len())
        .unwrap_or(0)
}

/// `gst-launch-1.0 -e rtmp2src location=URL ! filesink location=OUT`: GStreamer's RTMP client
/// writing the FLV stream it receives.
pub fn gst_play_to_flv(url: &str, dir: &Path, name: &str) -> (ChildGuard, PathBuf) {
    let out = dir.join(format!("{name}.flv"));
    let mut cmd = Command::new(tools::gst_launch());
    cmd.args(["-q", "-e", "rtmp2src"])
        .arg(format!("location={url}"))
        .args(["timeout=15", "!", "filesink"])
        .arg(format!("location={}", out.display()));
    let child = ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")));
    (child, out)
}

/// What [`assert_faithful_relay`] found.
pub struct RelayCheck {
    pub played_video_packets: usize,
    /// Index in the source's video packet sequence of the first played packet.
    pub first_source_index: usize,
    pub source: FrameMd5,
}

/// The end-to-end relay assertion on a captured FLV: the player saw the fixture's video codec,
/// at least `min_packets` video packets, each byte-identical to a source packet (md5), as one
/// gap-free run of the source, starting with the sequence header and then a keyframe.
pub fn assert_faithful_relay(
    fixture: Fixture,
    capture: &Path,
    min_packets: usize,
    what: &str,
) -> RelayCheck {
    let bytes = std::fs::read(capture)
        .unwrap_or_else(|e| panic!("{what}: read {}: {e}", capture.display()));
    flv::assert_starts_with_keyframe(&bytes, fixture.flv_fourcc(), what);
    let source = FrameMd5::of_video_in(&fixture.ffmpeg(), &fixture.path());
    let played = FrameMd5::of_video_in(&fixture.ffmpeg(), capture);
    assert_eq!(
        played.video_codec(),
        Some(fixture.video_codec()),
        "{what}: codec the player reports"
    );
    let played_video = played.video();
    assert!(
        played_video.len() >= min_packets,
        "{what}: only {} video packets played, expected at least {min_packets}",
        played_video.len()
    );
    let first_source_index = framemd5::assert_contiguous_run(&played_video, &source.video(), what);
    RelayCheck {
        played_video_packets: played_video.len(),
        first_source_index,
        source,
    }
}
