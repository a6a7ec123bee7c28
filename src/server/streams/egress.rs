//! A watcher's life, the same for every egress (RTMP play, fstream watch, HTTP-FLV): subscribe
//! to the stream, set the connection's limits, run the shared write loop ([`watch::run`]) and
//! log one "play ended" line with the reason, duration and bytes.
//!
//! A [`Viewer`] is made as soon as the request is admitted, before the stream is live, so a
//! watcher that arrives before its publisher misses nothing. However it ends — played to the
//! end, refused while waiting, or dropped with its connection — dropping it unsubscribes, lets
//! the core forget a stream nobody publishes or watches any more, and shuts the socket down so
//! the connection's other task (its reader) wakes and ends too.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::fanout::{Egress, Watcher};
use crate::metrics::{Counter, Protocol, Tracked};
use crate::server::Core;
use crate::server::guard::ConnGuard;
use crate::server::runtime;
use crate::server::watch::{self, Control, WatchEnd};

/// One watcher of one stream.
#[derive(Debug)]
pub struct Viewer {
    /// Declared before `release`: fields drop in order, and the core may forget the stream
    /// only once this cursor is gone.
    watcher: Watcher,
    release: Release,
    peer: SocketAddr,
    protocol: Protocol,
    /// The name as logs show it (an RTMP key redacted).
    shown: String,
    _watching: Tracked,
}

/// What dropping a [`Viewer`] does after its cursor is gone.
#[derive(Debug)]
struct Release {
    core: Rc<Core>,
    guard: Rc<ConnGuard>,
    /// The registry name, `app/key`.
    name: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.core.hub.forget_if_unused(&self.name);
        runtime::shutdown(self.guard.stream());
    }
}

impl Viewer {
    /// Subscribes the connection behind `guard` to `name` in `egress` form. From now on the
    /// connection has no request or idle deadline (a watcher only listens), but a write stuck
    /// for `fanout.slow_watcher_disconnect_ms` cuts it.
    pub fn subscribe(
        core: &Rc<Core>,
        guard: &Rc<ConnGuard>,
        peer: SocketAddr,
        protocol: Protocol,
        (name, shown): (String, String),
        egress: Egress,
    ) -> Viewer {
        guard.set_handshake_deadline(None);
        guard.set_idle_limit(None);
        guard.set_write_limit(Some(Duration::from_millis(
            core.config.fanout.slow_watcher_disconnect_ms,
        )));
        let watcher = core.hub.watch(&name, egress);
        // A stream this node does not have: in a cluster, pull it from its origin.
        if watcher.state() != crate::fanout::StreamState::Live {
            core.cluster.want(core, &name);
        }
        let _watching = core.hub.metrics().track(Counter::Watchers(protocol));
        Viewer {
            watcher,
            release: Release {
                core: core.clone(),
                guard: guard.clone(),
                name,
            },
            peer,
            protocol,
            shown,
            _watching,
        }
    }

    /// The watcher's cursor, for a driver that must wait or choose the egress before playing.
    pub fn watcher(&mut self) -> &mut Watcher {
        &mut self.watcher
    }

    /// The stream name as logs show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Plays the stream until it ends, the watcher falls too far behind, the connection's
    /// `control` stops it or the socket fails; logs how it ended.
    /// It owns `control`, so a connection can spawn this future as it is: wrapped in another
    /// that held the viewer and the control, the task would carry the viewer twice.
    pub async fn play(mut self, control: Rc<dyn Control>) -> WatchEnd {
        let started = Instant::now();
        let Release { core, guard, .. } = &self.release;
        let end = watch::run(
            guard.stream(),
            guard,
            &mut self.watcher,
            &*control,
            core.hub.metrics(),
        )
        .await;
        let reason = match (&end, guard.cut()) {
            (_, Some(cut)) => cut.to_string(),
            (WatchEnd::TooSlow { .. }, _) => {
                "too slow: dropped by the slow-watcher policy".to_owned()
            }
            (WatchEnd::StreamEnded, _) => "stream ended".to_owned(),
            (WatchEnd::Stopped, _) => "watcher closed the connection".to_owned(),
            (WatchEnd::Io(e), _) => format!("write failed: {e}"),
        };
        let (bytes_out, dropped_frames) = (self.watcher.bytes_sent, self.watcher.dropped_frames());
        info!(
            peer = %self.peer,
            protocol = self.protocol.label(),
            worker = core.index,
            stream = %self.shown,
            duration_ms = started.elapsed().as_millis() as u64,
            bytes_out,
            dropped_frames,
            audio = ?self.watcher.audio(),
            %reason,
            "play ended"
        );
        end
    }
}
