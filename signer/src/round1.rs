//! Round 1 of FROST signing on this node: commitment (RFC 9591 section 5.1,
//! "Round One - Commitment"), behind this node's own authorization.
//!
//! One plain function over domain types, [`commit`]; the gRPC edge
//! (`crate::service`) decodes the wire request into its arguments, runs it on
//! a blocking thread and encodes the result.

use frost_core::round1::SigningCommitments;
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;

use crate::authorize::PresentedBundle;
use crate::node_audit::recorded;
use crate::phases::SignerPhase::{Audit, Token, Verify};
use crate::phases::time;
use crate::signing::{SignError, SigningContext};

/// What round 1 hands back to the coordinator.
#[derive(Debug, Clone)]
pub struct Round1Output<S: Suite> {
    /// This node's participant number for the key.
    pub identifier: u16,
    /// The commitments to the nonce pair the vault now keeps for round 2.
    pub commitments: SigningCommitments<S>,
    /// The id of the approved request, as audited.
    pub request_id: [u8; 32],
}

/// Round 1 for `key_id`, on behalf of the request `bundle` approves.
///
/// Checks and effects, in order:
/// 0. `key_id` is not retired ([`SigningContext::not_retired`]); the node
///    holds a share for `key_id` (its kind and keys are what the
///    policy's rules judge a PSBT by: [`SigningContext::key_facts`]);
/// 1. approvals ([`crate::authorize::ApprovedBundles::authorize`], at `now`):
///    a bundle is presented, decodes, is for `key_id`, and satisfies the
///    pinned policy; nothing touches the token or the nonces otherwise;
/// 2. the vault holds a share for `key_id`, draws a fresh nonce pair with
///    it (RFC 9591 section 5.1, hedged randomness) and keeps it in memory
///    for round 2 ([`crate::vault::ShareVault::commit`]);
/// 3. a `commit_issued` audit entry (key id, request id) is written (not
///    synced: [`crate::node_audit::recorded`]); if it cannot be, the
///    commitments are not returned.
pub fn commit<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    bundle: &PresentedBundle,
    now: u64,
) -> Result<Round1Output<S>, SignError> {
    ctx.not_retired(key_id)?;
    let facts = ctx.key_facts(key_id)?;
    let approved = time(Verify, || ctx.authorize(key_id, &facts, bundle, now))?;
    let (identifier, commitments) = time(Token, || ctx.vault.commit(key_id))?;
    let request_id = approved.request.id();
    time(Audit, || {
        recorded(
            ctx.audit.as_ref(),
            "commit_issued",
            &[
                ("key_id", key_id.to_string()),
                ("request_id", hex::encode(request_id)),
            ],
        )
    })?;
    Ok(Round1Output {
        identifier,
        commitments,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::AuthorizationError;
    use crate::signing::testkit::{Cluster, NOW, k};
    use crate::vault::VaultError;
    use ringi_policy::statement::Decision;

    #[test]
    fn an_approved_request_gets_commitments_and_an_audit_entry() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        let (request, bundle) = cluster.approved(b"m", 10);
        let out = commit(&node.ctx, &k(), &bundle, NOW).unwrap();
        assert_eq!(out.identifier, 1);
        assert_eq!(out.request_id, request.id());
        assert_eq!(node.vault.nonces_waiting(), 1);
        let entries = node.audit.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].event, "commit_issued");
        assert_eq!(entries[0].fields["key_id"], "k");
        assert_eq!(entries[0].fields["request_id"], hex::encode(request.id()));
        // Written before the commitments leave, not synced: the nonces it
        // records live in memory only (`crate::node_audit::recorded`).
        assert!(!entries[0].durable);
    }

    #[test]
    fn unapproved_requests_touch_no_nonce() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        let err = commit(&node.ctx, &k(), &PresentedBundle::Missing, NOW).unwrap_err();
        assert!(
            matches!(err, SignError::Authorization(AuthorizationError::NoBundle)),
            "{err:?}"
        );
        let request = cluster.request(&k(), b"m", 10);
        let one = crate::test_doubles::Approvers::bundle(
            &request,
            vec![cluster.decision(&request, "alice", "treasury", Decision::Approve)],
        );
        let err = commit(&node.ctx, &k(), &one, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                SignError::Authorization(AuthorizationError::QuorumNotMet { .. })
            ),
            "{err:?}"
        );
        assert_eq!(node.vault.nonces_waiting(), 0);
        assert!(node.audit.entries().is_empty());
    }

    #[test]
    fn a_key_this_node_holds_no_share_of_is_unknown() {
        let cluster = Cluster::new();
        let cold = KeyId::parse("cold").unwrap();
        let request = cluster.request(&cold, b"m", 10);
        let bundle = cluster.approve(&request);
        let err = commit(&cluster.nodes[0].ctx, &cold, &bundle, NOW).unwrap_err();
        assert!(
            matches!(&err, SignError::Vault(VaultError::UnknownKey(key)) if key == "cold"),
            "{err:?}"
        );
    }

    #[test]
    fn no_audit_entry_no_commitments() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        let (_, bundle) = cluster.approved(b"m", 10);
        node.audit.set_failing(true);
        let err = commit(&node.ctx, &k(), &bundle, NOW).unwrap_err();
        assert!(matches!(err, SignError::AuditUnavailable(_)), "{err:?}");
    }
}
