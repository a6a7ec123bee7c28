//! An FTL publisher for tests and load: the control handshake with `proto::ftl::client`, H.264
//! access units from an Annex-B file packetised with `H264Packetizer` at the file's frame rate,
//! Opus packets from an Ogg file (or synthetic 20 ms silence), PT 250 pings every 25 ms, a
//! control `PING` every 5 s, and NACKs answered from a `RetransmitStore`.
//!
//! Blocking std sockets and threads: this is a test driver, not the product. Loss injection
//! (`loss`) drops that fraction of first video transmissions with a seeded generator; audio is
//! never dropped (the server does not NACK audio), nor are the first and last
//! [`LOSS_GUARD_PACKETS`] video packets (a loss there cannot be detected: the receiver needs a
//! packet before the gap and `reorder_window_packets` after it). So every dropped packet should
//! be NACKed, and the summary reports the set difference both ways.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ringcast::proto::ftl::client::{
    attribute_lines, connect_line, disconnect_line, hmac_request, parse_reply, ping_line, take_line,
};
use ringcast::proto::ftl::{StreamAttributes, TrackCodec, TrackInfo, parse_stream_key};
use ringcast::proto::rtp::packet::write_header;
use ringcast::proto::rtp::packetize::{
    FTL_MTU, H264Packetizer, OpusPacketizer, RetransmitStore, split_annex_b,
};
use ringcast::proto::rtp::rtcp::{RTCP_RTPFB, parse_nack};

/// Video packets at each end of the stream that are never dropped (see the module doc).
pub const LOSS_GUARD_PACKETS: usize = 64;
const VIDEO_PT: u8 = 96;
const AUDIO_PT: u8 = 97;
/// Opus frame duration FTL uses (and ffmpeg's libopus default).
const OPUS_FRAME: Duration = Duration::from_millis(20);
/// A 20 ms CELT fullband silence frame.
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
const PING_INTERVAL: Duration = Duration::from_millis(25);
const CONTROL_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Time after the last packet to keep answering NACKs.
const DRAIN: Duration = Duration::from_millis(2500);

/// What to publish and how.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub addr: SocketAddr,
    pub key: String,
    pub h264: PathBuf,
    pub opus: Option<PathBuf>,
    pub fps: f64,
    pub loss: f64,
    pub seed: u64,
    pub duration: Option<f64>,
}

/// What happened, printed as one JSON line.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub access_units: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    /// Datagrams put on the wire (first transmissions, retransmissions and pings).
    pub sent: u64,
    /// First video transmissions dropped on purpose.
    pub dropped: u64,
    /// Distinct sequence numbers the server NACKed.
    pub nacked: u64,
    pub retransmitted: u64,
    pub nacked_not_dropped: u64,
    pub dropped_not_nacked: u64,
    pub ping_echoes: u64,
    pub udp_port: u16,
    /// A control reply that ended the stream (e.g. 408, 410), if any.
    pub server_code: Option<u16>,
}

impl Summary {
    pub fn to_json(&self) -> String {
        let code = self
            .server_code
            .map_or_else(|| "null".to_owned(), |c| c.to_string());
        format!(
            "{{\"access_units\":{},\"video_packets\":{},\"audio_packets\":{},\"sent\":{},\
             \"dropped\":{},\"nacked\":{},\"retransmitted\":{},\"nacked_not_dropped\":{},\
             \"dropped_not_nacked\":{},\"ping_echoes\":{},\"udp_port\":{},\"server_code\":{}}}",
            self.access_units,
            self.video_packets,
            self.audio_packets,
            self.sent,
            self.dropped,
            self.nacked,
            self.retransmitted,
            self.nacked_not_dropped,
            self.dropped_not_nacked,
            self.ping_echoes,
            self.udp_port,
            code
        )
    }
}

