//! The network layer every driver stands on: one connection type for plain TCP and TLS, TLS
//! settings, and outbound connects.
//!
//! - [`Transport`] (`transport.rs`): an accepted or connected socket, plain or TLS. Drivers
//!   read with [`crate::server::reader::Reader::read_into`] (adaptive read sizes, plaintext out),
//!   write with [`Transport::write_vectored_all`] (one encryption per write on TLS), and end it
//!   with [`Transport::shutdown`] (what the deadline sweeper calls) or
//!   [`Transport::close_write`]. [`Transport::handshake`] completes TLS (the accept path runs it
//!   after the PROXY header, under the handshake deadline).
//! - [`tls`]: [`CertStore`] (the server certificate, reloadable on SIGHUP) and [`ClientTls`]
//!   (webpki roots, a CA file, or no verification for loopback tests).
//! - [`connect()`] (`connect.rs`): the stable outbound API:
//!
//! ```ignore
//! let tls = ClientTls::webpki_roots()?;                    // or ClientTls::from_ca_file(path)?
//! let conn = connect("live.example.com", 443, Some(&tls), Duration::from_secs(10)).await?;
//! conn.write_all(bytes).await?;                            // or write_vectored_all(Vec<Bytes>)
//! let mut reader = Reader::default();
//! let n = reader.read_into(&conn, &mut input).await?;      // appends plaintext to a BytesMut
//! ```

mod connect;
pub mod tls;
mod transport;

pub use connect::connect;
pub use tls::{CertStore, ClientTls, TlsLoadError};
pub use transport::{HandshakeError, Transport};
