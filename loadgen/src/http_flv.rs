//! HTTP-FLV watchers: the request they send and the response head they read before the FLV
//! byte stream (`GET /APP/KEY.flv`, answered by `200` and then FLV until the server closes).
//! No IO here.

use bytes::Bytes;

/// Most bytes a response head may take before the watcher gives up on it.
const MAX_HEAD: usize = 16 * 1024;

/// The request that plays `stream` (`APP/KEY`) from `host`.
pub fn request(stream: &str, host: &str) -> Result<Bytes, String> {
    if stream.is_empty() || stream.bytes().any(|b| b <= b' ' || b == b'?' || b == b'#') {
        return Err(format!("{stream:?} is not a stream name for a URL path"));
    }
    Ok(Bytes::from(format!(
        "GET /{stream}.flv HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringcast-loadgen\r\nAccept: */*\r\n\r\n"
    )))
}

/// Reads a response head; what follows it is the FLV stream.
#[derive(Debug, Default)]
pub struct ResponseHead {
    buf: Vec<u8>,
}

impl ResponseHead {
    /// Feeds bytes; once the head is complete and says 200, returns the bytes after it.
    pub fn feed<'a>(&mut self, data: &'a [u8]) -> Result<Option<Body<'a>>, String> {
        let before = self.buf.len();
        self.buf.extend_from_slice(data);
        let Some(end) = find_end(&self.buf) else {
            if self.buf.len() > MAX_HEAD {
                return Err(format!("no end of the response head in {MAX_HEAD} bytes"));
            }
            return Ok(None);
        };
        let status_line = self.buf[..end]
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        let status_line = String::from_utf8_lossy(status_line).trim_end().to_owned();
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") || code != "200" {
            return Err(format!("server answered {status_line:?}"));
        }
        // `end` counts from the start of the whole head; what came in this read past it is body.
        let body_from = end.saturating_sub(before).min(data.len());
        Ok(Some(Body(&data[body_from..])))
    }
}

/// The first body bytes, from the same read as the end of the head.
#[derive(Debug, PartialEq, Eq)]
pub struct Body<'a>(pub &'a [u8]);

/// The index just past `\r\n\r\n`, if present.
fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn request_names_the_stream_as_an_flv_path() {
        let req = request("live/bench", "127.0.0.1:8080").unwrap();
        assert!(req.starts_with(b"GET /live/bench.flv HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(req.ends_with(b"\r\n\r\n"));
        assert!(request("live/a b", "h").is_err());
        assert!(request("live/a?x", "h").is_err());
    }

    #[test]
    fn head_split_anywhere_yields_exactly_the_body_bytes_after_it() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01rest";
        for split in 0..wire.len() {
            let mut head = ResponseHead::default();
            let mut body = Vec::new();
            let mut done = false;
            for part in [&wire[..split], &wire[split..]] {
                if done {
                    body.extend_from_slice(part);
                    continue;
                }
                if let Some(Body(b)) = head.feed(part).unwrap() {
                    body.extend_from_slice(b);
                    done = true;
                }
            }
            assert!(done, "split {split}: head never completed");
            assert_eq!(body, b"FLV\x01rest", "split {split}");
        }
    }

    #[test]
    fn non_200_and_endless_heads_are_errors() {
        let mut head = ResponseHead::default();
        let err = head.feed(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap_err();
        assert!(err.contains("404"), "{err}");
        let mut head = ResponseHead::default();
        let junk = vec![b'a'; MAX_HEAD + 1];
        assert!(head.feed(&junk).is_err());
    }
}
