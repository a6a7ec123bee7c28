//! Socket reads for the connection drivers, into a buffer sized by what the peer sends.
//!
//! compio reads into an owned buffer from its start, so bytes are read into a scratch buffer
//! and appended to the session's input. The scratch starts small, doubles only when a read fills
//! it, and falls back when reads turn small: a player, which sends nothing but acknowledgements
//! after its handshake, keeps 1 KiB, while a publisher's grows to the ceiling within a few
//! reads. Read buffers were most of a watcher's memory (141 KiB of it before this), so this
//! matters at thousands of watchers.

use std::io;

use bytes::BytesMut;

use super::runtime::{AsyncRead, BufResult, TcpStream};

/// Initial scratch size, and the size an idle connection returns to.
const INITIAL: usize = 1024;
/// Largest scratch size, reached by peers that send media.
const MAX: usize = 64 * 1024;

/// A growing read buffer for one connection.
#[derive(Debug)]
pub struct Reader {
    scratch: Vec<u8>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            scratch: Vec::with_capacity(INITIAL),
        }
    }
}

impl Reader {
    /// Reads once from `stream`, appending what arrived to `input`. `Ok(0)` is end of stream.
    pub async fn read_into(
        &mut self,
        stream: &TcpStream,
        input: &mut BytesMut,
    ) -> io::Result<usize> {
        let mut reader = stream;
        let scratch = std::mem::take(&mut self.scratch);
        let BufResult(result, returned) = reader.read(scratch).await;
        self.scratch = returned;
        let n = result?;
        input.extend_from_slice(&self.scratch[..n]);
        let capacity = self.scratch.capacity();
        if n == capacity && capacity < MAX {
            self.scratch = Vec::with_capacity((capacity * 2).min(MAX));
        } else if n < INITIAL / 4 && capacity > INITIAL {
            // A burst is over (the handshake, say): a player goes back to acknowledgements.
            self.scratch = Vec::with_capacity(INITIAL);
        }
        Ok(n)
    }
}
