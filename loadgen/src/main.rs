//! `ringcast-loadgen`: RTMP and fstream publishers and watchers for benchmarking ringcast (and,
//! over RTMP, any other server), plus the kernel-ceiling baseline server.
//!
//! Subcommands:
//! - `publish [--protocol rtmp|fstream] [--file X.flv [--loop=false]]`: synthetic media with a
//!   latency probe in every video frame, or a real FLV file's tags paced by their timestamps
//!   (looping by default, timestamps continued). Over fstream the stream is
//!   `fstream/USER/CHANNEL`, sent as FLV after a `broadcast,user=..,user-password=..` handshake.
//! - `watch [--protocol rtmp|fstream|http-flv|raw]`: many watchers on one epoll loop reporting
//!   latency, time to first frame, rate, stalls and gaps as JSON. fstream watchers send
//!   `watch,stream=APP/KEY` (or `watch,user=U,channel=C` for `fstream/U/C`) and read FLV;
//!   HTTP-FLV watchers send `GET /APP/KEY.flv` and read the same FLV after the head; `raw`
//!   reads the kernel-ceiling framing (`--raw` is the same). A real file carries no probe:
//!   latency count stays 0. `--processes K` re-executes itself K times and merges the summaries.
//! - `kernel-ceiling [--threads N] [--coalesce-audio]`: the one-write-per-message baseline
//!   server.
//! - `plot --dir OUT`: the benchmark matrix's latency and CPU plot as SVG.
//! - `ftl-publish`: an FTL publisher (control handshake, RTP over UDP, NACK answering, fed an
//!   H.264 Annex-B file and Opus audio).
//!
//! Targets outside 127.0.0.0/8 are refused unless `--allow-non-loopback` is given.

mod ceiling;
mod flv_file;
mod framing;
mod fstream;
mod ftl;
mod http_flv;
mod net;
mod parse;
mod plot;
mod publisher;
mod rtmp_player;
mod sink;
mod source;
mod stats;
mod synth;
mod tls;
mod watcher;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command as Proc, ExitCode, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::flv_file::{FlvFile, Playback};
use crate::framing::PlayRequest;
use crate::rtmp_player::RtmpPlay;
use crate::sink::Route;
use crate::source::{Source, Synthetic};
use crate::stats::Summary;
use crate::synth::MediaParams;

#[derive(Parser, Debug)]
#[command(version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct MediaArgs {
    /// Video bitrate in bit/s.
    #[arg(long, default_value_t = 2_500_000)]
    bitrate: u64,
    /// Audio bitrate in bit/s (AAC, 1024 samples at 48 kHz); 0 disables audio.
    #[arg(long, default_value_t = 128_000)]
    audio_bitrate: u64,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, default_value_t = 2.0)]
    gop_secs: f64,
}

impl MediaArgs {
    fn params(&self) -> MediaParams {
        MediaParams {
            video_bps: self.bitrate,
            audio_bps: self.audio_bitrate,
            fps: self.fps.max(1),
            gop_secs: self.gop_secs,
        }
    }
}

/// What a publisher speaks.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum PublishProtocol {
    Rtmp,
    Fstream,
}

/// What watchers speak.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum WatchProtocol {
    Rtmp,
    Fstream,
    /// `GET /APP/KEY.flv`.
    HttpFlv,
    /// The kernel-ceiling framing.
    Raw,
}

/// How watchers read (see `watcher::ReadMode`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ReadModeArg {
    Once,
    Drain,
}

impl ReadModeArg {
    fn with_size(self, size: Option<usize>) -> watcher::ReadMode {
        match self {
            ReadModeArg::Once => watcher::ReadMode::Once(size.unwrap_or(16 * 1024)),
            ReadModeArg::Drain => watcher::ReadMode::Drain(size.unwrap_or(256 * 1024)),
        }
    }
}

/// The names of `count` streams: `stream` itself for one, `stream-0` .. for more.
fn stream_names(stream: &str, count: u32) -> Vec<String> {
    match count {
        0 | 1 => vec![stream.to_owned()],
        n => (0..n).map(|i| format!("{stream}-{i}")).collect(),
    }
}

