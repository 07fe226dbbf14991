//! Round 2 of FROST signing on this node: signature share generation
//! (RFC 9591 section 5.2, "Round Two - Signature Share Generation"), behind
//! this node's own authorization, message check and spending caps.
//!
//! One plain function over domain types, [`sign`]; the gRPC edge
//! (`crate::service`) decodes the wire request into its arguments, runs it on
//! a blocking thread and encodes the result.

use frost_core::SigningPackage;
use frost_core::round2::SignatureShare;
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;
use ringi_policy::subject::Subject;

use crate::authorize::{PresentedBundle, check_message};
use crate::node_audit::{AuditUnavailable, audited};
use crate::phases::SignerPhase::{Audit, Ledger, Token, Verify};
use crate::phases::time;
use crate::releases::Claim;
use crate::releases::InFlight;
use crate::signing::{SignError, SigningContext};
use crate::spending::{Release, Spend};
use ringi_policy::limits::Limits;

/// What round 2 hands back to the coordinator.
#[derive(Debug, Clone)]
pub struct Round2Output<S: Suite> {
    /// This node's signature share.
    pub signature_share: SignatureShare<S>,
    /// The id of the approved request, as audited and counted.
    pub request_id: [u8; 32],
}

/// Round 2 for `key_id`: this node's signature share over the signing
/// package `signing_package` (its serialized form, as the coordinator sent
/// it), on behalf of the request `bundle` approves.
///
/// Checks and effects, in order:
/// 0. `key_id` is not retired ([`SigningContext::not_retired`]; checked
///    again just before the vault signs, so a retirement accepted while
///    this round ran stops it);
/// 1. approvals ([`crate::authorize::ApprovedBundles::authorize`], at `now`):
///    a bundle is presented, decodes, is for `key_id`, and satisfies the
///    pinned policy; nothing touches the token or the nonces otherwise;
/// 2. the signing package decodes ([`SignError::MalformedSigningPackage`]);
/// 3. it signs exactly the approved message ([`check_message`]);
/// 4. the daily-volume figure for percentage caps is read, if configured;
/// 5. the key's caps are checked against this node's ledger, writing
///    nothing ([`crate::spending::SpendingLedger::check`]; a request
///    counted already passes): a request over a cap is refused before the
///    vault;
/// 6. the input is claimed in the node's release log
///    ([`crate::releases`]): the same signing package again gets the share
///    released before (audited as `share_resent`); another package for an
///    input already released is signed only if `excluded` (the signers the
///    coordinator dropped for cause, [`excluded_set`]) strictly grows;
/// 7. the vault finds this node's commitments in the package, takes their
///    nonces out of memory before anything else can fail (a nonce is used
///    at most once), unseals the share and signs with [`Suite::sign`]
///    ([`crate::vault::ShareVault::sign`]);
/// 8. the request is recorded as signed (its caps checked again, a retried
///    request counted once) and the share as released, in one transaction
///    committed durably, with concurrent Signs' (one fsync for many:
///    [`crate::spending::SpendingLedger::release`]); a crash from here on
///    can only over-count. If a concurrent Sign used the cap's budget since
///    step 5, this refuses, and the share (its nonces spent) never leaves;
/// 9. a `share_released` audit entry (key id, request id, asset, amount,
///    destination, requester) is written; if it cannot be, the share does
///    not leave the node.
pub fn sign<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    bundle: &PresentedBundle,
    signing_package: &[u8],
    excluded: &[u32],
    now: u64,
) -> Result<Round2Output<S>, SignError> {
    let item = SignItem {
        bundle,
        signing_package,
        excluded,
    };
    // One result per item, always.
    sign_each(ctx, key_id, &[item], now)
        .pop()
        .unwrap_or(Err(SignError::BatchSize(0)))
}

/// The most Signs one batch may carry (`SignBatch`).
pub const MAX_SIGN_BATCH: usize = 64;

/// One Sign of a batch: what the coordinator sent for one input.
#[derive(Clone, Copy)]
pub struct SignItem<'a> {
    pub bundle: &'a PresentedBundle,
    pub signing_package: &'a [u8],
    pub excluded: &'a [u32],
}

