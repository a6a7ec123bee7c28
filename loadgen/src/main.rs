//! `ringcast-loadgen`: load and protocol drivers for ringcast. Subcommands:
//! - `ftl-publish`: an FTL publisher (control handshake, RTP over UDP, NACK answering) fed an
//!   H.264 Annex-B file and Opus audio; prints a JSON summary line at the end.

mod ftl;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ringcast-loadgen", about = "Load generator for ringcast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish an H.264 Annex-B file (and Opus audio) to an FTL ingest.
    FtlPublish {
        /// FTL control address.
        #[arg(long, default_value = "127.0.0.1:8084")]
        addr: SocketAddr,
        /// Stream key `CHANNEL-SECRET`.
        #[arg(long)]
        key: String,
        /// H.264 Annex-B elementary stream (no B-frames).
        #[arg(long)]
        h264: PathBuf,
        /// Ogg Opus file; synthetic 20 ms silence frames when absent.
        #[arg(long)]
        opus: Option<PathBuf>,
        /// Video frame rate of the file.
        #[arg(long, default_value_t = 25.0)]
        fps: f64,
        /// Fraction of first video transmissions to drop (deterministic, seeded).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Seed of the loss pattern.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many seconds (the file loops); default: the file once.
        #[arg(long)]
        duration: Option<f64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::FtlPublish {
            addr,
            key,
            h264,
            opus,
            fps,
            loss,
            seed,
            duration,
        } => {
            let options = ftl::PublishOptions {
                addr,
                key,
                h264,
                opus,
                fps,
                loss,
                seed,
                duration,
            };
            match ftl::publish(&options) {
                Ok(summary) => {
                    println!("{}", summary.to_json());
                    if summary.server_code.is_some_and(|c| c != 200 && c != 201) {
                        ExitCode::from(3)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("ftl-publish: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
