//! A real FLV file as a publisher's source: its tags read once with ringcast's `FlvDemuxer`,
//! then played in file order, pass after pass, with timestamps that keep increasing.
//!
//! Timestamps are rebased so the first tag is at 0. A pass lasts from 0 to the end of the
//! file's last frame: the latest audio or video timestamp plus that track's last frame interval
//! ([`FALLBACK_FRAME_MS`] for a track with a single frame), so a loop leaves no gap and no
//! overlap. Later passes skip sequence headers and metadata: the relay caches the first ones and
//! they do not change. Reading the file is the only IO here.

use std::path::Path;

use bytes::BytesMut;
use ringcast::media::{Frame, FrameRole, MediaKind};
use ringcast::proto::flv::FlvDemuxer;

/// Frame interval assumed for a track that has only one frame.
pub const FALLBACK_FRAME_MS: u64 = 40;
/// Largest file read into memory.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// A parsed file: its tags with rebased timestamps, and how long one pass lasts.
#[derive(Debug, Clone)]
pub struct FlvFile {
    tags: Vec<Frame>,
    period_ms: u64,
}

fn is_config(frame: &Frame) -> bool {
    matches!(frame.role, FrameRole::SequenceHeader | FrameRole::Metadata)
}

impl FlvFile {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<FlvFile, String> {
        let shown = path.display();
        let len = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(format!(
                "{shown}: {len} bytes is over the {MAX_FILE_BYTES} byte limit"
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
        FlvFile::parse(BytesMut::from(&bytes[..])).map_err(|e| format!("{shown}: {e}"))
    }

    /// Parses a whole FLV file held in memory (payloads share `bytes`).
    pub fn parse(mut bytes: BytesMut) -> Result<FlvFile, String> {
        let mut demuxer = FlvDemuxer::default();
        let mut tags = Vec::new();
        while let Some(frame) = demuxer.decode(&mut bytes).map_err(|e| e.to_string())? {
            tags.push(frame);
        }
        if !bytes.is_empty() {
            return Err(format!(
                "{} bytes of a truncated tag at the end",
                bytes.len()
            ));
        }
        if !tags
            .iter()
            .any(|t| t.kind != MediaKind::Script && !is_config(t))
        {
            return Err("no audio or video frames".into());
        }
        let base = tags.first().map_or(0, |t| t.timestamp);
        for tag in &mut tags {
            tag.timestamp = tag.timestamp.saturating_sub(base);
        }
        let period_ms = [MediaKind::Audio, MediaKind::Video]
            .into_iter()
            .filter_map(|kind| track_end_ms(&tags, kind))
            .max()
            .unwrap_or(FALLBACK_FRAME_MS)
            .max(1);
        Ok(FlvFile { tags, period_ms })
    }

    /// How long one pass lasts, in milliseconds.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    pub fn has_audio(&self) -> bool {
        self.tags.iter().any(|t| t.kind == MediaKind::Audio)
    }

    pub fn has_video(&self) -> bool {
        self.tags.iter().any(|t| t.kind == MediaKind::Video)
    }
}

/// The end of a track's last coded frame: its timestamp plus the interval before it.
fn track_end_ms(tags: &[Frame], kind: MediaKind) -> Option<u64> {
    let mut times = tags
        .iter()
        .filter(|t| t.kind == kind && !is_config(t))
        .map(|t| u64::from(t.timestamp));
    let mut last = times.next()?;
    let mut interval = FALLBACK_FRAME_MS;
    for ts in times {
        if ts > last {
            interval = ts - last;
        }
        last = last.max(ts);
    }
    Some(last + interval)
}

/// Plays a file's tags in order, looping if asked.
#[derive(Debug, Clone)]
pub struct Playback {
    /// Shared by every publisher playing the same file.
    file: std::sync::Arc<FlvFile>,
    looping: bool,
    pass: u64,
    next: usize,
}

impl Playback {
    pub fn new(file: impl Into<std::sync::Arc<FlvFile>>, looping: bool) -> Playback {
        Playback {
            file: file.into(),
            looping,
            pass: 0,
            next: 0,
        }
    }

    pub fn file(&self) -> &FlvFile {
        &self.file
    }

    /// Moves `next` past the tags this pass does not send; false when playback is over.
    fn settle(&mut self) -> bool {
        loop {
            match self.file.tags.get(self.next) {
                Some(tag) if self.pass > 0 && is_config(tag) => self.next += 1,
                Some(_) => return true,
                None if self.looping => {
                    self.pass += 1;
                    self.next = 0;
                }
                None => return false,
            }
        }
    }

    /// The continued timestamp of the next tag, in milliseconds; `None` when playback is over.
    pub fn next_ms(&mut self) -> Option<u64> {
        if !self.settle() {
            return None;
        }
        let tag = self.file.tags.get(self.next)?;
        Some(self.pass * self.file.period_ms + u64::from(tag.timestamp))
    }

