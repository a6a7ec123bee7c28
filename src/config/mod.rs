//! Typed TOML configuration, parsed once at startup (pingora `ServerConf` style).
//!
//! Every table is `#[serde(deny_unknown_fields, default)]` and every field carries a doc comment
//! that `--print-config` prints above it. Loading is: TOML syntax → unknown-key check (errors name
//! the key and its table) → typed decode → `${ENV}` expansion of secrets → validation. The
//! defaults live in the code and in `config/default.toml`, embedded in the binary; a test keeps
//! the two identical. Command-line overrides live in [`crate::cli`].
//!
//! No sockets, no logging: [`Config::startup_warnings`] returns what the server should log.

macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                pub $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl $name {
            /// Field names and doc comments in declaration order (for `--print-config` and
            /// unknown-key errors).
            pub const FIELDS: &'static [FieldDoc] =
                &[$(FieldDoc { name: stringify!($field), doc: &[$($doc),+] }),*];
        }
    };
}

mod cluster;
mod error;
mod print;
mod push;
mod secret;
mod sections;
mod types;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use cluster::{ClusterConfig, ClusterMode, OriginAddr, RedisAddr};
pub use error::{ConfigError, SecretOutput};
pub use push::{AudioMode, DestinationUrl, PushConfig, PushUrl, SOURCE_KEY};
pub use secret::{ExpandError, REDACTED_PLACEHOLDER, Secret, expand_env, process_env, redact_key};
pub use sections::{
    AppConfig, AudioConfig, FanoutConfig, FstreamConfig, FstreamUser, FtlChannel, FtlConfig,
    HttpConfig, IoUringConfig, RtmpConfig, RtmpsConfig, ServerConfig, TlsConfig,
};
pub use types::{Listen, PortRange, PublishPolicy, Switch};

/// The default configuration, embedded in the binary (`ringcast` with no `--config`).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// One documented field of a config table.
#[derive(Debug, Clone, Copy)]
pub struct FieldDoc {
    /// The TOML key.
    pub name: &'static str,
    /// The doc comment, one entry per line (each starts with the space after `///`).
    pub doc: &'static [&'static str],
}

section! {
    /// The whole configuration file.
    pub struct Config {
        /// Process-wide settings.
        pub server: ServerConfig = ServerConfig::default(),
        /// io_uring setup of each worker's runtime.
        pub io_uring: IoUringConfig = IoUringConfig::default(),
        /// RTMP ingest and playback.
        pub rtmp: RtmpConfig = RtmpConfig::default(),
        /// RTMP over TLS.
        pub rtmps: RtmpsConfig = RtmpsConfig::default(),
        /// The TLS certificate.
        pub tls: TlsConfig = TlsConfig::default(),
        /// The fan-out engine: rings, GOP cache and slow-watcher policy.
        pub fanout: FanoutConfig = FanoutConfig::default(),
        /// Audio renditions (AAC for players that cannot take Opus).
        pub audio: AudioConfig = AudioConfig::default(),
        /// FTL ingest (TCP control with HMAC-SHA512 auth, RTP media over UDP).
        pub ftl: FtlConfig = FtlConfig::default(),
        /// fstream broadcast and watch.
        pub fstream: FstreamConfig = FstreamConfig::default(),
        /// HTTP-FLV, health, readiness and metrics.
        pub http: HttpConfig = HttpConfig::default(),
        /// Scale-out: origin and edge nodes, and the stream directory.
        pub cluster: ClusterConfig = ClusterConfig::default(),
        /// Restream destinations: each live stream matching `from` is pushed to `url`.
        pub push: Vec<PushConfig> = Vec::new(),
    }
}

/// A table of the file, its fields and the arrays of tables it holds.
pub(crate) struct TableSchema {
    pub name: &'static str,
    pub fields: &'static [FieldDoc],
    pub arrays: &'static [ArraySchema],
}

/// An array of tables (`[[rtmp.apps]]`), with an example printed when it is empty.
pub(crate) struct ArraySchema {
    pub name: &'static str,
    pub fields: &'static [FieldDoc],
    pub example: &'static [&'static str],
}

