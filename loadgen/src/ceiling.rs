//! The kernel-ceiling baseline: the least a fan-out server can do, to price everything else.
//!
//! One thread generates the same synthetic schedule as the publisher (no ingest socket) and,
//! for every message, frames it once (`u32 BE length, u8 type, body`) and issues one `write(2)`
//! per connected socket with that shared buffer. No epoll, no per-watcher state beyond a backlog:
//! a short write leaves the remainder in that socket's backlog, which is retried (one write)
//! before the next message; a backlog over `max_backlog` bytes disconnects the watcher. New
//! connections are accepted between messages. What it costs is what the kernel costs.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::synth::{Due, MediaParams, Schedule, aac_frame, monotonic_ns, video_frame};

struct Client {
    sock: TcpStream,
    backlog: Vec<u8>,
}

fn frame(ty: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u32(body.len() as u32);
    b.put_u8(ty);
    b.put_slice(body);
    b.freeze()
}

/// Serves until `duration` ends (zero: forever).
pub fn run(
    listen: SocketAddr,
    media: MediaParams,
    duration: Duration,
    max_backlog: usize,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    eprintln!("kernel-ceiling listening on {}", listener.local_addr()?);
    let mut clients: Vec<Client> = Vec::new();
    let (key_size, inter_size) = media.video_sizes();
    let audio_size = media.audio_size();
    let mut sched = Schedule::new(media);
    let start = monotonic_ns();
    let mut dropped = 0u64;
    loop {
        loop {
            match listener.accept() {
                Ok((sock, _)) => {
                    sock.set_nonblocking(true)?;
                    sock.set_nodelay(true).ok();
                    clients.push(Client {
                        sock,
                        backlog: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    eprintln!("accept: {e}");
                    break;
                }
            }
        }
        let elapsed = monotonic_ns() - start;
        if !duration.is_zero() && elapsed >= duration.as_nanos() as u64 {
            eprintln!(
                "kernel-ceiling done: {} clients, {dropped} dropped",
                clients.len()
            );
            return Ok(());
        }
        while let Some(due) = sched.pop_due(elapsed) {
            let msg = match due {
                Due::Video { seq, keyframe, .. } => {
                    let size = if keyframe { key_size } else { inter_size };
                    frame(9, &video_frame(size, keyframe, seq, monotonic_ns()))
                }
                Due::Audio { .. } => frame(8, &aac_frame(audio_size)),
            };
            clients.retain_mut(|c| {
                if !c.backlog.is_empty() {
                    match c.sock.write(&c.backlog) {
                        Ok(n) => {
                            c.backlog.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return false,
                    }
                    if !c.backlog.is_empty() {
                        c.backlog.extend_from_slice(&msg);
                        if c.backlog.len() > max_backlog {
                            dropped += 1;
                            return false;
                        }
                        return true;
                    }
                }
                match c.sock.write(&msg) {
                    Ok(n) => c.backlog.extend_from_slice(&msg[n..]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.backlog.extend_from_slice(&msg)
                    }
                    Err(_) => return false,
                }
                true
            });
        }
        let next = sched.next_at_ns();
        let now = monotonic_ns() - start;
        if next > now {
            std::thread::sleep(Duration::from_nanos((next - now).min(5_000_000)));
        }
    }
}
