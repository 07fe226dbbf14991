//! The signing engine: the FROST signings (RFC 9591 section 5) of an
//! [`ApprovedRequest`], each run across any `t` reachable signers of a key:
//! one for a raw message, one per input for a PSBT request (over the
//! input's BIP-341 sighash), all or nothing. Generic over the ciphersuite
//! ([`ringi_frost::Suite`]); [`Key`] is the one place a key's kind picks
//! the suite (`frost-secp256k1`: [`ringi_frost::Secp256k1`],
//! `bitcoin-taproot`: [`Secp256k1Tr`]).
//!
//! Robust signing, in the spirit of ROAST: signers are tried fastest first
//! ([`crate::signer_standing`]); a signer with preprocessed commitments
//! pooled ([`crate::commitment_pool`]) takes part without a round 1, so an
//! approved request usually needs round 2 only; the missing commitments
//! come from a live round 1 asked of one signer more than needed, the first
//! answers kept. Aggregation (`Suite::aggregate`) verifies the group
//! signature before it is returned and, on failure, names the signer whose
//! share was wrong: that signer is excluded for cause and the signing is
//! finished with others, in the same request, under a new package that
//! tells the signers who was left out (`excluded_identifiers`, the rule in
//! `signer/src/releases.rs`).
//!
//! This is the signer-client side of the edge: it builds the signers' wire
//! messages (`CommitRequest`, `SignRequest`, the approval bundle) from the
//! approved request, and decodes their answers with pure functions
//! ([`decode_commitments`], [`decode_signature_share`]) that refuse, never
//! panic on, whatever a compromised signer sends.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use rand::seq::SliceRandom;
use ringi_frost::frost_core::keys::PublicKeyPackage;
use ringi_frost::frost_core::round1::SigningCommitments;
use ringi_frost::frost_core::round2::SignatureShare;
use ringi_frost::frost_core::{Identifier, SigningPackage};
use ringi_frost::taproot::Secp256k1Tr;
use ringi_frost::{KeyKind, Secp256k1, Suite};
use ringi_policy::subject::KeyFacts;
use ringi_proto::approval::v1 as apb;
use ringi_proto::signer::v1 as pb;

use crate::approved::ApprovedRequest;
pub use crate::approved::MAX_MESSAGE_LEN;
use crate::error::{Error, RoutingError, SignerFailure, SignerFailures, SignerFault, SigningError};
use crate::phases::Phase;
use crate::registry::{Registry, Signer};
use crate::request_store::SigningPlan;
pub use crate::signing_claim::PlanLog;
use crate::store::KeyRecord;

/// Signing attempts before giving up (each with a fresh round 1).
const ATTEMPTS: usize = 2;

/// Pauses before asking a signer that failed round 2 transiently again,
/// with the same signing package.
const ROUND2_RESENDS: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(400),
];

/// A failure that may pass: the signer or the network, not a refusal.
fn transient(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
            | tonic::Code::Unknown
    )
}

/// A key ready for signing: its record and its parsed public key package.
pub struct LoadedKey<C: Suite> {
    pub record: KeyRecord,
    pub public: PublicKeyPackage<C>,
}

impl<C: Suite> LoadedKey<C> {
    /// Checks the record is of suite `C`'s kind, parses the stored public
    /// key package, checks that its group key is the record's and that
    /// every signer's identifier is a FROST identifier with a verifying
    /// share in it.
    pub fn new(record: KeyRecord) -> Result<Self, Error> {
        if record.kind != C::KIND {
            return Err(Error::Corrupt(format!(
                "key {:?} is a {} key; this coordinator signs {} keys only",
                record.key_id,
                record.kind,
                C::KIND
            )));
        }
        let corrupt = |what: String| {
            Error::Corrupt(format!(
                "stored public key package of {:?} is corrupt: {what}",
                record.key_id
            ))
        };
        let public = PublicKeyPackage::<C>::deserialize(&record.public_key_package)
            .map_err(|e| corrupt(e.to_string()))?;
        let group_key = public
            .verifying_key()
            .serialize()
            .map_err(|e| corrupt(e.to_string()))?;
        if group_key != record.group_public_key {
            return Err(corrupt("its group key is not the record's".into()));
        }
        for (name, n) in &record.signers {
            let known = ringi_frost::identifier::<C>(*n)
                .is_some_and(|id| public.verifying_shares().contains_key(&id));
            if !known {
                return Err(corrupt(format!(
                    "signer {name}'s identifier {n} has no verifying share"
                )));
            }
        }
        Ok(LoadedKey { record, public })
    }
}

/// A key ready for signing, of whichever kind: the one seam where a key's
/// kind picks the ciphersuite of the generic engine ([`sign_all`]).
pub enum Key {
    /// RFC 9591 FROST(secp256k1, SHA-256).
    FrostSecp256k1(LoadedKey<Secp256k1>),
    /// BIP-340 FROST under the BIP-341 key-path output key, with the key's
    /// x-only internal and output keys (derived once, at loading).
    BitcoinTaproot {
        key: LoadedKey<Secp256k1Tr>,
        internal_key: [u8; 32],
        output_key: [u8; 32],
    },
}

