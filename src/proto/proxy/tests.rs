#![allow(clippy::unwrap_used, clippy::expect_used)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;

// ---- a tiny encoder, written from the spec, for the round trips -------------------------

/// An IPv6 address as v1 wants it: hex groups, never the dotted tail `Display` uses for
/// IPv4-mapped addresses.
fn v1_ipv6(ip: Ipv6Addr) -> String {
    let shown = ip.to_string();
    if !shown.contains('.') {
        return shown;
    }
    let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:x}")).collect();
    groups.join(":")
}

/// `PROXY TCP4|TCP6 ...\r\n`, or `PROXY UNKNOWN\r\n` for `None`.
fn encode_v1(proxied: Option<Proxied>) -> Vec<u8> {
    let Some(p) = proxied else {
        return b"PROXY UNKNOWN\r\n".to_vec();
    };
    let (protocol, source, destination) = match (p.source.ip(), p.destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ("TCP4", s.to_string(), d.to_string()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ("TCP6", v1_ipv6(s), v1_ipv6(d)),
        _ => panic!("v1 cannot mix families"),
    };
    format!(
        "PROXY {protocol} {source} {destination} {} {}\r\n",
        p.source.port(),
        p.destination.port()
    )
    .into_bytes()
}

/// A v2 header: PROXY with the addresses of `proxied`, or LOCAL/UNSPEC for `None`; `tlvs`
/// appended as type, 16-bit length, value.
fn encode_v2(proxied: Option<Proxied>, tlvs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut block = Vec::new();
    let (command, family) = match proxied {
        None => (0x20, 0x00),
        Some(p) => {
            let family = match (p.source.ip(), p.destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    block.extend_from_slice(&s.octets());
                    block.extend_from_slice(&d.octets());
                    0x11
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    block.extend_from_slice(&s.octets());
                    block.extend_from_slice(&d.octets());
                    0x21
                }
                _ => panic!("v2 cannot mix families"),
            };
            block.extend_from_slice(&p.source.port().to_be_bytes());
            block.extend_from_slice(&p.destination.port().to_be_bytes());
            (0x21, family)
        }
    };
    for (kind, value) in tlvs {
        block.push(*kind);
        block.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        block.extend_from_slice(value);
    }
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[command, family]);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&block);
    out
}

fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(ip).into(), port)
}

fn v6(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<Ipv6Addr>().unwrap().into(), port)
}

fn complete(input: &[u8]) -> Header {
    match parse(input) {
        Ok(Parse::Complete(header)) => header,
        other => panic!(
            "{:?}: expected a header, got {other:?}",
            input.escape_ascii()
        ),
    }
}

fn refused(input: &[u8]) -> ProxyError {
    match parse(input) {
        Err(e) => e,
        other => panic!(
            "{:?}: expected an error, got {other:?}",
            input.escape_ascii()
        ),
    }
}

/// Asserts every strict prefix of `header` asks for more bytes.
fn assert_prefixes_need_more(header: &[u8]) {
    for end in 0..header.len() {
        assert_eq!(
            parse(&header[..end]),
            Ok(Parse::NeedMore),
            "prefix of {end} bytes of {:?}",
            header.escape_ascii()
        );
    }
}

// ---- v1 --------------------------------------------------------------------------------

#[test]
fn v1_spec_example_gives_the_client_and_leaves_the_request() {
    let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    let header = complete(input);
    assert_eq!(header.version, Version::V1);
    assert_eq!(
        header.proxied,
        Some(Proxied {
            source: v4([192, 168, 0, 1], 56324),
            destination: v4([192, 168, 0, 11], 443),
        })
    );
    assert_eq!(&input[header.len..], b"GET / HTTP/1.1\r\n");
    assert_prefixes_need_more(&input[..header.len]);
}

