//! A tiny RTMP client written from the spec, independent of the library's own RTMP code:
//! simple handshake (RTMP 1.0 §5.2, C1 bytes 4..8 zero), a chunk writer (fmt 0 then fmt 3
//! continuations, §5.3.1), a chunk reader that honours Set Chunk Size, and a minimal AMF0
//! encoder/decoder for commands. Used by the slow-watcher and bad-input tests, which need to
//! stall or misbehave in ways real clients do not.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const HANDSHAKE_SIZE: usize = 1536;

/// An AMF0 value, enough for RTMP commands.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Amf)>),
    StrictArray(Vec<Amf>),
    Null,
}

impl Amf {
    pub fn str(s: &str) -> Amf {
        Amf::Str(s.to_owned())
    }

    /// AMF0 encoding (AMF0 spec §2).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Amf::Number(n) => {
                out.push(0x00);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Amf::Bool(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
            Amf::Str(s) => {
                out.push(0x02);
                out.extend_from_slice(&(s.len() as u16).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Amf::Object(fields) => {
                out.push(0x03);
                for (k, v) in fields {
                    out.extend_from_slice(&(k.len() as u16).to_be_bytes());
                    out.extend_from_slice(k.as_bytes());
                    v.encode(out);
                }
                out.extend_from_slice(&[0x00, 0x00, 0x09]);
            }
            Amf::StrictArray(items) => {
                out.push(0x0a);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for v in items {
                    v.encode(out);
                }
            }
            Amf::Null => out.push(0x05),
        }
    }

    /// Decodes one value; `None` on anything unexpected (this client only reads friendly servers).
    pub fn decode(buf: &mut &[u8], depth: u32) -> Option<Amf> {
        if depth > 32 {
            return None;
        }
        let (&marker, rest) = buf.split_first()?;
        *buf = rest;
        match marker {
            0x00 => {
                let bytes: [u8; 8] = take(buf, 8)?.try_into().ok()?;
                Some(Amf::Number(f64::from_be_bytes(bytes)))
            }
            0x01 => Some(Amf::Bool(take(buf, 1)?[0] != 0)),
            0x02 => Some(Amf::Str(short_string(buf)?)),
            0x03 | 0x08 => {
                if marker == 0x08 {
                    take(buf, 4)?; // ECMA array count, advisory
                }
                let mut fields = Vec::new();
                loop {
                    let key = short_string(buf)?;
                    if key.is_empty() && buf.first() == Some(&0x09) {
                        take(buf, 1)?;
                        return Some(Amf::Object(fields));
                    }
                    fields.push((key, Amf::decode(buf, depth + 1)?));
                }
            }
            0x05 | 0x06 => Some(Amf::Null),
            _ => None,
        }
    }

    pub fn field(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

fn short_string(buf: &mut &[u8]) -> Option<String> {
    let len = u16::from_be_bytes(take(buf, 2)?.try_into().ok()?) as usize;
    Some(String::from_utf8_lossy(take(buf, len)?).into_owned())
}

/// Encodes a command message body: name, transaction id, then the values.
pub fn command(name: &str, txn: f64, values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    Amf::str(name).encode(&mut out);
    Amf::Number(txn).encode(&mut out);
    for v in values {
        v.encode(&mut out);
    }
    out
}

/// C0 (version 3) + C1 (time 0, four zero bytes = simple handshake, pseudo-random filler).
pub fn c0c1() -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + HANDSHAKE_SIZE);
    out.push(0x03);
    out.extend_from_slice(&[0; 8]);
    let mut x: u32 = 0x1234_5678;
    while out.len() < 1 + HANDSHAKE_SIZE {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
    out
}

/// One message as chunks on `csid` (2..=63): a fmt-0 chunk, then fmt-3 continuations.
pub fn chunk_message(
    csid: u8,
    timestamp: u32,
    type_id: u8,
    msid: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    assert!((2..=63).contains(&csid));
    let mut out = Vec::with_capacity(payload.len() + 16 + payload.len() / chunk_size);
    out.push(csid); // fmt 0
    out.extend_from_slice(&timestamp.min(0xff_fffe).to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&msid.to_le_bytes());
    for (i, piece) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.push(0xc0 | csid); // fmt 3
        }
        out.extend_from_slice(piece);
    }
    out
}

/// A whole message read back from the server.
#[derive(Clone, Debug)]
pub struct Message {
    pub csid: u32,
    pub type_id: u8,
    pub msid: u32,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

impl Message {
    /// For command messages (type 20): the decoded AMF0 values.
    pub fn amf_values(&self) -> Vec<Amf> {
        let mut buf = self.payload.as_slice();
        let mut values = Vec::new();
        while !buf.is_empty() {
            match Amf::decode(&mut buf, 0) {
                Some(v) => values.push(v),
                None => break,
            }
        }
        values
    }

