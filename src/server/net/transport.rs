//! [`Transport`]: one connection, plain TCP or TLS, behind one type every driver uses.
//!
//! A TLS transport keeps its rustls state in a `RefCell` that no one holds across an await: the
//! reader task decrypts (it owns the ciphertext input buffer), the writer task encrypts, and a
//! small async lock serialises what reaches the socket (records must not interleave), so the
//! two tasks a playing connection runs (the read loop and the watcher write loop) share one
//! TLS session safely. Whatever rustls wants to send after reading (handshake flights, TLS 1.3
//! post-handshake messages, alerts) is written by the reader under the same lock.
//!
//! Copies on the write path: the watcher's gathered `Vec<Bytes>` is handed to rustls as one
//! vectored plaintext write, which fills full-size records straight from the shared frames
//! (one copy into the record, sealed in place: the one encryption), then the sealed record is
//! moved into the write's output buffer (one memcpy) and sent, one record (16 KiB of
//! plaintext) per socket write. Plain TCP keeps its zero-copy vectored write.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::lock::Mutex;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::server::reader::Reader;
use crate::server::runtime::{self, AsyncWriteExt, BufResult, TcpStream};

/// An output buffer larger than this after a write is released. 0: every write allocates its
/// ciphertext buffer (cheap next to the encryption) and none is kept between writes: kept, it
/// was most of a TLS watcher's memory (bench, 1000 RTMPS watchers: ~80 KiB per watcher keeping
/// up to 16 KiB with 64 KiB chunks, ~37 KiB keeping none with 16 KiB chunks).
const KEEP_OUTPUT: usize = 0;
/// TLS record overhead allowance when sizing the output buffer: header, tag, content type.
const RECORD_OVERHEAD: usize = 5 + 16 + 1;
/// Largest plaintext per record.
const RECORD_PLAINTEXT: usize = 16 * 1024;
/// Most plaintext sealed for one socket write: one full record, so a watcher waiting on a full
/// socket holds at most one record of ciphertext in flight.
const MAX_SEALED: usize = 16 * 1024;

/// How far a sealed write has got through its parts.
#[derive(Debug, Default)]
struct Cursor {
    index: usize,
    offset: usize,
    sent: usize,
}

/// A connection: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub struct Transport {
    tcp: TcpStream,
    /// Boxed: a rustls connection is over a kilobyte, which every plain connection (most
    /// watchers) would otherwise carry empty.
    tls: Option<Box<Tls>>,
}

struct Tls {
    state: RefCell<TlsState>,
    /// The socket's write side: held while records go out. Its buffer is reused.
    out: Mutex<Vec<u8>>,
}

struct TlsState {
    conn: Connection,
    /// Ciphertext read but not handed to rustls yet (the reader takes it out while reading).
    cipher: BytesMut,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer closed; `received` bytes of handshake had arrived (0: a port probe).
    #[error("closed by peer during the TLS handshake after {received} bytes")]
    Closed { received: usize },
    #[error("TLS handshake: {0}")]
    Tls(rustls::Error),
    #[error("io error during the TLS handshake: {0}")]
    Io(io::Error),
}

impl Transport {
    /// A plain TCP connection.
    pub fn plain(tcp: TcpStream) -> Self {
        Transport { tcp, tls: None }
    }

