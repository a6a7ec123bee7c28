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

mod print;
mod secret;
mod sections;
mod types;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use secret::{ExpandError, REDACTED_PLACEHOLDER, Secret, expand_env, process_env, redact_key};
pub use sections::{
    AppConfig, FanoutConfig, FstreamConfig, FstreamUser, FtlChannel, FtlConfig, HttpConfig, RtmpConfig,
    ServerConfig,
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
        /// RTMP ingest and playback.
        pub rtmp: RtmpConfig = RtmpConfig::default(),
        /// The fan-out engine: rings, GOP cache and slow-watcher policy.
        pub fanout: FanoutConfig = FanoutConfig::default(),
        /// FTL ingest (TCP control with HMAC-SHA512 auth, RTP media over UDP).
        pub ftl: FtlConfig = FtlConfig::default(),
        /// fstream broadcast and watch.
        pub fstream: FstreamConfig = FstreamConfig::default(),
        /// HTTP-FLV, health, readiness and metrics.
        pub http: HttpConfig = HttpConfig::default(),
    }
}

/// A table of the file, its fields and the arrays of tables it holds.
pub(crate) struct TableSchema {
    pub name: &'static str,
    pub fields: &'static [FieldDoc],
    pub arrays: &'static [(&'static str, &'static [FieldDoc])],
}

/// The layout of the file, in print order.
pub(crate) const SCHEMA: &[TableSchema] = &[
    TableSchema { name: "server", fields: ServerConfig::FIELDS, arrays: &[] },
    TableSchema { name: "rtmp", fields: RtmpConfig::FIELDS, arrays: &[("apps", AppConfig::FIELDS)] },
    TableSchema { name: "fanout", fields: FanoutConfig::FIELDS, arrays: &[] },
    TableSchema { name: "ftl", fields: FtlConfig::FIELDS, arrays: &[("channels", FtlChannel::FIELDS)] },
    TableSchema {
        name: "fstream",
        fields: FstreamConfig::FIELDS,
        arrays: &[("users", FstreamUser::FIELDS)],
    },
    TableSchema { name: "http", fields: HttpConfig::FIELDS, arrays: &[] },
];

/// Why the configuration could not be loaded. Every variant names the file, key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// TOML syntax or a value of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file name, or "built-in default config".
        origin: String,
        /// The TOML error, with line and column.
        message: String,
    },
    /// A key no table defines.
    #[error("{origin}: unknown key `{key}` in {table} (expected one of: {expected})")]
    UnknownKey {
        /// The file name.
        origin: String,
        /// The unknown key.
        key: String,
        /// Where it was found, e.g. `[rtmp]` or `[[rtmp.apps]] #1`.
        table: String,
        /// The keys that table accepts.
        expected: String,
    },
    /// A secret's `${ENV}` reference could not be expanded.
    #[error("{field}: {source}")]
    Secret {
        /// The field, e.g. `rtmp.apps["live"].publish_keys[0]`.
        field: String,
        /// What went wrong (names the variable when it is unset).
        source: ExpandError,
    },
    /// A value out of range or inconsistent with another.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, e.g. `rtmp.chunk_size`.
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// How `--print-config` prints secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretOutput {
    /// A secret from `${ENV}` prints as its reference; a literal prints as
    /// [`REDACTED_PLACEHOLDER`], which refuses to load, so the dump cannot be reused by mistake.
    #[default]
    Redacted,
    /// Literal secrets print as written (`--show-secrets`); the output then round-trips exactly.
    Reveal,
}

impl Config {
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
            out.push((format!("fstream.users[{:?}].password", user.name), &mut user.password));
        }
        out
    }

    fn resolve_secrets(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
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
                if !secret.is_from_env() {
                    *secret = Secret::from_source(REDACTED_PLACEHOLDER);
                }
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
        if self.rtmp.proxy_protocol {
            out.push(
                "rtmp.proxy_protocol is on: every RTMP connection must start with a PROXY header; \
                 expose the port only to the trusted balancer."
                    .to_owned(),
            );
        }
        out
    }
}

