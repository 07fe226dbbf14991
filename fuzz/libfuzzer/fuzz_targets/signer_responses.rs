//! cargo-fuzz target: see `ringi_fuzz::signer_responses` for the input format
//! and the checks it reaches.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringi_fuzz::signer_responses::run(data);
});
