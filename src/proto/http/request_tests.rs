#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

const GET: &[u8] =
    b"GET /live/key.flv?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: t\r\n\r\n";

fn decode_all(bytes: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    HeadDecoder::default().decode(&mut BytesMut::from(bytes))
}

fn error_of(bytes: &[u8]) -> HttpError {
    decode_all(bytes).unwrap_err()
}

#[test]
fn a_get_decodes_with_path_query_host_and_keep_alive() {
    let mut buf = BytesMut::from(GET);
    buf.extend_from_slice(b"GET /healthz");
    let head = HeadDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!(head.method, Method::Get);
    assert_eq!(head.path, "/live/key.flv");
    assert_eq!(head.query.as_deref(), Some("x=1"));
    assert_eq!(head.host.as_deref(), Some("127.0.0.1:8080"));
    assert_eq!(head.minor_version, 1);
    assert!(head.keep_alive && !head.has_body);
    assert_eq!(
        &buf[..],
        b"GET /healthz",
        "a pipelined request stays in the buffer"
    );
}

#[test]
fn the_head_decodes_the_same_at_every_split_point() {
    let whole = decode_all(GET).unwrap().unwrap();
    for split in 0..GET.len() {
        let mut decoder = HeadDecoder::default();
        let mut buf = BytesMut::from(&GET[..split]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None, "split {split}");
        buf.extend_from_slice(&GET[split..]);
        assert_eq!(decoder.decode(&mut buf).unwrap().as_ref(), Some(&whole));
        assert!(buf.is_empty());
    }
}

#[test]
fn a_head_sent_one_byte_at_a_time_decodes() {
    let mut decoder = HeadDecoder::default();
    let mut buf = BytesMut::new();
    let mut got = None;
    for &b in GET {
        buf.extend_from_slice(&[b]);
        if let Some(head) = decoder.decode(&mut buf).unwrap() {
            got = Some(head);
        }
    }
    assert_eq!(got.unwrap().path, "/live/key.flv");
}

#[test]
fn connection_header_and_version_decide_keep_alive() {
    let keep = |req: &[u8]| decode_all(req).unwrap().unwrap().keep_alive;
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: a\r\nconnection: Upgrade, CLOSE\r\n\r\n"
    ));
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert!(keep(
        b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    ));
}

#[test]
fn a_request_with_a_body_is_not_kept_alive() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let head = decode_all(req).unwrap().unwrap();
        assert!(head.has_body && !head.keep_alive);
    }
}

#[test]
fn unserved_methods_are_405_once_the_head_is_complete() {
    let mut decoder = HeadDecoder::default();
    let mut buf = BytesMut::from(&b"POST /live/k.flv HTTP/1.1\r\nHost: a\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"Content-Length: 2\r\n\r\nhi");
    let e = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        HttpError::MethodNotAllowed {
            method: "POST".into()
        }
    );
    assert_eq!(e.status(), Status::MethodNotAllowed);
    let long = error_of(b"AVERYLONGMETHODNAMEINDEED / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        long,
        HttpError::MethodNotAllowed {
            method: "AVERYLONGMETHODN".into()
        }
    );
}

#[test]
fn non_http_bytes_are_400_without_waiting_for_more() {
    // An RTMP C0+C1, a TLS ClientHello, an fstream handshake: refused on their first bytes.
    for garbage in [
        &[0x03u8, 0, 0, 0, 0, 0, 0, 0, 0][..],
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
        &[0, 0, 0, 12, 0, b'w', b'a', b't'],
        b"GET /\x01 HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
    ] {
        let e = error_of(garbage);
        assert_eq!(e.status(), Status::BadRequest, "{garbage:?}: {e}");
    }
}

#[test]
fn other_versions_are_505() {
    for req in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(error_of(req), HttpError::UnsupportedVersion);
    }
    assert_eq!(
        HttpError::UnsupportedVersion.status(),
        Status::HttpVersionNotSupported
    );
}

#[test]
fn host_rules_follow_rfc_9112() {
    assert!(matches!(
        error_of(b"GET / HTTP/1.1\r\n\r\n"),
        HttpError::BadHeader { .. }
    ));
    assert!(matches!(
        error_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        HttpError::BadHeader { .. }
    ));
    assert_eq!(
        decode_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().host,
        None
    );
}

#[test]
fn bad_content_lengths_are_400() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    ] {
        assert_eq!(error_of(req).status(), Status::BadRequest);
    }
}

