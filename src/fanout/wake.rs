//! Deferred watcher wakes: `fanout.write_coalesce_us`.
//!
//! With coalescing on, a stream that changes does not wake its waiting watchers itself: it
//! hands their wakers to its core's [`DeferredWakes`], and one task per core wakes them all a
//! fixed window after the first change. Frames (audio and video, several streams) that arrive
//! within the window then leave in one vectored write per watcher instead of one each. The cost
//! is at most the window of added latency; the bookkeeping is one vector append per change and
//! one timer per core, nothing per watcher.
//!
//! A watcher that is running anyway (finishing a write, say) still sees new frames at once: the
//! stream's version is bumped immediately, only the wake is deferred.

use std::cell::RefCell;
use std::task::{Context, Poll, Waker};

/// The wakers one core holds back until its coalescing window ends.
#[derive(Debug, Default)]
pub struct DeferredWakes {
    pending: RefCell<Vec<Waker>>,
    /// Spare vector swapped with `pending` while waking, so waking never allocates.
    waking: RefCell<Vec<Waker>>,
    /// The core's flush task, waiting for the first deferral of a window.
    flusher: RefCell<Option<Waker>>,
}

impl DeferredWakes {
    /// Takes `wakers` (emptying it) to be woken at the end of the window.
    pub fn defer(&self, wakers: &mut Vec<Waker>) {
        if wakers.is_empty() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        let window_opens = pending.is_empty();
        pending.append(wakers);
        drop(pending);
        if window_opens && let Some(flusher) = self.flusher.borrow_mut().take() {
            flusher.wake();
        }
    }

    /// Ready when wakes are waiting: the flush task then waits out the window and calls
    /// [`DeferredWakes::wake_all`].
    pub fn poll_pending(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.borrow().is_empty() {
            *self.flusher.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Wakes every deferred watcher; returns how many wakers were woken.
    pub fn wake_all(&self) -> usize {
        let mut waking = self.waking.borrow_mut();
        std::mem::swap(&mut *waking, &mut *self.pending.borrow_mut());
        let woken = waking.len();
        for waker in waking.drain(..) {
            waker.wake();
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count(c: &Arc<Count>) -> usize {
        c.0.load(Ordering::Relaxed)
    }

    #[test]
    fn deferred_wakers_wake_only_at_the_flush_and_the_flusher_wakes_once_per_window() {
        let deferred = DeferredWakes::default();
        let flusher = Arc::new(Count::default());
        let flusher_waker = Waker::from(flusher.clone());
        let mut cx = Context::from_waker(&flusher_waker);
        assert!(deferred.poll_pending(&mut cx).is_pending());

        let watcher = Arc::new(Count::default());
        let mut wakers = vec![Waker::from(watcher.clone()), Waker::from(watcher.clone())];
        deferred.defer(&mut wakers);
        assert!(wakers.is_empty(), "the wakers were taken");
        let mut more = vec![Waker::from(watcher.clone())];
        deferred.defer(&mut more);
        assert_eq!(count(&watcher), 0, "nothing woken before the flush");
        assert_eq!(count(&flusher), 1, "the flusher is woken once per window");

        assert!(deferred.poll_pending(&mut cx).is_ready());
        assert_eq!(deferred.wake_all(), 3);
        assert_eq!(count(&watcher), 3);
        assert!(
            deferred.poll_pending(&mut cx).is_pending(),
            "the window is closed"
        );
    }
}
