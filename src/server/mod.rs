//! The only code that touches sockets and the runtime.
//!
//! [`run`] starts one worker thread per configured core. Each worker builds its own pinned
//! io_uring runtime, binds its own `SO_REUSEPORT` listeners, and owns a [`CoreHub`] (its share
//! of the fan-out), a [`Sweeper`] (connection deadlines) and an inbox task that applies what
//! other cores send it. Connections never migrate: a session lives and dies on the core that
//! accepted it. The main thread waits for SIGINT/SIGTERM: the first withdraws readiness
//! (`/readyz` answers 503) and, after `server.shutdown_drain_ms`, winds every worker down.

pub mod accept;
pub mod cluster;
pub mod conn;
pub mod fstream;
pub mod ftl;
pub mod ftl_media;
pub mod guard;
pub mod http;
pub mod limits;
pub mod net;
pub mod push;
pub mod reader;
pub mod rtmp;
pub mod rtmp_client;
pub mod runtime;
pub mod streams;
pub mod trace;
pub mod watch;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tracing::{error, info, warn};

use crate::config::{Config, IoUringConfig};
use crate::fanout::{CoreHub, DeferredWakes, PublishPolicy, Registry, RingLimits};
use crate::metrics::{Metrics, NodeGauges, Protocol};
use accept::ListenerSpec;
use guard::Sweeper;
use net::CertStore;

/// How long workers get to wind down (send FTL 410s, flush) after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Tells every worker to wind down. Set once by the main thread on SIGINT/SIGTERM.
#[derive(Debug)]
struct ShutdownSignal {
    requested: AtomicBool,
    wakers: Box<[AtomicWaker]>,
}

impl ShutdownSignal {
    fn new(workers: usize) -> Self {
        ShutdownSignal {
            requested: AtomicBool::new(false),
            wakers: (0..workers).map(|_| AtomicWaker::new()).collect(),
        }
    }

    fn trigger(&self) {
        self.requested.store(true, Ordering::Release);
        for waker in self.wakers.iter() {
            waker.wake();
        }
    }

