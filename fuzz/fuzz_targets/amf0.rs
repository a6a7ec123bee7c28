//! Fuzzes the AMF0 decoder, re-encoding whatever decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcast::proto::amf0::fuzz_decode(data);
});
