//! What a publisher sends, as frames with the time each is due: the synthetic schedule (sequence
//! headers, then probed video and AAC audio) or a real FLV file's tags ([`Playback`]).
//!
//! Times are nanoseconds after the publish started; the caller owns the clock and passes the
//! send time in, which the synthetic video embeds in its probe. No IO here.

use std::collections::VecDeque;

use ringcast::media::{Frame, MediaKind};

use crate::flv_file::Playback;
use crate::synth::{
    Due, MediaParams, Schedule, aac_frame, aac_sequence_header, avc_sequence_header, video_frame,
};

/// The synthetic media of [`crate::synth`], sequence headers first.
#[derive(Debug, Clone)]
pub struct Synthetic {
    params: MediaParams,
    headers: VecDeque<Frame>,
    schedule: Schedule,
}

impl Synthetic {
    pub fn new(params: MediaParams) -> Synthetic {
        let mut headers = VecDeque::from([Frame::new(MediaKind::Video, 0, avc_sequence_header())]);
        if params.audio_bps > 0 {
            headers.push_back(Frame::new(MediaKind::Audio, 0, aac_sequence_header()));
        }
        Synthetic {
            params,
            headers,
            schedule: Schedule::new(params),
        }
    }

    fn pop_due(&mut self, elapsed_ns: u64, now_ns: u64) -> Option<Frame> {
        if let Some(header) = self.headers.pop_front() {
            return Some(header);
        }
        Some(match self.schedule.pop_due(elapsed_ns)? {
            Due::Video {
                seq,
                keyframe,
                ts_ms,
                ..
            } => {
                let (key_size, inter_size) = self.params.video_sizes();
                let size = if keyframe { key_size } else { inter_size };
                let body = video_frame(size, keyframe, seq, now_ns);
                Frame::new(MediaKind::Video, ts_ms, body)
            }
            Due::Audio { ts_ms } => {
                Frame::new(MediaKind::Audio, ts_ms, aac_frame(self.params.audio_size()))
            }
        })
    }
}

/// A publisher's media.
#[derive(Debug, Clone)]
pub enum Source {
    Synthetic(Synthetic),
    File(Playback),
}

impl Source {
    /// Nanoseconds after the start when the next frame is due; `None` once a file played out.
    pub fn next_due_ns(&mut self) -> Option<u64> {
        match self {
            Source::Synthetic(s) if !s.headers.is_empty() => Some(0),
            Source::Synthetic(s) => Some(s.schedule.next_at_ns()),
            Source::File(playback) => playback.next_ms().map(|ms| ms.saturating_mul(1_000_000)),
        }
    }

    /// The next frame if it is due at `elapsed_ns`; `now_ns` is the send time probes carry.
    pub fn pop_due(&mut self, elapsed_ns: u64, now_ns: u64) -> Option<Frame> {
        if self.next_due_ns()? > elapsed_ns {
            return None;
        }
        match self {
            Source::Synthetic(s) => s.pop_due(elapsed_ns, now_ns),
            Source::File(playback) => playback.pop(),
        }
    }

    /// The FLV header's flags for this media.
    pub fn has_audio(&self) -> bool {
        match self {
            Source::Synthetic(s) => s.params.audio_bps > 0,
            Source::File(playback) => playback.file().has_audio(),
        }
    }

    pub fn has_video(&self) -> bool {
        match self {
            Source::Synthetic(_) => true,
            Source::File(playback) => playback.file().has_video(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use ringcast::media::FrameRole;

    use super::*;
    use crate::synth::read_probe;

    #[test]
    fn synthetic_media_starts_with_sequence_headers_and_stamps_probes() {
        let params = MediaParams {
            video_bps: 1_000_000,
            audio_bps: 64_000,
            fps: 25,
            gop_secs: 1.0,
        };
        let mut source = Source::Synthetic(Synthetic::new(params));
        assert!(source.has_audio() && source.has_video());
        let first: Vec<_> = std::iter::from_fn(|| source.pop_due(0, 777)).collect();
        let roles: Vec<_> = first.iter().map(|f| (f.kind, f.role)).collect();
        assert_eq!(
            roles,
            [
                (MediaKind::Video, FrameRole::SequenceHeader),
                (MediaKind::Audio, FrameRole::SequenceHeader),
                (MediaKind::Video, FrameRole::Keyframe),
                (MediaKind::Audio, FrameRole::Audio),
            ]
        );
        let probe = read_probe(&first[2].payload).unwrap();
        assert_eq!((probe.seq, probe.sent_ns), (0, 777));
        assert_eq!(source.next_due_ns(), Some(21_333_333));
        assert!(source.pop_due(21_000_000, 0).is_none());
        let audio = source.pop_due(21_333_333, 0).unwrap();
        assert_eq!((audio.kind, audio.timestamp), (MediaKind::Audio, 21));
    }
}
