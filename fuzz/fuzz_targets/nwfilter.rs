#![no_main]
//! See fuzz/src/lib.rs, `nwfilter`, for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| virt_l3_fuzz::nwfilter(data));
