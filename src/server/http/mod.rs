//! The HTTP driver: HTTP-FLV watchers (`GET /<app>/<key>.flv`, see [`flv`]), `/healthz`,
//! `/readyz` and `/metrics`. Request parsing is sans-IO in `proto::http`; this module owns the
//! socket, routing and the answers.
//!
//! Connection lifecycle: every request head must arrive within `http.request_timeout_ms` of the
//! connection opening or of the previous response (the connection guard's handshake deadline,
//! so a slowloris client is cut by the sweeper, never by racing a read against a timer) and fit
//! `http.max_request_head`. `/healthz`, `/readyz` and `/metrics` answer with a Content-Length
//! and keep the connection open when the client allows it (health checkers reuse connections).
//! An FLV response streams until either side closes. An error answers with its status (400,
//! 404, 405, 431, 505, ...) and closes: the sending side first, then whatever the client still
//! sends is read and discarded briefly, so the client reads the answer instead of a reset.
//!
//! Decisions, documented here because clients observe them:
//! - **Endpoints**: `/healthz` is 200 `ok` while the process serves; `/readyz` is 200 once every
//!   worker is up and 503 from the first SIGINT/SIGTERM on (see `server.shutdown_drain_ms`);
//!   `/metrics` is Prometheus text ([`crate::metrics`]). `GET` and `HEAD` everywhere; `OPTIONS`
//!   answers any path with 204 and the CORS preflight fields; other methods get 405.
//! - **CORS**: every response carries `Access-Control-Allow-Origin: <http.cors_allow_origin>`
//!   (`*` by default: browser players on any origin may read streams, none with credentials).
//! - **Logs** never show a request path or query: both can hold a stream key or a password. A
//!   watch logs its stream name with the key redacted.

pub mod flv;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::Core;
use super::accept::Accepted;
pub use super::conn::Conn;
use super::runtime;
use crate::metrics::Protocol;
use crate::proto::http::{
    FlvTarget, HeadDecoder, HttpError, Limits, Method, RequestHead, ResponseHead, Status, flv_path,
};

/// Methods the server answers, for `Allow` and preflights.
const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";
/// How long a closing connection keeps reading (and discarding) what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// Ends the connection after a response: FIN after what was written, then read and discard
/// what the client still sends (briefly, boundedly), so it reads our answer rather than a reset
/// caused by unread bytes.
async fn linger_close(conn: &mut Conn) {
    let stream = conn.guard.stream().clone();
    stream.close_write().await;
    conn.guard
        .set_handshake_deadline(Some(Instant::now() + LINGER));
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        conn.input.clear();
        match conn.read_more().await {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
    runtime::shutdown(&stream);
}

/// What to do after a response.
enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    Close,
    /// Stream FLV: the response head is sent first by the watcher.
    Watch(flv::Admitted),
}

/// Serves one accepted HTTP connection to its end.
pub async fn serve(core: Rc<Core>, accepted: Accepted) {
    let cfg = &core.config.http;
    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let mut decoder = HeadDecoder::new(Limits {
        max_head_len: cfg.max_request_head as usize,
        ..Limits::default()
    });
    let mut conn = Conn::new(core.clone(), accepted);
    let peer = conn.peer;
    let mut served = 0u64;
    loop {
        let head = match decoder.decode(&mut conn.input) {
            Ok(Some(head)) => head,
            Ok(None) => {
                let read = conn.read_more().await;
                if matches!(read, Ok(n) if n > 0) {
                    continue;
                }
                let buffered = conn.input.len();
                match (conn.guard.cut(), buffered) {
                    // A kept-alive connection nobody reused (health checkers): not news.
                    (Some(_), 0) if served > 0 => {
                        debug!(%peer, served, "idle HTTP connection closed")
                    }
                    (Some(cut), _) => {
                        info!(%peer, reason = %cut, buffered, "HTTP connection closed before its request arrived")
                    }
                    (None, 0) => debug!(%peer, served, "HTTP connection closed by the client"),
                    (None, _) => debug!(%peer, buffered, "HTTP client left mid-request"),
                }
                runtime::shutdown(conn.guard.stream());
                return;
            }
            Err(e) => {
                let blame = e.blame();
                core.count_protocol_error(Protocol::Http, blame);
                info!(%peer, status = e.status().code(), error = %e, blame = blame.label(), "HTTP request refused");
                let _ = conn.write(error_response(&core, &e)).await;
                linger_close(&mut conn).await;
                return;
            }
        };
        served += 1;
        let next = respond(&conn, &head).await;
        match next {
            Next::KeepAlive => {
                conn.guard
                    .set_handshake_deadline(Some(Instant::now() + timeout));
            }
            Next::Close => {
                linger_close(&mut conn).await;
                return;
            }
            Next::Watch(admitted) => {
                flv::run(conn, admitted).await;
                return;
            }
        }
    }
}

