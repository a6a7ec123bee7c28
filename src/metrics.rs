//! Node metrics: per-core counters, summed when scraped, rendered as Prometheus text.
//!
//! Each core owns one cache-line-aligned block of counters and is its only writer: a
//! [`CoreMetrics`] is `!Send`, so it cannot leave the core it was made for, and an add is a
//! relaxed load and store (no locked read-modify-write, no line shared with another writer). A
//! scrape, on whichever core serves `/metrics`, sums every core's block with relaxed loads: each
//! value is exact for its core at some instant, and the sum is as good as a scrape needs.
//!
//! Gauges (publishers, watchers) are counters that go down too: a [`Tracked`] adds one when made
//! and takes it back when dropped, on the same core, so a core's share never goes negative.
//!
//! **No per-stream labels.** Stream names carry publish keys, and their number is unbounded (a
//! label per stream would grow the scrape and the TSDB with every key ever used). Labels are the
//! protocol or listener only, a fixed set. No IO here: the server serves [`Metrics::render`].

use std::fmt::Write;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::proto::Blame;

/// The protocols (and listeners) a metric is labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtmp,
    Ftl,
    Fstream,
    /// The HTTP listener; its watchers are HTTP-FLV watchers.
    Http,
}

const PROTOCOLS: usize = 4;

impl Protocol {
    const ALL: [Protocol; PROTOCOLS] = [
        Protocol::Rtmp,
        Protocol::Ftl,
        Protocol::Fstream,
        Protocol::Http,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The listener's name, as the `listener` label and the logs show it.
    pub fn listener_label(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Ftl => "ftl",
            Protocol::Fstream => "fstream",
            Protocol::Http => "http",
        }
    }

    /// The protocol's name, as the `protocol` label and the logs show it.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http-flv",
            other => other.listener_label(),
        }
    }
}

/// One counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Connections accepted, by listener.
    Accepted(Protocol),
    /// Publishers connected now (gauge), by ingest protocol.
    Publishers(Protocol),
    /// Watchers subscribed now (gauge), by egress protocol.
    Watchers(Protocol),
    /// Bytes written to watchers, by egress protocol.
    BytesSent(Protocol),
    /// Frames watchers skipped under the slow-watcher policy, by egress protocol.
    DroppedFrames(Protocol),
    /// Watchers disconnected by the slow-watcher policy, by egress protocol.
    SlowDisconnects(Protocol),
    /// Frames (and opaque fstream chunks) accepted from publishers.
    FramesIngested,
    /// FTL streams started (authenticated sessions that got a media port).
    FtlSessions,
    /// Connections ended by a protocol error, by listener and by who is at fault.
    ConnectionErrors(Protocol, Blame),
}

/// Labelled families, then the unlabelled counters, then the connection errors.
const FAMILIES: usize = 6;
const UNLABELLED: usize = 2;
const BLAMES: usize = Blame::ALL.len();
const SLOTS: usize = FAMILIES * PROTOCOLS + UNLABELLED + BLAMES * PROTOCOLS;

impl Counter {
    fn slot(self) -> usize {
        let family = |f: usize, p: Protocol| f * PROTOCOLS + p.index();
        match self {
            Counter::Accepted(p) => family(0, p),
            Counter::Publishers(p) => family(1, p),
            Counter::Watchers(p) => family(2, p),
            Counter::BytesSent(p) => family(3, p),
            Counter::DroppedFrames(p) => family(4, p),
            Counter::SlowDisconnects(p) => family(5, p),
            Counter::FramesIngested => FAMILIES * PROTOCOLS,
            Counter::FtlSessions => FAMILIES * PROTOCOLS + 1,
            Counter::ConnectionErrors(p, blame) => {
                FAMILIES * PROTOCOLS + UNLABELLED + blame as usize * PROTOCOLS + p.index()
            }
        }
    }
}

/// How a family is exported.
struct Export {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// `(label name, protocols)`, or `None` for one unlabelled sample.
    labels: Option<(&'static str, &'static [Protocol])>,
    counter: fn(Protocol) -> Counter,
}

const EGRESS: &[Protocol] = &[Protocol::Rtmp, Protocol::Fstream, Protocol::Http];
const INGEST: &[Protocol] = &[Protocol::Rtmp, Protocol::Ftl, Protocol::Fstream];

