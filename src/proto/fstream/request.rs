//! The parsed fstream request, its validation rules, and [`Secret`] for passwords.
//!
//! Payload grammar: `ACTION(,KEY=VALUE)*`, split on `,`, each pair split at its first `=` (so
//! values may contain `=` but never `,`). Nothing is trimmed; keys and actions are case-sensitive.
//!
//! - `ACTION` is `watch` or `broadcast`.
//! - Known keys: `user`, `user-password`, `channel` (default [`DEFAULT_CHANNEL`]),
//!   `channel-password`, `delay` (seconds, finite, `0..=`[`MAX_DELAY_SECS`]), `stream`,
//!   `audio` (`opus`: a media stream's Opus audio as published rather than its AAC rendition).
//!   Other keys are accepted and their *names* kept in [`Request::unknown_keys`] (forward
//!   compatibility; values are dropped since they might be secrets).
//! - **Duplicate keys are rejected**, known or not: a request that says `user=a,user=b` means
//!   different things to different parsers, and auth fields must not be ambiguous.
//! - An empty item (`watch,,user=a` or a trailing comma) or one without `=` or with an empty key is
//!   [`HandshakeError::MalformedPair`].
//! - `user` and `channel` become path components (`users/<user>.ini`, `fstream/<user>/<channel>`),
//!   so they must be 1..=64 bytes, not start with `.`, and be a valid stream name segment
//!   ([`crate::proto::stream_name`]: no `/`, `\`, control, whitespace, invisible or bidi
//!   character).
//!   Passwords may be empty or contain anything but `,`.
//!
//! **The `stream=` rule (ringcast extension).** A `watch` names exactly one target:
//! - either `stream=APP/KEY`: APP and KEY non-empty, APP without `/`, no control characters, APP
//!   not `fstream`; then `user`, `channel` and `channel-password` must all be absent
//!   ([`HandshakeError::ConflictingTarget`]), `user` is not required and [`Request::user`] is
//!   empty (`user-password` and `delay` are accepted and carry no meaning). APP `fstream` is refused
//!   so that a password-protected fstream channel cannot be reached around its channel-password:
//!   fstream channels are watched with `user=`/`channel=`;
//! - or `user=U` (required, else [`HandshakeError::MissingUser`]) with an optional `channel`.
//!
//! A `broadcast` always needs `user`; `stream=` is refused ([`HandshakeError::StreamNotAllowed`]):
//! a broadcast's name is always `fstream/<user>/<channel>`. Passwords are not checked here: the
//! caller authenticates with [`Secret::matches`].

use subtle::ConstantTimeEq;

use super::DEFAULT_CHANNEL;
use super::handshake::HandshakeError;
use crate::proto::stream_name;

/// Largest accepted `delay`, in seconds.
pub const MAX_DELAY_SECS: f64 = 60.0;
/// Longest accepted `user` / `channel`, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// What the client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Watch,
    Broadcast,
}

/// A password or other credential. Its `Debug` prints `****`; comparisons are constant-time.
#[derive(Clone, Default)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_bytes().into_boxed_slice())
    }

    /// Constant-time comparison (the length is not hidden).
    pub fn matches(&self, other: &[u8]) -> bool {
        bool::from(self.0.ct_eq(other))
    }

    /// The raw bytes, for the client encoder or a key derivation. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

/// Constant-time, like [`Secret::matches`].
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

/// A decoded handshake. See the module doc for the rules it satisfies.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: Action,
    /// The broadcaster (for watch: whose channel). Empty only for a watch with `stream=`.
    pub user: String,
    pub user_password: Option<Secret>,
    /// [`DEFAULT_CHANNEL`] when absent.
    pub channel: String,
    pub channel_password: Option<Secret>,
    /// The reference server's loop delay in seconds; informational for ringcast.
    pub delay: Option<f64>,
    /// ringcast extension: `APP/KEY` of an RTMP/FTL stream to watch.
    pub stream: Option<String>,
    /// ringcast extension: `audio=opus` asks for a stream's Opus audio as published instead of
    /// its AAC rendition (FLV watches only; any other value means the default, AAC).
    pub audio: Option<String>,
    /// Names (never values) of keys this version does not know.
    pub unknown_keys: Vec<String>,
}

/// What a request refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// An fstream channel: stream name `fstream/<user>/<channel>`.
    Channel { user: &'a str, channel: &'a str },
    /// Any stream by name (watch with `stream=APP/KEY`).
    Stream { app: &'a str, key: &'a str },
}

