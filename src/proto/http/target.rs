//! The request target: its forms (RFC 9112 §3.2), percent-decoding (RFC 3986 §2.1), the query
//! string, and the HTTP-FLV stream path `/<app>/<key>.flv`.

use super::request::{HttpError, Method};
use crate::proto::stream_name;

/// Splits a raw request target into its path and its raw query.
///
/// The path is returned as sent, percent-encoding kept: routes are matched on the literal path
/// and [`flv_path`] splits it on its literal `/` and `.flv` before decoding each segment once,
/// so `%2F` or `%2eflv` cannot act as a separator or an extension. It must decode (once) to
/// UTF-8 without control characters, or the request is refused.
///
/// Accepted forms: origin-form (`/path?query`), absolute-form (`http://host/path?query`, whose
/// authority is ignored: this server has one site) and, for `OPTIONS` only, asterisk-form (`*`).
/// A fragment, which clients should not send, is dropped. The decoded path must be UTF-8 without
/// control characters.
pub(crate) fn parse_target(
    raw: &str,
    method: Method,
) -> Result<(String, Option<String>), HttpError> {
    let bad = |reason| Err(HttpError::BadTarget { reason });
    if raw == "*" {
        return if method == Method::Options {
            Ok(("*".to_owned(), None))
        } else {
            bad("'*' is only a target for OPTIONS")
        };
    }
    let raw = raw.split('#').next().unwrap_or_default();
    let (before_query, query) = match raw.split_once('?') {
        Some((before, query)) => (before, Some(query.to_owned())),
        None => (raw, None),
    };
    let path = if before_query.starts_with('/') {
        before_query
    } else if let Some(rest) = strip_scheme(before_query) {
        // RFC 9112 §3.2.2: absolute-form; an empty path is "/".
        rest.find('/').and_then(|at| rest.get(at..)).unwrap_or("/")
    } else {
        return bad("not a path");
    };
    let Some(decoded) = percent_decode(path, false) else {
        return bad("bad percent-encoding in the path");
    };
    if decoded.chars().any(char::is_control) {
        return bad("control character in the path");
    }
    Ok((path.to_owned(), query))
}

/// `rest` after `http://` or `https://` (scheme case-insensitive).
fn strip_scheme(raw: &str) -> Option<&str> {
    let (scheme, rest) = raw.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, the query convention).
/// `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_owned());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The decoded value of query parameter `name` (`name=value` pairs joined by `&`, `+` a space),
/// `Ok(None)` when absent. A parameter given twice is refused rather than guessed at, like a
/// malformed escape.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, HttpError> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key, true).as_deref() != Some(name) {
            continue;
        }
        if found.is_some() {
            return Err(HttpError::BadTarget {
                reason: "a query parameter is repeated",
            });
        }
        found = Some(percent_decode(value, true).ok_or(HttpError::BadTarget {
            reason: "bad percent-encoding in the query",
        })?);
    }
    Ok(found)
}

/// A stream named by an HTTP-FLV path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvPath<'a> {
    /// The first path segment (the RTMP app), e.g. `live` or `fstream`.
    pub app: &'a str,
    /// The rest, e.g. a stream key, or `user/channel` for an fstream channel.
    pub key: &'a str,
}

impl FlvPath<'_> {
    /// The registry name, `app/key`: what RTMP players and fstream `stream=` watchers name.
    pub fn stream_name(&self) -> String {
        format!("{}/{}", self.app, self.key)
    }
}

/// The decoded app and key of an HTTP-FLV path ([`flv_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTarget {
    app: String,
    key: String,
}

impl FlvTarget {
    pub fn path(&self) -> FlvPath<'_> {
        FlvPath {
            app: &self.app,
            key: &self.key,
        }
    }
}

