//! The AAC rendition of an Opus audio track: Opus packets in, FLV AAC-LC messages out.
//!
//! Players that cannot take Opus (Debian's ffmpeg 5.1, GStreamer 1.22, VLC 3, flv.js, every
//! restream platform) get AAC made from the stream's Opus: decoded by libopus 1.3.1 as Rust
//! (`unsafe-libopus`, a c2rust translation: no C toolchain) and encoded by the Fraunhofer FDK AAC
//! encoder (`fdk-aac`, behind the `aac` Cargo feature). One [`AacRendition`] runs per stream, on the publisher's core, while any
//! watcher asks for AAC; its frames are shared by every such watcher like any other frame.
//!
//! Timing follows the Opus timeline: the decoded PCM (48 kHz) is cut into 1024-sample AAC
//! frames, and AAC frame *n* after a time base is stamped `base + n × 1024 / 48` ms. A jump in
//! the Opus timestamps (a publisher's input looping, a gap) starts a new base. Packets that are
//! not Opus audio (the Ogg `OpusHead`/`OpusTags` pages the reference FTL client sends when it
//! loops its input, garbage) are skipped and counted, never fatal. No IO here.

use bytes::{BufMut, Bytes, BytesMut};

/// True when this build carries the AAC encoder (the `aac` Cargo feature).
pub const AVAILABLE: bool = cfg!(feature = "aac");

/// The rendition's sample rate: Opus decodes at 48 kHz, and so the AAC is 48 kHz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one AAC-LC frame.
pub const AAC_FRAME_SAMPLES: usize = 1024;
/// The most samples per channel one Opus packet decodes to (120 ms at 48 kHz).
const MAX_OPUS_SAMPLES: usize = 5760;
/// A jump between the Opus timestamps and the samples decoded larger than this starts a new
/// time base.
const RESYNC_MS: i64 = 200;
/// FLV audio tag header for AAC: SoundFormat 10, and the 44 kHz/16-bit/stereo bits the FLV
/// spec requires for AAC (the AudioSpecificConfig carries the real rate and channels).
const FLV_AAC: u8 = 0xaf;

/// Why the rendition could not start.
#[derive(Debug, thiserror::Error)]
pub enum AacError {
    #[error("this build has no AAC encoder (built without the `aac` feature)")]
    Unavailable,
    #[error("Opus decoder: {0}")]
    Decoder(String),
    #[error("AAC encoder: {0}")]
    Encoder(String),
}

/// Why one Opus packet produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An Ogg `OpusHead` or `OpusTags` page sent as an audio packet.
    OggHeader,
    /// The packet does not decode as Opus.
    Undecodable,
}

/// Counters of one rendition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AacStats {
    /// Opus packets decoded.
    pub opus_packets: u64,
    /// AAC frames produced.
    pub aac_frames: u64,
    /// Packets skipped (Ogg headers, undecodable).
    pub skipped: u64,
    /// New time bases started (timestamp jumps).
    pub resyncs: u64,
}

/// The channel count an Opus stream carries: the `OpusHead` of an E-RTMP `SequenceStart` when
/// known, else the stereo flag of a packet's TOC byte. Always 1 or 2 (the rendition downmixes
/// anything wider to stereo).
pub fn channels_of(opus_head: Option<&[u8]>, packet: &[u8]) -> u8 {
    if let Some(head) = opus_head
        && head.starts_with(b"OpusHead")
        && let Some(&channels) = head.get(9)
        && channels > 0
    {
        return channels.min(2);
    }
    match packet.first() {
        Some(toc) if toc & 0x04 != 0 => 2,
        _ => 1,
    }
}

/// One stream's Opus → AAC-LC transcoder.
pub struct AacRendition {
    decoder: OpusDecoder,
    encoder: encoder::Encoder,
    channels: usize,
    /// Decoded PCM not yet encoded, interleaved.
    pcm: Vec<i16>,
    /// Scratch for one decoded packet.
    decoded: Vec<i16>,
    /// Scratch for one encoded AAC frame.
    out: Vec<u8>,
    /// The timestamp (ms) the current time base starts at.
    base: Option<u32>,
    /// Samples per channel decoded since `base`.
    samples_in: u64,
    /// AAC frames emitted since `base`.
    frames_out: u64,
    stats: AacStats,
    sequence_header: Bytes,
}

