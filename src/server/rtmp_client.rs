//! An outbound RTMP client connection: [`connect`](crate::server::net::connect) (plain or TLS),
//! the sans-IO [`ClientSession`] through handshake and `connect`, then a read loop that hands
//! out the session's events one at a time, writing its replies (acknowledgements, pongs,
//! commands) as they are produced.
//!
//! One task drives it; to stop it from elsewhere, shut its [`Transport`] down (the pending read
//! then ends). Used by the cluster's pulls (play); written so a publishing client can use it
//! too (call [`ClientSession::publish`] and [`RtmpClient::send_frame`]).

use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::media::Frame;
use crate::proto::rtmp::{ClientConfig, ClientEvent, ClientSession};
use crate::server::net::{self, ClientTls, Transport};
use crate::server::reader::Reader;
use crate::server::runtime::BufResult;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    /// TLS (RTMPS) settings, or `None` for plain RTMP.
    pub tls: Option<&'a ClientTls>,
    /// The RTMP app to `connect` to.
    pub app: &'a str,
}

/// A connected RTMP client.
pub struct RtmpClient {
    transport: Rc<Transport>,
    session: ClientSession,
    reader: Reader,
    input: BytesMut,
    /// Bytes read from the peer so far.
    pub bytes_in: u64,
}

fn session_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("RTMP: {e}"))
}

impl RtmpClient {
    /// Opens the connection and starts the handshake and `connect` (they complete as
    /// [`RtmpClient::next_event`] reads). `timeout` bounds the TCP (and TLS) connect.
    pub async fn connect(
        target: &Target<'_>,
        config: ClientConfig,
        timeout: Duration,
    ) -> io::Result<RtmpClient> {
        let transport = net::connect(target.host, target.port, target.tls, timeout).await?;
        let mut random = [0u8; crate::proto::rtmp::handshake::RANDOM_SIZE];
        rand::fill(&mut random[..]);
        let mut session = ClientSession::new(config, random);
        let scheme = if target.tls.is_some() {
            "rtmps"
        } else {
            "rtmp"
        };
        let tc_url = format!("{scheme}://{}:{}/{}", target.host, target.port, target.app);
        session.connect(target.app, &tc_url);
        let mut client = RtmpClient {
            transport: Rc::new(transport),
            session,
            reader: Reader::default(),
            input: BytesMut::new(),
            bytes_in: 0,
        };
        client.flush().await?;
        Ok(client)
    }

    /// The connection, e.g. to shut it down from another task.
    pub fn transport(&self) -> &Rc<Transport> {
        &self.transport
    }

    /// The session, to play or publish once connected.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Queues a frame on the publishing stream (written by the next [`RtmpClient::flush`]).
    pub fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.session.send_frame(frame).map_err(session_error)
    }

    /// Writes everything the session has queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        let mut batch: Vec<Bytes> = Vec::new();
        while let Some(bytes) = self.session.poll_transmit() {
            batch.push(bytes);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let BufResult(result, _) = self.transport.write_vectored_all(batch).await;
        result
    }

    /// The next event, reading (and answering) as needed; `Ok(None)` once the peer closed.
    pub async fn next_event(&mut self) -> io::Result<Option<ClientEvent>> {
        loop {
            if let Some(event) = self.session.poll_event() {
                return Ok(Some(event));
            }
            self.flush().await?;
            let n = self
                .reader
                .read_into(&self.transport, &mut self.input)
                .await?;
            if n == 0 {
                return Ok(None);
            }
            self.bytes_in += n as u64;
            self.session
                .handle_input(&mut self.input)
                .map_err(session_error)?;
        }
    }
}
