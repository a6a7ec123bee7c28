//! Incremental H.264 Annex-B scanning: start codes and NAL unit types across arbitrary chunks, and
//! [`JoinPoint`], which finds where a new watcher of a raw Annex-B broadcast can start decoding.
//!
//! An fstream broadcaster's bytes arrive in chunks cut anywhere, even inside a start code. The
//! scanner keeps the few bytes of state needed (a zero-run counter and a pending start code) and
//! reports each NAL unit when its header byte is seen, with **absolute stream offsets** (bytes since
//! the scanner was created). A NAL's start code may therefore begin in an earlier chunk; with
//! `chunk_start = scanner.position()` taken before feeding a chunk, [`offset_in_chunk`] turns an
//! offset into an index within that chunk, if it falls there.
//!
//! Start codes (H.264 §B.2): `00 00 01` (3 bytes) or `00 00 00 01` (4 bytes, zero_byte +
//! start_code_prefix_one_3bytes). A longer zero run before `01` is trailing_zero_8bits of the
//! previous NAL plus a 4-byte start code. Emulation prevention (§7.4.1) guarantees `00 00 01`
//! never occurs inside a NAL unit. NAL header (§7.3.1): forbidden_zero_bit, nal_ref_idc (2 bits),
//! nal_unit_type (5 bits). Nothing here allocates or does IO.

/// One NAL unit start found in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalStart {
    /// Absolute offset of the first byte of the start code.
    pub offset: u64,
    /// 3 or 4.
    pub start_code_len: u8,
    /// nal_unit_type (§7.4.1, Table 7-1): 1 non-IDR slice, 5 IDR slice, 6 SEI, 7 SPS, 8 PPS, 9 AUD.
    pub nal_type: u8,
    /// nal_ref_idc, 0..=3.
    pub nal_ref_idc: u8,
}

impl NalStart {
    /// Absolute offset of the NAL header byte.
    pub fn header_offset(&self) -> u64 {
        self.offset + u64::from(self.start_code_len)
    }
}

/// Maps an absolute offset to an index inside the chunk that starts at `chunk_start` and is
/// `chunk_len` bytes long, or `None` when the offset lies outside it.
pub fn offset_in_chunk(offset: u64, chunk_start: u64, chunk_len: usize) -> Option<usize> {
    let index = usize::try_from(offset.checked_sub(chunk_start)?).ok()?;
    (index < chunk_len).then_some(index)
}

/// Finds start codes and NAL headers across chunk boundaries.
#[derive(Debug, Clone, Default)]
pub struct AnnexBScanner {
    /// Bytes consumed so far.
    position: u64,
    /// Zero bytes immediately before `position`, saturating at 3.
    zeros: u8,
    /// A start code (offset, length) seen whose NAL header byte has not arrived yet.
    pending: Option<(u64, u8)>,
}

impl AnnexBScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes consumed so far: the absolute offset of the next chunk's first byte.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Scans `chunk`, calling `on_nal` for every NAL unit whose header byte is in it, in order.
    pub fn scan(&mut self, chunk: &[u8], mut on_nal: impl FnMut(NalStart)) {
        let base = self.position;
        let mut i = 0;
        while i < chunk.len() {
            // Fast path: no start code can end at i+2 if that byte is above 1 (at least in this
            // chunk, and only with no zeros carried in from the previous one).
            if self.pending.is_none() && self.zeros == 0 && chunk.get(i + 2).is_some_and(|&b| b > 1)
            {
                i += 3;
                continue;
            }
            let Some(&byte) = chunk.get(i) else { break };
            let at = base + i as u64;
            if let Some((offset, start_code_len)) = self.pending.take() {
                on_nal(NalStart {
                    offset,
                    start_code_len,
                    nal_type: byte & 0x1f,
                    nal_ref_idc: (byte >> 5) & 0x03,
                });
            }
            if byte == 0 {
                self.zeros = (self.zeros + 1).min(3);
            } else {
                if byte == 1 && self.zeros >= 2 {
                    let len: u8 = if self.zeros >= 3 { 4 } else { 3 };
                    self.pending = Some((at + 1 - u64::from(len), len));
                }
                self.zeros = 0;
            }
            i += 1;
        }
        self.position = base + chunk.len() as u64;
    }
}

/// NAL unit types that matter for joining. // H.264 Table 7-1
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_AUD: u8 = 9;

