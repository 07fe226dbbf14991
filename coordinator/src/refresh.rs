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
//!    use (which keeps signing) and returns its `stored` vote sealed to
//!    every other signer. If any fails, the refresh is settled by the
//!    signers' votes ([`settle`]): a signer that did not store votes
//!    `aborted`, and on that vote the others discard theirs; nothing
//!    half-committed;
//! 6. record: the coordinator replaces the key's public key package (from
//!    here the refresh is finished, never undone);
//! 7. activate: each signer puts its refreshed share in use and destroys
//!    the old one in its token, on every other signer's `stored` vote.
//!
//! The signers check the votes themselves (`ringi-signer`'s
//! `refresh_vote.rs`): a compromised coordinator cannot switch some
//! signers and drop the others' refreshed shares, which would split the
//! key into generations below the threshold.
//!
//! A refresh stopped anywhere (a signer down, the coordinator killed) is
//! settled by running it again: [`plan`] finds the refreshed package some
//! signer still holds waiting (or in use but not recorded), every signer
//! votes on it, and [`settle`] rolls it forward (all stored: record,
//! activate) or back (one aborted: discard), then a fresh refresh runs if
//! it was rolled back.

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
    /// An earlier refresh to this public key package stopped midway (a
    /// signer holds a share of it waiting, or in use while the coordinator
    /// records another): settle it by the signers' votes ([`settle`])
    /// first.
    Settle(Vec<u8>),
}

/// Decides what a refresh must do from what each signer of `record` reports
/// of the key (pure; `None`: the signer holds no share of it). Every signer
/// must hold the key under its recorded identifier and group key. The
/// refreshed package of an interrupted refresh is the one a signer holds
/// waiting, or uses without a waiting share while the coordinator records
/// another; there can be only one (a signer refuses a refresh while a
/// share waits), otherwise the signers and the coordinator disagree on the
/// key and nothing is done.
pub fn plan(
    record: &KeyRecord,
    shares: &[(&str, u16, Option<&pb::KeyShareInfo>)],
) -> std::result::Result<Plan, String> {
    let mut unsettled: Vec<(&str, &[u8])> = Vec::new();
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
        if share.pending_generation != 0 {
            if share.pending_public_key_package.is_empty() {
                return Err(format!(
                    "signer {name} has a refreshed share of generation {} waiting but does not report its public key package",
                    share.pending_generation
                ));
            }
            unsettled.push((name, &share.pending_public_key_package));
        } else if !current {
            unsettled.push((name, &share.public_key_package));
        }
    }
    let Some((_, package)) = unsettled.first() else {
        return Ok(Plan::Fresh);
    };
    if let Some((other, _)) = unsettled.iter().find(|(_, p)| p != package) {
        return Err(format!(
            "signers {} and {other} hold shares of different refreshed public key packages: inconsistent refresh state (a coordinator restored from an older backup? re-import the key from the signers)",
            unsettled[0].0
        ));
    }
    Ok(Plan::Settle(package.to_vec()))
}

/// How an interrupted refresh ends, by the signers' votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every signer holds a share of the refreshed package: record it (if
    /// `record`), then activate these signers' (name, generation) waiting
    /// shares.
    RollForward {
        record: bool,
        activate: Vec<(String, u32)>,
    },
    /// A signer holds none and never will: discard these signers' (name,
    /// generation) waiting shares; the recorded shares stay.
    RollBack { discard: Vec<(String, u32)> },
}

/// Decides how the refresh to `package` ends (pure) from each signer's
/// vote (`Some(true)`: stored, `Some(false)`: aborted, `None`: no answer)
/// and what it reports of the key (as for [`plan`]). Every signer must
/// have voted: a missing vote might be the one that decides.
pub fn settle(
    record: &KeyRecord,
    package: &[u8],
    votes: &[(&str, Option<bool>, &pb::KeyShareInfo)],
) -> std::result::Result<Settlement, String> {
    let silent: Vec<&str> = votes
        .iter()
        .filter(|(_, v, _)| v.is_none())
        .map(|(n, _, _)| *n)
        .collect();
    if !silent.is_empty() {
        return Err(format!(
            "signers {} did not vote on the interrupted refresh: it cannot be settled without them",
            silent.join(", ")
        ));
    }
    let waiting: Vec<(String, u32)> = votes
        .iter()
        .filter(|(_, _, s)| s.pending_generation != 0 && s.pending_public_key_package == package)
        .map(|(n, _, s)| (n.to_string(), s.pending_generation))
        .collect();
    let aborted: Vec<&str> = votes
        .iter()
        .filter(|(_, v, _)| *v == Some(false))
        .map(|(n, _, _)| *n)
        .collect();
    if aborted.is_empty() {
        return Ok(Settlement::RollForward {
            record: record.public_key_package != package,
            activate: waiting,
        });
    }
    let using: Vec<&str> = votes
        .iter()
        .filter(|(_, _, s)| s.pending_generation == 0 && s.public_key_package == package)
        .map(|(n, _, _)| *n)
        .collect();
    if record.public_key_package == package || !using.is_empty() {
        return Err(format!(
            "signers {} voted that they hold no share of the refreshed package, yet it is {}: inconsistent refresh state",
            aborted.join(", "),
            if using.is_empty() {
                "recorded".to_string()
            } else {
                format!("in use on {}", using.join(", "))
            }
        ));
    }
    Ok(Settlement::RollBack { discard: waiting })
}

