//! Policy updates to and from the wire (`ringi.signer.v1.Governance`, `ringi.coordinator.v1.PolicyService`), as
//! `ringi_policy::policy_update` types.

use ringi_policy::approver_key::ApproverKey;
use ringi_policy::policy::Policy;
use ringi_policy::policy_update::{AdminSignature, PolicyUpdate};

use crate::approval::v1 as pb;
use crate::bundle::{BundleError, hash32};

/// Admins' signatures off the wire (of a policy update or a key order);
/// a malformed key names the signature.
pub fn admin_signatures_from_pb(
    signatures: &[pb::AdminSignature],
) -> Result<Vec<AdminSignature>, BundleError> {
    signatures
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(AdminSignature {
                admin: ApproverKey::from_sec1(&s.admin_public_key)
                    .map_err(|e| BundleError(format!("signature #{i}: admin_public_key: {e}")))?,
                issued_at: s.issued_at,
                signature: s.signature.clone(),
            })
        })
        .collect()
}

/// Admins' signatures for the wire.
pub fn admin_signatures_to_pb(signatures: &[AdminSignature]) -> Vec<pb::AdminSignature> {
    signatures
        .iter()
        .map(|s| pb::AdminSignature {
            admin_public_key: s.admin.to_sec1(),
            issued_at: s.issued_at,
            signature: s.signature.clone(),
        })
        .collect()
}

pub fn update_from_pb(u: &pb::PolicyUpdate) -> Result<PolicyUpdate, BundleError> {
    Ok(PolicyUpdate {
        text: u.policy.clone(),
        previous_hash: hash32("previous_hash", &u.previous_hash)?,
        effective_at: u.effective_at,
        signatures: admin_signatures_from_pb(&u.signatures)?,
    })
}

pub fn update_to_pb(u: &PolicyUpdate) -> pb::PolicyUpdate {
    pb::PolicyUpdate {
        policy: u.text.clone(),
        previous_hash: u.previous_hash.to_vec(),
        effective_at: u.effective_at,
        signatures: admin_signatures_to_pb(&u.signatures),
    }
}

/// A node's place in its policy chain: the policy in force and a pending
/// update (`PolicyStore::status`); `change` and `already` left for
/// `UpdatePolicy` to fill.
pub fn status_to_pb(current: &Policy, pending: Option<(&Policy, u64)>) -> pb::PolicyStatus {
    let (pending_hash, pending_sequence, pending_effective_at) = match pending {
        Some((p, at)) => (p.hash().to_vec(), p.sequence(), at),
        None => (Vec::new(), 0, 0),
    };
    pb::PolicyStatus {
        policy_hash: current.hash().to_vec(),
        sequence: current.sequence(),
        pending_hash,
        pending_sequence,
        pending_effective_at,
        change: String::new(),
        already: false,
    }
}
