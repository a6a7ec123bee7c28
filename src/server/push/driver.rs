//! One push: a watcher of a source stream whose socket is an outbound RTMP client connection.
//!
//! An attempt connects, runs the sans-IO [`ClientSession`] through handshake, `connect`,
//! `createStream` and `publish`, and once `NetStream.Publish.Start` arrives starts a watcher
//! (its own cursor into this core's ring, at the newest keyframe) and writes like every other
//! watcher does (see [`crate::server::watch`]): one vectored write per wake of the frames due,
//! refcount clones of the chunk bytes the publisher's core built, resumed after a partial write.
//! A second task reads the destination (acknowledgements, pings, errors, the close).
//!
//! Isolation: the ring's slow-watcher policy bounds how far a push falls behind (media time
//! and ring bytes: it skips to the newest keyframe and counts the drop), the connection guard
//! cuts a write that makes no progress, and a push that stays behind is closed and reconnected.
//! Nothing a destination does reaches the ingest, the watchers or the other destinations.
//!
//! Between attempts the push backs off: 1 s doubling to 30 s with jitter, back to 1 s after a
//! connection that lasted a minute; a refusal (`NetStream.Publish.BadName` and the like, or a
//! close right after `publish`) waits at least 60 s and shows as `failed_auth`.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{info, warn};

use super::status::{PushState, PushStatus};
use crate::config::{AudioMode, PushConfig, PushUrl};
use crate::fanout::{
    AudioMode as RingAudio, Content, Egress, EncodedFrame, Fill, StreamState, Watcher,
};
use crate::media::codec::{audio_is_opus, video_is_enhanced};
use crate::media::{Frame, FrameRole, MediaKind};
use crate::proto::rtmp::{
    ChunkLimits, ClientConfig, ClientEvent, ClientSession, Limits, MEDIA_STREAM_ID,
};
use crate::server::Core;
use crate::server::guard::{ConnGuard, Cut};
use crate::server::net::{ClientTls, Transport, connect};
use crate::server::reader::Reader;
use crate::server::runtime::{self, BufResult};
use crate::server::watch::LocalNotify;

/// Time to open the connection (DNS, TCP and the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from the TCP connection to `NetStream.Publish.Start`.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// A close this soon after `NetStream.Publish.Start` counts as a refusal (platforms that check
/// the key after accepting the publish close at once).
const REFUSED_IF_CLOSED_WITHIN: Duration = Duration::from_millis(1500);
/// Most slices and bytes in one write (as for watchers).
const MAX_BATCH_ITEMS: usize = 64;
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Largest message accepted from a destination (they send only small replies).
const MAX_REPLY: u32 = 64 * 1024;

/// The backoff between attempts (sans-IO: the caller brings the randomness).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// The least wait after a refusal.
pub const REFUSED_WAIT: Duration = Duration::from_secs(60);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The wait before the next attempt, after one that lasted `lasted`. `jitter` in [0, 1)
    /// spreads it over ±25 % (refusals: up to +25 % over the 60 s floor).
    pub fn after_failure(&mut self, refused: bool, lasted: Duration, jitter: f64) -> Duration {
        if lasted >= STABLE_AFTER {
            self.next = BACKOFF_MIN;
        }
        let jitter = jitter.clamp(0.0, 1.0);
        if refused {
            return REFUSED_WAIT.mul_f64(1.0 + jitter * 0.25);
        }
        let base = self.next;
        self.next = (base * 2).min(BACKOFF_MAX);
        base.mul_f64(0.75 + jitter * 0.5)
            .clamp(BACKOFF_MIN, BACKOFF_MAX)
    }
}

/// How an attempt ended.
#[derive(Debug)]
enum End {
    /// The source stream is over: stop for good.
    SourceEnded,
    Failed {
        error: String,
        refused: bool,
    },
}

fn failed(error: impl Into<String>) -> End {
    End::Failed {
        error: error.into(),
        refused: false,
    }
}

