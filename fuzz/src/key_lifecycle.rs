//! The key lifecycle's untrusted inputs: what a compromised signer reports
//! of a key (read by the coordinator's import and refresh planning), and the
//! admins' key orders as any client can deliver them to a signer.
//!
//! Input: `mode (1) ‖ bytes`.
//! - mode 0: `bytes` is the `KeyShareInfo` signer "b" (registry
//!   identifier 2) reports, beside an honest signer "a" (identifier 1) and
//!   a signer "c" that is down, to `ringi::import::agree` for a 2-of-3 key.
//!   Whatever b says, a key is recorded only with a's genuine package (b
//!   alone is below the threshold);
//! - mode 1: the same `KeyShareInfo` from signer b to
//!   `ringi::refresh::plan` against the genuine record, beside honest a;
//!   a package to settle goes to `ringi::refresh::settle` with a's aborted
//!   vote and any vote of b's: it never rolls forward;
//! - mode 2: `bytes` is a `ringi.approval.v1.KeyOrder`: decoded
//!   (`ringi_proto::key_order`), signed by both harness admins where it
//!   carries no signatures, then `check_order` and, for a repair,
//!   `ringi_signer::repair::checked_order`.
//!
//! Reaches: protobuf decoding; the import's vote, package decoding and
//! threshold; the refresh plan's identity, group key and generation rules;
//! the order's field checks, admin signatures, expiry and quorum.

use std::sync::LazyLock;

use p256::ecdsa::signature::Signer;
use prost::Message;
use ringi::import::{Answer, agree};
use ringi::store::KeyRecord;
use ringi_frost::frost_core::keys::{IdentifierList, PublicKeyPackage, generate_with_dealer};
use ringi_frost::{KeyKind, Secp256k1};
use ringi_policy::key_id::KeyId;
use ringi_policy::key_order::check_order;
use ringi_policy::policy::Policy;
use ringi_proto::approval::v1 as apb;
use ringi_proto::signer::v1 as pb;

use crate::harness_keys::{KEY_ID, approver, policy_text};

crate::stages!(
    /// How far an input got.
    Reached {
        Short,
        Undecodable,
        /// A rule refused it (no agreement, an inconsistent plan, a bad
        /// order field, an order a rule refuses).
        Refused,
        /// The import recorded the key (the genuine package).
        Imported,
        /// The refresh plan accepted the signers' state.
        Planned,
        /// The order passed every rule.
        OrderAccepted,
    }
);

const NOW: u64 = 1_800_000_000;

/// A 2-of-3 key's genuine public key package and its record.
static GENUINE: LazyLock<(Vec<u8>, KeyRecord)> = LazyLock::new(|| {
    let (_, public): (_, PublicKeyPackage<Secp256k1>) =
        generate_with_dealer(3, 2, IdentifierList::Default, &mut rand::rngs::OsRng)
            .expect("a dealer key");
    let package = public.serialize().expect("the package encodes");
    let group = public
        .verifying_key()
        .serialize()
        .expect("the group key encodes");
    let record = KeyRecord {
        key_id: KeyId::parse(KEY_ID).expect("the harness key id"),
        kind: KeyKind::FrostSecp256k1,
        threshold: 2,
        signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
        group_public_key: group,
        public_key_package: package.clone(),
        created_at: 0,
    };
    (package, record)
});

/// The harness policy with alice and carol as admins (quorum 2).
static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::from_bytes(
        format!(
            "{}\n[governance]\nadmins = [\"alice\", \"carol\"]\nadmin_quorum = 2\n",
            policy_text()
        )
        .as_bytes(),
    )
    .expect("the key lifecycle fuzz policy loads")
});

fn honest(identifier: u32) -> pb::KeyShareInfo {
    let (package, record) = &*GENUINE;
    pb::KeyShareInfo {
        key_id: KEY_ID.into(),
        identifier,
        group_public_key: record.group_public_key.clone(),
        kind: KeyKind::FrostSecp256k1.as_str().into(),
        generation: 0,
        pending_generation: 0,
        public_key_package: package.clone(),
        pending_public_key_package: Vec::new(),
    }
}

