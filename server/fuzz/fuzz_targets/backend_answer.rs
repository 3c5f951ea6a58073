#![no_main]
//! See `usher_server::fuzzing::backend_answer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::backend_answer(data));
