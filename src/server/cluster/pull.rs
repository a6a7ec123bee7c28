//! One node's pull of one stream: resolve the origin, play the stream from it over RTMP and
//! publish what arrives into the local fan-out as a local publisher ([`Ingest::claim_pulled`]).
//!
//! The pull lives while the stream has local consumers: `cluster.idle_close_ms` after the last
//! one left it ends (a live connection is shut down by its monitor). A pull that fails — the
//! origin refused, closed, went quiet, the directory named a dead address — logs why and
//! retries after a backoff; meanwhile the stream waits out its grace window on this node, so
//! watchers stay connected and the timeline continues when the pull resumes (at the origin's
//! cached keyframe). A local publisher of the same name ends the pull: it takes the stream over.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Cluster, shown};
use crate::config::OriginAddr;
use crate::proto::rtmp::{ChunkLimits, ClientConfig, ClientEvent, Limits};
use crate::server::Core;
use crate::server::rtmp_client::{RtmpClient, Target};
use crate::server::runtime;
use crate::server::streams::Ingest;

/// Time to open the connection to the origin.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An origin that sends nothing for this long (no media, no reply) is given up on.
const STALL_TIMEOUT: Duration = Duration::from_secs(8);
/// How often the monitor checks for idleness and stalls.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Viewers of a stream no origin has wait this long, then the stream ends for them (RTMP
/// players get `NetStream.Play.StreamNotFound` and the close; HTTP-FLV the close).
pub const ORIGIN_WAIT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a pull needs.
pub struct Pull {
    pub core: Rc<Core>,
    pub cluster: Arc<Cluster>,
    /// The stream, `app/key`.
    pub name: String,
}

/// How one attempt ended.
enum Attempt {
    /// No local consumer for `idle_close_ms`: the pull is over.
    Idle,
    /// A local publisher has the stream: the pull is over.
    LocalPublisher,
    Failed(String),
}

/// Removes the pull from the node's set however the task ends.
struct Listed<'a>(&'a Pull);

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.0.cluster.pull_ended(&self.0.name);
    }
}

/// Counts the stream in `ringcast_cluster_upstreams` while media flows through the pull.
struct Upstream(Arc<Cluster>);

