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

use crate::config::{
    Config, ConfigError, FtlChannel, Listen, Secret, SecretOutput, Switch, process_env,
};

/// ringcast: a live-media fan-out node (RTMP, FTL and fstream in; RTMP, fstream and HTTP-FLV out).
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about)]
pub struct Cli {
    /// TOML config file; without it the built-in defaults are used.
    #[arg(short, long, value_name = "FILE", env = "RINGCAST_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective config (file + flags) as documented TOML and exit. Literal secrets
    /// print as `"<redacted>"` (which refuses to load); ${ENV} secrets print as their reference.
    #[arg(long)]
    pub print_config: bool,

    /// With --print-config: print literal secrets as written (the output then loads back as is).
    #[arg(long, requires = "print_config")]
    pub show_secrets: bool,

    /// RTMP listen address (replaces rtmp.listen).
    #[arg(long, value_name = "ADDR")]
    pub rtmp: Option<SocketAddr>,

    /// RTMPS listen address (replaces rtmps.listen; needs --tls-cert and --tls-key or `[tls]`).
    #[arg(long, value_name = "ADDR")]
    pub rtmps: Option<SocketAddr>,

    /// TLS certificate chain, PEM (replaces tls.cert_file).
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (replaces tls.key_file).
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// HTTPS listen address (replaces http.tls_listen; needs a certificate as for --rtmps).
    #[arg(long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,

    /// Share the listeners of a running ringcast for a zero-downtime upgrade (sets
    /// server.handover_listeners): start this one, then SIGTERM the old one.
    #[arg(long)]
    pub handover: bool,

    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// FTL control listen address (replaces ftl.listen and turns FTL on).
    #[arg(long, value_name = "ADDR")]
    pub ftl: Option<SocketAddr>,

