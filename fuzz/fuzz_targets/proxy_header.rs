//! Fuzzes the PROXY protocol v1/v2 header parser: no panic, and prefixes agree with the whole.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringcast::proto::proxy::fuzz_parse(data);
});
