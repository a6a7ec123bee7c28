//! Deadlines for connections, enforced from one timer task per core.
//!
//! A read is never raced against a timer (a cancelled io_uring read can lose its buffer and the
//! bytes in it). Instead every connection registers a [`ConnGuard`]; the core's sweeper wakes a
//! few times a second and shuts down the socket of any connection past a deadline: the
//! handshake deadline, the idle limit, or a write that has been stuck too long (a watcher that
//! stopped reading; its socket is aborted with a RST so its queued bytes leave the kernel). The
//! owning task then sees its IO fail and logs the recorded reason. Plain and TLS connections are
//! cut the same way: the TCP socket underneath is shut down (or aborted).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::net::Transport;
use super::runtime;

/// How often the sweeper looks at every connection of its core.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Why a connection was cut by its guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    HandshakeTimeout,
    Idle,
    WriteStalled,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cut::HandshakeTimeout => "handshake not completed in time",
            Cut::Idle => "idle timeout: nothing received",
            Cut::WriteStalled => "slow watcher: a write made no progress in time",
        })
    }
}

/// How big a watcher socket's kernel send buffer is made (`fanout.watcher_send_buffer_bytes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SendBufferPolicy {
    /// False: leave the kernel's autotuning alone (`fanout.bound_watcher_send_buffer`).
    pub enabled: bool,
    /// A fixed size in bytes; 0 = sized from the stream's rate and `max_lag`.
    pub fixed: u32,
    /// The lag limit the buffer should hold at the stream's rate (`fanout.watcher_max_lag_ms`).
    pub max_lag: Duration,
}

/// Smallest and largest automatic watcher send buffer.
const AUTO_SEND_BUFFER: (usize, usize) = (128 << 10, 8 << 20);
/// The automatic send buffer when the stream's rate is not known yet.
const UNKNOWN_RATE_SEND_BUFFER: usize = 1 << 20;

impl SendBufferPolicy {
    /// The `SO_SNDBUF` value for a watcher of a stream carrying `rate` bytes per second.
    pub fn size(&self, rate: Option<u64>) -> usize {
        if self.fixed > 0 {
            return self.fixed as usize;
        }
        let Some(rate) = rate else {
            return UNKNOWN_RATE_SEND_BUFFER;
        };
        let lag_ms = u64::try_from(self.max_lag.as_millis()).unwrap_or(u64::MAX);
        let bytes = rate.saturating_mul(lag_ms) / 1000;
        usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .clamp(AUTO_SEND_BUFFER.0, AUTO_SEND_BUFFER.1)
    }
}

/// The deadlines of one connection.
#[derive(Debug)]
pub struct ConnGuard {
    stream: Rc<Transport>,
    send_buffer: SendBufferPolicy,
    handshake_deadline: Cell<Option<Instant>>,
    idle_limit: Cell<Option<Duration>>,
    last_read: Cell<Instant>,
    write_limit: Cell<Option<Duration>>,
    write_started: Cell<Option<Instant>>,
    cut: Cell<Option<Cut>>,
}

impl ConnGuard {
    /// The connection, plain or TLS.
    pub fn stream(&self) -> &Rc<Transport> {
        &self.stream
    }

    /// The handshake must finish by `deadline`; `None` once it has.
    pub fn set_handshake_deadline(&self, deadline: Option<Instant>) {
        self.handshake_deadline.set(deadline);
    }

    /// Close the connection when nothing arrives for `limit` (`None`: never).
    pub fn set_idle_limit(&self, limit: Option<Duration>) {
        self.idle_limit.set(limit);
    }

    /// Close the connection when one write waits longer than `limit`.
    pub fn set_write_limit(&self, limit: Option<Duration>) {
        self.write_limit.set(limit);
    }

    pub fn note_read(&self, now: Instant) {
        self.last_read.set(now);
    }

    pub fn write_started(&self, now: Instant) {
        self.write_started.set(Some(now));
    }

    pub fn write_finished(&self) {
        self.write_started.set(None);
    }

    /// Bounds what the kernel may queue for this connection once it is a watcher of a stream
    /// carrying `rate` bytes per second (see [`SendBufferPolicy`]).
    pub fn bound_send_buffer(&self, rate: Option<u64>) {
        if self.send_buffer.enabled {
            runtime::bound_send_buffer(&self.stream, self.send_buffer.size(rate));
        }
    }

    /// Cuts the connection now with a TCP RST (the slow-watcher policy's disconnect); the
    /// caller reports why.
    pub fn abort_slow(&self) {
        runtime::abort(&self.stream);
    }

    /// The reason the guard cut the connection, if it did.
    pub fn cut(&self) -> Option<Cut> {
        self.cut.get()
    }

    fn check(&self, now: Instant) -> Option<Cut> {
        if self.handshake_deadline.get().is_some_and(|d| now >= d) {
            return Some(Cut::HandshakeTimeout);
        }
        if let (Some(limit), Some(started)) = (self.write_limit.get(), self.write_started.get())
            && now.saturating_duration_since(started) >= limit
        {
            return Some(Cut::WriteStalled);
        }
        if let Some(limit) = self.idle_limit.get()
            && now.saturating_duration_since(self.last_read.get()) >= limit
        {
            return Some(Cut::Idle);
        }
        None
    }
}

/// Every guarded connection of one core.
#[derive(Debug, Default)]
pub struct Sweeper {
    guards: RefCell<Vec<Weak<ConnGuard>>>,
    send_buffer: SendBufferPolicy,
}

impl Sweeper {
    /// A sweeper whose connections size their watcher send buffers by `send_buffer`.
    pub fn new(send_buffer: SendBufferPolicy) -> Self {
        Sweeper {
            guards: RefCell::default(),
            send_buffer,
        }
    }

    /// Registers a connection; the guard lives as long as the returned `Rc`.
    pub fn guard(&self, stream: Rc<Transport>, now: Instant) -> Rc<ConnGuard> {
        let guard = Rc::new(ConnGuard {
            stream,
            send_buffer: self.send_buffer,
            handshake_deadline: Cell::new(None),
            idle_limit: Cell::new(None),
            last_read: Cell::new(now),
            write_limit: Cell::new(None),
            write_started: Cell::new(None),
            cut: Cell::new(None),
        });
        self.guards.borrow_mut().push(Rc::downgrade(&guard));
        guard
    }

    /// Cuts every connection past a deadline and forgets the closed ones.
    pub fn sweep(&self, now: Instant) {
        self.guards.borrow_mut().retain(|weak| {
            let Some(guard) = weak.upgrade() else {
                return false;
            };
            if guard.cut.get().is_none()
                && let Some(cut) = guard.check(now)
            {
                guard.cut.set(Some(cut));
                if cut == Cut::WriteStalled {
                    // A stuck watcher: drop what is queued for it, don't wait for it to read.
                    runtime::abort(&*guard.stream);
                } else {
                    guard.stream.shutdown();
                }
            }
            true
        });
    }

    /// Number of live guarded connections.
    pub fn len(&self) -> usize {
        self.guards.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs forever on the current core.
    pub async fn run(self: Rc<Self>) {
        loop {
            runtime::sleep(SWEEP_INTERVAL).await;
            self.sweep(Instant::now());
        }
    }
}