/// The votes sealed to `recipient` (by sender identifier), from the
/// signers' votes as each returned them (sender identifier, sealed to each
/// recipient).
pub fn votes_for(
    recipient: u16,
    cast: &[(u16, std::collections::BTreeMap<u32, Vec<u8>>)],
) -> std::collections::BTreeMap<u32, Vec<u8>> {
    cast.iter()
        .filter(|(sender, _)| *sender != recipient)
        .filter_map(|(sender, sealed)| {
            sealed
                .get(&u32::from(recipient))
                .map(|v| (u32::from(*sender), v.clone()))
        })
        .collect()
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
    let participants = shares.0;
    let mut discarded = Vec::new();
    done(s, t0);
    if let Plan::Settle(package) = plan {
        step = 6;
        let (s, t0) = timed(
            &mut step,
            "settle: the signers' votes finish or undo an interrupted refresh",
        );
        match settle_by_votes(&run, store, &record, &signers, &participants, &package).await? {
            Settled::Forward(record) => {
                done(s, t0);
                return Ok(Refreshed {
                    record,
                    resumed: true,
                    discarded,
                });
            }
            Settled::Back(names) => {
                tracing::info!(key_id = %key_id, signers = %names.join(", "), "discarded the refreshed shares an interrupted refresh left waiting, on a signer's aborted vote");
                discarded = names;
            }
        }
        step = 1;
    }

    let result = async {
        let (s, t0) = timed(&mut step, "round 1: refreshing commitments");
        let round1 = run.round1(&participants, C::KIND).await?;
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
    let commits = join_all(signers.iter().map(|s| {
        let mut client = s.client.clone();
        let req = pb::DkgCommitRequest {
            key_id: key_id.to_string(),
            session_id: session_id.clone(),
            group_public_key: group_key.clone(),
        };
        async move { client.dkg_commit(req).await.map(|r| r.into_inner()) }
    }))
    .await;
    let mut stored = Vec::new();
    let mut cast = Vec::new();
    let mut failures = SignerFailures::default();
    for (signer, result) in signers.iter().zip(commits) {
        match result {
            Ok(answer) => {
                stored.push((signer.name.clone(), answer.generation));
                cast.push((signer.identifier, answer.stored_votes));
            }
            Err(status) => failures.push(SignerFailure::status(&signer.name, &status)),
        }
    }
    if !failures.is_empty() {
        // Not every signer stored its refreshed share: the signers' votes
        // settle it (one that did not store votes aborted, and the others
        // discard theirs on that vote), so the old shares stay the key's.
        let settled =
            settle_by_votes(&run, store, &record, &signers, &participants, &package).await;
        return match settled {
            // Every signer had stored it after all (an answer was lost).
            Ok(Settled::Forward(record)) => Ok(Refreshed {
                record,
                resumed: false,
                discarded,
            }),
            Ok(Settled::Back(_)) => Err(LifecycleError::StoreIncomplete {
                key: key_id.clone(),
                failures,
                not_discarded: None,
            }
            .into()),
            Err(e) => {
                tracing::warn!(key_id = %key_id, error = %e, "an incomplete refresh could not be settled");
                Err(LifecycleError::StoreIncomplete {
                    key: key_id.clone(),
                    failures,
                    not_discarded: Some(stored.into_iter().map(|(n, _)| n).collect()),
                }
                .into())
            }
        };
    }
    done(s, t0);

    let (s, t0) = timed(
        &mut step,
        "record: the coordinator records the new public key package",
    );
    record_package(store, &key_id, &record.public_key_package, &package).await?;
    done(s, t0);

    let (s, t0) = timed(
        &mut step,
        "activate: signers put their refreshed share in use",
    );
    activate(&key_id, &signers, &participants, &stored, &cast).await?;
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

/// How [`settle_by_votes`] ended an interrupted refresh.
enum Settled {
    /// Recorded and in use on every signer: the key as recorded now.
    Forward(KeyRecord),
    /// Undone: the signers whose waiting shares were discarded.
    Back(Vec<String>),
}

/// Asks every signer's vote on the refresh to `package`, then finishes it
/// (every signer holds it: record, activate) or undoes it (one never will:
/// discard the waiting shares), as [`settle`] decides.
async fn settle_by_votes(
    run: &Run<'_>,
    store: &Arc<dyn KeyStore>,
    record: &KeyRecord,
    signers: &[Signer],
    participants: &[pb::DkgParticipant],
    package: &[u8],
) -> Result<Settled> {
    let key_id = &record.key_id;
    let mismatch = |reason: String| -> Error {
        LifecycleError::Mismatch {
            key: key_id.clone(),
            reason,
        }
        .into()
    };
    // What each signer holds now (an answer to the store step may have
    // been lost), then its vote.
    let (_, held) = run
        .node_info()
        .await
        .map_err(|e| refresh_error(key_id, e))?;
    let answers = join_all(signers.iter().map(|s| {
        let mut client = s.client.clone();
        let req = pb::RefreshVoteRequest {
            key_id: key_id.to_string(),
            public_key_package: package.to_vec(),
            participants: participants.to_vec(),
        };
        async move { client.refresh_vote(req).await.map(|r| r.into_inner()) }
    }))
    .await;
    let mut votes = Vec::new();
    let mut cast = Vec::new();
    let mut failures = SignerFailures::default();
    for ((signer, answer), share) in signers.iter().zip(answers).zip(&held) {
        let Some(share) = share else {
            return Err(mismatch(format!(
                "signer {} holds no share of the key",
                signer.name
            )));
        };
        let vote = match answer {
            Ok(a) => {
                let vote = match pb::RefreshVoteKind::try_from(a.vote) {
                    Ok(pb::RefreshVoteKind::RefreshVoteStored) => Some(true),
                    Ok(pb::RefreshVoteKind::RefreshVoteAborted) => Some(false),
                    _ => None,
                };
                cast.push((signer.identifier, vote, a.votes));
                vote
            }
            Err(status) => {
                failures.push(SignerFailure::status(&signer.name, &status));
                None
            }
        };
        votes.push((signer.name.as_str(), vote, share));
    }
    if !failures.is_empty() {
        return Err(LifecycleError::Cleanup {
            key: key_id.clone(),
            failures,
        }
        .into());
    }
    let settlement = settle(record, package, &votes).map_err(mismatch)?;
    match settlement {
        Settlement::RollForward {
            record: needs_record,
            activate: behind,
        } => {
            if needs_record {
                record_package(store, key_id, &record.public_key_package, package).await?;
            }
            let stored: Vec<_> = cast
                .into_iter()
                .map(|(id, _, sealed)| (id, sealed))
                .collect();
            activate(key_id, signers, participants, &behind, &stored).await?;
            Ok(Settled::Forward(KeyRecord {
                public_key_package: package.to_vec(),
                ..record.clone()
            }))
        }
        Settlement::RollBack { discard: waiting } => {
            let aborted: Vec<_> = cast
                .into_iter()
                .filter(|(_, vote, _)| *vote == Some(false))
                .map(|(id, _, sealed)| (id, sealed))
                .collect();
            discard(key_id, signers, participants, &waiting, &aborted)
                .await
                .map_err(|failures| LifecycleError::Cleanup {
                    key: key_id.clone(),
                    failures,
                })?;
            Ok(Settled::Back(
                waiting.into_iter().map(|(name, _)| name).collect(),
            ))
        }
    }
}

/// Records the refreshed package in place of `old` (compare and swap).
async fn record_package(
    store: &Arc<dyn KeyStore>,
    key_id: &KeyId,
    old: &[u8],
    new: &[u8],
) -> Result<()> {
    let store = store.clone();
    let id = key_id.clone();
    let (old, new) = (old.to_vec(), new.to_vec());
    blocking(move || store.replace_key_package(&id, &old, &new))
        .await
        .map_err(|e| {
            LifecycleError::NotRecorded {
                key: key_id.clone(),
                reason: e.to_string(),
            }
            .into()
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

/// DiscardShare on each listed signer (name, generation), with the
/// aborted votes sealed to it; every failure.
async fn discard(
    key_id: &KeyId,
    signers: &[Signer],
    participants: &[pb::DkgParticipant],
    list: &[(String, u32)],
    aborted: &[(u16, std::collections::BTreeMap<u32, Vec<u8>>)],
) -> std::result::Result<(), SignerFailures> {
    on_each(signers, list, |s, generation| {
        let req = pb::DiscardShareRequest {
            key_id: key_id.to_string(),
            generation,
            participants: participants.to_vec(),
            aborted_votes: votes_for(s.identifier, aborted),
        };
        let mut client = s.client.clone();
        async move { client.discard_share(req).await.map(|_| ()) }
    })
    .await
}

/// ActivateShare on each listed signer (name, generation), with every
/// other signer's stored vote sealed to it.
async fn activate(
    key_id: &KeyId,
    signers: &[Signer],
    participants: &[pb::DkgParticipant],
    list: &[(String, u32)],
    stored: &[(u16, std::collections::BTreeMap<u32, Vec<u8>>)],
) -> Result<()> {
    on_each(signers, list, |s, generation| {
        let req = pb::ActivateShareRequest {
            key_id: key_id.to_string(),
            generation,
            participants: participants.to_vec(),
            stored_votes: votes_for(s.identifier, stored),
        };
        let mut client = s.client.clone();
        async move { client.activate_share(req).await.map(|_| ()) }
    })
    .await
    .map_err(|failures| {
        LifecycleError::ActivationIncomplete {
            key: key_id.clone(),
            failures,
        }
        .into()
    })
}

/// `call` on each listed signer (name, generation) at once; every failure,
/// a name missing from `signers` included.
async fn on_each<Fut>(
    signers: &[Signer],
    list: &[(String, u32)],
    call: impl Fn(&Signer, u32) -> Fut,
) -> std::result::Result<(), SignerFailures>
where
    Fut: std::future::Future<Output = std::result::Result<(), tonic::Status>>,
{
    let results = join_all(list.iter().map(|(name, generation)| {
        let call = signers
            .iter()
            .find(|s| s.name == *name)
            .map(|s| call(s, *generation));
        async move {
            match call {
                Some(call) => call.await,
                None => Err(tonic::Status::not_found("not a signer of the key")),
            }
        }
    }))
    .await;
    collect_failures(list, results)
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

    /// A share report: in use `package`, and `pending` (generation,
    /// package) if a refreshed share waits.
    fn held(
        identifier: u32,
        generation: u32,
        package: &[u8],
        pending: Option<(u32, &[u8])>,
    ) -> pb::KeyShareInfo {
        pb::KeyShareInfo {
            key_id: "k".into(),
            identifier,
            group_public_key: vec![2; 33],
            kind: "frost-secp256k1".into(),
            generation,
            pending_generation: pending.map_or(0, |p| p.0),
            public_key_package: package.to_vec(),
            pending_public_key_package: pending.map(|p| p.1.to_vec()).unwrap_or_default(),
        }
    }

    const R: &[u8] = &[7; 10];
    const P: &[u8] = &[8; 10];

    #[test]
    fn plans_from_what_the_signers_hold() {
        let r = record();
        let (a, b) = (held(1, 0, R, None), held(2, 0, R, None));
        assert_eq!(
            plan(&r, &[("a", 1, Some(&a)), ("b", 2, Some(&b))]),
            Ok(Plan::Fresh)
        );
        // A share sealed before packages were kept counts as current.
        let legacy = held(2, 0, &[], None);
        assert_eq!(
            plan(&r, &[("a", 1, Some(&a)), ("b", 2, Some(&legacy))]),
            Ok(Plan::Fresh)
        );
        // A refreshed share waits on b: settle that package.
        let waiting = held(2, 0, R, Some((1, P)));
        assert_eq!(
            plan(&r, &[("a", 1, Some(&a)), ("b", 2, Some(&waiting))]),
            Ok(Plan::Settle(P.to_vec()))
        );
        // a switched to P, b not yet, whatever the coordinator records
        // (R before the record, P after it).
        let ahead = held(1, 1, P, None);
        let behind = held(2, 0, R, Some((1, P)));
        assert_eq!(
            plan(&r, &[("a", 1, Some(&ahead)), ("b", 2, Some(&behind))]),
            Ok(Plan::Settle(P.to_vec()))
        );
        let recorded = KeyRecord {
            public_key_package: P.to_vec(),
            ..record()
        };
        assert_eq!(
            plan(
                &recorded,
                &[("a", 1, Some(&ahead)), ("b", 2, Some(&behind))]
            ),
            Ok(Plan::Settle(P.to_vec()))
        );
        // Every signer switched, the coordinator never recorded it.
        let b_ahead = held(2, 1, P, None);
        assert_eq!(
            plan(&r, &[("a", 1, Some(&ahead)), ("b", 2, Some(&b_ahead))]),
            Ok(Plan::Settle(P.to_vec()))
        );
    }

    #[test]
    fn refuses_signers_that_disagree_with_the_record() {
        let r = record();
        let a = held(1, 0, R, None);
        let err = |shares: &[(&str, u16, Option<&pb::KeyShareInfo>)]| plan(&r, shares).unwrap_err();
        assert!(err(&[("a", 1, Some(&a)), ("b", 2, None)]).contains("signer b holds no share"));
        let wrong_id = held(3, 0, R, None);
        assert!(err(&[("a", 1, Some(&a)), ("b", 2, Some(&wrong_id))]).contains("identifier 3"));
        let mut other_key = held(2, 0, R, None);
        other_key.group_public_key = vec![3; 33];
        assert!(
            err(&[("a", 1, Some(&a)), ("b", 2, Some(&other_key))]).contains("another group key")
        );
        // Two different refreshed packages.
        let one = held(1, 0, R, Some((1, P)));
        let other = held(2, 4, &[5; 10], None);
        assert!(
            err(&[("a", 1, Some(&one)), ("b", 2, Some(&other))])
                .contains("inconsistent refresh state")
        );
        // A waiting share whose package is not reported.
        let mut unreported = held(2, 0, R, Some((1, P)));
        unreported.pending_public_key_package.clear();
        assert!(
            err(&[("a", 1, Some(&a)), ("b", 2, Some(&unreported))]).contains("does not report")
        );
    }

    #[test]
    fn settles_forward_only_when_every_signer_stored_and_back_on_one_abort() {
        let r = record();
        let a = held(1, 0, R, Some((1, P)));
        let b = held(2, 0, R, Some((1, P)));
        // Every signer stored, none recorded: record, activate both.
        assert_eq!(
            settle(&r, P, &[("a", Some(true), &a), ("b", Some(true), &b)]),
            Ok(Settlement::RollForward {
                record: true,
                activate: vec![("a".into(), 1), ("b".into(), 1)]
            })
        );
        // Recorded, a switched: activate b only.
        let recorded = KeyRecord {
            public_key_package: P.to_vec(),
            ..record()
        };
        let a_ahead = held(1, 1, P, None);
        assert_eq!(
            settle(
                &recorded,
                P,
                &[("a", Some(true), &a_ahead), ("b", Some(true), &b)]
            ),
            Ok(Settlement::RollForward {
                record: false,
                activate: vec![("b".into(), 1)]
            })
        );
        // b never stored: discard a's.
        let b_never = held(2, 0, R, None);
        assert_eq!(
            settle(
                &r,
                P,
                &[("a", Some(true), &a), ("b", Some(false), &b_never)]
            ),
            Ok(Settlement::RollBack {
                discard: vec![("a".into(), 1)]
            })
        );
        // A signer that does not answer blocks both ways.
        assert!(
            settle(&r, P, &[("a", Some(true), &a), ("b", None, &b_never)])
                .unwrap_err()
                .contains("did not vote")
        );
        // An abort while the package is recorded or in use somewhere is
        // inconsistent: nothing is discarded.
        assert!(
            settle(
                &recorded,
                P,
                &[("a", Some(true), &a), ("b", Some(false), &b_never)]
            )
            .unwrap_err()
            .contains("recorded")
        );
        assert!(
            settle(
                &r,
                P,
                &[("a", Some(true), &a_ahead), ("b", Some(false), &b_never)]
            )
            .unwrap_err()
            .contains("in use on a")
        );
    }

    #[test]
    fn each_signer_gets_the_votes_sealed_to_it_by_the_others() {
        use std::collections::BTreeMap;
        let cast = vec![
            (1u16, BTreeMap::from([(2u32, vec![12]), (3, vec![13])])),
            (2, BTreeMap::from([(1, vec![21]), (3, vec![23])])),
            (3, BTreeMap::from([(1, vec![31])])),
        ];
        assert_eq!(
            votes_for(3, &cast),
            BTreeMap::from([(1, vec![13]), (2, vec![23])])
        );
        assert_eq!(
            votes_for(1, &cast),
            BTreeMap::from([(2, vec![21]), (3, vec![31])])
        );
        assert_eq!(votes_for(2, &cast), BTreeMap::from([(1, vec![12])]));
    }
}
