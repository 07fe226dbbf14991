//! Whether each signer is fit to sign, and whether each key can be signed
//! now: the pure half of the coordinator's pre-flight
//! ([`crate::preflight`] asks the signers; [`assess`] judges).
//!
//! Why: a signer that pins another policy, holds a key under another
//! identifier, lacks a share or has lost its token is otherwise found only
//! at signing time, after the departments have approved. A key whose
//! signers cannot reach its threshold must say so before anyone approves.
//!
//! A signer can sign a key when, in the latest check, it answered, its
//! token serves, it pins the coordinator's policy, and it holds a share of
//! the key under the identifier, group key and public key package the
//! coordinator records. A key serves when at least its threshold of its
//! signers can, and it is not retired.

use std::collections::BTreeMap;

use ringi_proto::signer::v1 as pb;

use crate::store::KeyRecord;

/// What the pre-flight learnt from one signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// It did not answer (the reason as the call failed).
    Unreachable(String),
    Answered(NodeReport),
}

/// One signer's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// SHA-256 of the policy it enforces now.
    pub policy_hash: Vec<u8>,
    /// Its health for the signer API: false while its token is unavailable.
    pub token_serving: bool,
    /// The key shares it holds.
    pub shares: Vec<pb::KeyShareInfo>,
}

/// Why a signer cannot sign anything now. Each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerProblem {
    Unreachable(String),
    TokenUnavailable,
    OtherPolicy { theirs: Vec<u8>, ours: Vec<u8> },
}

impl std::fmt::Display for SignerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignerProblem::Unreachable(why) => write!(f, "unreachable ({why})"),
            SignerProblem::TokenUnavailable => {
                f.write_str("its token is unavailable (the signer reports NOT_SERVING)")
            }
            SignerProblem::OtherPolicy { theirs, ours } => write!(
                f,
                "pins policy {} while the coordinator's is {}",
                short(theirs),
                short(ours)
            ),
        }
    }
}

/// Why one signer cannot sign one key. Each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// The signer is unfit for any key ([`SignerProblem`]).
    Signer(String),
    NoShare(String),
    OtherIdentifier {
        signer: String,
        recorded: u16,
        held: u32,
    },
    OtherGroupKey(String),
    /// It uses another public key package than the recorded one (an
    /// unsettled refresh, or a coordinator restored from an old backup).
    OtherPackage(String),
    NotRegistered(String),
    /// The registry gives the signer another identifier than the key's.
    RegistryIdentifier {
        signer: String,
        registry: u16,
        recorded: u16,
    },
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Signer(name) => write!(f, "{name} cannot sign anything now"),
            KeyProblem::NoShare(name) => write!(f, "{name} holds no share of the key"),
            KeyProblem::OtherIdentifier {
                signer,
                recorded,
                held,
            } => write!(
                f,
                "{signer} holds identifier {held} of the key, the coordinator records {recorded} (swapped identities?)"
            ),
            KeyProblem::OtherGroupKey(name) => {
                write!(
                    f,
                    "{name} holds a share of another group key under this key id"
                )
            }
            KeyProblem::OtherPackage(name) => write!(
                f,
                "{name} uses another public key package than the recorded one (an unsettled refresh? run `ringi keys refresh`)"
            ),
            KeyProblem::NotRegistered(name) => {
                write!(f, "{name} is a signer of the key but not in the registry")
            }
            KeyProblem::RegistryIdentifier {
                signer,
                registry,
                recorded,
            } => write!(
                f,
                "the registry gives {signer} identifier {registry}, the key records {recorded} (swapped in the configuration?)"
            ),
        }
    }
}

/// One signer's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerReadiness {
    pub name: String,
    pub identifier: u16,
    pub problems: Vec<SignerProblem>,
    /// As reported (empty when unreachable).
    pub policy_hash: Vec<u8>,
    pub token_serving: bool,
    pub key_ids: Vec<String>,
}

/// One key's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReadiness {
    pub key_id: String,
    pub threshold: u16,
    /// Its signers that can sign it now.
    pub able: Vec<String>,
    pub problems: Vec<KeyProblem>,
    pub retired: bool,
}

impl KeyReadiness {
    /// At least the threshold of its signers can sign it, and it is not
    /// retired.
    pub fn serving(&self) -> bool {
        !self.retired && self.able.len() >= usize::from(self.threshold)
    }
}

/// The whole picture of one check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readiness {
    pub signers: Vec<SignerReadiness>,
    pub keys: Vec<KeyReadiness>,
}

