//! Watchers: many non-blocking sockets on one epoll loop (mio), each an RTMP player (or a raw
//! reader of the kernel-ceiling framing), measuring latency, time to first frame, rate, stalls
//! and frame gaps.
//!
//! One thread, one shared read buffer, and per watcher only a small parser state, so thousands
//! of watchers cost little memory and CPU next to the relay they load. The RTMP side uses
//! ringcast's sans-IO handshake and command encoding; media is parsed by [`crate::parse`]
//! without reassembly.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ringcast::proto::amf0::{Command, Limits as AmfLimits, Value};
use ringcast::proto::rtmp::{ClientHandshake, encode_message};

use crate::parse::{Parsed, RawParser, RtmpParser};
use crate::stats::{Summary, WatcherStats, new_histogram, to_pairs};
use crate::synth::{monotonic_ns, read_probe};

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub target: SocketAddr,
    pub app: String,
    pub stream: String,
    pub watchers: u64,
    pub sources: Vec<Ipv4Addr>,
    pub ramp_per_sec: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub raw: bool,
    pub stall_after: Duration,
    pub quiet: bool,
    pub label: String,
}

enum Phase {
    Connecting,
    Handshake(Box<ClientHandshake>, BytesMut),
    Session,
}

enum Parser {
    Rtmp(RtmpParser),
    Raw(RawParser),
}

struct Watcher {
    stream: TcpStream,
    phase: Phase,
    parser: Parser,
    out: BytesMut,
    started_ns: u64,
    play_sent_ns: u64,
    ack_window: u32,
    unacked: u32,
    received: u32,
    stats: WatcherStats,
}

/// The error text for an orderly close by the server (counted as a disconnect, not an error).
const CLOSED_BY_PEER: &str = "closed by peer";
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 2.0;
const TXN_PLAY: f64 = 3.0;

#[derive(Default)]
struct Totals {
    connected: u64,
    playing: u64,
    connect_failures: u64,
    errors: u64,
    disconnects: u64,
    bytes: u64,
    first_error: Option<String>,
}

struct Run {
    cfg: WatchConfig,
    poll: Poll,
    watchers: Vec<Option<Watcher>>,
    buf: Vec<u8>,
    parsed: Vec<Parsed>,
    latency: Histogram<u64>,
    ttff: Histogram<u64>,
    totals: Totals,
    measuring: bool,
}

fn command(out: &mut BytesMut, stream_id: u32, name: &str, txn: f64, args: Vec<Value>) {
    let cmd = Command {
        name: name.into(),
        transaction_id: txn,
        command_object: Value::Null,
        args,
    };
    let mut body = BytesMut::new();
    cmd.encode(&mut body);
    encode_message(out, CSID_COMMAND, 0, 20, stream_id, &body, 128);
}

impl Run {
    fn fail(&mut self, idx: usize, err: String) {
        let Some(w) = self.watchers[idx].take() else {
            return;
        };
        if matches!(w.phase, Phase::Connecting) {
            self.totals.connect_failures += 1;
        } else if err == CLOSED_BY_PEER {
            self.totals.disconnects += 1;
        } else {
            self.totals.errors += 1;
        }
        if self.totals.first_error.is_none() {
            self.totals.first_error = Some(err);
        }
        let mut stream = w.stream;
        self.poll.registry().deregister(&mut stream).ok();
    }

    fn start(&mut self, n: u64) -> io::Result<()> {
        let src = if self.cfg.sources.is_empty() {
            None
        } else {
            Some(self.cfg.sources[n as usize % self.cfg.sources.len()])
        };
        let std_stream = match crate::net::connect_from(src, self.cfg.target) {
            Ok(s) => s,
            Err(e) => {
                self.totals.connect_failures += 1;
                self.totals
                    .first_error
                    .get_or_insert_with(|| format!("connect: {e}"));
                return Ok(());
            }
        };
        let mut stream = TcpStream::from_std(std_stream);
        let idx = self.watchers.len();
        self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let parser = if self.cfg.raw {
            Parser::Raw(RawParser::default())
        } else {
            Parser::Rtmp(RtmpParser::default())
        };
        self.watchers.push(Some(Watcher {
            stream,
            phase: Phase::Connecting,
            parser,
            out: BytesMut::new(),
            started_ns: monotonic_ns(),
            play_sent_ns: 0,
            ack_window: 0,
            unacked: 0,
            received: 0,
            stats: WatcherStats::default(),
        }));
        Ok(())
    }