/// Every exported family, in scrape order. The README's metrics table lists the same.
const EXPORTS: &[Export] = &[
    Export {
        name: "ringcast_connections_accepted_total",
        help: "TCP connections accepted, by listener.",
        kind: "counter",
        labels: Some(("listener", &Protocol::ALL)),
        counter: Counter::Accepted,
    },
    Export {
        name: "ringcast_publishers",
        help: "Publishers connected, by ingest protocol.",
        kind: "gauge",
        labels: Some(("protocol", INGEST)),
        counter: Counter::Publishers,
    },
    Export {
        name: "ringcast_watchers",
        help: "Watchers subscribed to a stream (live or awaited), by egress protocol.",
        kind: "gauge",
        labels: Some(("protocol", EGRESS)),
        counter: Counter::Watchers,
    },
    Export {
        name: "ringcast_watcher_bytes_sent_total",
        help: "Bytes written to watchers (media and protocol control), by egress protocol.",
        kind: "counter",
        labels: Some(("protocol", EGRESS)),
        counter: Counter::BytesSent,
    },
    Export {
        name: "ringcast_watcher_dropped_frames_total",
        help: "Frames skipped by watchers that fell behind (slow-watcher policy), by egress protocol.",
        kind: "counter",
        labels: Some(("protocol", EGRESS)),
        counter: Counter::DroppedFrames,
    },
    Export {
        name: "ringcast_slow_watcher_disconnects_total",
        help: "Watchers disconnected for staying behind or a stuck write, by egress protocol.",
        kind: "counter",
        labels: Some(("protocol", EGRESS)),
        counter: Counter::SlowDisconnects,
    },
    Export {
        name: "ringcast_frames_ingested_total",
        help: "Media frames (and opaque fstream chunks) accepted from publishers.",
        kind: "counter",
        labels: None,
        counter: |_| Counter::FramesIngested,
    },
    Export {
        name: "ringcast_ftl_sessions_total",
        help: "FTL streams started (authenticated, media port assigned).",
        kind: "counter",
        labels: None,
        counter: |_| Counter::FtlSessions,
    },
];

/// One core's counters, on a cache line (pair) of their own.
#[repr(align(128))]
#[derive(Debug)]
struct CoreBlock([AtomicU64; SLOTS]);

