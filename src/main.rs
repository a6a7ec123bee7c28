//! The `ringcast` binary: parse the command line, load the configuration, run the server.

use std::io::IsTerminal as _;

use clap::Parser as _;
use mimalloc::MiMalloc;
use ringcast::cli::{Cli, Command};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

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
    init_logging(&config.server.log);
    for warning in config.startup_warnings() {
        tracing::warn!("{warning}");
    }
    let reload: ringcast::server::Reload = std::sync::Arc::new(move || cli.load_config());
    if let Err(e) = ringcast::server::run_with_reload(config, Some(reload)) {
        tracing::error!("{e}");
        eprintln!("ringcast: {e}");
        std::process::exit(1);
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
