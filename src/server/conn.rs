//! An accepted connection as the fstream and HTTP drivers hold it: the socket with its
//! deadlines, the client's address, and the bytes read but not consumed yet.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::Core;
use super::accept::Accepted;
use super::guard::ConnGuard;
use super::reader::Reader;
use super::runtime::{BufResult, spawn};

/// One accepted connection after the accept step.
pub struct Conn {
    pub core: Rc<Core>,
    pub guard: Rc<ConnGuard>,
    pub peer: SocketAddr,
    /// Bytes read but not consumed yet: what followed a PROXY header, a broadcaster's first
    /// data after its handshake, a pipelined request after a head.
    pub input: BytesMut,
    reader: Reader,
}

impl Conn {
    pub fn new(core: Rc<Core>, accepted: Accepted) -> Self {
        let Accepted { guard, peer, early } = accepted;
        Conn {
            core,
            guard,
            peer,
            input: early,
            reader: Reader::default(),
        }
    }

    /// Reads once more into `input`. `Ok(0)` is end of stream.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        let stream = self.guard.stream().clone();
        let n = self.reader.read_into(&stream, &mut self.input).await?;
        if n > 0 {
            self.guard.note_read(Instant::now());
        }
        Ok(n)
    }

    /// Writes `parts` whole, with one vectored write.
    pub async fn write(&self, parts: Vec<Bytes>) -> std::io::Result<()> {
        let BufResult(result, _) = self.guard.stream().write_vectored_all(parts).await;
        result
    }

    /// Why the connection's IO stopped: the guard's cut reason wins over the IO error it caused.
    pub fn describe_io_end(&self, result: &std::io::Result<usize>) -> String {
        match (self.guard.cut(), result) {
            (Some(cut), _) => cut.to_string(),
            (None, Ok(_)) => "closed by peer".to_owned(),
            (None, Err(e)) => format!("io error: {e}"),
        }
    }

    pub fn close(&self) {
        self.guard.stream().shutdown();
    }

    /// For a watcher, whose peer has nothing more to say: a task that reads and discards
    /// whatever arrives and calls `left` at end of stream (or on an error), so the write loop
    /// learns the peer went away.
    pub fn discard_input_until_eof(mut self, left: impl FnOnce() + 'static) {
        spawn(async move {
            loop {
                self.input.clear();
                match self.read_more().await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            left();
        })
        .detach();
    }
}