    pub fn command_name(&self) -> Option<String> {
        match self.amf_values().first() {
            Some(Amf::Str(s)) if self.type_id == 20 => Some(s.clone()),
            _ => None,
        }
    }
}

#[derive(Default)]
struct InState {
    timestamp: u32,
    len: usize,
    type_id: u8,
    msid: u32,
    extended: bool,
    partial: Vec<u8>,
}

/// A connected raw RTMP client.
pub struct RawRtmp {
    pub stream: TcpStream,
    pub port: u16,
    in_chunk_size: usize,
    inbound: HashMap<u32, InState>,
    buf: Vec<u8>,
    next_txn: f64,
}

/// TCP connect to 127.0.0.1:`port` with a 10 s read timeout.
pub fn tcp(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Performs the client side of the simple handshake on `stream`.
pub fn handshake(stream: &mut TcpStream) -> io::Result<()> {
    handshake_after(stream, &[])
}

/// The simple handshake, with `prefix` (a PROXY protocol header) sent in the same write as
/// C0+C1, so the server reads them together.
pub fn handshake_after(stream: &mut TcpStream, prefix: &[u8]) -> io::Result<()> {
    stream.write_all(&[prefix, &c0c1()].concat())?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
    stream.read_exact(&mut s0s1s2)?;
    if s0s1s2[0] != 3 {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("S0 version {}", s0s1s2[0]),
        ));
    }
    // C2 echoes S1 (§5.2.4).
    stream.write_all(&s0s1s2[1..1 + HANDSHAKE_SIZE])
}

impl RawRtmp {
    /// TCP connect and handshake only.
    pub fn handshaken(port: u16) -> RawRtmp {
        RawRtmp::handshaken_over(tcp(port), port)
    }

    /// Handshake over an already connected `stream` (e.g. one with custom socket options).
    pub fn handshaken_over(stream: TcpStream, port: u16) -> RawRtmp {
        RawRtmp::handshaken_after(stream, &[], port)
    }

    /// Handshake over `stream`, `prefix` sent in the same write as C0+C1.
    pub fn handshaken_after(mut stream: TcpStream, prefix: &[u8], port: u16) -> RawRtmp {
        handshake_after(&mut stream, prefix).expect("RTMP handshake with the server");
        RawRtmp {
            stream,
            port,
            in_chunk_size: 128,
            inbound: HashMap::new(),
            buf: Vec::new(),
            next_txn: 1.0,
        }
    }

    /// Handshake + `connect(app)`, waiting for its `_result`.
    pub fn connected(port: u16, app: &str) -> RawRtmp {
        RawRtmp::over(tcp(port), port, app)
    }

    /// Handshake + `connect(app)` over an already connected `stream`.
    pub fn over(stream: TcpStream, port: u16, app: &str) -> RawRtmp {
        RawRtmp::over_after(stream, &[], port, app)
    }

    /// Handshake + `connect(app)` over `stream`, `prefix` (a PROXY protocol header) sent in the
    /// same write as C0+C1.
    pub fn over_after(stream: TcpStream, prefix: &[u8], port: u16, app: &str) -> RawRtmp {
        RawRtmp::connect_with(stream, prefix, port, app, Vec::new())
    }

    /// Handshake + `connect(app)` with `extra` properties in the command object (an Enhanced
    /// RTMP `fourCcList`, say).
    pub fn connected_with(port: u16, app: &str, extra: Vec<(String, Amf)>) -> RawRtmp {
        RawRtmp::connect_with(tcp(port), &[], port, app, extra)
    }