pub fn run(data: &[u8]) -> Reached {
    let [mode, body @ ..] = data else {
        return Reached::Short;
    };
    match mode % 3 {
        0 | 1 => {
            let Ok(reported) = pb::KeyShareInfo::decode(body) else {
                return Reached::Undecodable;
            };
            let (package, record) = &*GENUINE;
            if mode % 3 == 0 {
                let answers = vec![
                    ("a".to_string(), 1, Answer::Holds(honest(1))),
                    ("b".to_string(), 2, Answer::Holds(reported)),
                    ("c".to_string(), 3, Answer::Unreachable("down".into())),
                ];
                match agree(&record.key_id, &answers, NOW as i64) {
                    Ok(agreed) => {
                        assert_eq!(
                            &agreed.record.public_key_package, package,
                            "one signer made another package win"
                        );
                        Reached::Imported
                    }
                    Err(_) => Reached::Refused,
                }
            } else {
                let a = honest(1);
                match ringi::refresh::plan(record, &[("a", 1, Some(&a)), ("b", 2, Some(&reported))])
                {
                    Ok(ringi::refresh::Plan::Fresh) => Reached::Planned,
                    Ok(ringi::refresh::Plan::Settle(package)) => {
                        // Whatever b votes, an honest a that holds no share
                        // of b's package makes it roll back, never forward.
                        for b_vote in [Some(true), Some(false), None] {
                            let votes = [("a", Some(false), &a), ("b", b_vote, &reported)];
                            if let Ok(ringi::refresh::Settlement::RollForward { .. }) =
                                ringi::refresh::settle(record, &package, &votes)
                            {
                                panic!("a refresh rolled forward over an honest signer's abort");
                            }
                        }
                        Reached::Planned
                    }
                    Err(_) => Reached::Refused,
                }
            }
        }
        _ => {
            let Ok(mut wire) = apb::KeyOrder::decode(body) else {
                return Reached::Undecodable;
            };
            if wire.signatures.is_empty() {
                // Signed on the fuzzer's behalf by both admins.
                let Ok(unsigned) = ringi_proto::key_order::order_from_pb(&wire) else {
                    return Reached::Refused;
                };
                for index in [0, 2] {
                    let (sk, admin) = approver(index);
                    let sig: p256::ecdsa::Signature =
                        sk.sign(&unsigned.order.signed_bytes(NOW, &admin));
                    wire.signatures
                        .push(ringi_proto::approval::v1::AdminSignature {
                            admin_public_key: admin.to_sec1(),
                            issued_at: NOW,
                            signature: sig.to_bytes().to_vec(),
                        });
                }
            }
            let Ok(signed) = ringi_proto::key_order::order_from_pb(&wire) else {
                return Reached::Refused;
            };
            match check_order(&POLICY, &signed, NOW) {
                Ok(admins) => {
                    assert!(admins.len() >= 2, "an order passed with {admins:?}");
                    // A repair's own reading of the order agrees.
                    if matches!(
                        signed.order.action,
                        ringi_policy::key_order::Action::Repair { .. }
                    ) {
                        ringi_signer::repair::checked_order(&POLICY, &signed, NOW)
                            .expect("an accepted repair order reads as one");
                    }
                    Reached::OrderAccepted
                }
                Err(_) => Reached::Refused,
            }
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let with = |mode: u8, body: Vec<u8>| {
        let mut v = vec![mode];
        v.extend(body);
        v
    };
    let recipient = {
        let sk = k256::SecretKey::from_slice(&[7; 32]).expect("a fixed scalar");
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        sk.public_key().to_encoded_point(true).as_bytes().to_vec()
    };
    let order = |action: &str, destroy_after, identifier, recipient: Vec<u8>| apb::KeyOrder {
        key_id: KEY_ID.into(),
        action: action.into(),
        destroy_after,
        identifier,
        recipient,
        expires_at: NOW + 600,
        signatures: Vec::new(),
        helpers: Vec::new(),
    };
    let helper = |identifier: u32, seed: u8| apb::RepairHelper {
        identifier,
        transport_key: {
            let sk = k256::SecretKey::from_slice(&[seed; 32]).expect("a fixed scalar");
            use k256::elliptic_curve::sec1::ToEncodedPoint;
            sk.public_key().to_encoded_point(true).as_bytes().to_vec()
        },
    };
    let repair = apb::KeyOrder {
        helpers: vec![helper(2, 8), helper(3, 9)],
        ..order("repair", 0, 1, recipient)
    };
    vec![
        with(0, honest(2).encode_to_vec()),
        with(1, honest(2).encode_to_vec()),
        with(
            2,
            order("retire", NOW + 3600, 0, Vec::new()).encode_to_vec(),
        ),
        with(2, repair.encode_to_vec()),
        with(2, order("refresh", 0, 0, Vec::new()).encode_to_vec()),
    ]
}
