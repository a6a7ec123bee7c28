//! From `accept` to a protocol driver: one accept loop per listener, one task per connection
//! that registers the connection's guard, starts its handshake deadline and, on a listener
//! behind a load balancer, reads the PROXY protocol header that names the client.
//!
//! The drivers (`rtmp::serve`, `fstream::serve`, `ftl::serve`, `http::serve`) take an [`Accepted`] and never
//! see the header: only the client's address and whatever bytes arrived after the header. The
//! header is read under the protocol's handshake deadline (one deadline from accept to the end
//! of the handshake), by the same kind of read loop as the drivers, never raced against a timer.
//! A connection without a valid header is logged with its socket peer and closed; nothing is
//! sent back (the spec asks to abort such connections).
//!
//! On a TLS listener (`rtmps`, `https`) the TLS handshake follows the PROXY header, under the
//! same deadline; the driver gets a [`Transport`] that reads and writes plaintext. A failed
//! handshake (plaintext on the TLS port, a garbage ClientHello, a client gone quiet) ends that
//! connection alone, with a log line saying what happened.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tracing::{debug, error, info, warn};

use super::Core;
use super::guard::ConnGuard;
use super::net::{HandshakeError, Transport};
use super::reader::Reader;
use super::runtime::{self, TcpListener, TcpStream};
use crate::metrics::{Counter, Protocol};
use crate::proto::proxy::{self, Header, Parse, ProxyError};
use rustls::InvalidMessage;

/// Most connections taken from the accept queue at once after an awaited accept.
const MAX_ACCEPT_BURST: usize = 256;

/// What a listener expects of the connections it accepts.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// TLS on this listener: the server config (its certificate resolver reloads).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The label in logs: "rtmp", "rtmps", "http", "https", ...
    pub label: &'static str,
    /// The protocol served: the metrics label and the logs' `protocol`.
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
    /// From accept to the end of the protocol's handshake, the PROXY header included.
    pub handshake_timeout: Duration,
}

/// An accepted connection, handed to its protocol driver.
#[derive(Debug)]
pub struct Accepted {
    /// The socket and its deadlines; the handshake deadline is already running.
    pub guard: Rc<ConnGuard>,
    /// The client: the PROXY header's source on a `proxy_protocol` listener (the socket's peer
    /// when the header carries none: LOCAL, UNKNOWN), else the socket's peer.
    pub peer: SocketAddr,
    /// Bytes read after the PROXY header: the protocol's first input (often the whole first
    /// flight, e.g. an RTMP C0+C1 sent with the header).
    pub early: BytesMut,
}

