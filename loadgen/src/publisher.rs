//! The publisher: one blocking connection ([`Sink`]: RTMP or fstream) fed from a [`Source`]
//! (synthetic probed media or a real FLV file) in real time, until the duration ends, the file
//! plays out, or the connection fails.

use std::net::SocketAddr;
use std::time::Duration;

use crate::sink::{Route, Sink};
use crate::source::Source;
use crate::synth::monotonic_ns;

/// Where to publish.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub target: SocketAddr,
    pub route: Route,
    /// Zero means until killed (or until a file that does not loop ends).
    pub duration: Duration,
    /// RTMPS: the client TLS settings.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Publishes `source`; returns the number of frames sent.
pub fn run(cfg: &PublishConfig, mut source: Source) -> Result<u64, String> {
    let mut sink = Sink::connect(
        cfg.target,
        &cfg.route,
        source.has_audio(),
        source.has_video(),
        cfg.tls.as_ref(),
    )?;
    let start = monotonic_ns();
    let end = (!cfg.duration.is_zero()).then_some(cfg.duration.as_nanos() as u64);
    let mut sent = 0u64;
    loop {
        let elapsed = monotonic_ns() - start;
        if end.is_some_and(|end| elapsed >= end) {
            return Ok(sent);
        }
        while let Some(frame) = source.pop_due(elapsed, monotonic_ns()) {
            sink.send(&frame)?;
            sent += 1;
        }
        sink.flush()?;
        let Some(next) = source.next_due_ns() else {
            return Ok(sent);
        };
        let wake = end.map_or(next, |end| next.min(end));
        let now = monotonic_ns() - start;
        if wake > now {
            std::thread::sleep(Duration::from_nanos(wake - now));
        }
    }
}
