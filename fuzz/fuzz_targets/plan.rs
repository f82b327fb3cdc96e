#![no_main]
//! See fuzz/src/lib.rs, `plan_input`, for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| virt_l3_fuzz::plan_input(data));
