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
use crate::node_audit::audited;
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
/// 1. approvals ([`crate::authorize::ApprovedBundles::authorize`], at `now`):
///    a bundle is presented, decodes, is for `key_id`, and satisfies the
///    pinned policy; nothing touches the token or the nonces otherwise;
/// 2. the vault holds a share for `key_id`, draws a fresh nonce pair with
///    it (RFC 9591 section 5.1, hedged randomness) and keeps it in memory
///    for round 2 ([`crate::vault::ShareVault::commit`]);
/// 3. a `commit_issued` audit entry (key id, request id) is written; if it
///    cannot be, the commitments are not returned.
pub fn commit<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    bundle: &PresentedBundle,
    now: u64,
) -> Result<Round1Output<S>, SignError> {
    let request = ctx.approved.authorize(&ctx.policy, key_id, bundle, now)?;
    let (identifier, commitments) = ctx.vault.commit(key_id)?;
    let request_id = request.id();
    audited(
        ctx.audit.as_ref(),
        "commit_issued",
        &[
            ("key_id", key_id.to_string()),
            ("request_id", hex::encode(request_id)),
        ],
    )?;
    Ok(Round1Output {
        identifier,
        commitments,
        request_id,
    })
}