impl Default for CoreBlock {
    fn default() -> Self {
        CoreBlock(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Why an authentication was refused (`reason` label of `ringcast_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// fstream: no such user.
    UnknownUser,
    /// fstream: the user exists, the password is wrong.
    WrongPassword,
    /// fstream: no user password in the handshake.
    MissingPassword,
    /// fstream: the user's password file is unreadable or malformed.
    BadUserFile,
    /// fstream: the address is locked out after too many failed logins.
    LockedOut,
    /// FTL: the address asked for more HMAC challenges than the per-IP limit.
    RateLimited,
    /// FTL: the HMAC of the stream key did not match.
    WrongKey,
}

impl AuthFailure {
    const ALL: [AuthFailure; AUTH_REASONS] = [
        AuthFailure::UnknownUser,
        AuthFailure::WrongPassword,
        AuthFailure::MissingPassword,
        AuthFailure::BadUserFile,
        AuthFailure::LockedOut,
        AuthFailure::RateLimited,
        AuthFailure::WrongKey,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::MissingPassword => "missing_password",
            AuthFailure::BadUserFile => "bad_user_file",
            AuthFailure::LockedOut => "locked_out",
            AuthFailure::RateLimited => "rate_limited",
            AuthFailure::WrongKey => "wrong_key",
        }
    }

    /// The protocols this reason is reported for.
    fn protocols(self) -> &'static [Protocol] {
        match self {
            AuthFailure::RateLimited | AuthFailure::WrongKey => &[Protocol::Ftl],
            _ => &[Protocol::Fstream],
        }
    }
}

const AUTH_REASONS: usize = 7;

/// The counters of every core of the node.
#[derive(Debug)]
pub struct Metrics {
    cores: Box<[CoreBlock]>,
    /// Refused authentications by protocol and reason: rare, so one shared atomic each.
    auth_failures: [[AtomicU64; AUTH_REASONS]; PROTOCOLS],
}

/// Node-wide values read at scrape time rather than counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeGauges {
    /// Streams with a publisher connected.
    pub live_streams: usize,
    pub workers: usize,
    /// What `/readyz` answers: every worker up and no shutdown under way.
    pub ready: bool,
    /// Log lines dropped since start (`crate::logging::dropped_total`).
    pub log_lines_dropped: u64,
    /// The TLS certificate's notAfter (Unix seconds), when a TLS listener runs.
    pub tls_cert_expiry: Option<i64>,
    /// The cluster's figures, unless the node is standalone.
    pub cluster: Option<ClusterGauges>,
}

/// The cluster's figures (`[cluster]` mode static or redis), read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterGauges {
    /// Streams this node currently pulls from another node.
    pub upstreams: u64,
    /// Whether the Redis directory is connected (redis mode only).
    pub directory_up: Option<bool>,
    /// Pull connections that delivered media.
    pub pulls: u64,
    /// Bytes received by pulls.
    pub pull_bytes: u64,
    /// Pull attempts that failed and were retried.
    pub pull_reconnects: u64,
}

impl Metrics {
    pub fn new(cores: usize) -> Arc<Metrics> {
        Arc::new(Metrics {
            cores: (0..cores.max(1)).map(|_| CoreBlock::default()).collect(),
            auth_failures: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        })
    }

    /// Counts one refused authentication.
    pub fn auth_failed(&self, protocol: Protocol, reason: AuthFailure) {
        if let Some(counter) = self
            .auth_failures
            .get(protocol.index())
            .and_then(|row| row.get(reason as usize))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refused authentications so far for `protocol` and `reason`.
    pub fn auth_failures(&self, protocol: Protocol, reason: AuthFailure) -> u64 {
        self.auth_failures
            .get(protocol.index())
            .and_then(|row| row.get(reason as usize))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The handle core `index` counts with. Call it on that core only, once: the handle's
    /// writes assume no other thread writes the same block.
    pub fn core(self: &Arc<Self>, index: usize) -> CoreMetrics {
        CoreMetrics {
            shared: self.clone(),
            core: index,
            _single_core: PhantomData,
        }
    }

    /// The sum over every core (gauges: wrapping, read as two's complement).
    pub fn total(&self, counter: Counter) -> u64 {
        let slot = counter.slot();
        self.cores.iter().fold(0u64, |sum, block| {
            sum.wrapping_add(block.0.get(slot).map_or(0, |c| c.load(Ordering::Relaxed)))
        })
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, node: NodeGauges) -> String {
        let mut out = String::with_capacity(4096);
        for export in EXPORTS {
            let _ = writeln!(out, "# HELP {} {}", export.name, export.help);
            let _ = writeln!(out, "# TYPE {} {}", export.name, export.kind);
            match export.labels {
                Some((label, protocols)) => {
                    for &p in protocols {
                        let value = self.value(export, p);
                        let shown = if label == "listener" {
                            p.listener_label()
                        } else {
                            p.label()
                        };
                        let _ = writeln!(out, "{}{{{label}=\"{shown}\"}} {value}", export.name);
                    }
                }
                None => {
                    let value = self.value(export, Protocol::Rtmp);
                    let _ = writeln!(out, "{} {value}", export.name);
                }
            }
        }
        let name = "ringcast_auth_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Refused authentications (publish logins, FTL challenges), by protocol and reason.\n# TYPE {name} counter"
        );
        for reason in AuthFailure::ALL {
            for &p in reason.protocols() {
                let value = self.auth_failures(p, reason);
                let (protocol, reason) = (p.label(), reason.label());
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{protocol}\",reason=\"{reason}\"}} {value}"
                );
            }
        }
        let name = "ringcast_log_lines_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Log lines dropped because the log reader fell behind (logging never blocks a worker).\n# TYPE {name} counter\n{name} {}",
            node.log_lines_dropped
        );
        let errors = "ringcast_connection_errors_total";
        let _ = writeln!(
            out,
            "# HELP {errors} Connections ended by a protocol error, by listener and by who is at fault.\n# TYPE {errors} counter"
        );
        for p in Protocol::ALL {
            for blame in Blame::ALL {
                let value = self.total(Counter::ConnectionErrors(p, blame));
                let (protocol, blame) = (p.listener_label(), blame.label());
                let _ = writeln!(
                    out,
                    "{errors}{{protocol=\"{protocol}\",blame=\"{blame}\"}} {value}"
                );
            }
        }
        let gauges = [
            (
                "ringcast_streams_live",
                "Streams with a publisher connected.",
                node.live_streams as u64,
            ),
            (
                "ringcast_workers",
                "Worker threads (cores) serving.",
                node.workers as u64,
            ),
            (
                "ringcast_ready",
                "1 while /readyz answers 200 (workers up, no shutdown under way).",
                u64::from(node.ready),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        if let Some(cluster) = node.cluster {
            render_cluster(&mut out, cluster);
        }
        if let Some(expiry) = node.tls_cert_expiry {
            let name = "ringcast_tls_cert_expiry_timestamp_seconds";
            let help = "When the TLS certificate in use expires (notAfter), in Unix seconds.";
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {expiry}"
            );
        }
        out
    }

    fn value(&self, export: &Export, protocol: Protocol) -> String {
        let raw = self.total((export.counter)(protocol));
        if export.kind == "gauge" {
            // Never negative (a gauge's inc and dec happen on one core, so no core's share
            // is); clamped so a miscount could never print as 2^64 - 1.
            (raw as i64).max(0).to_string()
        } else {
            raw.to_string()
        }
    }
}

/// The `ringcast_cluster_*` families.
fn render_cluster(out: &mut String, c: ClusterGauges) {
    let mut families = vec![
        (
            "ringcast_cluster_upstreams",
            "Streams this node pulls from another node.",
            "gauge",
            c.upstreams,
        ),
        (
            "ringcast_cluster_pulls_total",
            "Pull connections that delivered media (one per stream per node while consumed).",
            "counter",
            c.pulls,
        ),
        (
            "ringcast_cluster_pull_bytes_total",
            "Bytes received from origins by this node's pulls.",
            "counter",
            c.pull_bytes,
        ),
        (
            "ringcast_cluster_pull_reconnects_total",
            "Pull attempts made again after a failed or broken one.",
            "counter",
            c.pull_reconnects,
        ),
    ];
    if let Some(up) = c.directory_up {
        families.push((
            "ringcast_cluster_directory_up",
            "1 while the Redis stream directory is connected.",
            "gauge",
            u64::from(up),
        ));
    }
    for (name, help, kind, value) in families {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// One core's handle on its block. `!Send`: it stays on the core it was made for.
#[derive(Debug, Clone)]
pub struct CoreMetrics {
    shared: Arc<Metrics>,
    core: usize,
    _single_core: PhantomData<Rc<()>>,
}

impl CoreMetrics {
    /// A handle on a block of its own (tests, benches, a hub outside a server).
    pub fn detached() -> Self {
        Metrics::new(1).core(0)
    }

    /// The node's metrics, for a scrape.
    pub fn node(&self) -> &Arc<Metrics> {
        &self.shared
    }

    /// Adds `n` to this core's share of `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        if let Some(cell) = self
            .shared
            .cores
            .get(self.core)
            .and_then(|block| block.0.get(counter.slot()))
        {
            // Single writer per block (this core): load + store is an exact add.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    /// Counts one more of gauge `counter` until the returned value is dropped.
    pub fn track(&self, counter: Counter) -> Tracked {
        self.add(counter, 1);
        Tracked {
            metrics: self.clone(),
            counter,
        }
    }
}

/// One unit of a gauge, given back on drop.
#[derive(Debug)]
pub struct Tracked {
    metrics: CoreMetrics,
    counter: Counter,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.metrics.add(self.counter, u64::MAX);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn cores_count_apart_and_a_scrape_sums_them() {
        let metrics = Metrics::new(2);
        let a = metrics.core(0);
        let b = metrics.core(1);
        a.add(Counter::BytesSent(Protocol::Http), 100);
        b.add(Counter::BytesSent(Protocol::Http), 23);
        b.add(Counter::FramesIngested, 7);
        assert_eq!(metrics.total(Counter::BytesSent(Protocol::Http)), 123);
        assert_eq!(metrics.total(Counter::BytesSent(Protocol::Rtmp)), 0);
        assert_eq!(metrics.total(Counter::FramesIngested), 7);
    }

    #[test]
    fn tracked_gauges_go_back_down_when_dropped() {
        let metrics = Metrics::new(1);
        let core = metrics.core(0);
        let first = core.track(Counter::Watchers(Protocol::Http));
        let second = core.track(Counter::Watchers(Protocol::Http));
        assert_eq!(metrics.total(Counter::Watchers(Protocol::Http)), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.total(Counter::Watchers(Protocol::Http)), 0);
    }

    #[test]
    fn connection_errors_are_counted_by_protocol_and_blame() {
        let metrics = Metrics::new(2);
        metrics.core(0).add(
            Counter::ConnectionErrors(Protocol::Rtmp, Blame::LimitExceeded),
            2,
        );
        metrics.core(1).add(
            Counter::ConnectionErrors(Protocol::Ftl, Blame::PeerMisbehaved),
            1,
        );
        let text = metrics.render(NodeGauges {
            live_streams: 0,
            workers: 2,
            ready: true,
            log_lines_dropped: 0,
            tls_cert_expiry: None,
            cluster: None,
        });
        let series = |p: &str, b: &str| {
            format!("ringcast_connection_errors_total{{protocol=\"{p}\",blame=\"{b}\"}}")
        };
        assert_eq!(sample(&text, &series("rtmp", "limit_exceeded")), Some("2"));
        assert_eq!(sample(&text, &series("ftl", "peer_misbehaved")), Some("1"));
        assert_eq!(sample(&text, &series("rtmp", "peer_misbehaved")), Some("0"));
        assert_eq!(sample(&text, &series("http", "local")), Some("0"));
    }

    #[test]
    fn render_is_prometheus_text_with_every_family() {
        let metrics = Metrics::new(2);
        let core = metrics.core(1);
        core.add(Counter::Accepted(Protocol::Http), 3);
        let _w = core.track(Counter::Watchers(Protocol::Http));
        core.add(Counter::SlowDisconnects(Protocol::Rtmp), 1);
        metrics.auth_failed(Protocol::Fstream, AuthFailure::WrongPassword);
        let text = metrics.render(NodeGauges {
            live_streams: 2,
            workers: 2,
            ready: true,
            log_lines_dropped: 3,
            tls_cert_expiry: Some(1_900_000_000),
            cluster: None,
        });
        assert_eq!(
            sample(
                &text,
                "ringcast_connections_accepted_total{listener=\"http\"}"
            ),
            Some("3")
        );
        assert_eq!(
            sample(&text, "ringcast_watchers{protocol=\"http-flv\"}"),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "ringcast_slow_watcher_disconnects_total{protocol=\"rtmp\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(&text, "ringcast_publishers{protocol=\"ftl\"}"),
            Some("0")
        );
        assert_eq!(sample(&text, "ringcast_frames_ingested_total"), Some("0"));
        assert_eq!(sample(&text, "ringcast_streams_live"), Some("2"));
        assert_eq!(sample(&text, "ringcast_ready"), Some("1"));
        assert_eq!(sample(&text, "ringcast_log_lines_dropped_total"), Some("3"));
        assert_eq!(
            sample(
                &text,
                "ringcast_auth_failures_total{protocol=\"fstream\",reason=\"wrong_password\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "ringcast_auth_failures_total{protocol=\"ftl\",reason=\"rate_limited\"}"
            ),
            Some("0")
        );
        assert_eq!(
            sample(&text, "ringcast_tls_cert_expiry_timestamp_seconds"),
            Some("1900000000")
        );
        for export in EXPORTS {
            assert!(text.contains(&format!("# TYPE {} {}\n", export.name, export.kind)));
        }
        // Every line is a comment or `name{labels} value`, the exposition format's grammar.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{line}"
            );
        }
    }

    #[test]
    fn cluster_families_are_rendered_only_for_a_clustered_node() {
        let metrics = Metrics::new(1);
        let node = NodeGauges {
            live_streams: 1,
            workers: 1,
            ready: true,
            tls_cert_expiry: None,
            cluster: None,
            log_lines_dropped: 0,
        };
        assert!(!metrics.render(node).contains("ringcast_cluster_"));
        let text = metrics.render(NodeGauges {
            cluster: Some(ClusterGauges {
                upstreams: 2,
                directory_up: Some(false),
                pulls: 3,
                pull_bytes: 4096,
                pull_reconnects: 1,
            }),
            ..node
        });
        for line in [
            "ringcast_cluster_upstreams 2",
            "ringcast_cluster_directory_up 0",
            "ringcast_cluster_pulls_total 3",
            "ringcast_cluster_pull_bytes_total 4096",
            "ringcast_cluster_pull_reconnects_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
