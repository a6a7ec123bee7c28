//! The sections of the config file, one struct per `[table]`, with their defaults and the typed
//! accessors the server uses (publish checks, FTL channel lookup, worker count).
//!
//! Every field has a doc comment: the `section!` macro requires one and `--print-config` prints it
//! above the field. No IO and no logging here.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::FieldDoc;
use super::secret::Secret;
use super::types::{Listen, PortRange, PublishPolicy, Switch};

const MIB: u64 = 1024 * 1024;

section! {
    /// Process-wide settings.
    pub struct ServerConfig {
        /// Worker threads, one io_uring runtime each; 0 = one per available core.
        pub workers: usize = 0,
        /// Pin each worker to its own core.
        pub pin_cores: bool = true,
        /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive list such
        /// as "ringcast=debug,info". The --log flag and RUST_LOG take precedence.
        pub log: String = "info".to_owned(),
        /// On SIGINT/SIGTERM, /readyz answers 503 for this long while everything else keeps
        /// serving, so a load balancer stops sending new clients first; then the workers wind
        /// down. In milliseconds; a second signal skips the rest of the wait.
        pub shutdown_drain_ms: u64 = 0,
        /// Zero-downtime upgrade: start even though another ringcast already listens on the
        /// configured addresses, sharing them (SO_REUSEPORT) until the old one is stopped with
        /// SIGTERM. Off: a second process on the same address refuses to start.
        pub handover_listeners: bool = false,
    }
}

impl ServerConfig {
    /// The number of workers to start: `workers`, or the available cores when it is 0.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
    }
}

section! {
    /// io_uring setup of each worker's runtime (ignored on the epoll fallback). tuning/README.md
    /// has each option's measured effect.
    pub struct IoUringConfig {
        /// Submission queue entries per worker: one write per watcher per wake must fit
        /// (64..=32768, a power of two).
        pub sq_entries: u32 = 4096,
        /// IORING_SETUP_COOP_TASKRUN: completions are not forced onto the worker by an
        /// interrupt; it picks them up when it next enters the kernel.
        pub coop_taskrun: bool = false,
        /// IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1+): completion work runs only
        /// when the worker waits for completions, batched. Where the kernel refuses it, each
        /// worker logs a warning and runs without.
        pub defer_taskrun: bool = true,
        /// IORING_SETUP_SQPOLL with this idle time in milliseconds (0 = off): a kernel thread
        /// per worker polls the submission queue, so submitting costs no syscall but the thread
        /// spins on a core while busy. Needs coop_taskrun = false and defer_taskrun = false.
        pub sqpoll_idle_ms: u32 = 0,
        /// Tasks the worker runs between two polls of its ring (1..=65536): each poll submits
        /// the sends those tasks queued and reaps what completed. Smaller starts the kernel on
        /// the first watchers' sends sooner, at more `io_uring_enter` calls per frame.
        pub tasks_per_poll: u32 = 61,
    }
}

section! {
    /// RTMP ingest and playback.
    pub struct RtmpConfig {
        /// Listen addresses ("IP:PORT" or a list of them).
        pub listen: Listen = Listen::any_ipv4(1935),
        /// Outgoing chunk size in bytes, announced with Set Chunk Size (128..=65536).
        pub chunk_size: u32 = 4096,
        /// Largest message a peer may send, in bytes; a larger one closes the session
        /// (1024..=16777215, the 24-bit RTMP message length).
        pub max_message_size: u32 = 8 * 1024 * 1024,
        /// Most chunk stream ids a peer may use at once (reassembly state is kept per id).
        pub max_chunk_streams: u32 = 64,
        /// Window Acknowledgement Size announced to peers, in bytes.
        pub window_ack_size: u32 = 2_500_000,
        /// Time allowed for the handshake and the connect command, in milliseconds.
        pub handshake_timeout_ms: u64 = 10_000,
        /// A session that receives nothing for this long is closed, in milliseconds.
        pub idle_timeout_ms: u64 = 30_000,
        /// Every connection must start with a PROXY protocol v1 or v2 header (haproxy's
        /// send-proxy / send-proxy-v2), read within handshake_timeout_ms; its source address is
        /// the client's address from then on (logs). A connection without a valid header is
        /// closed. Only behind a trusted balancer: whoever reaches the port can claim any address.
        pub proxy_protocol: bool = false,
        /// Most a publisher may send, in kilobits per second averaged over each second; one
        /// above it for max_publish_sustain_ms is disconnected (0 = no limit, the default).
        pub max_publish_kbps: u32 = 0,
        /// How long a publisher may stay above max_publish_kbps, in milliseconds.
        pub max_publish_sustain_ms: u64 = 10_000,
        /// Who may publish to an app without an [[rtmp.apps]] entry: "open" (any key) or "deny".
        /// Playing an unlisted app is always allowed.
        pub default_policy: PublishPolicy = PublishPolicy::Open,
        /// Per-app publish and play rules ([[rtmp.apps]] tables).
        pub apps: Vec<AppConfig> = Vec::new(),
    }
}

