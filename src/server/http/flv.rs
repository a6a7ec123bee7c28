//! An HTTP-FLV watcher: admit the request, answer `200` with an FLV body that lasts as long as
//! the stream, through the shared watcher write loop ([`crate::server::watch::run`]).
//!
//! The body is what an `.flv` file of the stream would hold from the watcher's join point: the
//! FLV file header, then tags, starting with the cached metadata and sequence headers and the
//! cached GOP's keyframe (the ring's `Egress::Flv` form, serialised once per frame and shared
//! with fstream FLV watchers). There is no `Content-Length`: the body ends when the connection
//! closes (stream over, watcher too slow, or the client left).
//!
//! Who may watch what (the RTMP play rules, so a name plays the same everywhere):
//! - the name is the path without `.flv`: `/live/key.flv` is `live/key`, `/fstream/u/c.flv` is
//!   the fstream channel `fstream/u/c`; the app is the first segment;
//! - an app listed with `play = false` is 403;
//! - an fstream channel must be live (its password is only known while its broadcaster is
//!   connected: 404 otherwise), carry FLV (406 for raw bytes, which have no FLV form), and if its
//!   broadcaster set a channel password the request must give it as `?channel-password=...`
//!   (compared in constant time; 403 otherwise). Unlike RTMP, HTTP can carry the password, so
//!   a protected channel is playable here; a URL with a password in it is a secret to keep;
//! - any other stream that is not live is waited for, as RTMP players wait
//!   (`http.wait_for_publisher`, default true), or 404 at once when that is false. A stream in
//!   its publisher grace window counts as live.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use tracing::info;

use super::Conn;
use crate::config::Config;
use crate::fanout::{AudioMode, Egress, StreamState};
use crate::metrics::Protocol;
use crate::proto::flv;
use crate::proto::http::{FlvPath, ResponseHead, Status, query_param};
use crate::server::fstream::Format;
use crate::server::streams::Viewer;
use crate::server::watch::{Control, LocalNotify};

/// A request allowed to watch.
pub struct Admitted {
    /// The registry name, `app/key`.
    name: String,
    /// The name for logs: the key redacted (fstream channel names are not secrets).
    shown: String,
    cors_origin: String,
    /// AAC unless the request asked for `?audio=opus`.
    audio: AudioMode,
}

impl Admitted {
    /// The `200` head of the FLV body (without `Connection`).
    pub fn response_head(&self) -> ResponseHead {
        let head = ResponseHead::new(Status::Ok)
            .field("Content-Type", "video/x-flv")
            .field("Cache-Control", "no-cache");
        if self.cors_origin.is_empty() {
            head
        } else {
            head.field("Access-Control-Allow-Origin", &self.cors_origin)
        }
    }
}

/// The name to log for `target`: like the RTMP driver's, the key redacted; fstream channel
/// names (`fstream/<user>/<channel>`) are not secrets.
pub fn shown_name(config: &Config, target: FlvPath<'_>) -> String {
    config.shown_stream_name(&target.stream_name())
}

/// Applies the play rules of the module doc to `target`.
pub fn admit(
    conn: &Conn,
    target: FlvPath<'_>,
    query: Option<&str>,
) -> Result<Admitted, (Status, &'static str)> {
    let core = &conn.core;
    let name = target.stream_name();
    if !core.config.rtmp.play_allowed(target.app) {
        return Err((Status::Forbidden, "playing this app is not allowed"));
    }
    if target.app == "fstream" {
        let Some(info) = core.fstream.get(&name) else {
            return Err((Status::NotFound, "no such fstream channel is live"));
        };
        if let Some(expected) = &info.password {
            let given = query_param(query, "channel-password")
                .map_err(|_| (Status::BadRequest, "malformed query string"))?;
            // Compared even when none was given, so the time taken does not say which.
            let matches = expected.matches(given.as_deref().unwrap_or_default().as_bytes());
            if !matches || given.is_none() {
                return Err((Status::Forbidden, "wrong or missing channel-password"));
            }
        }
        if info.format != Format::Flv {
            return Err((
                Status::NotAcceptable,
                "this fstream channel carries raw bytes, not FLV: watch it over fstream",
            ));
        }
    } else if !core.config.http.wait_for_publisher {
        let present = core
            .hub
            .registry()
            .get(&name)
            .is_some_and(|s| s.is_live() || s.generation() > 0);
        if !present {
            // In a cluster, start this node's pull anyway: a client that retries within
            // cluster.idle_close_ms finds the stream here.
            core.cluster.want(core, &name);
            return Err((Status::NotFound, "stream is not live"));
        }
    }
    let audio = match query_param(query, "audio")
        .map_err(|_| (Status::BadRequest, "malformed query string"))?
        .as_deref()
    {
        None | Some("aac") => AudioMode::Aac,
        Some("opus") => AudioMode::Passthrough,
        Some(_) => return Err((Status::BadRequest, "audio must be opus or aac")),
    };
    Ok(Admitted {
        name,
        audio,
        shown: shown_name(&core.config, target),
        cors_origin: core.config.http.cors_allow_origin.clone(),
    })
}

/// The HTTP side of the write loop: the response head and FLV file header, sent once before
/// the first tags, and the reader's stop flag.
#[derive(Default)]
struct FlvControl {
    prefix: RefCell<Vec<Bytes>>,
    notify: LocalNotify,
    stopped: Cell<bool>,
}

impl Control for FlvControl {
    fn protocol(&self) -> Protocol {
        Protocol::Http
    }

    fn drain(&self, batch: &mut Vec<Bytes>) {
        batch.append(&mut self.prefix.borrow_mut());
    }

    fn state_changed(&self, _state: StreamState) {}

    fn stopped(&self) -> bool {
        self.stopped.get()
    }

    fn notify(&self) -> &LocalNotify {
        &self.notify
    }
}

/// Streams FLV to an admitted `GET` until the stream ends or either side gives up.
pub async fn run(conn: Conn, admitted: Admitted) {
    let core = conn.core.clone();
    let guard = conn.guard.clone();
    let peer = conn.peer;
    let Admitted { name, shown, .. } = &admitted;
    let mut viewer = Viewer::subscribe(
        &core,
        &guard,
        peer,
        Protocol::Http,
        (name.clone(), shown.clone()),
        Egress::Flv,
    );
    viewer.watcher().set_audio(admitted.audio);
    let control = Rc::new(FlvControl::default());
    *control.prefix.borrow_mut() = vec![
        admitted
            .response_head()
            .field("Connection", "close")
            .encode(),
        Bytes::copy_from_slice(&flv::file_header(true, true)),
    ];
    // Whatever the client sends now is discarded; its EOF means it left.
    let reader_control = control.clone();
    conn.discard_input_until_eof(move || {
        reader_control.stopped.set(true);
        reader_control.notify.notify();
    });

    info!(%peer, worker = core.index, stream = %shown, "HTTP-FLV watch started");
    viewer.play(control).await;
}
