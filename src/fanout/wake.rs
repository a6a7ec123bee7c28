//! Write coalescing: `fanout.write_coalesce_us`.
//!
//! On a quiet node every frame wakes every watcher and costs one send per watcher: with 30 fps
//! video and ~47 AAC frames a second that is ~77 sends per watcher per second, most of them a few
//! hundred bytes of audio, and each send pays the whole TCP path. With coalescing on, a frame
//! that may wait ([`EncodedFrame::may_wait`]: audio, metadata, sequence headers) does not wake its
//! watchers: the stream holds their wakers until a frame that may not wait arrives (coded video,
//! which then leaves in the same write as the audio before it) or until its hold has lasted
//! between half the window and the window, whichever is first. Video is never delayed; audio
//! at most by the window. The bookkeeping is a vector append per held frame and one timer per
//! core, nothing per watcher.
//!
//! A watcher that is running anyway (finishing a write, say) does not take held frames either:
//! the ring keeps them from fills until the hold ends ([`Ring::end_hold`]). Otherwise every
//! watcher still busy with the last video frame when audio arrived sent that audio alone on
//! its next pass: at 2000 watchers of one stream, a sixth to a quarter of all operations.
//!
//! [`Ring::end_hold`]: super::Ring::end_hold
//!
//! [`EncodedFrame::may_wait`]: super::EncodedFrame::may_wait

use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::hub::LocalStream;

/// The streams of one core that hold wakes, in two generations: a hold waits between half
/// the window and the window, whichever stream it belongs to (one per-core timer, ticking every
/// half window while anything is held, and no clock in this layer). A window shared by every
/// stream of the core would instead release a stream's audio as soon as *another* stream's
/// window ends, often just before the video it was waiting for: with many streams per core
/// most held audio would still leave alone.
#[derive(Debug, Default)]
pub struct DeferredWakes {
    /// Holds made since the last tick.
    fresh: RefCell<Vec<Hold>>,
    /// Holds made before the last tick: released at the next one.
    aging: RefCell<Vec<Hold>>,
    /// Spare vector swapped with `aging` while releasing, so releasing never allocates.
    releasing: RefCell<Vec<Hold>>,
    /// The core's flush task, waiting for the first hold.
    flusher: RefCell<Option<Waker>>,
}

/// A stream's hold, by the id the stream gave it: a hold its stream released meanwhile (a
/// video frame woke everyone) is stale and skipped.
#[derive(Debug)]
struct Hold {
    stream: Rc<LocalStream>,
    id: u64,
}

impl DeferredWakes {
    /// Notes that `stream` started holding wakes (its hold number `id`); wakes the flush task
    /// if nothing was held.
    pub(super) fn hold(&self, stream: Rc<LocalStream>, id: u64) {
        let idle = self.is_idle();
        self.fresh.borrow_mut().push(Hold { stream, id });
        if idle && let Some(flusher) = self.flusher.borrow_mut().take() {
            flusher.wake();
        }
    }

    fn is_idle(&self) -> bool {
        self.fresh.borrow().is_empty() && self.aging.borrow().is_empty()
    }

    /// Ready while anything is held: the flush task then sleeps half the window and calls
    /// [`DeferredWakes::tick`], until nothing is.
    pub fn poll_pending(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_idle() {
            *self.flusher.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// One half-window step: wakes the watchers of every hold older than the last tick, and
    /// ages the holds made since. Returns how many watchers were woken.
    pub fn tick(&self) -> usize {
        let mut releasing = self.releasing.borrow_mut();
        std::mem::swap(&mut *releasing, &mut *self.aging.borrow_mut());
        std::mem::swap(&mut *self.aging.borrow_mut(), &mut *self.fresh.borrow_mut());
        releasing
            .drain(..)
            .map(|hold| hold.stream.release_held(hold.id))
            .sum()
    }
}
