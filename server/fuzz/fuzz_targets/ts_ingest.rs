#![no_main]
//! See `usher_server::fuzzing::ts_ingest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher_server::fuzzing::ts_ingest(data));
