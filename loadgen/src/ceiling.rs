//! The kernel-ceiling baseline: the least a fan-out server can do, to price everything else.
//!
//! `threads` writer threads (one by default; one per core to compare with a thread-per-core
//! server) each generate the same synthetic schedule as the publisher (no ingest socket) and,
//! for every message, frame it once (`u32 BE length, u8 type, body`) and issue one `write(2)`
//! per socket they own with that shared buffer. No epoll, no per-watcher state beyond a
//! backlog: a short write leaves the remainder in that socket's backlog, which is retried (one
//! write) before the next message; a backlog over `max_backlog` bytes disconnects the watcher.
//! An acceptor thread hands new connections to the writers in turn. With `coalesce_audio`, an
//! audio frame is not written alone but rides with the next video frame in one write (the
//! shape of a relay that coalesces writes; only video carries the latency probe). What it
//! costs is what the kernel costs.
//!
//! Every video frame's probe carries the time the frame was due, not the time it was written:
//! a ceiling that cannot keep to the schedule shows its lag in the watchers' latency instead of
//! hiding it behind late stamps. (A publisher stamps its send time, which is the due time for
//! as long as it keeps up; the server it feeds is then charged only for its own delay.)

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::synth::{Due, MediaParams, Schedule, aac_frame, monotonic_ns, video_frame};

struct Client {
    sock: TcpStream,
    backlog: Vec<u8>,
}

/// What one writer thread did.
#[derive(Debug, Default, Clone, Copy)]
struct Served {
    clients: usize,
    dropped: u64,
}

fn frame(ty: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u32(body.len() as u32);
    b.put_u8(ty);
    b.put_slice(body);
    b.freeze()
}

/// How the ceiling serves.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Writer threads, each with its share of the watchers.
    pub threads: usize,
    /// Audio waits for the next video frame and goes out in the same write.
    pub coalesce_audio: bool,
}

/// Binds `listen` and serves until `duration` ends (zero: forever).
pub fn run(
    listen: SocketAddr,
    media: MediaParams,
    duration: Duration,
    max_backlog: usize,
    shape: Shape,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!(
        "kernel-ceiling listening on {} with {} writer thread(s){}",
        listener.local_addr()?,
        shape.threads.max(1),
        if shape.coalesce_audio {
            ", audio with the next video frame"
        } else {
            ""
        }
    );
    serve(listener, media, duration, max_backlog, shape)
}

/// Serves `listener`'s connections as `shape` says until `duration` ends (zero: forever).
pub fn serve(
    listener: TcpListener,
    media: MediaParams,
    duration: Duration,
    max_backlog: usize,
    shape: Shape,
) -> io::Result<()> {
    let start = monotonic_ns();
    let mut inboxes = Vec::new();
    let mut writers = Vec::new();
    for i in 0..shape.threads.max(1) {
        let (tx, rx) = channel();
        inboxes.push(tx);
        writers.push(
            std::thread::Builder::new()
                .name(format!("ceiling-w{i}"))
                .spawn(move || {
                    write_loop(
                        &rx,
                        media,
                        start,
                        duration,
                        max_backlog,
                        shape.coalesce_audio,
                    )
                })?,
        );
    }
    // Not joined: it blocks in accept(2) and ends with the process.
    std::thread::Builder::new()
        .name("ceiling-accept".into())
        .spawn(move || accept_loop(&listener, &inboxes))?;
    let mut total = Served::default();
    for writer in writers {
        let served = writer
            .join()
            .map_err(|_| io::Error::other("a writer thread panicked"))?;
        total.clients += served.clients;
        total.dropped += served.dropped;
    }
    eprintln!(
        "kernel-ceiling done: {} clients, {} dropped",
        total.clients, total.dropped
    );
    Ok(())
}

