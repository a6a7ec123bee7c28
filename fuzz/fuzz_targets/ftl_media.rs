//! Fuzzes the FTL media path on its own: what any UDP sender can reach once a stream has a media
//! port (RTP parse, SSRC/payload-type filter, reorder and NACK, H.264 FU-A/STAP-A depacketising,
//! Opus, frame assembly), fed length-prefixed datagrams with virtual time.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::ftl::media::fuzz_media(data);
});
