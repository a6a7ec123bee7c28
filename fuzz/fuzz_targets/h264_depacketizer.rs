//! Fuzzes the H.264 RTP depacketiser with arbitrary payload sequences, flags and losses, and the
//! whole FTL media path (RTP parse, reorder/NACK, depacketise, frame) with arbitrary datagrams.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::rtp::h264::fuzz_depacketize(data);
    ringcast::proto::ftl::media::fuzz_media(data);
});
