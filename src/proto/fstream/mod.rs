//! fstream: a length-prefixed TCP handshake, then raw bytes in one direction.
//!
//! The wire form, as settled for ringcast (reference: `shared/reference/fstream-readme.md`):
//!
//! ```text
//! u32 big-endian LEN | 0x00 | LEN bytes of UTF-8 "action,key=value,key=value,..."
//! ```
//!
//! LEN counts only the UTF-8 string, not the NUL that follows it. The server sends nothing back:
//! it accepts by streaming (watch) or by reading (broadcast), and refuses by closing. Default port
//! [`DEFAULT_PORT`].
//!
//! - [`handshake`]: [`HandshakeDecoder`] (server side), [`encode_request`] (client side).
//! - [`request`]: the parsed [`Request`], its validation rules (including ringcast's `stream=`
//!   extension) and the password type [`Secret`].
//! - [`users`]: the `users/<name>.ini` password file parser.
//!
//! Sans-IO: no sockets, files or clock. The server reads the users file and hands the text in.

pub mod handshake;
pub mod request;
pub mod users;

pub use handshake::{HandshakeDecoder, HandshakeError, encode_request};
pub use request::{Action, Request, Secret, Target, parse_payload};
pub use users::{UserFileError, parse_user_ini};

/// The reference server's TCP port.
pub const DEFAULT_PORT: u16 = 61920;
/// The channel used when a request names none.
pub const DEFAULT_CHANNEL: &str = "default";