/// Groups an Annex-B stream's NAL units into access units: a new one starts at an AUD, at
/// SPS/PPS/SEI after a slice, or at a slice whose `first_mb_in_slice` is 0 after a slice.
pub fn access_units(stream: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut has_slice = false;
    for nal in split_annex_b(stream) {
        let Some(&header) = nal.first() else {
            continue;
        };
        let kind = header & 0x1f;
        let is_slice = matches!(kind, 1 | 5);
        // first_mb_in_slice is ue(v): 0 is encoded as a single 1 bit.
        let first_slice = is_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts_unit = match kind {
            9 => true,
            6..=8 => has_slice,
            _ => first_slice && has_slice,
        };
        if starts_unit && !current.is_empty() {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        if kind != 9 {
            current.push(nal);
        }
        has_slice |= is_slice;
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

/// The Opus packets of an Ogg Opus file, without the OpusHead and OpusTags header packets.
/// Minimal Ogg parsing (RFC 3533 page header and lacing); a single logical stream is assumed.
pub fn ogg_opus_packets(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let header = data
            .get(pos..pos + 27)
            .ok_or_else(|| format!("truncated Ogg page header at {pos}"))?;
        if &header[..4] != b"OggS" {
            return Err(format!("no Ogg capture pattern at {pos}"));
        }
        let segments = usize::from(header[26]);
        let table = data
            .get(pos + 27..pos + 27 + segments)
            .ok_or("truncated Ogg segment table")?;
        let mut body = pos + 27 + segments;
        for &lace in table {
            let len = usize::from(lace);
            let piece = data
                .get(body..body + len)
                .ok_or("truncated Ogg page body")?;
            partial.extend_from_slice(piece);
            body += len;
            if lace < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pos = body;
    }
    Ok(packets.into_iter().skip(2).collect())
}

/// xorshift64*: a deterministic loss pattern from a seed.
struct LossPattern {
    state: u64,
    loss: f64,
}

impl LossPattern {
    fn drop_next(&mut self) -> bool {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let value = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (value as f64 / (1u64 << 53) as f64) < self.loss
    }
}

struct Scheduled {
    at: Duration,
    datagram: Bytes,
    /// Index among video packets (for the loss guard), `None` for audio.
    video_index: Option<usize>,
}

fn read_reply(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<String, String> {
    let mut scratch = [0u8; 2048];
    loop {
        if let Some(line) = take_line(buf) {
            return Ok(line);
        }
        let n = stream
            .read(&mut scratch)
            .map_err(|e| format!("control read: {e}"))?;
        if n == 0 {
            return Err("control connection closed".into());
        }
        buf.extend_from_slice(&scratch[..n]);
    }
}

fn expect_code(line: &str, step: &str) -> Result<(), String> {
    match parse_reply(line) {
        Some(r) if r.code == 200 => Ok(()),
        _ => Err(format!("{step}: server answered {line:?}")),
    }
}

/// Runs the FTL handshake; returns the control stream, leftover input and the UDP port.
fn handshake(
    options: &PublishOptions,
    channel: u32,
    secret: &str,
    attributes: &StreamAttributes,
) -> Result<(TcpStream, BytesMut, u16), String> {
    let mut stream = TcpStream::connect(options.addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    let write = |stream: &mut TcpStream, bytes: &[u8]| {
        stream
            .write_all(bytes)
            .map_err(|e| format!("control write: {e}"))
    };
    write(&mut stream, &hmac_request())?;
    let line = read_reply(&mut stream, &mut buf)?;
    let challenge = parse_reply(&line)
        .and_then(|r| r.challenge())
        .ok_or_else(|| format!("HMAC: server answered {line:?}"))?;
    write(
        &mut stream,
        &connect_line(channel, secret.as_bytes(), &challenge),
    )?;
    expect_code(&read_reply(&mut stream, &mut buf)?, "CONNECT")?;
    write(&mut stream, &attribute_lines(attributes))?;
    let line = read_reply(&mut stream, &mut buf)?;
    let port = parse_reply(&line)
        .and_then(|r| r.udp_port())
        .ok_or_else(|| format!("stream request: server answered {line:?}"))?;
    Ok((stream, buf, port))
}

fn ping_datagram(seq: u16, ssrc: u32, started: Instant) -> Bytes {
    let mut out = BytesMut::with_capacity(20);
    // PT 250 travels as marker=1, PT=122 (0xfa in the second byte).
    write_header(&mut out, true, 122, seq, 0, ssrc);
    out.put_u64(started.elapsed().as_micros() as u64);
    out.freeze()
}

/// Publishes until the file (or `duration`) is done; returns the summary.
pub fn publish(options: &PublishOptions) -> Result<Summary, String> {
    let (channel, secret) =
        parse_stream_key(&options.key).ok_or("stream key must be CHANNEL-SECRET")?;
    let video_ssrc = channel.wrapping_add(1);
    let audio_ssrc = channel;
    let attributes = StreamAttributes {
        protocol_version: "0.9".into(),
        vendor_name: "ringcast-loadgen".into(),
        vendor_version: env!("CARGO_PKG_VERSION").into(),
        video: Some(TrackInfo {
            codec: TrackCodec::H264,
            payload_type: VIDEO_PT,
            ssrc: video_ssrc,
            width: None,
            height: None,
        }),
        audio: Some(TrackInfo {
            codec: TrackCodec::Opus,
            payload_type: AUDIO_PT,
            ssrc: audio_ssrc,
            width: None,
            height: None,
        }),
        unknown: Vec::new(),
    };

    let h264 = std::fs::read(&options.h264).map_err(|e| format!("{:?}: {e}", options.h264))?;
    let units = access_units(&h264);
    if units.is_empty() {
        return Err("no H.264 access units in the file".into());
    }
    let opus = match &options.opus {
        Some(path) => {
            let data = std::fs::read(path).map_err(|e| format!("{path:?}: {e}"))?;
            ogg_opus_packets(&data)?
        }
        None => Vec::new(),
    };
    let fps = if options.fps > 0.0 { options.fps } else { 25.0 };
    let frame_count = match options.duration {
        Some(secs) => (secs * fps).ceil().max(1.0) as usize,
        None => units.len(),
    };
    let media_length = Duration::from_secs_f64(frame_count as f64 / fps);

    // Build the whole schedule first so the loss guard knows where the stream ends.
    let mut video = H264Packetizer::new(video_ssrc, VIDEO_PT, FTL_MTU, 1000);
    let mut schedule = Vec::new();
    let mut video_index = 0;
    for i in 0..frame_count {
        let at = Duration::from_secs_f64(i as f64 / fps);
        let timestamp = (i as f64 * 90_000.0 / fps) as u32;
        for datagram in video.packetize(timestamp, &units[i % units.len()]) {
            schedule.push(Scheduled {
                at,
                datagram,
                video_index: Some(video_index),
            });
            video_index += 1;
        }
    }
    let video_packets = video_index;
    let mut audio = OpusPacketizer::new(audio_ssrc, AUDIO_PT, 5000);
    let audio_count = (media_length.as_millis() / OPUS_FRAME.as_millis()) as usize;
    for k in 0..audio_count {
        let packet: &[u8] = if opus.is_empty() {
            &OPUS_SILENCE
        } else {
            &opus[k % opus.len()]
        };
        schedule.push(Scheduled {
            at: OPUS_FRAME * k as u32,
            datagram: audio.packetize((k as u32).wrapping_mul(960), packet),
            video_index: None,
        });
    }
    schedule.sort_by_key(|s| s.at);

    let (mut control, mut control_buf, port) = handshake(options, channel, secret, &attributes)?;
    let server = SocketAddr::new(options.addr.ip(), port);
    let local = SocketAddr::new(control.local_addr().map_err(|e| e.to_string())?.ip(), 0);
    let socket = UdpSocket::bind(local).map_err(|e| format!("udp bind: {e}"))?;
    socket
        .connect(server)
        .map_err(|e| format!("udp connect: {e}"))?;

    let stores: Arc<Mutex<HashMap<u32, RetransmitStore>>> = Arc::new(Mutex::new(
        [
            (video_ssrc, RetransmitStore::new()),
            (audio_ssrc, RetransmitStore::new()),
        ]
        .into_iter()
        .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let server_code = Arc::new(AtomicU16::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let nacked = Arc::new(Mutex::new(BTreeSet::<u16>::new()));
    let retransmitted = Arc::new(AtomicU64::new(0));
    let ping_echoes = Arc::new(AtomicU64::new(0));

    let receiver = {
        let socket = socket.try_clone().map_err(|e| e.to_string())?;
        let (stop, stores, nacked, retransmitted, ping_echoes, sent) = (
            stop.clone(),
            stores.clone(),
            nacked.clone(),
            retransmitted.clone(),
            ping_echoes.clone(),
            sent.clone(),
        );
        std::thread::spawn(move || {
            let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let datagram = &buf[..n];
                match datagram.get(1) {
                    Some(&RTCP_RTPFB) => {
                        let Ok(nack) = parse_nack(datagram) else {
                            continue;
                        };
                        let answers = match stores.lock() {
                            Ok(stores) => stores
                                .get(&nack.media_ssrc)
                                .map(|s| s.answer(&nack))
                                .unwrap_or_default(),
                            Err(_) => Vec::new(),
                        };
                        if nack.media_ssrc == video_ssrc
                            && let Ok(mut set) = nacked.lock()
                        {
                            set.extend(nack.lost.iter().copied());
                        }
                        for datagram in answers {
                            if socket.send(&datagram).is_ok() {
                                retransmitted.fetch_add(1, Ordering::Relaxed);
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(0xfa) => {
                        ping_echoes.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
    };

    let control_thread = {
        let mut control = control.try_clone().map_err(|e| e.to_string())?;
        let (stop, server_code) = (stop.clone(), server_code.clone());
        let mut buf = std::mem::take(&mut control_buf);
        std::thread::spawn(move || {
            let _ = control.set_read_timeout(Some(Duration::from_millis(200)));
            let mut last_ping = Instant::now();
            let mut scratch = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                if last_ping.elapsed() >= CONTROL_PING_INTERVAL {
                    let _ = control.write_all(&ping_line(channel));
                    last_ping = Instant::now();
                }
                match control.read(&mut scratch) {
                    Ok(0) => {
                        if server_code.load(Ordering::Relaxed) == 0 {
                            server_code.store(902, Ordering::Relaxed);
                        }
                        stop.store(true, Ordering::Relaxed);
                    }
                    Ok(n) => buf.extend_from_slice(&scratch[..n]),
                    Err(_) => {}
                }
                while let Some(line) = take_line(&mut buf) {
                    let code = parse_reply(&line).map_or(0, |r| r.code);
                    if code != 200 && code != 201 {
                        server_code.store(code, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let started = Instant::now();
    let mut loss = LossPattern {
        state: options.seed.max(1),
        loss: options.loss,
    };
    let mut dropped = BTreeSet::new();
    let mut ping_seq = 0u16;
    let mut next_ping = Duration::ZERO;
    let mut summary = Summary {
        access_units: frame_count as u64,
        video_packets: video_packets as u64,
        audio_packets: audio_count as u64,
        udp_port: port,
        ..Summary::default()
    };
    let send = |datagram: &[u8]| {
        if socket.send(datagram).is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    };
    let mut schedule = schedule.into_iter().peekable();
    let end = media_length + DRAIN;
    while !stop.load(Ordering::Relaxed) {
        let elapsed = started.elapsed();
        if elapsed >= end {
            break;
        }
        while elapsed >= next_ping {
            send(&ping_datagram(ping_seq, video_ssrc, started));
            ping_seq = ping_seq.wrapping_add(1);
            next_ping += PING_INTERVAL;
        }
        while let Some(item) = schedule.next_if(|s| s.at <= elapsed) {
            let ssrc = if item.video_index.is_some() {
                video_ssrc
            } else {
                audio_ssrc
            };
            if let Ok(mut stores) = stores.lock()
                && let Some(store) = stores.get_mut(&ssrc)
            {
                store.insert(item.datagram.clone());
            }
            let droppable = item
                .video_index
                .is_some_and(|i| i >= LOSS_GUARD_PACKETS && i + LOSS_GUARD_PACKETS < video_packets);
            if droppable && loss.drop_next() {
                let seq = u16::from_be_bytes([item.datagram[2], item.datagram[3]]);
                dropped.insert(seq);
                continue;
            }
            send(&item.datagram);
        }
        let next = schedule
            .peek()
            .map_or(next_ping, |s| s.at.min(next_ping))
            .min(end);
        std::thread::sleep(next.saturating_sub(started.elapsed()).min(PING_INTERVAL));
    }
    // Stop the control reader first so the server's close after DISCONNECT is not mistaken
    // for the server ending the stream.
    stop.store(true, Ordering::Relaxed);
    let _ = control_thread.join();
    let _ = receiver.join();
    let _ = control.write_all(&disconnect_line());

    let nacked = nacked.lock().map(|s| s.clone()).unwrap_or_default();
    summary.sent = sent.load(Ordering::Relaxed);
    summary.dropped = dropped.len() as u64;
    summary.nacked = nacked.len() as u64;
    summary.retransmitted = retransmitted.load(Ordering::Relaxed);
    summary.nacked_not_dropped = nacked.difference(&dropped).count() as u64;
    summary.dropped_not_nacked = dropped.difference(&nacked).count() as u64;
    summary.ping_echoes = ping_echoes.load(Ordering::Relaxed);
    let code = server_code.load(Ordering::Relaxed);
    summary.server_code = (code != 0).then_some(code);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn access_units_split_on_first_slice_and_parameter_sets() {
        let stream = [
            &[0, 0, 0, 1, 0x67, 1][..],    // SPS
            &[0, 0, 0, 1, 0x68, 1][..],    // PPS
            &[0, 0, 1, 0x65, 0x88][..],    // IDR, first_mb 0
            &[0, 0, 1, 0x65, 0x40][..],    // IDR, second slice
            &[0, 0, 1, 0x41, 0x9a][..],    // P, first_mb 0: new unit
            &[0, 0, 0, 1, 0x09, 0xf0][..], // AUD: new unit
            &[0, 0, 1, 0x41, 0x9a][..],
        ]
        .concat();
        let units = access_units(&stream);
        assert_eq!(units.len(), 3);
        assert_eq!(units[0].len(), 4);
        assert_eq!(units[1].len(), 1);
        assert_eq!(units[2].len(), 1);
    }

    #[test]
    fn ogg_packets_join_laced_segments() {
        let mut page = Vec::new();
        let mut push_page = |packets: &[&[u8]]| {
            let mut table = Vec::new();
            let mut body = Vec::new();
            for p in packets {
                let mut left = p.len();
                while left >= 255 {
                    table.push(255);
                    left -= 255;
                }
                table.push(left as u8);
                body.extend_from_slice(p);
            }
            page.extend_from_slice(b"OggS");
            page.extend_from_slice(&[0; 22]);
            page.push(table.len() as u8);
            page.extend_from_slice(&table);
            page.extend_from_slice(&body);
        };
        push_page(&[b"OpusHead", b"OpusTags"]);
        let big = vec![7u8; 300];
        push_page(&[&big, b"x"]);
        let packets = ogg_opus_packets(&page).unwrap();
        assert_eq!(packets, vec![big, b"x".to_vec()]);
    }

    #[test]
    fn loss_pattern_is_deterministic_and_near_rate() {
        let run = || {
            let mut l = LossPattern {
                state: 7,
                loss: 0.05,
            };
            (0..10_000).filter(|_| l.drop_next()).count()
        };
        let a = run();
        assert_eq!(a, run());
        assert!((300..700).contains(&a), "{a}");
    }
}
