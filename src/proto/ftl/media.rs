//! One FTL stream's media: RTP datagrams in (routed by the SSRC and payload type announced in the
//! handshake), [`Frame`]s and datagrams to send back (ping echoes, NACKs) out.
//!
//! Video goes through a reorder window with NACKs, the H.264 depacketiser and the AVC framer;
//! audio through a reorder window without NACKs (a lost 20 ms Opus packet is cheaper than holding
//! audio back) and the Opus → E-RTMP mapping. Audio is dropped until the first video packet (the
//! client's speed-test blast), unless the stream has no video. Datagrams that fail are dropped and
//! counted; the error is returned for logging and is never fatal.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::media::Frame;
use crate::proto::rtp::avc_frames::{AvcFramer, AvcFramerStats};
use crate::proto::rtp::clock::{StreamClock, TrackClock};
use crate::proto::rtp::h264::{DepacketizerLimits, DepacketizerStats, H264Depacketizer};
use crate::proto::rtp::{
    FtlDatagram, Ready, ReorderBuffer, ReorderConfig, ReorderStats, RtpError, RtpPacket,
    classify_datagram, opus,
};

use super::attributes::{StreamAttributes, TrackInfo};

/// Media handling options for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaConfig {
    /// Request retransmission of lost video packets.
    pub nack: bool,
    /// The video reorder window (its `nack` field is overridden by `nack` above).
    pub reorder: ReorderConfig,
    /// SSRC the server puts in its NACKs as the packet sender.
    pub local_ssrc: u32,
    pub limits: DepacketizerLimits,
    /// Datagrams queued for `poll_transmit`, at most; more are dropped and counted.
    pub max_pending_transmit: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            nack: true,
            reorder: ReorderConfig::default(),
            local_ssrc: 0,
            limits: DepacketizerLimits::default(),
            max_pending_transmit: 1024,
        }
    }
}

/// Counters, snapshotted by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub datagrams: u64,
    pub malformed: u64,
    pub unknown_ssrc: u64,
    pub payload_type_mismatch: u64,
    /// Audio dropped before the first video packet.
    pub audio_before_video: u64,
    pub pings: u64,
    pub sender_reports: u64,
    pub empty: u64,
    pub transmit_dropped: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub video: ReorderStats,
    pub audio: ReorderStats,
    pub depacketizer: DepacketizerStats,
    pub framer: AvcFramerStats,
}

#[derive(Debug)]
struct VideoTrack {
    info: TrackInfo,
    reorder: ReorderBuffer<RtpPacket>,
    depacketizer: H264Depacketizer,
    framer: AvcFramer,
    clock: TrackClock,
}

#[derive(Debug)]
struct AudioTrack {
    info: TrackInfo,
    reorder: ReorderBuffer<RtpPacket>,
    clock: TrackClock,
    header_sent: bool,
}

/// RTP → frames for one FTL stream.
#[derive(Debug)]
pub struct MediaSession {
    config: MediaConfig,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    clock: StreamClock,
    seen_video: bool,
    frames: VecDeque<Frame>,
    transmit: VecDeque<Bytes>,
    stats: MediaStats,
}

impl MediaSession {
    /// A session for the tracks announced in `attributes`.
    pub fn new(attributes: &StreamAttributes, config: MediaConfig) -> Self {
        let video = attributes.video.clone().map(|info| VideoTrack {
            reorder: ReorderBuffer::new(
                ReorderConfig {
                    nack: config.nack,
                    ..config.reorder
                },
                config.local_ssrc,
                info.ssrc,
            ),
            depacketizer: H264Depacketizer::new(config.limits),
            framer: AvcFramer::new(),
            clock: TrackClock::new(90_000),
            info,
        });
        let audio = attributes.audio.clone().map(|info| AudioTrack {
            reorder: ReorderBuffer::new(
                ReorderConfig {
                    nack: false,
                    ..config.reorder
                },
                config.local_ssrc,
                info.ssrc,
            ),
            clock: TrackClock::new(48_000),
            header_sent: false,
            info,
        });
        MediaSession {
            config,
            video,
            audio,
            clock: StreamClock::new(),
            seen_video: false,
            frames: VecDeque::new(),
            transmit: VecDeque::new(),
            stats: MediaStats::default(),
        }
    }

    /// Counters, with the per-track ones filled in.
    pub fn stats(&self) -> MediaStats {
        let mut stats = self.stats;
        if let Some(video) = &self.video {
            stats.video = video.reorder.stats();
            stats.depacketizer = video.depacketizer.stats();
            stats.framer = video.framer.stats();
        }
        if let Some(audio) = &self.audio {
            stats.audio = audio.reorder.stats();
        }
        stats
    }

    /// Handles one datagram received at `now` (from an accepted source; see `SourceFilter`).
    pub fn handle_datagram(&mut self, now: Instant, datagram: Bytes) -> Result<(), RtpError> {
        self.stats.datagrams += 1;
        let result = self.route(now, datagram);
        if let Err(err) = &result {
            match err {
                RtpError::UnknownSsrc { .. } => self.stats.unknown_ssrc += 1,
                RtpError::PayloadTypeMismatch { .. } => self.stats.payload_type_mismatch += 1,
                _ => self.stats.malformed += 1,
            }
        }
        self.drain(now);
        result
    }

