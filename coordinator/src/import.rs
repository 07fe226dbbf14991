//! Re-registering a key from its signers (`ringi keys import-from-signers`):
//! the recovery of a coordinator whose database is lost. Every signer keeps,
//! sealed with its share, the key's public key package (group key, each
//! participant's verifying share, threshold) and its kind; the coordinator
//! asks every signer of its registry, and records the key only when a
//! threshold of them agree ([`agree`], pure).
//!
//! Why a threshold, and unanimity among those that answer: one signer (or
//! a few, fewer than could sign) could report a package of its choosing;
//! the threshold is the number of signers the key already trusts to act
//! together. While honest signers are down (likely during a recovery) a
//! compromised one must not outvote anyone, so any disagreement among the
//! signers that answer is refused with what each said, as is a package
//! backed by fewer than its threshold or naming a threshold below 2.
//!
//! A database lost in the middle of a refresh leaves signers that use the
//! old package with the refreshed one waiting, and perhaps some that use
//! the refreshed one already. A signer vouches for both packages it holds
//! (a refresh keeps the group key, participants and threshold); the key is
//! recorded with a package every answering signer holds, the one most of
//! them use, and `ringi keys refresh` then settles the refresh by the
//! signers' votes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use ringi_frost::frost_core::keys::PublicKeyPackage;
use ringi_frost::taproot::Secp256k1Tr;
use ringi_frost::{KeyKind, Secp256k1, Suite};
use ringi_policy::key_id::KeyId;
use ringi_proto::signer::v1 as pb;

use crate::error::{Error, LifecycleError, Result};
use crate::registry::Registry;
use crate::store::{KeyRecord, KeyStore, blocking};

/// What one registry signer answered about the key.
#[derive(Debug, Clone)]
pub enum Answer {
    /// It could not be asked (down, refused the call).
    Unreachable(String),
    /// It holds no share of the key.
    NoShare,
    Holds(pb::KeyShareInfo),
}

/// What a signer vouches for: the key's kind and public key package.
type Vouched = (String, Vec<u8>);

/// The outcome of [`agree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    pub record: KeyRecord,
    /// The signers whose package the record is.
    pub agreeing: Vec<String>,
    /// Every other registry signer, with why it did not count.
    pub others: Vec<String>,
}

