//! The v2 header (spec §2.2): the 12-byte signature, version and command, address family and
//! transport, a 16-bit big-endian length, then that many bytes of addresses and TLVs.
//!
//! Each fixed byte is checked as soon as it arrives, and the length against [`V2_MAX_LEN`]
//! before the rest is waited for. Addresses are read for TCP over IPv4 and IPv6 only; the other
//! valid families fall back to "no address", which the spec allows. TLVs are skipped unread.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Header, Parse, Proxied, ProxyError, V2_MAX_LEN, Version};

/// Signature, version/command, family/transport, length.
const FIXED_LEN: usize = 16;
/// Byte 13 (after the signature): version in the high nibble, command in the low one.
const VERSION_COMMAND: usize = 12;
/// Byte 14: address family in the high nibble, transport protocol in the low one.
const FAMILY_TRANSPORT: usize = 13;

const COMMAND_LOCAL: u8 = 0x0;
const COMMAND_PROXY: u8 = 0x1;
/// AF_UNSPEC, AF_INET, AF_INET6 and AF_UNIX are 0..=3.
const MAX_FAMILY: u8 = 0x3;
/// UNSPEC, STREAM and DGRAM are 0..=2.
const MAX_TRANSPORT: u8 = 0x2;
/// TCP over IPv4: two 4-byte addresses, two ports.
const TCP4: u8 = 0x11;
const TCP4_LEN: usize = 2 * 4 + 2 * 2;
/// TCP over IPv6: two 16-byte addresses, two ports.
const TCP6: u8 = 0x21;
const TCP6_LEN: usize = 2 * 16 + 2 * 2;

/// Parses a v2 header; `input` agrees with the signature on the bytes it has.
pub(super) fn parse(input: &[u8]) -> Result<Parse, ProxyError> {
    let command = match input.get(VERSION_COMMAND) {
        Some(&byte) => {
            let (version, command) = (byte >> 4, byte & 0x0f);
            if version != 2 {
                return Err(ProxyError::V2Version { version });
            }
            if command != COMMAND_LOCAL && command != COMMAND_PROXY {
                return Err(ProxyError::V2Command { command });
            }
            command
        }
        None => return Ok(Parse::NeedMore),
    };
    let family = match input.get(FAMILY_TRANSPORT) {
        Some(&byte) if byte >> 4 <= MAX_FAMILY && byte & 0x0f <= MAX_TRANSPORT => byte,
        Some(&byte) => return Err(ProxyError::V2Family { byte }),
        None => return Ok(Parse::NeedMore),
    };
    let Some(&[hi, lo]) = input.get(FAMILY_TRANSPORT + 1..FIXED_LEN) else {
        return Ok(Parse::NeedMore);
    };
    let len = FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong {
            len,
            max: V2_MAX_LEN,
        });
    }
    let Some(block) = input.get(FIXED_LEN..len) else {
        return Ok(Parse::NeedMore);
    };
    // LOCAL: the family is ignored and the real endpoints stand, whatever the block holds.
    let proxied = match (command, family) {
        (COMMAND_PROXY, TCP4) => Some(tcp4(block)?),
        (COMMAND_PROXY, TCP6) => Some(tcp6(block)?),
        _ => None,
    };
    Ok(Parse::Complete(Header {
        version: Version::V2,
        proxied,
        len,
    }))
}

fn too_short(family: &'static str, block: &[u8], need: usize) -> ProxyError {
    ProxyError::V2AddressTooShort {
        family,
        len: block.len(),
        need,
    }
}

/// Source address, destination address, source port, destination port, in network order.
fn tcp4(block: &[u8]) -> Result<Proxied, ProxyError> {
    if block.len() < TCP4_LEN {
        return Err(too_short("TCP over IPv4", block, TCP4_LEN));
    }
    let address = |at: usize| {
        let mut octets = [0u8; 4];
        octets.copy_from_slice(&block[at..at + 4]);
        Ipv4Addr::from(octets)
    };
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    Ok(Proxied {
        source: SocketAddr::new(address(0).into(), port(8)),
        destination: SocketAddr::new(address(4).into(), port(10)),
    })
}

fn tcp6(block: &[u8]) -> Result<Proxied, ProxyError> {
    if block.len() < TCP6_LEN {
        return Err(too_short("TCP over IPv6", block, TCP6_LEN));
    }
    let address = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&block[at..at + 16]);
        Ipv6Addr::from(octets)
    };
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    Ok(Proxied {
        source: SocketAddr::new(address(0).into(), port(32)),
        destination: SocketAddr::new(address(16).into(), port(34)),
    })
}
