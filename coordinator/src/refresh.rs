//! Refreshing a key's shares (frost `keys::refresh`, the refresh DKG): every
//! signer ends with a new share of the same group key, and a share copied
//! before (a stolen token backup) no longer combines with the new ones.
//!
//! The coordinator relays, as for a new key ([`crate::keygen::Run`]), and
//! sees no share. Steps:
//! 1. node info: every signer of the key holds it, under its identifier,
//!    with the coordinator's public key package ([`plan`], pure: also what
//!    an interrupted refresh left to finish or undo);
//! 2. round 1, 3. round 2, 4. finish: the refresh DKG; all signers must
//!    return the same new public key package, for the same group key;
//! 5. store: each signer seals its refreshed share **next to** the one in
//!    use (which keeps signing). If any fails, the stored ones are
//!    discarded on every signer and the old shares stay: nothing
//!    half-committed;
//! 6. record: the coordinator replaces the key's public key package (the
//!    point of no return: from here the refresh is finished, never undone);
//! 7. activate: each signer puts its refreshed share in use and destroys
//!    the old one in its token.
//!
//! A refresh stopped between 6 and 7 (a signer down, the coordinator
//! killed) is finished by running it again: [`plan`] sees signers whose
//! share in use is not the recorded one and activates their waiting share.
//! One stopped before 6 is undone the same way (waiting shares discarded)
//! and then run afresh.

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use rand::RngCore;
use ringi_frost::taproot::Secp256k1Tr;
use ringi_frost::{KeyKind, Secp256k1, Suite};
use ringi_policy::key_id::KeyId;
use ringi_proto::signer::v1 as pb;

use crate::error::{Error, KeygenError, LifecycleError, Result, SignerFailure, SignerFailures};
use crate::keygen::{Progress, Run};
use crate::registry::{Registry, Signer};
use crate::store::{KeyRecord, KeyStore, blocking};

pub const TOTAL_STEPS: u32 = 7;

/// What the signers' state asks of a refresh of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every signer uses the recorded shares; nothing waits: run a refresh.
    Fresh,
    /// A refresh stopped before it was recorded left refreshed shares
    /// waiting on these signers (name, generation): discard them, then run
    /// a refresh.
    DiscardThenFresh(Vec<(String, u32)>),
    /// A refresh was recorded but these signers (name, generation) have not
    /// put their refreshed share in use yet: activate it.
    Activate(Vec<(String, u32)>),
}

/// Decides what a refresh must do from what each signer of `record` reports
/// of the key (pure; `None`: the signer holds no share of it). Every signer
/// must hold the key under its recorded identifier and group key. A
/// signer whose share in use is not the recorded public key package must
/// have a refreshed share waiting (a refresh recorded but not activated
/// there); otherwise the signers and the coordinator disagree on the key
/// and nothing is done.
pub fn plan(
    record: &KeyRecord,
    shares: &[(&str, u16, Option<&pb::KeyShareInfo>)],
) -> std::result::Result<Plan, String> {
    let mut behind = Vec::new();
    let mut waiting = Vec::new();
    for (name, identifier, share) in shares {
        let Some(share) = share else {
            return Err(format!("signer {name} holds no share of the key"));
        };
        if share.identifier != u32::from(*identifier) {
            return Err(format!(
                "signer {name} holds identifier {} of the key, the coordinator records {identifier}",
                share.identifier
            ));
        }
        if share.group_public_key != record.group_public_key {
            return Err(format!(
                "signer {name} holds a share of another group key ({})",
                hex::encode(&share.group_public_key)
            ));
        }
        let current = share.public_key_package.is_empty() && share.generation == 0
            || share.public_key_package == record.public_key_package;
        match (current, share.pending_generation) {
            (true, 0) => {}
            (true, pending) => waiting.push((name.to_string(), pending)),
            (false, 0) => {
                return Err(format!(
                    "signer {name} uses a share of generation {} whose public key package is not the coordinator's, and has no refreshed share waiting (a coordinator restored from an older backup? re-import the key from the signers)",
                    share.generation
                ));
            }
            (false, pending) => behind.push((name.to_string(), pending)),
        }
    }
    match (behind.is_empty(), waiting.is_empty()) {
        (true, true) => Ok(Plan::Fresh),
        (true, false) => Ok(Plan::DiscardThenFresh(waiting)),
        (false, true) => Ok(Plan::Activate(behind)),
        (false, false) => Err(format!(
            "signers {} have a refreshed share waiting although they use the recorded one, while {} do not use it yet: inconsistent refresh state",
            names(&waiting),
            names(&behind)
        )),
    }
}

