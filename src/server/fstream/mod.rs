//! The fstream driver: the reference server's length-prefixed handshake, then one direction of
//! bytes — a broadcaster's into the fan-out ([`broadcast`]), or a stream out to a watcher
//! ([`watch`]). The sans-IO parts live in `proto::fstream`, `proto::flv` and `media`; this module
//! owns the sockets, the users files and the channel table.
//!
//! Connection lifecycle: the handshake must arrive within `fstream.handshake_timeout_ms` and fit
//! `fstream.max_handshake_len` (both enforced by [`HandshakeDecoder`] and the connection guard);
//! a bad handshake is logged and the socket closed, with nothing sent back (the protocol has no
//! error reply). Unknown keys are logged by name and ignored.
//!
//! Decisions, documented here because clients observe them:
//! - **`delay`** is accepted and ignored (logged at debug). The reference server sleeps `delay`
//!   seconds in its read loop to batch reads; ringcast reads as bytes arrive and relays each read
//!   as one shared chunk, so there is nothing to slow down and delaying would only add latency.
//! - **A watcher of a channel that has no broadcaster waits** for one, as RTMP players do: the
//!   reference usage starts watchers and broadcasters in any order. Its channel password is
//!   checked when the broadcaster arrives (only the broadcaster knows it); a wrong one closes the
//!   watcher then.
//! - **A second broadcaster on a live channel** follows `fanout.takeover`: refused (default), or
//!   it replaces the first, whose connection is then closed.
//! - **Users**: `[[fstream.users]]` in the config first, then `users_dir/<user>.ini`, read on each
//!   broadcast (a small blocking read; user names are validated by the parser, so they cannot
//!   escape the directory). Passwords are compared in constant time and never logged.

pub mod broadcast;
pub mod watch;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};

use tracing::{debug, info, warn};

use super::Core;
use super::accept::Accepted;
pub use super::conn::Conn;
use crate::config::{Config, FstreamConfig};
use crate::metrics::{AuthFailure, Protocol};
use crate::proto::fstream::{Action, HandshakeDecoder, Request, Secret, parse_user_ini};

/// What a broadcaster's bytes turned out to be (from their first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// FLV: demuxed into media frames; watchers get FLV, RTMP players can play it.
    Flv,
    /// H.264 Annex-B: relayed byte-exact, watchers join at SPS/IDR.
    AnnexB,
    /// Anything else: relayed byte-exact from the start or from where a watcher joins.
    Opaque,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Flv => "flv",
            Format::AnnexB => "h264-annexb",
            Format::Opaque => "opaque",
        })
    }
}

/// What watchers need to know about a live broadcast.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// The publisher generation that registered this entry.
    pub generation: u64,
    /// The channel password the broadcaster set, if any.
    pub password: Option<Secret>,
    pub format: Format,
}

/// Live fstream channels of the node, by stream name; shared by every core.
#[derive(Debug, Default)]
pub struct Channels {
    live: Mutex<HashMap<String, ChannelInfo>>,
}

impl Channels {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, ChannelInfo>> {
        // A panic while holding the lock leaves a plain map behind: still consistent.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<ChannelInfo> {
        self.lock().get(name).cloned()
    }

    pub fn set(&self, name: &str, info: ChannelInfo) {
        self.lock().insert(name.to_owned(), info);
    }

    /// Removes `name` if it is still the entry of `generation` (not a successor's).
    pub fn remove(&self, name: &str, generation: u64) {
        let mut live = self.lock();
        if live.get(name).is_some_and(|i| i.generation == generation) {
            live.remove(name);
        }
    }
}

/// Why a broadcaster was not authenticated. The log says which; the peer only sees a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no user-password given")]
    MissingPassword,
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong user password")]
    WrongPassword,
    #[error("the user's password file is unreadable or malformed")]
    BadUserFile,
}

/// Compared against when the user does not exist, so an unknown user costs the same one
/// constant-time comparison as a wrong password (the refusal takes the same time either way).
const NO_SUCH_USER: &str = "ringcast: no such user; this value never matches a login";