#[test]
fn v1_tcp6_at_full_length_is_accepted() {
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
    assert_eq!(line.len(), 104, "the spec's longest TCP6 line");
    let header = complete(line.as_bytes());
    assert_eq!(header.len, 104);
    assert_eq!(header.source(), Some(v6(full, 65535)));
    let short = complete(b"PROXY TCP6 2001:db8::7 ::1 4000 1935\r\n");
    assert_eq!(short.source(), Some(v6("2001:db8::7", 4000)));
}

#[test]
fn v1_unknown_keeps_the_socket_peer_and_ignores_the_rest_of_its_line() {
    let short = complete(b"PROXY UNKNOWN\r\n\x03");
    assert_eq!((short.proxied, short.len), (None, 15));
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let worst = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
    assert_eq!(worst.len(), V1_MAX_LEN, "the spec's worst case");
    assert_eq!(complete(worst.as_bytes()).len, V1_MAX_LEN);
    assert_eq!(
        complete(b"PROXY UNKNOWN \xff\x00 anything\r\n").proxied,
        None
    );
    // One byte more and the CRLF no longer fits.
    let over = format!("PROXY UNKNOWN {full} {full} 65535 655350\r\n");
    assert_eq!(
        refused(over.as_bytes()),
        ProxyError::V1TooLong { max: V1_MAX_LEN }
    );
}

#[test]
fn v1_line_without_crlf_in_107_bytes_is_refused_and_shorter_waits() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN - 1, b'a');
    assert_eq!(parse(&line), Ok(Parse::NeedMore));
    line.push(b'a');
    assert_eq!(refused(&line), ProxyError::V1TooLong { max: V1_MAX_LEN });
    // A CR as the 107th byte leaves no room for its LF.
    line[V1_MAX_LEN - 1] = b'\r';
    assert_eq!(refused(&line), ProxyError::V1TooLong { max: V1_MAX_LEN });
}

#[test]
fn v1_lone_cr_or_lf_is_refused() {
    for input in [
        &b"PROXY UNKNOWN\n"[..],
        b"PROXY UNKNOWN\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r",
        b"PROXY \n",
    ] {
        assert_eq!(refused(input), ProxyError::V1BadLineEnd, "{input:?}");
    }
    assert_eq!(parse(b"PROXY UNKNOWN\r"), Ok(Parse::NeedMore));
}

#[test]
fn v1_anything_but_the_exact_grammar_is_refused() {
    let cases = [
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2",
        "PROXY TCP4 1.2.3.4 5.6.7.8 080 2",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +80 2",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 ",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2",
        "PROXY TCP4 ::1 ::2 1 2",
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2",
        "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2",
        "PROXY TCP6 ::1%eth0 ::1 1 2",
        "PROXY TCP6 1::2::3 ::1 1 2",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2",
        "PROXY UNKNOWNX",
        "PROXY ",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
    ];
    for line in cases {
        let input = format!("{line}\r\n");
        assert!(
            matches!(refused(input.as_bytes()), ProxyError::V1Malformed { .. }),
            "{line:?} was not refused as malformed"
        );
    }
    assert!(matches!(
        refused(b"PROXY TCP4 1.2.3.4 5.6.7.\xc3\xa9 1 2\r\n"),
        ProxyError::V1Malformed {
            reason: "not US-ASCII"
        }
    ));
}

// ---- v2 --------------------------------------------------------------------------------

/// Signature, version/command, family/transport, length, then `block`.
fn v2_raw(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[version_command, family]);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(block);
    out
}

#[test]
fn v2_tcp4_gives_the_client_and_leaves_the_protocol_bytes() {
    // 203.0.113.7:51000 -> 198.51.100.1:1935, as the spec lays the block out.
    let block = [203, 0, 113, 7, 198, 51, 100, 1, 0xc7, 0x38, 0x07, 0x8f];
    let mut input = v2_raw(0x21, 0x11, &block);
    let header_len = input.len();
    input.extend_from_slice(b"\x03rtmp");
    let header = complete(&input);
    assert_eq!(header.version, Version::V2);
    assert_eq!(header.len, 28);
    assert_eq!(
        header.proxied,
        Some(Proxied {
            source: v4([203, 0, 113, 7], 51000),
            destination: v4([198, 51, 100, 1], 1935),
        })
    );
    assert_eq!(&input[header.len..], b"\x03rtmp");
    assert_prefixes_need_more(&input[..header_len]);
}

