//! Request heads: [`HeadDecoder`] reads one [`RequestHead`] at a time from the front of a
//! connection's input, under [`Limits`].
//!
//! The decoder is strict where the server depends on the answer and lenient nowhere else:
//! - the head (request line and header fields up to the empty line) must fit `max_head_len`
//!   and `max_headers`, else [`HttpError::HeadTooLarge`] / [`HttpError::TooManyHeaders`] (431);
//! - bytes that are not an HTTP/1.x request line fail as soon as they arrive (400), so a TLS
//!   hello or an RTMP handshake sent to the HTTP port is refused at once, not at the deadline;
//! - only `GET`, `HEAD` and `OPTIONS` are served; any other method is
//!   [`HttpError::MethodNotAllowed`] (405), once its head is complete;
//! - HTTP/1.1 requires exactly one `Host` (RFC 9112 §3.2), HTTP/1.0 at most one;
//! - a request that announces a body (`Content-Length` > 0, `Transfer-Encoding`) is answered
//!   and the connection closed, since the server never reads bodies (no request smuggling
//!   through a body it would misframe).
//!
//! A peer that sends its head one byte at a time costs one parse per line, not one per byte:
//! the decoder parses again only when a new line may have ended.

use bytes::{Buf, BytesMut};

use super::response::Status;
use super::target;

/// The most header fields any [`Limits`] may allow (the parser's array lives on the stack).
pub const MAX_HEADERS: usize = 128;

/// Bounds on one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in the request line plus header fields, including the final empty line.
    pub max_head_len: usize,
    /// Most header fields (capped at [`MAX_HEADERS`]).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_len: 8 * 1024,
            max_headers: 32,
        }
    }
}

/// The methods the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// A CORS preflight or `OPTIONS *`.
    Options,
}

