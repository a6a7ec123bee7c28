//! PROXY protocol headers written from haproxy's `proxy-protocol.txt`, independent of the
//! library's parser, and a real HAProxy in TCP mode in front of the server.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{ChildGuard, run_with_timeout};
use super::{free_port, tools};

/// `PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\r\n` (spec §2.1).
pub fn v1_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
        _ => panic!("a v1 header cannot mix families"),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// The 12-byte v2 signature (spec §2.2).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY command for TCP over IPv4 or IPv6, followed by `tlvs` (already encoded).
pub fn v2_header(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("a v2 header cannot mix families"),
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    block.extend_from_slice(tlvs);
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A v2 LOCAL header with no addresses: what a balancer's health check sends.
pub fn v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

/// HAProxy in TCP mode on `127.0.0.1:port`, relaying to one server, killed on drop.
pub struct Haproxy {
    pub port: u16,
    child: ChildGuard,
}

impl Haproxy {
    /// Starts `haproxy -db` in front of `backend` with `server_options` on its server line
    /// (e.g. `send-proxy-v2`) and `backend_lines` in its backend section (e.g. an `option
    /// httpchk`). Panics, never skips, when haproxy is missing.
    pub fn start(
        backend: SocketAddr,
        server_options: &str,
        backend_lines: &str,
        dir: &Path,
    ) -> Haproxy {
        let version = run_with_timeout(
            "haproxy (scripts/install-test-deps.sh installs it)",
            Command::new(tools::haproxy()).arg("-v"),
            Duration::from_secs(10),
        );
        assert!(
            version.status.success(),
            "haproxy does not run: install it with scripts/install-test-deps.sh"
        );
        let port = free_port();
        let config = format!(
            "global\n\
             \x20   maxconn 512\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 5s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             frontend front\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend nodes\n\
             backend nodes\n\
             \x20   {backend_lines}\n\
             \x20   server node1 {backend} {server_options}\n"
        );
        let path = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(&path, &config).expect("write haproxy config");
        let mut cmd = Command::new(tools::haproxy());
        cmd.arg("-db").arg("-f").arg(&path);
        let mut child = ChildGuard::spawn("haproxy", &mut cmd, dir.join("haproxy.stderr"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = child.try_status() {
                panic!(
                    "haproxy exited with {status}; config:\n{config}\nstderr:\n{}",
                    child.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr} within 10 s; stderr:\n{}",
                child.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy { port, child }
    }

    /// `rtmp://127.0.0.1:PORT/app/key` through the balancer.
    pub fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.port)
    }

    pub fn stderr(&self) -> String {
        self.child.stderr()
    }

    /// Panics (with haproxy's stderr) if it has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_status() {
            panic!(
                "haproxy exited with {status}; stderr:\n{}",
                self.child.stderr()
            );
        }
    }
}