    fn on_event(&mut self, idx: usize, readable: bool) {
        let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if matches!(w.phase, Phase::Connecting) {
            match w.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {e}")),
            }
            if let Err(e) = w.stream.peer_addr() {
                if e.kind() == io::ErrorKind::NotConnected {
                    return;
                }
                return self.fail(idx, format!("connect: {e}"));
            }
            self.totals.connected += 1;
            if self.cfg.raw {
                w.phase = Phase::Session;
                w.play_sent_ns = monotonic_ns();
            } else {
                let mut random = [0u8; ringcast::proto::rtmp::handshake::RANDOM_SIZE];
                random[..8].copy_from_slice(&monotonic_ns().to_be_bytes());
                let hs = ClientHandshake::new_simple(random, &mut w.out);
                w.phase = Phase::Handshake(Box::new(hs), BytesMut::new());
            }
        }
        if let Err(e) = self.flush(idx) {
            return self.fail(idx, format!("write: {e}"));
        }
        if readable && let Err(e) = self.read_all(idx) {
            return self.fail(idx, e);
        }
        if let Err(e) = self.flush(idx) {
            self.fail(idx, format!("write: {e}"));
        }
    }

    fn flush(&mut self, idx: usize) -> io::Result<()> {
        let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
            return Ok(());
        };
        while !w.out.is_empty() {
            match w.stream.write(&w.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => w.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read_all(&mut self, idx: usize) -> Result<(), String> {
        loop {
            let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
                return Ok(());
            };
            let n = match w.stream.read(&mut self.buf) {
                Ok(0) => return Err(CLOSED_BY_PEER.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            let now = monotonic_ns();
            if self.measuring {
                w.stats.bytes += n as u64;
                self.totals.bytes += n as u64;
            }
            w.stats
                .on_tick(now, true, self.cfg.stall_after.as_nanos() as u64);
            w.received = w.received.wrapping_add(n as u32);
            w.unacked = w.unacked.saturating_add(n as u32);
            let data = &self.buf[..n];
            self.parsed.clear();
            match &mut w.phase {
                Phase::Connecting => return Ok(()),
                Phase::Handshake(hs, inbuf) => {
                    inbuf.extend_from_slice(data);
                    let done = hs
                        .handle_input(inbuf, &mut w.out)
                        .map_err(|e| format!("handshake: {e}"))?;
                    if done {
                        let rest = std::mem::take(inbuf);
                        w.phase = Phase::Session;
                        let app = self.cfg.app.clone();
                        let tc_url = format!("rtmp://{}/{}", self.cfg.target, app);
                        let connect = Command {
                            name: "connect".into(),
                            transaction_id: TXN_CONNECT,
                            command_object: Value::Object(vec![
                                ("app".into(), Value::String(app)),
                                ("tcUrl".into(), Value::String(tc_url)),
                                ("fpad".into(), Value::Boolean(false)),
                                ("capabilities".into(), Value::Number(15.0)),
                                ("audioCodecs".into(), Value::Number(3191.0)),
                                ("videoCodecs".into(), Value::Number(252.0)),
                                ("videoFunction".into(), Value::Number(1.0)),
                            ]),
                            args: Vec::new(),
                        };
                        let mut body = BytesMut::new();
                        connect.encode(&mut body);
                        encode_message(&mut w.out, CSID_COMMAND, 0, 20, 0, &body, 128);
                        command(&mut w.out, 0, "createStream", TXN_CREATE_STREAM, vec![]);
                        if let Parser::Rtmp(p) = &mut w.parser {
                            p.feed(&rest, &mut self.parsed).map_err(|e| e.to_string())?;
                        }
                    }
                }
                Phase::Session => match &mut w.parser {
                    Parser::Rtmp(p) => p.feed(data, &mut self.parsed).map_err(|e| e.to_string())?,
                    Parser::Raw(p) => p.feed(data, &mut self.parsed),
                },
            }
            self.handle_parsed(idx, now)?;
        }
    }

    fn handle_parsed(&mut self, idx: usize, now: u64) -> Result<(), String> {
        let Some(w) = self.watchers.get_mut(idx).and_then(Option::as_mut) else {
            return Ok(());
        };
        for msg in self.parsed.drain(..) {
            match msg {
                Parsed::Video { head, .. } => {
                    let Some(p) = read_probe(head.as_slice()) else {
                        continue;
                    };
                    if w.stats.first_frame_ns.is_none() {
                        w.stats.first_frame_ns = Some(now);
                        self.totals.playing += 1;
                        self.ttff
                            .saturating_record((now.saturating_sub(w.started_ns) / 1000).max(1));
                    }
                    if self.measuring {
                        w.stats.on_probe(p);
                        if p.sent_ns >= w.play_sent_ns {
                            self.latency
                                .saturating_record((now.saturating_sub(p.sent_ns) / 1000).max(1));
                        }
                    } else {
                        w.stats.last_seq = Some(p.seq);
                    }
                }
                Parsed::Audio { .. } => w.stats.audio_frames += 1,
                Parsed::Control { type_id: 5, body } if body.len() >= 4 => {
                    w.ack_window = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                }
                // User control: answer PingRequest (6) with PingResponse (7). RTMP 1.0 §7.1.7.
                Parsed::Control { type_id: 4, body } if body.len() >= 6 && body[..2] == [0, 6] => {
                    let mut pong = [0u8; 6];
                    pong[1] = 7;
                    pong[2..].copy_from_slice(&body[2..6]);
                    encode_message(&mut w.out, CSID_CONTROL, 0, 4, 0, &pong, 128);
                }
                Parsed::Control { type_id: 20, body } => {
                    let Ok(cmd) = Command::decode(&body, &AmfLimits::default()) else {
                        continue;
                    };
                    match cmd.name.as_str() {
                        "_result" if cmd.transaction_id == TXN_CREATE_STREAM => {
                            let id = cmd.arg(0).and_then(Value::as_number).unwrap_or(1.0) as u32;
                            let args =
                                vec![Value::String(self.cfg.stream.clone()), Value::Number(-1.0)];
                            command(&mut w.out, id, "play", TXN_PLAY, args);
                            w.play_sent_ns = monotonic_ns();
                        }
                        "_error" => return Err(format!("server error: {:?}", cmd.arg(0))),
                        _ => {}
                    }
                }
                Parsed::Control { .. } => {}
            }
        }
        // Acknowledgement once a window's worth arrived. RTMP 1.0 §5.4.3.
        if w.ack_window > 0 && w.unacked >= w.ack_window {
            w.unacked = 0;
            encode_message(
                &mut w.out,
                CSID_CONTROL,
                0,
                3,
                0,
                &w.received.to_be_bytes(),
                128,
            );
        }
        Ok(())
    }

    fn tick(&mut self, now: u64) {
        let stall = self.cfg.stall_after.as_nanos() as u64;
        for w in self.watchers.iter_mut().flatten() {
            w.stats.on_tick(now, false, stall);
        }
    }

    fn start_measuring(&mut self) {
        self.measuring = true;
        self.latency.reset();
        for w in self.watchers.iter_mut().flatten() {
            let last = w.stats.last_seq;
            let first = w.stats.first_frame_ns;
            let last_data = w.stats.last_data_ns;
            w.stats = WatcherStats {
                last_seq: last,
                first_frame_ns: first,
                last_data_ns: last_data,
                ..WatcherStats::default()
            };
        }
    }

    fn progress(&self, elapsed: f64, last_bytes: &mut u64, last_t: &mut f64) {
        if self.cfg.quiet {
            return;
        }
        let dt = (elapsed - *last_t).max(1e-3);
        let rate = (self.totals.bytes - *last_bytes) as f64 * 8.0 / dt / 1e9;
        *last_bytes = self.totals.bytes;
        *last_t = elapsed;
        let stalled = self
            .watchers
            .iter()
            .flatten()
            .filter(|w| w.stats.in_stall)
            .count();
        eprintln!(
            "{}t={elapsed:5.1}s open={} playing={} fail={} drop={} stalled={stalled} {rate:.3} Gbit/s p99={:.1}ms{}",
            self.cfg.label,
            self.watchers.iter().flatten().count(),
            self.totals.playing,
            self.totals.connect_failures,
            self.totals.disconnects,
            self.latency.value_at_quantile(0.99) as f64 / 1000.0,
            if self.measuring { "" } else { " (warm-up)" },
        );
    }

    fn summary(&self) -> Summary {
        let mut s = Summary {
            mode: if self.cfg.raw { "raw" } else { "rtmp" }.into(),
            target: self.cfg.target.to_string(),
            processes: 1,
            watchers_requested: self.cfg.watchers,
            connected: self.totals.connected,
            playing: self.totals.playing,
            connect_failures: self.totals.connect_failures,
            errors: self.totals.errors,
            disconnects: self.totals.disconnects,
            measured_secs: self
                .cfg
                .duration
                .saturating_sub(self.cfg.warmup)
                .as_secs_f64(),
            bytes: self.totals.bytes,
            latency_us: to_pairs(&self.latency),
            ttff_us: to_pairs(&self.ttff),
            first_error: self.totals.first_error.clone(),
            ..Summary::default()
        };
        for w in self.watchers.iter().flatten() {
            s.video_frames += w.stats.video_frames;
            s.lost_frames += w.stats.lost;
            s.skipped_frames += w.stats.skipped;
            s.stalls += w.stats.stalls;
            s.stall_secs += w.stats.stall_ns as f64 / 1e9;
        }
        s.finish();
        s
    }
}

/// Runs the watchers for the configured duration and returns the summary.
pub fn run(cfg: WatchConfig) -> io::Result<Summary> {
    let mut run = Run {
        poll: Poll::new()?,
        watchers: Vec::with_capacity(cfg.watchers as usize),
        buf: vec![0; 256 * 1024],
        parsed: Vec::new(),
        latency: new_histogram(),
        ttff: new_histogram(),
        totals: Totals::default(),
        measuring: cfg.warmup.is_zero(),
        cfg,
    };
    let mut events = Events::with_capacity(4096);
    let start = monotonic_ns();
    let end = start + run.cfg.duration.as_nanos() as u64;
    let warm_end = start + run.cfg.warmup.as_nanos() as u64;
    let mut started = 0u64;
    let mut next_tick = start + 250_000_000;
    let mut next_progress = start + 1_000_000_000;
    let (mut last_bytes, mut last_t) = (0u64, 0.0f64);
    loop {
        let now = monotonic_ns();
        if now >= end {
            break;
        }
        if !run.measuring && now >= warm_end {
            run.start_measuring();
        }
        let due = if run.cfg.ramp_per_sec <= 0.0 {
            run.cfg.watchers
        } else {
            let secs = (now - start) as f64 / 1e9;
            ((secs * run.cfg.ramp_per_sec) as u64 + 1).min(run.cfg.watchers)
        };
        while started < due {
            run.start(started)?;
            started += 1;
        }
        if now >= next_tick {
            run.tick(now);
            next_tick = now + 250_000_000;
        }
        if now >= next_progress {
            run.progress((now - start) as f64 / 1e9, &mut last_bytes, &mut last_t);
            next_progress += 1_000_000_000;
        }
        let timeout = if started < run.cfg.watchers { 5 } else { 100 };
        match run
            .poll
            .poll(&mut events, Some(Duration::from_millis(timeout)))
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            run.on_event(ev.token().0, ev.is_readable() || ev.is_read_closed());
        }
    }
    Ok(run.summary())
}