fn names(list: &[(String, u32)]) -> String {
    list.iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a refresh did.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The key as recorded now (same group key, new public key package).
    pub record: KeyRecord,
    /// It finished a refresh an earlier run had recorded (no new DKG).
    pub resumed: bool,
    /// Refreshed shares an interrupted earlier run had left waiting, now
    /// discarded (signer names).
    pub discarded: Vec<String>,
}

/// Refreshes (or finishes refreshing) `key_id`'s shares; `progress` is told
/// of every step. The one place a kind picks the refresh's suite.
///
/// `order` is the admins' refresh order, for a key whose rules set
/// `refresh_needs_order` (every signer checks it; the caller may too).
pub async fn run(
    registry: &Registry,
    store: &Arc<dyn KeyStore>,
    key_id: &KeyId,
    order: Option<&ringi_proto::approval::v1::KeyOrder>,
    progress: impl Fn(Progress),
) -> Result<Refreshed> {
    let record = {
        let store = store.clone();
        let id = key_id.clone();
        blocking(move || store.key(&id)).await?
    };
    match record.kind {
        KeyKind::FrostSecp256k1 => {
            run_suite::<Secp256k1>(registry, store, record, order, progress).await
        }
        KeyKind::BitcoinTaproot => {
            run_suite::<Secp256k1Tr>(registry, store, record, order, progress).await
        }
    }
}

/// The key's signers, as the registry knows them now.
fn signers_of(registry: &Registry, record: &KeyRecord) -> Result<Vec<Signer>> {
    record
        .signers
        .iter()
        .map(|(name, identifier)| {
            let signer = registry.get(name).ok_or_else(|| LifecycleError::Mismatch {
                key: record.key_id.clone(),
                reason: format!("signer {name} of the key is not in the coordinator's registry"),
            })?;
            if signer.identifier != *identifier {
                return Err(LifecycleError::Mismatch {
                    key: record.key_id.clone(),
                    reason: format!(
                        "signer {name} has identifier {} in the registry, the key records {identifier}",
                        signer.identifier
                    ),
                }
                .into());
            }
            Ok(signer.clone())
        })
        .collect()
}

