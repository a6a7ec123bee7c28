//! The thin layer over the io_uring runtime (compio), so it can be swapped in one place.
//!
//! One runtime per worker thread, pinned to its core; every listener is bound with
//! `SO_REUSEPORT` by each worker, so the kernel spreads connections across cores with no
//! accept-side handoff. compio falls back to epoll where io_uring is unavailable (for example
//! under Docker's default seccomp profile); [`build`] reports which driver runs.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use compio::driver::{DriverType, ProactorBuilder};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::IoUringConfig;

pub use compio::BufResult;
pub use compio::buf::{IntoInner, IoBuf};
pub use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
pub use compio::net::{TcpListener, TcpStream, UdpSocket};
pub use compio::runtime::{JoinHandle, Runtime, spawn};
pub use compio::time::{sleep, sleep_until};

/// Provided buffers in each runtime's pool (multishot receive of FTL media).
const MEDIA_BUFFERS: std::num::NonZero<u16> = match std::num::NonZero::new(512) {
    Some(n) => n,
    None => unreachable!(),
};
/// Bytes per provided buffer: FTL datagrams are at most 1392 bytes.
const MEDIA_BUFFER_LEN: usize = 2048;

/// A worker's runtime, as [`build`] made it.
pub struct Built {
    pub runtime: Runtime,
    /// "io_uring" or "epoll fallback".
    pub driver: &'static str,
    /// `io_uring.defer_taskrun` was asked for but the kernel refused it (Linux before 6.1):
    /// the ring was built without it.
    pub defer_taskrun_refused: bool,
}

/// Builds this thread's runtime with the `[io_uring]` options, pinned to `cpu` when given.
/// When the kernel refuses DEFER_TASKRUN (EINVAL before Linux 6.1), builds it again without
/// and says so in [`Built::defer_taskrun_refused`].
pub fn build(cpu: Option<usize>, uring: &IoUringConfig) -> io::Result<Built> {
    let (runtime, defer_taskrun_refused) = match build_with(cpu, uring, uring.defer_taskrun) {
        Err(e) if uring.defer_taskrun && e.raw_os_error() == Some(libc::EINVAL) => {
            (build_with(cpu, uring, false)?, true)
        }
        result => (result?, false),
    };
    Ok(Built {
        driver: driver_name(&runtime),
        runtime,
        defer_taskrun_refused,
    })
}

fn build_with(
    cpu: Option<usize>,
    uring: &IoUringConfig,
    defer_taskrun: bool,
) -> io::Result<Runtime> {
    let mut proactor = ProactorBuilder::new();
    proactor.capacity(uring.sq_entries);
    proactor.coop_taskrun(uring.coop_taskrun);
    proactor.taskrun_flag(uring.coop_taskrun);
    proactor.single_issuer(defer_taskrun);
    proactor.defer_taskrun(defer_taskrun);
    if uring.sqpoll_idle_ms > 0 {
        proactor.sqpoll_idle(Duration::from_millis(uring.sqpoll_idle_ms.into()));
    }
    // Provided buffers for multishot UDP receive (FTL media): a keyframe burst is a few hundred
    // datagrams of at most 1392 bytes.
    proactor.buffer_pool_size(MEDIA_BUFFERS);
    proactor.buffer_pool_buffer_len(MEDIA_BUFFER_LEN);
    let mut builder = Runtime::builder();
    builder.with_proactor(proactor);
    builder.event_interval(uring.tasks_per_poll as usize);
    if let Some(cpu) = cpu {
        builder.thread_affinity(std::iter::once(cpu).collect());
    }
    builder.build()
}

fn driver_name(runtime: &Runtime) -> &'static str {
    match runtime.driver_type() {
        DriverType::IoUring => "io_uring",
        DriverType::Poll => "epoll fallback",
        DriverType::IOCP => "iocp",
    }
}

/// Binds a TCP listener with `SO_REUSEPORT`, so every worker can bind the same address.
pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    TcpListener::from_std(socket.into())
}