    fn connect_with(
        stream: TcpStream,
        prefix: &[u8],
        port: u16,
        app: &str,
        extra: Vec<(String, Amf)>,
    ) -> RawRtmp {
        let mut c = RawRtmp::handshaken_after(stream, prefix, port);
        let tc_url = format!("rtmp://127.0.0.1:{port}/{app}");
        let mut props = vec![
            ("app".into(), Amf::str(app)),
            ("type".into(), Amf::str("nonprivate")),
            (
                "flashVer".into(),
                Amf::str("FMLE/3.0 (compatible; ringcast-tests)"),
            ),
            ("tcUrl".into(), Amf::Str(tc_url)),
        ];
        props.extend(extra);
        let obj = Amf::Object(props);
        c.send_command(3, 0, "connect", &[obj]);
        let reply = c.expect_command(&["_result", "_error"], Duration::from_secs(10));
        assert_eq!(
            reply.command_name().as_deref(),
            Some("_result"),
            "connect refused: {:?}",
            reply.amf_values()
        );
        c
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a command (type 20) with a fresh transaction id; returns that id.
    pub fn send_command(&mut self, csid: u8, msid: u32, name: &str, values: &[Amf]) -> f64 {
        let txn = if name == "play" || name == "publish" {
            0.0
        } else {
            self.next_txn
        };
        self.next_txn += 1.0;
        let mut args = Vec::with_capacity(values.len() + 1);
        if name != "connect" {
            args.push(Amf::Null);
        }
        args.extend_from_slice(values);
        let body = command(name, txn, &args);
        let bytes = chunk_message(csid, 0, 20, msid, &body, 128);
        self.stream.write_all(&bytes).expect("send command");
        txn
    }

    /// `createStream`, returning the message stream id from its `_result`.
    pub fn create_stream(&mut self) -> u32 {
        self.send_command(3, 0, "createStream", &[]);
        let reply = self.expect_command(&["_result", "_error"], Duration::from_secs(10));
        match reply.amf_values().get(3) {
            Some(Amf::Number(id)) if reply.command_name().as_deref() == Some("_result") => {
                *id as u32
            }
            other => panic!("createStream failed: {other:?} in {:?}", reply.amf_values()),
        }
    }

    pub fn play(&mut self, msid: u32, key: &str) {
        self.send_command(8, msid, "play", &[Amf::str(key)]);
    }

    pub fn publish(&mut self, msid: u32, key: &str) {
        self.send_command(8, msid, "publish", &[Amf::str(key), Amf::str("live")]);
    }

    /// Reads messages until a command named one of `names` arrives; panics at the deadline.
    pub fn expect_command(&mut self, names: &[&str], timeout: Duration) -> Message {
        let deadline = Instant::now() + timeout;
        loop {
            let msg = self
                .read_message(deadline)
                .unwrap_or_else(|e| panic!("waiting for {names:?}: {e}"));
            if msg
                .command_name()
                .is_some_and(|n| names.contains(&n.as_str()))
            {
                return msg;
            }
        }
    }

    /// Reads `onStatus` messages until one whose info `code` is set; returns that code.
    pub fn expect_status(&mut self, timeout: Duration) -> String {
        let msg = self.expect_command(&["onStatus"], timeout);
        msg.amf_values()
            .iter()
            .find_map(|v| match v.field("code") {
                Some(Amf::Str(code)) => Some(code.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("onStatus without a code: {:?}", msg.amf_values()))
    }

    fn fill(&mut self, n: usize, deadline: Instant) -> io::Result<()> {
        let mut tmp = [0u8; 16 * 1024];
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "deadline reading from server",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut tmp)? {
                0 => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ));
                }
                k => self.buf.extend_from_slice(&tmp[..k]),
            }
        }
        Ok(())
    }

    /// Reads one complete message (RTMP 1.0 §5.3.1), handling Set Chunk Size itself.
    pub fn read_message(&mut self, deadline: Instant) -> io::Result<Message> {
        loop {
            self.fill(1, deadline)?;
            let fmt = self.buf[0] >> 6;
            let (csid, basic_len) = match self.buf[0] & 0x3f {
                0 => {
                    self.fill(2, deadline)?;
                    (64 + u32::from(self.buf[1]), 2)
                }
                1 => {
                    self.fill(3, deadline)?;
                    (
                        64 + u32::from(self.buf[1]) + 256 * u32::from(self.buf[2]),
                        3,
                    )
                }
                id => (u32::from(id), 1),
            };
            let header_len = [11, 7, 3, 0][fmt as usize];
            self.fill(basic_len + header_len, deadline)?;
            let h = self.buf[basic_len..basic_len + header_len].to_vec();
            let state = self.inbound.entry(csid).or_default();
            let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
            let mut ts_field = None;
            if fmt <= 2 {
                ts_field = Some(u24(&h[0..3]));
            }
            if fmt <= 1 {
                state.len = u24(&h[3..6]) as usize;
                state.type_id = h[6];
            }
            if fmt == 0 {
                state.msid = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            let extended = match ts_field {
                Some(t) => t == 0xff_ffff,
                None => state.extended,
            };
            state.extended = extended;
            let ext_len = if extended { 4 } else { 0 };
            let remaining = state.len - state.partial.len();
            let take_len = remaining.min(self.in_chunk_size);
            let total = basic_len + header_len + ext_len + take_len;
            self.fill(total, deadline)?;
            let state = self.inbound.entry(csid).or_default();
            let mut ts = ts_field.unwrap_or(0);
            if extended {
                let e = &self.buf[basic_len + header_len..basic_len + header_len + 4];
                ts = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            }
            if let Some(_t) = ts_field {
                state.timestamp = if fmt == 0 {
                    ts
                } else {
                    state.timestamp.wrapping_add(ts)
                };
            }
            state
                .partial
                .extend_from_slice(&self.buf[total - take_len..total]);
            self.buf.drain(..total);
            if state.partial.len() == state.len {
                let msg = Message {
                    csid,
                    type_id: state.type_id,
                    msid: state.msid,
                    timestamp: state.timestamp,
                    payload: std::mem::take(&mut state.partial),
                };
                if msg.type_id == 1 && msg.payload.len() >= 4 {
                    let p = &msg.payload;
                    self.in_chunk_size =
                        (u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff) as usize;
                }
                return Ok(msg);
            }
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset), discarding whatever arrives;
/// panics if it is still open after `timeout`. Returns how long the close took.
pub fn assert_closed_by_server(stream: &mut TcpStream, timeout: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: the server kept the connection open for {timeout:?}"
        );
        stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return start.elapsed();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("{what}: unexpected read error {e}"),
        }
    }
}
