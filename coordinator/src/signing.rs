//! One FROST signing (RFC 9591 section 5) run by the coordinator across any
//! `t` reachable signers of a key.
//!
//! Round 1 asks `t` signers for commitments at once; each one that fails is
//! replaced by another signer of the key until `t` have answered or none is
//! left. Round 2 sends the signing package to those `t`. Aggregation
//! (`frost::aggregate`) verifies the group signature against the group key
//! before it is returned, and on failure names the signer whose share was
//! wrong; the attempt is then repeated once without the failed signers.

use std::collections::{BTreeMap, HashSet};

use frost_secp256k1::keys::PublicKeyPackage;
use frost_secp256k1::round1::SigningCommitments;
use frost_secp256k1::round2::SignatureShare;
use frost_secp256k1::{Identifier, SigningPackage};
use futures::future::join_all;
use rand::seq::SliceRandom;
use ringi_proto::signer::v1 as pb;

use crate::error::{Error, Result, signer_failure};
use crate::registry::{Registry, Signer};
use crate::store::KeyRecord;

/// Longest message accepted.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;
/// Signing attempts before giving up (each with a fresh round 1).
const ATTEMPTS: usize = 2;

/// A key ready for signing: its record and its parsed public key package.
pub struct LoadedKey {
    pub record: KeyRecord,
    pub public: PublicKeyPackage,
}

impl LoadedKey {
    pub fn new(record: KeyRecord) -> Result<Self> {
        let public = PublicKeyPackage::deserialize(&record.public_key_package).map_err(|e| {
            Error::Internal(format!(
                "stored public key package of {:?} is corrupt: {e}",
                record.key_id
            ))
        })?;
        Ok(LoadedKey { record, public })
    }
}

/// A finished signing.
#[derive(Debug, Clone)]
pub struct Signed {
    /// 65 bytes: SEC1 compressed R ‖ z.
    pub signature: Vec<u8>,
    /// The signers whose shares formed it.
    pub signers: Vec<String>,
}

/// Orders the key's signers to try: exactly the requested ones, or all of
/// them shuffled (spreading load and not depending on any one node).
pub fn candidates(key: &KeyRecord, requested: &[String]) -> Result<Vec<(String, u16)>> {
    if requested.is_empty() {
        let mut all = key.signers.clone();
        all.shuffle(&mut rand::thread_rng());
        return Ok(all);
    }
    if requested.len() != key.threshold as usize {
        return Err(Error::InvalidArgument(format!(
            "key {:?} signs with exactly {} signers; {} were requested",
            key.key_id,
            key.threshold,
            requested.len()
        )));
    }
    let mut seen = HashSet::new();
    requested
        .iter()
        .map(|name| {
            if !seen.insert(name) {
                return Err(Error::InvalidArgument(format!(
                    "signer {name:?} is requested twice"
                )));
            }
            key.signers
                .iter()
                .find(|(n, _)| n == name)
                .cloned()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "signer {name:?} holds no share of key {:?}",
                        key.key_id
                    ))
                })
        })
        .collect()
}

/// Signs `message` with `key`, using the requested signers or any `t`.
/// `bundle` (the approved request and its approvals) goes to every signer in
/// both rounds; each signer checks it against its own pinned policy.
pub async fn sign(
    registry: &Registry,
    key: &LoadedKey,
    message: &[u8],
    requested: &[String],
    bundle: Option<&ringi_proto::approval::v1::ApprovalBundle>,
) -> Result<Signed> {
    if message.is_empty() || message.len() > MAX_MESSAGE_LEN {
        return Err(Error::InvalidArgument(format!(
            "message must be 1..={MAX_MESSAGE_LEN} bytes, got {}",
            message.len()
        )));
    }
    let order = candidates(&key.record, requested)?;
    let mut excluded: HashSet<String> = HashSet::new();
    let mut failures: Vec<String> = Vec::new();
    for _ in 0..ATTEMPTS {
        let pool: Vec<Signer> = order
            .iter()
            .filter(|(name, _)| !excluded.contains(name))
            .filter_map(|(name, id)| match registry.get(name) {
                Some(s) if s.identifier == *id => Some(s.clone()),
                Some(_) => {
                    failures.push(format!(
                        "signer {name}: registry identifier differs from the key's ({id})"
                    ));
                    None
                }
                None => {
                    failures.push(format!("signer {name}: not in the coordinator's registry"));
                    None
                }
            })
            .collect();
        match attempt(key, message, pool, bundle).await {
            Ok(signed) => return Ok(signed),
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry { failed, reasons }) => {
                failures.extend(reasons);
                excluded.extend(failed);
            }
        }
    }
    Err(Error::Unavailable(format!(
        "could not gather {} signature shares for key {:?}: {}",
        key.record.threshold,
        key.record.key_id,
        failures.join("; ")
    )))
}

enum AttemptError {
    Fatal(Error),
    Retry {
        failed: Vec<String>,
        reasons: Vec<String>,
    },
}