impl RtmpConfig {
    /// The entry for app `name`, if the config lists one.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// Whether `key` may publish to `app`: the app's keys if it is listed, else `default_policy`.
    pub fn publish_allowed(&self, app: &str, key: &str) -> bool {
        match self.app(app) {
            Some(entry) => entry.allows_publish(key),
            None => self.default_policy == PublishPolicy::Open,
        }
    }

    /// Whether watchers may play streams of `app` (unlisted apps: yes).
    pub fn play_allowed(&self, app: &str) -> bool {
        self.app(app).is_none_or(|a| a.play)
    }
}

section! {
    /// One RTMP application (the first path segment of the stream name, e.g. "live").
    pub struct AppConfig {
        /// The app name, e.g. "live".
        pub name: String = String::new(),
        /// Stream keys allowed to publish; "${ENV}" reads an environment variable, "$${" is a
        /// literal "${". An empty list lets any key publish.
        pub publish_keys: Vec<Secret> = Vec::new(),
        /// Whether watchers may play this app's streams.
        pub play: bool = true,
    }
}

impl AppConfig {
    /// Whether `key` may publish here: any key when `publish_keys` is empty, else a match with
    /// one of them. Every key is compared (constant time per key, no early exit).
    pub fn allows_publish(&self, key: &str) -> bool {
        if self.publish_keys.is_empty() {
            return true;
        }
        self.publish_keys
            .iter()
            .fold(false, |found, k| found | k.matches(key.as_bytes()))
    }
}

section! {
    /// The fan-out engine: rings, GOP cache and slow-watcher policy.
    pub struct FanoutConfig {
        /// Start new watchers at the last keyframe, after cached metadata and sequence headers;
        /// false: at the live head, from the next keyframe (sequence headers still sent first).
        pub gop_cache: bool = true,
        /// Most bytes one stream's cached GOP may hold; beyond it the cache is dropped until the
        /// next keyframe.
        pub max_gop_bytes: u64 = 16 * MIB,
        /// Capacity of each per-core stream ring, in frames.
        pub ring_frames: u32 = 4096,
        /// A watcher further behind than this (or overrun by the ring) skips to the next
        /// keyframe, in milliseconds. Frames from before the newest keyframe that are further
        /// behind than this are not kept.
        pub watcher_max_lag_ms: u64 = 1_500,
        /// A watcher that stays behind for this long is disconnected, in milliseconds. A
        /// disconnected slow watcher's socket is aborted (TCP RST), so what was queued for it
        /// leaves the kernel at once.
        pub slow_watcher_disconnect_ms: u64 = 5_000,
        /// Kernel send buffer (SO_SNDBUF) of each watcher socket, in bytes: what one watcher
        /// can have queued in the kernel. 0 = sized per watcher from the stream's bitrate and
        /// watcher_max_lag_ms (clamped to 128 KiB..8 MiB); the kernel doubles the value.
        pub watcher_send_buffer_bytes: u32 = 0,
        /// Set each watcher socket's SO_SNDBUF as watcher_send_buffer_bytes says (true); false
        /// leaves the kernel's send-buffer autotuning on (up to net.ipv4.tcp_wmem's maximum).
        pub bound_watcher_send_buffer: bool = true,
        /// After a publisher leaves, watchers stay attached this long waiting for it to return,
        /// in milliseconds (0 = end the stream at once).
        pub publisher_grace_ms: u64 = 5_000,
        /// A second RTMP/fstream publisher on a live stream replaces the first (true) or is
        /// refused with NetStream.Publish.BadName (false). FTL has its own ftl.takeover.
        pub takeover: bool = false,
        /// Write coalescing: how long audio, metadata and sequence headers may wait for the next
        /// video frame before their watchers are woken anyway, so both leave in one write, in
        /// microseconds (0 = every frame is written at once; at most 100 000). A held frame
        /// waits between half this and this: with the default (30 to 60 ms) audio nearly always
        /// rides with the next video frame at 25 fps or more. Video is never delayed; one timer
        /// per core, nothing per watcher.
        pub write_coalesce_us: u64 = 60_000,
    }
}