    /// The next tag with its continued timestamp (RTMP's 32-bit clock wraps, as it does on air).
    pub fn pop(&mut self) -> Option<Frame> {
        let ms = self.next_ms()?;
        let mut frame = self.file.tags.get(self.next)?.clone();
        frame.timestamp = ms as u32;
        self.next += 1;
        Some(frame)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::Bytes;
    use ringcast::proto::flv::{file_header, write_tag};

    use super::*;
    use crate::synth::{aac_frame, aac_sequence_header, avc_sequence_header, video_frame};

    const META: &[u8] = b"\x02\x00\x0aonMetaData\x08\0\0\0\0\0\0\x09";

    /// A 3-frame, 100 ms-per-frame video file with audio every 50 ms, starting at `base` ms.
    fn small_flv(base: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.extend_from_slice(&file_header(true, true));
        let mut tags = vec![
            Frame::new(MediaKind::Script, base, Bytes::from_static(META)),
            Frame::new(MediaKind::Video, base, avc_sequence_header()),
            Frame::new(MediaKind::Audio, base, aac_sequence_header()),
        ];
        for i in 0..3u32 {
            let ts = base + i * 100;
            tags.push(Frame::new(
                MediaKind::Video,
                ts,
                video_frame(200, i == 0, 0, 0),
            ));
            tags.push(Frame::new(MediaKind::Audio, ts, aac_frame(50)));
            tags.push(Frame::new(MediaKind::Audio, ts + 50, aac_frame(50)));
        }
        for tag in &tags {
            write_tag(&mut out, tag).unwrap();
        }
        out.to_vec()
    }

    fn written(bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ringcast-loadgen-{}-{}.flv",
            std::process::id(),
            crate::synth::monotonic_ns()
        ));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn roles(frames: &[Frame]) -> Vec<(MediaKind, FrameRole, u32)> {
        frames
            .iter()
            .map(|f| (f.kind, f.role, f.timestamp))
            .collect()
    }

    #[test]
    fn a_file_on_disk_loops_with_continued_timestamps() {
        let path = written(&small_flv(1000));
        let file = FlvFile::open(&path);
        std::fs::remove_file(&path).unwrap();
        let file = file.unwrap();
        assert_eq!(
            file.period_ms(),
            300,
            "last video at 200 + 100, last audio at 250 + 50"
        );
        assert!(file.has_audio() && file.has_video());
        let mut playback = Playback::new(file, true);
        let mut frames = Vec::new();
        while frames.len() < 12 + 9 + 9 {
            frames.push(playback.pop().unwrap());
        }
        // First pass: metadata and both sequence headers, then 3 × (video, audio, audio).
        let first = roles(&frames[..12]);
        assert_eq!(first[0], (MediaKind::Script, FrameRole::Metadata, 0));
        assert_eq!(first[1], (MediaKind::Video, FrameRole::SequenceHeader, 0));
        assert_eq!(first[2], (MediaKind::Audio, FrameRole::SequenceHeader, 0));
        assert_eq!(first[3], (MediaKind::Video, FrameRole::Keyframe, 0));
        assert_eq!(first[11], (MediaKind::Audio, FrameRole::Audio, 250));
        // Later passes: no configuration again, timestamps shifted by one period each.
        for (pass, chunk) in frames[12..].chunks(9).enumerate() {
            let shift = 300 * (pass as u32 + 1);
            let got = roles(chunk);
            assert_eq!(got[0], (MediaKind::Video, FrameRole::Keyframe, shift));
            assert_eq!(got[1], (MediaKind::Audio, FrameRole::Audio, shift));
            assert_eq!(got[2], (MediaKind::Audio, FrameRole::Audio, shift + 50));
            assert_eq!(got[3], (MediaKind::Video, FrameRole::Inter, shift + 100));
            assert_eq!(got[8], (MediaKind::Audio, FrameRole::Audio, shift + 250));
        }
        let all: Vec<u32> = frames.iter().map(|f| f.timestamp).collect();
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
        assert_eq!(frames[15].payload, frames[24].payload);
    }

    #[test]
    fn without_loop_playback_ends_after_one_pass() {
        let file = FlvFile::parse(BytesMut::from(&small_flv(0)[..])).unwrap();
        let mut playback = Playback::new(file, false);
        let mut n = 0;
        while playback.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, 12);
        assert_eq!(playback.next_ms(), None);
    }

    #[test]
    fn broken_files_are_refused() {
        let bytes = small_flv(0);
        assert!(FlvFile::parse(BytesMut::from(&bytes[..bytes.len() - 3])).is_err());
        assert!(FlvFile::parse(BytesMut::from(&b"not an flv file"[..])).is_err());
        let mut only_config = BytesMut::new();
        only_config.extend_from_slice(&file_header(false, true));
        write_tag(
            &mut only_config,
            &Frame::new(MediaKind::Video, 0, avc_sequence_header()),
        )
        .unwrap();
        assert!(FlvFile::parse(only_config).is_err());
    }
}
