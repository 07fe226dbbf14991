//! Preprocessing on this node: round 1 (RFC 9591 section 5.1, "Round One -
//! Commitment") run ahead of any request, in batches, so that once a
//! request is approved the coordinator needs one round (`Sign`) instead of
//! two: the FROST preprocessing the RFC's section 5.1 allows ("the
//! commitments ... can be pre-computed").
//!
//! Why it is safe to commit without an approval bundle: a commitment alone
//! signs nothing; round 2 ([`crate::round2::sign`]) checks the approvals,
//! the message and the caps exactly as it does after a live round 1.
//! What the node guarantees about the nonces is what round 1 guarantees
//! ([`crate::nonces`]): in memory only, one round 2 each, expired after
//! [`crate::nonces::PREPROCESSED_TTL`], bounded in number. A restart
//! forgets them all; [`boot_epoch`] tells the coordinator so.

use std::sync::OnceLock;

use frost_core::round1::SigningCommitments;
use rand::RngCore;
use rand::rngs::OsRng;
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;

use crate::node_audit::recorded;
use crate::phases::SignerPhase::{Audit, Token};
use crate::phases::time;
use crate::signing::{SignError, SigningContext};

/// The most nonce pairs one call may ask for.
pub const MAX_BATCH: u32 = 256;

/// 16 random bytes drawn once per process: every commitment this process
/// returned is void once another value is seen (the nonces behind them
/// died with the process that held them).
pub fn boot_epoch() -> [u8; 16] {
    static EPOCH: OnceLock<[u8; 16]> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let mut epoch = [0u8; 16];
        OsRng.fill_bytes(&mut epoch);
        epoch
    })
}

/// What preprocessing hands back to the coordinator.
#[derive(Debug, Clone)]
pub struct Preprocessed<S: Suite> {
    /// This node's participant number for the key.
    pub identifier: u16,
    /// The commitments of the nonce pairs the vault now keeps.
    pub commitments: Vec<SigningCommitments<S>>,
}

/// Draws `count` nonce pairs for `key_id` (1..=[`MAX_BATCH`]).
///
/// Checks and effects, in order:
/// 0. `key_id` is not retired ([`SigningContext::not_retired`]): a
///    retired key draws no nonces;
/// 1. `count` is within bounds ([`SignError::BatchSize`]);
/// 2. the vault holds a share for `key_id`, draws the pairs with it (hedged
///    randomness, the share unsealed once for the batch) and keeps them
///    ([`crate::vault::ShareVault::preprocess`]), or refuses the whole batch
///    when its bound is reached;
/// 3. a `commitments_preprocessed` audit entry (key id, count) is written
///    (not synced: [`crate::node_audit::recorded`]); if it cannot be, the
///    commitments are not returned.
pub fn preprocess<S: Suite>(
    ctx: &SigningContext<S>,
    key_id: &KeyId,
    count: u32,
) -> Result<Preprocessed<S>, SignError> {
    ctx.not_retired(key_id)?;
    if count == 0 || count > MAX_BATCH {
        return Err(SignError::BatchSize(count));
    }
    let (identifier, commitments) = time(Token, || ctx.vault.preprocess(key_id, count as usize))?;
    time(Audit, || {
        recorded(
            ctx.audit.as_ref(),
            "commitments_preprocessed",
            &[("key_id", key_id.to_string()), ("count", count.to_string())],
        )
    })?;
    Ok(Preprocessed {
        identifier,
        commitments,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::round2;
    use crate::signing::testkit::{Cluster, NOW, S, k};
    use crate::vault::VaultError;
    use frost_core::SigningPackage;

    #[test]
    fn the_epoch_is_one_per_process() {
        assert_eq!(boot_epoch(), boot_epoch());
        assert_ne!(boot_epoch(), [0u8; 16]);
    }

    #[test]
    fn batch_sizes_out_of_bounds_are_refused_before_the_vault() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        for count in [0, MAX_BATCH + 1] {
            let err = preprocess(&node.ctx, &k(), count).unwrap_err();
            assert!(
                matches!(err, SignError::BatchSize(c) if c == count),
                "{err:?}"
            );
        }
        assert_eq!(node.vault.nonces_waiting(), 0);
        assert!(node.audit.entries().is_empty());
    }

    /// Preprocessed commitments sign an approved request with round 2
    /// alone, each once; the audit names the batch.
    #[test]
    fn preprocessed_commitments_serve_one_round_2_each() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"pay 10", 10);
        let mut commitments = BTreeMap::new();
        for i in [0, 1] {
            let out = preprocess(&cluster.nodes[i].ctx, &k(), 3).unwrap();
            assert_eq!(out.identifier, i as u16 + 1);
            assert_eq!(out.commitments.len(), 3);
            assert_eq!(cluster.nodes[i].vault.nonces_waiting(), 3);
            commitments.insert(
                ringi_frost::identifier::<S>(out.identifier).unwrap(),
                out.commitments[1],
            );
        }
        let entry = &cluster.nodes[0].audit.entries()[0];
        assert_eq!(entry.event, "commitments_preprocessed");
        assert_eq!(entry.fields["count"], "3");
        assert!(!entry.durable, "nonces in memory only: written, not synced");
        let package = SigningPackage::new(commitments, b"pay 10");
        let bytes = package.serialize().unwrap();
        let mut shares = BTreeMap::new();
        for i in [0, 1] {
            let out = round2::sign(&cluster.nodes[i].ctx, &k(), &bundle, &bytes, &[], NOW).unwrap();
            shares.insert(
                ringi_frost::identifier::<S>(i as u16 + 1).unwrap(),
                out.signature_share,
            );
            assert_eq!(cluster.nodes[i].vault.nonces_waiting(), 2);
        }
        let signature = S::aggregate(&package, &shares, &cluster.public).unwrap();
        cluster
            .public
            .verifying_key()
            .verify(b"pay 10", &signature)
            .unwrap();
        // The same commitments in another package (another request) find
        // no nonces: each pair signed once.
        let (_, other) = cluster.approved(b"pay 11", 11);
        let again = SigningPackage::new(package.signing_commitments().clone(), b"pay 11");
        let err = round2::sign(
            &cluster.nodes[0].ctx,
            &k(),
            &other,
            &again.serialize().unwrap(),
            &[],
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(err, SignError::Vault(VaultError::NonceUnavailable)),
            "{err:?}"
        );
    }

    #[test]
    fn a_key_this_node_does_not_hold_is_unknown() {
        let cluster = Cluster::new();
        let err = preprocess(&cluster.nodes[0].ctx, &KeyId::parse("cold").unwrap(), 2).unwrap_err();
        assert!(
            matches!(&err, SignError::Vault(VaultError::UnknownKey(key)) if key == "cold"),
            "{err:?}"
        );
    }
}
