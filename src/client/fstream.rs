//! `ringcast fstream ADDR PAYLOAD`: the reference `fstream.py` client.
//!
//! Connects, sends the handshake frame for PAYLOAD, then pipes one way: for a `broadcast,...`
//! payload stdin to the socket, for anything else (a `watch,...`) the socket to stdout. The
//! server sends no reply to the handshake, so a refusal shows up as the connection closing: a
//! broadcaster sees its next write fail, a watcher sees end of stream with nothing received.
//! Either side's EOF ends the copy cleanly; a closed stdout (the player quit) is not an error.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};

use crate::proto::fstream::encode_request;

/// Bytes copied per read.
const COPY_SIZE: usize = 64 * 1024;

/// Why the client failed, printed by `main`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot encode the payload: {0}")]
    Payload(#[from] crate::proto::fstream::HandshakeError),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("the server closed the connection (refused, or the broadcast was replaced): {0}")]
    Closed(io::Error),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// What the client does after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// stdin → server.
    Broadcast,
    /// server → stdout.
    Watch,
}

impl Direction {
    /// `broadcast` as the payload's action means sending; everything else receives.
    pub fn of(payload: &str) -> Direction {
        if payload.split(',').next() == Some("broadcast") {
            Direction::Broadcast
        } else {
            Direction::Watch
        }
    }
}

/// Runs the client over the process's stdin/stdout. Returns the bytes copied.
pub fn run(addr: &str, payload: &str) -> Result<u64, ClientError> {
    let handshake = encode_request(payload)?;
    let connect_error = |source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let targets: Vec<_> = addr.to_socket_addrs().map_err(connect_error)?.collect();
    let mut socket = TcpStream::connect(&targets[..]).map_err(connect_error)?;
    let _ = socket.set_nodelay(true);
    socket
        .write_all(&handshake)
        .map_err(|source| ClientError::Io {
            what: "sending the handshake",
            source,
        })?;
    match Direction::of(payload) {
        Direction::Broadcast => {
            let copied = copy_to_socket(&mut io::stdin().lock(), &mut socket)?;
            let _ = socket.shutdown(Shutdown::Write);
            Ok(copied)
        }
        Direction::Watch => copy_from_socket(&mut socket, &mut io::stdout().lock()),
    }
}

/// Copies `input` to the socket until `input` ends.
pub fn copy_to_socket(input: &mut impl Read, socket: &mut TcpStream) -> Result<u64, ClientError> {
    let mut buf = vec![0u8; COPY_SIZE];
    let mut copied = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ClientError::Io {
                    what: "reading stdin",
                    source,
                });
            }
        };
        socket.write_all(&buf[..n]).map_err(ClientError::Closed)?;
        copied += n as u64;
    }
}

/// Copies the socket to `output` until the server closes or `output` does.
pub fn copy_from_socket(
    socket: &mut TcpStream,
    output: &mut impl Write,
) -> Result<u64, ClientError> {
    let mut buf = vec![0u8; COPY_SIZE];
    let mut copied = 0u64;
    loop {
        let n = match socket.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(copied),
            Err(source) => {
                return Err(ClientError::Io {
                    what: "reading from the server",
                    source,
                });
            }
        };
        match output.write_all(&buf[..n]).and_then(|()| output.flush()) {
            Ok(()) => copied += n as u64,
            // The player went away: the watch is over, not failed.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(copied),
            Err(source) => {
                return Err(ClientError::Io {
                    what: "writing stdout",
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broadcast_action_sends() {
        assert_eq!(
            Direction::of("broadcast,user=fier,user-password=1"),
            Direction::Broadcast
        );
        assert_eq!(Direction::of("watch,user=fier"), Direction::Watch);
        assert_eq!(Direction::of("broadcasting,user=fier"), Direction::Watch);
    }
}