impl Key {
    /// Loads `record` with the suite of its kind (see [`LoadedKey::new`]).
    pub fn load(record: KeyRecord) -> Result<Self, Error> {
        match record.kind {
            KeyKind::FrostSecp256k1 => Ok(Key::FrostSecp256k1(LoadedKey::new(record)?)),
            KeyKind::BitcoinTaproot => {
                let (internal_key, output_key) = record.taproot_keys()?;
                Ok(Key::BitcoinTaproot {
                    key: LoadedKey::new(record)?,
                    internal_key,
                    output_key,
                })
            }
        }
    }

    /// The key's public record.
    pub fn record(&self) -> &KeyRecord {
        match self {
            Key::FrostSecp256k1(k) => &k.record,
            Key::BitcoinTaproot { key, .. } => &key.record,
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.record().kind
    }

    /// What the policy's evaluation knows of the key.
    pub fn facts(&self) -> KeyFacts {
        match self {
            Key::FrostSecp256k1(_) => KeyFacts::FrostSecp256k1,
            Key::BitcoinTaproot {
                internal_key,
                output_key,
                ..
            } => KeyFacts::BitcoinTaproot {
                internal_key: *internal_key,
                output_key: *output_key,
            },
        }
    }

    /// Every signing `approved` needs, with this key's suite: see
    /// [`sign_all`].
    pub async fn sign(
        &self,
        registry: &Registry,
        approved: &ApprovedRequest,
        plans: &PlanLog,
    ) -> Result<Vec<Signed>, SigningError> {
        match self {
            Key::FrostSecp256k1(k) => sign_all(registry, k, approved, plans).await,
            Key::BitcoinTaproot { key, .. } => sign_all(registry, key, approved, plans).await,
        }
    }
}

/// A finished signing.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The suite's signature encoding (frost-secp256k1: 65 bytes, SEC1
    /// R ‖ z; bitcoin-taproot: 64 bytes, BIP-340 x-only R ‖ z).
    pub signature: Vec<u8>,
    /// The signers whose shares formed it.
    pub signers: Vec<String>,
}

/// Orders the key's signers to try: exactly the requested ones, or all of
/// them shuffled (spreading load and not depending on any one node).
pub fn candidates(
    key: &KeyRecord,
    requested: &[String],
) -> Result<Vec<(String, u16)>, RoutingError> {
    if requested.is_empty() {
        let mut all = key.signers.clone();
        all.shuffle(&mut rand::thread_rng());
        return Ok(all);
    }
    if requested.len() != key.threshold as usize {
        return Err(RoutingError::Count {
            key: key.key_id.clone(),
            threshold: key.threshold,
            requested: requested.len(),
        });
    }
    let mut seen = HashSet::new();
    requested
        .iter()
        .map(|name| {
            if !seen.insert(name) {
                return Err(RoutingError::Duplicate(name.clone()));
            }
            key.signers
                .iter()
                .find(|(n, _)| n == name)
                .cloned()
                .ok_or_else(|| RoutingError::NoShare {
                    key: key.key_id.clone(),
                    signer: name.clone(),
                })
        })
        .collect()
}

/// Decodes a signer's round-1 answer: the commitments of the signer the
/// registry knows as `registered`. A signer can send anything; an answer
/// under another identifier, or bytes that are not commitments of suite
/// `C`, is refused with the reason (to be recorded against that signer).
/// Never panics.
pub fn decode_commitments<C: Suite>(
    registered: u16,
    answer: &pb::CommitResponse,
) -> Result<SigningCommitments<C>, String> {
    if answer.identifier != u32::from(registered) {
        return Err(format!(
            "answered as identifier {} but is registered as {registered}",
            answer.identifier
        ));
    }
    SigningCommitments::deserialize(&answer.commitments)
        .map_err(|e| format!("undecodable commitments: {e}"))
}

/// Decodes a signer's round-2 answer: a signature share of suite `C`.
/// Whether the share is *valid* is only known at aggregation, which names
/// the signer if not. Never panics.
pub fn decode_signature_share<C: Suite>(
    answer: &pb::SignResponse,
) -> Result<SignatureShare<C>, String> {
    SignatureShare::deserialize(&answer.signature_share)
        .map_err(|e| format!("undecodable signature share: {e}"))
}

/// The bundle every signer checks before it takes part: the request and
/// the approvals that carry it.
pub fn bundle(approved: &ApprovedRequest) -> apb::ApprovalBundle {
    apb::ApprovalBundle {
        request: Some(ringi_proto::bundle::request_to_pb(approved.request())),
        approvals: approved
            .approvals()
            .iter()
            .map(ringi_proto::bundle::approval_to_pb)
            .collect(),
    }
}

