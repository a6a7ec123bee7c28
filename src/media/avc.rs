//! The AVC decoder configuration record (ISO/IEC 14496-15 §5.2.4.1): what an FLV/RTMP AVC
//! sequence header (`0x17 0x00 0 0 0` + record) carries. Built from SPS/PPS NAL units for FTL,
//! parsed for inspection and tests. Nothing here does IO.

use bytes::{BufMut, Bytes, BytesMut};

/// NAL unit types this crate looks at (ITU-T H.264 Table 7-1).
pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

/// The NAL unit type of a NAL unit (low five bits of its header), if it has a header.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// Why a record could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvcConfigError {
    #[error("record truncated at byte {at}")]
    Truncated { at: usize },
    #[error("configurationVersion {version}, expected 1")]
    BadVersion { version: u8 },
    #[error("SPS of {len} bytes is too short to carry profile and level")]
    SpsTooShort { len: usize },
    #[error("parameter set of {len} bytes does not fit a 16-bit length")]
    ParameterSetTooLarge { len: usize },
    #[error("{count} parameter sets do not fit the record's count field")]
    TooManyParameterSets { count: usize },
    #[error("no SPS or no PPS")]
    MissingParameterSets,
}

/// An AVCDecoderConfigurationRecord with 4-byte NAL length fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
    /// Bytes in each NAL length prefix of coded frames (`lengthSizeMinusOne + 1`).
    pub nal_length_size: u8,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

impl AvcDecoderConfig {
    /// Builds a record from SPS and PPS NAL units (with their NAL headers). Profile,
    /// compatibility flags and level are SPS bytes 1..=3 (H.264 §7.3.2.1.1).
    pub fn from_parameter_sets(sps: &[Bytes], pps: &[Bytes]) -> Result<Self, AvcConfigError> {
        let first = sps.first().ok_or(AvcConfigError::MissingParameterSets)?;
        if pps.is_empty() {
            return Err(AvcConfigError::MissingParameterSets);
        }
        let [_, profile, compatibility, level, ..] = first[..] else {
            return Err(AvcConfigError::SpsTooShort { len: first.len() });
        };
        if sps.len() > 31 {
            return Err(AvcConfigError::TooManyParameterSets { count: sps.len() });
        }
        if pps.len() > 255 {
            return Err(AvcConfigError::TooManyParameterSets { count: pps.len() });
        }
        if let Some(big) = sps
            .iter()
            .chain(pps)
            .find(|p| p.len() > usize::from(u16::MAX))
        {
            return Err(AvcConfigError::ParameterSetTooLarge { len: big.len() });
        }
        Ok(AvcDecoderConfig {
            profile,
            compatibility,
            level,
            nal_length_size: 4,
            sps: sps.to_vec(),
            pps: pps.to_vec(),
        })
    }

    /// Serialises the record. ISO/IEC 14496-15 §5.2.4.1.1. The high-profile chroma/bit-depth
    /// extension is omitted: decoders (ffmpeg included) read those from the SPS itself.
    pub fn to_bytes(&self) -> Bytes {
        let len: usize = 7 + self
            .sps
            .iter()
            .chain(&self.pps)
            .map(|p| 2 + p.len())
            .sum::<usize>();
        let mut out = BytesMut::with_capacity(len);
        out.put_u8(1); // configurationVersion
        out.put_u8(self.profile);
        out.put_u8(self.compatibility);
        out.put_u8(self.level);
        out.put_u8(0xfc | (self.nal_length_size.saturating_sub(1) & 0x03));
        out.put_u8(0xe0 | (self.sps.len() as u8 & 0x1f));
        for sps in &self.sps {
            out.put_u16(sps.len() as u16);
            out.put_slice(sps);
        }
        out.put_u8(self.pps.len() as u8);
        for pps in &self.pps {
            out.put_u16(pps.len() as u16);
            out.put_slice(pps);
        }
        out.freeze()
    }

    /// Parses a record. ISO/IEC 14496-15 §5.2.4.1.1; trailing extension bytes are ignored.
    pub fn parse(record: &Bytes) -> Result<Self, AvcConfigError> {
        let byte = |at: usize| {
            record
                .get(at)
                .copied()
                .ok_or(AvcConfigError::Truncated { at })
        };
        let version = byte(0)?;
        if version != 1 {
            return Err(AvcConfigError::BadVersion { version });
        }
        let profile = byte(1)?;
        let compatibility = byte(2)?;
        let level = byte(3)?;
        let nal_length_size = (byte(4)? & 0x03) + 1;
        let mut pos = 6;
        let sps_count = byte(5)? & 0x1f;
        let mut sps = Vec::with_capacity(usize::from(sps_count));
        for _ in 0..sps_count {
            sps.push(read_parameter_set(record, &mut pos)?);
        }
        let pps_count = byte(pos)?;
        pos += 1;
        let mut pps = Vec::with_capacity(usize::from(pps_count));
        for _ in 0..pps_count {
            pps.push(read_parameter_set(record, &mut pos)?);
        }
        Ok(AvcDecoderConfig {
            profile,
            compatibility,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }
}

fn read_parameter_set(record: &Bytes, pos: &mut usize) -> Result<Bytes, AvcConfigError> {
    let at = *pos;
    let len = record
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(AvcConfigError::Truncated { at })?;
    let start = at + 2;
    let end = start + len;
    if end > record.len() {
        return Err(AvcConfigError::Truncated { at: record.len() });
    }
    *pos = end;
    Ok(record.slice(start..end))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

    #[test]
    fn record_layout() {
        let cfg = AvcDecoderConfig::from_parameter_sets(
            &[Bytes::from_static(SPS)],
            &[Bytes::from_static(PPS)],
        )
        .unwrap();
        let bytes = cfg.to_bytes();
        let mut expect = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 8];
        expect.extend_from_slice(SPS);
        expect.extend_from_slice(&[1, 0, 4]);
        expect.extend_from_slice(PPS);
        assert_eq!(&bytes[..], &expect[..]);
        assert_eq!(AvcDecoderConfig::parse(&bytes).unwrap(), cfg);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            AvcDecoderConfig::from_parameter_sets(
                &[Bytes::from_static(&[0x67, 1])],
                &[Bytes::from_static(PPS)]
            ),
            Err(AvcConfigError::SpsTooShort { len: 2 })
        );
        assert_eq!(
            AvcDecoderConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[]),
            Err(AvcConfigError::MissingParameterSets)
        );
        let truncated = Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 9, 0x67]);
        assert!(matches!(
            AvcDecoderConfig::parse(&truncated),
            Err(AvcConfigError::Truncated { .. })
        ));
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from_static(&[2])),
            Err(AvcConfigError::BadVersion { version: 2 })
        );
    }
}
