//! Fuzzes the fstream handshake decoder: split invariance and re-encode round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringcast::proto::fstream::handshake::fuzz_handshake(data);
});
