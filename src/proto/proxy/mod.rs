//! PROXY protocol headers, v1 (text) and v2 (binary), as haproxy's `proxy-protocol.txt` defines
//! them: the few bytes a load balancer writes at the start of each connection it relays, telling
//! the server who the client is. Sans-IO: [`parse`] reads the front of a connection's input and
//! never consumes, allocates (except for an error's sample) or blocks.
//!
//! The receiver must not guess whether a header is present (spec §2): a listener either requires
//! one on every connection or never looks for one, and a connection without one is dropped.
//! Input that can no longer become a header is refused at its first wrong byte, so a client that
//! went around the balancer is refused at once instead of at the handshake deadline.
//!
//! What a header yields: the proxied connection's source and destination for TCP over IPv4 or
//! IPv6; nothing for v2 LOCAL (the balancer's own connection, e.g. a health check), v1 UNKNOWN,
//! and the v2 families the spec lets a receiver fall back on (UNSPEC, UNIX, UDP): then the
//! socket's peer stands. v2 TLVs are skipped unread (the header's length covers them).

mod v1;
mod v2;

#[cfg(test)]
mod tests;

use core::net::SocketAddr;

/// The longest v1 line, CRLF included (spec §2.1: `PROXY UNKNOWN` with two full IPv6
/// addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// The 12 bytes every v2 header starts with (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v2 header accepted, its 16 fixed bytes included. The spec allows 16 + 65535;
/// real balancers send 16 + 12 or 16 + 36 plus a few small TLVs, and the spec expects the
/// whole header to fit one segment, so anything longer is refused before it is waited for.
pub const V2_MAX_LEN: usize = 2048;

/// The v1 line starts with these 6 bytes.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Bytes of refused input quoted in [`ProxyError::NotProxy`].
const SAMPLE_LEN: usize = 16;

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The endpoints of the connection the balancer relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to (the balancer's front end).
    pub destination: SocketAddr,
}

/// A complete, valid header at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    /// The relayed connection, or `None` when the header carries no usable address (v2
    /// LOCAL, v1 UNKNOWN, v2 UNSPEC/UNIX/UDP): keep the socket's peer.
    pub proxied: Option<Proxied>,
    /// How many bytes the header took; the protocol's bytes start after them.
    pub len: usize,
}

impl Header {
    /// The client's address, if the header gives one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.proxied.map(|p| p.source)
    }
}

/// What [`parse`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Everything so far can still become a header: read more and parse again from the start.
    NeedMore,
    Complete(Header),
}

/// Why the input is not a valid header. Every variant is the sender's fault (a client that
/// bypassed the balancer, or a balancer not configured to send the header); none is retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Neither `PROXY ` nor the v2 signature: `sample` is the first bytes received.
    #[error(
        "no PROXY protocol header: the connection starts with \"{}\"",
        .sample.escape_ascii()
    )]
    NotProxy { sample: Vec<u8> },
    #[error("PROXY v1 line has no CRLF within {max} bytes")]
    V1TooLong { max: usize },
    #[error("PROXY v1 line ends in a lone CR or LF, not CRLF")]
    V1BadLineEnd,
    #[error("PROXY v1 line is malformed: {reason}")]
    V1Malformed { reason: &'static str },
    #[error("PROXY v2 header has version {version}; only 2 exists")]
    V2Version { version: u8 },
    #[error("PROXY v2 command {command:#x} is unassigned (0 is LOCAL, 1 is PROXY)")]
    V2Command { command: u8 },
    #[error("PROXY v2 address family and transport byte {byte:#04x} is unassigned")]
    V2Family { byte: u8 },
    #[error("PROXY v2 header of {len} bytes exceeds the limit of {max}")]
    V2TooLong { len: usize, max: usize },
    #[error("PROXY v2 {family} address block needs {need} bytes, the header gives {len}")]
    V2AddressTooShort {
        family: &'static str,
        len: usize,
        need: usize,
    },
}

/// Parses the header at the front of `input`: `NeedMore` while it is incomplete, the header
/// once complete (its [`Header::len`] bytes are the header, what follows is the protocol's), an
/// error as soon as the input cannot be a header.
pub fn parse(input: &[u8]) -> Result<Parse, ProxyError> {
    if input.is_empty() {
        return Ok(Parse::NeedMore);
    }
    if is_prefix_compatible(input, V1_PREFIX) {
        return if input.len() < V1_PREFIX.len() {
            Ok(Parse::NeedMore)
        } else {
            v1::parse(input)
        };
    }
    if is_prefix_compatible(input, &V2_SIGNATURE) {
        return v2::parse(input);
    }
    Err(ProxyError::NotProxy {
        sample: input[..input.len().min(SAMPLE_LEN)].to_vec(),
    })
}

/// Whether `input` and `prefix` agree on the bytes both have.
fn is_prefix_compatible(input: &[u8], prefix: &[u8]) -> bool {
    let n = input.len().min(prefix.len());
    input[..n] == prefix[..n]
}

/// libFuzzer harness (`fuzz/fuzz_targets/proxy_header.rs`), also run by the proptests: parses
/// `data` whole and every prefix of it, and checks that a prefix never completes to anything but
/// what the whole input completes to, and that an error on a prefix stays that kind of error.
#[cfg(any(test, fuzzing))]
#[allow(clippy::panic)]
pub fn fuzz_parse(data: &[u8]) {
    let whole = parse(data);
    if let Ok(Parse::Complete(header)) = &whole {
        assert!(header.len <= data.len());
    }
    for end in 0..data.len() {
        match parse(&data[..end]) {
            Ok(Parse::NeedMore) => {}
            Ok(Parse::Complete(header)) => assert_eq!(whole, Ok(Parse::Complete(header))),
            Err(e) => match &whole {
                Err(w) => assert_eq!(core::mem::discriminant(w), core::mem::discriminant(&e)),
                Ok(_) => panic!("prefix {end} failed with {e} but the whole input parsed"),
            },
        }
    }
}
