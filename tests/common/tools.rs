//! Where the external tools are. `scripts/test.sh` installs them and exports
//! `RINGCAST_FFMPEG_MODERN`; a missing tool is a loud failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn from_env_or(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The distribution ffmpeg (5.1 on Debian 12): legacy RTMP, H.264 + AAC. `RINGCAST_FFMPEG` overrides.
pub fn ffmpeg() -> PathBuf {
    from_env_or("RINGCAST_FFMPEG", "ffmpeg")
}

/// The distribution ffprobe. `RINGCAST_FFPROBE` overrides.
pub fn ffprobe() -> PathBuf {
    from_env_or("RINGCAST_FFPROBE", "ffprobe")
}

/// GStreamer's gst-launch-1.0 (with rtmp2src from plugins-bad).
pub fn gst_launch() -> PathBuf {
    from_env_or("RINGCAST_GST_LAUNCH", "gst-launch-1.0")
}

/// HAProxy, the load balancer the PROXY protocol tests put in front of the server: Debian's
/// `/usr/sbin/haproxy` (not on every user's PATH), else `haproxy`. `RINGCAST_HAPROXY` overrides.
pub fn haproxy() -> PathBuf {
    let debian = Path::new("/usr/sbin/haproxy");
    let default = if debian.exists() {
        debian
    } else {
        Path::new("haproxy")
    };
    std::env::var_os("RINGCAST_HAPROXY").map_or_else(|| default.to_path_buf(), PathBuf::from)
}

/// A modern ffmpeg (imageio-ffmpeg's static build) that speaks Enhanced RTMP (HEVC/AV1 FourCCs).
/// `RINGCAST_FFMPEG_MODERN`, else asks python3's imageio_ffmpeg; panics if neither works.
pub fn ffmpeg_modern() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("RINGCAST_FFMPEG_MODERN") {
            return PathBuf::from(p);
        }
        let out = Command::new("python3")
            .args([
                "-c",
                "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned())
            }
            _ => panic!(
                "RINGCAST_FFMPEG_MODERN is not set and python3 has no imageio_ffmpeg: \
                 run scripts/test.sh (it installs and exports it)"
            ),
        }
    })
    .clone()
}