async fn run_suite<C: Suite>(
    registry: &Registry,
    store: &Arc<dyn KeyStore>,
    record: KeyRecord,
    order: Option<&ringi_proto::approval::v1::KeyOrder>,
    progress: impl Fn(Progress),
) -> Result<Refreshed> {
    let key_id = record.key_id.clone();
    let signers = signers_of(registry, &record)?;
    let mut session_id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_id);
    let run = Run {
        key_id: &key_id,
        session_id: &session_id,
        threshold: u32::from(record.threshold),
        signers: &signers,
        refresh: Some(&record.public_key_package),
        order,
    };
    let mut step = 0;
    let timed = |step: &mut u32, description: &'static str| {
        *step += 1;
        progress(Progress::Started {
            step: *step,
            description,
        });
        (*step, Instant::now())
    };
    let done = |s: u32, t0: Instant| {
        progress(Progress::Finished {
            step: s,
            elapsed_ms: t0.elapsed().as_millis() as u64,
        })
    };

    let (s, t0) = timed(&mut step, "node info: every signer holds the key");
    let shares = run
        .node_info()
        .await
        .map_err(|e| refresh_error(&key_id, e))?;
    let listed: Vec<(&str, u16, Option<&pb::KeyShareInfo>)> = signers
        .iter()
        .zip(&shares.1)
        .map(|(signer, share)| (signer.name.as_str(), signer.identifier, share.as_ref()))
        .collect();
    let plan = plan(&record, &listed).map_err(|reason| LifecycleError::Mismatch {
        key: key_id.clone(),
        reason,
    })?;
    let mut discarded = Vec::new();
    match plan {
        Plan::Fresh => {}
        Plan::DiscardThenFresh(waiting) => {
            discard(&key_id, &signers, &waiting)
                .await
                .map_err(|failures| LifecycleError::Cleanup {
                    key: key_id.clone(),
                    failures,
                })?;
            tracing::info!(key_id = %key_id, signers = %names(&waiting), "discarded the refreshed shares an interrupted refresh left waiting");
            discarded = waiting.into_iter().map(|(n, _)| n).collect();
        }
        Plan::Activate(behind) => {
            done(s, t0);
            step = 6;
            let (s, t0) = timed(
                &mut step,
                "activate: signers put their refreshed share in use",
            );
            activate(&key_id, &signers, &behind).await?;
            done(s, t0);
            return Ok(Refreshed {
                record,
                resumed: true,
                discarded,
            });
        }
    }
    done(s, t0);

    let result = async {
        let (s, t0) = timed(&mut step, "round 1: refreshing commitments");
        let round1 = run.round1(&shares.0, C::KIND).await?;
        done(s, t0);
        let (s, t0) = timed(
            &mut step,
            "round 2: refreshing shares sealed to each recipient",
        );
        let sealed = run.round2(&round1).await?;
        done(s, t0);
        let (s, t0) = timed(
            &mut step,
            "finish: add the refreshing shares, check the group key",
        );
        let (package, group_key) = run.finish::<C>(&sealed).await?;
        done(s, t0);
        Ok::<_, Error>((package, group_key))
    }
    .await;
    let (package, group_key) = match result {
        Ok(v) => v,
        Err(e) => {
            run.abort().await;
            return Err(refresh_error(&key_id, e));
        }
    };
    if group_key != record.group_public_key {
        run.abort().await;
        return Err(LifecycleError::BadResult {
            key: key_id.clone(),
            reason: format!(
                "the signers' refreshed package names group key {}, not the key's {}",
                hex::encode(&group_key),
                hex::encode(&record.group_public_key)
            ),
        }
        .into());
    }

    let (s, t0) = timed(
        &mut step,
        "store: signers seal their refreshed share next to the one in use",
    );
    let generations = join_all(signers.iter().map(|s| {
        let mut client = s.client.clone();
        let req = pb::DkgCommitRequest {
            key_id: key_id.to_string(),
            session_id: session_id.clone(),
            group_public_key: group_key.clone(),
        };
        async move {
            client
                .dkg_commit(req)
                .await
                .map(|r| r.into_inner().generation)
        }
    }))
    .await;
    let mut stored = Vec::new();
    let mut failures = SignerFailures::default();
    for (signer, result) in signers.iter().zip(generations) {
        match result {
            Ok(generation) => stored.push((signer.name.clone(), generation)),
            Err(status) => failures.push(SignerFailure::status(&signer.name, &status)),
        }
    }
    if !failures.is_empty() {
        // Not every signer stored its refreshed share: undo everywhere, so
        // the old shares (still in use on every signer) stay the key's.
        let cleanup = discard(&key_id, &signers, &stored).await.err();
        return Err(LifecycleError::StoreIncomplete {
            key: key_id.clone(),
            failures,
            not_discarded: cleanup.map(|f| f.names().map(str::to_string).collect()),
        }
        .into());
    }
    done(s, t0);

    let (s, t0) = timed(
        &mut step,
        "record: the coordinator records the new public key package",
    );
    {
        let store = store.clone();
        let id = key_id.clone();
        let old = record.public_key_package.clone();
        let new = package.clone();
        blocking(move || store.replace_key_package(&id, &old, &new))
            .await
            .map_err(|e| LifecycleError::NotRecorded {
                key: key_id.clone(),
                reason: e.to_string(),
            })?;
    }
    done(s, t0);

    let (s, t0) = timed(
        &mut step,
        "activate: signers put their refreshed share in use",
    );
    activate(&key_id, &signers, &stored).await?;
    done(s, t0);
    Ok(Refreshed {
        record: KeyRecord {
            public_key_package: package,
            ..record
        },
        resumed: false,
        discarded,
    })
}

/// A DKG step's failure, told as the refresh's.
fn refresh_error(key_id: &KeyId, e: Error) -> Error {
    match e {
        Error::Keygen(KeygenError::Signers { failures, .. }) => LifecycleError::RefreshFailed {
            key: key_id.clone(),
            failures,
        }
        .into(),
        Error::Keygen(KeygenError::BadResult { reason, .. }) => LifecycleError::BadResult {
            key: key_id.clone(),
            reason,
        }
        .into(),
        other => other,
    }
}

/// DiscardShare on each listed signer (name, generation); every failure.
async fn discard(
    key_id: &KeyId,
    signers: &[Signer],
    list: &[(String, u32)],
) -> std::result::Result<(), SignerFailures> {
    let results = join_all(list.iter().map(|(name, generation)| {
        let signer = signers.iter().find(|s| s.name == *name);
        let req = pb::DiscardShareRequest {
            key_id: key_id.to_string(),
            generation: *generation,
        };
        async move {
            match signer {
                Some(s) => s.client.clone().discard_share(req).await.map(|_| ()),
                None => Err(tonic::Status::not_found("not a signer of the key")),
            }
        }
    }))
    .await;
    collect_failures(list, results)
}