/// Decides the key to record from each registry signer's answer (name,
/// registry identifier, answer), pure. See the module comment for the
/// rule; `created_at` is the time to record (the original is not known).
pub fn agree(
    key_id: &KeyId,
    answers: &[(String, u16, Answer)],
    created_at: i64,
) -> std::result::Result<Agreed, String> {
    // Who holds each (kind, package), and how many of them use it (not
    // just keep it waiting); and why the others do not count.
    let mut held: BTreeMap<Vouched, (Vec<&str>, usize)> = BTreeMap::new();
    let mut vouching: Vec<(&str, &[u8])> = Vec::new();
    let mut others = Vec::new();
    for (name, identifier, answer) in answers {
        match answer {
            Answer::Unreachable(why) => others.push(format!("{name}: unreachable ({why})")),
            Answer::NoShare => others.push(format!("{name}: holds no share of the key")),
            Answer::Holds(share) if share.public_key_package.is_empty() => others.push(format!(
                "{name}: its share was sealed without the public key package (before generation records); it cannot vouch for the key"
            )),
            Answer::Holds(share) if share.identifier != u32::from(*identifier) => {
                others.push(format!(
                    "{name}: holds identifier {} of the key, the registry gives it {identifier}",
                    share.identifier
                ))
            }
            Answer::Holds(share) => {
                vouching.push((name.as_str(), &share.public_key_package));
                let in_use = held
                    .entry((share.kind.clone(), share.public_key_package.clone()))
                    .or_default();
                in_use.0.push(name.as_str());
                in_use.1 += 1;
                if share.pending_generation != 0 && !share.pending_public_key_package.is_empty() {
                    held.entry((share.kind.clone(), share.pending_public_key_package.clone()))
                        .or_default()
                        .0
                        .push(name.as_str());
                }
            }
        }
    }
    let said = |others: &[String]| {
        if others.is_empty() {
            String::new()
        } else {
            format!(" ({})", others.join("; "))
        }
    };
    if vouching.is_empty() {
        return Err(format!("no signer vouches for the key{}", said(&others)));
    }
    // A package every vouching signer holds, the most used first.
    let common = held
        .iter()
        .filter(|(_, (names, _))| names.len() == vouching.len())
        .max_by_key(|(_, (_, in_use))| *in_use);
    let Some(((kind, package), (agreeing, _))) = common else {
        // During a recovery honest signers may be down: a package of a
        // minority is not outvoted but refused, so that one compromised
        // signer cannot plant a key of its own.
        let mut by_package: BTreeMap<&[u8], Vec<&str>> = BTreeMap::new();
        for (name, package) in &vouching {
            by_package.entry(package).or_default().push(name);
        }
        let mut groups: Vec<Vec<&str>> = by_package.into_values().collect();
        groups.sort_by_key(|names| std::cmp::Reverse(names.len()));
        let (first, rest) = groups
            .split_first()
            .map_or((Vec::new(), Vec::new()), |(f, r)| {
                (f.clone(), r.iter().flatten().copied().collect())
            });
        return Err(format!(
            "the signers disagree on the key: {} report one package, {} another; resolve that first{}",
            first.join(", "),
            if rest.is_empty() {
                "the others".to_string()
            } else {
                rest.join(", ")
            },
            said(&others)
        ));
    };
    let kind =
        KeyKind::parse(kind).map_err(|e| format!("the signers report kind {kind:?}: {e}"))?;
    let (group_key, threshold, identifiers) = match kind {
        KeyKind::FrostSecp256k1 => describe::<Secp256k1>(package)?,
        KeyKind::BitcoinTaproot => describe::<Secp256k1Tr>(package)?,
    };
    if threshold < 2 {
        return Err(format!(
            "the package the signers report has a threshold of {threshold}: no ringi key has fewer than 2"
        ));
    }
    if agreeing.len() < usize::from(threshold) {
        return Err(format!(
            "{} of the key's threshold of {threshold} signers vouch for it ({}){}",
            agreeing.len(),
            agreeing.join(", "),
            said(&others)
        ));
    }
    let mut signers = Vec::with_capacity(identifiers.len());
    for id in identifiers {
        let name = answers
            .iter()
            .find(|(_, registry_id, _)| *registry_id == id)
            .map(|(name, _, _)| name.clone())
            .ok_or_else(|| {
                format!("the key's participant {id} is no signer of the coordinator's registry")
            })?;
        signers.push((name, id));
    }
    let mut agreeing: Vec<String> = agreeing.iter().map(|n| n.to_string()).collect();
    agreeing.sort();
    Ok(Agreed {
        record: KeyRecord {
            key_id: key_id.clone(),
            kind,
            threshold,
            signers,
            group_public_key: group_key,
            public_key_package: package.clone(),
            created_at,
        },
        agreeing,
        others,
    })
}

/// The group key, threshold and participant numbers of a public key
/// package of suite `C`.
fn describe<C: Suite>(package: &[u8]) -> std::result::Result<(Vec<u8>, u16, Vec<u16>), String> {
    let public = PublicKeyPackage::<C>::deserialize(package)
        .map_err(|e| format!("the signers' public key package does not decode: {e}"))?;
    let group_key = public
        .verifying_key()
        .serialize()
        .map_err(|e| format!("the group key does not encode: {e}"))?;
    let threshold = public
        .min_signers()
        .ok_or("the signers' public key package names no threshold")?;
    let mut identifiers = Vec::new();
    for id in public.verifying_shares().keys() {
        identifiers.push(
            C::participant_number(id).ok_or("the package names an identifier that is no number")?,
        );
    }
    identifiers.sort_unstable();
    Ok((group_key, threshold, identifiers))
}