#[test]
fn v2_tcp6_gives_the_client() {
    let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut block = source.octets().to_vec();
    block.extend_from_slice(&destination.octets());
    block.extend_from_slice(&[0x12, 0x34, 0x07, 0x8f]);
    let header = complete(&v2_raw(0x21, 0x21, &block));
    assert_eq!(header.len, 16 + 36);
    assert_eq!(header.source(), Some(v6("2001:db8::7", 0x1234)));
    assert_eq!(
        header.proxied.map(|p| p.destination),
        Some(v6("2001:db8::1", 1935))
    );
}

#[test]
fn v2_local_keeps_the_socket_peer_whatever_its_block_holds() {
    let health_check = complete(&v2_raw(0x20, 0x00, &[]));
    assert_eq!((health_check.proxied, health_check.len), (None, 16));
    // Receivers must skip the announced length even for LOCAL.
    let with_block = complete(&v2_raw(0x20, 0x11, &[1; 12]));
    assert_eq!((with_block.proxied, with_block.len), (None, 28));
}

#[test]
fn v2_families_without_a_tcp_address_fall_back_to_the_socket_peer() {
    for (family, block_len) in [(0x00, 0), (0x00, 7), (0x31, 216), (0x32, 216), (0x12, 12)] {
        let header = complete(&v2_raw(0x21, family, &vec![9; block_len]));
        assert_eq!(header.proxied, None, "family {family:#04x}");
        assert_eq!(header.len, 16 + block_len);
    }
}

#[test]
fn v2_tlvs_are_skipped() {
    let client = Proxied {
        source: v4([203, 0, 113, 7], 40000),
        destination: v4([127, 0, 0, 1], 1935),
    };
    let tlvs = [
        (0x04, vec![0; 5]),
        (0x05, b"unique-id".to_vec()),
        (0xea, vec![]),
    ];
    let mut input = encode_v2(Some(client), &tlvs);
    let header_len = input.len();
    input.extend_from_slice(b"after");
    let header = complete(&input);
    assert_eq!((header.proxied, header.len), (Some(client), header_len));
}

#[test]
fn v2_bad_fixed_bytes_are_refused_as_soon_as_they_arrive() {
    let version_1 = &v2_raw(0x11, 0x11, &[0; 12])[..13];
    assert_eq!(refused(version_1), ProxyError::V2Version { version: 1 });
    let command_2 = &v2_raw(0x22, 0x11, &[0; 12])[..13];
    assert_eq!(refused(command_2), ProxyError::V2Command { command: 2 });
    let family_4 = &v2_raw(0x21, 0x41, &[0; 12])[..14];
    assert_eq!(refused(family_4), ProxyError::V2Family { byte: 0x41 });
    let transport_3 = &v2_raw(0x21, 0x13, &[0; 12])[..14];
    assert_eq!(refused(transport_3), ProxyError::V2Family { byte: 0x13 });
}

#[test]
fn v2_length_over_the_limit_is_refused_before_its_bytes_are_awaited() {
    let mut fixed = V2_SIGNATURE.to_vec();
    fixed.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(
        refused(&fixed),
        ProxyError::V2TooLong {
            len: 16 + 0xffff,
            max: V2_MAX_LEN
        }
    );
    let at_limit = v2_raw(0x21, 0x00, &vec![0; V2_MAX_LEN - 16]);
    assert_eq!(complete(&at_limit).len, V2_MAX_LEN);
    let over = v2_raw(0x21, 0x00, &vec![0; V2_MAX_LEN - 15]);
    assert!(matches!(refused(&over), ProxyError::V2TooLong { .. }));
}

