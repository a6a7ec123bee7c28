//! The cost of moving one frame from the publisher's core to another core: the stream's
//! `CoreLink` (a bounded `ArrayQueue`), the target core's `CoreInbox` (ready list, batched wake
//! through an `AtomicWaker`) and `CoreHub::drain_inbox` appending the frame to that core's ring.
//! Run: `cargo bench --bench cross_core_hop`.
//!
//! `hop_same_thread` runs both ends on the bench thread, so it is the bookkeeping alone (queue
//! push and pop, ready-list push and pop, `Arc` refcounts, the notify flag; no thread is woken
//! because no waker is registered):
//! - `forward_and_drain`: `Registry::forward` of an already serialised frame to core 1, then core
//!   1's `drain_inbox`, which appends it to core 1's ring (and evicts the GOP before last on a
//!   keyframe). Two frames, a keyframe every 60th and an inter frame, are forwarded over and over,
//!   so their refcounts stay in cache; core 1 has no watchers, so no watcher is woken.
//! - `publisher_push_and_drain`: the whole `Publisher::push` on core 0 of a 1 000-byte video
//!   payload (timestamp rebase, one RTMP serialisation and its allocations, append to core
//!   0's ring, forward) plus core 1's `drain_inbox`. `publisher_push_one_core` is the same push
//!   on a one-core registry: the difference between the two is what a second core adds.
//!
//! `hop_two_threads` drains core 1 on a consumer thread, as a worker would: it registers a
//! waker that unparks it with `CoreInbox::poll_notified`, and after each `drain_inbox` publishes
//! its ring's head sequence number. When the inbox is empty, the `parking_consumer` parks (an
//! idle worker asleep), the `spinning_consumer` polls again at once (a busy worker that checks
//! its inbox every turn; its wakes cost an atomic, never a syscall). The bench thread and the
//! consumer are pinned to the first two CPUs, one each, as `server.pin_cores` pins workers.
//! The bench thread forwards bursts of `burst` already-serialised frames (from a pool of 8 192
//! distinct frames, so consecutive frames do not share a refcount cache line) and spins until
//! the consumer has appended all of them; the time per frame is the total over the frames. A
//! burst of 1 is therefore a round trip per frame: forward, wake (a futex unpark when the
//! consumer is parked), drain, and the producer seeing the drain. Larger bursts let one drain
//! carry many frames, which is how the inbox batches under load; the average frames per drain
//! is printed to stderr. Not included: the RTMP serialisation (frames are prebuilt), watchers on
//! core 1, the io_uring runtime's own wake mechanism (an unpark stands in for it). On a 2-core
//! machine shared with other work a pinned thread still waits for its CPU, so the two-thread
//! numbers vary with the machine's load far more than the single-thread ones.

#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use core_affinity::CoreId;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::fanout::{CoreHub, EncodedFrame, PublishPolicy, Publisher, Registry, RingLimits};
use ringcast::media::{Frame, MediaKind};

const STREAM: &str = "live/hop";
const PUBLISHER_CORE: usize = 0;
const WATCHER_CORE: usize = 1;
/// 30 fps with a 2 s GOP.
const GOP_FRAMES: u32 = 60;
const PAYLOAD_LEN: usize = 1_000;
const CHUNK_SIZE: usize = 4096;
/// More than a ring holds (one to two GOPs) plus the largest burst in flight.
const POOL_FRAMES: u32 = 8192;

fn new_registry(cores: usize) -> Arc<Registry> {
    Arc::new(Registry::new(
        cores,
        PublishPolicy {
            takeover: false,
            grace: Duration::ZERO,
        },
    ))
}

/// The `seq`th video frame of a stream: a keyframe every [`GOP_FRAMES`], inter frames between.
fn video_frame(seq: u32, keyframe_payload: &Bytes, inter_payload: &Bytes) -> Frame {
    let payload = if seq.is_multiple_of(GOP_FRAMES) {
        keyframe_payload
    } else {
        inter_payload
    };
    Frame::new(MediaKind::Video, seq.wrapping_mul(33), payload.clone())
}