    /// The server side of a TLS connection; [`Transport::handshake`] completes it.
    pub fn tls_server(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self::with_tls(tcp, conn.into()))
    }

    /// The client side of a TLS connection to `name`; [`Transport::handshake`] completes it.
    pub fn tls_client(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(Self::with_tls(tcp, conn.into()))
    }

    fn with_tls(tcp: TcpStream, conn: Connection) -> Self {
        Transport {
            tcp,
            tls: Some(Box::new(Tls {
                state: RefCell::new(TlsState {
                    conn,
                    cipher: BytesMut::new(),
                }),
                out: Mutex::new(Vec::new()),
            })),
        }
    }

    /// The TCP socket underneath (socket options, addresses; PROXY headers precede TLS).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The negotiated TLS version and the server name the client asked for (SNI), if TLS.
    pub fn tls_summary(&self) -> Option<(String, Option<String>)> {
        let tls = self.tls.as_ref()?;
        let state = tls.state.borrow();
        let version = state
            .conn
            .protocol_version()
            .map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
        let sni = match &state.conn {
            Connection::Server(s) => s.server_name().map(str::to_owned),
            Connection::Client(_) => None,
        };
        Some((version, sni))
    }

    /// The end-entity certificate the peer presented (a client sees the server's).
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let state = self.tls.as_ref()?.state.borrow();
        state
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
    }

    /// Completes the TLS handshake (nothing to do on plain TCP). `early` holds ciphertext that
    /// arrived with a PROXY header; on return it holds whatever application data the peer sent
    /// along with its last handshake flight (already decrypted).
    pub async fn handshake(&self, early: &mut BytesMut) -> Result<(), HandshakeError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        {
            let mut state = tls.state.borrow_mut();
            let cipher = std::mem::take(early);
            state.cipher.extend_from_slice(&cipher);
        }
        let mut reader = Reader::default();
        let mut received = tls.state.borrow().cipher.len();
        loop {
            let (done, progress) = {
                let mut state = tls.state.borrow_mut();
                let progress = state.absorb(early);
                (!state.conn.is_handshaking(), progress)
            };
            // Send what the handshake produced (a flight, or the alert for a failure).
            self.flush_tls().await.map_err(HandshakeError::Io)?;
            progress.map_err(HandshakeError::Tls)?;
            if done {
                tls.state.borrow_mut().conn.set_buffer_limit(None);
                return Ok(());
            }
            let mut cipher = std::mem::take(&mut tls.state.borrow_mut().cipher);
            let read = reader.read_raw(&self.tcp, &mut cipher).await;
            tls.state.borrow_mut().cipher = cipher;
            match read {
                Ok(0) => return Err(HandshakeError::Closed { received }),
                Ok(n) => received += n,
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
    }

    /// Reads once more, appending plaintext to `input`; `Ok(0)` is end of stream. `reader`
    /// sizes the socket reads. Only one task may read a transport.
    pub async fn read_into(&self, reader: &mut Reader, input: &mut BytesMut) -> io::Result<usize> {
        match &self.tls {
            None => reader.read_raw(&self.tcp, input).await,
            // Boxed, as the write below: every connection's task holds this future while it
            // waits for input, and the TLS path's state would make it larger for all of them.
            Some(tls) => Box::pin(self.read_tls(tls, reader, input)).await,
        }
    }

    async fn read_tls(
        &self,
        tls: &Tls,
        reader: &mut Reader,
        input: &mut BytesMut,
    ) -> io::Result<usize> {
        loop {
            let before = input.len();
            let (progress, closed, wants_write) = {
                let mut state = tls.state.borrow_mut();
                let progress = state.absorb(input);
                let closed = state.peer_closed();
                (progress, closed, state.conn.wants_write())
            };
            if wants_write {
                self.flush_tls().await?;
            }
            progress.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if input.len() > before {
                return Ok(input.len() - before);
            }
            if closed {
                return Ok(0);
            }
            let mut cipher = std::mem::take(&mut tls.state.borrow_mut().cipher);
            let read = reader.read_raw(&self.tcp, &mut cipher).await;
            tls.state.borrow_mut().cipher = cipher;
            if read? == 0 {
                return Ok(0);
            }
        }
    }

    /// Writes `parts` whole: one vectored write on TCP; on TLS one encryption into the
    /// connection's output buffer, then one write.
    pub async fn write_vectored_all(&self, parts: Vec<Bytes>) -> BufResult<(), Vec<Bytes>> {
        match &self.tls {
            None => {
                let mut tcp = &self.tcp;
                tcp.write_vectored_all(parts).await
            }
            // Boxed (one allocation per TLS write, next to the encryption): the TLS path's
            // state would otherwise enlarge every watcher's task, plain ones included.
            Some(tls) => Box::pin(self.write_tls(tls, parts)).await,
        }
    }

    async fn write_tls(&self, tls: &Tls, parts: Vec<Bytes>) -> BufResult<(), Vec<Bytes>> {
        let mut out_slot = tls.out.lock().await;
        let mut out = std::mem::take(&mut *out_slot);
        let total: usize = parts.iter().map(Bytes::len).sum();
        let mut cursor = Cursor::default();
        let mut result = Ok(());
        // At most MAX_SEALED plaintext bytes per write: a watcher behind by a whole batch holds
        // one chunk of ciphertext in flight, not the batch (the frames themselves stay shared).
        while cursor.sent < total {
            out.clear();
            let chunk = (total - cursor.sent).min(MAX_SEALED);
            out.reserve(chunk + chunk.div_ceil(RECORD_PLAINTEXT).max(1) * RECORD_OVERHEAD);
            let sealed = tls
                .state
                .borrow_mut()
                .seal(&parts, &mut cursor, chunk, &mut out);
            result = match sealed {
                Ok(()) => self.send(&mut out).await,
                Err(e) => Err(e),
            };
            if result.is_err() {
                break;
            }
        }
        out.clear();
        if out.capacity() > KEEP_OUTPUT {
            out = Vec::new();
        }
        *out_slot = out;
        BufResult(result, parts)
    }

    /// Writes `bytes` whole (a convenience over [`Transport::write_vectored_all`]).
    pub async fn write_all(&self, bytes: impl Into<Bytes>) -> io::Result<()> {
        let BufResult(result, _) = self.write_vectored_all(vec![bytes.into()]).await;
        result
    }

    /// Sends a TLS close_notify (if TLS) and shuts down the sending half: the peer reads what
    /// was written, then a clean end of stream.
    pub async fn close_write(&self) {
        if let Some(tls) = &self.tls {
            tls.state.borrow_mut().conn.send_close_notify();
            let _ = self.flush_tls().await;
        }
        runtime::shutdown_write(&self.tcp);
    }

    /// Shuts the socket down both ways: pending reads and writes complete at once. This is how
    /// the guard's deadlines end a connection, TLS or not.
    pub fn shutdown(&self) {
        runtime::shutdown(&self.tcp);
    }

    /// Writes whatever records rustls has queued (handshake, alerts, post-handshake messages).
    async fn flush_tls(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if !tls.state.borrow().conn.wants_write() {
            return Ok(());
        }
        let mut out_slot = tls.out.lock().await;
        let mut out = std::mem::take(&mut *out_slot);
        out.clear();
        tls.state.borrow_mut().drain_records(&mut out)?;
        let result = self.send(&mut out).await;
        *out_slot = out;
        result
    }

    async fn send(&self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let mut tcp = &self.tcp;
        let BufResult(result, returned) = tcp.write_all(std::mem::take(out)).await;
        *out = returned;
        result
    }
}

