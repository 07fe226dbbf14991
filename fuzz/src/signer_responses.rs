//! What a compromised signer can send the coordinator: round-1 commitments,
//! round-2 signature shares and DKG finish results, through the
//! coordinator's decoders (`ringi::signing::decode_commitments`,
//! `decode_signature_share`, `ringi::keygen::agree_on_result`) and into
//! aggregation with cheater detection (`Suite::aggregate`, the engine's
//! step after decoding).
//!
//! Input: `mode (1) ‖ bytes`.
//! - mode 0: `bytes` is a `CommitResponse` from the signer registered as
//!   participant 2;
//! - mode 1: `bytes` is participant 2's `SignResponse` in a genuine 2-of-3
//!   signing with participant 1 (honest): the signature must verify if the
//!   share is participant 2's genuine one, and otherwise aggregation must
//!   fail naming participant 2, never participant 1;
//! - mode 2: `bytes` is a `DkgFinishResponse` from one signer beside two
//!   genuine ones (before or after them): the result is agreed only if it
//!   is byte-identical to theirs.
//!
//! Reaches: identifier checks, commitment and share deserialization, the
//! group-signature check and per-share verification naming culprits, and
//! the DKG result agreement and group-key consistency.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use frost_core::SigningPackage;
use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use frost_core::round2::SignatureShare;
use prost::Message;
use ringi_frost::{Secp256k1, Suite};
use ringi_proto::signer::v1 as pb;

type S = Secp256k1;

crate::stages!(
    /// How far an input got.
    Reached {
        Short,
        Undecodable,
        /// The decoder refused the answer.
        Refused,
        /// Commitments decoded.
        CommitmentsDecoded,
        /// A share decoded, and aggregation named its sender.
        CheaterNamed,
        /// A share decoded and formed a valid signature.
        Signed,
        /// DKG results agreed.
        Agreed,
    }
);

/// A 2-of-3 key, and a genuine signing by participants 1 and 2 over one
/// message: the package and both honest shares.
struct Genuine {
    public: PublicKeyPackage<S>,
    package: SigningPackage<S>,
    shares: BTreeMap<u16, SignatureShare<S>>,
}

static GENUINE: LazyLock<Genuine> = LazyLock::new(|| {
    let mut rng = rand::rngs::OsRng;
    let (secret, public) =
        frost_core::keys::generate_with_dealer::<S, _>(3, 2, IdentifierList::Default, &mut rng)
            .expect("a dealer key");
    let keys: Vec<KeyPackage<S>> = [1u16, 2]
        .iter()
        .map(|n| {
            let id = ringi_frost::identifier::<S>(*n).expect("a participant");
            KeyPackage::try_from(secret[&id].clone()).expect("a valid share")
        })
        .collect();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for k in &keys {
        let (n, c) = frost_core::round1::commit(k.signing_share(), &mut rng);
        nonces.insert(*k.identifier(), n);
        commitments.insert(*k.identifier(), c);
    }
    let package = SigningPackage::new(commitments, b"a genuine message");
    let shares = keys
        .iter()
        .map(|k| {
            let share = S::sign(&package, &nonces[k.identifier()], k).expect("an honest share");
            (
                S::participant_number(k.identifier()).expect("a number"),
                share,
            )
        })
        .collect();
    Genuine {
        public,
        package,
        shares,
    }
});

fn finish_result() -> pb::DkgFinishResponse {
    pb::DkgFinishResponse {
        public_key_package: GENUINE.public.serialize().expect("a package serializes"),
        group_public_key: GENUINE
            .public
            .verifying_key()
            .serialize()
            .expect("a key serializes"),
    }
}

pub fn run(data: &[u8]) -> Reached {
    let Some((&mode, bytes)) = data.split_first() else {
        return Reached::Short;
    };
    match mode % 3 {
        0 => {
            let Ok(answer) = pb::CommitResponse::decode(bytes) else {
                return Reached::Undecodable;
            };
            match ringi::signing::decode_commitments::<S>(2, &answer) {
                Ok(_) => Reached::CommitmentsDecoded,
                Err(_) => Reached::Refused,
            }
        }
        1 => {
            let Ok(answer) = pb::SignResponse::decode(bytes) else {
                return Reached::Undecodable;
            };
            let Ok(share) = ringi::signing::decode_signature_share::<S>(&answer) else {
                return Reached::Refused;
            };
            let id = |n: u16| ringi_frost::identifier::<S>(n).expect("a participant");
            let shares = BTreeMap::from([(id(1), GENUINE.shares[&1]), (id(2), share)]);
            match S::aggregate(&GENUINE.package, &shares, &GENUINE.public) {
                Ok(signature) => {
                    GENUINE
                        .public
                        .verifying_key()
                        .verify(GENUINE.package.message(), &signature)
                        .expect("an aggregated signature verifies");
                    Reached::Signed
                }
                Err(e) => {
                    assert_ne!(
                        share, GENUINE.shares[&2],
                        "the genuine share was refused: {e}"
                    );
                    assert_eq!(e.culprits(), vec![id(2)], "the wrong signer blamed: {e}");
                    Reached::CheaterNamed
                }
            }
        }
        _ => {
            let Some((&position, bytes)) = bytes.split_first() else {
                return Reached::Short;
            };
            let Ok(answer) = pb::DkgFinishResponse::decode(bytes) else {
                return Reached::Undecodable;
            };
            let genuine = finish_result();
            let mut results = vec![("a", &genuine), ("b", &genuine)];
            results.insert(usize::from(position) % 3, ("x", &answer));
            match ringi::keygen::agree_on_result::<S>(&results) {
                Ok((package, group)) => {
                    assert_eq!(answer, genuine, "a different result was agreed");
                    assert_eq!(package, genuine.public_key_package);
                    assert_eq!(group, genuine.group_public_key);
                    Reached::Agreed
                }
                Err(_) => Reached::Refused,
            }
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let with = |mode: u8, message: Vec<u8>| [vec![mode], message].concat();
    let commitments = pb::CommitResponse {
        identifier: 2,
        commitments: {
            let mut rng = rand::rngs::OsRng;
            let share =
                frost_core::keys::SigningShare::<S>::deserialize(&[1; 32]).expect("a scalar");
            let (_, c) = frost_core::round1::commit(&share, &mut rng);
            c.serialize().expect("commitments serialize")
        },
    };
    let genuine_share = pb::SignResponse {
        signature_share: GENUINE.shares[&2].serialize(),
    };
    let mut forged = genuine_share.clone();
    if let Some(b) = forged.signature_share.last_mut() {
        *b ^= 1;
    }
    let finish = finish_result();
    let mut other = finish.clone();
    other.group_public_key[1] ^= 1;
    vec![
        with(0, commitments.encode_to_vec()),
        with(1, genuine_share.encode_to_vec()),
        with(1, forged.encode_to_vec()),
        [vec![2, 1], finish.encode_to_vec()].concat(),
        [vec![2, 0], other.encode_to_vec()].concat(),
    ]
}
