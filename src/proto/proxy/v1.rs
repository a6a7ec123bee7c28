//! The v1 header: one US-ASCII line (spec §2.1),
//! `PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\r\n` or `PROXY UNKNOWN[ anything]\r\n`.
//!
//! Strict, as the spec asks ("any sequence which does not exactly match the protocol must be
//! discarded"): single spaces, no leading zeros in IPv4 numbers or ports, IPv6 written as hex
//! groups only (no dotted tail), both addresses of the announced family, CRLF within 107 bytes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Header, Parse, Proxied, ProxyError, V1_MAX_LEN, V1_PREFIX, Version};

/// Parses a v1 line; `input` starts with `PROXY `.
pub(super) fn parse(input: &[u8]) -> Result<Parse, ProxyError> {
    let window = &input[..input.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if input.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong { max: V1_MAX_LEN })
        } else {
            Ok(Parse::NeedMore)
        };
    };
    // The first CR or LF must be the CR of CRLF, and the LF must fit the 107 bytes too.
    if window[end] == b'\n' {
        return Err(ProxyError::V1BadLineEnd);
    }
    if end + 2 > V1_MAX_LEN {
        return Err(ProxyError::V1TooLong { max: V1_MAX_LEN });
    }
    match input.get(end + 1) {
        None => return Ok(Parse::NeedMore),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1BadLineEnd),
    }
    let line = &input[V1_PREFIX.len()..end];
    let proxied = parse_line(line)?;
    Ok(Parse::Complete(Header {
        version: Version::V1,
        proxied,
        len: end + 2,
    }))
}

fn malformed(reason: &'static str) -> ProxyError {
    ProxyError::V1Malformed { reason }
}

/// The line after `PROXY `, without its CRLF.
fn parse_line(line: &[u8]) -> Result<Option<Proxied>, ProxyError> {
    // UNKNOWN: the sender may omit the rest, and the receiver ignores whatever it sent.
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        return Ok(None);
    }
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.is_ascii())
        .ok_or_else(|| malformed("not US-ASCII"))?;
    let mut fields = line.split(' ');
    let (
        Some(protocol),
        Some(source),
        Some(destination),
        Some(source_port),
        Some(destination_port),
        None,
    ) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    )
    else {
        return Err(malformed(
            "expected TCP4|TCP6 SRC DST SRCPORT DSTPORT separated by single spaces",
        ));
    };
    let (source, destination) = match protocol {
        "TCP4" => (ipv4(source)?, ipv4(destination)?),
        "TCP6" => (ipv6(source)?, ipv6(destination)?),
        _ => return Err(malformed("the protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Some(Proxied {
        source: SocketAddr::new(source, port(source_port)?),
        destination: SocketAddr::new(destination, port(destination_port)?),
    }))
}

/// Four decimal numbers 0..=255 without leading zeros (the std parser refuses them too).
fn ipv4(text: &str) -> Result<IpAddr, ProxyError> {
    text.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| malformed("bad IPv4 address for TCP4"))
}

/// Hex groups with at most one `::`; the dotted IPv4 tail std would accept is not in the spec.
fn ipv6(text: &str) -> Result<IpAddr, ProxyError> {
    if text.contains('.') {
        return Err(malformed("bad IPv6 address for TCP6"));
    }
    text.parse::<Ipv6Addr>()
        .map(IpAddr::V6)
        .map_err(|_| malformed("bad IPv6 address for TCP6"))
}

/// A decimal port 0..=65535 without leading zeros or a sign.
fn port(text: &str) -> Result<u16, ProxyError> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !digits_only || leading_zero {
        return Err(malformed("bad port"));
    }
    text.parse().map_err(|_| malformed("bad port"))
}