impl Request {
    /// The target, from `stream` if present, else from `user`/`channel`.
    pub fn target(&self) -> Target<'_> {
        match self.stream.as_deref().and_then(|s| s.split_once('/')) {
            Some((app, key)) => Target::Stream { app, key },
            None => Target::Channel {
                user: &self.user,
                channel: &self.channel,
            },
        }
    }

    /// The stream registry name: `APP/KEY` or `fstream/<user>/<channel>`.
    pub fn stream_name(&self) -> String {
        match self.target() {
            Target::Stream { app, key } => format!("{app}/{key}"),
            Target::Channel { user, channel } => format!("fstream/{user}/{channel}"),
        }
    }
}

#[derive(Default)]
struct Fields<'a> {
    user: Option<&'a str>,
    user_password: Option<&'a str>,
    channel: Option<&'a str>,
    channel_password: Option<&'a str>,
    delay: Option<&'a str>,
    stream: Option<&'a str>,
    audio: Option<&'a str>,
    unknown: Vec<&'a str>,
}

/// Parses the UTF-8 payload of a handshake (without its length prefix).
pub fn parse_payload(text: &str) -> Result<Request, HandshakeError> {
    let mut items = text.split(',');
    let action = match items.next() {
        Some("watch") => Action::Watch,
        Some("broadcast") => Action::Broadcast,
        other => return Err(unknown_action(other.unwrap_or(""))),
    };
    let fields = collect_fields(items)?;
    build(action, fields)
}

fn unknown_action(item: &str) -> HandshakeError {
    let name = item.split('=').next().unwrap_or("");
    HandshakeError::UnknownAction {
        action: truncated(name),
    }
}

/// At most 32 bytes of `s`, cut on a character boundary, for error messages.
fn truncated(s: &str) -> String {
    let mut cut = s.len().min(32);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.get(..cut).unwrap_or("").to_owned()
}

fn collect_fields<'a>(items: impl Iterator<Item = &'a str>) -> Result<Fields<'a>, HandshakeError> {
    let mut fields = Fields::default();
    for (i, item) in items.enumerate() {
        let index = i + 1;
        let (key, value) = item
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or(HandshakeError::MalformedPair { index })?;
        let slot = match key {
            "user" => &mut fields.user,
            "user-password" => &mut fields.user_password,
            "channel" => &mut fields.channel,
            "channel-password" => &mut fields.channel_password,
            "delay" => &mut fields.delay,
            "stream" => &mut fields.stream,
            "audio" => &mut fields.audio,
            _ => {
                if fields.unknown.contains(&key) {
                    return Err(duplicate(key));
                }
                fields.unknown.push(key);
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return Err(duplicate(key));
        }
    }
    Ok(fields)
}

fn duplicate(key: &str) -> HandshakeError {
    HandshakeError::DuplicateKey {
        key: key.to_owned(),
    }
}

fn build(action: Action, f: Fields<'_>) -> Result<Request, HandshakeError> {
    if let Some(stream) = f.stream {
        if action == Action::Broadcast {
            return Err(HandshakeError::StreamNotAllowed);
        }
        if f.user.is_some() || f.channel.is_some() || f.channel_password.is_some() {
            return Err(HandshakeError::ConflictingTarget);
        }
        check_stream(stream)?;
    }
    let user = match (f.user, f.stream) {
        (Some(user), _) => checked_name(user, "user")?,
        (None, Some(_)) => String::new(),
        (None, None) => return Err(HandshakeError::MissingUser),
    };
    let channel = match f.channel {
        Some(channel) => checked_name(channel, "channel")?,
        None => DEFAULT_CHANNEL.to_owned(),
    };
    Ok(Request {
        action,
        user,
        user_password: f.user_password.map(Secret::new),
        channel,
        channel_password: f.channel_password.map(Secret::new),
        delay: f.delay.map(parse_delay).transpose()?,
        stream: f.stream.map(str::to_owned),
        audio: f.audio.map(str::to_owned),
        unknown_keys: f.unknown.into_iter().map(str::to_owned).collect(),
    })
}

fn checked_name(value: &str, key: &'static str) -> Result<String, HandshakeError> {
    let ok = value.len() <= MAX_NAME_LEN
        && !value.starts_with('.')
        && stream_name::check_segment(value).is_ok();
    if ok {
        Ok(value.to_owned())
    } else {
        Err(HandshakeError::BadName { key })
    }
}

fn check_stream(value: &str) -> Result<(), HandshakeError> {
    let bad = |reason| Err(HandshakeError::BadStream { reason });
    let Some((app, key)) = value.split_once('/') else {
        return bad("no '/'");
    };
    if app.is_empty() || key.is_empty() {
        return bad("empty APP or KEY");
    }
    if stream_name::check(value).is_err() {
        return bad("not a stream name (APP/KEY; see the stream name rules)");
    }
    if app == "fstream" {
        return bad("fstream channels are watched with user= and channel=");
    }
    Ok(())
}

