//! TODO(avc): AVC decoder configuration record from SPS/PPS, owned by the FTL work.