/// Accepts connections on `listener` forever, one task each that ends in `serve`.
pub async fn run<F, Fut>(core: Rc<Core>, spec: ListenerSpec, listener: TcpListener, serve: F)
where
    F: FnOnce(Rc<Core>, Accepted) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let admit = |stream: TcpStream, peer: SocketAddr| {
        core.hub.metrics().add(Counter::Accepted(spec.protocol), 1);
        runtime::tune_accepted(&stream);
        runtime::spawn(start(
            core.clone(),
            spec.clone(),
            stream,
            peer,
            serve.clone(),
        ))
        .detach();
    };
    loop {
        let failed = match listener.accept().await {
            Ok((stream, peer)) => {
                admit(stream, peer);
                // A busy core runs this task once per tick, and one awaited accept per tick
                // admits a reconnect storm at tens of connections per second: take everything
                // already queued now, without waiting.
                let mut failed = None;
                for _ in 0..MAX_ACCEPT_BURST {
                    match runtime::try_accept(&listener) {
                        Ok(Some((stream, peer))) => admit(stream, peer),
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                failed
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => None,
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            // EMFILE and friends: back off instead of spinning, and log once a minute (with
            // how many failures were not logged) rather than ten times a second.
            let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
            if let Some(suppressed) =
                core.log_limiter
                    .allow("accept-failed", unspecified, Instant::now())
            {
                error!(addr = %spec.addr, error = %e, suppressed, "accept failed (logged at most once a minute per worker; suppressed = failures not logged since)");
            }
            runtime::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One accepted connection: guard, deadline, PROXY header if expected, then the driver.
async fn start<F, Fut>(
    core: Rc<Core>,
    spec: ListenerSpec,
    stream: TcpStream,
    socket_peer: SocketAddr,
    serve: F,
) where
    F: FnOnce(Rc<Core>, Accepted) -> Fut,
    Fut: Future<Output = ()>,
{
    let now = Instant::now();
    let transport = match &spec.tls {
        None => Transport::plain(stream),
        Some(config) => match Transport::tls_server(stream, config.clone()) {
            Ok(transport) => transport,
            Err(e) => {
                warn!(peer = %socket_peer, protocol = spec.label, error = %e, "TLS session setup failed");
                return;
            }
        },
    };
    let guard = core.sweeper.guard(Rc::new(transport), now);
    guard.set_handshake_deadline(Some(now + spec.handshake_timeout));
    let mut early = BytesMut::new();
    let peer = if spec.proxy_protocol {
        match read_header(&guard, &mut early).await {
            Ok(header) => client_of(&header, socket_peer, &spec),
            Err(end) => {
                log_refusal(&spec, socket_peer, &guard, &end, early.len());
                runtime::shutdown(guard.stream());
                return;
            }
        }
    } else {
        socket_peer
    };
    if guard.stream().is_tls() {
        if let Err(e) = guard.stream().handshake(&mut early).await {
            log_tls_failure(&spec, peer, &guard, &e);
            guard.stream().shutdown();
            return;
        }
        if let Some((version, sni)) = guard.stream().tls_summary() {
            debug!(%peer, protocol = spec.label, version, sni = sni.as_deref().unwrap_or("-"), "TLS handshake done");
        }
    }
    serve(core, Accepted { guard, peer, early }).await;
}

/// Says why a TLS handshake failed: the deadline, the peer leaving, or what was wrong with its
/// bytes (rustls names it: plaintext where a record was expected, a bad ClientHello, ...).
fn log_tls_failure(spec: &ListenerSpec, peer: SocketAddr, guard: &ConnGuard, end: &HandshakeError) {
    let protocol = spec.label;
    match (end, guard.cut()) {
        (_, Some(cut)) => info!(%peer, protocol, reason = %cut, "TLS handshake failed"),
        (HandshakeError::Closed { received: 0 }, _) => {
            debug!(%peer, protocol, "TLS handshake failed: closed by peer before sending anything")
        }
        (HandshakeError::Closed { received }, _) => {
            info!(%peer, protocol, received, "TLS handshake failed: closed by peer mid-handshake")
        }
        (
            HandshakeError::Tls(
                e @ rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
            ),
            _,
        ) => {
            let hint = "not TLS: a plaintext client on the TLS port?";
            warn!(%peer, protocol, error = %e, hint, "TLS handshake failed")
        }
        (HandshakeError::Tls(e), _) => warn!(%peer, protocol, error = %e, "TLS handshake failed"),
        (HandshakeError::Io(e), _) => info!(%peer, protocol, error = %e, "TLS handshake failed"),
    }
}

/// The client named by `header`, or the socket's peer when it names none.
fn client_of(header: &Header, socket_peer: SocketAddr, spec: &ListenerSpec) -> SocketAddr {
    let (protocol, version) = (spec.protocol.listener_label(), header.version);
    match header.source() {
        Some(source) => {
            debug!(peer = %source, via = %socket_peer, protocol, ?version, "PROXY header");
            source
        }
        None => {
            // LOCAL (a balancer's health check) or UNKNOWN: the spec says to use the socket's.
            debug!(peer = %socket_peer, protocol, ?version, "PROXY header without a client address");
            socket_peer
        }
    }
}

/// Why a connection ended before its PROXY header was complete.
#[derive(Debug)]
enum HeaderEnd {
    Invalid(ProxyError),
    Closed,
    Io(std::io::Error),
}

/// Reads until `input` starts with a complete header; consumes it and leaves what followed.
async fn read_header(guard: &ConnGuard, input: &mut BytesMut) -> Result<Header, HeaderEnd> {
    let mut reader = Reader::default();
    loop {
        match proxy::parse(input) {
            Ok(Parse::Complete(header)) => {
                input.advance(header.len);
                return Ok(header);
            }
            Ok(Parse::NeedMore) => {}
            Err(e) => return Err(HeaderEnd::Invalid(e)),
        }
        match reader.read_raw(guard.stream().tcp(), input).await {
            Ok(0) => return Err(HeaderEnd::Closed),
            Ok(_) => guard.note_read(Instant::now()),
            Err(e) => return Err(HeaderEnd::Io(e)),
        }
    }
}

fn log_refusal(
    spec: &ListenerSpec,
    peer: SocketAddr,
    guard: &ConnGuard,
    end: &HeaderEnd,
    buffered: usize,
) {
    let protocol = spec.protocol.listener_label();
    let what = "connection closed before its PROXY protocol header";
    match (end, guard.cut()) {
        (_, Some(cut)) => info!(%peer, protocol, reason = %cut, buffered, "{what}"),
        (HeaderEnd::Invalid(e), _) => {
            // A client that went around the balancer, or a balancer not sending the header.
            warn!(%peer, protocol, error = %e, "connection closed: no valid PROXY protocol header")
        }
        // Connect-and-close: a TCP health check or a port probe, as quiet as the drivers' own.
        (HeaderEnd::Closed, _) if buffered == 0 => {
            debug!(%peer, protocol, "{what}: closed by peer")
        }
        (HeaderEnd::Closed, _) => {
            info!(%peer, protocol, reason = "closed by peer", buffered, "{what}")
        }
        (HeaderEnd::Io(e), _) => debug!(%peer, protocol, error = %e, "{what}"),
    }
}
