//! cargo-fuzz target: see `ringi_fuzz::key_order_file` for the input format
//! and the checks it reaches.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringi_fuzz::key_order_file::run(data);
});
