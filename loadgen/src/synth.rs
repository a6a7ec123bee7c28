//! Synthetic media: legacy AVC and AAC FLV bodies at a chosen bitrate, frame rate and GOP, with
//! a probe (magic, sequence number, send time) embedded in every video frame.
//!
//! The same bodies feed the publisher (over RTMP or fstream, through [`crate::source`]) and the
//! kernel-ceiling server, so all deliver the same media. The probe sits inside the fake NAL unit,
//! so a player would see a (garbage) NAL of the declared size, and a watcher reads the probe from
//! the first [`PROBE_END`] bytes of a message without reassembling it. No IO here; the clock is read only by [`monotonic_ns`].

use bytes::{BufMut, Bytes, BytesMut};

/// Marks a loadgen video body: bytes 10..18 of every synthetic video frame.
pub const MAGIC: [u8; 8] = *b"RCASTLG1";
/// Offset of the magic inside a video body: FLV video tag header (1) + AVCPacketType (1) +
/// composition time (3) + NAL length (4) + NAL header (1).
pub const PROBE_OFFSET: usize = 10;
/// End of the probe: magic (8) + sequence (8) + send time in CLOCK_MONOTONIC ns (8).
pub const PROBE_END: usize = PROBE_OFFSET + 24;

/// Audio frames per second for AAC at 48 kHz with 1024 samples per frame.
pub const AAC_FPS: f64 = 48_000.0 / 1024.0;

/// Nanoseconds on CLOCK_MONOTONIC, shared by every process on the machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// What a watcher learns from one video body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub seq: u64,
    pub sent_ns: u64,
    pub keyframe: bool,
}

/// Reads the probe from the start of a video body; `None` for bodies that are not ours
/// (sequence headers, foreign streams) or too short.
pub fn read_probe(head: &[u8]) -> Option<Probe> {
    let probe = head.get(PROBE_OFFSET..PROBE_END)?;
    if probe[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(probe[8..16].try_into().ok()?);
    let sent_ns = u64::from_be_bytes(probe[16..24].try_into().ok()?);
    Some(Probe {
        seq,
        sent_ns,
        keyframe: head.first().is_some_and(|b| b >> 4 == 1),
    })
}

/// Media shape.
#[derive(Debug, Clone, Copy)]
pub struct MediaParams {
    pub video_bps: u64,
    pub audio_bps: u64,
    pub fps: u32,
    pub gop_secs: f64,
}

impl MediaParams {
    pub fn gop_frames(&self) -> u64 {
        ((self.fps as f64 * self.gop_secs).round() as u64).max(1)
    }

    /// Body sizes (keyframe, inter frame): a keyframe is ten inter frames' worth, and a GOP
    /// carries `video_bps * gop_secs` bits.
    pub fn video_sizes(&self) -> (usize, usize) {
        let gop = self.gop_frames();
        let gop_bytes = (self.video_bps as f64 * gop as f64 / self.fps.max(1) as f64 / 8.0) as u64;
        let inter = (gop_bytes / (gop + 9)).max(PROBE_END as u64 + 1);
        (inter as usize * 10, inter as usize)
    }

    pub fn audio_size(&self) -> usize {
        ((self.audio_bps as f64 / AAC_FPS / 8.0) as usize).max(4)
    }
}

/// The AVC sequence header (AVCDecoderConfigurationRecord with a 720p-ish fake SPS/PPS).
pub fn avc_sequence_header() -> Bytes {
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10,
    ];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut b = BytesMut::new();
    b.put_slice(&[0x17, 0x00, 0, 0, 0]);
    b.put_slice(&[0x01, sps[1], sps[2], sps[3], 0xff, 0xe1]);
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1);
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    b.freeze()
}

/// The AAC sequence header: AAC-LC, 48 kHz, stereo.
pub fn aac_sequence_header() -> Bytes {
    Bytes::from_static(&[0xaf, 0x00, 0x11, 0x90])
}

/// One AAC raw frame body of `size` bytes.
pub fn aac_frame(size: usize) -> Bytes {
    let mut b = BytesMut::zeroed(size.max(2));
    b[0] = 0xaf;
    b[1] = 0x01;
    b.freeze()
}