/// Hands accepted connections to the writers in turn.
fn accept_loop(listener: &TcpListener, inboxes: &[Sender<TcpStream>]) {
    let mut next = 0usize;
    for conn in listener.incoming() {
        match conn {
            Ok(sock) => {
                if sock.set_nonblocking(true).is_err() {
                    continue;
                }
                sock.set_nodelay(true).ok();
                if inboxes[next % inboxes.len()].send(sock).is_err() {
                    return; // the writers are done
                }
                next += 1;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// One writer: the schedule from `start`, written to every socket it was handed.
fn write_loop(
    inbox: &Receiver<TcpStream>,
    media: MediaParams,
    start: u64,
    duration: Duration,
    max_backlog: usize,
    coalesce_audio: bool,
) -> Served {
    let mut clients: Vec<Client> = Vec::new();
    let mut messages = Messages::new(media, start, coalesce_audio);
    let mut sched = Schedule::new(media);
    let mut served = Served::default();
    loop {
        for sock in inbox.try_iter() {
            served.clients += 1;
            clients.push(Client {
                sock,
                backlog: Vec::new(),
            });
        }
        let elapsed = monotonic_ns() - start;
        if !duration.is_zero() && elapsed >= duration.as_nanos() as u64 {
            return served;
        }
        while let Some(due) = sched.pop_due(elapsed) {
            if let Some(msg) = messages.next(due) {
                clients.retain_mut(|c| write_message(c, &msg, max_backlog, &mut served.dropped));
            }
        }
        let next = sched.next_at_ns();
        let now = monotonic_ns() - start;
        if next > now {
            std::thread::sleep(Duration::from_nanos((next - now).min(5_000_000)));
        }
    }
}

/// Turns the schedule's items into what is written: framed once, video probes stamped with
/// their due time, audio held for the next video frame when coalescing.
struct Messages {
    key_size: usize,
    inter_size: usize,
    audio_size: usize,
    start: u64,
    coalesce_audio: bool,
    /// Audio waiting for the next video frame (coalescing only).
    held_audio: BytesMut,
}

impl Messages {
    fn new(media: MediaParams, start: u64, coalesce_audio: bool) -> Self {
        let (key_size, inter_size) = media.video_sizes();
        Messages {
            key_size,
            inter_size,
            audio_size: media.audio_size(),
            start,
            coalesce_audio,
            held_audio: BytesMut::new(),
        }
    }

    /// The bytes to write for `due`; `None` while audio is held.
    fn next(&mut self, due: Due) -> Option<Bytes> {
        match due {
            Due::Video {
                seq,
                keyframe,
                at_ns,
                ..
            } => {
                let size = if keyframe {
                    self.key_size
                } else {
                    self.inter_size
                };
                let video = frame(9, &video_frame(size, keyframe, seq, self.start + at_ns));
                if self.held_audio.is_empty() {
                    return Some(video);
                }
                self.held_audio.put_slice(&video);
                Some(self.held_audio.split().freeze())
            }
            Due::Audio { .. } => {
                let audio = frame(8, &aac_frame(self.audio_size));
                if !self.coalesce_audio {
                    return Some(audio);
                }
                self.held_audio.put_slice(&audio);
                None
            }
        }
    }
}

/// Writes `msg` to one client after its backlog; false when the client is gone or dropped.
fn write_message(c: &mut Client, msg: &Bytes, max_backlog: usize, dropped: &mut u64) -> bool {
    if !c.backlog.is_empty() {
        match c.sock.write(&c.backlog) {
            Ok(n) => {
                c.backlog.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        if !c.backlog.is_empty() {
            c.backlog.extend_from_slice(msg);
            if c.backlog.len() > max_backlog {
                *dropped += 1;
                return false;
            }
            return true;
        }
    }
    match c.sock.write(msg) {
        Ok(n) => c.backlog.extend_from_slice(&msg[n..]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.backlog.extend_from_slice(msg),
        Err(_) => return false,
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::synth::read_probe;

    fn media() -> MediaParams {
        MediaParams {
            video_bps: 400_000,
            audio_bps: 64_000,
            fps: 30,
            gop_secs: 1.0,
        }
    }

    /// Reads `u32 BE length, u8 type, body` messages until `video` video probes were seen.
    fn read_video_probes(sock: &mut TcpStream, video: usize) -> Vec<crate::synth::Probe> {
        let mut probes = Vec::new();
        while probes.len() < video {
            let mut head = [0u8; 5];
            sock.read_exact(&mut head).unwrap();
            let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len];
            sock.read_exact(&mut body).unwrap();
            if head[4] == 9
                && let Some(probe) = read_probe(&body)
            {
                probes.push(probe);
            }
        }
        probes
    }

    #[test]
    fn two_writer_threads_deliver_every_frame_in_order_with_due_time_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let shape = Shape {
                threads: 2,
                coalesce_audio: false,
            };
            serve(listener, media(), Duration::from_secs(4), 8 << 20, shape)
        });
        // Four watchers, handed to the two writers in turn.
        let mut socks: Vec<TcpStream> = (0..4)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect();
        let frame_ns = 1_000_000_000 / u64::from(media().fps);
        for sock in &mut socks {
            let probes = read_video_probes(sock, 31);
            for pair in probes.windows(2) {
                assert_eq!(pair[1].seq, pair[0].seq + 1, "frames in order, none lost");
                // Stamped with the schedule, not the write: consecutive frames are exactly
                // one frame interval apart (to the nanosecond rounding of the schedule).
                let gap = pair[1].sent_ns - pair[0].sent_ns;
                assert!(gap.abs_diff(frame_ns) <= 1, "probe gap {gap} ns");
            }
            assert!(
                probes.iter().any(|p| p.keyframe),
                "31 frames of 1 s GOPs hold a keyframe"
            );
        }
        server.join().unwrap().unwrap();
    }

    #[test]
    fn coalesced_audio_leaves_with_the_next_video_frame_in_one_message() {
        let mut sched = Schedule::new(media());
        let mut alone = Messages::new(media(), 0, false);
        let mut coalesced = Messages::new(media(), 0, true);
        let (mut alone_bytes, mut coalesced_bytes) = (Vec::new(), Vec::new());
        let (mut alone_writes, mut coalesced_writes, mut video) = (0, 0, 0);
        // Two seconds of the schedule: 60 video frames and about 94 audio frames.
        while let Some(due) = sched.pop_due(2_000_000_000) {
            let is_audio = matches!(due, Due::Audio { .. });
            video += usize::from(!is_audio);
            if let Some(m) = alone.next(due) {
                alone_writes += 1;
                alone_bytes.extend_from_slice(&m);
            }
            match coalesced.next(due) {
                Some(m) => {
                    coalesced_writes += 1;
                    coalesced_bytes.extend_from_slice(&m);
                }
                None => assert!(is_audio, "only audio is held"),
            }
        }
        assert_eq!(coalesced_writes, video, "one write per video frame");
        assert!(alone_writes > video + 80, "{alone_writes} writes alone");
        // The same bytes in the same order; only the write boundaries differ.
        assert_eq!(alone_bytes, coalesced_bytes);
    }
}