/// Binds (and closes at once) a socket on `addr` without `SO_REUSEPORT`: fails with
/// "address in use" when any process listens there, even one in a reuse-port group.
pub fn probe_bind(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

/// Binds a UDP socket (FTL media) on `addr`.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    // Media arrives in bursts (a keyframe is a few hundred packets): give the kernel room.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Shuts a connection down in both directions. A read or write pending on it completes at
/// once, so the task that owns the socket notices and ends: this is how deadlines are
/// enforced without racing a read against a timer.
pub fn shutdown(stream: &impl std::os::fd::AsFd) {
    let _ = SockRef::from(stream).shutdown(std::net::Shutdown::Both);
}

/// Shuts down the sending half only: the peer reads what was written, then end of stream,
/// while this side may still read (and discard) what the peer is sending.
pub fn shutdown_write(stream: &impl std::os::fd::AsFd) {
    let _ = SockRef::from(stream).shutdown(std::net::Shutdown::Write);
}

/// Aborts a connection: `SO_LINGER` 0, then a shutdown so every pending read and write on it
/// completes at once. When its owner drops the last handle, the close sends a TCP RST and the
/// kernel frees whatever was still queued for the peer, instead of keeping it until the peer
/// reads or resets. For watchers cut by the slow-watcher policy (their queue is the problem).
pub fn abort(stream: &impl std::os::fd::AsFd) {
    let socket = SockRef::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// Bounds what the kernel may queue for this socket's peer (`SO_SNDBUF`; Linux doubles the
/// value and turns send-buffer autotuning off for the socket).
pub fn bound_send_buffer(stream: &impl std::os::fd::AsFd, bytes: usize) {
    let _ = SockRef::from(stream).set_send_buffer_size(bytes);
}

/// Accepts a connection already waiting in `listener`'s queue, without waiting for one:
/// `Ok(None)` when the queue is empty.
pub fn try_accept(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    let (socket, addr) = match SockRef::from(listener).accept() {
        Ok(accepted) => accepted,
        // Empty queue; or a client that reset before we took it, which is no listener error.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::Interrupted
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    socket.set_nonblocking(true)?;
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a connection without an IP peer"))?;
    Ok(Some((TcpStream::from_std(socket.into())?, peer)))
}

/// Sets the socket options every accepted connection gets.
pub fn tune_accepted(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = SockRef::from(stream).set_keepalive(true);
}

/// Sleeps for `ms` milliseconds.
pub async fn sleep_ms(ms: u64) {
    sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read;

    use super::*;

    #[test]
    fn try_accept_takes_every_queued_connection_then_reports_an_empty_queue() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut clients: Vec<_> = (0..3)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            let mut accepted = Vec::new();
            while let Some((stream, peer)) = try_accept(&listener).unwrap() {
                assert_eq!(peer.ip(), addr.ip());
                accepted.push(stream);
            }
            assert_eq!(accepted.len(), 3, "all queued connections taken");
            assert!(try_accept(&listener).unwrap().is_none());

            // The accepted sockets are usable by the runtime.
            let server_side = accepted.remove(0);
            let BufResult(result, _) = (&server_side).write_all(b"hi".to_vec()).await;
            result.unwrap();
            let mut got = [0u8; 2];
            clients[0].read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi");
        });
    }

    /// Whether this kernel (Linux 6.1+) has IORING_SETUP_DEFER_TASKRUN.
    fn kernel_has_defer_taskrun() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        (major, minor) >= (6, 1)
    }

    #[test]
    fn the_default_ring_defers_task_work_on_kernels_that_have_it() {
        let uring = IoUringConfig::default();
        assert!(uring.defer_taskrun, "on by default");
        let built = build(None, &uring).unwrap();
        assert_eq!(built.driver, "io_uring");
        assert_eq!(built.defer_taskrun_refused, !kernel_has_defer_taskrun());
        // The ring works: a connection is accepted and written through it.
        built.runtime.block_on(async {
            let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            let (server_side, _) = listener.accept().await.unwrap();
            let BufResult(result, _) = (&server_side).write_all(b"ok".to_vec()).await;
            result.unwrap();
            let mut got = [0u8; 2];
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ok");
        });
    }

    #[test]
    fn a_ring_without_deferred_task_work_is_built_as_asked() {
        let uring = IoUringConfig {
            defer_taskrun: false,
            ..IoUringConfig::default()
        };
        let built = build(None, &uring).unwrap();
        assert!(!built.defer_taskrun_refused);
        assert_eq!(built.driver, "io_uring");
    }
}
