//! FTL test helpers: a server with FTL on, sources made with ffmpeg, the loadgen's FTL
//! publisher as a child process, decoded-frame md5s, and raw control-channel helpers.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::framemd5::FrameMd5;
use super::process::{run_ok, wait_until};
use super::server::Server;
use super::{free_port, tools};

pub const SECRET: &str = "SECRET";
/// Seconds of source media (25 fps, a keyframe every 25 frames, no B-frames).
pub const SOURCE_SECS: u32 = 8;

pub struct FtlServer {
    pub server: Server,
    pub ftl: SocketAddr,
}

/// A UDP port range of 16 that was free a moment ago.
pub fn free_udp_range() -> (u16, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = socket.local_addr().unwrap().port().min(65_000);
    (start, start + 15)
}

pub fn start_ftl(extra_ftl_config: &str) -> FtlServer {
    let ftl_port = free_port();
    let (start, end) = free_udp_range();
    let config = format!(
        "[ftl]\nudp_port_range = \"{start}-{end}\"\nno_media_timeout_ms = 4000\n{extra_ftl_config}\n"
    );
    let server = Server::start_with_args(
        1,
        Some(&config),
        &[
            "--ftl".into(),
            format!("127.0.0.1:{ftl_port}"),
            "--ftl-key".into(),
            format!("77-{SECRET}"),
        ],
    );
    FtlServer {
        server,
        ftl: SocketAddr::from(([127, 0, 0, 1], ftl_port)),
    }
}

/// Makes `x.h264` (Annex-B, testsrc2 so every frame differs) and `x.ogg` (Opus) in `dir`.
pub fn make_sources(dir: &Path) -> (PathBuf, PathBuf) {
    let h264 = dir.join("x.h264");
    let ogg = dir.join("x.ogg");
    let secs = SOURCE_SECS.to_string();
    run_ok(
        "ffmpeg h264 source",
        Command::new(tools::ffmpeg())
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-t",
                &secs,
                "-c:v",
                "libx264",
                "-g",
                "25",
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-bsf:v",
                "h264_mp4toannexb",
                "-f",
                "h264",
            ])
            .arg(&h264),
        Duration::from_secs(120),
    );
    run_ok(
        "ffmpeg opus source",
        Command::new(tools::ffmpeg())
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                &secs,
                "-c:a",
                "libopus",
                "-f",
                "ogg",
            ])
            .arg(&ogg),
        Duration::from_secs(120),
    );
    (h264, ogg)
}

/// The loadgen binary next to the `ringcast` binary, built once per test process.
pub fn loadgen_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_ringcast"));
        let profile_dir = exe.parent().expect("binary dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "ringcast-loadgen",
            "--bin",
            "ringcast-loadgen",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        run_ok(
            "cargo build ringcast-loadgen",
            &mut cmd,
            Duration::from_secs(600),
        );
        profile_dir.join("ringcast-loadgen")
    })
    .clone()
}

/// A running `ringcast-loadgen ftl-publish`, killed on drop.
pub struct Loadgen {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Loadgen {
    pub fn start(
        ftl: SocketAddr,
        key: &str,
        h264: &Path,
        ogg: &Path,
        extra: &[&str],
        dir: &Path,
        name: &str,
    ) -> Loadgen {
        let stdout = dir.join(format!("{name}.json"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(loadgen_binary())
            .args([
                "ftl-publish",
                "--addr",
                &ftl.to_string(),
                "--key",
                key,
                "--h264",
            ])
            .arg(h264)
            .arg("--opus")
            .arg(ogg)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn ringcast-loadgen");
        Loadgen {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for the publisher to finish and returns its JSON summary line.
    pub fn summary(&mut self, timeout: Duration) -> String {
        let done = wait_until(timeout, || matches!(self.child.try_wait(), Ok(Some(_))));
        assert!(
            done,
            "loadgen did not finish within {timeout:?}: {}",
            self.logs()
        );
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        format!(
            "loadgen stdout: {}\nloadgen stderr: {}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The integer field `name` of the loadgen's JSON summary.
pub fn field(json: &str, name: &str) -> i64 {
    let key = format!("\"{name}\":");
    let rest = &json[json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json:?}"))
        + key.len()..];
    let value: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    value.parse().unwrap_or(-1)
}

/// Decoded-picture md5s of the video in `file` (container-independent, unlike packet md5s).
pub fn decoded_video(ffmpeg: &Path, file: &Path) -> FrameMd5 {
    let out = run_ok(
        "ffmpeg decoded framemd5",
        Command::new(ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(file)
            .args(["-map", "0:v", "-f", "framemd5", "-"]),
        Duration::from_secs(120),
    );
    FrameMd5::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Stderr of `ffmpeg -v error` decoding the video and audio of `file` with `ffmpeg`.
pub fn decode_errors(ffmpeg: &Path, file: &Path, maps: &[&str]) -> String {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-v", "error", "-i"]).arg(file);
    for map in maps {
        cmd.args(["-map", map]);
    }
    cmd.args(["-f", "null", "-"]);
    let out = run_ok("ffmpeg decode check", &mut cmd, Duration::from_secs(120));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Reads one `\n`-terminated reply line (without line ending); None on close.
pub fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => {
                return (!line.is_empty())
                    .then(|| String::from_utf8_lossy(&line).trim().to_owned());
            }
            Ok(_) if byte[0] == b'\n' => {
                return Some(String::from_utf8_lossy(&line).trim().to_owned());
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => return None,
            Err(e) => panic!("control read: {e}"),
        }
    }
}

pub fn control(ftl: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(ftl).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

/// Asserts the server answers `code` and then closes the connection.
pub fn assert_code_then_close(stream: &mut TcpStream, code: &str, what: &str) {
    let line = read_line(stream);
    assert_eq!(line.as_deref(), Some(code), "{what}: expected {code}");
    assert_eq!(
        read_line(stream),
        None,
        "{what}: the server did not close after {code}"
    );
}

/// The UDP media port the server logged for the live session.
pub fn logged_udp_port(server: &Server) -> Option<u16> {
    let log = server.stderr();
    let at = log.rfind("udp_port=")? + "udp_port=".len();
    log[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Runs the handshake with the right key on a raw connection up to the `.` reply.
pub fn raw_stream_request(ftl: SocketAddr) -> (TcpStream, Option<String>) {
    use ringcast::proto::ftl::client;
    use ringcast::proto::ftl::{StreamAttributes, TrackCodec, TrackInfo};
    let mut c = control(ftl);
    c.write_all(&client::hmac_request()).unwrap();
    let line = read_line(&mut c).unwrap();
    let challenge = client::parse_reply(&line).unwrap().challenge().unwrap();
    c.write_all(&client::connect_line(77, SECRET.as_bytes(), &challenge))
        .unwrap();
    assert_eq!(read_line(&mut c).as_deref(), Some("200"), "CONNECT");
    let attributes = StreamAttributes {
        protocol_version: "0.9".into(),
        vendor_name: "test".into(),
        vendor_version: "1".into(),
        video: Some(TrackInfo {
            codec: TrackCodec::H264,
            payload_type: 96,
            ssrc: 78,
            width: None,
            height: None,
        }),
        audio: None,
        unknown: Vec::new(),
    };
    c.write_all(&client::attribute_lines(&attributes)).unwrap();
    let reply = read_line(&mut c);
    (c, reply)
}