impl std::os::fd::AsFd for Transport {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

impl TlsState {
    /// Hands buffered ciphertext to rustls and moves the plaintext it yields onto `input`.
    fn absorb(&mut self, input: &mut BytesMut) -> Result<(), rustls::Error> {
        loop {
            let plain = self.conn.process_new_packets()?.plaintext_bytes_to_read();
            if plain > 0 {
                let start = input.len();
                input.resize(start + plain, 0);
                let n = self.conn.reader().read(&mut input[start..]).unwrap_or(0);
                input.truncate(start + n);
            }
            if self.cipher.is_empty() {
                return Ok(());
            }
            let mut src = &self.cipher[..];
            match self.conn.read_tls(&mut src) {
                Ok(0) => return Ok(()),
                Ok(n) => self.cipher.advance(n),
                // rustls's buffers are full until the plaintext above is read: loop.
                Err(_) if plain > 0 => {}
                Err(_) => return Err(rustls::Error::General("TLS input buffer full".into())),
            }
        }
    }

    fn peer_closed(&mut self) -> bool {
        self.conn
            .process_new_packets()
            .map(|s| s.peer_has_closed())
            .unwrap_or(true)
    }

    /// Encrypts `parts` (one vectored plaintext write, full-size records) into `out`.
    /// Encrypts the next `limit` plaintext bytes of `parts` from `at` (one vectored plaintext
    /// write: full-size records straight from the shared frames) into `out`.
    fn seal(
        &mut self,
        parts: &[Bytes],
        at: &mut Cursor,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut done = 0;
        while done < limit {
            let mut room = limit - done;
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() - at.index);
            for (i, part) in parts[at.index..].iter().enumerate() {
                if room == 0 {
                    break;
                }
                let from = if i == 0 { at.offset } else { 0 };
                let take = (part.len() - from).min(room);
                slices.push(IoSlice::new(&part[from..from + take]));
                room -= take;
            }
            let n = self.conn.writer().write_vectored(&slices)?;
            self.drain_records(out)?;
            if n == 0 {
                return Err(io::Error::other("TLS session refused more plaintext"));
            }
            done += n;
            at.sent += n;
            let mut left = n;
            while left > 0 {
                let rest = parts[at.index].len() - at.offset;
                if left >= rest {
                    left -= rest;
                    at.index += 1;
                    at.offset = 0;
                } else {
                    at.offset += left;
                    left = 0;
                }
            }
            // Skip empty parts so the next slice list starts on bytes.
            while at.index < parts.len() && parts[at.index].len() == at.offset {
                at.index += 1;
                at.offset = 0;
            }
        }
        Ok(())
    }

