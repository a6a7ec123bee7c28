//! HTTP/1.x for the HTTP listener (HTTP-FLV, `/healthz`, `/readyz`, `/metrics`), sans-IO: request
//! heads in, response heads out. No sockets, no runtime, no clock.
//!
//! - [`request`]: [`HeadDecoder`] turns the bytes of a connection into [`RequestHead`]s under
//!   strict [`Limits`] (head size, header count), with every rejection an [`HttpError`] that
//!   names the status to answer with. Token and line syntax is `httparse`'s; what the server
//!   relies on (method, target, `Host`, `Connection`, body framing) is checked here.
//! - [`target`]: the request target: percent-decoding, the query string, and the
//!   `/<app>/<key>.flv` stream path.
//! - [`response`]: [`Status`] and [`ResponseHead`], the bytes of a response head.
//!
//! Spec: RFC 9112 (HTTP/1.1 message syntax), RFC 9110 (semantics); `// RFC 9112 §x` next to
//! the rules that come from it.

pub mod request;
pub mod response;
pub mod target;

pub use request::{HeadDecoder, HttpError, Limits, Method, RequestHead};
pub use response::{ResponseHead, Status};
pub use target::{FlvPath, FlvTarget, flv_path, query_param};
