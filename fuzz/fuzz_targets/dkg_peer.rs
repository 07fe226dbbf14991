//! A DKG participant's attestation (certificate and signature) is relayed by
//! the coordinator: any bytes are refused cleanly, never accepted, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringi_signer::dkg_peer::{Attestation, PeerCheck, Peers};
use std::sync::LazyLock;

// Any self-signed CA will do: random bytes must not chain to it.
const CA_PEM: &str = include_str!("../ca.pem");

static CHECK: LazyLock<PeerCheck> = LazyLock::new(|| {
    let ca: Vec<_> = rustls_pemfile::certs(&mut CA_PEM.as_bytes())
        .collect::<Result<_, _>>()
        .expect("the fuzz CA parses");
    PeerCheck::new(&ca, Peers::AnyExcept(vec!["coordinator".into()])).expect("a CA")
});

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (key, rest) = data.split_at(33.min(data.len() / 2));
    let split = usize::from(rest[0]) % rest.len();
    let (certificate, signature) = rest[1..].split_at(split.min(rest.len() - 1));
    let attestation = Attestation {
        certificate: certificate.to_vec(),
        signature: signature.to_vec(),
    };
    assert!(CHECK.verify(key, Some(&attestation)).is_err());
});