/// The layout of the file, in print order.
pub(crate) const SCHEMA: &[TableSchema] = &[
    TableSchema {
        name: "server",
        fields: ServerConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "io_uring",
        fields: IoUringConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "rtmp",
        fields: RtmpConfig::FIELDS,
        arrays: &[ArraySchema {
            name: "apps",
            fields: AppConfig::FIELDS,
            example: &[
                "[[rtmp.apps]]",
                "name = \"live\"",
                "publish_keys = [\"${LIVE_KEY}\"]",
            ],
        }],
    },
    TableSchema {
        name: "rtmps",
        fields: RtmpsConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "tls",
        fields: TlsConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "fanout",
        fields: FanoutConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "audio",
        fields: AudioConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "ftl",
        fields: FtlConfig::FIELDS,
        arrays: &[ArraySchema {
            name: "channels",
            fields: FtlChannel::FIELDS,
            example: &["[[ftl.channels]]", "id = 77", "key = \"${FTL_77_KEY}\""],
        }],
    },
    TableSchema {
        name: "fstream",
        fields: FstreamConfig::FIELDS,
        arrays: &[ArraySchema {
            name: "users",
            fields: FstreamUser::FIELDS,
            example: &[
                "[[fstream.users]]",
                "name = \"fier\"",
                "password = \"${FIER_PASSWORD}\"",
            ],
        }],
    },
    TableSchema {
        name: "http",
        fields: HttpConfig::FIELDS,
        arrays: &[],
    },
    TableSchema {
        name: "cluster",
        fields: ClusterConfig::FIELDS,
        arrays: &[],
    },
];

/// Arrays of tables at the top level (`[[push]]`), printed after every table.
pub(crate) const TOP_ARRAYS: &[ArraySchema] = &[ArraySchema {
    name: "push",
    fields: PushConfig::FIELDS,
    example: &[
        "[[push]]",
        "id = \"youtube\"",
        "from = \"live/mykey\"",
        "url = \"rtmps://a.rtmp.youtube.com/live2\"",
        "key = \"${YT_KEY}\"",
    ],
}];

impl Config {
    /// The name logs show for the stream `full` (`app/key`). One rule for every protocol: an
    /// RTMP stream key is a secret (shown as its first two characters and `****`); an FTL
    /// channel's stream (the channel id is public) and an fstream channel
    /// (`fstream/<user>/<channel>`) are not.
    pub fn shown_stream_name(&self, full: &str) -> String {
        let public = full.split('/').next() == Some("fstream")
            || self
                .ftl
                .channels
                .iter()
                .any(|c| self.ftl.stream_name(c) == full);
        match full.split_once('/') {
            Some((app, key)) if !public => format!("{app}/{}", redact_key(key)),
            _ => full.to_owned(),
        }
    }