impl Upstream {
    fn new(cluster: &Arc<Cluster>) -> Upstream {
        cluster.upstreams.fetch_add(1, Ordering::Relaxed);
        cluster.pulls_started.fetch_add(1, Ordering::Relaxed);
        Upstream(cluster.clone())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.0.upstreams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pull {
    /// Local consumers of the stream on every core.
    fn consumers(&self) -> usize {
        self.core
            .hub
            .registry()
            .get(&self.name)
            .map_or(0, |s| s.watcher_count.load(Ordering::Acquire))
    }

    /// The stream's publisher generation here (0: nobody, pull included, ever published it).
    fn generation(&self) -> u64 {
        self.core
            .hub
            .registry()
            .get(&self.name)
            .map_or(0, |s| s.generation())
    }

    fn never_published(&self) -> bool {
        self.generation() == 0
    }

    /// Ends the stream for the viewers waiting for it: no origin has it.
    fn not_found(&self, reason: &str) {
        self.cluster.mark_not_found(&self.name);
        let registry = self.core.hub.registry();
        if let Some(stream) = registry.get(&self.name) {
            registry.broadcast(&stream, crate::fanout::StreamMsg::Ended);
        }
        info!(
            stream = %shown(&self.name),
            %reason,
            waited_ms = ORIGIN_WAIT.as_millis() as u64,
            "pull: stream not found on any origin; its viewers were told it is over"
        );
    }

    /// True if the stream is live on this node (someone publishes it here).
    fn live_here(&self) -> bool {
        self.core
            .hub
            .registry()
            .get(&self.name)
            .is_some_and(|s| s.is_live())
    }
}

/// Runs the pull until the stream has no local consumer (or a local publisher) any more.
pub async fn run(pull: Pull) {
    let listed = Listed(&pull);
    let pull = listed.0;
    let mut backoff = BACKOFF_MIN;
    let mut idle_since: Option<Instant> = None;
    let mut last_error = String::new();
    let mut attempts = 0u64;
    // Since when no origin delivered anything (reset by every pull that did).
    let mut unserved_since = Instant::now();
    loop {
        if unserved_since.elapsed() >= ORIGIN_WAIT && pull.never_published() {
            pull.not_found(&last_error);
            return;
        }
        if pull.consumers() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= pull.cluster.idle_close {
                debug!(stream = %shown(&pull.name), "pull: no local consumer left; not pulling");
                return;
            }
        } else {
            idle_since = None;
        }
        if pull.live_here() {
            return;
        }
        let targets = match pull.cluster.resolve(&pull.name).await {
            Ok(targets) => targets,
            Err(reason) => {
                if reason != last_error {
                    info!(stream = %shown(&pull.name), %reason, "pull: no origin to pull from yet; retrying");
                    last_error = reason;
                }
                Vec::new()
            }
        };
        for target in &targets {
            if attempts > 0 {
                pull.cluster.pull_reconnects.fetch_add(1, Ordering::Relaxed);
            }
            attempts += 1;
            let started = Instant::now();
            let ended = attempt(pull, target).await;
            if pull.generation() > 0 {
                unserved_since = Instant::now();
            }
            match ended {
                Attempt::Idle => {
                    info!(stream = %shown(&pull.name), "pull closed: no local consumer for cluster.idle_close_ms");
                    return;
                }
                Attempt::LocalPublisher => {
                    info!(stream = %shown(&pull.name), "pull ended: a local publisher has the stream");
                    return;
                }
                Attempt::Failed(reason) => {
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = BACKOFF_MIN;
                    }
                    warn!(
                        stream = %shown(&pull.name),
                        origin = %format!("{}:{}", target.host, target.port),
                        %reason,
                        retry_in_ms = backoff.as_millis() as u64,
                        "pull failed; retrying"
                    );
                    last_error = reason;
                }
            }
        }
        runtime::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Why the monitor shut the connection down.
#[derive(Default)]
struct Monitor {
    last_input: Cell<Option<Instant>>,
    idle: Cell<bool>,
    stalled: Cell<bool>,
    done: Cell<bool>,
}

/// Play statuses after which no media will come on this connection.
fn is_final_status(code: &str) -> bool {
    matches!(
        code,
        "NetStream.Play.StreamNotFound"
            | "NetStream.Play.Failed"
            | "NetStream.Play.UnpublishNotify"
            | "NetStream.Play.Stop"
            | "NetConnection.Connect.Rejected"
            | "NetConnection.Connect.Failed"
    )
}

/// One connection to `target`: play the stream and publish it here until it ends.
async fn attempt(pull: &Pull, target: &OriginAddr) -> Attempt {
    let Some((app, key)) = pull.name.rsplit_once('/') else {
        return Attempt::Failed("the stream name has no app".to_owned());
    };
    let app = target.app.as_deref().unwrap_or(app);
    let config = &pull.core.config.rtmp;
    let client_config = ClientConfig {
        limits: Limits {
            chunk: ChunkLimits {
                max_message_len: config.max_message_size,
                max_chunk_streams: config.max_chunk_streams as usize,
                ..ChunkLimits::default()
            },
            ..Limits::default()
        },
        ..ClientConfig::default()
    };
    let to = Target {
        host: &target.host,
        port: target.port,
        tls: None,
        app,
    };
    let mut client = match RtmpClient::connect(&to, client_config, CONNECT_TIMEOUT).await {
        Ok(client) => client,
        Err(e) => return Attempt::Failed(format!("connect: {e}")),
    };
    client.session().play(key);
    let monitor = Rc::new(Monitor::default());
    monitor.last_input.set(Some(Instant::now()));
    runtime::spawn(watch_connection(
        monitor.clone(),
        client.transport().clone(),
        pull.cluster.clone(),
        pull.core.clone(),
        pull.name.clone(),
    ))
    .detach();
    let mut ingest: Option<(Ingest, Upstream)> = None;
    let mut counted = 0u64;
    let end = loop {
        let event = client.next_event().await;
        pull.cluster
            .pull_bytes
            .fetch_add(client.bytes_in - counted, Ordering::Relaxed);
        counted = client.bytes_in;
        monitor.last_input.set(Some(Instant::now()));
        match event {
            Ok(Some(ClientEvent::Media(frame))) => {
                if ingest.is_none() {
                    match Ingest::claim_pulled(&pull.core, &pull.name, shown(&pull.name)) {
                        Ok(claimed) => {
                            info!(
                                stream = %claimed.shown(),
                                origin = %format!("{}:{}", target.host, target.port),
                                worker = pull.core.index,
                                "pull started"
                            );
                            ingest = Some((claimed, Upstream::new(&pull.cluster)));
                        }
                        Err(_) => break Attempt::LocalPublisher,
                    }
                }
                if let Some((ingest, _)) = ingest.as_mut()
                    && ingest.push(frame).is_err()
                {
                    break Attempt::LocalPublisher;
                }
            }
            Ok(Some(ClientEvent::Status {
                code, description, ..
            })) if is_final_status(&code) => {
                break Attempt::Failed(format!("origin: {code} {description}"));
            }
            Ok(Some(_)) => {}
            Ok(None) => break Attempt::Failed("the origin closed the connection".to_owned()),
            Err(e) => break Attempt::Failed(e.to_string()),
        }
    };
    monitor.done.set(true);
    client.transport().shutdown();
    if let Some((ingest, _upstream)) = ingest {
        info!(stream = %ingest.shown(), frames = ingest.frames(), "pull ended");
        ingest.end();
    }
    if monitor.idle.get() {
        return Attempt::Idle;
    }
    if monitor.stalled.get() {
        return Attempt::Failed(format!("the origin sent nothing for {STALL_TIMEOUT:?}"));
    }
    end
}

/// Shuts the pull's connection down once the stream has had no local consumer for
/// `idle_close_ms`, or the origin has been silent for [`STALL_TIMEOUT`].
async fn watch_connection(
    monitor: Rc<Monitor>,
    transport: Rc<crate::server::net::Transport>,
    cluster: Arc<Cluster>,
    core: Rc<Core>,
    name: String,
) {
    let mut idle_since: Option<Instant> = None;
    while !monitor.done.get() {
        runtime::sleep(CHECK_EVERY).await;
        let consumers = core
            .hub
            .registry()
            .get(&name)
            .map_or(0, |s| s.watcher_count.load(Ordering::Acquire));
        let now = Instant::now();
        if consumers == 0 {
            let since = *idle_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= cluster.idle_close {
                monitor.idle.set(true);
                transport.shutdown();
                return;
            }
        } else {
            idle_since = None;
        }
        if monitor
            .last_input
            .get()
            .is_some_and(|last| now.saturating_duration_since(last) >= STALL_TIMEOUT)
        {
            monitor.stalled.set(true);
            transport.shutdown();
            return;
        }
    }
}