async fn attempt(
    key: &LoadedKey,
    message: &[u8],
    pool: Vec<Signer>,
    bundle: Option<&ringi_proto::approval::v1::ApprovalBundle>,
) -> Result<Signed, AttemptError> {
    let t = key.record.threshold as usize;
    let key_id = &key.record.key_id;
    let mut remaining = pool.into_iter();
    let mut chosen: Vec<(Signer, SigningCommitments)> = Vec::with_capacity(t);
    let mut failed = Vec::new();
    let mut reasons = Vec::new();

    // Round 1: keep asking until t signers have committed.
    while chosen.len() < t {
        let batch: Vec<Signer> = remaining.by_ref().take(t - chosen.len()).collect();
        if batch.is_empty() {
            return Err(AttemptError::Retry { failed, reasons });
        }
        let results = join_all(batch.iter().cloned().map(|mut s| {
            let req = pb::CommitRequest {
                key_id: key_id.clone(),
                approval_bundle: bundle.cloned(),
            };
            async move { s.client.commit(req).await.map(|r| r.into_inner()) }
        }))
        .await;
        for (signer, result) in batch.into_iter().zip(results) {
            match result
                .map_err(|st| signer_failure(&signer.name, &st))
                .and_then(|r| {
                    decode_commitments(&signer, &r)
                        .map_err(|m| format!("signer {}: {m}", signer.name))
                }) {
                Ok(c) => chosen.push((signer, c)),
                Err(reason) => {
                    reasons.push(reason);
                    failed.push(signer.name.clone());
                }
            }
        }
    }

    let commitments: BTreeMap<Identifier, SigningCommitments> = chosen
        .iter()
        .map(|(s, c)| (identifier(s.identifier), *c))
        .collect();
    let package = SigningPackage::new(commitments, message);
    let package_bytes = package
        .serialize()
        .map_err(|e| AttemptError::Fatal(Error::Internal(format!("signing package: {e}"))))?;

    // Round 2: every chosen signer must answer.
    let results = join_all(chosen.iter().map(|(s, _)| {
        let mut client = s.client.clone();
        let req = pb::SignRequest {
            key_id: key_id.clone(),
            signing_package: package_bytes.clone(),
            approval_bundle: bundle.cloned(),
        };
        async move { client.sign(req).await.map(|r| r.into_inner()) }
    }))
    .await;
    let mut shares: BTreeMap<Identifier, SignatureShare> = BTreeMap::new();
    for ((signer, _), result) in chosen.iter().zip(results) {
        match result
            .map_err(|st| signer_failure(&signer.name, &st))
            .and_then(|r| {
                SignatureShare::deserialize(&r.signature_share).map_err(|e| {
                    format!("signer {}: undecodable signature share: {e}", signer.name)
                })
            }) {
            Ok(share) => {
                shares.insert(identifier(signer.identifier), share);
            }
            Err(reason) => {
                reasons.push(reason);
                failed.push(signer.name.clone());
            }
        }
    }
    if shares.len() < t {
        return Err(AttemptError::Retry { failed, reasons });
    }

    // Aggregate; frost verifies the group signature and, if it fails,
    // checks each share to name the culprit.
    match frost_secp256k1::aggregate(&package, &shares, &key.public) {
        Ok(signature) => {
            let bytes = signature.serialize().map_err(|e| {
                AttemptError::Fatal(Error::Internal(format!("signature encoding: {e}")))
            })?;
            Ok(Signed {
                signature: bytes,
                signers: chosen.into_iter().map(|(s, _)| s.name).collect(),
            })
        }
        Err(e) => {
            let culprits: Vec<String> = e
                .culprits()
                .iter()
                .filter_map(|c| chosen.iter().find(|(s, _)| identifier(s.identifier) == *c))
                .map(|(s, _)| s.name.clone())
                .collect();
            reasons.push(format!(
                "aggregation failed ({e}); invalid shares from {culprits:?}"
            ));
            failed.extend(culprits);
            Err(AttemptError::Retry { failed, reasons })
        }
    }
}

fn decode_commitments(
    signer: &Signer,
    r: &pb::CommitResponse,
) -> std::result::Result<SigningCommitments, String> {
    if r.identifier != u32::from(signer.identifier) {
        return Err(format!(
            "answered as identifier {} but is registered as {}",
            r.identifier, signer.identifier
        ));
    }
    SigningCommitments::deserialize(&r.commitments)
        .map_err(|e| format!("undecodable commitments: {e}"))
}

fn identifier(n: u16) -> Identifier {
    Identifier::try_from(n).expect("registry identifiers are 1..=65535")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyRecord {
        KeyRecord {
            key_id: "k".into(),
            threshold: 2,
            signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
            group_public_key: vec![],
            public_key_package: vec![],
            created_at: 0,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn any_order_covers_every_signer() {
        let mut c = candidates(&key(), &[]).unwrap();
        c.sort();
        assert_eq!(c, key().signers);
    }

    #[test]
    fn requested_signers_are_used_exactly() {
        assert_eq!(
            candidates(&key(), &names(&["c", "a"])).unwrap(),
            vec![("c".to_string(), 3), ("a".to_string(), 1)]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        for (req, needle) in [
            (names(&["a"]), "exactly 2"),
            (names(&["a", "b", "c"]), "exactly 2"),
            (names(&["a", "a"]), "requested twice"),
            (names(&["a", "z"]), "holds no share"),
        ] {
            match candidates(&key(), &req) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{req:?}: {other:?}"),
            }
        }
    }
}
