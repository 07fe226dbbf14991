//! A signer's DKG round inputs, relayed by the coordinator (so a
//! compromised coordinator chooses them): the round-1 request (participants,
//! numbers, threshold, transport keys, session id) and the other
//! participants' round-1 packages that round 2 consumes.
//!
//! Input: `DkgRound1Request` (protobuf, length-delimited) ‖
//! `DkgRound2Request` (protobuf). The round-1 request is checked by
//! `ringi_signer::dkg::check_round1` against the harness's own transport
//! key; if it passes, the harness plays this participant (FROST `part1`
//! with the checked numbers), decodes the round-2 request's packages with
//! `ringi_signer::dkg::decode_round1` and runs FROST `part2` on them, as
//! the node's round 2 does.
//!
//! Reaches: key id and session id checks, participant count and threshold
//! bounds, numbers 1..=65535 without repeats, this node present exactly
//! once with its own key, peers' keys decoding; packages keyed by valid
//! numbers and decoding; FROST's checks of the peers' commitments and
//! proofs of knowledge.

use std::collections::BTreeMap;

use prost::Message;
use ringi_frost::Secp256k1;
use ringi_policy::key_id::KeyId;
use ringi_proto::signer::v1 as pb;
use ringi_signer::dkg::{Participant, Round1Request, check_round1, decode_round1};
use ringi_signer::transport_key::{OwnKeys, TransportKey};

type S = Secp256k1;

crate::stages!(
    /// How far an input got.
    Reached {
        Undecodable,
        BadKeyId,
        Round1Refused,
        Round1Checked,
        PackagesRefused,
        PackagesDecoded,
        /// FROST refused the peers' packages (count, commitments, proofs).
        Part2Refused,
        /// FROST accepted the peers' packages: round 2 shares computed.
        Part2Done,
    }
);

/// The harness's own DKG transport key, SEC1 uncompressed.
fn own_key() -> Vec<u8> {
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = k256::SecretKey::from_slice(&[5; 32]).expect("a valid scalar");
    secret
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// The harness's own transport keys (its secp256k1 one).
fn own_keys() -> OwnKeys {
    OwnKeys::new(vec![
        TransportKey::from_wire(&own_key()).expect("a point on secp256k1"),
    ])
    .expect("one key")
}

pub fn run(data: &[u8]) -> Reached {
    let mut cursor = data;
    let Ok(r1) = pb::DkgRound1Request::decode_length_delimited(&mut cursor) else {
        return Reached::Undecodable;
    };
    let Ok(r2) = pb::DkgRound2Request::decode(cursor) else {
        return Reached::Undecodable;
    };
    let Ok(key_id) = KeyId::parse(&r1.key_id) else {
        return Reached::BadKeyId;
    };
    let request = Round1Request {
        key_id,
        session_id: r1.session_id,
        me: r1.identifier,
        min_signers: r1.min_signers,
        participants: r1
            .participants
            .into_iter()
            .map(|p| Participant {
                identifier: p.identifier,
                dkg_public_key: p.dkg_public_key,
                attestation: None,
            })
            .collect(),
    };
    let Ok(checked) = check_round1(&request, &own_keys()) else {
        return Reached::Round1Refused;
    };
    assert!(checked.min_signers >= 2 && checked.min_signers <= checked.max_signers);
    assert!(!checked.peers.contains_key(&checked.me));
    let Ok(packages) = decode_round1::<S>(&r2.round1_packages) else {
        return Reached::PackagesRefused;
    };
    let Some(me) = ringi_frost::identifier::<S>(checked.me) else {
        return Reached::Round1Checked;
    };
    let Ok((secret, _)) = frost_core::keys::dkg::part1::<S, _>(
        me,
        checked.max_signers,
        checked.min_signers,
        &mut rand::rngs::OsRng,
    ) else {
        return Reached::PackagesDecoded;
    };
    match frost_core::keys::dkg::part2(secret, &packages) {
        Ok(_) => Reached::Part2Done,
        Err(_) => Reached::Part2Refused,
    }
}

fn participant(identifier: u32, seed: u8) -> pb::DkgParticipant {
    let key = if seed == 5 {
        own_key()
    } else {
        let secret = k256::SecretKey::from_slice(&[seed; 32]).expect("a valid scalar");
        secret.public_key().to_sec1_bytes().to_vec()
    };
    pb::DkgParticipant {
        identifier,
        dkg_public_key: key,
        dkg_key_certificate: Vec::new(),
        dkg_key_signature: Vec::new(),
    }
}

/// A genuine 2-of-3 run in which the harness is participant 1, with the
/// round-1 packages of participants 2 and 3.
pub fn seeds() -> Vec<Vec<u8>> {
    let r1 = pb::DkgRound1Request {
        key_id: "k".into(),
        session_id: vec![7; 16],
        identifier: 1,
        min_signers: 2,
        participants: vec![participant(1, 5), participant(2, 6), participant(3, 7)],
        kind: String::new(),
        ..Default::default()
    };
    let mut packages = BTreeMap::new();
    for n in [2u16, 3] {
        let id = ringi_frost::identifier::<S>(n).expect("a participant");
        let (_, package) =
            frost_core::keys::dkg::part1::<S, _>(id, 3, 2, &mut rand::rngs::OsRng).expect("part1");
        packages.insert(
            u32::from(n),
            package.serialize().expect("a package serializes"),
        );
    }
    let r2 = pb::DkgRound2Request {
        key_id: "k".into(),
        session_id: vec![7; 16],
        round1_packages: packages,
    };
    let mut genuine = r1.encode_length_delimited_to_vec();
    genuine.extend(r2.encode_to_vec());
    let mut short = r1.encode_length_delimited_to_vec();
    let mut one = r2.clone();
    one.round1_packages.remove(&3);
    short.extend(one.encode_to_vec());
    let mut twice = r1.clone();
    twice.participants.push(participant(4, 5));
    let mut twice = twice.encode_length_delimited_to_vec();
    twice.extend(r2.encode_to_vec());
    vec![genuine, short, twice]
}