/// Round 2 of several Signs of `key_id` at once (`SignBatch`): each is
/// [`sign`], with the same checks and effects in the same order and its
/// own result, but the vault unseals the share once for all of them
/// (step 7, [`crate::vault::ShareVault::sign_each`]) and their releases
/// share one commit (step 8, [`crate::spending::SpendingLedger::release_each`];
/// each still refused or kept alone, the caps of each counting the ones
/// before it). One result per item, in order.
pub fn sign_each<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    items: &[SignItem<'_>],
    now: u64,
) -> Vec<Result<Round2Output<S>, SignError>> {
    let mut results: Vec<Option<Result<Round2Output<S>, SignError>>> =
        items.iter().map(|_| None).collect();
    // Steps 0-6, each item alone.
    let mut fresh: Vec<(usize, Box<Prepared<S>>, InFlight)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match prepare(ctx, key_id, item, now) {
            Ok(Ready::Resent(out)) => results[i] = Some(Ok(out)),
            Ok(Ready::Fresh(prepared, claim)) => fresh.push((i, prepared, claim)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    // Step 7: the vault, one unseal for every item that got this far.
    fresh.retain(|(i, ..)| match ctx.not_retired(key_id) {
        Ok(()) => true,
        Err(e) => {
            results[*i] = Some(Err(e.into()));
            false
        }
    });
    let packages: Vec<&SigningPackage<S>> = fresh.iter().map(|(_, p, _)| &p.package).collect();
    let shares = time(Token, || ctx.vault.sign_each(key_id, &packages));
    let mut signed = Vec::with_capacity(fresh.len());
    let mut claims = Vec::with_capacity(fresh.len());
    for ((i, prepared, claim), share) in fresh.into_iter().zip(shares) {
        match share {
            Ok(share) => {
                signed.push((i, prepared, share));
                claims.push(claim);
            }
            // The claim is dropped: the input is free again.
            Err(e) => results[i] = Some(Err(e.into())),
        }
    }
    // Step 8: recorded with the spend and its audit entry (one commit for
    // the batch), then appended to the audit log, before the share leaves:
    // no record or no audit entry, no share ([`crate::audit_outbox`]).
    let releases: Vec<Release<'_>> = signed
        .iter()
        .zip(claims)
        .map(|((_, prepared, share), claim)| Release {
            spend: prepared.spend(key_id),
            claim,
            share: share.serialize(),
            event: "share_released",
            fields: &prepared.fields,
        })
        .collect();
    let kept = time(Ledger, || ctx.ledger.release_each(releases, now));
    crate::fault::crash_point("after-release-commit");
    for ((i, prepared, signature_share), kept) in signed.into_iter().zip(kept) {
        // Step 9: the audit log.
        let out = kept.map_err(SignError::from).and_then(|kept| {
            time(Audit, || {
                ctx.audit.record(
                    "share_released",
                    &crate::audit_outbox::logged_fields(&prepared.fields, kept),
                )
            })
            .map_err(AuditUnavailable::from)?;
            Ok(Round2Output {
                signature_share,
                request_id: prepared.request_id,
            })
        });
        results[i] = Some(out);
    }
    results
        .into_iter()
        // Every item got its result above.
        .map(|r| r.unwrap_or(Err(SignError::BatchSize(0))))
        .collect()
}

/// What steps 0-6 leave of one Sign.
enum Ready<S: Suite> {
    /// The same package again: the share released before.
    Resent(Round2Output<S>),
    /// A share to make, with the input's claim in the release log.
    Fresh(Box<Prepared<S>>, InFlight),
}

/// A Sign checked and claimed, waiting for its share.
struct Prepared<S: Suite> {
    package: SigningPackage<S>,
    request_id: [u8; 32],
    amount: u128,
    limits: Limits,
    daily_volume: Option<u128>,
    /// Its `share_released` audit entry.
    fields: Vec<(&'static str, String)>,
}

impl<S: Suite> Prepared<S> {
    fn spend<'a>(&'a self, key_id: &'a KeyId) -> Spend<'a> {
        Spend {
            key_id,
            request_id: &self.request_id,
            amount: self.amount,
            limits: &self.limits,
            daily_volume: self.daily_volume,
        }
    }
}

/// Steps 0-6 of [`sign`] for one item: every check, and the input's claim.
fn prepare<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    item: &SignItem<'_>,
    now: u64,
) -> Result<Ready<S>, SignError> {
    ctx.not_retired(key_id)?;
    let facts = ctx.key_facts(key_id)?;
    let approved = time(Verify, || ctx.authorize(key_id, &facts, item.bundle, now))?;
    let package = SigningPackage::<S>::deserialize(item.signing_package)
        .map_err(|e| SignError::MalformedSigningPackage(e.to_string()))?;
    let excluded = excluded_set(&package, item.excluded)?;
    let input = check_message(&approved, package.message())?;
    let limits = ctx
        .policies
        .for_request(&approved.request, now)
        .key(key_id)
        .map(|k| k.limits.clone())
        .unwrap_or_default();
    let daily_volume =
        ringi_policy::volumes::daily_volume(ctx.daily_volume_file.as_deref(), key_id)?;
    let request_id = approved.request.id();
    // The amount counted is the subject's: for a PSBT, the sum of the
    // payments this node derived; every input of one request counts once.
    let prepared = Prepared {
        package,
        request_id,
        amount: approved.subject.amount(),
        limits,
        daily_volume,
        fields: released_fields(key_id, &approved, input),
    };
    time(Ledger, || ctx.ledger.check(&prepared.spend(key_id), now))?;
    // The release record of the input ([`crate::releases`]): the same
    // package again gets the same share; another only if the signers it
    // excludes strictly grow.
    let claim = match time(Ledger, || {
        ctx.ledger
            .releases()
            .claim(&request_id, input, item.signing_package, &excluded)
    })? {
        Claim::Again(bytes) => {
            let signature_share = SignatureShare::<S>::deserialize(&bytes)
                .map_err(|e| crate::releases::ReleaseError::Store(format!("stored share: {e}")))?;
            time(Audit, || {
                audited(ctx.audit.as_ref(), "share_resent", &prepared.fields)
            })?;
            return Ok(Ready::Resent(Round2Output {
                signature_share,
                request_id,
            }));
        }
        Claim::Fresh(claim) => claim,
    };
    let mut prepared = prepared;
    if !excluded.is_empty() {
        // A further package for the input: who the coordinator left out.
        let ids: Vec<String> = excluded.iter().map(u16::to_string).collect();
        prepared.fields.push(("excluded", ids.join(",")));
    }
    Ok(Ready::Fresh(Box::new(prepared), claim))
}

/// The most identifiers a `SignRequest` may name as excluded: FROST
/// identifiers are `u16`, and no deployment has more signers.
pub const MAX_EXCLUDED: usize = 1024;

/// `excluded` (the wire's `excluded_identifiers`) as a set of FROST
/// identifiers none of which signs `package`: anything else is the
/// coordinator's error ([`SignError::BadExclusion`]), refused before any
/// effect.
pub fn excluded_set<S: Suite>(
    package: &SigningPackage<S>,
    excluded: &[u32],
) -> Result<crate::releases::Excluded, SignError> {
    if excluded.len() > MAX_EXCLUDED {
        return Err(SignError::BadExclusion(format!(
            "{} excluded identifiers, more than {MAX_EXCLUDED}",
            excluded.len()
        )));
    }
    let mut set = crate::releases::Excluded::new();
    for &n in excluded {
        let id = u16::try_from(n)
            .ok()
            .and_then(|n| ringi_frost::identifier::<S>(n).map(|id| (n, id)));
        let Some((n, id)) = id else {
            return Err(SignError::BadExclusion(format!(
                "{n} is not a FROST identifier"
            )));
        };
        if package.signing_commitments().contains_key(&id) {
            return Err(SignError::BadExclusion(format!(
                "identifier {n} is excluded but signs the package"
            )));
        }
        set.insert(n);
    }
    Ok(set)
}

/// The `share_released` audit entry: what the share pays, as this node
/// derived it.
fn released_fields(
    key_id: &KeyId,
    approved: &crate::authorize::Approved,
    input: usize,
) -> Vec<(&'static str, String)> {
    let request = &approved.request;
    let mut fields = vec![
        ("key_id", key_id.to_string()),
        ("request_id", hex::encode(request.id())),
    ];
    match &approved.subject {
        Subject::Transaction(t) => fields.extend([
            ("txid", t.txid.clone()),
            ("input", input.to_string()),
            ("asset", "BTC".to_string()),
            ("amount", t.total_paid().to_string()),
            ("destination", t.destinations().join(",")),
            ("fee", t.fee.to_string()),
        ]),
        Subject::Blind => fields.extend([
            ("blind", "true".to_string()),
            ("asset", request.metadata.asset.clone()),
            ("amount", request.metadata.amount.to_string()),
            ("destination", request.metadata.destination.clone()),
        ]),
        Subject::Declared { .. } => fields.extend([
            ("asset", request.metadata.asset.clone()),
            ("amount", request.metadata.amount.to_string()),
            ("destination", request.metadata.destination.clone()),
        ]),
    }
    fields.push(("requester", request.requester.clone()));
    fields
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::authorize::AuthorizationError;
    use crate::signing::testkit::{Cluster, NOW, S, k};
    use crate::test_doubles::Approvers;
    use crate::vault::VaultError;
    use ringi_policy::evaluate::Violation;
    use ringi_policy::limits::CapExceeded;
    use ringi_policy::statement::Decision;
    use ringi_proto::bundle::BundleError;

    fn bytes(package: &SigningPackage<S>) -> Vec<u8> {
        package.serialize().unwrap()
    }

    /// The authorization refusal of round 2 on node 0 at `now`.
    fn refusal(
        cluster: &Cluster,
        bundle: &PresentedBundle,
        package: &[u8],
        now: u64,
    ) -> AuthorizationError {
        match sign(&cluster.nodes[0].ctx, &k(), bundle, package, &[], now) {
            Err(SignError::Authorization(a)) => a,
            other => panic!("expected an authorization refusal, got {other:?}"),
        }
    }

    #[test]
    fn approved_shares_aggregate_to_a_signature_under_the_group_key() {
        let cluster = Cluster::new();
        let (request, bundle) = cluster.approved(b"pay 10", 10);
        let package = cluster.package(&[0, 1], &bundle, b"pay 10");
        let mut shares = BTreeMap::new();
        for i in [0, 1] {
            let out = sign(
                &cluster.nodes[i].ctx,
                &k(),
                &bundle,
                &bytes(&package),
                &[],
                NOW,
            )
            .unwrap();
            assert_eq!(out.request_id, request.id());
            shares.insert(
                ringi_frost::identifier::<S>(i as u16 + 1).unwrap(),
                out.signature_share,
            );
        }
        let signature = S::aggregate(&package, &shares, &cluster.public).unwrap();
        cluster
            .public
            .verifying_key()
            .verify(b"pay 10", &signature)
            .unwrap();
        let node = &cluster.nodes[0];
        assert_eq!(node.audit.events(), ["commit_issued", "share_released"]);
        let released = &node.audit.entries()[1].fields;
        for (field, value) in [
            ("key_id", "k".to_string()),
            ("request_id", hex::encode(request.id())),
            ("asset", "BTC".into()),
            ("amount", "10".into()),
            ("destination", "bc1qdestination".into()),
            ("requester", "requester".into()),
        ] {
            assert_eq!(released[field], value, "{field}");
        }
        assert_eq!(node.vault.nonces_waiting(), 0);
    }

    #[test]
    fn no_bundle_and_malformed_bundle() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = bytes(&cluster.package(&[0, 1], &bundle, b"m"));
        assert_eq!(
            refusal(&cluster, &PresentedBundle::Missing, &package, NOW),
            AuthorizationError::NoBundle
        );
        let malformed = PresentedBundle::Malformed(BundleError("no request".into()));
        assert_eq!(
            refusal(&cluster, &malformed, &package, NOW),
            AuthorizationError::MalformedBundle(BundleError("no request".into()))
        );
    }

    #[test]
    fn a_bundle_for_another_key() {
        let cluster = Cluster::new();
        let cold = KeyId::parse("cold").unwrap();
        let bundle = cluster.approve(&cluster.request(&cold, b"m", 10));
        assert_eq!(
            refusal(&cluster, &bundle, b"", NOW),
            AuthorizationError::WrongKey {
                approved: cold,
                requested: k()
            }
        );
    }

    #[test]
    fn quorum_not_met_names_what_is_missing() {
        let cluster = Cluster::new();
        let request = cluster.request(&k(), b"m", 10);
        let one = Approvers::bundle(
            &request,
            vec![cluster.decision(&request, "alice", "treasury", Decision::Approve)],
        );
        let err = refusal(&cluster, &one, b"", NOW);
        assert_eq!(
            err,
            AuthorizationError::QuorumNotMet {
                missing: BTreeMap::from([("compliance".to_string(), (0, 1))])
            }
        );
        assert!(
            err.to_string()
                .contains("quorum not met: compliance 0 of 1")
        );
    }

    #[test]
    fn a_veto_rejects() {
        let cluster = Cluster::new();
        let request = cluster.request(&k(), b"m", 10);
        let PresentedBundle::Decoded(mut bundle) = cluster.approve(&request) else {
            unreachable!()
        };
        bundle.approvals.push(cluster.approvers.approval(
            &request,
            "dave",
            "compliance",
            Decision::Reject,
            "sanctioned address",
            NOW - 60,
            NOW + 240,
        ));
        assert_eq!(
            refusal(&cluster, &PresentedBundle::Decoded(bundle), b"", NOW),
            AuthorizationError::Rejected {
                approver: "dave".into(),
                department: "compliance".into(),
                reason: "sanctioned address".into()
            }
        );
    }

    #[test]
    fn a_request_under_another_policy() {
        let cluster = Cluster::new();
        let mut request = cluster.request(&k(), b"m", 10);
        request.policy_hash = [7; 32];
        let err = refusal(&cluster, &cluster.approve(&request), b"", NOW);
        assert!(
            matches!(&err, AuthorizationError::PolicyMismatch { request, .. } if *request == hex::encode([7; 32])),
            "{err:?}"
        );
    }

    #[test]
    fn an_expired_request_or_approval() {
        let cluster = Cluster::new();
        let (request, bundle) = cluster.approved(b"m", 10);
        assert_eq!(
            refusal(&cluster, &bundle, b"", request.expires_at),
            AuthorizationError::RequestExpired {
                expires_at: request.expires_at,
                now: request.expires_at
            }
        );
        assert_eq!(
            refusal(&cluster, &bundle, b"", NOW + 240),
            AuthorizationError::ApprovalExpired {
                index: 0,
                approver: "alice".into(),
                expires_at: NOW + 240,
                now: NOW + 240
            }
        );
    }

    #[test]
    fn forged_approvals_are_violations() {
        let cluster = Cluster::new();
        let request = cluster.request(&k(), b"m", 10);
        let PresentedBundle::Decoded(mut bundle) = cluster.approve(&request) else {
            unreachable!()
        };
        bundle.approvals[0].signature[0] ^= 1;
        assert_eq!(
            refusal(&cluster, &PresentedBundle::Decoded(bundle), b"", NOW),
            AuthorizationError::Violation(Violation::BadSignature { index: 0 })
        );
        let by_mallory = Approvers::bundle(
            &request,
            vec![
                cluster.decision(&request, "mallory", "treasury", Decision::Approve),
                cluster.decision(&request, "carol", "compliance", Decision::Approve),
            ],
        );
        assert_eq!(
            refusal(&cluster, &by_mallory, b"", NOW),
            AuthorizationError::Violation(Violation::UnknownApprover { index: 0 })
        );
    }

    #[test]
    fn a_package_for_another_message() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"approved payment", 10);
        let package = cluster.package(&[0, 1], &bundle, b"attacker's payment");
        assert_eq!(
            refusal(&cluster, &bundle, &bytes(&package), NOW),
            AuthorizationError::MessageMismatch
        );
    }

    #[test]
    fn a_malformed_signing_package() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"m", 10);
        let err = sign(
            &cluster.nodes[0].ctx,
            &k(),
            &bundle,
            &[0xde, 0xad],
            &[],
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(err, SignError::MalformedSigningPackage(_)),
            "{err:?}"
        );
    }

    #[test]
    fn the_window_cap_counts_what_this_node_signed() {
        let cluster = Cluster::new();
        let (_, first) = cluster.approved(b"first", 2000);
        let package = cluster.package(&[0, 1], &first, b"first");
        sign(
            &cluster.nodes[0].ctx,
            &k(),
            &first,
            &bytes(&package),
            &[],
            NOW,
        )
        .unwrap();
        let (_, second) = cluster.approved(b"second", 1000);
        let package = cluster.package(&[0, 1], &second, b"second");
        let err = refusal(&cluster, &second, &bytes(&package), NOW);
        assert!(
            matches!(
                err,
                AuthorizationError::CapExceeded(CapExceeded::WindowAmount {
                    amount: 1000,
                    total: 3000,
                    cap: 2500,
                    window_secs: 600
                })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("max_amount_per_window 2500"));
        // Refused before the vault: its nonces are still there, and the
        // other node, which signed nothing yet, signs it.
        assert_eq!(cluster.nodes[0].vault.nonces_waiting(), 1);
        sign(
            &cluster.nodes[1].ctx,
            &k(),
            &second,
            &bytes(&package),
            &[],
            NOW,
        )
        .unwrap();
    }

    #[test]
    fn one_share_per_input_the_same_package_gets_it_again() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = bytes(&cluster.package(&[0, 1], &bundle, b"m"));
        let node = &cluster.nodes[0];
        let first = sign(&node.ctx, &k(), &bundle, &package, &[], NOW).unwrap();
        // The coordinator lost the response and asks again: the same
        // share, from the release log; no nonce is involved.
        let again = sign(&node.ctx, &k(), &bundle, &package, &[], NOW).unwrap();
        assert_eq!(again.signature_share, first.signature_share);
        assert_eq!(
            node.audit.events(),
            ["commit_issued", "share_released", "share_resent"]
        );
        // A second signing of the request (new commitments) that leaves
        // out no signer of the first is refused.
        let second = bytes(&cluster.package(&[0, 2], &bundle, b"m"));
        let err = sign(&node.ctx, &k(), &bundle, &second, &[], NOW).unwrap_err();
        assert!(
            matches!(
                err,
                SignError::Release(crate::releases::ReleaseError::AlreadyReleased { input: 0, .. })
            ),
            "{err:?}"
        );
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::FailedPrecondition
        );
        // Its nonces were not consumed.
        assert_eq!(node.vault.nonces_waiting(), 1);
        // Naming as excluded a signer of the package is the coordinator's
        // error, refused before any effect.
        let err = sign(&node.ctx, &k(), &bundle, &second, &[3], NOW).unwrap_err();
        assert!(matches!(err, SignError::BadExclusion(_)), "{err:?}");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument
        );
        for bad in [0, 70_000] {
            let err = sign(&node.ctx, &k(), &bundle, &second, &[bad], NOW).unwrap_err();
            assert!(matches!(err, SignError::BadExclusion(_)), "{bad}: {err:?}");
        }
        // Leaving out the signer (identifier 2) of the package it signed:
        // the new package is signed, with its own share.
        let replaced = sign(&node.ctx, &k(), &bundle, &second, &[2], NOW).unwrap();
        assert_ne!(replaced.signature_share, first.signature_share);
        assert_eq!(node.vault.nonces_waiting(), 0);
        // And a third package can exclude no more (3 is its co-signer).
        let third = bytes(&cluster.package(&[0, 1], &bundle, b"m"));
        let err = sign(&node.ctx, &k(), &bundle, &third, &[3], NOW).unwrap_err();
        assert!(
            matches!(
                err,
                SignError::Release(crate::releases::ReleaseError::AlreadyReleased { .. })
            ),
            "{err:?}"
        );
    }

    /// A batch: each item gets what its own Sign would have (a share, its
    /// refusal), the releases share one commit, and the caps each release
    /// checks count the items before it.
    #[test]
    fn a_batch_answers_each_item_as_alone_with_one_commit() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        let (_, a) = cluster.approved(b"a", 1000);
        let (_, b) = cluster.approved(b"b", 10);
        let (_, d) = cluster.approved(b"d", 1000);
        let (_, e) = cluster.approved(b"e", 1000);
        let pa = cluster.package(&[0, 1], &a, b"a");
        // b's package reuses a's commitments: its nonces are a's.
        let pb = bytes(&SigningPackage::new(pa.signing_commitments().clone(), b"b"));
        let pd = bytes(&cluster.package(&[0, 1], &d, b"d"));
        let pe = bytes(&cluster.package(&[0, 1], &e, b"e"));
        let pa = bytes(&pa);
        let item = |bundle, signing_package| SignItem {
            bundle,
            signing_package,
            excluded: &[],
        };
        let commits = node.ctx.ledger.commit_stats().commits;
        let out = sign_each(
            &node.ctx,
            &k(),
            &[
                item(&a, &pa),
                item(&b, &pb),
                item(&PresentedBundle::Missing, &pd),
                item(&d, &pd),
                item(&e, &pe),
            ],
            NOW,
        );
        assert_eq!(out.len(), 5);
        let share_a = out[0].as_ref().unwrap().signature_share;
        assert!(
            matches!(out[1], Err(SignError::Vault(VaultError::NonceUnavailable))),
            "{:?}",
            out[1]
        );
        assert!(
            matches!(
                out[2],
                Err(SignError::Authorization(AuthorizationError::NoBundle))
            ),
            "{:?}",
            out[2]
        );
        assert!(out[3].is_ok(), "{:?}", out[3]);
        // Each passed the caps' check alone (nothing committed yet); the
        // release of e counts a and d before it: 3000 over 2500.
        assert!(
            matches!(
                out[4],
                Err(SignError::Authorization(AuthorizationError::CapExceeded(
                    CapExceeded::WindowAmount { total: 3000, .. }
                )))
            ),
            "{:?}",
            out[4]
        );
        assert_eq!(node.ctx.ledger.commit_stats().commits, commits + 1);
        assert_eq!(
            node.audit
                .events()
                .iter()
                .filter(|e| *e == "share_released")
                .count(),
            2
        );
        // a's share is a's: with node 1's, a signature over "a".
        let package = SigningPackage::<S>::deserialize(&pa).unwrap();
        let other = sign(&cluster.nodes[1].ctx, &k(), &a, &pa, &[], NOW).unwrap();
        let shares = BTreeMap::from([
            (ringi_frost::identifier::<S>(1).unwrap(), share_a),
            (
                ringi_frost::identifier::<S>(2).unwrap(),
                other.signature_share,
            ),
        ]);
        let signature = S::aggregate(&package, &shares, &cluster.public).unwrap();
        cluster
            .public
            .verifying_key()
            .verify(b"a", &signature)
            .unwrap();
        // Asked again in a batch: the same share, resent.
        let again = sign_each(&node.ctx, &k(), &[item(&a, &pa)], NOW);
        assert_eq!(again[0].as_ref().unwrap().signature_share, share_a);
        assert_eq!(node.audit.events().last().unwrap(), "share_resent");
    }

    #[test]
    fn a_nonce_is_used_at_most_once() {
        // Two requests' packages built over the same commitments: the
        // second finds its nonces gone.
        let cluster = Cluster::new();
        let (_, first) = cluster.approved(b"m", 10);
        let (_, second) = cluster.approved(b"n", 10);
        let package = cluster.package(&[0, 1], &first, b"m");
        sign(
            &cluster.nodes[0].ctx,
            &k(),
            &first,
            &bytes(&package),
            &[],
            NOW,
        )
        .unwrap();
        let reused = frost_core::SigningPackage::new(package.signing_commitments().clone(), b"n");
        let err = sign(
            &cluster.nodes[0].ctx,
            &k(),
            &second,
            &bytes(&reused),
            &[],
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(err, SignError::Vault(VaultError::NonceUnavailable)),
            "{err:?}"
        );
        assert!(err.to_string().contains("used at most once"));
    }

    #[test]
    fn a_package_without_this_node() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = bytes(&cluster.package(&[1, 2], &bundle, b"m"));
        let err = sign(&cluster.nodes[0].ctx, &k(), &bundle, &package, &[], NOW).unwrap_err();
        assert!(
            matches!(err, SignError::Vault(VaultError::NotAParticipant(1))),
            "{err:?}"
        );
    }

    #[test]
    fn a_key_this_node_holds_no_share_of() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = bytes(&cluster.package(&[0, 1], &bundle, b"m"));
        let cold = KeyId::parse("cold").unwrap();
        let cold_bundle = cluster.approve(&cluster.request(&cold, b"m", 10));
        let err = sign(
            &cluster.nodes[0].ctx,
            &cold,
            &cold_bundle,
            &package,
            &[],
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(&err, SignError::Vault(VaultError::UnknownKey(key)) if key == "cold"),
            "{err:?}"
        );
    }

    #[test]
    fn an_unreadable_daily_volume_file() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::with_volume_file(Some(dir.path().join("missing.toml")));
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = bytes(&cluster.package(&[0, 1], &bundle, b"m"));
        let err = sign(&cluster.nodes[0].ctx, &k(), &bundle, &package, &[], NOW).unwrap_err();
        assert!(matches!(err, SignError::DailyVolume(_)), "{err:?}");
    }

    #[test]
    fn no_audit_entry_no_share() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = bytes(&cluster.package(&[0, 1], &bundle, b"m"));
        let node = &cluster.nodes[0];
        node.audit.set_failing(true);
        let err = sign(&node.ctx, &k(), &bundle, &package, &[], NOW).unwrap_err();
        assert!(matches!(err, SignError::AuditUnavailable(_)), "{err:?}");
        // Still no audit, still no share.
        let err = sign(&node.ctx, &k(), &bundle, &package, &[], NOW).unwrap_err();
        assert!(matches!(err, SignError::AuditUnavailable(_)), "{err:?}");
        assert!(!node.audit.events().contains(&"share_released".to_string()));
        // Once the audit log works, the share recorded for this package
        // leaves with its entry; the nonces were used once.
        node.audit.set_failing(false);
        sign(&node.ctx, &k(), &bundle, &package, &[], NOW).unwrap();
        assert_eq!(node.audit.events().last().unwrap(), "share_resent");
        assert_eq!(node.vault.nonces_waiting(), 0);
    }

    #[test]
    fn refusals_before_the_vault_consume_no_nonce() {
        let cluster = Cluster::new();
        let (request, bundle) = cluster.approved(b"m", 10);
        let package = cluster.package(&[0, 1], &bundle, b"m");
        let other = SigningPackage::new(package.signing_commitments().clone(), b"other");
        let one = Approvers::bundle(
            &request,
            vec![cluster.decision(&request, "alice", "treasury", Decision::Approve)],
        );
        let node = &cluster.nodes[0];
        for (bundle, package) in [
            (&PresentedBundle::Missing, bytes(&package)),
            (&one, bytes(&package)),
            (&bundle, bytes(&other)),
            (&bundle, vec![1, 2, 3]),
        ] {
            assert!(sign(&node.ctx, &k(), bundle, &package, &[], NOW).is_err());
        }
        assert_eq!(node.vault.nonces_waiting(), 1);
        sign(&node.ctx, &k(), &bundle, &bytes(&package), &[], NOW).unwrap();
    }
}

