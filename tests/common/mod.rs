//! Shared harness for the integration tests: a guard around the `ringcast` server process,
//! media fixtures generated once with ffmpeg, ffmpeg/GStreamer client helpers, a framemd5 and
//! FLV reader to compare what a player received with what the publisher sent, and a tiny
//! independent RTMP client for raw-byte tests, PROXY protocol headers and an HAProxy runner.
//!
//! Every child process runs under a guard that kills it on drop and every wait has a deadline,
//! so a hung server or client fails the test instead of hanging CI. Nothing here skips a test
//! when a tool is missing: it panics with the tool's name.
#![allow(dead_code)]

pub mod cluster;
pub mod fixtures;
pub mod flv;
pub mod framemd5;
pub mod fstream;
pub mod ftl;
pub mod healthy;
pub mod http;
pub mod media;
pub mod process;
pub mod proxy;
pub mod rtmp_raw;
pub mod server;
pub mod tls;
pub mod tools;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// A port that was free a moment ago on 127.0.0.1 (see [`free_port_on`]).
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port that was free a moment ago on `ip` (bind :0, read it, drop the listener), and one
/// this test process has not been given before: the kernel may hand a just-released port out
/// again, and two listeners of one server given the same port make it refuse to start.
pub fn free_port_on(ip: &str) -> u16 {
    static GIVEN: Mutex<Option<HashSet<(String, u16)>>> = Mutex::new(None);
    loop {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
        let port = listener.local_addr().expect("local_addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given
            .get_or_insert_with(HashSet::new)
            .insert((ip.to_owned(), port))
        {
            return port;
        }
    }
}

/// A fresh stream key, unique within this process, so tests never share a stream by accident.
pub fn unique_key(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `check`; if it panics, panics again with `context()` (typically the server's and the
/// clients' stderr) appended, so a failed assertion comes with the logs that explain it.
pub fn with_context<T>(context: impl FnOnce() -> String, check: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{message}\n---- context ----\n{}", context())
        }
    }
}
