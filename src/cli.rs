//! The command line: flags that override the essentials of the config file, `--print-config`,
//! and the `fstream` client subcommand. Parsing only; `main` does the IO.
//!
//! How `main` uses it:
//!
//! ```no_run
//! use clap::Parser as _;
//! use ringcast::cli::{Cli, Command};
//!
//! let cli = Cli::parse();
//! if let Some(Command::Fstream { addr, payload }) = &cli.command {
//!     // run the fstream client: pipe stdin to a broadcast, or a watch to stdout
//!     let _ = (addr, payload);
//!     return;
//! }
//! let config = match cli.load_config() {
//!     Ok(config) => config,
//!     Err(e) => {
//!         eprintln!("ringcast: {e}");
//!         std::process::exit(2);
//!     }
//! };
//! if cli.print_config {
//!     match config.to_documented_toml(cli.secret_output()) {
//!         Ok(text) => print!("{text}"),
//!         Err(e) => {
//!             eprintln!("ringcast: {e}");
//!             std::process::exit(2);
//!         }
//!     }
//!     return;
//! }
//! // tracing_subscriber::EnvFilter::new(&config.server.log) — already merged with --log/RUST_LOG
//! for warning in config.startup_warnings() {
//!     tracing::warn!("{warning}");
//! }
//! // start config.server.worker_count() workers ...
//! ```
//!
//! Precedence, lowest first: built-in defaults, the `--config` file (or the embedded
//! `config/default.toml`), then flags. `--log` falls back to `RUST_LOG`; `--config` to
//! `RINGCAST_CONFIG`; `--ftl-key` to `RINGCAST_FTL_KEY` (one key; its value is hidden in `--help`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, FtlChannel, Listen, Secret, SecretOutput, Switch, process_env};

/// ringcast: a live-media fan-out node (RTMP, FTL and fstream in; RTMP, fstream and HTTP-FLV out).
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about)]
pub struct Cli {
    /// TOML config file; without it the built-in defaults are used.
    #[arg(short, long, value_name = "FILE", env = "RINGCAST_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective config (file + flags) as documented TOML and exit. Literal secrets
    /// print as "<redacted>" (which refuses to load); ${ENV} secrets print as their reference.
    #[arg(long)]
    pub print_config: bool,

    /// With --print-config: print literal secrets as written (the output then loads back as is).
    #[arg(long, requires = "print_config")]
    pub show_secrets: bool,

    /// RTMP listen address (replaces rtmp.listen).
    #[arg(long, value_name = "ADDR")]
    pub rtmp: Option<SocketAddr>,

    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// FTL control listen address (replaces ftl.listen and turns FTL on).
    #[arg(long, value_name = "ADDR")]
    pub ftl: Option<SocketAddr>,

    /// Add an FTL channel from a stream key "ID-SECRET" (repeatable; replaces a configured
    /// channel with the same id).
    #[arg(long = "ftl-key", value_name = "ID-SECRET", env = "RINGCAST_FTL_KEY", hide_env_values = true)]
    pub ftl_keys: Vec<FtlKey>,

    /// fstream listen address (replaces fstream.listen and turns fstream on).
    #[arg(long, value_name = "ADDR")]
    pub fstream: Option<SocketAddr>,

    /// HTTP listen address for HTTP-FLV, health and metrics (replaces http.listen, turns HTTP on).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Log filter (a level or tracing directives); replaces server.log.
    #[arg(long, value_name = "LEVEL", env = "RUST_LOG")]
    pub log: Option<String>,

    /// A subcommand instead of running the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// fstream client: for a "broadcast,..." payload pipe stdin to ADDR; for "watch,..." pipe the
    /// stream to stdout.
    Fstream {
        /// Server address, e.g. 127.0.0.1:61920.
        addr: String,
        /// Handshake payload, e.g. "watch,user=fier,channel=c,channel-password=123".
        payload: String,
    },
}

impl fmt::Debug for Command {
    /// The payload carries passwords: only its first word (the action) is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fstream { addr, payload } => f
                .debug_struct("Fstream")
                .field("addr", addr)
                .field("payload", &format_args!("{},****", payload.split(',').next().unwrap_or("")))
                .finish(),
        }
    }
}

/// An FTL stream key `{channel}-{secret}` from the command line. Like the reference client, `,`
/// or `_` also separate, and a leading `re_` is ignored.
#[derive(Clone, PartialEq, Eq)]
pub struct FtlKey {
    /// The channel id.
    pub channel: u32,
    /// The shared secret (taken literally: no `${ENV}` expansion).
    pub secret: Secret,
}

impl FromStr for FtlKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || "expected a stream key ID-SECRET, e.g. 77-abcdef".to_owned();
        let s = s.strip_prefix("re_").unwrap_or(s);
        let sep = s.find(['-', ',', '_']).ok_or_else(bad)?;
        let channel = s[..sep].parse::<u32>().map_err(|_| bad())?;
        let secret = &s[sep + 1..];
        if channel == 0 || secret.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            channel,
            secret: Secret::literal(secret),
        })
    }
}

impl fmt::Debug for FtlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FtlKey({}-****)", self.channel)
    }
}

impl Cli {
    /// Loads the config file (or the embedded default), applies the flags, expands `${ENV}` from
    /// the process environment and validates.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        self.load_config_with_env(&process_env)
    }

    /// [`Cli::load_config`] with an explicit environment lookup (tests).
    pub fn load_config_with_env(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::parse_file(path)?,
            None => Config::embedded_default()?,
        };
        self.apply(&mut config);
        config.finish(lookup)?;
        Ok(config)
    }

    /// Applies the flags on top of `config` (before secrets are expanded and values validated).
    pub fn apply(&self, config: &mut Config) {
        if let Some(addr) = self.rtmp {
            config.rtmp.listen = Listen::one(addr);
        }
        if let Some(n) = self.workers {
            config.server.workers = n;
        }
        if let Some(addr) = self.ftl {
            config.ftl.listen = Listen::one(addr);
            config.ftl.enabled = Switch::On;
        }
        for key in &self.ftl_keys {
            config.ftl.channels.retain(|c| c.id != key.channel);
            config.ftl.channels.push(FtlChannel {
                id: key.channel,
                key: key.secret.clone(),
                stream: None,
            });
        }
        if let Some(addr) = self.fstream {
            config.fstream.listen = Listen::one(addr);
            config.fstream.enabled = true;
        }
        if let Some(addr) = self.http {
            config.http.listen = Listen::one(addr);
            config.http.enabled = true;
        }
        if let Some(level) = &self.log {
            config.server.log.clone_from(level);
        }
    }

    /// How `--print-config` should print secrets.
    pub fn secret_output(&self) -> SecretOutput {
        if self.show_secrets {
            SecretOutput::Reveal
        } else {
            SecretOutput::Redacted
        }
    }
}
