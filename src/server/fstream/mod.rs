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
use crate::metrics::Protocol;
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

/// Checks a broadcaster's credentials against the config, then `users_dir/<user>.ini`.
pub fn authenticate(
    config: &FstreamConfig,
    user: &str,
    password: Option<&Secret>,
) -> Result<(), AuthError> {
    let password = password.ok_or(AuthError::MissingPassword)?;
    if let Some(listed) = config.user(user) {
        return if listed.password.matches(password.expose()) {
            Ok(())
        } else {
            Err(AuthError::WrongPassword)
        };
    }
    let path = config.users_dir.join(format!("{user}.ini"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AuthError::UnknownUser),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "fstream: cannot read a users file");
            return Err(AuthError::BadUserFile);
        }
    };
    let stored = parse_user_ini(&text).map_err(|e| {
        warn!(path = %path.display(), error = %e, "fstream: malformed users file");
        AuthError::BadUserFile
    })?;
    if stored.matches(password.expose()) {
        Ok(())
    } else {
        Err(AuthError::WrongPassword)
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
    for key in &request.unknown_keys {
        info!(%peer, key = %key, "fstream handshake: ignoring unknown key");
    }
    debug!(%peer, action = ?request.action, stream = %shown_name(&conn.core.config, &request), "fstream handshake");
    match request.action {
        Action::Broadcast => broadcast::run(conn, request).await,
        Action::Watch => watch::run(conn, request).await,
    }
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
