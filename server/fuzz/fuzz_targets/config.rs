#![no_main]
//! See `usher_server::fuzzing::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::config(data));