#[test]
fn an_oversize_head_is_431_even_while_incomplete() {
    let limits = Limits {
        max_head_len: 64,
        max_headers: 4,
    };
    let mut decoder = HeadDecoder::new(limits);
    let mut buf = BytesMut::from(&b"GET /"[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[b'a'; 100]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap_err(),
        HttpError::HeadTooLarge { max: 64 }
    );

    // A complete head one byte over the limit is refused too; one at the limit is not.
    let at_limit = |len: usize| {
        let mut req = b"GET / HTTP/1.0\r\nX: ".to_vec();
        req.resize(len - 4, b'v');
        req.extend_from_slice(b"\r\n\r\n");
        HeadDecoder::new(limits).decode(&mut BytesMut::from(&req[..]))
    };
    assert!(at_limit(64).unwrap().is_some());
    assert_eq!(
        at_limit(65).unwrap_err(),
        HttpError::HeadTooLarge { max: 64 }
    );
}

#[test]
fn a_bad_byte_inside_an_over_long_line_is_400_however_it_arrives() {
    // Found by the fuzzer: a split run that crossed the limit without a line end reported
    // 431 where the whole run saw the bad byte (400). At the limit the decoder parses once more.
    let limits = Limits {
        max_head_len: 64,
        max_headers: 4,
    };
    let mut line = b"GET /".to_vec();
    line.extend_from_slice(&[b'a'; 30]);
    line.push(0x12);
    line.extend_from_slice(&[b'a'; 60]);
    let whole = HeadDecoder::new(limits)
        .decode(&mut BytesMut::from(&line[..]))
        .unwrap_err();
    let mut decoder = HeadDecoder::new(limits);
    let mut buf = BytesMut::from(&line[..1]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&line[1..]);
    assert_eq!(decoder.decode(&mut buf).unwrap_err(), whole);
    assert_eq!(whole.status(), Status::BadRequest);
}

#[test]
fn too_many_header_fields_is_431() {
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..40 {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let e = error_of(&req);
    assert_eq!(e, HttpError::TooManyHeaders { max: 32 });
    assert_eq!(e.status(), Status::RequestHeaderFieldsTooLarge);
}

#[test]
fn leading_empty_lines_are_ignored() {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    let head = decode_all(b"\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.path, "/healthz");
}

#[test]
fn debug_does_not_show_the_query() {
    let head =
        decode_all(b"GET /fstream/u/c.flv?channel-password=hunter2 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
    let shown = format!("{head:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A valid request head built from parts proptest chooses.
fn request_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "HEAD", "OPTIONS"]),
        "[a-z]{1,8}",
        "[A-Za-z0-9_-]{1,24}",
        prop::option::of("[a-z=&0-9]{0,16}"),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,40}"), 0..8),
    )
        .prop_map(|(method, app, key, query, fields)| {
            let mut req = format!("{method} /{app}/{key}.flv");
            if let Some(q) = query {
                req.push('?');
                req.push_str(&q);
            }
            req.push_str(" HTTP/1.1\r\nHost: h\r\n");
            for (name, value) in fields {
                // Keep Host single and no framing fields: every generated head is valid.
                let name = format!("X-{name}");
                req.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            req.push_str("\r\n");
            req.into_bytes()
        })
}

proptest! {
    #[test]
    fn pipelined_heads_decode_the_same_whatever_the_read_sizes(
        reqs in prop::collection::vec(request_strategy(), 1..4),
        cuts in prop::collection::vec(1usize..64, 1..40),
    ) {
        let stream: Vec<u8> = reqs.concat();
        let whole: Vec<RequestHead> = {
            let mut decoder = HeadDecoder::default();
            let mut buf = BytesMut::from(&stream[..]);
            std::iter::from_fn(|| decoder.decode(&mut buf).unwrap()).collect()
        };
        prop_assert_eq!(whole.len(), reqs.len());
        let mut decoder = HeadDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(head) = decoder.decode(&mut buf).unwrap() {
                got.push(head);
            }
        }
        prop_assert_eq!(got, whole);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_stay_errors(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        split in 0usize..600,
    ) {
        let limits = Limits { max_head_len: 256, max_headers: 8 };
        let mut decoder = HeadDecoder::new(limits);
        let split = split.min(bytes.len());
        let mut buf = BytesMut::from(&bytes[..split]);
        let first = decoder.decode(&mut buf);
        if first.is_err() {
            // An error is final: the same prefix plus more bytes fails the same way.
            let mut again = BytesMut::from(&bytes[..]);
            prop_assert_eq!(HeadDecoder::new(limits).decode(&mut again).err(), first.err());
        } else {
            buf.extend_from_slice(&bytes[split..]);
            let _ = decoder.decode(&mut buf);
        }
    }
}
