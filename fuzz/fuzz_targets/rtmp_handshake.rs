//! Fuzzes the server side of the RTMP handshake (C0/C1/C2, simple and digest).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::rtmp::handshake::fuzz_server(data);
});