/// One push of `stream` to `config`'s destination.
pub struct PushTask {
    pub core: Rc<Core>,
    pub config: Arc<PushConfig>,
    pub url: PushUrl,
    pub stream: String,
    pub status: Arc<PushStatus>,
}

/// Runs the push until its source ends (or the task is dropped).
pub async fn run(task: PushTask) {
    let mut backoff = Backoff::default();
    loop {
        task.status.set(PushState::Connecting, None);
        let started = Instant::now();
        match attempt(&task).await {
            End::SourceEnded => {
                task.status.set(PushState::Stopped, None);
                info!(push = %task.config.id, stream = %task.status.stream, "push stopped: the source ended");
                return;
            }
            End::Failed { error, refused } => {
                let delay = backoff.after_failure(refused, started.elapsed(), rand::random());
                let state = if refused {
                    PushState::FailedAuth
                } else {
                    PushState::Backoff
                };
                warn!(
                    push = %task.config.id,
                    stream = %task.status.stream,
                    url = %task.status.url,
                    error = %error,
                    state = state.label(),
                    retry_in_ms = delay.as_millis() as u64,
                    "push failed"
                );
                task.status.set(state, Some(error));
                PushStatus::add(&task.status.reconnects, 1);
                task.status
                    .lag_ms
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                runtime::sleep(delay).await;
            }
        }
    }
}

/// The codes by which a destination refuses a publish.
fn is_refusal(code: &str) -> bool {
    matches!(
        code,
        "NetStream.Publish.BadName"
            | "NetStream.Publish.Unauthorized"
            | "NetStream.Publish.Denied"
            | "NetConnection.Connect.Rejected"
    )
}

/// The connection shared by the writer (this task) and the reader task.
struct Shared {
    session: RefCell<ClientSession>,
    notify: LocalNotify,
    /// The reader fed the session: it may have bytes to send.
    output_queued: Cell<bool>,
    /// Why the reader ended the connection, once it has.
    ended: RefCell<Option<End>>,
}

impl Shared {
    fn drain(&self, batch: &mut Vec<Bytes>) {
        if self.output_queued.replace(false) {
            let mut session = self.session.borrow_mut();
            while let Some(bytes) = session.poll_transmit() {
                batch.push(bytes);
            }
        }
    }
}

async fn attempt(task: &PushTask) -> End {
    let core = &task.core;
    let Some(source) = core.hub.registry().get(&task.stream) else {
        return End::SourceEnded;
    };
    if source.generation() == 0 {
        return End::SourceEnded;
    }
    let tls = match client_tls(task) {
        Ok(tls) => tls,
        Err(error) => return failed(error),
    };
    let conn = match connect(&task.url.host, task.url.port, tls.as_ref(), CONNECT_TIMEOUT).await {
        Ok(conn) => conn,
        Err(e) => return failed(format!("connect: {e}")),
    };
    let stream = Rc::new(conn);
    let guard = core.sweeper.guard(stream.clone(), Instant::now());
    guard.set_handshake_deadline(Some(Instant::now() + PUBLISH_TIMEOUT));
    let end = publish(task, &guard).await;
    stream.shutdown();
    end
}

/// The TLS settings of an rtmps:// destination: its `tls_ca` only, else webpki's roots;
/// certificates are always checked against the URL's host name (also the SNI).
fn client_tls(task: &PushTask) -> Result<Option<ClientTls>, String> {
    if !task.url.tls {
        return Ok(None);
    }
    match &task.config.tls_ca {
        Some(ca) => ClientTls::from_ca_file(ca)
            .map(Some)
            .map_err(|e| format!("tls_ca: {e}")),
        None => ClientTls::webpki_roots()
            .map(Some)
            .map_err(|e| format!("TLS roots: {e}")),
    }
}

