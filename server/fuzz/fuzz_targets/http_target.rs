#![no_main]
//! See `usher_server::fuzzing::http_target`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::http_target(data));
