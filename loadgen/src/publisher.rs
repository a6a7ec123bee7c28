//! The RTMP publisher: one blocking connection that handshakes, publishes, then sends the
//! synthetic schedule in real time (video with embedded probes, AAC audio).
//!
//! Built on ringcast's sans-IO `ClientSession`; a second thread drains what the server sends
//! so its acknowledgements and pings never back up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use ringcast::media::{Frame, MediaKind};
use ringcast::proto::rtmp::{ClientConfig, ClientEvent, ClientSession};

use crate::synth::{
    Due, MediaParams, Schedule, aac_frame, aac_sequence_header, avc_sequence_header, monotonic_ns,
    video_frame,
};

/// Where and what to publish.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub target: SocketAddr,
    pub app: String,
    pub stream: String,
    pub media: MediaParams,
    /// Zero means until killed.
    pub duration: Duration,
}

fn flush(session: &mut ClientSession, sock: &mut TcpStream) -> Result<(), String> {
    while let Some(b) = session.poll_transmit() {
        sock.write_all(&b).map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

/// Publishes until the duration ends or the connection fails.
pub fn run(cfg: &PublishConfig) -> Result<u64, String> {
    let mut sock = TcpStream::connect(cfg.target).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).ok();
    let mut random = [0u8; ringcast::proto::rtmp::handshake::RANDOM_SIZE];
    random[..8].copy_from_slice(&monotonic_ns().to_be_bytes());
    let mut session = ClientSession::new(ClientConfig::default(), random);
    let tc_url = format!("rtmp://{}/{}", cfg.target, cfg.app);
    session.connect(&cfg.app, &tc_url);
    session.publish(&cfg.stream);
    flush(&mut session, &mut sock)?;
    let mut inbuf = BytesMut::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    'setup: loop {
        let n = sock.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed during setup".into());
        }
        inbuf.extend_from_slice(&chunk[..n]);
        session
            .handle_input(&mut inbuf)
            .map_err(|e| format!("session: {e}"))?;
        flush(&mut session, &mut sock)?;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::PublishStarted { .. } => break 'setup,
                ClientEvent::Status { level, code, .. } if level == "error" => {
                    return Err(format!("publish refused: {code}"));
                }
                _ => {}
            }
        }
    }
    // Drain the server's side from here on; the session no longer needs it.
    let mut reader = sock.try_clone().map_err(|e| format!("clone: {e}"))?;
    reader.set_read_timeout(None).ok();
    std::thread::spawn(move || {
        let mut b = vec![0u8; 16 * 1024];
        while matches!(reader.read(&mut b), Ok(n) if n > 0) {}
    });

    let p = cfg.media;
    let (key_size, inter_size) = p.video_sizes();
    let audio_size = p.audio_size();
    let send = |session: &mut ClientSession, kind, ts, payload| {
        session
            .send_frame(&Frame::new(kind, ts, payload))
            .map_err(|e| format!("send: {e}"))
    };
    send(&mut session, MediaKind::Video, 0, avc_sequence_header())?;
    if p.audio_bps > 0 {
        send(&mut session, MediaKind::Audio, 0, aac_sequence_header())?;
    }
    flush(&mut session, &mut sock)?;
    let mut sched = Schedule::new(p);
    let start = monotonic_ns();
    let mut sent = 0u64;
    loop {
        let elapsed = monotonic_ns() - start;
        if !cfg.duration.is_zero() && elapsed >= cfg.duration.as_nanos() as u64 {
            return Ok(sent);
        }
        while let Some(due) = sched.pop_due(elapsed) {
            match due {
                Due::Video {
                    seq,
                    keyframe,
                    ts_ms,
                } => {
                    let size = if keyframe { key_size } else { inter_size };
                    let body = video_frame(size, keyframe, seq, monotonic_ns());
                    send(&mut session, MediaKind::Video, ts_ms, body)?;
                }
                Due::Audio { ts_ms } => {
                    send(&mut session, MediaKind::Audio, ts_ms, aac_frame(audio_size))?;
                }
            }
            sent += 1;
        }
        flush(&mut session, &mut sock)?;
        let next = sched.next_at_ns();
        let now = monotonic_ns() - start;
        if next > now {
            std::thread::sleep(Duration::from_nanos(next - now));
        }
    }
}