#[test]
fn v2_address_block_shorter_than_its_family_is_refused() {
    assert_eq!(
        refused(&v2_raw(0x21, 0x11, &[0; 8])),
        ProxyError::V2AddressTooShort {
            family: "TCP over IPv4",
            len: 8,
            need: 12
        }
    );
    assert!(matches!(
        refused(&v2_raw(0x21, 0x21, &[0; 12])),
        ProxyError::V2AddressTooShort { need: 36, .. }
    ));
}

// ---- neither ---------------------------------------------------------------------------

#[test]
fn input_that_cannot_become_a_header_is_refused_at_its_first_wrong_byte() {
    let rtmp_c0 = refused(b"\x03\x00\x00\x00\x00");
    assert_eq!(
        rtmp_c0,
        ProxyError::NotProxy {
            sample: vec![3, 0, 0, 0, 0]
        }
    );
    assert_eq!(
        rtmp_c0.to_string(),
        r#"no PROXY protocol header: the connection starts with "\x03\x00\x00\x00\x00""#
    );
    for input in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PROXZ",
        b"PROXYTCP4",
        b"\r\n\r\n\0\r\nQUIX",
        b"\r\n\r\n\r\n",
    ] {
        assert!(
            matches!(refused(input), ProxyError::NotProxy { .. }),
            "{input:?}"
        );
    }
    let long = refused(&[b'x'; 200]);
    assert_eq!(
        long,
        ProxyError::NotProxy {
            sample: vec![b'x'; SAMPLE_LEN]
        }
    );
    for waiting in [
        &b""[..],
        b"P",
        b"PROXY",
        b"\r\n\r\n\0",
        b"\r\n\r\n\0\r\nQUIT\n",
    ] {
        assert_eq!(parse(waiting), Ok(Parse::NeedMore), "{waiting:?}");
    }
}

// ---- properties ------------------------------------------------------------------------

fn arb_proxied() -> impl Strategy<Value = Proxied> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| Proxied {
                source: v4(s, sp),
                destination: v4(d, dp),
            }),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| Proxied {
                source: SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                destination: SocketAddr::new(Ipv6Addr::from(d).into(), dp),
            }),
    ]
}

fn arb_tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec(
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)),
        0..6,
    )
}

proptest! {
    #[test]
    fn v1_encode_then_parse_round_trips(
        proxied in proptest::option::of(arb_proxied()),
        trailing in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let encoded = encode_v1(proxied);
        let mut input = encoded.clone();
        input.extend_from_slice(&trailing);
        let header = complete(&input);
        prop_assert_eq!(header, Header { version: Version::V1, proxied, len: encoded.len() });
        assert_prefixes_need_more(&encoded);
    }

    #[test]
    fn v2_encode_then_parse_round_trips(
        proxied in proptest::option::of(arb_proxied()),
        tlvs in arb_tlvs(),
        trailing in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let encoded = encode_v2(proxied, &tlvs);
        let mut input = encoded.clone();
        input.extend_from_slice(&trailing);
        let header = complete(&input);
        prop_assert_eq!(header, Header { version: Version::V2, proxied, len: encoded.len() });
        assert_prefixes_need_more(&encoded);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_prefixes_agree(
        start in prop_oneof![
            Just(Vec::new()),
            Just(b"PROXY ".to_vec()),
            Just(b"PROXY TCP4 ".to_vec()),
            Just(b"PROXY TCP6 ".to_vec()),
            Just(V2_SIGNATURE.to_vec()),
            Just([&V2_SIGNATURE[..], &[0x21, 0x11]].concat()),
        ],
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let input = [start, bytes].concat();
        fuzz_parse(&input);
    }

    #[test]
    fn arbitrary_printable_v1_lines_never_panic(line in "[ -~]{0,120}") {
        let input = format!("PROXY {line}\r\n");
        fuzz_parse(input.as_bytes());
    }
}
