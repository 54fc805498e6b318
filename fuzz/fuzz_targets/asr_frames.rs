//! `bloodbank_fuzz::asr_frames` under libFuzzer (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bloodbank_fuzz::asr_frames(data));