fn session_config(core: &Core, four_cc_list: bool) -> ClientConfig {
    ClientConfig {
        limits: Limits {
            chunk: ChunkLimits {
                max_message_len: MAX_REPLY,
                max_chunk_streams: 16,
                ..ChunkLimits::default()
            },
            ..Limits::default()
        },
        // The chunk size the publisher's core chunked every frame with, so frames go out as
        // they are (see `Sender`).
        chunk_size: u32::try_from(core.hub.chunk_size()).unwrap_or(core.config.rtmp.chunk_size),
        digest_handshake: true,
        four_cc_list,
    }
}

/// Handshake, connect, publish; then stream until the end.
async fn publish(task: &PushTask, guard: &Rc<ConnGuard>) -> End {
    let core = &task.core;
    let stream = guard.stream().clone();
    // The Enhanced RTMP fourCcList goes only to destinations of a stream that needs it.
    let watcher = core.hub.watch(&task.stream, Egress::Rtmp);
    let enhanced = watcher
        .video_header()
        .is_some_and(|h| video_is_enhanced(h.payload_head()));
    drop(watcher);
    let mut random = [0u8; 1528];
    rand::fill(&mut random[..]);
    let mut session = ClientSession::new(session_config(core, enhanced), random);
    session.connect(&task.url.connect_app(), &task.url.tc_url());
    session.publish(&task.config.publish_name(&task.stream));
    let mut input = BytesMut::new();
    let mut reader = Reader::default();
    loop {
        let mut out = Vec::new();
        while let Some(b) = session.poll_transmit() {
            out.push(b);
        }
        if !out.is_empty() {
            let BufResult(result, _) = stream.write_vectored_all(out).await;
            if let Err(e) = result {
                return failed(format!("write: {e}"));
            }
        }
        let mut started = false;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::PublishStarted { .. } => started = true,
                ClientEvent::Status { code, level, .. }
                    if level == "error" || is_refusal(&code) =>
                {
                    return End::Failed {
                        refused: is_refusal(&code),
                        error: format!("the destination answered {code}"),
                    };
                }
                _ => {}
            }
        }
        if started {
            break;
        }
        let read = reader.read_into(&stream, &mut input).await;
        if matches!(read, Ok(0) | Err(_)) {
            // A close after `publish` went out, before it was accepted, is a refusal.
            let refused = session.stream_id().is_some() && guard.cut().is_none();
            let how = match &read {
                Err(e) => format!("the connection failed ({e})"),
                _ => "the destination closed the connection".into(),
            };
            let error = match guard.cut() {
                Some(cut) => format!("no NetStream.Publish.Start in time ({cut})"),
                None if refused => format!("{how} after publish"),
                None => format!("{how} before publish"),
            };
            return End::Failed { error, refused };
        }
        if let Err(e) = session.handle_input(&mut input) {
            return failed(format!("protocol error from the destination: {e}"));
        }
    }
    guard.set_handshake_deadline(None);
    guard.set_write_limit(Some(Duration::from_millis(
        core.config.fanout.slow_watcher_disconnect_ms,
    )));
    let shared = Rc::new(Shared {
        session: RefCell::new(session),
        notify: LocalNotify::default(),
        output_queued: Cell::new(true),
        ended: RefCell::new(None),
    });
    let live_since = Instant::now();
    task.status.set(PushState::Live, None);
    info!(push = %task.config.id, stream = %task.status.stream, url = %task.status.url, "push live");
    let read_task = runtime::spawn(read_loop(shared.clone(), stream.clone(), input, live_since));
    let end = stream_frames(task, guard, &shared).await;
    stream.shutdown();
    drop(read_task);
    end
}