/// PSBT requests for a bitcoin-taproot key (memory vaults, the named test
/// double; the real-process versions are in coordinator/tests): a signer
/// signs only the sighashes it computed itself from the approved PSBT, and
/// judges the payments it derived, not anything declared.
#[cfg(test)]
mod psbt_tests {
    use std::collections::BTreeMap;

    use bitcoin::ScriptBuf;
    use ringi_frost::taproot::Secp256k1Tr;
    use ringi_policy::evaluate::Violation;
    use ringi_policy::limits::CapExceeded;
    use ringi_psbt::bitcoin;
    use ringi_psbt::build::{Coin, address_script, unsigned};
    use ringi_psbt::{Network, PsbtError};

    use super::*;
    use crate::authorize::AuthorizationError;
    use crate::signing::testkit::{Cluster, NOW, PAYEE, PAYEE_2, k};

    type Tr = Secp256k1Tr;

    fn script(address: &str) -> ScriptBuf {
        address_script(address, Network::Regtest).unwrap()
    }

    /// A PSBT spending `coins` (value each 60,000 sat) of the cluster's key
    /// to `outputs`.
    fn psbt(cluster: &Cluster<Tr>, inputs: usize, outputs: &[(ScriptBuf, u64)]) -> Vec<u8> {
        let coins: Vec<Coin> = (0..inputs)
            .map(|i| Coin::synthetic(0x20 + i as u8, i as u32, 60_000))
            .collect();
        unsigned(&cluster.own_key(), &coins, outputs).serialize()
    }