/// Finds join points in an H.264 Annex-B stream: the start of each access unit that begins with an
/// SPS and contains an IDR slice before any non-IDR slice.
///
/// Rule: an SPS opens a candidate at its start code, or at the start code of an AUD immediately
/// before it. PPS, SEI and other non-slice NALs keep the candidate open (in any order, any
/// number); the first IDR slice (type 5) confirms it; a non-IDR slice (types 1..=4) or a new AUD
/// cancels it. A stream that sends SPS/PPS only once yields a single join point at its start.
///
/// A candidate is confirmed only when the IDR's header byte arrives, which may be in a later chunk
/// than the one holding the candidate's start. The fan-out therefore keeps chunks addressable by
/// their absolute start offset (ring entries are) and starts a new watcher at
/// `chunk.slice(offset_in_chunk(..)..)` of the chunk holding the latest join point, a zero-copy
/// split. [`JoinPoint::pending`] tells it how far back it may need to look.
#[derive(Debug, Clone, Default)]
pub struct JoinPoint {
    scanner: AnnexBScanner,
    /// The open candidate's start offset.
    candidate: Option<u64>,
    /// Start offset of an AUD that was the last NAL seen.
    aud_just_before: Option<u64>,
    latest: Option<u64>,
}

impl JoinPoint {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes consumed so far: the absolute offset of the next chunk's first byte.
    pub fn position(&self) -> u64 {
        self.scanner.position()
    }

    /// The latest confirmed join point, if any.
    pub fn latest(&self) -> Option<u64> {
        self.latest
    }

    /// The start of an unconfirmed candidate: bytes from here on may yet become a join point.
    pub fn pending(&self) -> Option<u64> {
        self.candidate
    }

    /// Where bytes should be held back from, because a join point may yet begin there: the open
    /// candidate, or else an AUD that was the last NAL seen (an SPS may follow it).
    pub fn hold_from(&self) -> Option<u64> {
        self.candidate.or(self.aud_just_before)
    }

    /// Scans `chunk` and calls `on_join` with the absolute offset of every join point confirmed
    /// in it (the offset may lie in an earlier chunk, see the type doc).
    pub fn push(&mut self, chunk: &[u8], mut on_join: impl FnMut(u64)) {
        let JoinPoint {
            scanner,
            candidate,
            aud_just_before,
            latest,
        } = self;
        scanner.scan(chunk, |nal| {
            let aud = aud_just_before.take();
            match nal.nal_type {
                NAL_AUD => {
                    *candidate = None;
                    *aud_just_before = Some(nal.offset);
                }
                NAL_SPS if candidate.is_none() => {
                    *candidate = Some(aud.unwrap_or(nal.offset));
                }
                NAL_IDR => {
                    if let Some(start) = candidate.take() {
                        *latest = Some(start);
                        on_join(start);
                    }
                }
                1..=4 => *candidate = None,
                _ => {}
            }
        });
    }

    /// Convenience for chunk-at-a-time callers: scans `chunk` and returns the index inside it of
    /// the last join point confirmed *and* located in it.
    pub fn push_chunk(&mut self, chunk: &[u8]) -> Option<usize> {
        let chunk_start = self.position();
        let mut found = None;
        self.push(chunk, |offset| {
            if let Some(index) = offset_in_chunk(offset, chunk_start, chunk.len()) {
                found = Some(index);
            }
        });
        found
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Appends a NAL with a 4- or 3-byte start code; returns its start code's offset.
    fn nal(out: &mut Vec<u8>, long: bool, header: u8, body: &[u8]) -> u64 {
        let at = out.len() as u64;
        out.extend_from_slice(if long { &[0, 0, 0, 1] } else { &[0, 0, 1] });
        out.push(header);
        out.extend_from_slice(body);
        at
    }

    /// Two GOPs (one with AUD + SPS + PPS + SEI, one with bare SPS/PPS and a 3-byte start code),
    /// non-IDR slices, a decoy SPS not followed by an IDR, and trailing zeros. Returns the stream
    /// and its two join points.
    fn sample() -> (Vec<u8>, [u64; 2]) {
        let mut s = Vec::new();
        let first = nal(&mut s, true, 0x09, &[0xf0]);
        nal(&mut s, true, 0x67, &[0x64, 0x00, 0x1f, 0xac]);
        nal(&mut s, true, 0x68, &[0xee, 0x3c, 0x80]);
        nal(&mut s, false, 0x06, &[0x05, 0x01, 0x00, 0x80]); // SEI payload contains zeros
        nal(
            &mut s,
            false,
            0x65,
            &[0x88, 0x84, 0x00, 0x00, 0x03, 0x01, 0x22],
        );
        nal(&mut s, false, 0x65, &[0x11, 0x22]); // second IDR slice: same join point
        nal(&mut s, true, 0x09, &[0x30]);
        nal(&mut s, true, 0x41, &[0x9a, 0x00, 0x00, 0x00]); // trailing zeros
        nal(&mut s, true, 0x67, &[0x64]); // decoy: SPS then a non-IDR slice
        nal(&mut s, true, 0x41, &[0x9b]);
        let second = nal(&mut s, false, 0x67, &[0x64, 0x00]);
        nal(&mut s, false, 0x68, &[0xee]);
        nal(&mut s, true, 0x65, &[0x88, 0x80]);
        nal(&mut s, true, 0x01, &[0x9c]);
        (s, [first, second])
    }

    fn scan_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<NalStart> {
        let mut scanner = AnnexBScanner::new();
        let mut nals = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            let cut = cut.clamp(from, bytes.len());
            scanner.scan(&bytes[from..cut], |n| nals.push(n));
            from = cut;
        }
        assert_eq!(scanner.position(), bytes.len() as u64);
        nals
    }