    fn drain_records(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write as _;

    use super::*;
    use crate::server::net::{CertStore, ClientTls};
    use crate::server::runtime::{Runtime, TcpListener, spawn};

    /// A CA-less self-signed certificate for 127.0.0.1, written to `dir`.
    fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::File::create(&cert_path)
            .unwrap()
            .write_all(cert.pem().as_bytes())
            .unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn tls_carries_a_large_gathered_write_whole_and_in_order_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(dir.path());
        let store = CertStore::load(&cert, &key).unwrap();
        let server_config = store.server_config().unwrap();
        // Many parts of odd sizes, 300 KB in all: several sealed chunks and records.
        let parts: Vec<Bytes> = (0..600u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + (i as usize * 7) % 1000]))
            .collect();
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let rt = Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let conn = Transport::tls_server(tcp, server_config).unwrap();
                let mut early = BytesMut::new();
                conn.handshake(&mut early).await.unwrap();
                let BufResult(result, _) = conn.write_vectored_all(parts).await;
                result.unwrap();
                // Then read the client's reply.
                let (mut reader, mut input) = (Reader::default(), early);
                while input.len() < 5 {
                    assert!(reader.read_into(&conn, &mut input).await.unwrap() > 0);
                }
                assert_eq!(&input[..], b"thank");
                conn.close_write().await;
            });
            let tls = ClientTls::from_ca_file(&cert).unwrap();
            let timeout = std::time::Duration::from_secs(10);
            let conn = super::super::connect("127.0.0.1", port, Some(&tls), timeout)
                .await
                .unwrap();
            let (mut reader, mut input) = (Reader::default(), BytesMut::new());
            while input.len() < expected.len() {
                let n = reader.read_into(&conn, &mut input).await.unwrap();
                assert!(
                    n > 0,
                    "closed after {} of {} bytes",
                    input.len(),
                    expected.len()
                );
            }
            assert!(
                input[..] == expected[..],
                "the bytes arrived changed or reordered"
            );
            conn.write_all(&b"thank"[..]).await.unwrap();
            // The server's close_notify reads as a clean end of stream.
            input.clear();
            assert_eq!(reader.read_into(&conn, &mut input).await.unwrap(), 0);
            server.await.unwrap();
        });
    }
}