section! {
    /// Audio renditions: the AAC made from Opus audio for players that cannot take Opus.
    pub struct AudioConfig {
        /// Bitrate of the AAC-LC rendition of a stream's Opus audio (48 kHz, the source's
        /// channels), in kbit/s (32..=320). Made once per stream while any player needs it.
        pub aac_bitrate_kbps: u32 = 128,
    }
}

section! {
    /// FTL ingest (TCP control with HMAC-SHA512 auth, RTP media over UDP).
    pub struct FtlConfig {
        /// true, false or "auto": auto listens when at least one [[ftl.channels]] key exists
        /// (from the file or --ftl-key); --ftl ADDR turns it on.
        pub enabled: Switch = Switch::Auto,
        /// Control channel listen addresses (clients hard-code port 8084).
        pub listen: Listen = Listen::any_ipv4(8084),
        /// UDP ports this node binds for media, one per live FTL stream ("START-END").
        pub udp_port_range: PortRange = PortRange { start: 20_000, end: 20_999 },
        /// Ports announced in "200. Use UDP port N" when a balancer maps them ("START-END", same
        /// length as udp_port_range; the Nth bound port is announced as the Nth of this range).
        /// Unset: announce the bound port.
        pub advertised_port_range: Option<PortRange> = None,
        /// Send RTCP NACKs for lost RTP packets (the client resends them).
        pub nack: bool = true,
        /// Packets that must arrive after a gap before it counts as lost and is NACKed.
        pub reorder_window_packets: u16 = 16,
        /// A control connection must authenticate within this time, in milliseconds.
        pub auth_timeout_ms: u64 = 5_000,
        /// An authenticated session with no media for this long is ended with 408, in
        /// milliseconds.
        pub no_media_timeout_ms: u64 = 10_000,
        /// A session whose control and media are both silent this long is ended, in
        /// milliseconds (clients ping every 5 s).
        pub idle_timeout_ms: u64 = 30_000,
        /// A second publisher on a live channel replaces the first (true) or gets 406 (false).
        pub takeover: bool = true,
        /// Every control connection must start with a PROXY protocol v1 or v2 header, read
        /// within auth_timeout_ms; its source address is the client's for the HMAC rate limit and
        /// the UDP media filter. Media carries no header: it must reach the UDP ports from the
        /// client's own address (directly, or through a balancer that keeps source addresses).
        pub proxy_protocol: bool = false,
        /// Most HMAC challenges one source IP may request per minute, for the whole node
        /// (every worker shares the count; 0 = unlimited).
        pub hmac_attempts_per_minute_per_ip: u32 = 30,
        /// Stream name of a channel without its own `stream`; "{channel}" is the channel id.
        pub stream_name_template: String = "ftl/{channel}".to_owned(),
        /// Channels allowed to publish ([[ftl.channels]] tables).
        pub channels: Vec<FtlChannel> = Vec::new(),
    }
}

impl FtlConfig {
    /// Whether the FTL listener should run.
    pub fn is_active(&self) -> bool {
        match self.enabled {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => !self.channels.is_empty(),
        }
    }