/// One decoded request head.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The path as sent (percent-encoding kept, checked to decode), e.g. `/live/key.flv`;
    /// `*` for `OPTIONS *`.
    pub path: String,
    /// The query string after `?`, still percent-encoded (see [`super::query_param`]). It may
    /// carry a password: `Debug` does not show it.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub host: Option<String>,
    /// The connection may carry another request after this one's response (RFC 9112 §9.3):
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`, and
    /// never after a request that announced a body.
    pub keep_alive: bool,
    /// The request announced a body, which the server will not read.
    pub has_body: bool,
    /// The token of `Authorization: Bearer <token>`, if sent. A secret: `Debug` hides it.
    pub bearer: Option<String>,
}

impl std::fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.as_ref().map(|_| "****"))
            .field("minor_version", &self.minor_version)
            .field("host", &self.host)
            .field("keep_alive", &self.keep_alive)
            .field("has_body", &self.has_body)
            .field("bearer", &self.bearer.as_ref().map(|_| "****"))
            .finish()
    }
}

/// Why a request head was refused. Every variant is the peer's fault; [`HttpError::status`] is
/// the answer to send before closing. No variant carries a header value or a query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("request head larger than {max} bytes")]
    HeadTooLarge { max: usize },
    #[error("more than {max} header fields")]
    TooManyHeaders { max: usize },
    #[error("not an HTTP/1.x request: {reason}")]
    Malformed { reason: &'static str },
    #[error("HTTP version other than 1.0 and 1.1")]
    UnsupportedVersion,
    /// `method` is cut to 16 bytes.
    #[error("method {method:?} is not served (GET, HEAD, OPTIONS)")]
    MethodNotAllowed { method: String },
    #[error("bad request target: {reason}")]
    BadTarget { reason: &'static str },
    #[error("bad header: {reason}")]
    BadHeader { reason: &'static str },
}

impl HttpError {
    /// Who is at fault.
    pub fn blame(&self) -> crate::proto::Blame {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => {
                crate::proto::Blame::LimitExceeded
            }
            _ => crate::proto::Blame::PeerMisbehaved,
        }
    }

    /// The status to answer with.
    pub fn status(&self) -> Status {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => {
                Status::RequestHeaderFieldsTooLarge
            }
            HttpError::UnsupportedVersion => Status::HttpVersionNotSupported,
            HttpError::MethodNotAllowed { .. } => Status::MethodNotAllowed,
            HttpError::Malformed { .. }
            | HttpError::BadTarget { .. }
            | HttpError::BadHeader { .. } => Status::BadRequest,
        }
    }
}

/// Reads request heads from the front of a connection's input.
#[derive(Debug, Clone)]
pub struct HeadDecoder {
    limits: Limits,
    /// Bytes of the pending head already looked at by the last parse attempt.
    scanned: usize,
}

impl Default for HeadDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl HeadDecoder {
    pub fn new(limits: Limits) -> Self {
        HeadDecoder { limits, scanned: 0 }
    }

    /// Decodes one head from the front of `buf`, removing its bytes; what follows (a pipelined
    /// request) stays in `buf`. `Ok(None)` means "need more bytes". After an error the
    /// connection is over: answer with [`HttpError::status`] and close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestHead>, HttpError> {
        if buf.is_empty() {
            self.scanned = 0;
            return Ok(None);
        }
        let window = buf.len().min(self.limits.max_head_len);
        let first_attempt = self.scanned == 0;
        let new_line = buf
            .get(self.scanned.min(window)..window)
            .is_some_and(|fresh| fresh.contains(&b'\n'));
        let at_limit = buf.len() >= self.limits.max_head_len;
        self.scanned = window;
        // At the limit, one last parse says whether the head is bad or only too long.
        if (first_attempt || new_line || at_limit)
            && let Some((head, len)) = self.parse(buf.get(..window).unwrap_or_default())?
        {
            buf.advance(len);
            self.scanned = 0;
            return Ok(Some(head));
        }
        if at_limit {
            return Err(HttpError::HeadTooLarge {
                max: self.limits.max_head_len,
            });
        }
        Ok(None)
    }

    /// One parse attempt over `bytes`: the head and its length, or `None` if incomplete.
    fn parse(&self, bytes: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
        let max_headers = self.limits.max_headers.min(MAX_HEADERS);
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request =
            httparse::Request::new(storage.get_mut(..max_headers).unwrap_or_default());
        match request.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => Ok(Some((build(&request)?, len))),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                Err(HttpError::TooManyHeaders { max: max_headers })
            }
            Err(httparse::Error::Version) => Err(HttpError::UnsupportedVersion),
            Err(httparse::Error::Token) => Err(HttpError::Malformed {
                reason: "invalid request line",
            }),
            Err(httparse::Error::NewLine) => Err(HttpError::Malformed {
                reason: "invalid line ending",
            }),
            Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
                Err(HttpError::Malformed {
                    reason: "invalid header field",
                })
            }
            Err(httparse::Error::Status) => Err(HttpError::Malformed {
                reason: "invalid request line",
            }),
        }
    }
}

/// Checks a complete head and keeps what the server needs.
fn build(request: &httparse::Request<'_, '_>) -> Result<RequestHead, HttpError> {
    let method = match request.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => {
            return Err(HttpError::MethodNotAllowed {
                method: truncated(other, 16),
            });
        }
    };
    let minor_version = request.version.ok_or(HttpError::UnsupportedVersion)?;
    let (path, query) = target::parse_target(request.path.unwrap_or_default(), method)?;
    let mut host = None;
    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive = false;
    let mut content_length: Option<u64> = None;
    let mut chunked_or_other_coding = false;
    let mut bearer = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            let value = std::str::from_utf8(header.value).map_err(|_| HttpError::BadHeader {
                reason: "Host is not UTF-8",
            })?;
            host = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: an invalid or conflicting Content-Length is unrecoverable.
            let len = parse_content_length(header.value).ok_or(HttpError::BadHeader {
                reason: "invalid Content-Length",
            })?;
            if content_length.is_some_and(|seen| seen != len) {
                return Err(HttpError::BadHeader {
                    reason: "conflicting Content-Length fields",
                });
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked_or_other_coding = true;
        } else if name.eq_ignore_ascii_case("authorization") {
            // RFC 6750 §2.1: `Bearer` (any case), one or more spaces, the token.
            bearer = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim().to_owned());
        }
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without exactly one Host.
    if hosts > 1 || (minor_version == 1 && hosts == 0) {
        return Err(HttpError::BadHeader {
            reason: "an HTTP/1.1 request needs exactly one Host",
        });
    }
    let has_body = chunked_or_other_coding || content_length.is_some_and(|len| len > 0);
    let keep_alive = !has_body
        && !close
        && match minor_version {
            1 => true,
            _ => keep_alive,
        };
    Ok(RequestHead {
        method,
        path,
        query,
        minor_version,
        host,
        keep_alive,
        has_body,
        bearer,
    })
}

/// `1*DIGIT` (RFC 9110 §8.6), without overflow.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// At most `max` bytes of `s`, cut on a character boundary, for error messages.
fn truncated(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.get(..cut).unwrap_or_default().to_owned()
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

/// libFuzzer harness (`fuzz/fuzz_targets/http_request.rs`): decodes `data` whole and split at
/// the point its first byte names, and checks both agree.
#[cfg(fuzzing)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub fn fuzz_request(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head_len: 512,
        max_headers: 8,
    };
    let run = |parts: &[&[u8]]| {
        let mut decoder = HeadDecoder::new(limits);
        let mut buf = BytesMut::new();
        let mut heads = Vec::new();
        for part in parts {
            buf.extend_from_slice(part);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(head)) => heads.push(head),
                    Ok(None) => break,
                    Err(e) => return (heads, Some(e)),
                }
            }
        }
        (heads, None)
    };
    let whole = run(&[data]);
    let (a, b) = data.split_at(usize::from(split).min(data.len()));
    let split_result = run(&[a, b]);
    // The same heads either way. An error inside a line that has not ended yet is seen only
    // when the line ends (the decoder parses once per line), so a split run may still be
    // waiting where the whole run failed; but any error it reports is the whole run's.
    assert_eq!(whole.0, split_result.0, "split invariance of heads");
    if let Some(e) = &split_result.1 {
        assert_eq!(Some(e), whole.1.as_ref(), "split invariance of errors");
    }
}