    /// Add an FTL channel from a stream key "ID-SECRET" (repeatable; replaces a configured
    /// channel with the same id).
    #[arg(
        long = "ftl-key",
        value_name = "ID-SECRET",
        env = "RINGCAST_FTL_KEY",
        hide_env_values = true
    )]
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
                .field(
                    "payload",
                    &format_args!("{},****", payload.split(',').next().unwrap_or("")),
                )
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
        if let Some(addr) = self.rtmps {
            config.rtmps.listen = Listen::one(addr);
        }
        if let Some(path) = &self.tls_cert {
            config.tls.cert_file.clone_from(path);
        }
        if let Some(path) = &self.tls_key {
            config.tls.key_file.clone_from(path);
        }
        if let Some(addr) = self.https {
            config.http.tls_listen = Listen::one(addr);
        }
        if self.handover {
            config.server.handover_listeners = true;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ringcast").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn plain_run_uses_embedded_defaults() {
        let cli = parse(&[]);
        assert!(cli.command.is_none() && !cli.print_config);
        let config = cli.load_config_with_env(&no_env).unwrap();
        let mut expected = Config::default();
        cli.apply(&mut expected); // RUST_LOG may be set in the test environment
        assert_eq!(config, expected);
        assert_eq!(config.rtmp.listen[0].to_string(), "0.0.0.0:1935");
        assert!(!config.startup_warnings().is_empty());
    }

    #[test]
    fn flags_override_the_essentials() {
        let cli = parse(&[
            "--rtmp",
            "127.0.0.1:1936",
            "--workers",
            "3",
            "--ftl",
            "127.0.0.1:8085",
            "--ftl-key",
            "77-abc",
            "--ftl-key",
            "re_78_def",
            "--fstream",
            "127.0.0.1:7000",
            "--http",
            "127.0.0.1:8081",
            "--log",
            "debug",
        ]);
        let c = cli.load_config_with_env(&no_env).unwrap();
        assert_eq!(c.rtmp.listen[..], ["127.0.0.1:1936".parse().unwrap()]);
        assert_eq!(c.server.workers, 3);
        assert_eq!(c.ftl.listen[0].to_string(), "127.0.0.1:8085");
        assert_eq!(c.ftl.enabled, Switch::On);
        assert!(c.ftl.channel(77).unwrap().key.matches(b"abc"));
        assert!(c.ftl.channel(78).unwrap().key.matches(b"def"));
        assert_eq!(c.fstream.listen[0].port(), 7000);
        assert_eq!(c.http.listen[0].port(), 8081);
        assert_eq!(c.server.log, "debug");
    }

    #[test]
    fn tls_flags_set_rtmps_https_and_the_certificate_and_a_tls_listener_needs_one() {
        let cli = parse(&[
            "--rtmps",
            "127.0.0.1:1937",
            "--https",
            "127.0.0.1:8443",
            "--tls-cert",
            "/etc/ringcast/cert.pem",
            "--tls-key",
            "/etc/ringcast/key.pem",
        ]);
        let c = cli.load_config_with_env(&no_env).unwrap();
        assert_eq!(c.rtmps.listen[..], ["127.0.0.1:1937".parse().unwrap()]);
        assert_eq!(c.http.tls_listen[0].port(), 8443);
        assert_eq!(c.tls.cert_file.to_str(), Some("/etc/ringcast/cert.pem"));
        assert_eq!(c.tls.key_file.to_str(), Some("/etc/ringcast/key.pem"));

        let err = parse(&["--rtmps", "127.0.0.1:1937"])
            .load_config_with_env(&no_env)
            .unwrap_err();
        assert!(err.to_string().contains("tls.cert_file"), "{err}");
    }

    #[test]
    fn ftl_key_alone_turns_ftl_on() {
        let c = parse(&["--ftl-key", "77-abc"])
            .load_config_with_env(&no_env)
            .unwrap();
        assert!(c.ftl.is_active());
        assert_eq!(c.ftl.listen[0].port(), 8084);
    }

    #[test]
    fn ftl_key_parsing() {
        let k: FtlKey = "77-a-b".parse().unwrap();
        assert_eq!(k.channel, 77);
        assert!(k.secret.matches(b"a-b"));
        assert!("77,x".parse::<FtlKey>().is_ok());
        for bad in ["77", "77-", "x-abc", "0-abc", "-abc", ""] {
            assert!(bad.parse::<FtlKey>().is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["ringcast", "--ftl-key", "nope"]).is_err());
    }

    #[test]
    fn config_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringcast.toml");
        let text = "[rtmp]\nlisten = [\"127.0.0.1:1000\", \"127.0.0.1:1001\"]\nchunk_size = 8192\n\
                    [[ftl.channels]]\nid = 77\nkey = \"from-file\"\n";
        std::fs::write(&path, text).unwrap();
        let file = path.to_str().unwrap();
        let c = parse(&["--config", file])
            .load_config_with_env(&no_env)
            .unwrap();
        assert_eq!(c.rtmp.listen.len(), 2);
        assert_eq!(c.rtmp.chunk_size, 8192);

        let c = parse(&[
            "--config",
            file,
            "--rtmp",
            "127.0.0.1:2000",
            "--ftl-key",
            "77-from-flag",
        ])
        .load_config_with_env(&no_env)
        .unwrap();
        assert_eq!(c.rtmp.listen[..], ["127.0.0.1:2000".parse().unwrap()]);
        assert_eq!(c.rtmp.chunk_size, 8192);
        assert_eq!(c.ftl.channels.len(), 1);
        assert!(c.ftl.channel(77).unwrap().key.matches(b"from-flag"));
    }

    #[test]
    fn missing_config_file_is_named() {
        let err = parse(&["--config", "/nonexistent/ringcast.toml"])
            .load_config_with_env(&no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ringcast.toml"), "{err}");
    }

    #[test]
    fn print_config_after_flags_round_trips() {
        let cli = parse(&[
            "--print-config",
            "--show-secrets",
            "--ftl-key",
            "77-s${x}",
            "--workers",
            "2",
        ]);
        let c = cli.load_config_with_env(&no_env).unwrap();
        let text = c.to_documented_toml(cli.secret_output()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("printed.toml");
        std::fs::write(&path, text).unwrap();
        let back = parse(&["--config", path.to_str().unwrap()])
            .load_config_with_env(&no_env)
            .unwrap();
        let mut expected = c;
        parse(&[]).apply(&mut expected); // the same RUST_LOG applies to both loads
        assert_eq!(back, expected);
        assert!(back.ftl.channel(77).unwrap().key.matches(b"s${x}"));
    }

    #[test]
    fn show_secrets_requires_print_config() {
        assert!(Cli::try_parse_from(["ringcast", "--show-secrets"]).is_err());
        assert_eq!(
            parse(&["--print-config"]).secret_output(),
            SecretOutput::Redacted
        );
    }

    #[test]
    fn fstream_subcommand() {
        let cli = parse(&[
            "fstream",
            "127.0.0.1:61920",
            "watch,user=fier,channel=c,channel-password=123",
        ]);
        match &cli.command {
            Some(Command::Fstream { addr, payload }) => {
                assert_eq!(addr, "127.0.0.1:61920");
                assert!(payload.starts_with("watch,"));
            }
            None => panic!("no subcommand"),
        }
        let dump = format!("{cli:?}");
        assert!(dump.contains("watch") && !dump.contains("123"), "{dump}");
    }

    #[test]
    fn debug_redacts_ftl_keys() {
        let dump = format!("{:?}", parse(&["--ftl-key", "77-topsecret"]));
        assert!(
            dump.contains("77-****") && !dump.contains("topsecret"),
            "{dump}"
        );
    }
}
