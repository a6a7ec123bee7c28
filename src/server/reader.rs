//! Socket reads for the connection drivers, straight into the session's input buffer, sized by
//! what the peer sends.
//!
//! Each read lands in the spare capacity at the end of the input (no scratch buffer, no copy).
//! The read size starts small, doubles only when a read fills it, and falls back when reads turn
//! small: a player, which sends nothing but acknowledgements after its handshake, reads 256 bytes at
//! a time, while a publisher's reads grow to the ceiling within a few reads. An input left empty
//! after a burst (the handshake, say) gives its allocation back before the next read, so a
//! long-lived player does not keep the few KiB its handshake needed. Read buffers were most of a
//! watcher's memory (141 KiB of it once), so this matters at thousands of watchers.

use std::io;

use bytes::BytesMut;

use super::net::Transport;
use super::runtime::{self, AsyncRead, BufResult, IntoInner, TcpStream};

/// Initial read size, and the size an idle connection returns to.
const INITIAL: usize = 256;
/// Largest read size, reached by peers that send media.
const MAX: usize = 64 * 1024;

/// The adaptive read size of one connection.
#[derive(Debug)]
pub struct Reader {
    size: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader { size: INITIAL }
    }
}

impl Reader {
    /// Reads once from `transport`, appending the plaintext that arrived to `input`. `Ok(0)` is
    /// end of stream. On TLS the socket reads (sized here) fill the ciphertext buffer.
    pub async fn read_into(
        &mut self,
        transport: &Transport,
        input: &mut BytesMut,
    ) -> io::Result<usize> {
        transport.read_into(self, input).await
    }

    /// Reads once from the TCP socket itself, appending what arrived to `input`.
    pub async fn read_raw(
        &mut self,
        stream: &TcpStream,
        input: &mut BytesMut,
    ) -> io::Result<usize> {
        if input.is_empty() && input.capacity() > self.size {
            // Everything read so far was consumed: drop a burst's allocation.
            *input = BytesMut::new();
        }
        input.reserve(self.size);
        let start = input.len();
        let mut reader = stream;
        // Called by path: with `IoBuf` in scope, `input.is_empty()` would resolve to it.
        let spare = runtime::IoBuf::slice(std::mem::take(input), start..);
        let BufResult(result, filled) = reader.read(spare).await;
        super::trace::clock();
        *input = filled.into_inner();
        let n = result?;
        if n >= self.size && self.size < MAX {
            self.size = (self.size * 2).min(MAX);
        } else if n < INITIAL / 4 && self.size > INITIAL {
            self.size = INITIAL;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    /// Runs `f` on a one-off compio runtime with a connected (client, server) pair.
    fn with_pair(f: impl AsyncFnOnce(std::net::TcpStream, TcpStream)) {
        let rt = compio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            f(client, TcpStream::from_std(server).unwrap()).await;
        });
    }

    #[test]
    fn reads_append_after_unconsumed_input() {
        with_pair(async |mut client, server| {
            let mut reader = Reader::default();
            let mut input = BytesMut::from(&b"kept"[..]);
            client.write_all(b" then more").unwrap();
            let n = reader.read_raw(&server, &mut input).await.unwrap();
            assert_eq!(n, 10);
            assert_eq!(&input[..], b"kept then more");
        });
    }

    #[test]
    fn read_size_grows_when_reads_fill_it_and_falls_back_when_idle() {
        with_pair(async |mut client, server| {
            let mut reader = Reader::default();
            let mut input = BytesMut::new();
            client.write_all(&[7u8; 8 * INITIAL]).unwrap();
            let mut got = 0;
            while got < 8 * INITIAL {
                got += reader.read_raw(&server, &mut input).await.unwrap();
            }
            assert!(reader.size > INITIAL, "size stayed at {}", reader.size);
            assert_eq!(input.len(), 8 * INITIAL);

            // The session consumed everything; acknowledgement-sized reads follow.
            for _ in 0..2 {
                input.clear();
                client.write_all(&[1u8; 16]).unwrap();
                assert_eq!(reader.read_raw(&server, &mut input).await.unwrap(), 16);
            }
            assert_eq!(reader.size, INITIAL);
            assert!(
                input.capacity() < 8 * INITIAL,
                "the burst's allocation ({} bytes) was kept",
                input.capacity()
            );
        });
    }
}