impl std::fmt::Debug for AacRendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacRendition")
            .field("channels", &self.channels)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AacRendition {
    /// A rendition of `channels` (1 or 2) at `bitrate_kbps`.
    pub fn new(channels: u8, bitrate_kbps: u32) -> Result<Self, AacError> {
        let channels = usize::from(channels.clamp(1, 2));
        let decoder = OpusDecoder::new(channels)
            .map_err(|code| AacError::Decoder(format!("libopus error {code}")))?;
        let encoder = encoder::Encoder::new(channels, bitrate_kbps.saturating_mul(1000))?;
        let mut header = BytesMut::with_capacity(2 + encoder.config().len());
        header.put_u8(FLV_AAC);
        header.put_u8(0); // AACPacketType: sequence header
        header.put_slice(encoder.config());
        Ok(AacRendition {
            decoder,
            encoder,
            channels,
            pcm: Vec::with_capacity(2 * (MAX_OPUS_SAMPLES + AAC_FRAME_SAMPLES) * channels),
            decoded: vec![0; MAX_OPUS_SAMPLES * channels],
            out: vec![0; 8192],
            base: None,
            samples_in: 0,
            frames_out: 0,
            stats: AacStats::default(),
            sequence_header: header.freeze(),
        })
    }

    /// The FLV/RTMP AAC sequence header message body (`0xAF 0x00` + AudioSpecificConfig).
    pub fn sequence_header(&self) -> &Bytes {
        &self.sequence_header
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn stats(&self) -> AacStats {
        self.stats
    }

    /// Decodes one raw Opus packet stamped `timestamp` (ms) and hands every AAC frame it
    /// completes to `emit` as `(timestamp, FLV AAC message body)`.
    pub fn push_opus(
        &mut self,
        timestamp: u32,
        packet: &[u8],
        mut emit: impl FnMut(u32, Bytes),
    ) -> Result<(), Skip> {
        if packet.starts_with(b"OpusHead") || packet.starts_with(b"OpusTags") {
            self.stats.skipped += 1;
            return Err(Skip::OggHeader);
        }
        if packet.is_empty() {
            self.stats.skipped += 1;
            return Err(Skip::Undecodable);
        }
        let decoded = &mut self.decoded;
        let decoder = &mut self.decoder;
        // libopus rejects what it cannot parse with an error code; the unwind guard is for the
        // translation itself: a panic skips the packet and starts a fresh decoder.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode(packet, decoded)
        }));
        let samples = match result {
            Ok(Ok(n)) if n > 0 && n <= MAX_OPUS_SAMPLES => n,
            Ok(_) => {
                self.stats.skipped += 1;
                return Err(Skip::Undecodable);
            }
            Err(_) => {
                if let Ok(fresh) = OpusDecoder::new(self.channels) {
                    self.decoder = fresh;
                }
                self.stats.skipped += 1;
                return Err(Skip::Undecodable);
            }
        };
        self.stats.opus_packets += 1;
        self.rebase_if_jumped(timestamp);
        let base = self.base.get_or_insert(timestamp);
        let base = *base;
        self.pcm
            .extend_from_slice(&self.decoded[..samples * self.channels]);
        self.samples_in += samples as u64;
        let frame_len = AAC_FRAME_SAMPLES * self.channels;
        let mut consumed = 0;
        while self.pcm.len() - consumed >= frame_len {
            let input = &self.pcm[consumed..consumed + frame_len];
            consumed += frame_len;
            let Ok(size) = self.encoder.encode(input, &mut self.out) else {
                continue;
            };
            if size == 0 {
                continue; // the encoder's priming delay
            }
            let offset_ms = self.frames_out * AAC_FRAME_SAMPLES as u64 * 1000 / 48_000;
            self.frames_out += 1;
            self.stats.aac_frames += 1;
            let mut body = BytesMut::with_capacity(2 + size);
            body.put_u8(FLV_AAC);
            body.put_u8(1); // AACPacketType: raw
            body.put_slice(&self.out[..size]);
            emit(base.wrapping_add(offset_ms as u32), body.freeze());
        }
        self.pcm.drain(..consumed);
        Ok(())
    }

    /// Starts a new time base when `timestamp` is far from where the decoded samples say the
    /// timeline is (the publisher's clock jumped); the samples still buffered are dropped.
    fn rebase_if_jumped(&mut self, timestamp: u32) {
        let Some(base) = self.base else {
            return;
        };
        let expected = base.wrapping_add((self.samples_in * 1000 / 48_000) as u32);
        let drift = i64::from(timestamp.wrapping_sub(expected) as i32);
        if drift.abs() > RESYNC_MS {
            self.base = Some(timestamp);
            self.samples_in = 0;
            self.frames_out = 0;
            self.pcm.clear();
            self.stats.resyncs += 1;
        }
    }
}