/// Checks a broadcaster's credentials against the config, then `users_dir/<user>.ini`.
///
/// Every outcome after the password is present goes through exactly one `compare` of the
/// given password: against the user's password, or against `NO_SUCH_USER` for an unknown
/// user, so a guesser cannot tell the two apart by the refusal's timing.
pub fn authenticate(
    config: &FstreamConfig,
    user: &str,
    password: Option<&Secret>,
) -> Result<(), AuthError> {
    let password = password.ok_or(AuthError::MissingPassword)?;
    let stored = match config.user(user) {
        Some(listed) => Ok(Secret::new(listed.password.expose())),
        None => read_users_file(config, user),
    };
    let (against, outcome) = match &stored {
        Ok(secret) => (secret, Err(AuthError::WrongPassword)),
        Err(e) => (&*NO_SUCH_USER_SECRET, Err(*e)),
    };
    if compare(against, password) && stored.is_ok() {
        Ok(())
    } else {
        outcome
    }
}

static NO_SUCH_USER_SECRET: std::sync::LazyLock<Secret> =
    std::sync::LazyLock::new(|| Secret::new(NO_SUCH_USER));

/// The one password comparison of [`authenticate`] (constant time; lengths are not hidden).
fn compare(stored: &Secret, given: &Secret) -> bool {
    #[cfg(test)]
    tests::COMPARISONS.with(|c| c.set(c.get() + 1));
    stored.matches(given.expose())
}

/// The password of `user` from `users_dir/<user>.ini`.
fn read_users_file(config: &FstreamConfig, user: &str) -> Result<Secret, AuthError> {
    let path = config.users_dir.join(format!("{user}.ini"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AuthError::UnknownUser),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "fstream: cannot read a users file");
            return Err(AuthError::BadUserFile);
        }
    };
    parse_user_ini(&text).map_err(|e| {
        warn!(path = %path.display(), error = %e, "fstream: malformed users file");
        AuthError::BadUserFile
    })
}

impl AuthError {
    /// The `reason` label of `ringcast_auth_failures_total`.
    pub fn metric(self) -> AuthFailure {
        match self {
            AuthError::MissingPassword => AuthFailure::MissingPassword,
            AuthError::UnknownUser => AuthFailure::UnknownUser,
            AuthError::WrongPassword => AuthFailure::WrongPassword,
            AuthError::BadUserFile => AuthFailure::BadUserFile,
        }
    }
}

/// Serves one accepted fstream connection to its end.
pub async fn serve(core: Rc<Core>, accepted: Accepted) {
    let mut decoder = HandshakeDecoder::new(core.config.fstream.max_handshake_len);
    let mut conn = Conn::new(core.clone(), accepted);
    let peer = conn.peer;
    let request = loop {
        match decoder.decode(&mut conn.input) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(e) => {
                let blame = e.blame();
                core.count_protocol_error(Protocol::Fstream, blame);
                warn!(%peer, error = %e, blame = blame.label(), "fstream handshake refused");
                conn.close();
                return;
            }
        }
        let read = conn.read_more().await;
        if !matches!(read, Ok(n) if n > 0) {
            info!(%peer, reason = %conn.describe_io_end(&read), buffered = conn.input.len(), "fstream connection closed before its handshake completed");
            conn.close();
            return;
        }
    };
    conn.guard.set_handshake_deadline(None);
    if !request.unknown_keys.is_empty() {
        log_unknown_keys(&conn, &request.unknown_keys);
    }
    debug!(%peer, action = ?request.action, stream = %shown_name(&conn.core.config, &request), "fstream handshake");
    match request.action {
        Action::Broadcast => broadcast::run(conn, request).await,
        Action::Watch => watch::run(conn, request).await,
    }
}

/// Most unknown key names quoted in the one line that reports them.
const UNKNOWN_KEYS_SHOWN: usize = 8;

/// Logs a handshake's unknown keys in one line (a count and the first few names), at most once
/// a minute per address: a handshake full of junk keys costs one line, not one per key.
fn log_unknown_keys(conn: &Conn, keys: &[String]) {
    let peer = conn.peer;
    let now = std::time::Instant::now();
    let Some(suppressed) = conn
        .core
        .log_limiter
        .allow("fstream-unknown-keys", peer.ip(), now)
    else {
        return;
    };
    let mut first = String::new();
    for key in keys.iter().take(UNKNOWN_KEYS_SHOWN) {
        if !first.is_empty() {
            first.push(',');
        }
        first.push_str(&escape_name(key));
    }
    info!(%peer, ignored = keys.len(), first = %first, suppressed, "fstream handshake: ignored unknown keys (logged at most once a minute per address)");
}