/// A signer taking part, with its FROST identifier.
#[derive(Clone)]
struct Participant<C: Suite> {
    signer: Signer,
    id: Identifier<C>,
}

/// Every signing of `approved` with `key`, in order: its one message, or
/// one per input of a PSBT request (each over that input's sighash, each
/// its own FROST signing under the same approval bundle). All or nothing:
/// the first input that cannot be signed ends the request's signing with
/// [`SigningError::Input`] naming it.
pub async fn sign_all<C: Suite>(
    registry: &Registry,
    key: &LoadedKey<C>,
    approved: &ApprovedRequest,
    plans: &PlanLog,
) -> Result<Vec<Signed>, SigningError> {
    let messages = approved.messages();
    let per_input = approved.request().psbt.is_some();
    let count = messages.len();
    let mut signed = Vec::with_capacity(count);
    for (input, message) in messages.into_iter().enumerate() {
        match sign(registry, key, approved, message, input as u32, plans).await {
            Ok(s) => signed.push(s),
            Err(e) if per_input => {
                return Err(SigningError::Input {
                    input,
                    inputs: count,
                    error: Box::new(e),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(signed)
}

/// One FROST signing of `message` (input `input` of `approved`) with
/// `key`, using the request's routed signers or any `t`. The approval
/// bundle goes to every signer in round 2 (and in a live round 1); each
/// signer checks it against its own pinned policy, and that `message` is
/// what the request signs, before it takes part.
///
/// Which signers: the key's, less those excluded for an invalid share
/// ([`crate::signer_standing`]), fastest first (shuffled among equals).
/// Each takes part with a preprocessed commitment if it has one pooled
/// ([`crate::commitment_pool`]): with `t` of them the signing is one round.
/// Otherwise the missing commitments come from a live round 1 asked of one
/// signer more than needed; the first to answer are kept.
///
/// If an earlier run recorded a plan for this input (it crashed, or lost
/// its signers, after round 2 went out), that package is asked for again
/// first: signers that released a share answer it with the same share, so
/// the signature aggregated is the one the earlier run could have made,
/// never a second one. Only if that fails does a new package go out, and
/// only without the signers that failed the last one: those that released a
/// share for an earlier package sign a new one only when it leaves out a
/// signer of each earlier package they signed (`excluded_identifiers`,
/// `signer/src/releases.rs`). Its plan is recorded (`plans`) before its
/// round 2 goes out.
pub async fn sign<C: Suite>(
    registry: &Registry,
    key: &LoadedKey<C>,
    approved: &ApprovedRequest,
    message: &[u8],
    input: u32,
    plans: &PlanLog,
) -> Result<Signed, SigningError> {
    let order = candidates(&key.record, approved.signers())?;
    let bundle = bundle(approved);
    let mut failures = SignerFailures::default();
    let mut pool: Vec<Participant<C>> = Vec::with_capacity(order.len());
    for (name, n) in &order {
        let excluded = registry.standings().excluded(name);
        let fault = match (registry.get(name), ringi_frost::identifier::<C>(*n)) {
            (None, _) => SignerFault::NotRegistered,
            (Some(s), _) if s.identifier != *n => {
                SignerFault::IdentifierMismatch { key_identifier: *n }
            }
            (Some(_), _) if excluded.is_some() => SignerFault::BadAnswer(format!(
                "excluded from signing until the coordinator restarts: {}",
                excluded.unwrap_or_default()
            )),
            (Some(s), Some(id)) => {
                pool.push(Participant {
                    signer: s.clone(),
                    id,
                });
                continue;
            }
            (Some(_), None) => {
                SignerFault::BadAnswer(format!("identifier {n} is not a FROST identifier"))
            }
        };
        failures.push(SignerFailure {
            signer: name.clone(),
            fault,
        });
    }
    if approved.signers().is_empty() {
        // Stable: signers of one latency band stay in their shuffled order.
        pool.sort_by_key(|p| registry.standings().band(&p.signer.name));
    }
    let result = sign_with(
        registry,
        key,
        message,
        input,
        &bundle,
        &pool,
        plans,
        &mut failures,
    )
    .await;
    refill_pools(registry, key, &pool);
    result.map_err(|e| match e {
        Some(e) => e,
        None => SigningError::Signers {
            key: key.record.key_id.clone(),
            threshold: key.record.threshold,
            failures,
        },
    })
}

/// The signing proper; `Err(None)` when the signers could not make it
/// (their reasons are in `failures`).
#[allow(clippy::too_many_arguments)]
async fn sign_with<C: Suite>(
    registry: &Registry,
    key: &LoadedKey<C>,
    message: &[u8],
    input: u32,
    bundle: &apb::ApprovalBundle,
    pool: &[Participant<C>],
    plans: &PlanLog,
    failures: &mut SignerFailures,
) -> Result<Signed, Option<SigningError>> {
    // The signer sets of this input's packages so far, oldest first.
    let mut history: Vec<Vec<String>> = plans
        .earlier(input)
        .iter()
        .map(|p| p.signers.clone())
        .collect();
    // Who failed the latest package (known once it was asked again).
    let mut last_failed: HashSet<String> = HashSet::new();
    for (k, plan) in plans.earlier(input).iter().enumerate().rev() {
        let excluded = excluded_identifiers(key, &history[..k], &plan.signers);
        match resume(
            registry, key, message, bundle, pool, plan, &excluded, failures,
        )
        .await
        {
            Ok(signed) => return Ok(signed),
            Err(Attempt::Fatal(e)) => return Err(Some(e)),
            // None of its signers has its nonces any more (all restarted
            // before signing): nobody released a share for it, it binds
            // no one.
            Err(Attempt::Void) => {
                history.remove(k);
            }
            // Its signers no longer have its nonces (restarted before they
            // signed), or are down: try an older plan, then a new package.
            Err(Attempt::Retry { failed, .. }) => {
                tracing::info!(input, "a recorded signing plan could not be completed");
                if k + 1 == history.len() {
                    last_failed = failed.into_iter().collect();
                }
            }
        }
    }
    let mut failed_here: HashSet<String> = HashSet::new();
    // Each new package leaves out at least one more signer: at most
    // n - t + 1 of them.
    let packages = key.record.signers.len() + 1 - key.record.threshold as usize;
    // Preprocessed commitments for the first package only, and only when
    // a spare signer exists (not with exactly `t` routed signers): a pooled commitment whose signer restarted
    // fails in round 2, after the others released, and the next package
    // must then do without that signer (`signer/src/releases.rs`). Later
    // packages take fresh commitments from a live round 1, which fails
    // before anything is released.
    let mut use_pool = pool.len() > key.record.threshold as usize;
    for _ in 0..packages.max(ATTEMPTS) {
        let signed_before: HashSet<&String> = history.iter().flatten().collect();
        let last: HashSet<&String> = history
            .last()
            .map(|l| l.iter().collect())
            .unwrap_or_default();
        let eligible: Vec<Participant<C>> = pool
            .iter()
            .filter(|p| {
                let name = &p.signer.name;
                !failed_here.contains(name)
                    && registry.standings().excluded(name).is_none()
                    // A signer of an earlier package signs a new one only
                    // if it was in the last one, and the new one leaves out
                    // who failed that (not knowing who did, all of it).
                    && (!signed_before.contains(name)
                        || (last.contains(name)
                            && !last_failed.is_empty()
                            && !last_failed.contains(name)))
            })
            .cloned()
            .collect();
        let pooled = std::mem::replace(&mut use_pool, false);
        match attempt(
            registry, key, message, input, bundle, eligible, &history, plans, failures, pooled,
        )
        .await
        {
            Ok(signed) => return Ok(signed),
            Err(Attempt::Fatal(e)) => return Err(Some(e)),
            // Every signer's nonces were gone (stale pooled commitments):
            // nobody released, the same signers may sign a new package.
            Err(Attempt::Void) => {}
            Err(Attempt::Retry { failed, planned }) => {
                if failed.is_empty() {
                    return Err(None);
                }
                if let Some(signers) = planned {
                    history.push(signers);
                    last_failed = failed.iter().cloned().collect();
                }
                failed_here.extend(failed);
            }
        }
    }
    Err(None)
}

/// The FROST identifiers of the signers of earlier packages (`history`)
/// that `signers` leaves out: what a signer that released a share for one
/// of those packages is shown to sign this one.
fn excluded_identifiers<C: Suite>(
    key: &LoadedKey<C>,
    history: &[Vec<String>],
    signers: &[String],
) -> Vec<u32> {
    let mut out: Vec<u32> = history
        .iter()
        .flatten()
        .filter(|name| !signers.contains(name))
        .filter_map(|name| {
            key.record
                .signers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| u32::from(*id))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

enum Attempt {
    Fatal(SigningError),
    /// Every signer of the package refused it for lost nonces: no share
    /// was released under it, so it constrains no later package.
    Void,
    /// These signers failed (their reasons are in the failures); try again
    /// without them. `planned`: the signers of the package that went out
    /// (and was recorded), if one did.
    Retry {
        failed: Vec<String>,
        planned: Option<Vec<String>>,
    },
}

/// Round 2 (and aggregation) of a plan an earlier run recorded, with the
/// same package and the same signers.
#[allow(clippy::too_many_arguments)]
async fn resume<C: Suite>(
    registry: &Registry,
    key: &LoadedKey<C>,
    message: &[u8],
    bundle: &apb::ApprovalBundle,
    pool: &[Participant<C>],
    plan: &SigningPlan,
    excluded: &[u32],
    failures: &mut SignerFailures,
) -> Result<Signed, Attempt> {
    let package = SigningPackage::<C>::deserialize(&plan.package).map_err(|e| {
        Attempt::Fatal(SigningError::Encoding(format!(
            "recorded signing package: {e}"
        )))
    })?;
    if package.message() != message {
        return Err(Attempt::Fatal(SigningError::Encoding(
            "the recorded signing package signs another message".into(),
        )));
    }
    let mut chosen = Vec::with_capacity(plan.signers.len());
    let mut missing = Vec::new();
    for name in &plan.signers {
        match pool.iter().find(|p| &p.signer.name == name) {
            Some(p) if package.signing_commitments().contains_key(&p.id) => chosen.push(p.clone()),
            _ => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() || chosen.len() != package.signing_commitments().len() {
        return Err(Attempt::Retry {
            failed: missing,
            planned: None,
        });
    }
    round2(
        registry,
        key,
        &package,
        &plan.package,
        bundle,
        excluded,
        chosen,
        failures,
        Vec::new(),
    )
    .await
    .map_err(|f| match f {
        Round2Failed::Void => Attempt::Void,
        Round2Failed::Signers(failed) => Attempt::Retry {
            failed,
            planned: None,
        },
    })
}

/// A live round-1 call to `p`, timed.
async fn commit_call<C: Suite>(
    p: Participant<C>,
    key_id: String,
    bundle: apb::ApprovalBundle,
) -> (
    Participant<C>,
    std::time::Duration,
    Result<pb::CommitResponse, tonic::Status>,
) {
    let mut client = p.signer.client.clone();
    let started = std::time::Instant::now();
    let result = client
        .commit(pb::CommitRequest {
            key_id,
            approval_bundle: Some(bundle),
        })
        .await
        .map(|r| {
            crate::phases::record_signer(r.metadata());
            r.into_inner()
        });
    (p, started.elapsed(), result)
}

/// One signing package with `eligible` signers: their preprocessed
/// commitments where pooled, a live round 1 for the rest; the plan
/// recorded; round 2; aggregation.
#[allow(clippy::too_many_arguments)]
async fn attempt<C: Suite>(
    registry: &Registry,
    key: &LoadedKey<C>,
    message: &[u8],
    input: u32,
    bundle: &apb::ApprovalBundle,
    eligible: Vec<Participant<C>>,
    history: &[Vec<String>],
    plans: &PlanLog,
    failures: &mut SignerFailures,
    pooled: bool,
) -> Result<Signed, Attempt> {
    let t = key.record.threshold as usize;
    let key_id = key.record.key_id.to_string();
    let mut chosen: Vec<(Participant<C>, SigningCommitments<C>)> = Vec::with_capacity(t);
    let mut live: Vec<Participant<C>> = Vec::new();
    let mut failed = Vec::new();

    // The `t` fastest take part: with their preprocessed commitments where
    // pooled, by a live round 1 otherwise (a fast signer's round 1 costs
    // less than a slow signer's round 2). The others are spares.
    for (i, p) in eligible.into_iter().enumerate() {
        if pooled
            && i < t
            && let Some(bytes) = registry.pools().take(&p.signer.name, &key_id)
            && let Ok(c) = SigningCommitments::<C>::deserialize(&bytes)
        {
            chosen.push((p, c));
            continue;
        }
        live.push(p);
    }

    // A live round 1 for the rest: one signer more than needed is asked,
    // the first to answer are kept (a slow or failing signer is replaced
    // without waiting for it); each failure brings in the next signer.
    let one_round = chosen.len() == t;
    crate::phases::count(
        if one_round {
            "signings_one_round"
        } else {
            "signings_two_round"
        },
        1,
    );
    if !one_round {
        let round1_started = std::time::Instant::now();
        let mut remaining = live.into_iter();
        let mut in_flight = FuturesUnordered::new();
        for p in remaining.by_ref().take(t - chosen.len() + 1) {
            in_flight.push(commit_call(p, key_id.clone(), bundle.clone()));
        }
        while chosen.len() < t {
            let Some((p, elapsed, result)) = in_flight.next().await else {
                return Err(Attempt::Retry {
                    failed,
                    planned: None,
                });
            };
            let name = p.signer.name.clone();
            let decoded = match result {
                Ok(answer) => {
                    registry.standings().observe(&name, elapsed);
                    decode_commitments::<C>(p.signer.identifier, &answer)
                        .map_err(|reason| SignerFailure::bad_answer(&name, reason))
                }
                Err(status) => {
                    registry.pools().forget(&name);
                    Err(SignerFailure::status(&name, &status))
                }
            };
            match decoded {
                Ok(c) => chosen.push((p, c)),
                Err(failure) => {
                    failures.push(failure);
                    failed.push(name);
                    if let Some(next) = remaining.next() {
                        in_flight.push(commit_call(next, key_id.clone(), bundle.clone()));
                    }
                }
            }
        }
        crate::phases::record(Phase::Round1, round1_started.elapsed());
        // Answers still on their way are not used (their nonces expire on
        // the signers unused), but how late they come is noted: a slow
        // signer is then tried after the others.
        if !in_flight.is_empty() {
            let standings = registry.standings().clone();
            tokio::spawn(async move {
                while let Some((p, elapsed, result)) = in_flight.next().await {
                    if result.is_ok() {
                        standings.observe(&p.signer.name, elapsed);
                    }
                }
            });
        }
    }

    let commitments: BTreeMap<Identifier<C>, SigningCommitments<C>> =
        chosen.iter().map(|(p, c)| (p.id, *c)).collect();
    let package = SigningPackage::new(commitments, message);
    let package_bytes = package
        .serialize()
        .map_err(|e| Attempt::Fatal(SigningError::Encoding(format!("signing package: {e}"))))?;
    let chosen: Vec<Participant<C>> = chosen.into_iter().map(|(p, _)| p).collect();
    let signers: Vec<String> = chosen.iter().map(|p| p.signer.name.clone()).collect();
    let excluded = excluded_identifiers(key, history, &signers);
    // Durable before any share can be released for it: a run that
    // resumes this request asks for this package again.
    plans
        .record(SigningPlan {
            input,
            package: package_bytes.clone(),
            signers: signers.clone(),
        })
        .await
        .map_err(|e| Attempt::Fatal(SigningError::PlanNotRecorded(e.to_string())))?;
    round2(
        registry,
        key,
        &package,
        &package_bytes,
        bundle,
        &excluded,
        chosen,
        failures,
        failed,
    )
    .await
    .map_err(|f| match f {
        Round2Failed::Void => Attempt::Void,
        Round2Failed::Signers(failed) => Attempt::Retry {
            failed,
            planned: Some(signers),
        },
    })
}

/// Why round 2 did not make a signature.
enum Round2Failed {
    /// Every signer refused for lost nonces: none released a share.
    Void,
    /// These signers failed (and others may have released shares).
    Signers(Vec<String>),
}

/// Round 2 of `package` with `chosen`, then aggregation. On failure, the
/// signers that failed (their reasons added to `failures`, after those
/// already in `failed`).
#[allow(clippy::too_many_arguments)]
async fn round2<C: Suite>(
    registry: &Registry,
    key: &LoadedKey<C>,
    package: &SigningPackage<C>,
    package_bytes: &[u8],
    bundle: &apb::ApprovalBundle,
    excluded: &[u32],
    chosen: Vec<Participant<C>>,
    failures: &mut SignerFailures,
    mut failed: Vec<String>,
) -> Result<Signed, Round2Failed> {
    let t = key.record.threshold as usize;
    let key_id = key.record.key_id.to_string();
    // Round 2: every chosen signer must answer. A signer releases its share
    // for an input under one package (or a later one that leaves out a
    // signer of each it signed): once some have answered, this package is
    // the one to complete. So a signer that failed transiently is asked
    // again with the very same package (a signer that did sign answers
    // with the same share; one whose nonces are gone says so) before the
    // attempt is given up.
    let ask = |p: &Participant<C>| {
        let calls = p.signer.sign_batches.clone();
        let req = pb::SignRequest {
            key_id: key_id.clone(),
            signing_package: package_bytes.to_vec(),
            approval_bundle: Some(bundle.clone()),
            excluded_identifiers: excluded.to_vec(),
        };
        async move {
            let started = std::time::Instant::now();
            let result = calls.sign(req).await;
            (started.elapsed(), result)
        }
    };
    let round2_started = std::time::Instant::now();
    let mut results = join_all(chosen.iter().map(ask)).await;
    for backoff in ROUND2_RESENDS {
        let again: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| matches!(r, Err(status) if transient(status.code())))
            .map(|(i, _)| i)
            .collect();
        if again.is_empty() {
            break;
        }
        tokio::time::sleep(backoff).await;
        let retried = join_all(again.iter().map(|i| ask(&chosen[*i]))).await;
        for (i, result) in again.into_iter().zip(retried) {
            results[i] = result;
        }
    }
    crate::phases::record(Phase::Round2, round2_started.elapsed());
    let mut shares: BTreeMap<Identifier<C>, SignatureShare<C>> = BTreeMap::new();
    let mut lost_nonces = 0;
    for (p, (elapsed, result)) in chosen.iter().zip(results) {
        let name = &p.signer.name;
        let decoded = match result {
            Ok(answer) => {
                registry.standings().observe(name, elapsed);
                decode_signature_share::<C>(&answer)
                    .map_err(|reason| SignerFailure::bad_answer(name, reason))
            }
            Err(status) => {
                lost_nonces += usize::from(nonces_gone(&status));
                if transient(status.code()) || nonces_gone(&status) {
                    // It may have restarted: its pooled commitments are
                    // likely void.
                    registry.pools().forget(name);
                }
                Err(SignerFailure::status(name, &status))
            }
        };
        match decoded {
            Ok(share) => {
                shares.insert(p.id, share);
            }
            Err(failure) => {
                failures.push(failure);
                failed.push(name.clone());
            }
        }
    }
    if lost_nonces == chosen.len() {
        crate::phases::count("packages_void", 1);
        return Err(Round2Failed::Void);
    }
    if shares.len() < t {
        return Err(Round2Failed::Signers(failed));
    }

    // Aggregate; the suite verifies the group signature and, if it fails,
    // checks each share to name the culprit.
    let aggregated = crate::phases::time(Phase::Aggregate, || {
        C::aggregate(package, &shares, &key.public)
    });
    match aggregated {
        Ok(signature) => {
            let bytes = signature.serialize().map_err(|e| {
                failures
                    .unattributed
                    .push(format!("signature encoding: {e}"));
                Round2Failed::Signers(failed.clone())
            })?;
            Ok(Signed {
                signature: bytes,
                signers: chosen.into_iter().map(|p| p.signer.name).collect(),
            })
        }
        Err(e) => {
            let culprits: Vec<&str> = e
                .culprits()
                .iter()
                .filter_map(|c| chosen.iter().find(|p| p.id == *c))
                .map(|p| p.signer.name.as_str())
                .collect();
            if culprits.is_empty() {
                failures.unattributed.push(format!(
                    "aggregation failed ({e}); no share was singled out"
                ));
            }
            for name in culprits {
                let reason = format!("invalid signature share (aggregation failed: {e})");
                crate::phases::count("invalid_shares", 1);
                if registry.standings().exclude(name, &reason) {
                    tracing::error!(signer = name, key_id = %key_id, "a signer sent a signature share that does not verify: it is excluded from every signing until the coordinator restarts");
                }
                failures.push(SignerFailure::bad_answer(name, reason));
                failed.push(name.to_string());
            }
            Err(Round2Failed::Signers(failed))
        }
    }
}

/// Whether a signer's round-2 refusal says it has no nonces for its
/// commitments in the package (used, expired, or lost in a restart).
fn nonces_gone(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition
        && status.message().contains("no unused round-1 nonces")
}

/// Starts a refill of every pool of `key` below its low-water mark, in the
/// background: the next signings find preprocessed commitments.
fn refill_pools<C: Suite>(registry: &Registry, key: &LoadedKey<C>, pool: &[Participant<C>]) {
    let key_id = key.record.key_id.to_string();
    for p in pool {
        let Some(refill) = registry.pools().start_refill(&p.signer.name, &key_id) else {
            continue;
        };
        let pools = registry.pools().clone();
        let mut client = p.signer.client.clone();
        let expected = u32::from(p.signer.identifier);
        tokio::spawn(async move {
            let answer = client
                .preprocess(pb::PreprocessRequest {
                    key_id: refill.key_id.clone(),
                    count: crate::commitment_pool::BATCH,
                })
                .await;
            match answer {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.identifier != expected {
                        tracing::warn!(signer = %refill.signer, identifier = r.identifier, expected, "preprocessed commitments under another identifier: ignored");
                        pools.refill_failed(&refill);
                        return;
                    }
                    // Decoded when taken (a commitment that does not
                    // decode then sends its signer to a live round 1):
                    // decoding each twice cost two point decompressions.
                    pools.refilled(&refill, &r.boot_epoch, r.commitments);
                }
                Err(status) => {
                    tracing::debug!(signer = %refill.signer, code = ?status.code(), reason = status.message(), "preprocessing failed; two-round signing meanwhile");
                    pools.refill_failed(&refill);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringi_frost::Secp256k1;
    use ringi_policy::key_id::KeyId;

    fn key() -> KeyRecord {
        KeyRecord {
            kind: ringi_frost::KeyKind::FrostSecp256k1,
            key_id: KeyId::parse("k").unwrap(),
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
            let e = Error::from(candidates(&key(), &req).unwrap_err());
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    fn dealer_key() -> (
        BTreeMap<Identifier<Secp256k1>, ringi_frost::frost_core::keys::KeyPackage<Secp256k1>>,
        PublicKeyPackage<Secp256k1>,
    ) {
        let (shares, public) = ringi_frost::frost_core::keys::generate_with_dealer::<Secp256k1, _>(
            3,
            2,
            ringi_frost::frost_core::keys::IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let packages = shares
            .into_iter()
            .map(|(id, s)| (id, s.try_into().unwrap()))
            .collect();
        (packages, public)
    }

    #[test]
    fn commitments_decode_only_from_the_registered_identifier() {
        let (packages, _) = dealer_key();
        let id = ringi_frost::identifier::<Secp256k1>(2).unwrap();
        let (_, commitments) = ringi_frost::frost_core::round1::commit(
            packages[&id].signing_share(),
            &mut rand::rngs::OsRng,
        );
        let good = pb::CommitResponse {
            identifier: 2,
            commitments: commitments.serialize().unwrap(),
        };
        assert_eq!(
            decode_commitments::<Secp256k1>(2, &good).unwrap(),
            commitments
        );
        let err = decode_commitments::<Secp256k1>(3, &good).unwrap_err();
        assert!(
            err.contains("answered as identifier 2 but is registered as 3"),
            "{err}"
        );
        for bytes in [
            vec![],
            vec![0; 3],
            vec![0xff; 200],
            good.commitments[..10].to_vec(),
        ] {
            let bad = pb::CommitResponse {
                identifier: 2,
                commitments: bytes,
            };
            let err = decode_commitments::<Secp256k1>(2, &bad).unwrap_err();
            assert!(err.starts_with("undecodable commitments"), "{err}");
        }
    }

    #[test]
    fn signature_shares_refuse_garbage() {
        for bytes in [vec![], vec![0xff; 32], vec![1; 33], vec![0; 1000]] {
            let err = decode_signature_share::<Secp256k1>(&pb::SignResponse {
                signature_share: bytes,
            })
            .unwrap_err();
            assert!(err.starts_with("undecodable signature share"), "{err}");
        }
        let ok = decode_signature_share::<Secp256k1>(&pb::SignResponse {
            signature_share: {
                let mut b = vec![0; 31];
                b.push(7);
                b
            },
        });
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_loaded_key_checks_its_identifiers() {
        let (_, public) = dealer_key();
        let mut record = key();
        record.public_key_package = public.serialize().unwrap();
        record.group_public_key = public.verifying_key().serialize().unwrap();
        assert!(LoadedKey::<Secp256k1>::new(record.clone()).is_ok());
        let mut other_group = record.clone();
        other_group.group_public_key[5] ^= 1;
        let e = LoadedKey::<Secp256k1>::new(other_group).err().unwrap();
        assert!(
            matches!(e, Error::Corrupt(ref m) if m.contains("not the record's")),
            "{e}"
        );
        record.signers.push(("d".into(), 4));
        let e = LoadedKey::<Secp256k1>::new(record.clone()).err().unwrap();
        assert!(
            matches!(e, Error::Corrupt(ref m) if m.contains("identifier 4")),
            "{e}"
        );
        record.signers.pop();
        record.signers[0].1 = 0;
        assert!(LoadedKey::<Secp256k1>::new(record.clone()).is_err());
        record.public_key_package = vec![1, 2, 3];
        assert!(LoadedKey::<Secp256k1>::new(record).is_err());
    }

    /// A key of another kind is never loaded by this suite's engine (it
    /// would aggregate the wrong signature scheme).
    #[test]
    fn a_loaded_key_is_of_the_suites_kind() {
        let (_, public) = dealer_key();
        let mut record = key();
        record.public_key_package = public.serialize().unwrap();
        record.kind = ringi_frost::KeyKind::BitcoinTaproot;
        let e = LoadedKey::<Secp256k1>::new(record).err().unwrap();
        assert!(
            matches!(e, Error::Corrupt(ref m) if m.contains("is a bitcoin-taproot key")),
            "{e}"
        );
    }

    /// A record of `kind` holding `public`.
    fn record_of<C: Suite>(kind: KeyKind, public: &PublicKeyPackage<C>) -> KeyRecord {
        KeyRecord {
            kind,
            public_key_package: public.serialize().unwrap(),
            group_public_key: public.verifying_key().serialize().unwrap(),
            ..key()
        }
    }

    /// `Key::load` picks the suite by the record's kind, and a taproot key
    /// carries the internal and output keys of its group key.
    #[test]
    fn keys_load_with_the_suite_of_their_kind() {
        let (_, public) = dealer_key();
        let frost = Key::load(record_of(KeyKind::FrostSecp256k1, &public)).unwrap();
        assert!(matches!(frost, Key::FrostSecp256k1(_)));
        assert_eq!(frost.facts(), KeyFacts::FrostSecp256k1);

        let (_, public) = ringi_frost::frost_core::keys::generate_with_dealer::<Secp256k1Tr, _>(
            3,
            2,
            ringi_frost::frost_core::keys::IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let record = record_of(KeyKind::BitcoinTaproot, &public);
        let taproot = Key::load(record.clone()).unwrap();
        let (internal_key, output_key) =
            ringi_frost::taproot::keys_of_group(&record.group_public_key).unwrap();
        assert_eq!(
            taproot.facts(),
            KeyFacts::BitcoinTaproot {
                internal_key,
                output_key
            }
        );
        assert_eq!(
            output_key,
            ringi_frost::taproot::output_key(&public).unwrap()
        );
        assert_eq!(taproot.kind(), KeyKind::BitcoinTaproot);
        assert_eq!(taproot.record(), &record);
        // A taproot package recorded as frost-secp256k1 does not load as
        // one (the encodings differ by ciphersuite).
        assert!(Key::load(record_of(KeyKind::FrostSecp256k1, &public)).is_err());
    }
}
