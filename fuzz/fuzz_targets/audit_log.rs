//! `ringi audit verify` reads logs an attacker may have edited: any lines
//! give a verdict naming the first broken entry, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = ringi_policy::audit::verify(text.lines(), None);
});