/// `name` with anything that is not printable ASCII escaped (`\u{...}`), so control, bidi and
/// zero-width characters in a client-chosen name cannot forge or hide log text; at most 64
/// characters are shown.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(64));
    for (i, c) in name.chars().enumerate() {
        if i == 64 {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// The request's stream name for logs: an RTMP stream key is redacted like the RTMP driver does;
/// fstream user and channel names are not secrets.
fn shown_name(config: &Config, request: &Request) -> String {
    config.shown_stream_name(&request.stream_name())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    thread_local! {
        /// Password comparisons [`compare`] made on this thread.
        pub static COMPARISONS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn comparisons_for(cfg: &FstreamConfig, user: &str, password: &str) -> (u32, AuthError) {
        let before = COMPARISONS.with(std::cell::Cell::get);
        let refused = authenticate(cfg, user, Some(&Secret::new(password))).unwrap_err();
        (COMPARISONS.with(std::cell::Cell::get) - before, refused)
    }

    #[test]
    fn an_unknown_user_and_a_wrong_password_are_refused_by_the_same_single_comparison() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fier.ini"), "[DEFAULT]\npassword=123\n").unwrap();
        let config = config(dir.path());
        let cfg = &config.fstream;
        // The same guessed password, three ways to be wrong: each does exactly one comparison
        // and returns without any other work (no sleep, no extra lookup) either way.
        let unknown = comparisons_for(cfg, "nobody", "guess");
        let wrong_in_file = comparisons_for(cfg, "fier", "guess");
        let wrong_listed = comparisons_for(cfg, "listed", "guess");
        assert_eq!(unknown, (1, AuthError::UnknownUser));
        assert_eq!(wrong_in_file, (1, AuthError::WrongPassword));
        assert_eq!(wrong_listed, (1, AuthError::WrongPassword));
        // The dummy an unknown user is compared against never matches, whatever is sent.
        assert_eq!(
            comparisons_for(cfg, "nobody", NO_SUCH_USER),
            (1, AuthError::UnknownUser)
        );
    }

    fn config(users_dir: &std::path::Path) -> Config {
        let text = format!(
            "[fstream]\nusers_dir = {:?}\n\n[[fstream.users]]\nname = \"listed\"\npassword = \"from-config\"\n",
            users_dir.display().to_string()
        );
        Config::from_toml_str(&text, &|_| None).unwrap()
    }

    #[test]
    fn users_come_from_the_config_then_the_users_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fier.ini"), "[DEFAULT]\npassword=123\n").unwrap();
        std::fs::write(dir.path().join("broken.ini"), "password=123\n").unwrap();
        let config = config(dir.path());
        let cfg = &config.fstream;
        let pw = |p: &str| Some(Secret::new(p));
        assert_eq!(authenticate(cfg, "fier", pw("123").as_ref()), Ok(()));
        assert_eq!(
            authenticate(cfg, "fier", pw("1234").as_ref()),
            Err(AuthError::WrongPassword)
        );
        assert_eq!(
            authenticate(cfg, "fier", None),
            Err(AuthError::MissingPassword)
        );
        assert_eq!(
            authenticate(cfg, "listed", pw("from-config").as_ref()),
            Ok(())
        );
        assert_eq!(
            authenticate(cfg, "nobody", pw("123").as_ref()),
            Err(AuthError::UnknownUser)
        );
        assert_eq!(
            authenticate(cfg, "broken", pw("123").as_ref()),
            Err(AuthError::BadUserFile)
        );
    }

    #[test]
    fn a_finished_broadcast_does_not_remove_its_successors_channel() {
        let channels = Channels::default();
        let info = |generation| ChannelInfo {
            generation,
            password: None,
            format: Format::Opaque,
        };
        channels.set("fstream/a/b", info(1));
        channels.set("fstream/a/b", info(2));
        channels.remove("fstream/a/b", 1);
        assert_eq!(channels.get("fstream/a/b").map(|i| i.generation), Some(2));
        channels.remove("fstream/a/b", 2);
        assert!(channels.get("fstream/a/b").is_none());
    }
}