    /// Ready once shutdown was requested (register first, then test: no lost wake-up).
    fn poll(&self, worker: usize, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if let Some(waker) = self.wakers.get(worker) {
            waker.register(cx.waker());
        }
        if self.requested.load(Ordering::Acquire) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// Node-wide state every core reads: readiness and the counters behind `/metrics`.
#[derive(Debug)]
pub struct Node {
    pub workers: usize,
    pub metrics: Arc<Metrics>,
    /// Restream destinations and their status.
    pub pushes: Arc<push::Pushes>,
    /// Every worker reported ready.
    started: AtomicBool,
    /// A shutdown signal arrived: readiness is withdrawn for good.
    draining: AtomicBool,
    /// The TLS certificate, when a TLS listener runs (reloaded on SIGHUP).
    pub certs: Option<Arc<CertStore>>,
    /// The cluster (directory and pulls), shared by every core.
    pub cluster: Arc<cluster::Cluster>,
}

impl Node {
    fn new(
        workers: usize,
        certs: Option<Arc<CertStore>>,
        cluster: Arc<cluster::Cluster>,
        pushes: Arc<push::Pushes>,
    ) -> Self {
        Node {
            workers,
            metrics: Metrics::new(workers),
            pushes,
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            certs,
            cluster,
        }
    }

    /// What `/readyz` answers: true once every worker is up, false from the first shutdown
    /// signal on.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// The values `/metrics` reads at scrape time.
    pub fn gauges(&self, registry: &Registry) -> NodeGauges {
        NodeGauges {
            live_streams: registry.live_streams().len(),
            workers: self.workers,
            ready: self.is_ready(),
            log_lines_dropped: crate::logging::dropped_total(),
            tls_cert_expiry: self.certs.as_ref().and_then(|c| c.expiry_unix()),
            cluster: self.cluster.gauges(),
        }
    }
}

/// Listen backlog for every TCP listener. The kernel caps it at `net.core.somaxconn`, so that
/// sysctl is the knob (tuning/README.md): a reconnect storm after a balancer failover must not
/// overflow the accept queue into SYN retries.
const BACKLOG: i32 = 65_535;

/// Everything a connection task needs from its core.
#[derive(Debug)]
pub struct Core {
    pub index: usize,
    pub config: Arc<Config>,
    pub hub: Rc<CoreHub>,
    pub sweeper: Rc<Sweeper>,
    /// Live fstream channels (passwords and formats), shared by every core.
    pub fstream: Arc<fstream::Channels>,
    /// Readiness and metrics, shared by every core.
    pub node: Arc<Node>,
    /// The cluster: directory registration and pulls of streams this node does not have.
    pub cluster: Arc<cluster::Cluster>,
    /// Per-IP limits (FTL challenges, failed logins), shared by every core.
    pub limits: Arc<limits::NodeLimits>,
    /// This core's rate limit on repeated log lines.
    pub log_limiter: limits::LogLimiter,
}

impl Core {
    /// Counts a connection ended by a protocol error in
    /// `ringcast_connection_errors_total{protocol,blame}`.
    pub fn count_protocol_error(&self, protocol: Protocol, blame: crate::proto::Blame) {
        self.hub.metrics().add(
            crate::metrics::Counter::ConnectionErrors(protocol, blame),
            1,
        );
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("worker {core}: {what}: {source}")]
    Worker {
        core: usize,
        what: String,
        source: std::io::Error,
    },
    #[error("starting the cluster directory: {0}")]
    Cluster(std::io::Error),
    #[error("a worker thread exited during startup")]
    WorkerLost,
    #[error(
        "{label} on {addr}: {source}; another process already listens there (a second ringcast?): stop it, pick another address, or pass --handover for a deliberate zero-downtime upgrade"
    )]
    AddressTaken {
        label: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{label} listener configured but no certificate: set tls.cert_file and tls.key_file")]
    NoCertificate { label: &'static str },
    #[error("TLS certificate: {0}")]
    Tls(#[from] net::TlsLoadError),
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] rustls::Error),
}

fn ring_limits(config: &Config) -> RingLimits {
    let f = &config.fanout;
    RingLimits {
        max_frames: (f.ring_frames as usize).max(16),
        max_bytes: usize::try_from(f.max_gop_bytes).unwrap_or(usize::MAX),
        max_lag: Duration::from_millis(f.watcher_max_lag_ms),
        disconnect_after: Duration::from_millis(f.slow_watcher_disconnect_ms),
        gop_cache: f.gop_cache,
    }
}

/// Re-reads the configuration (SIGHUP).
pub type Reload = Arc<dyn Fn() -> Result<Config, crate::config::ConfigError> + Send + Sync>;

/// Runs the relay until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), StartError> {
    run_with_reload(config, None)
}

