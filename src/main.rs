//! The `ringcast` binary: parse the command line, load the configuration, run the server.

use std::io::IsTerminal as _;

use clap::Parser as _;
use ringcast::cli::{Cli, Command};
use ringcast::logging::LogSink;

fn main() {
    let cli = Cli::parse();
    if let Some(Command::Fstream { addr, payload }) = &cli.command {
        match ringcast::client::fstream::run(addr, payload) {
            Ok(_) => return,
            Err(e) => {
                eprintln!("ringcast fstream: {e}");
                std::process::exit(1);
            }
        }
    }
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ringcast: {e}");
            std::process::exit(2);
        }
    };
    if cli.print_config {
        match config.to_documented_toml(cli.secret_output()) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("ringcast: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let sink = init_logging(&config.server.log);
    for warning in config.startup_warnings() {
        tracing::warn!("{warning}");
    }
    let reload: ringcast::server::Reload = std::sync::Arc::new(move || cli.load_config());
    let result = ringcast::server::run_with_reload(config, Some(reload));
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    if let Some(sink) = &sink {
        sink.flush(LOG_FLUSH_AT_EXIT);
    }
    if let Err(e) = result {
        eprintln!("ringcast: {e}");
        std::process::exit(1);
    }
}

/// How long the exit waits for queued log lines to reach a slow reader.
const LOG_FLUSH_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Logs through a writer thread behind a bounded queue ([`ringcast::logging`]), so a slow
/// stderr reader never blocks a worker. Without that thread, logs go to stderr directly.
fn init_logging(filter: &str) -> Option<LogSink> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    match LogSink::spawn(std::io::stderr()) {
        Ok(sink) => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(sink.clone())
                .init();
            Some(sink)
        }
        Err(e) => {
            eprintln!("ringcast: no log writer thread ({e}); logging to stderr directly");
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .init();
            None
        }
    }
}