    /// Rounds 1 and 2 on nodes 0 and 1 for `message`; the aggregate, or
    /// node 0's round-2 refusal.
    fn sign_message(
        cluster: &Cluster<Tr>,
        bundle: &PresentedBundle,
        message: &[u8],
    ) -> Result<[u8; 64], SignError> {
        let package = cluster.package_for(&[0, 1], bundle, message)?;
        let bytes = package.serialize().unwrap();
        let mut shares = BTreeMap::new();
        for i in [0, 1] {
            let out = sign(&cluster.nodes[i].ctx, &k(), bundle, &bytes, &[], NOW)?;
            shares.insert(
                ringi_frost::identifier::<Tr>(i as u16 + 1).unwrap(),
                out.signature_share,
            );
        }
        let signature = Tr::aggregate(&package, &shares, &cluster.public).unwrap();
        Ok(signature.serialize().unwrap().try_into().unwrap())
    }

    fn refusal(result: Result<impl std::fmt::Debug, SignError>) -> AuthorizationError {
        match result {
            Err(SignError::Authorization(a)) => a,
            other => panic!("expected an authorization refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_input_is_signed_under_the_approval_and_the_transaction_spends() {
        let cluster = Cluster::taproot();
        let own = cluster.own_key();
        let spend = psbt(
            &cluster,
            2,
            &[(script(PAYEE), 70_000), (own.script(), 49_000)],
        );
        let request = cluster.psbt_request(spend.clone());
        let bundle = cluster.approve(&request);
        let derived = ringi_psbt::derive(&spend, &own, false).unwrap();
        let signatures: Vec<[u8; 64]> = derived
            .sighashes
            .iter()
            .map(|m| sign_message(&cluster, &bundle, m).unwrap())
            .collect();
        let done = ringi_psbt::finalize(&spend, &own, false, &signatures).unwrap();
        let spent = vec![(own.script(), 60_000); 2];
        ringi_psbt::consensus::verify(&done.tx, &spent).unwrap();

        // Each node audited each input with what it derived, and counted
        // the request once: 70,000 sat paid.
        let node = &cluster.nodes[0];
        let released: Vec<_> = node
            .audit
            .entries()
            .into_iter()
            .filter(|e| e.event == "share_released")
            .collect();
        assert_eq!(released.len(), 2);
        for (input, entry) in released.iter().enumerate() {
            assert_eq!(entry.fields["txid"], derived.txid);
            assert_eq!(entry.fields["input"], input.to_string());
            assert_eq!(entry.fields["amount"], "70000");
            assert_eq!(entry.fields["destination"], PAYEE);
            assert_eq!(entry.fields["fee"], "1000");
        }
        // The cap is 100,000 a request: a second request paying 40,000
        // passes (the first counted once, not per input, and per-request
        // caps look at one request).
        let second = cluster.psbt_request(psbt(
            &cluster,
            1,
            &[(script(PAYEE_2), 40_000), (own.script(), 19_500)],
        ));
        let bundle = cluster.approve(&second);
        let derived = ringi_psbt::derive(second.psbt.as_ref().unwrap(), &own, false).unwrap();
        sign_message(&cluster, &bundle, &derived.sighashes[0]).unwrap();
    }

    #[test]
    fn a_signing_package_over_another_transaction_is_refused() {
        let cluster = Cluster::taproot();
        let own = cluster.own_key();
        let approved = psbt(
            &cluster,
            1,
            &[(script(PAYEE), 10_000), (own.script(), 49_000)],
        );
        let bundle = cluster.approve(&cluster.psbt_request(approved));
        // The coordinator signs a sweep of the same coin to itself instead.
        let other = psbt(&cluster, 1, &[(script(PAYEE), 59_000)]);
        let other_sighash = ringi_psbt::derive(&other, &own, false).unwrap().sighashes[0];
        let err = refusal(sign_message(&cluster, &bundle, &other_sighash));
        assert_eq!(err, AuthorizationError::MessageMismatch);
        assert_eq!(
            tonic::Status::from(SignError::from(err)).code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn payments_over_the_cap_are_refused_whatever_is_declared() {
        let cluster = Cluster::taproot();
        let own = cluster.own_key();
        // 2 x 60,000 in, 110,000 to an allowlisted payee: above 100,000.
        let spend = psbt(
            &cluster,
            2,
            &[(script(PAYEE), 110_000), (own.script(), 9_000)],
        );
        let request = cluster.psbt_request(spend.clone());
        let bundle = cluster.approve(&request);
        let derived = ringi_psbt::derive(&spend, &own, false).unwrap();
        let err = refusal(sign_message(&cluster, &bundle, &derived.sighashes[0]));
        assert_eq!(
            err,
            AuthorizationError::CapExceeded(CapExceeded::PerRequest {
                amount: 110_000,
                cap: 100_000
            })
        );
    }

    #[test]
    fn one_payment_off_the_allowlist_refuses_the_request_at_round_1() {
        let cluster = Cluster::taproot();
        let own = cluster.own_key();
        // Another key's P2TR address.
        let stranger = Cluster::taproot().own_key().address();
        let stranger = stranger.as_str();
        let psbt = psbt(
            &cluster,
            1,
            &[
                (script(PAYEE), 10_000),
                (script(stranger), 10_000),
                (own.script(), 39_000),
            ],
        );
        let bundle = cluster.approve(&cluster.psbt_request(psbt));
        let err = refusal(cluster.package_for(&[0], &bundle, &[0; 32]));
        assert_eq!(
            err,
            AuthorizationError::Violation(Violation::DestinationNotAllowed(stranger.into()))
        );
    }

    #[test]
    fn an_input_that_is_not_the_keys_is_invalid_argument() {
        let cluster = Cluster::taproot();
        let own = cluster.own_key();
        let mut psbt = unsigned(
            &own,
            &[Coin::synthetic(1, 0, 60_000)],
            &[(script(PAYEE), 10_000)],
        );
        psbt.inputs[0].witness_utxo.as_mut().unwrap().script_pubkey = script(PAYEE_2);
        psbt.inputs[0].tap_internal_key = None;
        let bundle = cluster.approve(&cluster.psbt_request(psbt.serialize()));
        let err = refusal(cluster.package_for(&[0], &bundle, &[0; 32]));
        assert!(
            matches!(
                &err,
                AuthorizationError::Violation(Violation::Psbt(PsbtError::ForeignInput {
                    input: 0,
                    ..
                }))
            ),
            "{err:?}"
        );
        let status = tonic::Status::from(SignError::from(err));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("input 0"), "{status:?}");
    }

    #[test]
    fn an_excessive_fee_is_refused() {
        let cluster = Cluster::taproot();
        let own = cluster.own_key();
        // 60,000 in, 50,000 out: a 10,000 sat fee, over max_sats = 5000.
        let greedy = psbt(&cluster, 1, &[(script(PAYEE), 50_000)]);
        let bundle = cluster.approve(&cluster.psbt_request(greedy));
        let err = refusal(cluster.package_for(&[0], &bundle, &[0; 32]));
        assert_eq!(
            err,
            AuthorizationError::Violation(Violation::FeeTooHigh {
                fee: 10_000,
                cap: 5_000
            })
        );
        // A one-input, one-output key-path spend is 111 vB: 4,900 sat is
        // under max_sats but 45 sat/vB, under the 50 sat/vB cap; passes.
        let ok = psbt(&cluster, 1, &[(script(PAYEE), 55_100)]);
        assert_eq!(ringi_psbt::derive(&ok, &own, false).unwrap().vsize, 111);
        let bundle = cluster.approve(&cluster.psbt_request(ok));
        assert!(cluster.package_for(&[0], &bundle, &[0; 32]).is_ok());
        // Paying a P2WPKH output, the spend is 99 vB: 5,000 sat is within
        // max_sats, but 50.5 sat/vB is over the 50 sat/vB cap.
        let dear = psbt(&cluster, 1, &[(script(PAYEE_2), 55_000)]);
        assert_eq!(ringi_psbt::derive(&dear, &own, false).unwrap().vsize, 99);
        let bundle = cluster.approve(&cluster.psbt_request(dear));
        let err = refusal(cluster.package_for(&[0], &bundle, &[0; 32]));
        assert_eq!(
            err,
            AuthorizationError::Violation(Violation::FeeRateTooHigh {
                rate: 51,
                vsize: 99,
                cap: 50
            })
        );
    }

    #[test]
    fn a_raw_message_on_a_taproot_key_is_blind_and_refused_without_a_blind_quorum() {
        let cluster = Cluster::taproot();
        let (_, bundle) = cluster.approved(b"opaque bytes", 0);
        let err = refusal(cluster.package_for(&[0], &bundle, b"opaque bytes"));
        assert_eq!(
            err,
            AuthorizationError::Violation(Violation::BlindSigningNotAllowed(k()))
        );
    }

    #[test]
    fn a_psbt_for_a_frost_secp256k1_key_is_invalid_argument() {
        let frost = Cluster::new();
        let taproot = Cluster::taproot();
        let psbt = psbt(&taproot, 1, &[(script(PAYEE), 10_000)]);
        let mut request = frost.request(&k(), b"", 0);
        request.metadata = Default::default();
        request.psbt = Some(psbt);
        let bundle = frost.approve(&request);
        let err = refusal(frost.package_for(&[0], &bundle, &[0; 32]));
        assert_eq!(
            err,
            AuthorizationError::Violation(Violation::NotATaprootKey(k()))
        );
    }
}
