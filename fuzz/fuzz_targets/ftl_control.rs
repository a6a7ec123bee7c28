//! Fuzzes the FTL control session with arbitrary client bytes at arbitrary split points.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::ftl::session::fuzz_control(data);
});
