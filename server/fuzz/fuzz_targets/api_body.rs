#![no_main]
//! See `usher_server::fuzzing::api_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::api_body(data));
