//! Outbound connections: [`connect`] to a host and port over plain TCP or TLS.

use std::io;
use std::time::Duration;

use bytes::BytesMut;

use super::tls::ClientTls;
use super::transport::{HandshakeError, Transport};
use crate::server::runtime::{self, TcpStream};

/// Connects to `host:port` (a name or an IP literal; names resolve off the worker) and, with
/// `tls`, completes a TLS handshake sending `host` (or `tls.server_name`) as SNI and checking
/// the certificate against it. The whole of it must finish within `timeout`.
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> io::Result<Transport> {
    let name = tls.map(|t| t.name_for(host)).transpose()?;
    let attempt = async {
        let tcp = TcpStream::connect((host, port)).await?;
        runtime::tune_accepted(&tcp);
        let (Some(tls), Some(name)) = (tls, name) else {
            return Ok(Transport::plain(tcp));
        };
        let transport = Transport::tls_client(tcp, tls.config.clone(), name)?;
        let mut early = BytesMut::new();
        match transport.handshake(&mut early).await {
            Ok(()) => Ok(transport),
            Err(HandshakeError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    };
    match compio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {host}:{port} took longer than {timeout:?}"),
        )),
    }
}