/// Judges one check (pure): `ours` is the coordinator's policy hash,
/// `registry` every registered signer (name, identifier), `keys` every
/// key with whether it is retired, `seen` what each signer answered.
pub fn assess(
    ours: &[u8],
    registry: &[(String, u16)],
    keys: &[(KeyRecord, bool)],
    seen: &BTreeMap<String, Seen>,
) -> Readiness {
    let mut signers = Vec::with_capacity(registry.len());
    let mut fit: BTreeMap<&str, &NodeReport> = BTreeMap::new();
    for (name, identifier) in registry {
        let mut problems = Vec::new();
        let (policy_hash, token_serving, key_ids) = match seen.get(name) {
            None => {
                problems.push(SignerProblem::Unreachable("not checked yet".into()));
                (Vec::new(), false, Vec::new())
            }
            Some(Seen::Unreachable(why)) => {
                problems.push(SignerProblem::Unreachable(why.clone()));
                (Vec::new(), false, Vec::new())
            }
            Some(Seen::Answered(report)) => {
                if !report.token_serving {
                    // Nothing else is asked of a signer without its token.
                    problems.push(SignerProblem::TokenUnavailable);
                } else if report.policy_hash != ours {
                    problems.push(SignerProblem::OtherPolicy {
                        theirs: report.policy_hash.clone(),
                        ours: ours.to_vec(),
                    });
                }
                if problems.is_empty() {
                    fit.insert(name.as_str(), report);
                }
                (
                    report.policy_hash.clone(),
                    report.token_serving,
                    report.shares.iter().map(|s| s.key_id.clone()).collect(),
                )
            }
        };
        signers.push(SignerReadiness {
            name: name.clone(),
            identifier: *identifier,
            problems,
            policy_hash,
            token_serving,
            key_ids,
        });
    }
    let keys = keys
        .iter()
        .map(|(record, retired)| {
            let mut able = Vec::new();
            let mut problems = Vec::new();
            for (name, identifier) in &record.signers {
                match registry.iter().find(|(n, _)| n == name) {
                    None => {
                        problems.push(KeyProblem::NotRegistered(name.clone()));
                        continue;
                    }
                    Some((_, registered)) if registered != identifier => {
                        problems.push(KeyProblem::RegistryIdentifier {
                            signer: name.clone(),
                            registry: *registered,
                            recorded: *identifier,
                        });
                        continue;
                    }
                    Some(_) => {}
                }
                let Some(report) = fit.get(name.as_str()) else {
                    problems.push(KeyProblem::Signer(name.clone()));
                    continue;
                };
                match check_share(record, name, *identifier, report) {
                    Ok(()) => able.push(name.clone()),
                    Err(problem) => problems.push(problem),
                }
            }
            KeyReadiness {
                key_id: record.key_id.to_string(),
                threshold: record.threshold,
                able,
                problems,
                retired: *retired,
            }
        })
        .collect();
    Readiness { signers, keys }
}

/// Whether `report` holds the share of `record` the coordinator expects of
/// signer `name` (participant `identifier`).
fn check_share(
    record: &KeyRecord,
    name: &str,
    identifier: u16,
    report: &NodeReport,
) -> Result<(), KeyProblem> {
    let share = report
        .shares
        .iter()
        .find(|s| s.key_id == record.key_id.as_str())
        .ok_or_else(|| KeyProblem::NoShare(name.to_string()))?;
    if share.identifier != u32::from(identifier) {
        return Err(KeyProblem::OtherIdentifier {
            signer: name.to_string(),
            recorded: identifier,
            held: share.identifier,
        });
    }
    if share.group_public_key != record.group_public_key {
        return Err(KeyProblem::OtherGroupKey(name.to_string()));
    }
    // A share sealed before packages were kept reports none.
    if !share.public_key_package.is_empty() && share.public_key_package != record.public_key_package
    {
        return Err(KeyProblem::OtherPackage(name.to_string()));
    }
    Ok(())
}

