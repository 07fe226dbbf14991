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

use crate::authorize::{PresentedBundle, check_message};
use crate::node_audit::audited;
use crate::signing::{SignError, SigningContext};

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
/// 1. approvals ([`crate::authorize::ApprovedBundles::authorize`], at `now`):
///    a bundle is presented, decodes, is for `key_id`, and satisfies the
///    pinned policy; nothing touches the token or the nonces otherwise;
/// 2. the signing package decodes ([`SignError::MalformedSigningPackage`]);
/// 3. it signs exactly the approved message ([`check_message`]);
/// 4. the daily-volume figure for percentage caps is read, if configured;
/// 5. the key's caps are checked against this node's ledger and the request
///    is recorded as signed, in one transaction (a retried request counts
///    once; a crash from here on can only over-count);
/// 6. the vault finds this node's commitments in the package, takes their
///    nonces out of memory before anything else can fail (a nonce is used
///    at most once), unseals the share and signs with [`Suite::sign`]
///    ([`crate::vault::ShareVault::sign`]);
/// 7. a `share_released` audit entry (key id, request id, asset, amount,
///    destination, requester) is written; if it cannot be, the share does
///    not leave the node.
pub fn sign<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    bundle: &PresentedBundle,
    signing_package: &[u8],
    now: u64,
) -> Result<Round2Output<S>, SignError> {
    let approved = ctx.approved.authorize(&ctx.policy, key_id, bundle, now)?;
    let package = SigningPackage::<S>::deserialize(signing_package)
        .map_err(|e| SignError::MalformedSigningPackage(e.to_string()))?;
    check_message(&approved, package.message())?;
    let limits = ctx
        .policy
        .key(key_id)
        .map(|k| k.limits.clone())
        .unwrap_or_default();
    let volume = ringi_policy::volumes::daily_volume(ctx.daily_volume_file.as_deref(), key_id)?;
    let request_id = approved.id();
    ctx.ledger.record(
        key_id,
        &request_id,
        approved.metadata.amount,
        now,
        &limits,
        volume,
    )?;
    let signature_share = ctx.vault.sign(key_id, &package)?;
    // Written before the share leaves: no audit entry, no share.
    audited(
        ctx.audit.as_ref(),
        "share_released",
        &[
            ("key_id", key_id.to_string()),
            ("request_id", hex::encode(request_id)),
            ("asset", approved.metadata.asset.clone()),
            ("amount", approved.metadata.amount.to_string()),
            ("destination", approved.metadata.destination.clone()),
            ("requester", approved.requester.clone()),
        ],
    )?;
    Ok(Round2Output {
        signature_share,
        request_id,
    })
}
