//! Errors of loading the configuration, and how `--print-config` treats secrets.

use super::secret::ExpandError;

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
    /// [`REDACTED_PLACEHOLDER`](super::REDACTED_PLACEHOLDER), which refuses to load, so the dump cannot be reused by mistake.
    #[default]
    Redacted,
    /// Literal secrets print as written (`--show-secrets`); the output then round-trips exactly.
    Reveal,
}