/// The first bytes of a hash, for messages.
fn short(hash: &[u8]) -> String {
    if hash.is_empty() {
        "(none)".into()
    } else {
        format!("{}…", hex::encode(&hash[..hash.len().min(6)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringi_frost::KeyKind;
    use ringi_policy::key_id::KeyId;

    const OURS: &[u8] = &[1; 32];

    fn record() -> KeyRecord {
        KeyRecord {
            key_id: KeyId::parse("k").unwrap(),
            kind: KeyKind::FrostSecp256k1,
            threshold: 2,
            signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
            group_public_key: vec![2; 33],
            public_key_package: vec![7; 10],
            created_at: 0,
        }
    }

    fn share(identifier: u32) -> pb::KeyShareInfo {
        pb::KeyShareInfo {
            key_id: "k".into(),
            identifier,
            group_public_key: vec![2; 33],
            kind: "frost-secp256k1".into(),
            public_key_package: vec![7; 10],
            ..Default::default()
        }
    }

    fn answered(shares: Vec<pb::KeyShareInfo>) -> Seen {
        Seen::Answered(NodeReport {
            policy_hash: OURS.to_vec(),
            token_serving: true,
            shares,
        })
    }

    fn registry() -> Vec<(String, u16)> {
        vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]
    }

    fn all_well() -> BTreeMap<String, Seen> {
        [
            ("a".to_string(), answered(vec![share(1)])),
            ("b".to_string(), answered(vec![share(2)])),
            ("c".to_string(), answered(vec![share(3)])),
        ]
        .into()
    }

    #[test]
    fn a_key_serves_while_its_threshold_of_signers_can_sign() {
        let keys = [(record(), false)];
        let r = assess(OURS, &registry(), &keys, &all_well());
        assert!(r.signers.iter().all(|s| s.problems.is_empty()));
        assert_eq!(r.keys[0].able, ["a", "b", "c"]);
        assert!(r.keys[0].serving());

        let mut seen = all_well();
        seen.insert("c".into(), Seen::Unreachable("connection refused".into()));
        let r = assess(OURS, &registry(), &keys, &seen);
        assert!(r.keys[0].serving(), "two of three still sign");
        assert_eq!(
            r.signers[2].problems,
            [SignerProblem::Unreachable("connection refused".into())]
        );

        seen.insert(
            "b".into(),
            Seen::Answered(NodeReport {
                token_serving: false,
                ..match answered(vec![share(2)]) {
                    Seen::Answered(r) => r,
                    Seen::Unreachable(_) => unreachable!(),
                }
            }),
        );
        let r = assess(OURS, &registry(), &keys, &seen);
        assert!(!r.keys[0].serving());
        assert_eq!(r.keys[0].able, ["a"]);
        assert_eq!(r.signers[1].problems, [SignerProblem::TokenUnavailable]);
        // Retired keys never serve.
        let r = assess(OURS, &registry(), &[(record(), true)], &all_well());
        assert!(!r.keys[0].serving());
    }

    #[test]
    fn names_what_keeps_a_signer_from_signing_a_key() {
        let keys = [(record(), false)];
        let mut seen = all_well();
        // a pins another policy; b holds identifier 3; c holds no share.
        seen.insert(
            "a".into(),
            Seen::Answered(NodeReport {
                policy_hash: vec![9; 32],
                token_serving: true,
                shares: vec![share(1)],
            }),
        );
        seen.insert("b".into(), answered(vec![share(3)]));
        seen.insert("c".into(), answered(Vec::new()));
        let r = assess(OURS, &registry(), &keys, &seen);
        assert!(matches!(
            r.signers[0].problems[..],
            [SignerProblem::OtherPolicy { .. }]
        ));
        assert!(r.signers[0].problems[0].to_string().contains("010101"));
        assert_eq!(
            r.keys[0].problems,
            [
                KeyProblem::Signer("a".into()),
                KeyProblem::OtherIdentifier {
                    signer: "b".into(),
                    recorded: 2,
                    held: 3
                },
                KeyProblem::NoShare("c".into()),
            ]
        );
        assert!(!r.keys[0].serving());

        // Another group key, another package, a signer not registered.
        let mut other_group = share(1);
        other_group.group_public_key = vec![3; 33];
        let mut other_package = share(2);
        other_package.public_key_package = vec![8; 10];
        let seen: BTreeMap<_, _> = [
            ("a".to_string(), answered(vec![other_group])),
            ("b".to_string(), answered(vec![other_package])),
        ]
        .into();
        let registry = vec![("a".to_string(), 1), ("b".to_string(), 2)];
        let r = assess(OURS, &registry, &keys, &seen);
        assert_eq!(
            r.keys[0].problems,
            [
                KeyProblem::OtherGroupKey("a".into()),
                KeyProblem::OtherPackage("b".into()),
                KeyProblem::NotRegistered("c".into()),
            ]
        );
        // The registry swaps a's and b's identifiers.
        let swapped = vec![("a".to_string(), 2), ("b".to_string(), 1)];
        let seen: BTreeMap<_, _> = [
            ("a".to_string(), answered(vec![share(1)])),
            ("b".to_string(), answered(vec![share(2)])),
        ]
        .into();
        let r = assess(OURS, &swapped, &keys, &seen);
        assert_eq!(
            r.keys[0].problems[..2],
            [
                KeyProblem::RegistryIdentifier {
                    signer: "a".into(),
                    registry: 2,
                    recorded: 1
                },
                KeyProblem::RegistryIdentifier {
                    signer: "b".into(),
                    registry: 1,
                    recorded: 2
                },
            ]
        );
        // A share sealed before packages were kept is not held against it.
        let mut legacy = share(1);
        legacy.public_key_package.clear();
        let seen: BTreeMap<_, _> = [
            ("a".to_string(), answered(vec![legacy])),
            ("b".to_string(), answered(vec![share(2)])),
        ]
        .into();
        let r = assess(OURS, &registry, &keys, &seen);
        assert_eq!(r.keys[0].able, ["a", "b"]);
    }
}
