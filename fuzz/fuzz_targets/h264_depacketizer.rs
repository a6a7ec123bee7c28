//! Fuzzes the H.264 RTP depacketiser with arbitrary payload sequences, flags and losses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::rtp::h264::fuzz_depacketize(data);
});