fn payloads() -> (Bytes, Bytes) {
    let mut key = vec![0u8; PAYLOAD_LEN];
    key[0] = 0x17;
    key[1] = 1;
    let mut inter = key.clone();
    inter[0] = 0x27;
    (Bytes::from(key), Bytes::from(inter))
}

fn encoded_frame(seq: u32) -> Arc<EncodedFrame> {
    let (key, inter) = payloads();
    Arc::new(EncodedFrame::media(
        video_frame(seq, &key, &inter),
        CHUNK_SIZE,
    ))
}

fn hop_same_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("hop_same_thread");
    group.throughput(Throughput::Elements(1));

    let registry = new_registry(2);
    let stream = registry.stream(STREAM);
    let watcher_hub = CoreHub::new(WATCHER_CORE, registry.clone(), RingLimits::default());
    let keyframe = encoded_frame(0);
    let inter = encoded_frame(1);
    let mut seq = 0u32;
    group.bench_function("forward_and_drain", |b| {
        b.iter(|| {
            let frame = if seq.is_multiple_of(GOP_FRAMES) {
                &keyframe
            } else {
                &inter
            };
            seq = seq.wrapping_add(1);
            registry.forward(&stream, PUBLISHER_CORE, black_box(frame));
            watcher_hub.drain_inbox();
        })
    });

    let (key_payload, inter_payload) = payloads();
    let registry = new_registry(2);
    let publisher_hub = Rc::new(CoreHub::new(
        PUBLISHER_CORE,
        registry.clone(),
        RingLimits::default(),
    ));
    let watcher_hub = CoreHub::new(WATCHER_CORE, registry, RingLimits::default());
    let mut publisher = Publisher::start(&publisher_hub, STREAM, Instant::now()).expect("claim");
    let mut seq = 0u32;
    group.bench_function("publisher_push_and_drain", |b| {
        b.iter(|| {
            let frame = video_frame(seq, &key_payload, &inter_payload);
            seq = seq.wrapping_add(1);
            publisher.push(frame).expect("push");
            watcher_hub.drain_inbox();
        })
    });

    let one_core_hub = Rc::new(CoreHub::new(
        PUBLISHER_CORE,
        new_registry(1),
        RingLimits::default(),
    ));
    let mut publisher = Publisher::start(&one_core_hub, STREAM, Instant::now()).expect("claim");
    // The claim's "publisher joined" message waits in the core's own inbox; apply it once.
    one_core_hub.drain_inbox();
    let mut seq = 0u32;
    group.bench_function("publisher_push_one_core", |b| {
        b.iter(|| {
            let frame = video_frame(seq, &key_payload, &inter_payload);
            seq = seq.wrapping_add(1);
            publisher.push(frame).expect("push");
        })
    });
    group.finish();
}

/// The CPUs for the bench thread and the consumer, one each, as `server.pin_cores` pins
/// workers; `None` with fewer than two CPUs (both threads would share the one). Read before
/// either thread is pinned: a thread's CPU list is its affinity mask, which a spawned thread
/// inherits.
fn two_cpus() -> Option<(CoreId, CoreId)> {
    match core_affinity::get_core_ids().unwrap_or_default()[..] {
        [first, second, ..] => Some((first, second)),
        _ => None,
    }
}

/// Unparks the consumer thread: what a worker's runtime waker does for its event loop.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// What the consumer does when its inbox has nothing.
#[derive(Debug, Clone, Copy)]
enum WhenIdle {
    /// Parks until woken: every wake that finds it asleep costs the producer a futex wake.
    Park,
    /// Polls again at once, like a worker busy with other work checking its inbox each turn.
    Spin,
}

