//! RESP2, the Redis protocol, as far as the stream directory needs it: commands out as arrays
//! of bulk strings, replies in (simple strings, errors, integers, bulk strings, arrays).
//!
//! [`decode`] takes a complete reply off the front of a buffer or says more is needed; a reply
//! that does not parse, or is larger than the limits, is an error (the caller drops the
//! connection), never a panic.

use bytes::{Buf, BytesMut};

/// Longest bulk string accepted (directory values are a few dozen bytes).
const MAX_BULK: usize = 64 * 1024;
/// Most elements in an array reply.
const MAX_ARRAY: usize = 1024;
/// Longest line (simple string, error, integer, length header).
const MAX_LINE: usize = 4096;
/// Deepest array nesting.
const MAX_DEPTH: usize = 4;

/// A reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    Integer(i64),
    /// `$n` bulk string; `None` for the nil reply (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n`; `None` for the nil array (`*-1`).
    Array(Option<Vec<Reply>>),
}

/// A reply that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Redis reply: {0}")]
pub struct ReplyError(pub &'static str);

/// Appends `args` to `out` as one command (an array of bulk strings).
pub fn encode(args: &[&[u8]], out: &mut BytesMut) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Takes one complete reply off the front of `buf`: `Ok(None)` if it is not all there yet.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
    match parse(buf, 0, 0)? {
        Some((reply, used)) => {
            buf.advance(used);
            Ok(Some(reply))
        }
        None => Ok(None),
    }
}

/// Parses a reply at `at`; returns it and the offset after it.
fn parse(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, ReplyError> {
    let Some((line, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let (&kind, rest) = line.split_first().ok_or(ReplyError("empty line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Integer(number(rest)?), next))),
        b'$' => {
            let len = number(rest)?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| ReplyError("negative length"))?;
            if len > MAX_BULK {
                return Err(ReplyError("bulk string too long"));
            }
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ReplyError("bulk string not terminated"));
            }
            Ok(Some((Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let len = number(rest)?;
            if len == -1 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| ReplyError("negative length"))?;
            if len > MAX_ARRAY || depth >= MAX_DEPTH {
                return Err(ReplyError("array too large or too deep"));
            }
            let mut items = Vec::with_capacity(len);
            let mut pos = next;
            for _ in 0..len {
                let Some((item, after)) = parse(buf, pos, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                pos = after;
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        _ => Err(ReplyError("unknown reply type")),
    }
}

/// The line at `at` without its CRLF, and the offset after the CRLF.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ReplyError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end > MAX_LINE => Err(ReplyError("line too long")),
        Some(end) => Ok(Some((&rest[..end], at + end + 2))),
        None if rest.len() > MAX_LINE => Err(ReplyError("line too long")),
        None => Ok(None),
    }
}

fn number(digits: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ReplyError("bad number"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode(&[b"SET", b"k", b"v v"], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv v\r\n");
    }

    #[test]
    fn replies_decode_once_complete() {
        let mut buf = BytesMut::from(&b"+OK\r\n$5\r\nhel"[..]);
        assert_eq!(decode(&mut buf).unwrap(), Some(Reply::Simple("OK".into())));
        assert_eq!(decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"lo\r\n$-1\r\n:7\r\n-ERR no\r\n*2\r\n:1\r\n$1\r\nx\r\n");
        assert_eq!(
            decode(&mut buf).unwrap(),
            Some(Reply::Bulk(Some(b"hello".to_vec())))
        );
        assert_eq!(decode(&mut buf).unwrap(), Some(Reply::Bulk(None)));
        assert_eq!(decode(&mut buf).unwrap(), Some(Reply::Integer(7)));
        assert_eq!(
            decode(&mut buf).unwrap(),
            Some(Reply::Error("ERR no".into()))
        );
        assert_eq!(
            decode(&mut buf).unwrap(),
            Some(Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(Some(b"x".to_vec()))
            ])))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_and_oversized_replies_are_errors_not_panics() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"$-5\r\n",
            b"$999999999\r\n",
            b":\r\n",
        ] {
            assert!(decode(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
        let mut long = BytesMut::from(&vec![b'+'; MAX_LINE + 10][..]);
        assert!(decode(&mut long).is_err());
        let mut deep = BytesMut::from(&b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"[..]);
        assert!(decode(&mut deep).is_err());
    }
}
