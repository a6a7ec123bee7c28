//! Proves the fan-out's per-watcher cost: after one frame is published, gathering it for N
//! watchers performs no allocation at all (each watcher's batch receives a refcount clone of
//! the one shared serialisation). A counting global allocator observes every allocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcast::fanout::{CoreHub, Egress, PublishPolicy, Publisher, Registry, RingLimits};
use ringcast::media::{Frame, MediaKind};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the measuring thread counts: the test harness's own threads allocate too.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn frame(ts: u32, key: bool) -> Frame {
    let mut payload = vec![0u8; 5000];
    payload[0] = if key { 0x17 } else { 0x27 };
    payload[1] = 1;
    Frame::new(MediaKind::Video, ts, Bytes::from(payload))
}

#[test]
fn gathering_a_frame_for_many_watchers_allocates_nothing_per_watcher() {
    const WATCHERS: usize = 1000;
    let registry = Arc::new(Registry::new(
        1,
        PublishPolicy {
            takeover: false,
            grace: Duration::ZERO,
        },
    ));
    let hub = Rc::new(CoreHub::new(0, registry, RingLimits::default()));
    let mut publisher = Publisher::start(&hub, "live/alloc", Instant::now()).unwrap();
    publisher.push(frame(0, true)).unwrap();
    let mut watchers: Vec<_> = (0..WATCHERS)
        .map(|_| hub.watch("live/alloc", Egress::Rtmp))
        .collect();
    let mut batches: Vec<Vec<Bytes>> = (0..WATCHERS).map(|_| Vec::with_capacity(64)).collect();
    let now = Instant::now();
    for (w, b) in watchers.iter_mut().zip(&mut batches) {
        w.fill(now, b, 64, usize::MAX);
        b.clear();
    }

    publisher.push(frame(33, false)).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let mut delivered = 0;
    for (w, b) in watchers.iter_mut().zip(&mut batches) {
        w.fill(now, b, 64, usize::MAX);
        delivered += b.len();
        assert_eq!(b.len(), 1);
        b.clear();
    }
    COUNTING.with(|c| c.set(false));
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(delivered, WATCHERS, "every watcher got the frame");
    assert_eq!(
        during, 0,
        "gathering for {WATCHERS} watchers allocated {during} times"
    );
}
