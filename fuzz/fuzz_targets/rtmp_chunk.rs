//! Fuzzes the RTMP chunk decoder, and a server session (past a simple handshake) with the
//! same bytes as its chunk stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::rtmp::chunk::fuzz_decode(data);
    ringcast::proto::rtmp::session::fuzz_server(data);
});