/// ActivateShare on each listed signer (name, generation).
async fn activate(key_id: &KeyId, signers: &[Signer], list: &[(String, u32)]) -> Result<()> {
    let results = join_all(list.iter().map(|(name, generation)| {
        let signer = signers.iter().find(|s| s.name == *name);
        let req = pb::ActivateShareRequest {
            key_id: key_id.to_string(),
            generation: *generation,
        };
        async move {
            match signer {
                Some(s) => s.client.clone().activate_share(req).await.map(|_| ()),
                None => Err(tonic::Status::not_found("not a signer of the key")),
            }
        }
    }))
    .await;
    collect_failures(list, results).map_err(|failures| {
        LifecycleError::ActivationIncomplete {
            key: key_id.clone(),
            failures,
        }
        .into()
    })
}

fn collect_failures(
    list: &[(String, u32)],
    results: Vec<std::result::Result<(), tonic::Status>>,
) -> std::result::Result<(), SignerFailures> {
    let mut failures = SignerFailures::default();
    for ((name, _), result) in list.iter().zip(results) {
        if let Err(status) = result {
            failures.push(SignerFailure::status(name, &status));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            key_id: KeyId::parse("k").unwrap(),
            kind: KeyKind::FrostSecp256k1,
            threshold: 2,
            signers: vec![("a".into(), 1), ("b".into(), 2)],
            group_public_key: vec![2; 33],
            public_key_package: vec![7; 10],
            created_at: 0,
        }
    }

    fn share(identifier: u32, generation: u32, pending: u32, package: &[u8]) -> pb::KeyShareInfo {
        pb::KeyShareInfo {
            key_id: "k".into(),
            identifier,
            group_public_key: vec![2; 33],
            kind: "frost-secp256k1".into(),
            generation,
            pending_generation: pending,
            public_key_package: package.to_vec(),
        }
    }

    #[test]
    fn plans_from_what_the_signers_hold() {
        let r = record();
        let (a, b) = (share(1, 0, 0, &[7; 10]), share(2, 0, 0, &[7; 10]));
        assert_eq!(
            plan(&r, &[("a", 1, Some(&a)), ("b", 2, Some(&b))]),
            Ok(Plan::Fresh)
        );
        // A share sealed before packages were kept counts as current.
        let legacy = share(2, 0, 0, &[]);
        assert_eq!(
            plan(&r, &[("a", 1, Some(&a)), ("b", 2, Some(&legacy))]),
            Ok(Plan::Fresh)
        );
        // Stopped before the record: discard, then refresh.
        let waiting = share(2, 0, 1, &[7; 10]);
        assert_eq!(
            plan(&r, &[("a", 1, Some(&a)), ("b", 2, Some(&waiting))]),
            Ok(Plan::DiscardThenFresh(vec![("b".into(), 1)]))
        );
        // Recorded, a activated, b not yet: activate b.
        let behind = share(2, 0, 1, &[6; 10]);
        let ahead = share(1, 1, 0, &[7; 10]);
        assert_eq!(
            plan(&r, &[("a", 1, Some(&ahead)), ("b", 2, Some(&behind))]),
            Ok(Plan::Activate(vec![("b".into(), 1)]))
        );
    }

    #[test]
    fn refuses_signers_that_disagree_with_the_record() {
        let r = record();
        let a = share(1, 0, 0, &[7; 10]);
        let err = |shares: &[(&str, u16, Option<&pb::KeyShareInfo>)]| plan(&r, shares).unwrap_err();
        assert!(err(&[("a", 1, Some(&a)), ("b", 2, None)]).contains("signer b holds no share"));
        let wrong_id = share(3, 0, 0, &[7; 10]);
        assert!(err(&[("a", 1, Some(&a)), ("b", 2, Some(&wrong_id))]).contains("identifier 3"));
        let mut other_key = share(2, 0, 0, &[7; 10]);
        other_key.group_public_key = vec![3; 33];
        assert!(
            err(&[("a", 1, Some(&a)), ("b", 2, Some(&other_key))]).contains("another group key")
        );
        let unknown = share(2, 4, 0, &[5; 10]);
        assert!(err(&[("a", 1, Some(&a)), ("b", 2, Some(&unknown))]).contains("re-import the key"));
        let waiting = share(1, 0, 1, &[7; 10]);
        let behind = share(2, 0, 1, &[6; 10]);
        assert!(
            err(&[("a", 1, Some(&waiting)), ("b", 2, Some(&behind))])
                .contains("inconsistent refresh state")
        );
    }
}