/// libopus's decoder at 48 kHz, as a safe handle (`unsafe-libopus`: libopus 1.3.1 translated to
/// Rust). Decodes to interleaved 16-bit PCM.
pub struct OpusDecoder {
    state: *mut unsafe_libopus::OpusDecoder,
    channels: usize,
}

impl OpusDecoder {
    /// A decoder of `channels` (1 or 2) at 48 kHz; `Err` carries libopus's error code.
    pub fn new(channels: usize) -> Result<Self, i32> {
        let channels_c = i32::try_from(channels).map_err(|_| -1)?;
        let mut error = 0;
        // SAFETY: plain constructor; libopus checks its arguments and reports through `error`.
        // The state it returns is owned by this handle and freed once, in `Drop`.
        let state = unsafe { unsafe_libopus::opus_decoder_create(48_000, channels_c, &mut error) };
        if state.is_null() || error != 0 {
            return Err(error);
        }
        Ok(OpusDecoder { state, channels })
    }

    /// Decodes one packet into `pcm` (interleaved); returns samples per channel.
    pub fn decode(&mut self, packet: &[u8], pcm: &mut [i16]) -> Result<usize, i32> {
        if packet.is_empty() {
            return Err(-1); // an empty packet asks libopus for loss concealment
        }
        let len = i32::try_from(packet.len()).map_err(|_| -1)?;
        let frame_size = i32::try_from(pcm.len() / self.channels.max(1)).map_err(|_| -1)?;
        // SAFETY: `state` is a live decoder made by `opus_decoder_create` with `channels`
        // channels; `packet` is `len` readable bytes; `pcm` has room for `frame_size` samples of
        // every channel, which is the most libopus writes.
        let n = unsafe {
            unsafe_libopus::opus_decode(
                self.state,
                packet.as_ptr(),
                len,
                pcm.as_mut_ptr(),
                frame_size,
                0,
            )
        };
        usize::try_from(n).map_err(|_| n)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: made by `opus_decoder_create`, freed exactly once.
        unsafe { unsafe_libopus::opus_decoder_destroy(self.state) }
    }
}

#[cfg(feature = "aac")]
mod encoder {
    //! The FDK AAC-LC encoder, raw access units (no ADTS).
    use fdk_aac::enc;

    use super::AacError;

    pub struct Encoder {
        inner: enc::Encoder,
        config: Vec<u8>,
    }

    impl Encoder {
        pub fn new(channels: usize, bitrate: u32) -> Result<Self, AacError> {
            let inner = enc::Encoder::new(enc::EncoderParams {
                bit_rate: enc::BitRate::Cbr(bitrate),
                sample_rate: super::SAMPLE_RATE,
                transport: enc::Transport::Raw,
                channels: if channels == 1 {
                    enc::ChannelMode::Mono
                } else {
                    enc::ChannelMode::Stereo
                },
                audio_object_type: enc::AudioObjectType::Mpeg4LowComplexity,
            })
            .map_err(|e| AacError::Encoder(e.to_string()))?;
            let info = inner.info().map_err(|e| AacError::Encoder(e.to_string()))?;
            let len = (info.confSize as usize).min(info.confBuf.len());
            let config = info.confBuf[..len].to_vec();
            Ok(Encoder { inner, config })
        }

