//! Where a publisher's frames go: an RTMP publish (ringcast's sans-IO `ClientSession`) or an
//! fstream broadcast (the handshake frame, an FLV file header, then one FLV tag per frame).
//!
//! Blocking sockets. A background thread drains whatever the server sends (RTMP
//! acknowledgements and pings; nothing at all for fstream) so it never backs up, and notes when
//! the server closes: fstream has no refusal message, so a close is how a wrong password or a
//! channel already live shows, and the next flush reports it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcast::media::Frame;
use ringcast::proto::flv::{file_header, write_tag};
use ringcast::proto::rtmp::{ClientConfig, ClientEvent, ClientSession};

use crate::synth::monotonic_ns;
use crate::tls::Sock;

/// How a publisher reaches the relay.
#[derive(Debug, Clone)]
pub enum Route {
    /// RTMP `connect(app)` then `publish(stream)`.
    Rtmp { app: String, stream: String },
    /// An fstream broadcast; the encoded handshake frame.
    Fstream { handshake: Bytes },
}

/// What an fstream close most likely means: the protocol has no refusal message.
const FSTREAM_REFUSAL: &str = "(if at the start, fstream refused: check the user, its password, and that the channel is not already live)";

enum Wire {
    Rtmp(Box<ClientSession>),
    /// FLV bytes waiting for the next flush.
    Flv(BytesMut),
}

/// A connected publisher.
pub struct Sink {
    sock: Sock<TcpStream>,
    wire: Wire,
    closed_by_server: Arc<AtomicBool>,
}

fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    let sock = TcpStream::connect(target).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).ok();
    Ok(sock)
}

/// Reads and discards the server's side on a thread; the flag turns true when it closes.
fn drain_in_background(sock: &TcpStream) -> Result<Arc<AtomicBool>, String> {
    let mut reader = sock.try_clone().map_err(|e| format!("clone: {e}"))?;
    reader.set_read_timeout(None).ok();
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let mut b = vec![0u8; 16 * 1024];
        while matches!(reader.read(&mut b), Ok(n) if n > 0) {}
        flag.store(true, Ordering::Relaxed);
    });
    Ok(closed)
}

/// RTMPS: reads and discards what the server sent, without blocking; true once it closed.
fn drain_tls(sock: &mut Sock<TcpStream>) -> Result<bool, String> {
    sock.tcp
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let mut b = vec![0u8; 16 * 1024];
    let closed = loop {
        match sock.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    sock.tcp
        .set_nonblocking(false)
        .map_err(|e| format!("blocking: {e}"))?;
    Ok(closed)
}

fn write_out(session: &mut ClientSession, sock: &mut Sock<TcpStream>) -> Result<(), String> {
    while let Some(b) = session.poll_transmit() {
        sock.write_all(&b).map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

/// Handshakes, connects and publishes; returns once the server said `NetStream.Publish.Start`.
fn start_rtmp(
    sock: &mut Sock<TcpStream>,
    target: SocketAddr,
    app: &str,
    stream: &str,
) -> Result<ClientSession, String> {
    let mut random = [0u8; ringcast::proto::rtmp::handshake::RANDOM_SIZE];
    random[..8].copy_from_slice(&monotonic_ns().to_be_bytes());
    let mut session = ClientSession::new(ClientConfig::default(), random);
    let tc_url = format!("rtmp://{target}/{app}");
    session.connect(app, &tc_url);
    session.publish(stream);
    write_out(&mut session, sock)?;
    let mut inbuf = BytesMut::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    sock.tcp
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok();
    loop {
        let n = sock.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed during setup".into());
        }
        inbuf.extend_from_slice(&chunk[..n]);
        session
            .handle_input(&mut inbuf)
            .map_err(|e| format!("session: {e}"))?;
        write_out(&mut session, sock)?;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::PublishStarted { .. } => return Ok(session),
                ClientEvent::Status { level, code, .. } if level == "error" => {
                    return Err(format!("publish refused: {code}"));
                }
                _ => {}
            }
        }
    }
}

impl Sink {
    /// Connects and starts publishing. `has_audio`/`has_video` are the FLV header's flags.
    pub fn connect(
        target: SocketAddr,
        route: &Route,
        has_audio: bool,
        has_video: bool,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Sink, String> {
        let tcp = connect(target)?;
        let tls = match tls {
            Some(config) => Some(Box::new(
                crate::tls::session(config, target).map_err(|e| format!("tls: {e}"))?,
            )),
            None => None,
        };
        let mut sock = Sock { tcp, tls };
        let wire = match route {
            Route::Rtmp { app, stream } => {
                Wire::Rtmp(Box::new(start_rtmp(&mut sock, target, app, stream)?))
            }
            Route::Fstream { handshake } => {
                let mut out = BytesMut::with_capacity(64 * 1024);
                out.extend_from_slice(handshake);
                out.extend_from_slice(&file_header(has_audio, has_video));
                Wire::Flv(out)
            }
        };
        let closed_by_server = if sock.tls.is_some() {
            // One TLS session cannot be read from another thread: flush drains it instead.
            Arc::new(AtomicBool::new(false))
        } else {
            drain_in_background(&sock.tcp)?
        };
        Ok(Sink {
            sock,
            wire,
            closed_by_server,
        })
    }

    /// Queues one frame.
    pub fn send(&mut self, frame: &Frame) -> Result<(), String> {
        match &mut self.wire {
            Wire::Rtmp(session) => session.send_frame(frame).map_err(|e| format!("send: {e}")),
            Wire::Flv(out) => write_tag(out, frame).map_err(|e| format!("flv: {e}")),
        }
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.sock.tls.is_some() && drain_tls(&mut self.sock)? {
            self.closed_by_server.store(true, Ordering::Relaxed);
        }
        if self.closed_by_server.load(Ordering::Relaxed) {
            return Err(match self.wire {
                Wire::Rtmp(_) => "the server closed the connection".into(),
                Wire::Flv(_) => format!("the server closed the connection {FSTREAM_REFUSAL}"),
            });
        }
        match &mut self.wire {
            Wire::Rtmp(session) => write_out(session, &mut self.sock),
            Wire::Flv(out) => {
                let result = self
                    .sock
                    .write_all(out)
                    .map_err(|e| format!("write: {e} {FSTREAM_REFUSAL}"));
                out.clear();
                result
            }
        }
    }
}