    /// The channel with id `id`, if configured.
    pub fn channel(&self, id: u32) -> Option<&FtlChannel> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The stream name channel `channel` publishes to: its `stream` or the template.
    pub fn stream_name(&self, channel: &FtlChannel) -> String {
        match &channel.stream {
            Some(s) => s.clone(),
            None => self
                .stream_name_template
                .replace("{channel}", &channel.id.to_string()),
        }
    }

    /// The port announced to the client for bound media port `bound`.
    pub fn advertised_port(&self, bound: u16) -> u16 {
        match self.advertised_port_range {
            Some(adv) if self.udp_port_range.contains(bound) => {
                adv.start.saturating_add(bound - self.udp_port_range.start)
            }
            _ => bound,
        }
    }
}

section! {
    /// One FTL channel: the stream key "{id}-{key}" that OBS-era clients hold.
    pub struct FtlChannel {
        /// The channel id (the number before the '-' in the stream key).
        pub id: u32 = 0,
        /// The shared secret (after the '-'); "${ENV}" reads an environment variable.
        pub key: Secret = Secret::default(),
        /// Stream name override; unset uses ftl.stream_name_template.
        pub stream: Option<String> = None,
    }
}

section! {
    /// fstream: length-prefixed TCP handshake, then opaque bytes (broadcast or watch).
    pub struct FstreamConfig {
        /// Run the fstream listener.
        pub enabled: bool = true,
        /// Listen addresses.
        pub listen: Listen = Listen::any_ipv4(61920),
        /// Directory of `<user>.ini` files with a password (the original server's layout),
        /// consulted for users not listed in [[fstream.users]].
        pub users_dir: PathBuf = PathBuf::from("users"),
        /// Time allowed to send the handshake payload, in milliseconds.
        pub handshake_timeout_ms: u64 = 10_000,
        /// Largest handshake payload accepted, in bytes.
        pub max_handshake_len: u32 = 4096,
        /// A broadcaster that sends nothing for this long is disconnected, in milliseconds.
        pub broadcaster_idle_timeout_ms: u64 = 30_000,
        /// Every connection must start with a PROXY protocol v1 or v2 header, read within
        /// handshake_timeout_ms; its source address is the client's address from then on (logs).
        /// Only behind a trusted balancer, as for rtmp.proxy_protocol.
        pub proxy_protocol: bool = false,
        /// Failed broadcaster logins one source address may make within login_lockout_ms; after
        /// that it is refused without a password check until its failures age out of that
        /// window (0 = no limit). Other addresses, the same user included, are not affected.
        pub login_failures_per_ip: u32 = 10,
        /// The window login_failures_per_ip counts over, in milliseconds.
        pub login_lockout_ms: u64 = 300_000,
        /// Users allowed to broadcast ([[fstream.users]] tables).
        pub users: Vec<FstreamUser> = Vec::new(),
    }
}

impl FstreamConfig {
    /// The listed user `name`, if any.
    pub fn user(&self, name: &str) -> Option<&FstreamUser> {
        self.users.iter().find(|u| u.name == name)
    }
}

section! {
    /// One fstream user.
    pub struct FstreamUser {
        /// The user name ("user=" in the handshake).
        pub name: String = String::new(),
        /// The user password ("user-password="); "${ENV}" reads an environment variable.
        pub password: Secret = Secret::default(),
    }
}

section! {
    /// RTMPS: RTMP over TLS, with the certificate from `[tls]`. Same apps, keys, policies and
    /// limits as `[rtmp]` (its chunk size, timeouts, proxy_protocol).
    pub struct RtmpsConfig {
        /// Listen addresses ("IP:PORT" or a list; the usual port is 1936 or 443); empty = off.
        /// Needs tls.cert_file and tls.key_file.
        pub listen: Listen = Listen(Vec::new()),
    }
}

section! {
    /// The server certificate for `[rtmps]` and `[http]` `tls_listen`. PEM files; SIGHUP re-reads
    /// them (a pair that does not load is refused and the old one kept).
    pub struct TlsConfig {
        /// Certificate chain, leaf first ("" = none).
        pub cert_file: PathBuf = PathBuf::new(),
        /// Private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1; "" = none).
        pub key_file: PathBuf = PathBuf::new(),
    }
}

