//! A ringcast cluster on loopback for the scale-out tests: `redis-server`, ringcast nodes each on
//! its own 127.0.0.x address (run with a `[cluster]` section), HAProxy round-robin in front of
//! them, `ringcast-loadgen` publishers and watchers, and an nginx-rtmp origin. Every process is
//! killed on drop; every wait has a deadline.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::ftl::loadgen_binary;
use super::http;
use super::process::{ChildGuard, run_with_timeout, wait_until};
use super::tools;

use super::free_port_on;

fn wait_listening(addr: SocketAddr, child: &mut ChildGuard, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = child.try_status() {
            panic!("{what} exited with {status}; stderr:\n{}", child.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within 15 s; stderr:\n{}",
            child.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-server` on `ip:port` without persistence.
pub struct Redis {
    pub addr: SocketAddr,
    child: Option<ChildGuard>,
    dir: PathBuf,
}

impl Redis {
    pub fn start(ip: &str, dir: &Path) -> Redis {
        let port = free_port_on(ip);
        let mut redis = Redis {
            addr: format!("{ip}:{port}").parse().expect("addr"),
            child: None,
            dir: dir.to_path_buf(),
        };
        redis.restart();
        redis
    }

    /// `redis://IP:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL: as if its host vanished).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts it (again) on the same address, empty.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            &self.addr.ip().to_string(),
            "--port",
            &self.addr.port().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(&self.dir);
        let stderr = self.dir.join(format!("redis-{}.log", self.addr.port()));
        let mut child = ChildGuard::spawn("redis-server", &mut cmd, stderr);
        wait_listening(self.addr, &mut child, "redis-server");
        self.child = Some(child);
    }

    /// `redis-cli` with `args` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run_with_timeout(
            "redis-cli",
            Command::new("redis-cli")
                .args(["-h", &self.addr.ip().to_string()])
                .args(["-p", &self.addr.port().to_string()])
                .args(args),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The directory keys of registered streams.
    pub fn stream_keys(&self) -> Vec<String> {
        self.cli(&["--scan", "--pattern", "ringcast:stream:*"])
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// One ringcast node on its own loopback address.
pub struct Node {
    pub ip: String,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The inter-node listener.
    pub cluster: SocketAddr,
    child: ChildGuard,
}

impl Node {
    /// Starts `ringcast` on `ip` with `cluster` (the `[cluster]` keys other than `listen`) and
    /// `extra` TOML (other sections).
    pub fn start(ip: &str, node_id: &str, cluster: &str, extra: &str, dir: &Path) -> Node {
        // Four ports, distinct from each other and from every other port this process took.
        let addr = || SocketAddr::new(ip.parse().expect("an IP address"), free_port_on(ip));
        let (rtmp, http, fstream, inter) = (addr(), addr(), addr().to_string(), addr());
        let config = format!(
            "{extra}\n[cluster]\nnode_id = \"{node_id}\"\nlisten = \"{inter}\"\n{cluster}\n"
        );
        let config_path = dir.join(format!("{node_id}.toml"));
        std::fs::write(&config_path, &config).expect("write node config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        cmd.arg("--rtmp")
            .arg(rtmp.to_string())
            .arg("--http")
            .arg(http.to_string())
            .arg("--fstream")
            .arg(&fstream)
            .args(["--workers", "2", "--config"])
            .arg(&config_path);
        let mut child =
            ChildGuard::spawn("ringcast", &mut cmd, dir.join(format!("{node_id}.stderr")));
        wait_listening(rtmp, &mut child, node_id);
        wait_listening(inter, &mut child, node_id);
        Node {
            ip: ip.to_owned(),
            rtmp,
            http,
            cluster: inter,
            child,
        }
    }

    /// A sample of `/metrics`, 0 when the series is absent... never: panics then.
    pub fn metric(&self, series: &str) -> u64 {
        http::metric(&self.http.to_string(), series)
    }

    /// `/readyz`'s status code.
    pub fn readyz(&self) -> u16 {
        http::get(&self.http.to_string(), "/readyz").status
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://{}/{stream}", self.rtmp)
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn stderr(&self) -> String {
        self.child.stderr()
    }

    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_status() {
            panic!("ringcast exited with {status}; stderr:\n{}", self.stderr());
        }
    }
}

/// HAProxy in TCP mode, round robin over `backends` (each checked every 300 ms, so a dead node
/// is skipped and a refused connection is redispatched).
pub struct Balancer {
    pub addr: SocketAddr,
    child: ChildGuard,
}

impl Balancer {
    pub fn start(ip: &str, backends: &[SocketAddr], dir: &Path) -> Balancer {
        let port = free_port_on(ip);
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("    server node{i} {b} check inter 300ms fall 1 rise 1\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 4096\ndefaults\n    mode tcp\n    retries 3\n    option redispatch\n    \
             timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n\
             frontend front\n    bind {ip}:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n{servers}"
        );
        let path = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(&path, &config).expect("write haproxy config");
        let mut cmd = Command::new(tools::haproxy());
        cmd.arg("-db").arg("-f").arg(&path);
        let mut child = ChildGuard::spawn("haproxy", &mut cmd, dir.join("haproxy.stderr"));
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
        wait_listening(addr, &mut child, "haproxy");
        Balancer { addr, child }
    }

    pub fn stderr(&self) -> String {
        self.child.stderr()
    }
}

/// `ringcast-loadgen publish`: synthetic media at a low bitrate (so hundreds of players fit a
/// 2-core machine), killed on drop.
pub fn loadgen_publish(target: SocketAddr, stream: &str, dir: &Path, name: &str) -> ChildGuard {
    let mut cmd = Command::new(loadgen_binary());
    cmd.arg("publish")
        .arg("--target")
        .arg(target.to_string())
        .args(["--stream", stream])
        .args([
            "--bitrate",
            "200000",
            "--audio-bitrate",
            "32000",
            "--fps",
            "25",
        ])
        .args(["--gop-secs", "1"]);
    ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")))
}

/// A running `ringcast-loadgen watch`.
pub struct Watchers {
    child: ChildGuard,
    out: PathBuf,
}

impl Watchers {
    /// `watchers` RTMP players of `stream` through `target` for `secs` (the first `warmup`
    /// not counted), opened at `ramp` per second from `source_ips`.
    pub fn start(
        target: SocketAddr,
        stream: &str,
        watchers: u64,
        (secs, warmup): (u64, u64),
        source_ips: &str,
        dir: &Path,
        name: &str,
    ) -> Watchers {
        let out = dir.join(format!("{name}.json"));
        let mut cmd = Command::new(loadgen_binary());
        cmd.arg("watch")
            .arg("--target")
            .arg(target.to_string())
            .args(["--stream", stream])
            .args(["--watchers", &watchers.to_string()])
            .args(["--duration", &secs.to_string()])
            .args(["--warmup", &warmup.to_string()])
            .args(["--ramp-per-sec", "150", "--stall-ms", "1000", "--quiet"])
            .args(["--source-ips", source_ips])
            .arg("--out")
            .arg(&out);
        let child = ChildGuard::spawn(name, &mut cmd, dir.join(format!("{name}.stderr")));
        Watchers { child, out }
    }

    /// Waits for the run to end; its JSON summary.
    pub fn summary(&mut self, timeout: Duration) -> String {
        let status = self.child.wait_timeout(timeout);
        assert!(
            status.is_some_and(|s| s.success()),
            "loadgen watch did not finish cleanly ({status:?}); stderr:\n{}",
            self.child.stderr()
        );
        std::fs::read_to_string(&self.out).expect("read loadgen summary")
    }
}

/// A number field of a loadgen JSON summary (the integer part; -1 if it is not a number).
pub fn summary_field(json: &str, name: &str) -> i64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let value: String = json[at + key.len()..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    value.parse().unwrap_or(-1)
}

/// Waits until `cond` holds, polling every 100 ms.
pub fn eventually(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_until(timeout, cond)
}

/// nginx with the RTMP module (Debian's nginx + libnginx-mod-rtmp), in the foreground with its
/// own config, pid and log files, an `application live` on `ip:port`.
pub struct Nginx {
    pub rtmp: SocketAddr,
    child: ChildGuard,
}

impl Nginx {
    pub fn start(ip: &str, dir: &Path) -> Nginx {
        let port = free_port_on(ip);
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
        let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
        assert!(
            Path::new(module).exists(),
            "{module} missing: scripts/install-test-deps.sh installs libnginx-mod-rtmp"
        );
        let config = format!(
            "load_module {module};\n\
             daemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {pid};\nerror_log {log} info;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen {ip}:{port}; chunk_size 4096;\n\
             application live {{ live on; record off; }} }} }}\n",
            pid = prefix.join("nginx.pid").display(),
            log = prefix.join("logs/error.log").display(),
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config).expect("write nginx.conf");
        let mut cmd = Command::new("/usr/sbin/nginx");
        cmd.arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf);
        let mut child = ChildGuard::spawn("nginx", &mut cmd, dir.join("nginx.stderr"));
        let rtmp: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
        wait_listening(rtmp, &mut child, "nginx");
        Nginx { rtmp, child }
    }

    pub fn stderr(&self) -> String {
        self.child.stderr()
    }
}
