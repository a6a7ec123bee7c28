//! Media fixtures, generated once per target dir with ffmpeg from `testsrc2` + `sine` and cached
//! under `$CARGO_TARGET_TMPDIR/fixtures`. nextest runs each test in its own process, so generation
//! is serialised with an exclusive file lock and published by atomic rename: a reader sees either
//! no file or a complete one.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::run_ok;
use super::tools;

/// A cached source file. The name carries a version: change the recipe, bump the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixture {
    /// 10 s H.264 (main, B-frames) 320x240 25 fps, GOP 1 s, + AAC; made by the distribution ffmpeg.
    H264Aac,
    /// 12 s H.264 320x240 25 fps with a 5 s GOP (keyframes at 0, 5, 10 s), + AAC.
    H264LongGop,
    /// 10 s H.264 640x360 with per-frame noise at a low QP (~40 Mbit/s), GOP 1 s, + AAC: enough
    /// bytes per second to fill kernel socket buffers quickly in the slow-watcher test.
    H264Heavy,
    /// 10 s HEVC 320x240 GOP 1 s + AAC in Enhanced FLV (`hvc1`); made by the modern ffmpeg.
    HevcAac,
    /// 10 s AV1 320x240 GOP 1 s + AAC in Enhanced FLV (`av01`); made by the modern ffmpeg.
    Av1Aac,
}

impl Fixture {
    fn file_name(self) -> &'static str {
        match self {
            Fixture::H264Aac => "h264_aac_v1.flv",
            Fixture::H264LongGop => "h264_longgop_v1.flv",
            Fixture::H264Heavy => "h264_heavy_v1.flv",
            Fixture::HevcAac => "hevc_aac_v1.flv",
            Fixture::Av1Aac => "av1_aac_v1.flv",
        }
    }

    /// The ffmpeg that understands this file (Enhanced FLV needs the modern one).
    pub fn ffmpeg(self) -> PathBuf {
        match self {
            Fixture::HevcAac | Fixture::Av1Aac => tools::ffmpeg_modern(),
            _ => tools::ffmpeg(),
        }
    }

    /// Nominal GOP length in milliseconds.
    pub fn gop_ms(self) -> u64 {
        match self {
            Fixture::H264LongGop => 5000,
            _ => 1000,
        }
    }

    /// The codec name ffmpeg reports for the video stream (framemd5 `#codec_id`).
    pub fn video_codec(self) -> &'static str {
        match self {
            Fixture::HevcAac => "hevc",
            Fixture::Av1Aac => "av1",
            _ => "h264",
        }
    }

    /// The video codec as an FLV tag reports it: `avc1` (legacy id 7) or the E-RTMP FourCC.
    pub fn flv_fourcc(self) -> &'static str {
        match self {
            Fixture::HevcAac => "hvc1",
            Fixture::Av1Aac => "av01",
            _ => "avc1",
        }
    }

    fn encode_args(self) -> Vec<&'static str> {
        let mut args = vec!["-hide_banner", "-loglevel", "error", "-y"];
        let (size, secs) = match self {
            Fixture::H264Heavy => ("640x360", "10"),
            Fixture::H264LongGop => ("320x240", "12"),
            _ => ("320x240", "10"),
        };
        let video_src: &'static str = match size {
            "640x360" => "testsrc2=size=640x360:rate=25",
            _ => "testsrc2=size=320x240:rate=25",
        };
        args.extend(["-f", "lavfi", "-i", video_src]);
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
        args.extend(["-t", secs, "-pix_fmt", "yuv420p"]);
        match self {
            Fixture::H264Aac => args.extend([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "main",
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
            ]),
            Fixture::H264LongGop => args.extend([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "main",
                "-g",
                "125",
                "-keyint_min",
                "125",
                "-sc_threshold",
                "0",
            ]),
            Fixture::H264Heavy => args.extend([
                "-vf",
                "noise=alls=30:allf=t",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-qp",
                "20",
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
            ]),
            Fixture::HevcAac => args.extend([
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "keyint=25:min-keyint=25:scenecut=0:log-level=error",
            ]),
            Fixture::Av1Aac => args.extend(["-c:v", "libsvtav1", "-preset", "12", "-g", "25"]),
        }
        args.extend(["-c:a", "aac", "-b:a", "64k", "-f", "flv"]);
        args
    }

    /// The fixture's path, generating it first if this target dir has none yet.
    pub fn path(self) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
        fs::create_dir_all(&dir).expect("create fixture dir");
        let path = dir.join(self.file_name());
        if path.exists() {
            return path;
        }
        let lock_file: File = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{}.lock", self.file_name())))
            .expect("open fixture lock file");
        // Released when `lock_file` drops, or by the kernel if this process dies.
        lock_file.lock().expect("lock fixture");
        if !path.exists() {
            let tmp = dir.join(format!("{}.tmp{}", self.file_name(), std::process::id()));
            let mut cmd = Command::new(self.ffmpeg());
            cmd.args(self.encode_args()).arg(&tmp).env("SVT_LOG", "1");
            run_ok(self.file_name(), &mut cmd, Duration::from_secs(180));
            fs::rename(&tmp, &path).expect("publish fixture by rename");
        }
        path
    }
}
