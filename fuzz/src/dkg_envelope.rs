//! Sealed round-2 DKG packages arrive through the coordinator
//! (`ringi_signer::dkg_envelope::open`).
//!
//! Input: `mode (1) ‖ position (2, BE) ‖ xor (1) ‖ bytes`.
//! - mode 0: `bytes` as a sealed package: it never opens (only the holder
//!   of the ECDH secret can seal one);
//! - mode 1: the harness seals `bytes` as a package for the binding (as a
//!   peer would), then opens it: it must give `bytes` back, and must not
//!   open under another binding (sender, recipient, key id or session);
//! - mode 2: the harness seals `bytes`, flips bits at `position` (modulo
//!   the length) with `xor`: an altered envelope never opens.
//!
//! Reaches: the length and version checks, HKDF over the binding, the
//! AES-256-GCM tag, and the binding's coverage of every field.

use ringi_signer::dkg_envelope::{Binding, Contents, open, seal};

crate::stages!(
    /// How far an input got.
    Reached {
        Short,
        /// Random bytes refused.
        Refused,
        /// A genuine envelope, altered, refused.
        AlteredRefused,
        /// A genuine envelope opened to its package, and nowhere else.
        RoundTrip,
    }
);

const SHARED_X: [u8; 32] = [9; 32];

fn binding() -> Binding<'static> {
    Binding {
        contents: Contents::DkgRound2,
        key_id: "k",
        session_id: &[7; 16],
        sender: 2,
        recipient: 1,
    }
}

pub fn run(data: &[u8]) -> Reached {
    let [mode, p0, p1, xor, bytes @ ..] = data else {
        return Reached::Short;
    };
    let b = binding();
    match mode % 3 {
        0 => {
            assert!(
                open(&b, &SHARED_X, bytes).is_err(),
                "bytes the harness did not seal opened"
            );
            Reached::Refused
        }
        1 => {
            let sealed = seal(&b, &SHARED_X, bytes).expect("sealing never fails");
            let opened = open(&b, &SHARED_X, &sealed).expect("a genuine envelope opens");
            assert_eq!(opened.as_slice(), bytes);
            let others = [
                Binding {
                    contents: Contents::DkgRound2,
                    sender: 3,
                    ..binding()
                },
                Binding {
                    contents: Contents::DkgRound2,
                    recipient: 3,
                    ..binding()
                },
                Binding {
                    contents: Contents::DkgRound2,
                    key_id: "k2",
                    ..binding()
                },
                Binding {
                    contents: Contents::DkgRound2,
                    session_id: &[8; 16],
                    ..binding()
                },
            ];
            for other in &others {
                assert!(
                    open(other, &SHARED_X, &sealed).is_err(),
                    "opened under another binding"
                );
            }
            assert!(
                open(&b, &[8; 32], &sealed).is_err(),
                "opened with another secret"
            );
            Reached::RoundTrip
        }
        _ => {
            let mut sealed = seal(&b, &SHARED_X, bytes).expect("sealing never fails");
            let at = usize::from(u16::from_be_bytes([*p0, *p1])) % sealed.len();
            let flip = if *xor == 0 { 1 } else { *xor };
            sealed[at] ^= flip;
            assert!(
                open(&b, &SHARED_X, &sealed).is_err(),
                "an altered envelope opened"
            );
            Reached::AlteredRefused
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let package = b"a round-2 package of some length".to_vec();
    vec![
        [&[0u8, 0, 0, 0][..], &package].concat(),
        [&[1u8, 0, 0, 0][..], &package].concat(),
        [&[2u8, 0, 5, 0x80][..], &package].concat(),
        [&[1u8, 0, 0, 0][..], &[][..]].concat(),
    ]
}