/// Runs the relay until SIGINT or SIGTERM; on SIGHUP, `reload` re-reads the configuration and
/// the `[[push]]` destinations are replaced (see [`push::reload`]).
pub fn run_with_reload(config: Config, reload: Option<Reload>) -> Result<(), StartError> {
    let config = Arc::new(config);
    let workers = config.server.worker_count().max(1);
    if config.server.handover_listeners {
        info!(
            "handover_listeners: sharing the configured addresses with any ringcast already there"
        );
    } else {
        check_addresses_free(&config)?;
    }
    let wants_tls = !config.rtmps.listen.is_empty() || !config.http.tls_listen.is_empty();
    let certs = if wants_tls && config.tls.is_configured() {
        let store = CertStore::load(&config.tls.cert_file, &config.tls.key_file)?;
        log_certificate(&store, "TLS certificate loaded");
        Some(store)
    } else {
        None
    };
    let tls = certs.as_ref().map(|c| c.server_config()).transpose()?;
    let registry = Arc::new(Registry::new(
        workers,
        PublishPolicy {
            takeover: config.fanout.takeover,
            grace: Duration::from_millis(config.fanout.publisher_grace_ms),
        },
    ));
    let cpus: Vec<usize> = if config.server.pin_cores {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else {
        Vec::new()
    };

    let channels = Arc::new(fstream::Channels::default());
    let cluster = cluster::Cluster::start(&config.cluster).map_err(StartError::Cluster)?;
    let shared = Arc::new(WorkerShared {
        config: config.clone(),
        registry,
        channels,
        shutdown: ShutdownSignal::new(workers),
        node: Arc::new(Node::new(
            workers,
            certs,
            cluster,
            Arc::new(push::Pushes::new(&config.push)),
        )),
        limits: Arc::new(limits::NodeLimits::new(&config)),
        tls,
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    for index in 0..workers {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let done = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ringcast-w{index}"))
            .spawn(move || worker(index, cpu, shared, ready, done));
        if let Err(source) = spawned {
            return Err(StartError::Worker {
                core: index,
                what: "spawning the thread".into(),
                source,
            });
        }
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::WorkerLost),
        }
    }
    shared.node.started.store(true, Ordering::Release);
    info!(workers, "ringcast is ready");
    if crate::media::aac::AVAILABLE {
        info!(
            aac_bitrate_kbps = config.audio.aac_bitrate_kbps,
            "Opus audio is served as AAC to players that cannot take Opus"
        );
    } else {
        warn!(
            "built without the `aac` feature: every player gets Opus audio as published \
             (no AAC rendition; players without Opus support get no sound)"
        );
    }
    wait_for_shutdown(
        &shared.node,
        Duration::from_millis(config.server.shutdown_drain_ms),
        reload,
    );
    shared.shutdown.trigger();
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            warn!("a worker did not wind down in time; exiting anyway");
            break;
        }
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM, withdraws readiness, then keeps serving for `drain` (a second
/// signal cuts it short) so a load balancer moves new clients elsewhere before workers stop.
fn wait_for_shutdown(node: &Node, drain: Duration, reload: Option<Reload>) {
    let Ok(runtime::Built { runtime: rt, .. }) = runtime::build(None, &IoUringConfig::default())
    else {
        // No runtime for signals: park forever; the process still dies on SIGTERM's default.
        loop {
            std::thread::park();
        }
    };
    rt.block_on(async {
        // Keeps a SIGHUP handler installed for good: the runtime restores the default action
        // (which ends the process) whenever the last listener of a signal goes, as each
        // `next_signal` listener does once it fired.
        let mut hup_guard = std::pin::pin!(compio::signal::unix::signal(libc::SIGHUP));
        poll_fn(|cx| {
            let _ = hup_guard.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        next_signal(node, reload.as_ref()).await;
        node.draining.store(true, Ordering::Release);
        if drain.is_zero() {
            info!("shutting down");
            return;
        }
        info!(
            drain_ms = drain.as_millis() as u64,
            "shutting down: readiness withdrawn, draining (a second signal stops at once)"
        );
        let waited = std::pin::pin!(runtime::sleep(drain));
        let signalled = std::pin::pin!(next_signal(node, reload.as_ref()));
        futures_util::future::select(waited, signalled).await;
        info!("drain over; stopping the workers");
    });
}

/// Waits for SIGINT or SIGTERM; a SIGHUP meanwhile reloads the TLS certificate.
async fn next_signal(node: &Node, reload: Option<&Reload>) {
    loop {
        let sigint = std::pin::pin!(compio::signal::unix::signal(libc::SIGINT));
        let sigterm = std::pin::pin!(compio::signal::unix::signal(libc::SIGTERM));
        let sighup = std::pin::pin!(compio::signal::unix::signal(libc::SIGHUP));
        let stop = futures_util::future::select(sigint, sigterm);
        match futures_util::future::select(stop, sighup).await {
            futures_util::future::Either::Left(_) => return,
            futures_util::future::Either::Right(_) => on_sighup(node, reload),
        }
    }
}

/// SIGHUP, the node's one handler: the TLS certificate, then the `[[push]]` destinations.
fn on_sighup(node: &Node, reload: Option<&Reload>) {
    reload_certificate(node);
    if let Some(reload) = reload {
        push::reload(&node.pushes, reload);
    }
}

/// SIGHUP: re-reads the certificate and key. New handshakes get the new pair; open connections
/// keep theirs. A pair that does not load is refused, named in the log, and the old one stays.
fn reload_certificate(node: &Node) {
    let Some(store) = &node.certs else {
        info!("SIGHUP: no TLS listener, nothing to reload");
        return;
    };
    match store.reload() {
        Ok(()) => log_certificate(store, "SIGHUP: TLS certificate reloaded"),
        Err(e) => {
            error!(error = %e, "SIGHUP: TLS certificate reload refused; the previous certificate stays in use")
        }
    }
}

fn log_certificate(store: &CertStore, what: &str) {
    let file = store.cert_file().display().to_string();
    match store.expiry_unix() {
        Some(expires) => info!(%file, expires_unix = expires, "{what}"),
        None => info!(%file, "{what}"),
    }
}

/// What every worker thread receives from `run`.
#[derive(Debug)]
struct WorkerShared {
    config: Arc<Config>,
    registry: Arc<Registry>,
    channels: Arc<fstream::Channels>,
    shutdown: ShutdownSignal,
    node: Arc<Node>,
    limits: Arc<limits::NodeLimits>,
    /// The TLS listeners' server config (its certificate reloads on SIGHUP).
    tls: Option<Arc<rustls::ServerConfig>>,
}

fn worker(
    index: usize,
    cpu: Option<usize>,
    shared: Arc<WorkerShared>,
    ready: mpsc::Sender<Result<(), StartError>>,
    done: mpsc::Sender<()>,
) {
    let config = shared.config.clone();
    let registry = shared.registry.clone();
    let channels = shared.channels.clone();
    let fail = |what: &str, source| StartError::Worker {
        core: index,
        what: what.to_owned(),
        source,
    };
    let runtime::Built {
        runtime: rt,
        driver,
        defer_taskrun_refused,
    } = match runtime::build(cpu, &config.io_uring) {
        Ok(built) => built,
        Err(e) => {
            let _ = ready.send(Err(fail("building the runtime", e)));
            return;
        }
    };
    info!(worker = index, cpu = ?cpu, driver, "worker started");
    if defer_taskrun_refused {
        warn!(
            worker = index,
            "the kernel refused io_uring DEFER_TASKRUN (Linux 6.1+); running without it \
             (set io_uring.defer_taskrun = false to silence this)"
        );
    }
    if driver != "io_uring" {
        warn!(
            worker = index,
            "io_uring is unavailable (seccomp or an old kernel?); running on the epoll fallback"
        );
    }
    rt.block_on(async move {
        trace::start(index);
        let mut hub = CoreHub::new(index, registry, ring_limits(&config))
            .with_chunk_size(config.rtmp.chunk_size as usize)
            .with_metrics(shared.node.metrics.core(index))
            .with_aac_bitrate(config.audio.aac_bitrate_kbps);
        let coalesce = Duration::from_micros(config.fanout.write_coalesce_us);
        if !coalesce.is_zero() {
            hub = hub.deferring_wakes();
        }
        let hub = Rc::new(hub);
        let sweeper = Rc::new(Sweeper::new(guard::SendBufferPolicy {
            enabled: config.fanout.bound_watcher_send_buffer,
            fixed: config.fanout.watcher_send_buffer_bytes,
            max_lag: Duration::from_millis(config.fanout.watcher_max_lag_ms),
        }));
        let core = Rc::new(Core {
            index,
            config: config.clone(),
            hub: hub.clone(),
            sweeper: sweeper.clone(),
            fstream: channels,
            node: shared.node.clone(),
            cluster: shared.node.cluster.clone(),
            limits: shared.limits.clone(),
            log_limiter: limits::LogLimiter::default(),
        });

        let bound = bind_table(index, &config, shared.tls.as_ref());
        let bound = match bound {
            Ok(bound) => bound,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        runtime::spawn(sweeper.run()).detach();
        if let Some(deferred) = hub.deferred_wakes() {
            runtime::spawn(flush_deferred_wakes(deferred.clone(), coalesce)).detach();
        }
        runtime::spawn(drain_inbox(hub)).detach();
        runtime::spawn(push::supervise(core.clone())).detach();
        let ftl_core = Rc::new(ftl::FtlCore::default());
        for (driver, spec, listener) in bound {
            if index == 0 {
                let (addr, proxy_protocol, tls) =
                    (spec.addr, spec.proxy_protocol, spec.tls.is_some());
                match driver {
                    Driver::Ftl => {
                        let udp_ports = config.ftl.udp_port_range;
                        info!(%addr, %udp_ports, proxy_protocol, "FTL listening");
                    }
                    _ => {
                        info!(%addr, proxy_protocol, tls, "{} listening", spec.label.to_uppercase())
                    }
                }
            }
            let core = core.clone();
            match driver {
                Driver::Rtmp => runtime::spawn(accept::run(core, spec, listener, rtmp::serve)),
                Driver::Cluster => {
                    runtime::spawn(accept::run(core, spec, listener, rtmp::serve_peer))
                }
                Driver::Fstream => {
                    runtime::spawn(accept::run(core, spec, listener, fstream::serve))
                }
                Driver::Http => runtime::spawn(accept::run(core, spec, listener, http::serve)),
                Driver::Ftl => {
                    let ftl_core = ftl_core.clone();
                    let serve = move |core, conn| ftl::serve(core, ftl_core, conn);
                    runtime::spawn(accept::run(core, spec, listener, serve))
                }
            }
            .detach();
        }
        let _ = ready.send(Ok(()));
        // The spawned tasks do the work; this one waits for shutdown, then ends this core's
        // FTL streams with 410 (the client then knows the server ended it, not the network).
        poll_fn(|cx| shared.shutdown.poll(index, cx)).await;
        let ended = ftl_core.terminate(None).await;
        if ended > 0 {
            info!(
                worker = index,
                ended, "FTL streams ended with 410 for shutdown"
            );
        }
    });
    let _ = done.send(());
}

/// Applies cross-core messages as they arrive, one wake per batch.
async fn drain_inbox(hub: Rc<CoreHub>) {
    let Some(inbox) = hub.registry().inbox(hub.core()).cloned() else {
        return;
    };
    loop {
        poll_fn(|cx| inbox.poll_notified(cx)).await;
        trace::clock();
        hub.drain_inbox();
    }
}

/// Runs this core's coalescing window: while any wake is held, ticks every half `window`, so
/// each held wake waits between half the window and the window.
async fn flush_deferred_wakes(deferred: Rc<DeferredWakes>, window: Duration) {
    let step = window / 2;
    loop {
        poll_fn(|cx| deferred.poll_pending(cx)).await;
        runtime::sleep(step).await;
        deferred.tick();
    }
}

/// `addrs` if the listener is on, else none.
fn enabled(on: bool, addrs: &[SocketAddr]) -> &[SocketAddr] {
    if on { addrs } else { &[] }
}

/// Which driver serves a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Rtmp,
    /// RTMP from other nodes of the cluster (their pulls).
    Cluster,
    Ftl,
    Fstream,
    Http,
}

/// One row of the listener table: what listens where, and how.
struct ListenerRow {
    driver: Driver,
    protocol: Protocol,
    /// The log label ("rtmps", "https", ...).
    label: &'static str,
    addrs: Vec<SocketAddr>,
    proxy_protocol: bool,
    timeout_ms: u64,
    tls: bool,
}

/// Every listener the config asks for, in start order: the one place listeners are declared.
fn listener_table(config: &Config) -> Vec<ListenerRow> {
    let (rtmp, ftl, fstream, http) = (&config.rtmp, &config.ftl, &config.fstream, &config.http);
    let row = |driver, protocol, label, addrs: &[SocketAddr], proxy_protocol, timeout_ms, tls| {
        ListenerRow {
            driver,
            protocol,
            label,
            addrs: addrs.to_vec(),
            proxy_protocol,
            timeout_ms,
            tls,
        }
    };
    let (rtmp_proxy, rtmp_timeout) = (rtmp.proxy_protocol, rtmp.handshake_timeout_ms);
    let (http_proxy, http_timeout) = (http.proxy_protocol, http.request_timeout_ms);
    // Also on a standalone node: the origin of static-mode edges.
    let cluster_listen: Vec<SocketAddr> = config.cluster.listen_addr().into_iter().collect();
    vec![
        row(
            Driver::Ftl,
            Protocol::Ftl,
            "ftl",
            enabled(ftl.is_active(), &ftl.listen),
            ftl.proxy_protocol,
            ftl.auth_timeout_ms,
            false,
        ),
        row(
            Driver::Rtmp,
            Protocol::Rtmp,
            "rtmp",
            &rtmp.listen,
            rtmp_proxy,
            rtmp_timeout,
            false,
        ),
        row(
            Driver::Cluster,
            Protocol::Rtmp,
            "cluster",
            &cluster_listen,
            false,
            rtmp_timeout,
            false,
        ),
        row(
            Driver::Rtmp,
            Protocol::Rtmp,
            "rtmps",
            &config.rtmps.listen,
            rtmp_proxy,
            rtmp_timeout,
            true,
        ),
        row(
            Driver::Fstream,
            Protocol::Fstream,
            "fstream",
            enabled(fstream.enabled, &fstream.listen),
            fstream.proxy_protocol,
            fstream.handshake_timeout_ms,
            false,
        ),
        row(
            Driver::Http,
            Protocol::Http,
            "http",
            enabled(http.enabled, &http.listen),
            http_proxy,
            http_timeout,
            false,
        ),
        row(
            Driver::Http,
            Protocol::Http,
            "https",
            &http.tls_listen,
            http_proxy,
            http_timeout,
            true,
        ),
    ]
}

type Bound = Vec<(Driver, ListenerSpec, runtime::TcpListener)>;

/// Binds every listener of the table on this worker (`SO_REUSEPORT`: every worker binds each).
fn bind_table(
    core: usize,
    config: &Config,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<Bound, StartError> {
    let mut bound = Vec::new();
    for row in listener_table(config) {
        for &addr in &row.addrs {
            let tls = match (row.tls, tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls.clone()),
                (true, None) => return Err(StartError::NoCertificate { label: row.label }),
            };
            let spec = ListenerSpec {
                tls,
                label: row.label,
                protocol: row.protocol,
                addr,
                proxy_protocol: row.proxy_protocol,
                handshake_timeout: Duration::from_millis(row.timeout_ms),
            };
            match runtime::bind_tcp(addr, BACKLOG) {
                Ok(listener) => bound.push((row.driver, spec, listener)),
                Err(source) => {
                    return Err(StartError::Worker {
                        core,
                        what: format!("binding {} on {addr}", row.label),
                        source,
                    });
                }
            }
        }
    }
    Ok(bound)
}

/// Refuses to start when another process already listens on a configured address: binding
/// with `SO_REUSEPORT` would silently join its group and take a share of its connections.
/// A probe bind without `SO_REUSEPORT` fails on a port someone listens on.
fn check_addresses_free(config: &Config) -> Result<(), StartError> {
    for row in listener_table(config) {
        for &addr in &row.addrs {
            if addr.port() == 0 {
                continue;
            }
            if let Err(source) = runtime::probe_bind(addr) {
                return Err(StartError::AddressTaken {
                    label: row.label,
                    addr,
                    source,
                });
            }
        }
    }
    Ok(())
}
