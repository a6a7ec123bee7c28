//! RTMPS for the load generator: `rtmp://` / `rtmps://` URLs, the client TLS settings (a CA
//! file to trust, or no verification on loopback), and a non-blocking TLS socket for the
//! watchers' epoll loop and a blocking one for the publisher.
//!
//! The certificate settings come from ringcast's own network layer ([`ClientTls`]), so the
//! load generator checks certificates the way the server's outbound connections do.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ringcast::server::net::ClientTls;
use rustls::ClientConnection;
use rustls::pki_types::ServerName;

/// `--url`, `--tls-ca`, `--tls-insecure`.
#[derive(Args, Debug, Clone, Default)]
pub struct UrlArgs {
    /// `rtmp://IP:PORT/APP/KEY` or `rtmps://IP:PORT/APP/KEY` (replaces --target and --stream;
    /// rtmps turns TLS on; default ports 1935 and 1936).
    #[arg(long)]
    pub url: Option<String>,
    /// rtmps: trust this CA (PEM) in addition to the webpki roots.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// rtmps: skip certificate verification (loopback targets only).
    #[arg(long)]
    pub tls_insecure: bool,
}

/// A parsed `rtmp(s)://` URL.
#[derive(Debug, Clone)]
pub struct RtmpUrl {
    pub tls: bool,
    pub target: SocketAddr,
    /// `app/key`.
    pub stream: String,
}

/// Parses `rtmp://IP[:PORT]/APP/KEY` or `rtmps://...`.
pub fn parse_url(url: &str) -> Result<RtmpUrl, String> {
    let (tls, rest, default_port) = if let Some(rest) = url.strip_prefix("rtmps://") {
        (true, rest, 1936)
    } else if let Some(rest) = url.strip_prefix("rtmp://") {
        (false, rest, 1935)
    } else {
        return Err(format!("{url}: expected rtmp:// or rtmps://"));
    };
    let (authority, stream) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url}: no /APP/KEY"))?;
    if !stream.contains('/') {
        return Err(format!("{url}: expected /APP/KEY after the address"));
    }
    let target = match authority.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let ip: IpAddr = authority
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("{url}: the host must be an IP address"))?;
            SocketAddr::new(ip, default_port)
        }
    };
    Ok(RtmpUrl {
        tls,
        target,
        stream: stream.to_owned(),
    })
}

/// The client config for `args` (or `None` without TLS).
pub fn client_config(
    args: &UrlArgs,
    tls: bool,
    target: SocketAddr,
) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if !tls {
        return Ok(None);
    }
    let settings = if args.tls_insecure {
        if !target.ip().is_loopback() {
            return Err("--tls-insecure is for loopback targets only".into());
        }
        ClientTls::insecure_no_verify().map_err(|e| e.to_string())?
    } else {
        ClientTls::roots_and_ca(args.tls_ca.as_deref()).map_err(|e| e.to_string())?
    };
    Ok(Some(settings.config))
}

/// Starts a client session to `target` (the IP is the verified name).
pub fn session(
    config: &Arc<rustls::ClientConfig>,
    target: SocketAddr,
) -> io::Result<ClientConnection> {
    let name = ServerName::IpAddress(target.ip().into());
    ClientConnection::new(config.clone(), name).map_err(io::Error::other)
}

/// A non-blocking socket, plain or TLS, read and written like the socket itself.
pub struct Sock<S> {
    pub tcp: S,
    pub tls: Option<Box<ClientConnection>>,
}

/// Writes what `tls` has queued (handshake, records) until the socket would block.
fn flush_conn<S: Write>(tls: &mut ClientConnection, tcp: &mut S) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<S: Read + Write> Read for Sock<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            flush_conn(tls, &mut self.tcp)?;
        }
    }
}

impl<S: Read + Write> Write for Sock<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.tcp.write(buf);
        };
        // Drain first: a full record buffer would refuse the plaintext.
        flush_conn(tls, &mut self.tcp)?;
        let n = tls.writer().write(buf)?;
        flush_conn(tls, &mut self.tcp)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes what TLS has queued until the socket would block (plain: nothing to do).
    fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_conn(tls, &mut self.tcp),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_name_tls_address_and_stream() {
        let u = parse_url("rtmps://127.0.0.1:4443/live/key").unwrap();
        assert!(u.tls);
        assert_eq!(u.target.port(), 4443);
        assert_eq!(u.stream, "live/key");
        let u = parse_url("rtmp://127.0.0.1/app/k").unwrap();
        assert!(!u.tls);
        assert_eq!(u.target.port(), 1935);
        assert_eq!(
            parse_url("rtmps://127.0.0.1/app/k").unwrap().target.port(),
            1936
        );
        assert!(parse_url("http://127.0.0.1/a/b").is_err());
        assert!(parse_url("rtmp://example.com/a/b").is_err());
    }
}