    /// The built-in defaults, read from the embedded `config/default.toml`.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse_toml(DEFAULT_TOML, "built-in default config")
    }

    /// Reads, parses, resolves `${ENV}` from the process environment and validates `path`.
    pub fn load_file(path: &Path) -> Result<Self, ConfigError> {
        let mut config = Self::parse_file(path)?;
        config.finish(&process_env)?;
        Ok(config)
    }

    /// Parses and checks `text` for keys and types only: secrets are not yet expanded and the
    /// values not yet validated (call [`Config::finish`] after applying overrides).
    pub fn parse_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        validate::check_unknown_keys(&table, origin)?;
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads `path` and runs [`Config::parse_toml`] on it.
    pub fn parse_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_toml(&text, &path.display().to_string())
    }

    /// Expands `${ENV}` in every secret with `lookup`, then validates.
    pub fn finish(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.resolve_secrets(lookup)?;
        validate::validate(self)
    }

    /// Parses, resolves with `lookup` and validates `text` in one step (tests, embedding).
    pub fn from_toml_str(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::parse_toml(text, "config")?;
        config.finish(lookup)?;
        Ok(config)
    }

    /// Every secret with its field path, for expansion and redaction.
    fn secrets_mut(&mut self) -> Vec<(String, &mut Secret)> {
        let mut out = Vec::new();
        for app in &mut self.rtmp.apps {
            for (i, key) in app.publish_keys.iter_mut().enumerate() {
                out.push((format!("rtmp.apps[{:?}].publish_keys[{i}]", app.name), key));
            }
        }
        for ch in &mut self.ftl.channels {
            out.push((format!("ftl.channels[id = {}].key", ch.id), &mut ch.key));
        }
        for user in &mut self.fstream.users {
            out.push((
                format!("fstream.users[{:?}].password", user.name),
                &mut user.password,
            ));
        }
        out.push(("http.api_token".to_owned(), &mut self.http.api_token));
        for p in &mut self.push {
            out.push((format!("push[{:?}].key", p.id), &mut p.key));
        }
        out
    }

    fn resolve_secrets(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (field, secret) in self.secrets_mut() {
            secret
                .resolve(lookup)
                .map_err(|source| ConfigError::Secret { field, source })?;
        }
        Ok(())
    }

    /// The effective config as TOML, a comment above every table and field. Loading the output
    /// gives this config back (with [`SecretOutput::Reveal`], or when every secret is `${ENV}`).
    pub fn to_documented_toml(&self, secrets: SecretOutput) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        if secrets == SecretOutput::Redacted {
            for (_, secret) in shown.secrets_mut() {
                let public = secret.is_from_env()
                    || secret.source().is_empty()
                    || secret.source() == SOURCE_KEY;
                if !public {
                    *secret = Secret::from_source(REDACTED_PLACEHOLDER);
                }
            }
            for p in &mut shown.push {
                p.url = DestinationUrl(push::redacted_url(&p.url.0));
            }
        }
        print::documented_toml(&shown)
    }

    /// What the server should log as warnings at startup (insecure or surprising settings).
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rtmp.default_policy == PublishPolicy::Open {
            out.push(
                "RTMP publishing is open: any stream key may publish to any app without an \
                 [[rtmp.apps]] entry. To restrict it, add [[rtmp.apps]] with name = \"live\" and \
                 publish_keys = [\"${LIVE_KEY}\"], and set rtmp.default_policy = \"deny\"."
                    .to_owned(),
            );
        }
        for app in self.rtmp.apps.iter().filter(|a| a.publish_keys.is_empty()) {
            out.push(format!(
                "RTMP app {:?} has no publish_keys: any key may publish to it.",
                app.name
            ));
        }
        if self.ftl.enabled == Switch::On && self.ftl.channels.is_empty() {
            out.push(
                "FTL is enabled but no channel has a key, so every FTL publisher will be refused: \
                 add [[ftl.channels]] or pass --ftl-key ID-SECRET."
                    .to_owned(),
            );
        }
        if self.fstream.enabled && self.fstream.users.is_empty() {
            out.push(format!(
                "fstream has no [[fstream.users]]: broadcasters are checked only against {}/<user>.ini.",
                self.fstream.users_dir.display()
            ));
        }
        let proxied: Vec<&str> = [
            ("rtmp", self.rtmp.proxy_protocol),
            ("ftl", self.ftl.proxy_protocol && self.ftl.is_active()),
            (
                "fstream",
                self.fstream.proxy_protocol && self.fstream.enabled,
            ),
            ("http", self.http.proxy_protocol && self.http.enabled),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if !proxied.is_empty() {
            out.push(format!(
                "proxy_protocol is on for {}: every connection there must start with a PROXY \
                 header, and the client address it claims is believed. Expose these ports only to \
                 the trusted balancer.",
                proxied.join(", ")
            ));
        }
        if self.ftl.proxy_protocol && self.ftl.is_active() {
            out.push(
                "ftl.proxy_protocol is on: FTL media (UDP) carries no PROXY header and is accepted \
                 only from the client address the control connection's header names, so the UDP \
                 ports must be reached from the client's own address (not through a NAT)."
                    .to_owned(),
            );
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "LIVE_KEY" => Some("live-secret".to_owned()),
            "FTL_77_KEY" => Some("ieDQxSZ7q58EEeLTvja4QKKGzndwUkVQ".to_owned()),
            "FIER_PASSWORD" => Some("fier-pw".to_owned()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, &env)
    }

    const RESTRICTED: &str = r#"
        [rtmp]
        default_policy = "deny"
        [[rtmp.apps]]
        name = "live"
        publish_keys = ["${LIVE_KEY}", "$${not-a-var}"]
        [[rtmp.apps]]
        name = "vod"
        play = false
        publish_keys = ["plain-key"]
        [ftl]
        advertised_port_range = "40000-40999"
        [[ftl.channels]]
        id = 77
        key = "${FTL_77_KEY}"
        [[ftl.channels]]
        id = 78
        key = "literal-ftl"
        stream = "live/show"
        [[fstream.users]]
        name = "fier"
        password = "${FIER_PASSWORD}"
    "#;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.server.workers, 0);
        assert!(c.server.pin_cores);
        assert_eq!(
            c.rtmp.listen[..],
            ["0.0.0.0:1935".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.rtmp.chunk_size, 4096);
        assert_eq!(c.rtmp.max_message_size, 8 * 1024 * 1024);
        assert_eq!(c.rtmp.max_chunk_streams, 64);
        assert_eq!(c.rtmp.handshake_timeout_ms, 10_000);
        assert_eq!(c.rtmp.default_policy, PublishPolicy::Open);
        assert!(c.rtmp.publish_allowed("live", "anything"));
        assert!(c.fanout.gop_cache && !c.fanout.takeover);
        assert_eq!(c.fanout.ring_frames, 4096);
        assert_eq!(c.fanout.slow_watcher_disconnect_ms, 5_000);
        assert!(!c.ftl.is_active() && c.ftl.takeover && c.ftl.nack);
        assert_eq!(c.ftl.listen[0].port(), 8084);
        assert_eq!(
            c.ftl.udp_port_range,
            PortRange {
                start: 20_000,
                end: 20_999
            }
        );
        assert_eq!(c.ftl.stream_name_template, "ftl/{channel}");
        assert_eq!(c.fstream.listen[0].port(), 61920);
        assert_eq!(c.fstream.max_handshake_len, 4096);
        assert!(c.http.enabled);
        assert_eq!(c.http.listen[0].port(), 8080);
        validate::validate(&c).unwrap();
    }

    #[test]
    fn embedded_default_toml_is_the_printed_default() {
        let parsed = Config::embedded_default().unwrap();
        assert_eq!(parsed, Config::default());
        // Regenerate with `ringcast --print-config > config/default.toml`.
        let printed = Config::default()
            .to_documented_toml(SecretOutput::Redacted)
            .unwrap();
        assert_eq!(DEFAULT_TOML, printed);
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(load("").unwrap(), Config::default());
    }

    #[test]
    fn schema_covers_every_table() {
        let names: Vec<_> = SCHEMA
            .iter()
            .map(|t| t.name)
            .chain(TOP_ARRAYS.iter().map(|a| a.name))
            .collect();
        let fields: Vec<_> = Config::FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(names, fields);
        for table in SCHEMA {
            for field in table.fields {
                assert!(
                    !field.doc.is_empty(),
                    "{}.{} has no doc",
                    table.name,
                    field.name
                );
            }
        }
    }

    #[test]
    fn unknown_key_error_names_key_and_table() {
        let err = load("[rtmp]\nchunk_sise = 1\n").unwrap_err().to_string();
        assert!(
            err.contains("`chunk_sise`") && err.contains("[rtmp]"),
            "{err}"
        );
        assert!(err.contains("chunk_size"), "lists the accepted keys: {err}");

        let err = load("[[rtmp.apps]]\nname = \"live\"\nplya = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`plya`") && err.contains("[[rtmp.apps]] #1"),
            "{err}"
        );

        let err = load("[sever]\nworkers = 2\n").unwrap_err().to_string();
        assert!(
            err.contains("`sever`") && err.contains("top level"),
            "{err}"
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = load("[rtmp]\nchunk_size = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chunk_size"), "{err}");
    }

    #[test]
    fn env_references_expand_in_secrets() {
        let c = load(RESTRICTED).unwrap();
        let live = c.rtmp.app("live").unwrap();
        assert!(live.allows_publish("live-secret"));
        assert!(live.allows_publish("${not-a-var}"));
        assert!(!live.allows_publish("${LIVE_KEY}"));
        assert!(!c.rtmp.publish_allowed("other", "live-secret"));
        assert!(!c.rtmp.play_allowed("vod"));
        let ch = c.ftl.channel(77).unwrap();
        assert!(ch.key.matches(b"ieDQxSZ7q58EEeLTvja4QKKGzndwUkVQ"));
        assert_eq!(c.ftl.stream_name(ch), "ftl/77");
        assert_eq!(c.ftl.stream_name(c.ftl.channel(78).unwrap()), "live/show");
        assert!(c.ftl.is_active());
        assert!(c.fstream.user("fier").unwrap().password.matches(b"fier-pw"));
    }

    #[test]
    fn unset_variable_is_a_clear_error() {
        let err = load("[[rtmp.apps]]\nname = \"live\"\npublish_keys = [\"${MISSING_KEY}\"]\n")
            .unwrap_err();
        assert!(matches!(err, ConfigError::Secret { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("MISSING_KEY") && msg.contains("is not set"),
            "{msg}"
        );
        assert!(msg.contains("rtmp.apps[\"live\"].publish_keys[0]"), "{msg}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = load(RESTRICTED).unwrap();
        let dump = format!("{c:?}");
        for secret in [
            "live-secret",
            "plain-key",
            "literal-ftl",
            "ieDQxSZ7",
            "fier-pw",
        ] {
            assert!(!dump.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn print_config_round_trips() {
        let c = load(RESTRICTED).unwrap();
        let revealed = c.to_documented_toml(SecretOutput::Reveal).unwrap();
        assert_eq!(load(&revealed).unwrap(), c);

        let only_env_text = RESTRICTED
            .replace("\"plain-key\"", "\"${LIVE_KEY}\"")
            .replace(", \"$${not-a-var}\"", "")
            .replace("key = \"literal-ftl\"", "key = \"${FTL_77_KEY}\"");
        let only_env = load(&only_env_text).unwrap();
        let redacted = only_env.to_documented_toml(SecretOutput::Redacted).unwrap();
        assert_eq!(load(&redacted).unwrap(), only_env);
    }

    #[test]
    fn redacted_print_hides_literals_and_refuses_to_load() {
        let c = load(RESTRICTED).unwrap();
        let text = c.to_documented_toml(SecretOutput::Redacted).unwrap();
        assert!(!text.contains("plain-key") && !text.contains("literal-ftl"));
        assert!(!text.contains("live-secret") && !text.contains("fier-pw"));
        assert!(text.contains("${LIVE_KEY}") && text.contains(REDACTED_PLACEHOLDER));
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("redaction placeholder"), "{err}");
    }

    #[test]
    fn printed_config_documents_every_field() {
        let text = load(RESTRICTED)
            .unwrap()
            .to_documented_toml(SecretOutput::Reveal)
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_entry = !line.is_empty() && !line.starts_with('#');
            if is_entry && !line.starts_with("[[") {
                assert!(lines[i - 1].starts_with('#'), "undocumented: {line}");
            }
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            ("[rtmp]\nchunk_size = 64", "rtmp.chunk_size"),
            (
                "[rtmp]\nhandshake_timeout_ms = 0",
                "rtmp.handshake_timeout_ms",
            ),
            ("[rtmp]\nlisten = []", "rtmp.listen"),
            (
                "[fanout]\nwatcher_max_lag_ms = 0",
                "fanout.watcher_max_lag_ms",
            ),
            ("[ftl]\nudp_port_range = \"80-90\"", "ftl.udp_port_range"),
            (
                "[ftl]\nadvertised_port_range = \"1-2\"",
                "ftl.advertised_port_range",
            ),
            (
                "[ftl]\nstream_name_template = \"ftl/x\"",
                "ftl.stream_name_template",
            ),
            (
                "[[rtmp.apps]]\nname = \"a\"\n[[rtmp.apps]]\nname = \"a\"",
                "rtmp.apps[1].name",
            ),
            ("[[ftl.channels]]\nid = 5", "ftl.channels[id = 5].key"),
            ("[http]\nlisten = \"0.0.0.0:1935\"", "http.listen"),
            ("[server]\nworkers = 100000", "server.workers"),
            ("[io_uring]\nsq_entries = 1000", "io_uring.sq_entries"),
            (
                "[io_uring]\nsqpoll_idle_ms = 5\ndefer_taskrun = true",
                "io_uring.sqpoll_idle_ms",
            ),
            ("[io_uring]\ntasks_per_poll = 0", "io_uring.tasks_per_poll"),
            // defer_taskrun is on by default, so SQPOLL alone must say to turn it off.
            ("[io_uring]\nsqpoll_idle_ms = 5", "io_uring.sqpoll_idle_ms"),
            (
                "[fanout]\nwrite_coalesce_us = 200000",
                "fanout.write_coalesce_us",
            ),
        ];
        for (text, field) in cases {
            match load(text) {
                Err(ConfigError::Invalid { field: f, reason }) => {
                    assert_eq!(f, field, "{text}: {reason}");
                }
                other => panic!("{text}: expected an error on {field}, got {other:?}"),
            }
        }
        let err = load("[ftl]\nudp_port_range = \"9-2\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("udp_port_range") && err.contains("START <= END"),
            "{err}"
        );
    }

    #[test]
    fn startup_warnings_say_how_to_restrict_publishing() {
        let warnings = Config::default().startup_warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("publishing is open") && w.contains("publish_keys"))
        );
        let restricted = load(RESTRICTED).unwrap().startup_warnings();
        assert!(
            !restricted.iter().any(|w| w.contains("publish")),
            "{restricted:?}"
        );
    }

    #[test]
    fn startup_warnings_name_every_listener_that_believes_proxy_headers() {
        let defaults = Config::default().startup_warnings();
        assert!(
            !defaults.iter().any(|w| w.contains("PROXY")),
            "{defaults:?}"
        );
        let text = RESTRICTED
            .replace(
                "default_policy = \"deny\"",
                "default_policy = \"deny\"\nproxy_protocol = true",
            )
            .replace("[ftl]\n", "[ftl]\nproxy_protocol = true\n");
        let warnings = load(&text).unwrap().startup_warnings();
        let proxy = warnings
            .iter()
            .find(|w| w.contains("PROXY header"))
            .unwrap();
        assert!(proxy.contains("on for rtmp, ftl:"), "{proxy}");
        assert!(
            warnings.iter().any(|w| w.contains("FTL media (UDP)")),
            "{warnings:?}"
        );
    }
}