    fn route(&mut self, now: Instant, datagram: Bytes) -> Result<(), RtpError> {
        let packet = match classify_datagram(datagram.clone())? {
            FtlDatagram::Ping => {
                self.stats.pings += 1;
                self.queue_transmit(datagram);
                return Ok(());
            }
            FtlDatagram::SenderReport(_) => {
                self.stats.sender_reports += 1;
                return Ok(());
            }
            FtlDatagram::Empty => {
                self.stats.empty += 1;
                return Ok(());
            }
            FtlDatagram::Media(packet) => packet,
        };
        let check_pt = |info: &TrackInfo, packet: &RtpPacket| {
            if packet.payload_type == info.payload_type {
                Ok(())
            } else {
                Err(RtpError::PayloadTypeMismatch {
                    ssrc: packet.ssrc,
                    payload_type: packet.payload_type,
                })
            }
        };
        if let Some(video) = self.video.as_mut().filter(|v| v.info.ssrc == packet.ssrc) {
            check_pt(&video.info, &packet)?;
            self.seen_video = true;
            video.reorder.push(now, packet.sequence, packet);
            return Ok(());
        }
        if let Some(audio) = self.audio.as_mut().filter(|a| a.info.ssrc == packet.ssrc) {
            check_pt(&audio.info, &packet)?;
            if self.video.is_some() && !self.seen_video {
                self.stats.audio_before_video += 1;
                return Ok(());
            }
            audio.reorder.push(now, packet.sequence, packet);
            return Ok(());
        }
        Err(RtpError::UnknownSsrc { ssrc: packet.ssrc })
    }

    fn queue_transmit(&mut self, datagram: Bytes) {
        if self.transmit.len() >= self.config.max_pending_transmit {
            self.stats.transmit_dropped += 1;
        } else {
            self.transmit.push_back(datagram);
        }
    }

    /// Moves everything the reorder windows release through depacketising and framing.
    fn drain(&mut self, now: Instant) {
        if let Some(video) = self.video.as_mut() {
            while let Some(ready) = video.reorder.pop_ready() {
                match ready {
                    Ready::Packet(packet) => {
                        // Refused packets are counted by the depacketiser.
                        let _ = video.depacketizer.push(&packet);
                    }
                    Ready::Lost { .. } => video.depacketizer.handle_loss(),
                }
                while let Some(au) = video.depacketizer.poll_access_unit() {
                    let ms = self.clock.timestamp_ms(&mut video.clock, now, au.timestamp);
                    let before = self.frames.len();
                    video
                        .framer
                        .push_access_unit(ms, &au.nals, &mut self.frames);
                    self.stats.video_frames += (self.frames.len() - before) as u64;
                }
            }
            if let Some(nack) = video.reorder.poll_nack(now) {
                if self.transmit.len() >= self.config.max_pending_transmit {
                    self.stats.transmit_dropped += 1;
                } else {
                    self.transmit.push_back(nack);
                }
            }
        }
        if let Some(audio) = self.audio.as_mut() {
            while let Some(ready) = audio.reorder.pop_ready() {
                let Ready::Packet(packet) = ready else {
                    continue;
                };
                if packet.payload.is_empty() {
                    continue;
                }
                let ms = self
                    .clock
                    .timestamp_ms(&mut audio.clock, now, packet.timestamp);
                if !audio.header_sent {
                    audio.header_sent = true;
                    self.frames.push_back(opus::sequence_start_frame(ms));
                }
                self.frames
                    .push_back(opus::coded_frame(ms, &packet.payload));
                self.stats.audio_frames += 1;
            }
        }
    }

    /// Advances virtual time: expired loss waits are given up, NACKs retried.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(video) = self.video.as_mut() {
            video.reorder.handle_timeout(now);
        }
        if let Some(audio) = self.audio.as_mut() {
            audio.reorder.handle_timeout(now);
        }
        self.drain(now);
    }

    /// When `handle_timeout` next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let video = self.video.as_ref().and_then(|v| v.reorder.poll_timeout());
        let audio = self.audio.as_ref().and_then(|a| a.reorder.poll_timeout());
        match (video, audio) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    /// The next frame for the fan-out engine.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// The next datagram to send to the latched source (ping echo or NACK).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }
}

#[cfg(fuzzing)]
/// Fuzz harness: length-prefixed datagrams into a session announcing video SSRC 78/PT 96 and
/// audio SSRC 77/PT 97, with virtual time advancing 5 ms per datagram.
pub fn fuzz_media(data: &[u8]) {
    use super::attributes::TrackCodec;
    let track = |codec, payload_type, ssrc| TrackInfo {
        codec,
        payload_type,
        ssrc,
        width: None,
        height: None,
    };
    let attributes = StreamAttributes {
        video: Some(track(TrackCodec::H264, 96, 78)),
        audio: Some(track(TrackCodec::Opus, 97, 77)),
        ..StreamAttributes::default()
    };
    let mut session = MediaSession::new(&attributes, MediaConfig::default());
    let mut now = Instant::now();
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        now += std::time::Duration::from_millis(5);
        let _ = session.handle_datagram(now, Bytes::copy_from_slice(datagram));
        while session.poll_frame().is_some() {}
        while session.poll_transmit().is_some() {}
        rest = next;
    }
    session.handle_timeout(now + std::time::Duration::from_secs(5));
    while session.poll_frame().is_some() {}
}