/// The default server port of each protocol (the kernel ceiling's for `raw`).
fn default_target(protocol: WatchProtocol) -> SocketAddr {
    let port = match protocol {
        WatchProtocol::Rtmp => 1935,
        WatchProtocol::Fstream => ringcast::proto::fstream::DEFAULT_PORT,
        WatchProtocol::HttpFlv => 8080,
        WatchProtocol::Raw => 1936,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Publish synthetic media (or an FLV file) over RTMP or fstream.
    Publish {
        #[arg(long, value_enum, default_value = "rtmp")]
        protocol: PublishProtocol,
        /// Server address [default: 127.0.0.1:1935, or 127.0.0.1:61920 for fstream].
        #[arg(long)]
        target: Option<SocketAddr>,
        /// Stream name: `app/key` over RTMP; `fstream/USER/CHANNEL` over fstream.
        #[arg(long, default_value = "live/bench")]
        stream: String,
        /// fstream: the user's password (`user-password=`).
        #[arg(long)]
        user_password: Option<String>,
        /// fstream: a password watchers of the channel must give (`channel-password=`).
        #[arg(long)]
        channel_password: Option<String>,
        /// Send this FLV file's tags, paced by their timestamps, instead of synthetic media
        /// (whose options below are then ignored). Watchers get no latency probe from it.
        #[arg(long)]
        file: Option<PathBuf>,
        /// With --file: start over at the end, timestamps continuing (`--loop=false`: play once).
        #[arg(long = "loop", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        looping: bool,
        #[command(flatten)]
        media: MediaArgs,
        /// Seconds to publish; 0 publishes until killed (or until a file played once ends).
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// Publish this many streams, `STREAM-0` .. `STREAM-(K-1)`, one connection and thread
        /// each, the same media on all; 1 publishes `--stream` itself.
        #[arg(long, default_value_t = 1)]
        stream_count: u32,
        #[command(flatten)]
        url: tls::UrlArgs,
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Play a stream with many watchers and report latency, rate, stalls and gaps.
    Watch {
        #[arg(long, value_enum, default_value = "rtmp")]
        protocol: WatchProtocol,
        /// Server address [default: 127.0.0.1:1935; fstream 127.0.0.1:61920; raw 127.0.0.1:1936].
        #[arg(long)]
        target: Option<SocketAddr>,
        /// Stream name `app/key`; over fstream `fstream/USER/CHANNEL` watches an fstream channel
        /// and anything else is watched with `stream=app/key`.
        #[arg(long, default_value = "live/bench")]
        stream: String,
        /// fstream: the channel password of an `fstream/USER/CHANNEL` stream.
        #[arg(long)]
        channel_password: Option<String>,
        /// RTMP: list Opus in the connect's `fourCcList` (an Enhanced RTMP player), so Opus
        /// audio arrives as published instead of as ringcast's AAC rendition.
        #[arg(long)]
        rtmp_opus: bool,
        #[arg(long, default_value_t = 100)]
        watchers: u64,
        /// Spread the watchers round-robin over this many streams, `STREAM-0` .. `STREAM-(K-1)`
        /// (`publish --stream-count K` publishes them); 1 watches `--stream` itself.
        #[arg(long, default_value_t = 1)]
        stream_count: u32,
        /// `once`: one read per readiness (a level-triggered loop with a small buffer, like most
        /// players and load tools: the conservative latency); `drain`: read until empty.
        #[arg(long, value_enum, default_value = "once")]
        read_mode: ReadModeArg,
        /// Bytes per read [default: 16384 with --read-mode once, 262144 with drain].
        #[arg(long)]
        read_size: Option<usize>,
        /// Source addresses to bind, e.g. `127.0.0.1-127.0.0.50`.
        #[arg(long, default_value = "127.0.0.1-127.0.0.50")]
        source_ips: String,
        /// New connections per second; 0 opens all at once.
        #[arg(long, default_value_t = 500.0)]
        ramp_per_sec: f64,
        /// Total seconds, ramp included.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Seconds before latency, bytes, gaps and stalls are counted.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Same as `--protocol raw` (kept for existing scripts).
        #[arg(long, hide = true, conflicts_with = "protocol")]
        raw: bool,
        /// Milliseconds without data that count as a stall.
        #[arg(long, default_value_t = 1000)]
        stall_ms: u64,
        /// Split the watchers over this many processes and merge their summaries.
        #[arg(long, default_value_t = 1)]
        processes: u32,
        /// Also write the JSON summary here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        url: tls::UrlArgs,
        #[arg(long)]
        allow_non_loopback: bool,
        #[arg(long, hide = true, default_value = "")]
        label: String,
        /// The index of this process's first watcher among all (`--processes` sets it), so
        /// the streams of `--stream-count` stay evenly loaded across processes.
        #[arg(long, hide = true, default_value_t = 0)]
        first_watcher: u64,
    },
    /// The baseline: write each message to every connected socket, one write per socket.
    KernelCeiling {
        #[arg(long, default_value = "127.0.0.1:1936")]
        listen: SocketAddr,
        #[command(flatten)]
        media: MediaArgs,
        /// Seconds to serve; 0 serves until killed.
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// Bytes a watcher may fall behind before it is disconnected.
        #[arg(long, default_value_t = 8 << 20)]
        max_backlog: usize,
        /// Writer threads, each serving its share of the watchers (one per core compares with
        /// a thread-per-core server).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Audio rides with the next video frame in one write instead of going alone.
        #[arg(long)]
        coalesce_audio: bool,
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Publish an H.264 Annex-B file (and Opus audio) to an FTL ingest; prints a JSON summary.
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
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Draw a bench-matrix directory (rows.tsv and the cells' JSON) as an SVG plot.
    Plot {
        /// The `$OUT` of scripts/bench-matrix.sh.
        #[arg(long)]
        dir: PathBuf,
        /// The SVG to write; default `DIR/plot.svg`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Most sockets one process should hold (the machine allows about 20 000 fds per process).
const MAX_PER_PROCESS: u64 = 15_000;

fn split_stream(s: &str) -> (String, String) {
    match s.split_once('/') {
        Some((app, key)) => (app.to_owned(), key.to_owned()),
        None => ("live".to_owned(), s.to_owned()),
    }
}

/// How a publisher reaches its stream.
fn publish_route(
    protocol: PublishProtocol,
    stream: &str,
    user_password: Option<&str>,
    channel_password: Option<&str>,
) -> Result<Route, String> {
    match protocol {
        PublishProtocol::Rtmp => {
            if user_password.is_some() || channel_password.is_some() {
                return Err("--user-password and --channel-password are fstream options".into());
            }
            let (app, stream) = split_stream(stream);
            Ok(Route::Rtmp { app, stream })
        }
        PublishProtocol::Fstream => {
            let user_password = user_password
                .ok_or("an fstream broadcast needs --user-password (the relay checks it)")?;
            let payload = fstream::broadcast_payload(stream, user_password, channel_password)?;
            Ok(Route::Fstream {
                handshake: fstream::handshake(&payload)?,
            })
        }
    }
}

/// What every watcher asks the server for.
fn play_request(
    protocol: WatchProtocol,
    target: SocketAddr,
    stream: &str,
    channel_password: Option<&str>,
    rtmp_opus: bool,
) -> Result<PlayRequest, String> {
    if channel_password.is_some() && protocol != WatchProtocol::Fstream {
        return Err("--channel-password is an fstream option".into());
    }
    Ok(match protocol {
        WatchProtocol::Rtmp => {
            let (app, stream) = split_stream(stream);
            let tc_url = format!("rtmp://{target}/{app}");
            PlayRequest::Rtmp(Rc::new(RtmpPlay {
                app,
                stream,
                tc_url,
                opus: rtmp_opus,
            }))
        }
        WatchProtocol::Fstream => {
            let payload = fstream::watch_payload(stream, channel_password)?;
            PlayRequest::Fstream(fstream::handshake(&payload)?)
        }
        WatchProtocol::HttpFlv => {
            PlayRequest::HttpFlv(http_flv::request(stream, &target.to_string())?)
        }
        WatchProtocol::Raw => PlayRequest::Raw,
    })
}

/// Re-executes this binary `k` times with the watchers split between them.
fn run_children(k: u32, watchers: u64) -> Result<Summary, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut args: Vec<String> = Vec::new();
    let mut skip = false;
    for a in std::env::args().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if a == "--processes" || a == "--out" || a == "--watchers" {
            skip = true;
            continue;
        }
        if a.starts_with("--processes=") || a.starts_with("--out=") || a.starts_with("--watchers=")
        {
            continue;
        }
        args.push(a);
    }
    let mut children = Vec::new();
    let mut first = 0;
    for i in 0..k {
        let share = watchers / k as u64 + u64::from((i as u64) < watchers % k as u64);
        let child = Proc::new(&exe)
            .args(&args)
            .args([
                "--watchers",
                &share.to_string(),
                "--first-watcher",
                &first.to_string(),
                "--label",
                &format!("[{i}] "),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        children.push(child);
        first += share;
    }
    let mut parts = Vec::new();
    for c in children {
        let out = c.wait_with_output().map_err(|e| format!("wait: {e}"))?;
        let s: Summary = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("child summary: {e} (status {})", out.status))?;
        parts.push(s);
    }
    Ok(Summary::merge(&parts))
}

fn real_main() -> Result<(), String> {
    let cli = Cli::parse();
    let nofile = net::raise_nofile();
    match cli.cmd {
        Cmd::Publish {
            protocol,
            target,
            stream,
            user_password,
            channel_password,
            file,
            looping,
            media,
            duration,
            stream_count,
            url,
            allow_non_loopback,
        } => {
            let parsed = url.url.as_deref().map(tls::parse_url).transpose()?;
            if parsed.is_some() && protocol != PublishProtocol::Rtmp {
                return Err("--url is for RTMP and RTMPS".into());
            }
            let (target, stream) = match &parsed {
                Some(u) => (Some(u.target), u.stream.clone()),
                None => (target, stream),
            };
            let target = target.unwrap_or_else(|| {
                default_target(match protocol {
                    PublishProtocol::Rtmp => WatchProtocol::Rtmp,
                    PublishProtocol::Fstream => WatchProtocol::Fstream,
                })
            });
            net::check_target(target, allow_non_loopback)?;
            let file = match &file {
                Some(path) => {
                    let file = Arc::new(FlvFile::open(path)?);
                    eprintln!(
                        "{}: {} ms per pass{}",
                        path.display(),
                        file.period_ms(),
                        if looping { ", looping" } else { "" }
                    );
                    Some(file)
                }
                None => None,
            };
            let tls = tls::client_config(&url, parsed.as_ref().is_some_and(|u| u.tls), target)?;
            let mut publishers = Vec::new();
            for name in stream_names(&stream, stream_count) {
                let route = publish_route(
                    protocol,
                    &name,
                    user_password.as_deref(),
                    channel_password.as_deref(),
                )?;
                let source = match &file {
                    Some(file) => Source::File(Playback::new(file.clone(), looping)),
                    None => Source::Synthetic(Synthetic::new(media.params())),
                };
                let cfg = publisher::PublishConfig {
                    target,
                    route,
                    duration: Duration::from_secs(duration),
                    tls: tls.clone(),
                };
                publishers.push((
                    name,
                    std::thread::spawn(move || publisher::run(&cfg, source)),
                ));
            }
            let mut failed = None;
            for (name, publisher) in publishers {
                match publisher.join() {
                    Ok(Ok(sent)) => eprintln!("{name}: published {sent} frames"),
                    Ok(Err(e)) => failed = Some(format!("{name}: {e}")),
                    Err(_) => failed = Some(format!("{name}: the publisher thread panicked")),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Cmd::Watch {
            protocol,
            target,
            stream,
            channel_password,
            rtmp_opus,
            watchers,
            stream_count,
            read_mode,
            read_size,
            source_ips,
            ramp_per_sec,
            duration,
            warmup,
            raw,
            stall_ms,
            processes,
            out,
            quiet,
            url,
            allow_non_loopback,
            label,
            first_watcher,
        } => {
            let protocol = if raw { WatchProtocol::Raw } else { protocol };
            let parsed = url.url.as_deref().map(tls::parse_url).transpose()?;
            if parsed.is_some() && protocol != WatchProtocol::Rtmp {
                return Err("--url is for RTMP and RTMPS watchers".into());
            }
            let (target, stream) = match &parsed {
                Some(u) => (Some(u.target), u.stream.clone()),
                None => (target, stream),
            };
            let target = target.unwrap_or_else(|| default_target(protocol));
            let tls = tls::client_config(&url, parsed.as_ref().is_some_and(|u| u.tls), target)?;
            net::check_target(target, allow_non_loopback)?;
            let requests = stream_names(&stream, stream_count)
                .iter()
                .map(|name| {
                    play_request(
                        protocol,
                        target,
                        name,
                        channel_password.as_deref(),
                        rtmp_opus,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            let summary = if processes > 1 {
                run_children(processes, watchers)?
            } else {
                if watchers > MAX_PER_PROCESS || watchers + 64 > nofile {
                    return Err(format!(
                        "{watchers} watchers in one process (fd limit {nofile}); use --processes"
                    ));
                }
                let sources = net::parse_ip_range(&source_ips)?;
                if !allow_non_loopback && sources.iter().any(|ip| !ip.is_loopback()) {
                    return Err("source addresses must be in 127.0.0.0/8".into());
                }
                let cfg = watcher::WatchConfig {
                    target,
                    requests,
                    read: read_mode.with_size(read_size),
                    first_watcher,
                    watchers,
                    sources,
                    ramp_per_sec,
                    duration: Duration::from_secs(duration),
                    warmup: Duration::from_secs(warmup.min(duration)),
                    stall_after: Duration::from_millis(stall_ms),
                    quiet,
                    label,
                    tls,
                };
                watcher::run(cfg).map_err(|e| format!("watch: {e}"))?
            };
            let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
            println!("{json}");
            if let Some(path) = out {
                std::fs::write(&path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Cmd::KernelCeiling {
            listen,
            media,
            duration,
            max_backlog,
            threads,
            coalesce_audio,
            allow_non_loopback,
        } => {
            net::check_target(listen, allow_non_loopback)?;
            ceiling::run(
                listen,
                media.params(),
                Duration::from_secs(duration),
                max_backlog,
                ceiling::Shape {
                    threads,
                    coalesce_audio,
                },
            )
            .map_err(|e| format!("kernel-ceiling: {e}"))?;
        }
        Cmd::FtlPublish {
            addr,
            key,
            h264,
            opus,
            fps,
            loss,
            seed,
            duration,
            allow_non_loopback,
        } => {
            net::check_target(addr, allow_non_loopback)?;
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
            let summary = ftl::publish(&options).map_err(|e| format!("ftl-publish: {e}"))?;
            println!("{}", summary.to_json());
            if let Some(code) = summary.server_code.filter(|&c| c != 200 && c != 201) {
                return Err(format!("ftl-publish: the server answered {code}"));
            }
        }
        Cmd::Plot { dir, out } => eprintln!("wrote {}", plot::run(&dir, out.as_deref())?.display()),
    }
    Ok(())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcast-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[test]
    fn one_stream_keeps_its_name_and_many_are_numbered_from_zero() {
        assert_eq!(stream_names("live/bench", 1), ["live/bench"]);
        assert_eq!(
            stream_names("live/bench", 3),
            ["live/bench-0", "live/bench-1", "live/bench-2"]
        );
    }

    #[test]
    fn reads_default_to_one_small_read_per_readiness() {
        let cli = Cli::try_parse_from(["loadgen", "watch"]).expect("parses");
        let Cmd::Watch {
            read_mode,
            read_size,
            ..
        } = cli.cmd
        else {
            panic!("not watch");
        };
        assert!(matches!(
            read_mode.with_size(read_size),
            watcher::ReadMode::Once(16384)
        ));
        assert!(matches!(
            ReadModeArg::Drain.with_size(None),
            watcher::ReadMode::Drain(262_144)
        ));
    }
}