/// `/<app>/<key>.flv` (or `/fstream/<user>/<channel>.flv`) → app and key, from the path as
/// sent: the `/` separators and the `.flv` extension must be literal; then each segment is
/// percent-decoded once and the name must pass the stream name rules
/// ([`crate::proto::stream_name`]).
pub fn flv_path(raw_path: &str) -> Option<FlvTarget> {
    let name = raw_path.strip_prefix('/')?.strip_suffix(".flv")?;
    let mut decoded = Vec::new();
    for segment in name.split('/') {
        let segment = percent_decode(segment, false)?;
        stream_name::check_segment(&segment).ok()?;
        decoded.push(segment);
    }
    let app = decoded.first()?.clone();
    let key = decoded.get(1..)?.join("/");
    stream_name::check(&format!("{app}/{key}")).ok()?;
    Some(FlvTarget { app, key })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(raw: &str) -> Result<(String, Option<String>), HttpError> {
        parse_target(raw, Method::Get)
    }

    #[test]
    fn origin_and_absolute_forms_give_the_path_and_raw_query() {
        assert_eq!(
            target("/live/k.flv?a=1&b=%20").unwrap(),
            ("/live/k.flv".to_owned(), Some("a=1&b=%20".to_owned()))
        );
        assert_eq!(
            target("HTTP://example.com:8080/live/k.flv?x").unwrap(),
            ("/live/k.flv".to_owned(), Some("x".to_owned()))
        );
        assert_eq!(
            target("http://example.com?x").unwrap(),
            ("/".to_owned(), Some("x".to_owned()))
        );
        assert_eq!(target("/a#frag").unwrap(), ("/a".to_owned(), None));
        // The path is kept as sent; it must decode.
        assert_eq!(target("/a%2Fb%41").unwrap().0, "/a%2Fb%41");
    }

    #[test]
    fn bad_targets_are_refused() {
        for raw in [
            "live/k.flv",
            "ftp://x/y",
            "/a%zz",
            "/a%4",
            "/%00",
            "/%ff",
            "*",
        ] {
            assert!(
                matches!(target(raw), Err(HttpError::BadTarget { .. })),
                "{raw}"
            );
        }
        assert_eq!(
            parse_target("*", Method::Options).unwrap(),
            ("*".to_owned(), None)
        );
    }

    #[test]
    fn query_params_decode_and_refuse_repeats() {
        let q = Some("channel-password=a%2Cb+c&x=1&flag");
        assert_eq!(
            query_param(q, "channel-password").unwrap().as_deref(),
            Some("a,b c")
        );
        assert_eq!(query_param(q, "flag").unwrap().as_deref(), Some(""));
        assert_eq!(query_param(q, "missing").unwrap(), None);
        assert_eq!(query_param(None, "x").unwrap(), None);
        assert!(query_param(Some("x=1&x=2"), "x").is_err());
        assert!(query_param(Some("x=%g1"), "x").is_err());
    }

    #[test]
    fn flv_paths_name_app_and_key() {
        let t = flv_path("/live/key.flv").unwrap();
        let p = t.path();
        assert_eq!((p.app, p.key), ("live", "key"));
        assert_eq!(p.stream_name(), "live/key");
        let t = flv_path("/fstream/fier/chan.flv").unwrap();
        assert_eq!((t.path().app, t.path().key), ("fstream", "fier/chan"));
        let t = flv_path("/live/k%41%2e.flv").unwrap();
        assert_eq!(t.path().key, "kA.", "segments are decoded once");
        for bad in [
            "/live/key",
            "/key.flv",
            "/live/.flv",
            "//key.flv",
            "/live//k.flv",
            "/live/k/.flv",
            "/live/../k.flv",
            "live/k.flv",
            "/live/k.FLV",
            "/live/healthy%2eflv",
            "/live%2Fhealthy.flv",
            "/live/k%2Fx.flv",
            "/live/a/b/c.flv",
            "/live/a%E2%80%AEb.flv",
            "/live/%2e%2e.flv",
        ] {
            assert_eq!(flv_path(bad), None, "{bad}");
        }
    }
}
