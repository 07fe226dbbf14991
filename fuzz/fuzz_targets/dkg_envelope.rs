//! Sealed round-2 DKG packages arrive through the coordinator: opening any
//! bytes fails cleanly (they were not sealed with this binding), never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringi_signer::dkg_envelope::{Binding, open};

fuzz_target!(|data: &[u8]| {
    let binding = Binding {
        key_id: "k",
        session_id: &[7; 16],
        sender: 2,
        recipient: 1,
    };
    assert!(
        open(&binding, &[9; 32], data).is_err(),
        "random bytes opened as a sealed package"
    );
});
