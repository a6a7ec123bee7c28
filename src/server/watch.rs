//! The write loop every watcher runs, whatever its protocol.
//!
//! Each pass gathers the connection's pending control bytes (RTMP status messages, an HTTP
//! response head) and then the watcher's next frames from the ring, as refcount clones, into
//! one vector, and writes it with a single vectored send: one SQE per watcher per wake, resumed
//! mid-slice after a partial write (on TLS: one encryption of the whole vector, then one write).
//! When the watcher is at the head it sleeps until the stream changes or the connection has
//! something to say. Before its first write the socket's kernel send buffer is bounded
//! (`SO_SNDBUF`, [`super::guard::SendBufferPolicy`]); a watcher cut by the slow-watcher policy is
//! aborted with a RST, so nothing stays queued for it in the kernel. The loop counts what every
//! watcher does
//! (bytes out, frames skipped, slow-watcher disconnects) in its core's metrics, by protocol.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::guard::{ConnGuard, Cut};
use super::net::Transport;
use super::runtime::BufResult;
use crate::fanout::{Fill, StreamState, Watcher};
use crate::metrics::{CoreMetrics, Counter, Protocol};

/// Most slices in one vectored write (well under IOV_MAX).
const MAX_BATCH_ITEMS: usize = 64;
/// Slices a steady-state write needs (control bytes plus a frame or two); the batch grows past
/// it for a burst and is shrunk back after, since it lives as long as the watcher.
const STEADY_BATCH_ITEMS: usize = 8;
/// Roughly the most bytes gathered for one write.
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// A one-slot wake-up within one core.
#[derive(Debug, Default)]
pub struct LocalNotify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.replace(false) {
            Poll::Ready(())
        } else {
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// What a protocol contributes to its watchers' write loop.
pub trait Control {
    /// The egress protocol, for metrics.
    fn protocol(&self) -> Protocol;
    /// Appends bytes that must go out before more media.
    fn drain(&self, batch: &mut Vec<Bytes>);
    /// The stream gained or lost its publisher.
    fn state_changed(&self, state: StreamState);
    /// True when the connection should end (its reader saw EOF or a stop request).
    fn stopped(&self) -> bool;
    /// Woken when `drain` has more or `stopped` changed.
    fn notify(&self) -> &LocalNotify;
}

/// Why a watcher's write loop ended.
#[derive(Debug)]
pub enum WatchEnd {
    /// The stream is over (its publisher left and did not return).
    StreamEnded,
    /// The watcher stayed behind past the policy's limit.
    TooSlow {
        dropped_frames: u64,
    },
    /// The connection's reader ended it.
    Stopped,
    Io(io::Error),
}

/// Waits until the watcher's stream changes (frames, publisher state) or the connection's
/// control side has something to say. Both are polled every time so neither wake is missed.
pub async fn changed_or_told(watcher: &mut Watcher, control: &dyn Control) {
    poll_fn(|cx| {
        let changed = watcher.poll_changed(cx);
        let told = control.notify().poll(cx);
        if changed.is_ready() || told.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Runs one watcher until its stream ends, it falls too far behind, or its socket fails.
pub async fn run(
    socket: &Transport,
    guard: &ConnGuard,
    watcher: &mut Watcher,
    control: &dyn Control,
    metrics: &CoreMetrics,
) -> WatchEnd {
    let protocol = control.protocol();
    let mut dropped_counted = watcher.dropped_frames();
    let mut count_drops = |watcher: &Watcher| {
        let dropped = watcher.dropped_frames();
        if dropped != dropped_counted {
            metrics.add(
                Counter::DroppedFrames(protocol),
                dropped.wrapping_sub(dropped_counted),
            );
            dropped_counted = dropped;
        }
    };
    let mut batch: Vec<Bytes> = Vec::with_capacity(STEADY_BATCH_ITEMS);
    let mut state = watcher.state();
    let mut send_buffer_bounded = false;
    loop {
        if control.stopped() {
            return WatchEnd::Stopped;
        }
        let now_state = watcher.state();
        if now_state != state {
            state = now_state;
            control.state_changed(state);
            if state == StreamState::Ended {
                control.drain(&mut batch);
                if !batch.is_empty() {
                    let BufResult(_, _) = socket.write_vectored_all(batch).await;
                }
                return WatchEnd::StreamEnded;
            }
        }
        control.drain(&mut batch);
        // One clock read per pass: the fill's lag check and the write's stall deadline share it.
        let now = Instant::now();
        let fill = watcher.fill(now, &mut batch, MAX_BATCH_ITEMS, MAX_BATCH_BYTES);
        let traced = super::trace::filled();
        count_drops(watcher);
        match fill {
            Fill::Disconnect => {
                metrics.add(Counter::SlowDisconnects(protocol), 1);
                // What is still queued for it would sit in the kernel until it reads: reset.
                guard.abort_slow();
                return WatchEnd::TooSlow {
                    dropped_frames: watcher.dropped_frames(),
                };
            }
            Fill::Ready | Fill::Idle => {}
        }
        if batch.is_empty() {
            changed_or_told(watcher, control).await;
            continue;
        }
        let len: usize = batch.iter().map(Bytes::len).sum();
        if !send_buffer_bounded {
            // Sized at the first media write, when the stream's rate can be measured.
            guard.bound_send_buffer(watcher.stream_rate());
            send_buffer_bounded = true;
        }
        guard.write_started(now);
        let BufResult(result, returned) = socket.write_vectored_all(batch).await;
        guard.write_finished();
        super::trace::sent(traced);
        batch = returned;
        batch.clear();
        if batch.capacity() > STEADY_BATCH_ITEMS * 4 {
            // A join burst (the cached GOP) is over: steady state is a frame or two per write.
            batch = Vec::with_capacity(STEADY_BATCH_ITEMS);
        }
        if let Err(e) = result {
            if guard.cut() == Some(Cut::WriteStalled) {
                metrics.add(Counter::SlowDisconnects(protocol), 1);
            }
            return WatchEnd::Io(e);
        }
        watcher.bytes_sent += len as u64;
        metrics.add(Counter::BytesSent(protocol), len as u64);
    }
}
