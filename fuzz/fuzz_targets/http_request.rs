//! Fuzzes the HTTP request head decoder: no panic, and whole and split input agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringcast::proto::http::request::fuzz_request(data);
});