        /// The AudioSpecificConfig.
        pub fn config(&self) -> &[u8] {
            &self.config
        }

        /// Encodes one frame of interleaved PCM; returns the access unit's size (0 while the
        /// encoder primes).
        pub fn encode(&self, pcm: &[i16], out: &mut [u8]) -> Result<usize, ()> {
            self.inner
                .encode(pcm, out)
                .map(|info| info.output_size)
                .map_err(|_| ())
        }
    }
}

#[cfg(not(feature = "aac"))]
mod encoder {
    //! No AAC encoder in this build: the rendition cannot start.
    use super::AacError;

    pub struct Encoder;

    impl Encoder {
        pub fn new(_channels: usize, _bitrate: u32) -> Result<Self, AacError> {
            Err(AacError::Unavailable)
        }

        pub fn config(&self) -> &[u8] {
            &[]
        }

        pub fn encode(&self, _pcm: &[i16], _out: &mut [u8]) -> Result<usize, ()> {
            Err(())
        }
    }
}

#[cfg(all(test, feature = "aac"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A 20 ms CELT-only stereo packet of digital silence (TOC config 31, stereo, one frame).
    const SILENCE: &[u8] = &[0xfc, 0xff, 0xfe];

    #[test]
    fn ogg_headers_and_garbage_are_skipped_and_the_rendition_continues() {
        let mut r = AacRendition::new(2, 128).unwrap();
        assert_eq!(r.sequence_header()[..2], [0xaf, 0]);
        // AudioSpecificConfig: AAC-LC (2), 48 kHz (index 3), 2 channels.
        assert_eq!(r.sequence_header()[2..4], [0x11, 0x90]);
        let mut frames = Vec::new();
        for i in 0..100u32 {
            r.push_opus(i * 20, SILENCE, |ts, b| frames.push((ts, b)))
                .unwrap();
            if i == 50 {
                let head = b"OpusHead\x01\x02\x38\x01\x80\xbb\0\0\0\0\0";
                assert_eq!(r.push_opus(i * 20, head, |_, _| {}), Err(Skip::OggHeader));
                assert_eq!(
                    r.push_opus(i * 20, b"OpusTags....", |_, _| {}),
                    Err(Skip::OggHeader)
                );
            }
        }
        assert_eq!(r.stats().skipped, 2);
        // 2 s of audio: about 93 AAC frames, less the encoder's priming.
        assert!(frames.len() >= 85, "{} frames", frames.len());
        assert!(
            frames.windows(2).all(|w| w[1].0 >= w[0].0),
            "monotonic timestamps"
        );
        assert!(frames.iter().all(|(_, b)| b[..2] == [0xaf, 1]));
    }

    #[test]
    fn garbage_packets_are_skipped_or_decoded_without_stalling() {
        let mut r = AacRendition::new(2, 128).unwrap();
        for junk in [
            &[0xff; 7][..],
            &[0xff],
            &[0xfc],
            &[0x03, 0xff, 0xff, 0xff],
            &[0x0b; 40],
        ] {
            let _ = r.push_opus(0, junk, |_, _| {});
        }
        r.push_opus(20, SILENCE, |_, _| {}).unwrap();
    }

    #[test]
    fn a_timestamp_jump_starts_a_new_time_base() {
        let mut r = AacRendition::new(2, 128).unwrap();
        let mut last = 0;
        for i in 0..50u32 {
            r.push_opus(i * 20, SILENCE, |ts, _| last = ts).unwrap();
        }
        assert!(last < 1000);
        for i in 0..50u32 {
            r.push_opus(60_000 + i * 20, SILENCE, |ts, _| last = ts)
                .unwrap();
        }
        assert!(last >= 60_000, "{last}");
        assert_eq!(r.stats().resyncs, 1);
    }
}
