//! An fstream watcher: subscribe at once, learn what the stream carries, check the channel
//! password, then run the shared watcher write loop ([`crate::server::watch::run`]).
//!
//! The subscription is taken before anything else so a watcher that arrives before its
//! broadcaster misses no byte: its cursor waits at the start of the (empty) ring. What it is sent
//! depends on the stream: raw bytes for an opaque or Annex-B broadcast; an FLV file header and
//! then FLV tags (sequence headers first, starting on a keyframe) for an FLV broadcast and for
//! `stream=APP/KEY` (RTMP and FTL streams). A reader task notices the peer leaving.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::{Channels, Conn, Format, shown_name};
use crate::fanout::{AudioMode, Egress, StreamState, Watcher};
use crate::metrics::Protocol;
use crate::proto::flv;
use crate::proto::fstream::{Request, Target};
use crate::server::streams::Viewer;
use crate::server::watch::{self, Control, LocalNotify};

/// The fstream side of the write loop: an optional one-time prefix (the FLV file header) and
/// the reader's stop flag.
#[derive(Default)]
struct WatchControl {
    prefix: RefCell<Option<Bytes>>,
    notify: LocalNotify,
    stopped: Cell<bool>,
}

impl Control for WatchControl {
    fn protocol(&self) -> Protocol {
        Protocol::Fstream
    }

    fn drain(&self, batch: &mut Vec<Bytes>) {
        if let Some(prefix) = self.prefix.borrow_mut().take() {
            batch.push(prefix);
        }
    }

    fn state_changed(&self, _state: StreamState) {}

    fn stopped(&self) -> bool {
        self.stopped.get()
    }

    fn notify(&self) -> &LocalNotify {
        &self.notify
    }
}

/// AAC unless the watch asked for `audio=opus`.
fn audio_mode(request: &Request) -> AudioMode {
    match request.audio.as_deref() {
        Some("opus") => AudioMode::Passthrough,
        _ => AudioMode::Aac,
    }
}

fn flv_file_header() -> Bytes {
    Bytes::copy_from_slice(&flv::file_header(true, true))
}

/// Serves a watcher to its end.
pub async fn run(conn: Conn, request: Request) {
    let peer = conn.peer;
    let shown = shown_name(&conn.core.config, &request);
    let name = request.stream_name();
    let core = conn.core.clone();
    let guard = conn.guard.clone();
    if let Target::Stream { app, .. } = request.target()
        && !core.config.rtmp.play_allowed(app)
    {
        warn!(%peer, stream = %shown, "fstream watch refused: playing this app is not allowed");
        conn.close();
        return;
    }
    let mut viewer = Viewer::subscribe(
        &core,
        &guard,
        peer,
        Protocol::Fstream,
        (name.clone(), shown.clone()),
        Egress::Raw,
    );
    let control = Rc::new(WatchControl::default());
    // Whatever a watcher sends is discarded; its EOF ends the session.
    let reader_control = control.clone();
    conn.discard_input_until_eof(move || {
        reader_control.stopped.set(true);
        reader_control.notify.notify();
    });

    let started = match request.target() {
        Target::Stream { .. } => {
            viewer.watcher().set_egress(Egress::Flv);
            viewer.watcher().set_audio(audio_mode(&request));
            *control.prefix.borrow_mut() = Some(flv_file_header());
            info!(%peer, stream = %shown, "fstream watch started (FLV of a media stream)");
            Ok(())
        }
        Target::Channel { .. } => {
            await_channel(
                &core.fstream,
                peer,
                &name,
                &request,
                viewer.watcher(),
                &control,
            )
            .await
        }
    };
    match started {
        Ok(()) => {
            viewer.play(control).await;
        }
        Err(Refusal::WrongChannelPassword) => {
            warn!(%peer, stream = %shown, "fstream watch refused: wrong channel password");
        }
        Err(Refusal::LeftWhileWaiting) => {
            debug!(%peer, stream = %shown, "fstream watcher left while waiting for its broadcaster");
        }
    }
}

/// Why a channel watcher never started.
enum Refusal {
    WrongChannelPassword,
    LeftWhileWaiting,
}

/// Waits until the channel has a broadcaster, checks the channel password and sets the egress
/// the broadcast's format needs.
async fn await_channel(
    channels: &Channels,
    peer: SocketAddr,
    name: &str,
    request: &Request,
    watcher: &mut Watcher,
    control: &WatchControl,
) -> Result<(), Refusal> {
    let mut waiting_logged = false;
    let info = loop {
        if control.stopped() {
            return Err(Refusal::LeftWhileWaiting);
        }
        if let Some(info) = channels.get(name) {
            break info;
        }
        if !waiting_logged {
            info!(%peer, stream = %name, "fstream watcher waiting for the channel's broadcaster");
            waiting_logged = true;
        }
        watch::changed_or_told(watcher, control).await;
    };
    if let Some(expected) = &info.password {
        let given = request
            .channel_password
            .as_ref()
            .map_or(&[][..], |s| s.expose());
        // Compared even when none was given, so the time taken does not say which.
        if !expected.matches(given) || request.channel_password.is_none() {
            return Err(Refusal::WrongChannelPassword);
        }
    }
    match info.format {
        Format::Flv => {
            watcher.set_egress(Egress::Flv);
            watcher.set_audio(audio_mode(request));
            *control.prefix.borrow_mut() = Some(flv_file_header());
        }
        Format::AnnexB | Format::Opaque => watcher.set_egress(Egress::Raw),
    }
    info!(%peer, stream = %name, format = %info.format, "fstream watch started");
    Ok(())
}
