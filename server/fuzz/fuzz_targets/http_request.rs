#![no_main]
//! See `usher_server::fuzzing::http_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::http_request(data));
