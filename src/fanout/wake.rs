//! Write coalescing: `fanout.write_coalesce_us`.
//!
//! On a quiet node every frame wakes every watcher and costs one send per watcher: with 30 fps
//! video and ~47 AAC frames a second that is ~77 sends per watcher per second, most of them a few
//! hundred bytes of audio, and each send pays the whole TCP path. With coalescing on, a frame
//! that may wait ([`EncodedFrame::may_wait`]: audio, metadata, sequence headers) does not wake its
//! watchers: the stream holds their wakers until a frame that may not wait arrives (coded video,
//! which then leaves in the same write as the audio before it) or until the core's window ends,
//! whichever is first. Video is never delayed; audio at most by the window. The bookkeeping is a
//! vector append per held frame and one timer per core, nothing per watcher.
//!
//! A watcher that is running anyway (finishing a write, say) still sees every frame at once: the
//! stream's version is bumped immediately, only the wake is held.
//!
//! [`EncodedFrame::may_wait`]: super::EncodedFrame::may_wait

use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::hub::LocalStream;

/// The streams of one core that hold wakes until its coalescing window ends.
#[derive(Debug, Default)]
pub struct DeferredWakes {
    holding: RefCell<Vec<Rc<LocalStream>>>,
    /// Spare vector swapped with `holding` while releasing, so releasing never allocates.
    releasing: RefCell<Vec<Rc<LocalStream>>>,
    /// The core's flush task, waiting for the first hold of a window.
    flusher: RefCell<Option<Waker>>,
}

impl DeferredWakes {
    /// Notes that `stream` started holding wakes; opens the window if none is open.
    pub(super) fn hold(&self, stream: Rc<LocalStream>) {
        let mut holding = self.holding.borrow_mut();
        let window_opens = holding.is_empty();
        holding.push(stream);
        drop(holding);
        if window_opens && let Some(flusher) = self.flusher.borrow_mut().take() {
            flusher.wake();
        }
    }

    /// Ready when a window is open: the flush task then waits it out and calls
    /// [`DeferredWakes::wake_all`].
    pub fn poll_pending(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.holding.borrow().is_empty() {
            *self.flusher.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Ends the window: wakes every watcher still held; returns how many were woken.
    pub fn wake_all(&self) -> usize {
        let mut releasing = self.releasing.borrow_mut();
        std::mem::swap(&mut *releasing, &mut *self.holding.borrow_mut());
        releasing
            .drain(..)
            .map(|stream| stream.release_held())
            .sum()
    }
}