/// Asks every registry signer and records the key if a threshold agree.
pub async fn run(registry: &Registry, store: &Arc<dyn KeyStore>, key_id: &KeyId) -> Result<Agreed> {
    {
        let store = store.clone();
        let id = key_id.clone();
        if blocking(move || store.find_key(&id)).await?.is_some() {
            return Err(Error::KeyExists(key_id.clone()));
        }
    }
    let signers: Vec<_> = registry.signers().cloned().collect();
    let infos = join_all(signers.iter().map(|s| {
        let mut client = s.client.clone();
        async move { client.get_node_info(pb::GetNodeInfoRequest {}).await }
    }))
    .await;
    let answers: Vec<(String, u16, Answer)> = signers
        .iter()
        .zip(infos)
        .map(|(signer, info)| {
            let answer = match info {
                Err(status) => Answer::Unreachable(format!("{:?}", status.code())),
                Ok(info) => info
                    .into_inner()
                    .key_shares
                    .into_iter()
                    .find(|k| k.key_id == key_id.as_str())
                    .map_or(Answer::NoShare, Answer::Holds),
            };
            (signer.name.clone(), signer.identifier, answer)
        })
        .collect();
    let now = i64::try_from(ringi_policy::clock::now()).unwrap_or(i64::MAX);
    let agreed = agree(key_id, &answers, now).map_err(|reason| LifecycleError::NoAgreement {
        key: key_id.clone(),
        reason,
    })?;
    let store = store.clone();
    let record = agreed.record.clone();
    blocking(move || store.insert_key(&record)).await?;
    Ok(agreed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringi_frost::frost_core::keys::{IdentifierList, generate_with_dealer};

    fn package(n: u16, t: u16) -> (Vec<u8>, Vec<u8>) {
        let (_, public) = generate_with_dealer::<Secp256k1, _>(
            n,
            t,
            IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        (
            public.serialize().unwrap(),
            public.verifying_key().serialize().unwrap(),
        )
    }

    fn holds(identifier: u32, package: &[u8], group: &[u8]) -> Answer {
        Answer::Holds(pb::KeyShareInfo {
            key_id: "k".into(),
            identifier,
            group_public_key: group.to_vec(),
            kind: "frost-secp256k1".into(),
            generation: 0,
            pending_generation: 0,
            public_key_package: package.to_vec(),
            pending_public_key_package: Vec::new(),
        })
    }

    fn key() -> KeyId {
        KeyId::parse("k").unwrap()
    }

    /// Holds `package` in use and `waiting` as a refreshed share.
    fn mid_refresh(identifier: u32, package: &[u8], waiting: &[u8], group: &[u8]) -> Answer {
        let Answer::Holds(share) = holds(identifier, package, group) else {
            unreachable!()
        };
        Answer::Holds(pb::KeyShareInfo {
            pending_generation: 1,
            pending_public_key_package: waiting.to_vec(),
            ..share
        })
    }

    #[test]
    fn a_refresh_interrupted_with_the_database_is_imported_for_the_refresh_to_settle() {
        // Two packages of one key: the old one and its refreshed one (a
        // stand-in: the rule looks at bytes, the real refresh keeps the
        // group key, participants and threshold).
        let (old, g) = package(3, 2);
        let (new, _) = package(3, 2);
        // Nobody switched yet: the old package, in use everywhere.
        let waiting = vec![
            ("a".to_string(), 1, mid_refresh(1, &old, &new, &g)),
            ("b".to_string(), 2, mid_refresh(2, &old, &new, &g)),
            ("c".to_string(), 3, holds(3, &old, &g)),
        ];
        let agreed = agree(&key(), &waiting, 0).unwrap();
        assert_eq!(agreed.record.public_key_package, old);
        assert_eq!(agreed.agreeing.len(), 3);
        // One switched, the others wait: the refreshed one, which all hold.
        let switching = vec![
            ("a".to_string(), 1, holds(1, &new, &g)),
            ("b".to_string(), 2, mid_refresh(2, &old, &new, &g)),
            ("c".to_string(), 3, mid_refresh(3, &old, &new, &g)),
        ];
        let agreed = agree(&key(), &switching, 0).unwrap();
        assert_eq!(agreed.record.public_key_package, new);
        assert_eq!(agreed.agreeing.len(), 3);
        // A signer waiting on a package of its own plants nothing: the
        // package all hold is recorded.
        let (planted, _) = package(3, 2);
        let planting = vec![
            ("a".to_string(), 1, holds(1, &old, &g)),
            ("b".to_string(), 2, mid_refresh(2, &old, &planted, &g)),
            (
                "c".to_string(),
                3,
                Answer::Unreachable("Unavailable".into()),
            ),
        ];
        let agreed = agree(&key(), &planting, 0).unwrap();
        assert_eq!(agreed.record.public_key_package, old);
        // One switched while another never stored the refreshed share:
        // no package all hold (the votes cannot have allowed it).
        let split = vec![
            ("a".to_string(), 1, holds(1, &new, &g)),
            ("b".to_string(), 2, holds(2, &old, &g)),
        ];
        let err = agree(&key(), &split, 0).unwrap_err();
        assert!(err.contains("the signers disagree"), "{err}");
    }

    #[test]
    fn a_threshold_of_signers_agreeing_is_recorded_with_every_participant() {
        let (p, g) = package(3, 2);
        let answers = vec![
            ("a".to_string(), 1, holds(1, &p, &g)),
            (
                "b".to_string(),
                2,
                Answer::Unreachable("Unavailable".into()),
            ),
            ("c".to_string(), 3, holds(3, &p, &g)),
            ("d".to_string(), 4, Answer::NoShare),
        ];
        let agreed = agree(&key(), &answers, 5).unwrap();
        assert_eq!(agreed.record.threshold, 2);
        assert_eq!(agreed.record.group_public_key, g);
        assert_eq!(agreed.record.public_key_package, p);
        assert_eq!(
            agreed.record.signers,
            vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
            "the down signer stays a signer of the key"
        );
        assert_eq!(agreed.agreeing, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(agreed.others.len(), 2);
    }

    #[test]
    fn fewer_than_a_threshold_or_a_tie_is_refused() {
        let (p, g) = package(3, 2);
        let (q, h) = package(3, 2);
        let one = vec![
            ("a".to_string(), 1, holds(1, &p, &g)),
            (
                "b".to_string(),
                2,
                Answer::Unreachable("Unavailable".into()),
            ),
            ("c".to_string(), 3, holds(3, &q, &h)),
        ];
        let err = agree(&key(), &one, 0).unwrap_err();
        assert!(err.contains("the signers disagree"), "{err}");
        assert!(err.contains("b: unreachable"), "{err}");
        let alone = vec![
            ("a".to_string(), 1, holds(1, &p, &g)),
            (
                "b".to_string(),
                2,
                Answer::Unreachable("Unavailable".into()),
            ),
            ("c".to_string(), 3, Answer::NoShare),
        ];
        let err = agree(&key(), &alone, 0).unwrap_err();
        assert!(err.contains("1 of the key's threshold of 2"), "{err}");
        // A signer's package that claims a threshold of 1.
        let (_, honest) = generate_with_dealer::<Secp256k1, _>(
            3,
            2,
            IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let one_of_n = PublicKeyPackage::new(
            honest.verifying_shares().clone(),
            *honest.verifying_key(),
            Some(1),
        );
        let bytes = one_of_n.serialize().unwrap();
        let group = honest.verifying_key().serialize().unwrap();
        let planted = vec![("a".to_string(), 1, holds(1, &bytes, &group))];
        let err = agree(&key(), &planted, 0).unwrap_err();
        assert!(err.contains("threshold of 1"), "{err}");

        let (p5, g5) = package(5, 2);
        let (q5, h5) = package(5, 2);
        let tie: Vec<(String, u16, Answer)> = vec![
            ("a".to_string(), 1, holds(1, &p5, &g5)),
            ("b".to_string(), 2, holds(2, &p5, &g5)),
            ("c".to_string(), 3, holds(3, &q5, &h5)),
            ("d".to_string(), 4, holds(4, &q5, &h5)),
            ("e".to_string(), 5, Answer::NoShare),
        ];
        let err = agree(&key(), &tie, 0).unwrap_err();
        assert!(err.contains("the signers disagree"), "{err}");
    }

    #[test]
    fn identifiers_must_match_the_registry() {
        let (p, g) = package(3, 2);
        // b reports identifier 3 while the registry gives it 2: it does not
        // count, and a alone is too few.
        let answers = vec![
            ("a".to_string(), 1, holds(1, &p, &g)),
            ("b".to_string(), 2, holds(3, &p, &g)),
        ];
        let err = agree(&key(), &answers, 0).unwrap_err();
        assert!(err.contains("registry gives it 2"), "{err}");
        // A participant of the package with no registry signer.
        let answers = vec![
            ("a".to_string(), 1, holds(1, &p, &g)),
            ("b".to_string(), 2, holds(2, &p, &g)),
        ];
        let err = agree(&key(), &answers, 0).unwrap_err();
        assert!(err.contains("participant 3 is no signer"), "{err}");
        // Garbage does not decode.
        let answers = vec![
            ("a".to_string(), 1, holds(1, &[1, 2, 3], &g)),
            ("b".to_string(), 2, holds(2, &[1, 2, 3], &g)),
        ];
        assert!(
            agree(&key(), &answers, 0)
                .unwrap_err()
                .contains("does not decode")
        );
    }
}