/// Reads the destination after the publish started: acknowledgements, pings, errors, the close.
async fn read_loop(shared: Rc<Shared>, stream: Rc<Transport>, mut input: BytesMut, since: Instant) {
    let mut reader = Reader::default();
    let end = loop {
        if !input.is_empty() {
            let fed = shared.session.borrow_mut().handle_input(&mut input);
            if let Err(e) = fed {
                break failed(format!("protocol error from the destination: {e}"));
            }
            shared.output_queued.set(true);
            let mut refusal = None;
            while let Some(event) = shared.session.borrow_mut().poll_event() {
                if let ClientEvent::Status { code, level, .. } = event
                    && (level == "error" || is_refusal(&code))
                {
                    refusal = Some(End::Failed {
                        refused: is_refusal(&code),
                        error: format!("the destination answered {code}"),
                    });
                }
            }
            if let Some(end) = refusal {
                break end;
            }
            shared.notify.notify();
        }
        let read = reader.read_into(&stream, &mut input).await;
        if matches!(read, Ok(0) | Err(_)) {
            let refused = since.elapsed() < REFUSED_IF_CLOSED_WITHIN;
            let how = match &read {
                Err(e) => format!("the connection failed ({e})"),
                _ => "the destination closed the connection".into(),
            };
            let error = if refused {
                format!("{how} right after publish")
            } else {
                how
            };
            break End::Failed { error, refused };
        }
    };
    shared.ended.borrow_mut().get_or_insert(end);
    shared.notify.notify();
    // A write stuck on the dead connection completes at once.
    stream.shutdown();
}

/// What one frame becomes for this destination.
struct Sender<'a> {
    audio: AudioMode,
    /// Frames can go out as the publisher's core chunked them (same message stream id and
    /// chunk size).
    zero_copy: bool,
    session: &'a RefCell<ClientSession>,
    /// Set when Opus audio had to be withheld.
    opus_withheld: bool,
}

impl Sender<'_> {
    fn take(&mut self, frame: &Arc<EncodedFrame>, batch: &mut Vec<Bytes>) -> Option<usize> {
        let Content::Media(kind) = frame.content else {
            return None;
        };
        if kind == MediaKind::Audio {
            match self.audio {
                AudioMode::Drop => return None,
                AudioMode::Passthrough => {}
                AudioMode::Auto | AudioMode::Aac => {
                    // The cursor asked for the AAC rendition; Opus arriving all the same means
                    // there is none (a build without the `aac` feature): withhold it.
                    if audio_is_opus(frame.payload_head()) {
                        self.opus_withheld = true;
                        return None;
                    }
                }
            }
        }
        if self.zero_copy && frame.role != FrameRole::Metadata {
            let bytes = frame.rtmp();
            batch.push(bytes.clone());
            return Some(bytes.len());
        }
        // Metadata goes as `@setDataFrame` at timestamp 0, as encoders send it (ffmpeg's FLV
        // reader takes metadata at any other time for a data stream of its own); other stream
        // ids or chunk sizes need the frame chunked for this connection.
        let mut session = self.session.borrow_mut();
        let timestamp = match frame.role {
            FrameRole::Metadata => 0,
            _ => frame.timestamp,
        };
        let frame = Frame {
            kind,
            timestamp,
            role: frame.role,
            payload: frame.payload(),
        };
        session.send_frame(&frame).ok()?;
        let mut n = 0;
        while let Some(bytes) = session.poll_transmit() {
            n += bytes.len();
            batch.push(bytes);
        }
        Some(n)
    }
}

