//! A tiny HTTP/1.1 client over a plain `TcpStream`, independent of the server's parser: raw
//! request bytes out, the status, head and body back, with deadlines on every read.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One response as received.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line and header fields, without the final empty line.
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects to `addr` with a 5 s connect deadline.
pub fn connect(addr: &str) -> TcpStream {
    let addr = addr.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect")
}

/// Reads into `buf` until `done(buf)` says the response is complete or the server closes;
/// panics after `timeout`. Returns whether the server closed.
fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 16 * 1024];
    while !done(buf) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no complete HTTP response within {timeout:?}; got {:?}",
            String::from_utf8_lossy(buf)
        );
        stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("HTTP read failed: {e}"),
        }
    }
    false
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse(buf: &[u8], body_len: Option<usize>) -> HttpResponse {
    let end = head_end(buf).unwrap_or_else(|| {
        panic!(
            "no HTTP response head in {:?}",
            String::from_utf8_lossy(buf)
        )
    });
    let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    assert!(head.starts_with("HTTP/1.1 "), "status line: {head:?}");
    let body = &buf[end..];
    let body = body_len.map_or(body, |len| &body[..len.min(body.len())]);
    HttpResponse {
        status,
        head,
        body: body.to_vec(),
    }
}

/// Reads one response whose body has a `Content-Length` (or none, for 204 and HEAD answers
/// when `head_only`), leaving the connection open.
pub fn read_response(stream: &mut TcpStream, head_only: bool) -> HttpResponse {
    let mut buf = Vec::new();
    let content_length = |buf: &[u8]| -> Option<usize> {
        let end = head_end(buf)?;
        let head = parse(&buf[..end], None);
        Some(if head_only || head.status == 204 {
            0
        } else {
            head.header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("Content-Length")
        })
    };
    read_until(stream, &mut buf, Duration::from_secs(10), |b| {
        head_end(b)
            .zip(content_length(b))
            .is_some_and(|(end, len)| b.len() >= end + len)
    });
    let len = content_length(&buf);
    parse(&buf, len)
}

/// Sends `request` as is and reads until the server closes the connection.
pub fn exchange(addr: &str, request: &[u8]) -> HttpResponse {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send request");
    let mut buf = Vec::new();
    let closed = read_until(&mut stream, &mut buf, Duration::from_secs(10), |_| false);
    assert!(closed);
    parse(&buf, None)
}

/// `GET path` with `Connection: close`, read to the close.
pub fn get(addr: &str, path: &str) -> HttpResponse {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The value of the Prometheus sample `series` (e.g. `ringcast_watchers{protocol="rtmp"}`).
pub fn metric(addr: &str, series: &str) -> u64 {
    let text = get(addr, "/metrics").body_text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in /metrics:\n{text}"))
}
