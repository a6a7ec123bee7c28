//! ffmpeg's `framemd5` output: the header's per-stream codec and one record per packet, plus the
//! comparisons the relay tests make between what a player received and what was published.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::run_ok;

/// One packet line: `stream#, dts, pts, duration, size, hash[, S=n, size, hash...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketRecord {
    pub stream: u32,
    pub dts: i64,
    pub pts: i64,
    pub duration: i64,
    pub size: u64,
    pub md5: String,
}

/// A parsed framemd5 document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameMd5 {
    /// `#codec_id N: NAME` lines, by stream index.
    pub codecs: HashMap<u32, String>,
    /// `#media_type N: video|audio` lines, by stream index.
    pub media_types: HashMap<u32, String>,
    pub packets: Vec<PacketRecord>,
}

impl FrameMd5 {
    /// Parses framemd5 text. A truncated last line (a killed writer) is ignored; any other
    /// malformed line panics, because it means the format is not what this parser expects.
    pub fn parse(text: &str) -> FrameMd5 {
        let mut doc = FrameMd5::default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('#') {
                for (prefix, map) in [
                    ("codec_id ", &mut doc.codecs),
                    ("media_type ", &mut doc.media_types),
                ] {
                    if let Some((idx, name)) = header
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.split_once(':'))
                        && let Ok(idx) = idx.trim().parse()
                    {
                        map.insert(idx, name.trim().to_owned());
                    }
                }
                continue;
            }
            match parse_record(line) {
                Some(rec) => doc.packets.push(rec),
                None if i + 1 == lines.len() => {}
                None => panic!("malformed framemd5 line {}: {line:?}", i + 1),
            }
        }
        doc
    }

    /// Runs `ffmpeg -i FILE -map 0:v -c copy -f framemd5 -` with the given ffmpeg.
    pub fn of_video_in(ffmpeg: &Path, file: &Path) -> FrameMd5 {
        let mut cmd = Command::new(ffmpeg);
        cmd.args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(file)
            .args(["-map", "0:v", "-c", "copy", "-f", "framemd5", "-"]);
        let out = run_ok("ffmpeg framemd5", &mut cmd, Duration::from_secs(120));
        FrameMd5::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Packets of the first stream whose media type is video (all packets if no header says).
    pub fn video(&self) -> Vec<&PacketRecord> {
        let video_idx = self
            .media_types
            .iter()
            .find(|(_, t)| t.as_str() == "video")
            .map(|(i, _)| *i);
        self.packets
            .iter()
            .filter(|p| video_idx.is_none_or(|v| p.stream == v))
            .collect()
    }

    /// The codec of the first video stream.
    pub fn video_codec(&self) -> Option<&str> {
        let idx = self
            .media_types
            .iter()
            .find(|(_, t)| t.as_str() == "video")
            .map_or(0, |(i, _)| *i);
        self.codecs.get(&idx).map(String::as_str)
    }
}

fn parse_record(line: &str) -> Option<PacketRecord> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    // Six fields, then optional side data (`S=n, size, hash`, e.g. new extradata when a
    // publisher is replaced); the hash in field 6 covers the packet data alone.
    if fields.len() < 6 || fields[5].len() != 32 {
        return None;
    }
    Some(PacketRecord {
        stream: fields[0].parse().ok()?,
        dts: fields[1].parse().ok()?,
        pts: fields[2].parse().ok()?,
        duration: fields[3].parse().ok()?,
        size: fields[4].parse().ok()?,
        md5: fields[5].to_owned(),
    })
}

/// Asserts every played packet is byte-identical to some source packet, after asserting both
/// sides are non-empty (so the check can never pass vacuously).
pub fn assert_all_in_source(played: &[&PacketRecord], source: &[&PacketRecord], what: &str) {
    assert!(
        !source.is_empty(),
        "{what}: the source has no video packets"
    );
    assert!(
        !played.is_empty(),
        "{what}: the player received no video packets"
    );
    let known: HashSet<&str> = source.iter().map(|p| p.md5.as_str()).collect();
    let foreign: Vec<&&PacketRecord> = played
        .iter()
        .filter(|p| !known.contains(p.md5.as_str()))
        .collect();
    assert!(
        foreign.is_empty(),
        "{what}: {} of {} played packets match no source packet; first: {:?}",
        foreign.len(),
        played.len(),
        foreign.first()
    );
}

/// Asserts the played packets are one gap-free run of the source sequence (which may repeat,
/// for a looping publisher): played packet j is source packet (start + j) modulo its length.
/// Sources may repeat a packet (AV1 "show existing frame" packets are identical), so every
/// source position matching the first played packet is tried. Returns the run's start.
pub fn assert_contiguous_run(
    played: &[&PacketRecord],
    source: &[&PacketRecord],
    what: &str,
) -> usize {
    assert_all_in_source(played, source, what);
    let n = source.len();
    let matched_len = |start: usize| {
        played
            .iter()
            .enumerate()
            .take_while(|(j, p)| p.md5 == source[(start + j) % n].md5)
            .count()
    };
    let mut best = (0, 0);
    for start in (0..n).filter(|&i| source[i].md5 == played[0].md5) {
        let len = matched_len(start);
        if len == played.len() {
            return start;
        }
        if len > best.1 {
            best = (start, len);
        }
    }
    let (start, len) = best;
    panic!(
        "{what}: gap after played packet {}: the run from source #{start} matches {len} of {} \
         played packets",
        len.saturating_sub(1),
        played.len()
    );
}
