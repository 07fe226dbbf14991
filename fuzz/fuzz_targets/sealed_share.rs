//! The sealed-share format read back from the token: decode never panics,
//! and what decodes encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringi_signer::sealed_share::SealedShare;

fuzz_target!(|data: &[u8]| {
    if let Ok(share) = SealedShare::decode(data) {
        assert_eq!(share.encode(), data, "decode/encode is not the identity");
        let _ = ringi_signer::sealed_share::aad("k", &share.header, b"kek");
    }
});
