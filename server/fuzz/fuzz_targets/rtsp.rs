#![no_main]
//! See `usher_server::fuzzing::rtsp`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::rtsp(data));