fn parse_delay(value: &str) -> Result<f64, HandshakeError> {
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=MAX_DELAY_SECS).contains(&secs) => Ok(secs),
        _ => Err(HandshakeError::BadDelay {
            value: truncated(value),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn err(payload: &str) -> HandshakeError {
        parse_payload(payload).unwrap_err()
    }

    #[test]
    fn channel_defaults_and_unknown_keys_keep_names_only() {
        let request = parse_payload("watch,user=fier,quality=high,x=").unwrap();
        assert_eq!(request.channel, DEFAULT_CHANNEL);
        assert_eq!(request.unknown_keys, vec!["quality", "x"]);
        assert_eq!(
            request.target(),
            Target::Channel {
                user: "fier",
                channel: "default"
            }
        );
    }

    #[test]
    fn watch_by_stream_needs_no_user() {
        let request = parse_payload("watch,stream=live/mykey").unwrap();
        assert_eq!(request.user, "");
        assert_eq!(
            request.target(),
            Target::Stream {
                app: "live",
                key: "mykey"
            }
        );
        assert_eq!(request.stream_name(), "live/mykey");
        // The stream name rules hold here as for every protocol.
        for bad in ["live/my/key", "live/a\u{202e}b", "live/a b"] {
            assert!(
                parse_payload(&format!("watch,stream={bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(parse_payload("watch,user=fi\u{200b}er").is_err());
    }

    #[test]
    fn stream_rule_conflicts() {
        for payload in [
            "watch,user=a,stream=live/k",
            "watch,stream=live/k,channel=c",
            "watch,stream=live/k,channel-password=p",
        ] {
            assert_eq!(err(payload), HandshakeError::ConflictingTarget, "{payload}");
        }
        assert_eq!(
            err("broadcast,user=a,stream=live/k"),
            HandshakeError::StreamNotAllowed
        );
        for payload in [
            "watch,stream=live",
            "watch,stream=/k",
            "watch,stream=live/",
            "watch,stream=fstream/fier/secret",
            "watch,stream=live/k\u{7}",
        ] {
            assert!(
                matches!(err(payload), HandshakeError::BadStream { .. }),
                "{payload}"
            );
        }
    }

    #[test]
    fn malformed_pairs_and_duplicates() {
        assert_eq!(
            err("watch,user"),
            HandshakeError::MalformedPair { index: 1 }
        );
        assert_eq!(
            err("watch,user=a,=b"),
            HandshakeError::MalformedPair { index: 2 }
        );
        assert_eq!(
            err("watch,user=a,"),
            HandshakeError::MalformedPair { index: 2 }
        );
        assert_eq!(
            err("watch,user=a,user=b"),
            HandshakeError::DuplicateKey { key: "user".into() }
        );
        assert_eq!(
            err("watch,user=a,q=1,q=2"),
            HandshakeError::DuplicateKey { key: "q".into() }
        );
        assert_eq!(
            err("Watch,user=a"),
            HandshakeError::UnknownAction {
                action: "Watch".into()
            }
        );
    }

    #[test]
    fn names_that_would_escape_a_path_are_refused() {
        for user in ["", "../etc", "a/b", "a\\b", ".hidden", "a\nb"] {
            assert_eq!(
                err(&format!("watch,user={user}")),
                HandshakeError::BadName { key: "user" },
                "{user:?}"
            );
        }
        assert_eq!(
            err(&format!("watch,user=a,channel={}", "c".repeat(65))),
            HandshakeError::BadName { key: "channel" }
        );
    }

    #[test]
    fn delay_must_be_a_sane_number_of_seconds() {
        assert_eq!(
            parse_payload("broadcast,user=a,delay=0").unwrap().delay,
            Some(0.0)
        );
        assert_eq!(
            parse_payload("broadcast,user=a,delay=60").unwrap().delay,
            Some(60.0)
        );
        for bad in ["", "abc", "-1", "NaN", "inf", "60.5", "1e9"] {
            assert_eq!(
                err(&format!("broadcast,user=a,delay={bad}")),
                HandshakeError::BadDelay { value: bad.into() },
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_may_hold_equals_signs_and_compare_in_constant_time() {
        let request = parse_payload("broadcast,user=a,user-password=a=b=").unwrap();
        let password = request.user_password.unwrap();
        assert!(password.matches(b"a=b="));
        assert!(!password.matches(b"a=b"));
        assert_eq!(format!("{password:?}"), "****");
        assert_eq!(password.expose(), b"a=b=");
    }
}