/// One AVC NALU body of `size` bytes carrying the probe.
pub fn video_frame(size: usize, keyframe: bool, seq: u64, sent_ns: u64) -> Bytes {
    let size = size.max(PROBE_END);
    let mut b = BytesMut::zeroed(size);
    b[0] = if keyframe { 0x17 } else { 0x27 };
    b[1] = 1;
    let nal_len = (size - 9) as u32;
    b[5..9].copy_from_slice(&nal_len.to_be_bytes());
    b[9] = if keyframe { 0x65 } else { 0x41 };
    b[PROBE_OFFSET..PROBE_OFFSET + 8].copy_from_slice(&MAGIC);
    b[PROBE_OFFSET + 8..PROBE_OFFSET + 16].copy_from_slice(&seq.to_be_bytes());
    b[PROBE_OFFSET + 16..PROBE_END].copy_from_slice(&sent_ns.to_be_bytes());
    b.freeze()
}

/// What the schedule says to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Video {
        seq: u64,
        keyframe: bool,
        ts_ms: u32,
        /// When the frame is due, in nanoseconds after the schedule's start.
        at_ns: u64,
    },
    Audio {
        ts_ms: u32,
    },
}

/// Interleaves video and audio in timestamp order from a start instant.
#[derive(Debug, Clone)]
pub struct Schedule {
    params: MediaParams,
    video_n: u64,
    audio_n: u64,
}

impl Schedule {
    pub fn new(params: MediaParams) -> Self {
        Schedule {
            params,
            video_n: 0,
            audio_n: 0,
        }
    }

    fn video_at_ns(&self) -> u64 {
        self.video_n * 1_000_000_000 / self.params.fps.max(1) as u64
    }

    fn audio_at_ns(&self) -> u64 {
        (self.audio_n as f64 * 1e9 / AAC_FPS) as u64
    }

    /// Nanoseconds after the start when the next item is due.
    pub fn next_at_ns(&self) -> u64 {
        if self.params.audio_bps == 0 {
            self.video_at_ns()
        } else {
            self.video_at_ns().min(self.audio_at_ns())
        }
    }

    /// Pops the next item if it is due at `elapsed_ns`.
    pub fn pop_due(&mut self, elapsed_ns: u64) -> Option<Due> {
        let v = self.video_at_ns();
        let a = self.audio_at_ns();
        if self.params.audio_bps > 0 && a < v {
            if a > elapsed_ns {
                return None;
            }
            self.audio_n += 1;
            return Some(Due::Audio {
                ts_ms: (a / 1_000_000) as u32,
            });
        }
        if v > elapsed_ns {
            return None;
        }
        let seq = self.video_n;
        self.video_n += 1;
        Some(Due::Video {
            seq,
            keyframe: seq.is_multiple_of(self.params.gop_frames()),
            ts_ms: (v / 1_000_000) as u32,
            at_ns: v,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips() {
        let f = video_frame(1000, true, 42, 123_456_789);
        assert_eq!(f.len(), 1000);
        let p = read_probe(&f[..PROBE_END]).unwrap();
        assert_eq!(
            p,
            Probe {
                seq: 42,
                sent_ns: 123_456_789,
                keyframe: true
            }
        );
        assert!(read_probe(&avc_sequence_header()).is_none());
    }

    #[test]
    fn schedule_interleaves_and_marks_gops() {
        let params = MediaParams {
            video_bps: 2_500_000,
            audio_bps: 128_000,
            fps: 30,
            gop_secs: 2.0,
        };
        let mut s = Schedule::new(params);
        let mut video = 0;
        let mut audio = 0;
        let mut keys = 0;
        while let Some(d) = s.pop_due(2_000_000_000 - 1) {
            match d {
                Due::Video { keyframe, .. } => {
                    video += 1;
                    keys += keyframe as u32;
                }
                Due::Audio { .. } => audio += 1,
            }
        }
        assert_eq!((video, keys), (60, 1));
        assert_eq!(audio, 94);
        let (k, i) = params.video_sizes();
        let gop_bits = (k + 59 * i) * 8;
        assert!((4_900_000..=5_000_000).contains(&gop_bits), "{gop_bits}");
    }
}