/// The watcher write loop of a push.
async fn stream_frames(task: &PushTask, guard: &Rc<ConnGuard>, shared: &Rc<Shared>) -> End {
    let core = &task.core;
    let status = &task.status;
    let mut watcher = core.hub.watch(&task.stream, Egress::Rtmp);
    // Opus (FTL) is replaced by the stream's AAC rendition for destinations that need AAC.
    watcher.set_audio(match task.config.audio {
        AudioMode::Auto | AudioMode::Aac => RingAudio::Aac,
        AudioMode::Passthrough => RingAudio::Passthrough,
        AudioMode::Drop => RingAudio::Drop,
    });
    let zero_copy = {
        let session = shared.session.borrow();
        session.stream_id() == Some(MEDIA_STREAM_ID)
            && session.out_chunk_size() as usize == core.hub.chunk_size()
    };
    let mut sender = Sender {
        audio: task.config.audio,
        zero_copy,
        session: &shared.session,
        opus_withheld: false,
    };
    let mut opus_reported = false;
    let mut dropped_counted = 0;
    let mut batch: Vec<Bytes> = Vec::with_capacity(8);
    let stream = guard.stream().clone();
    loop {
        if let Some(end) = shared.ended.borrow_mut().take() {
            return end;
        }
        if watcher.state() == StreamState::Ended {
            shared.session.borrow_mut().unpublish();
            shared.output_queued.set(true);
            shared.drain(&mut batch);
            let BufResult(_, _) = stream.write_vectored_all(batch).await;
            return End::SourceEnded;
        }
        shared.drain(&mut batch);
        let fill = watcher.fill_with(Instant::now(), MAX_BATCH_ITEMS, MAX_BATCH_BYTES, |f| {
            sender.take(f, &mut batch)
        });
        let dropped = watcher.dropped_frames();
        if dropped != dropped_counted {
            PushStatus::add(&status.dropped_frames, dropped - dropped_counted);
            dropped_counted = dropped;
        }
        status.lag_ms.store(
            watcher.lag().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if sender.opus_withheld && !opus_reported {
            opus_reported = true;
            let error = "the source's audio is Opus, which this destination cannot take, and \
                         this build has no AAC rendition (the `aac` feature): sending video only";
            warn!(push = %task.config.id, stream = %status.stream, "{error}");
            status.set(PushState::Live, Some(error.into()));
        }
        if fill == Fill::Disconnect {
            return failed(format!(
                "fell behind for {} ms: reconnecting",
                core.config.fanout.slow_watcher_disconnect_ms
            ));
        }
        if batch.is_empty() {
            changed_or_told(&mut watcher, shared).await;
            continue;
        }
        let len: usize = batch.iter().map(Bytes::len).sum();
        guard.write_started(Instant::now());
        let BufResult(result, returned) = stream.write_vectored_all(batch).await;
        guard.write_finished();
        batch = returned;
        batch.clear();
        if let Err(e) = result {
            return failed(match guard.cut() {
                Some(Cut::WriteStalled) => format!(
                    "the destination stopped reading (no write progress for {} ms)",
                    core.config.fanout.slow_watcher_disconnect_ms
                ),
                _ => format!("write: {e}"),
            });
        }
        PushStatus::add(&status.bytes_sent, len as u64);
    }
}

/// Waits until the stream changes or the reader has something for the writer.
async fn changed_or_told(watcher: &mut Watcher, shared: &Shared) {
    poll_fn(|cx| {
        let changed = watcher.poll_changed(cx);
        let told = shared.notify.poll(cx);
        if changed.is_ready() || told.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets_after_a_stable_minute() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..7)
            .map(|_| b.after_failure(false, Duration::ZERO, 0.5).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        let low = b.after_failure(false, Duration::ZERO, 0.0);
        assert!(low >= Duration::from_millis(22_500), "{low:?}");
        let reset = b.after_failure(false, STABLE_AFTER, 0.5);
        assert_eq!(reset, BACKOFF_MIN);
        assert_eq!(b.after_failure(false, Duration::ZERO, 0.5).as_secs(), 2);
    }

    #[test]
    fn a_refusal_waits_at_least_a_minute() {
        let mut b = Backoff::default();
        for jitter in [0.0, 0.5, 0.999] {
            let wait = b.after_failure(true, Duration::ZERO, jitter);
            assert!(wait >= REFUSED_WAIT && wait <= REFUSED_WAIT * 2, "{wait:?}");
        }
    }
}