/// Answers one request (everything but the FLV body) and says what comes next.
async fn respond(conn: &Conn, head: &RequestHead) -> Next {
    let core = &conn.core;
    // The answer to a HEAD of a stream says what a GET gets: a body delimited by the close.
    let mut keep_alive = head.keep_alive;
    let (response, body) = match (head.method, head.path.as_str()) {
        (Method::Options, _) => (preflight(core), Bytes::new()),
        (_, "/healthz") => text(core, Status::Ok, "ok\n"),
        (_, "/readyz") if core.node.is_ready() => text(core, Status::Ok, "ready\n"),
        (_, "/readyz") => text(core, Status::ServiceUnavailable, "not ready\n"),
        (_, path) if path.starts_with("/api/") && !api_authorized(core, head) => {
            info!(peer = %conn.peer, "HTTP 401: API request without the right bearer token");
            let (head, body) = text(core, Status::Unauthorized, "unauthorized\n");
            (head.field("WWW-Authenticate", "Bearer"), body)
        }
        (_, "/api/pushes") => {
            let body = core.node.pushes.board.to_json();
            let head = with_cors(core, ResponseHead::new(Status::Ok))
                .field("Content-Type", "application/json")
                .field("Cache-Control", "no-store")
                .content_length(body.len());
            (head, Bytes::from(body))
        }
        (_, "/metrics") => {
            let mut body = core
                .node
                .metrics
                .render(core.node.gauges(core.hub.registry()));
            core.node.pushes.board.render_metrics(&mut body);
            let head = with_cors(core, ResponseHead::new(Status::Ok))
                .field("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                .field("Cache-Control", "no-store")
                .content_length(body.len());
            (head, Bytes::from(body))
        }
        (_, path) => match flv_path(path).as_ref().map(FlvTarget::path) {
            Some(target) => match flv::admit(conn, target, head.query.as_deref()) {
                Ok(admitted) if head.method == Method::Get => return Next::Watch(admitted),
                Ok(admitted) => {
                    keep_alive = false;
                    (admitted.response_head(), Bytes::new())
                }
                Err((status, reason)) => {
                    info!(peer = %conn.peer, stream = %flv::shown_name(&conn.core.config, target), status = status.code(), reason, "HTTP-FLV watch refused");
                    text(core, status, &format!("{reason}\n"))
                }
            },
            None => {
                debug!(peer = %conn.peer, "HTTP 404: no such endpoint");
                text(core, Status::NotFound, "not found\n")
            }
        },
    };
    let response = if keep_alive {
        response
    } else {
        response.field("Connection", "close")
    };
    let mut parts = vec![response.encode()];
    if head.method != Method::Head && !body.is_empty() {
        parts.push(body);
    }
    if conn.write(parts).await.is_err() || !keep_alive {
        return Next::Close;
    }
    debug!(peer = %conn.peer, status = response.status().code(), "HTTP response");
    Next::KeepAlive
}

/// True when `/api/*` is open (`http.api_token` empty) or the request carries the token,
/// compared in constant time.
fn api_authorized(core: &Core, head: &RequestHead) -> bool {
    let token = &core.config.http.api_token;
    if token.is_empty() {
        return true;
    }
    head.bearer
        .as_deref()
        .is_some_and(|sent| token.matches(sent.as_bytes()))
}

/// Adds `Access-Control-Allow-Origin` when CORS is on.
fn with_cors(core: &Core, head: ResponseHead) -> ResponseHead {
    let origin = &core.config.http.cors_allow_origin;
    if origin.is_empty() {
        head
    } else {
        head.field("Access-Control-Allow-Origin", origin)
    }
}

/// A short `text/plain` answer.
fn text(core: &Core, status: Status, body: &str) -> (ResponseHead, Bytes) {
    let head = with_cors(core, ResponseHead::new(status))
        .field("Content-Type", "text/plain; charset=utf-8")
        .field("Cache-Control", "no-store")
        .content_length(body.len());
    (head, Bytes::copy_from_slice(body.as_bytes()))
}

/// 204 for `OPTIONS`: what a browser's CORS preflight asks before a cross-origin request.
fn preflight(core: &Core) -> ResponseHead {
    let head = ResponseHead::new(Status::NoContent).field("Allow", ALLOWED_METHODS);
    if core.config.http.cors_allow_origin.is_empty() {
        return head;
    }
    with_cors(core, head)
        .field("Access-Control-Allow-Methods", ALLOWED_METHODS)
        .field("Access-Control-Allow-Headers", "*")
        .field("Access-Control-Max-Age", "86400")
}

/// The answer to a request that could not be parsed or is not served.
fn error_response(core: &Core, error: &HttpError) -> Vec<Bytes> {
    let (head, body) = text(core, error.status(), &format!("{error}\n"));
    let head = match error {
        HttpError::MethodNotAllowed { .. } => head.field("Allow", ALLOWED_METHODS),
        _ => head,
    };
    vec![head.field("Connection", "close").encode(), body]
}
