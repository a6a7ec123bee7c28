//! Fuzzes the FLV demuxer: split invariance and re-mux round trip (harness in the library).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringcast::proto::flv::demux::fuzz_demux(data);
});
