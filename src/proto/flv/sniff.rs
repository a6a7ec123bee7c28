//! Guessing what an fstream broadcaster sends from its first bytes: FLV, H.264 Annex-B, or opaque.
//!
//! fstream carries arbitrary bytes. Knowing the format lets the server demux FLV into frames (and
//! serve it to RTMP/HTTP-FLV watchers) or find keyframe join points in Annex-B; anything else is
//! relayed as-is from wherever a watcher joins.
//!
//! At most [`SNIFF_LEN`] = 5 bytes are needed: `FLV\x01` is 4 bytes; an Annex-B opening is a
//! 3-byte start code `00 00 01` or 4-byte `00 00 00 01` (H.264 §B.1) followed by the one-byte NAL
//! header, so 4 or 5 bytes. [`Sniffed::NeedMore`] is returned only while the prefix could still
//! become FLV or Annex-B; anything that cannot is [`Sniffed::Opaque`] at once.
//!
//! A NAL header is "plausible" for H.264 (§7.3.1, §7.4.1) when forbidden_zero_bit is 0, the type is
//! 1..=23 (0 and 24..=31 are unspecified), and nal_ref_idc is 0 for the types that require it
//! (SEI 6, AUD 9, end of sequence 10, end of stream 11, filler 12). That last rule also keeps the
//! common HEVC openings (VPS `40 01`, AUD `46 01`) out: the join-point scanner is H.264-only.
//! Streams with `leading_zero_8bits` before the first start code are classed opaque.

use super::SIGNATURE;

/// The most bytes [`sniff`] ever needs to decide.
pub const SNIFF_LEN: usize = 5;

/// What the first bytes of a broadcast look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Starts with `FLV\x01`.
    Flv,
    /// Starts with an Annex-B start code and a plausible H.264 NAL header.
    AnnexB,
    /// Anything else.
    Opaque,
    /// Too few bytes to decide; call again with more (never with [`SNIFF_LEN`] or more bytes).
    NeedMore,
}

/// Classifies the first bytes of a broadcast. See the module doc for the exact rules.
pub fn sniff(prefix: &[u8]) -> Sniffed {
    if could_be(prefix, &SIGNATURE) {
        return if prefix.len() >= SIGNATURE.len() {
            Sniffed::Flv
        } else {
            Sniffed::NeedMore
        };
    }
    for start_code in [&[0u8, 0, 1][..], &[0, 0, 0, 1][..]] {
        if !could_be(prefix, start_code) {
            continue;
        }
        return match prefix.get(start_code.len()) {
            Some(&header) if plausible_h264_nal_header(header) => Sniffed::AnnexB,
            Some(_) => Sniffed::Opaque,
            None => Sniffed::NeedMore,
        };
    }
    Sniffed::Opaque
}

/// True when `prefix` and `pattern` agree on their common length.
fn could_be(prefix: &[u8], pattern: &[u8]) -> bool {
    prefix.iter().zip(pattern).all(|(a, b)| a == b)
}

/// H.264 §7.4.1 constraints on the first NAL unit header byte, see the module doc.
pub fn plausible_h264_nal_header(header: u8) -> bool {
    let forbidden = header & 0x80;
    let ref_idc = (header >> 5) & 0x03;
    let nal_type = header & 0x1f;
    forbidden == 0
        && (1..=23).contains(&nal_type)
        && !(matches!(nal_type, 6 | 9..=12) && ref_idc != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_needs_four_bytes() {
        assert_eq!(sniff(b""), Sniffed::NeedMore);
        assert_eq!(sniff(b"F"), Sniffed::NeedMore);
        assert_eq!(sniff(b"FLV"), Sniffed::NeedMore);
        assert_eq!(sniff(b"FLV\x01"), Sniffed::Flv);
        assert_eq!(sniff(b"FLV\x01\x05\0\0\0\x09"), Sniffed::Flv);
        assert_eq!(sniff(b"FLV\x02"), Sniffed::Opaque);
        assert_eq!(sniff(b"FX"), Sniffed::Opaque);
    }

    #[test]
    fn annexb_three_and_four_byte_start_codes() {
        assert_eq!(sniff(&[0]), Sniffed::NeedMore);
        assert_eq!(sniff(&[0, 0]), Sniffed::NeedMore);
        assert_eq!(sniff(&[0, 0, 1]), Sniffed::NeedMore);
        assert_eq!(sniff(&[0, 0, 1, 0x67]), Sniffed::AnnexB);
        assert_eq!(sniff(&[0, 0, 0]), Sniffed::NeedMore);
        assert_eq!(sniff(&[0, 0, 0, 1]), Sniffed::NeedMore);
        assert_eq!(sniff(&[0, 0, 0, 1, 0x09, 0xf0]), Sniffed::AnnexB);
        assert_eq!(sniff(&[0, 0, 0, 1, 0x06]), Sniffed::AnnexB);
        assert_eq!(sniff(&[0, 0, 0, 1, 0x65]), Sniffed::AnnexB);
    }

    #[test]
    fn implausible_nal_headers_are_opaque() {
        // Forbidden bit set.
        assert_eq!(sniff(&[0, 0, 1, 0xe7]), Sniffed::Opaque);
        // Type 0 (HEVC VPS 0x40 reads as ref_idc 2, type 0).
        assert_eq!(sniff(&[0, 0, 0, 1, 0x40, 0x01]), Sniffed::Opaque);
        // AUD with nal_ref_idc != 0 (HEVC AUD 0x46 reads as a referenced SEI).
        assert_eq!(sniff(&[0, 0, 0, 1, 0x46, 0x01]), Sniffed::Opaque);
        // Unspecified types 24..=31.
        assert_eq!(sniff(&[0, 0, 1, 0x18]), Sniffed::Opaque);
        // Leading zeros beyond a 4-byte start code.
        assert_eq!(sniff(&[0, 0, 0, 0, 1]), Sniffed::Opaque);
        assert_eq!(sniff(&[0, 1]), Sniffed::Opaque);
        assert_eq!(sniff(b"\x1a\x45\xdf\xa3"), Sniffed::Opaque);
    }

    #[test]
    fn never_needs_more_than_sniff_len() {
        for a in 0..=255u8 {
            for b in [0u8, 1, 0x67, 0xff] {
                let prefix = [0, 0, a, b, a];
                assert_ne!(sniff(&prefix[..SNIFF_LEN]), Sniffed::NeedMore);
                let prefix = [a, 0, 0, 1, b];
                assert_ne!(sniff(&prefix), Sniffed::NeedMore);
            }
        }
    }
}
