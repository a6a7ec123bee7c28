//! The `ringcast` server under test: spawned on free 127.0.0.1 ports (RTMP, fstream and HTTP:
//! never the defaults, which concurrent test servers would share through SO_REUSEPORT) with an
//! optional TOML config, ready once a TCP connect succeeds, stderr captured to a file for failure messages,
//! killed on drop.
//!
//! `RINGCAST_TEST_SERVER` may name another binary with the same command line (a release build,
//! or a reference relay behind a wrapper script, used to check that the tests themselves are
//! right); by default the tests run this package's `ringcast` binary.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::free_port;
use super::process::ChildGuard;

pub fn server_binary() -> PathBuf {
    std::env::var_os("RINGCAST_TEST_SERVER").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ringcast")),
        PathBuf::from,
    )
}

pub struct Server {
    pub port: u16,
    /// The fstream listener (`--fstream 127.0.0.1:PORT`), so no test binds the default 61920.
    pub fstream_port: u16,
    /// The HTTP listener (`--http 127.0.0.1:PORT`), so no test binds the default 8080.
    pub http_port: u16,
    child: ChildGuard,
    /// The `cat` reading the server's stderr pipe, for [`Server::start_with_log_reader`].
    pub log_reader: Option<ChildGuard>,
    dir: TempDir,
}

impl Server {
    /// `ringcast --rtmp 127.0.0.1:PORT --workers 1`, default config.
    pub fn start() -> Server {
        Server::start_with(1, None)
    }

    /// Starts the server with `workers` and, if given, `config` written to a TOML file.
    /// Retries on a fresh port if the chosen one was taken between probe and bind.
    pub fn start_with(workers: u32, config: Option<&str>) -> Server {
        Server::start_with_args(workers, config, &[])
    }

    /// Like [`Server::start_with`], with `extra` arguments appended (e.g. `--ftl ADDR`).
    pub fn start_with_args(workers: u32, config: Option<&str>, extra: &[String]) -> Server {
        Server::start_inner(workers, config, extra, false)
    }

    /// Like [`Server::start_with`], with the server's stderr a pipe read by a separate `cat`
    /// process ([`Server::log_reader`]) that the test may stop and resume.
    pub fn start_with_log_reader(workers: u32, config: Option<&str>) -> Server {
        Server::start_inner(workers, config, &[], true)
    }

    fn start_inner(workers: u32, config: Option<&str>, extra: &[String], piped: bool) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = config.map(|text| {
            let path = dir.path().join("ringcast.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let mut last_err = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let fstream_port = free_port();
            let http_port = free_port();
            let mut cmd = Command::new(server_binary());
            cmd.arg("--rtmp")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--fstream")
                .arg(format!("127.0.0.1:{fstream_port}"))
                .arg("--http")
                .arg(format!("127.0.0.1:{http_port}"))
                .arg("--workers")
                .arg(workers.to_string());
            if let Some(path) = &config_path {
                cmd.arg("--config").arg(path);
            }
            cmd.args(extra);
            let stderr_path: PathBuf = dir.path().join(format!("ringcast-{attempt}.stderr"));
            let (mut child, log_reader) = if piped {
                let (child, reader) =
                    ChildGuard::spawn_with_log_reader("ringcast", &mut cmd, stderr_path);
                (child, Some(reader))
            } else {
                (ChildGuard::spawn("ringcast", &mut cmd, stderr_path), None)
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Server {
                        port,
                        fstream_port,
                        http_port,
                        child,
                        log_reader,
                        dir,
                    };
                }
                if let Some(status) = child.try_status() {
                    last_err = format!(
                        "ringcast exited with {status} before accepting; stderr:\n{}",
                        child.stderr()
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "ringcast did not accept on {addr} within 10 s; stderr:\n{}",
                        child.stderr()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !last_err.to_lowercase().contains("address already in use") {
                break;
            }
        }
        panic!("{last_err}");
    }

    pub fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.port)
    }

    /// `127.0.0.1:PORT` of the fstream listener.
    pub fn fstream_addr(&self) -> String {
        format!("127.0.0.1:{}", self.fstream_port)
    }

    /// `127.0.0.1:PORT` of the HTTP listener.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// `http://127.0.0.1:PORT{path}` on the HTTP listener.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Sends `signal` (e.g. "TERM") to the server process.
    pub fn signal(&self, signal: &str) {
        self.child.signal(signal);
    }

    /// The relay's log so far. The relay logs through a writer thread, so a line for what just
    /// happened may still be on its way: this waits (up to 2 s) until the log stops growing for
    /// 50 ms.
    pub fn stderr(&self) -> String {
        let mut last = self.child.stderr();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.child.stderr();
            if now.len() == last.len() {
                return now;
            }
            last = now;
        }
        last
    }

    /// Waits up to `timeout` for the server process to exit; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.child.wait_timeout(timeout)
    }

    /// Panics (with the server's stderr) if the server process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_status() {
            panic!(
                "ringcast exited with {status}; stderr:\n{}",
                self.child.stderr()
            );
        }
    }

    /// A scratch directory that lives as long as the server.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}