    /// The obvious whole-buffer search, as an oracle.
    fn naive(bytes: &[u8]) -> Vec<NalStart> {
        let mut out = Vec::new();
        for i in 2..bytes.len().saturating_sub(1) {
            if bytes[i] == 1 && bytes[i - 1] == 0 && bytes[i - 2] == 0 {
                let long = i >= 3 && bytes[i - 3] == 0;
                let len = if long { 4 } else { 3 };
                let header = bytes[i + 1];
                out.push(NalStart {
                    offset: (i + 1 - len) as u64,
                    start_code_len: len as u8,
                    nal_type: header & 0x1f,
                    nal_ref_idc: (header >> 5) & 3,
                });
            }
        }
        out
    }

    #[test]
    fn scanner_finds_every_nal_at_every_split() {
        let (s, _) = sample();
        let whole = scan_in_pieces(&s, &[]);
        assert_eq!(whole, naive(&s));
        let types: Vec<u8> = whole.iter().map(|n| n.nal_type).collect();
        assert_eq!(types, [9, 7, 8, 6, 5, 5, 9, 1, 7, 1, 7, 8, 5, 1]);
        assert_eq!(whole[0].start_code_len, 4);
        assert_eq!(whole[3].start_code_len, 3);
        for k in 0..=s.len() {
            assert_eq!(scan_in_pieces(&s, &[k]), whole, "split at {k}");
        }
        let every_byte: Vec<usize> = (0..s.len()).collect();
        assert_eq!(scan_in_pieces(&s, &every_byte), whole);
    }

    #[test]
    fn join_points_found_at_every_split() {
        let (s, expected) = sample();
        for k in 0..=s.len() {
            let (a, b) = s.split_at(k);
            let mut join = JoinPoint::new();
            let mut found = Vec::new();
            join.push(a, |o| found.push(o));
            join.push(b, |o| found.push(o));
            assert_eq!(found, expected, "split at {k}");
            assert_eq!(join.latest(), Some(expected[1]));
            assert_eq!(join.pending(), None);
        }
    }

    #[test]
    fn push_chunk_reports_the_index_to_split_at() {
        let (s, expected) = sample();
        for k in 1..s.len() {
            let (a, b) = s.split_at(k);
            let mut join = JoinPoint::new();
            let in_a = join.push_chunk(a);
            let in_b = join.push_chunk(b);
            // A join point is reported in a chunk only if it lies in it and is confirmed there.
            let idr_header = |j: usize| -> u64 {
                let nals = naive(&s);
                let at = nals.iter().position(|n| n.offset == expected[j]).unwrap();
                nals[at..]
                    .iter()
                    .find(|n| n.nal_type == 5)
                    .unwrap()
                    .header_offset()
            };
            let confirmed_in_a = |j: usize| idr_header(j) < k as u64;
            let want_a = (0..2)
                .filter(|&j| expected[j] < k as u64 && confirmed_in_a(j))
                .map(|j| expected[j] as usize)
                .next_back();
            let want_b = (0..2)
                .filter(|&j| expected[j] >= k as u64)
                .map(|j| expected[j] as usize - k)
                .next_back();
            assert_eq!((in_a, in_b), (want_a, want_b), "split at {k}");
        }
    }

    #[test]
    fn pending_candidate_spans_chunks() {
        let (s, expected) = sample();
        let mut join = JoinPoint::new();
        // Up to just before the first IDR's header: a candidate is open at the AUD.
        let idr = naive(&s).into_iter().find(|n| n.nal_type == 5).unwrap();
        join.push(&s[..idr.header_offset() as usize], |_| panic!("too early"));
        assert_eq!(join.pending(), Some(expected[0]));
        assert_eq!(join.latest(), None);
        assert_eq!(offset_in_chunk(expected[0], 0, 1), Some(0));
        assert_eq!(offset_in_chunk(5, 6, 10), None);
        assert_eq!(offset_in_chunk(16, 6, 10), None);
    }

    proptest! {
        #[test]
        fn scanner_matches_oracle_on_random_chunks(
            bytes in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..400),
            mut cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            cuts.sort_unstable();
            prop_assert_eq!(scan_in_pieces(&bytes, &cuts), naive(&bytes));
        }
    }
}