impl TlsConfig {
    /// True when both files are set.
    pub fn is_configured(&self) -> bool {
        !self.cert_file.as_os_str().is_empty() && !self.key_file.as_os_str().is_empty()
    }
}

section! {
    /// HTTP: HTTP-FLV (`GET /<app>/<key>.flv`), /healthz, /readyz and /metrics.
    pub struct HttpConfig {
        /// Run the HTTP listener.
        pub enabled: bool = true,
        /// Listen addresses.
        pub listen: Listen = Listen::any_ipv4(8080),
        /// HTTPS listen addresses: the same endpoints over TLS with the `[tls]` certificate
        /// (empty = off; served whenever set, even with enabled = false for plain HTTP).
        pub tls_listen: Listen = Listen(Vec::new()),
        /// Each request head must arrive within this time of the connection opening (or of the
        /// previous response, on a kept-alive connection), in milliseconds; a slower client is
        /// disconnected.
        pub request_timeout_ms: u64 = 10_000,
        /// Largest request head (request line and header fields) accepted, in bytes; a larger
        /// one gets 431 (1024..=65536).
        pub max_request_head: u32 = 8192,
        /// A watcher of a stream that is not live waits for its publisher, as RTMP players do
        /// (true); or gets 404 at once (false: a mistyped URL fails fast, for CDNs that retry).
        pub wait_for_publisher: bool = true,
        /// Access-Control-Allow-Origin sent on every response, so browser players (flv.js,
        /// mpegts.js) on other origins may read streams; "" sends no CORS headers.
        pub cors_allow_origin: String = "*".to_owned(),
        /// Every connection must start with a PROXY protocol v1 or v2 header, read within
        /// request_timeout_ms; its source address is the client's address from then on (logs).
        /// Only behind a trusted balancer, as for rtmp.proxy_protocol.
        pub proxy_protocol: bool = false,
        /// When set, every `/api/*` request must carry `Authorization: Bearer <api_token>`
        /// ("${ENV}" reads an environment variable); "" leaves the API open.
        pub api_token: Secret = Secret::default(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn app(keys: &[&str]) -> AppConfig {
        AppConfig {
            name: "live".to_owned(),
            publish_keys: keys.iter().map(|k| Secret::literal(k)).collect(),
            play: true,
        }
    }

    #[test]
    fn app_with_keys_allows_only_those_keys() {
        let a = app(&["one", "two"]);
        assert!(a.allows_publish("one"));
        assert!(a.allows_publish("two"));
        assert!(!a.allows_publish("three"));
        assert!(!a.allows_publish(""));
        assert!(app(&[]).allows_publish("anything"));
    }

    #[test]
    fn unlisted_apps_follow_default_policy() {
        let mut r = RtmpConfig {
            apps: vec![app(&["k"])],
            ..RtmpConfig::default()
        };
        assert!(r.publish_allowed("other", "x"));
        assert!(!r.publish_allowed("live", "x"));
        r.default_policy = PublishPolicy::Deny;
        assert!(!r.publish_allowed("other", "x"));
        assert!(r.publish_allowed("live", "k"));
        assert!(r.play_allowed("other"));
    }

    #[test]
    fn ftl_is_active_with_a_channel_or_when_on() {
        let mut f = FtlConfig::default();
        assert!(!f.is_active());
        f.channels.push(FtlChannel {
            id: 77,
            ..FtlChannel::default()
        });
        assert!(f.is_active());
        assert_eq!(f.stream_name(&f.channels[0]), "ftl/77");
        f.enabled = Switch::Off;
        assert!(!f.is_active());
    }

    #[test]
    fn advertised_port_maps_by_offset() {
        let mut f = FtlConfig::default();
        assert_eq!(f.advertised_port(20_005), 20_005);
        f.advertised_port_range = Some(PortRange {
            start: 40_000,
            end: 40_999,
        });
        assert_eq!(f.advertised_port(20_005), 40_005);
    }

    #[test]
    fn workers_zero_means_available_cores() {
        assert!(ServerConfig::default().worker_count() >= 1);
        let s = ServerConfig {
            workers: 3,
            ..ServerConfig::default()
        };
        assert_eq!(s.worker_count(), 3);
    }
}