/// Core 1's worker, reduced to draining its inbox.
struct Consumer {
    thread: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    /// The ring's head sequence number after the last drain: frames appended so far.
    appended: Arc<AtomicU64>,
    /// Number of `drain_inbox` calls (one per wake that found work).
    drains: Arc<AtomicU64>,
}

impl Consumer {
    fn spawn(registry: Arc<Registry>, when_idle: WhenIdle, cpu: Option<CoreId>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicU64::new(0));
        let drains = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, appended, drains) = (stop.clone(), appended.clone(), drains.clone());
            thread::spawn(move || {
                if let Some(cpu) = cpu {
                    core_affinity::set_for_current(cpu);
                }
                let inbox = registry.inbox(WATCHER_CORE).expect("inbox").clone();
                let hub = CoreHub::new(WATCHER_CORE, registry, RingLimits::default());
                let local = hub.local(STREAM);
                let waker = Waker::from(Arc::new(Unpark(thread::current())));
                let mut cx = Context::from_waker(&waker);
                while !stop.load(Ordering::Acquire) {
                    match inbox.poll_notified(&mut cx) {
                        Poll::Ready(()) => {
                            hub.drain_inbox();
                            drains.fetch_add(1, Ordering::Relaxed);
                            appended.store(local.ring().head_seq(), Ordering::Release);
                        }
                        Poll::Pending => match when_idle {
                            WhenIdle::Park => thread::park(),
                            WhenIdle::Spin => std::hint::spin_loop(),
                        },
                    }
                }
            })
        };
        Consumer {
            thread,
            stop,
            appended,
            drains,
        }
    }

    /// Spins until the consumer has appended `target` frames in all.
    fn wait_for(&self, target: u64) {
        let mut spins = 0u32;
        let started = Instant::now();
        while self.appended.load(Ordering::Acquire) < target {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                // Leave the core to the consumer if the scheduler put both threads on one.
                thread::yield_now();
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the consumer thread stopped draining"
                );
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().expect("consumer thread");
    }
}

fn hop_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("hop_two_threads");
    group.throughput(Throughput::Elements(1));
    let pool: Vec<Arc<EncodedFrame>> = (0..POOL_FRAMES).map(encoded_frame).collect();
    let cpus = two_cpus();
    match cpus {
        Some((bench_cpu, consumer_cpu)) => {
            core_affinity::set_for_current(bench_cpu);
            eprintln!(
                "hop_two_threads: bench thread on CPU {}, consumer on CPU {}",
                bench_cpu.id, consumer_cpu.id
            );
        }
        None => eprintln!("hop_two_threads: fewer than two CPUs, threads not pinned"),
    }
    for (name, when_idle) in [
        ("parking_consumer_burst", WhenIdle::Park),
        ("spinning_consumer_burst", WhenIdle::Spin),
    ] {
        for burst in [1u64, 32, 256] {
            let registry = new_registry(2);
            let stream = registry.stream(STREAM);
            let consumer = Consumer::spawn(registry.clone(), when_idle, cpus.map(|(_, c)| c));
            let mut sent = 0u64;
            group.bench_with_input(BenchmarkId::new(name, burst), &burst, |b, &burst| {
                b.iter_custom(|frames| {
                    let started = Instant::now();
                    let mut left = frames;
                    while left > 0 {
                        let n = left.min(burst);
                        for _ in 0..n {
                            let frame = &pool[(sent % pool.len() as u64) as usize];
                            registry.forward(&stream, PUBLISHER_CORE, frame);
                            sent += 1;
                        }
                        consumer.wait_for(sent);
                        left -= n;
                    }
                    started.elapsed()
                })
            });
            let drains = consumer.drains.load(Ordering::Relaxed).max(1);
            eprintln!(
                "hop_two_threads/{name}/{burst}: {sent} frames in {drains} drains, \
                 {:.1} frames per drain",
                sent as f64 / drains as f64
            );
            consumer.stop();
        }
    }
    group.finish();
}

criterion_group!(benches, hop_same_thread, hop_two_threads);
criterion_main!(benches);
