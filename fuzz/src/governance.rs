//! The signers' governance API (`ringi.signer.v1.Governance`): statements
//! any certified client may send, whose authority is their signature.
//!
//! Input: one byte choosing the call, then its protobuf request:
//! 0 `VetoRequest`, 1 `FreezeRequest`, 2 `UnfreezeRequest` (lifting the
//! harness's freeze of the key), 3 `UpdatePolicyRequest`, 4
//! `RetireKeyRequest`. Where a
//! signature field is empty and the key is a harness approver's, the
//! harness signs the statement on the fuzzer's behalf, so the rules behind
//! the signature are reached.
//!
//! Reaches: protobuf decoding; `ringi_proto::freeze` and
//! `ringi_proto::policy_update` field checks; then `check_veto`,
//! `check_freeze` (and the holds it would put in force), `check_unfreeze`,
//! `check_update` (the new policy's parser, chain, admin quorum, the
//! change's classification and the loosening delay), `check_retire` (the
//! key order's decoding, action and admin quorum, and the hold it puts on
//! the key).

use std::sync::LazyLock;

use p256::ecdsa::signature::Signer;
use prost::Message;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::freeze::{Freeze, FreezeStatement, Scope, Unfreeze, UnfreezeStatement};
use ringi_policy::holds::{ActiveFreeze, Holds};
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_policy::policy_update::{PolicyUpdate, signed_bytes};
use ringi_policy::statement::Approval;
use ringi_proto::signer::v1 as pb;

use crate::harness_keys::{APPROVERS, KEY_ID, approver, policy_text};

crate::stages!(
    /// How far an input got.
    Reached {
        /// Empty, an unknown call, or not its protobuf message.
        Undecoded,
        /// Decoded, but a field is malformed.
        Malformed,
        /// Well formed; refused by a rule of the policy.
        Refused,
        /// Accepted: the decision would be in force.
        Accepted,
    }
);

/// The time the harness checks at.
const NOW: u64 = 1_800_000_000;

/// The harness policy with a governance section: carol (compliance)
/// freezes; a treasurer and carol unfreeze; alice and carol administer.
pub static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::from_bytes(governed_text(0).as_bytes()).expect("the governance fuzz policy loads")
});

fn governed_text(sequence: u64) -> String {
    format!(
        "{}\n[governance]\nfreeze_officers = [\"carol\"]\nunfreeze = {{ treasury = 1, compliance = 1 }}\nadmins = [\"alice\", \"carol\"]\nadmin_quorum = 2\nloosening_delay_secs = 3600\n",
        policy_text().replacen(
            "version = 1\n",
            &format!("version = 1\nsequence = {sequence}\n"),
            1
        )
    )
}

/// The harness approver holding `key`, if any.
fn harness_index(key: &ApproverKey) -> Option<usize> {
    (0..APPROVERS.len()).find(|i| approver(*i).1 == *key)
}

fn sign_as(key: &ApproverKey, bytes: &[u8]) -> Option<Vec<u8>> {
    let (sk, _) = approver(harness_index(key)?);
    let sig: p256::ecdsa::Signature = sk.sign(bytes);
    Some(sig.to_bytes().to_vec())
}

/// The freeze of the harness key in force, which an unfreeze must name.
fn standing_freeze() -> Freeze {
    let (_, officer) = approver(2);
    let statement = FreezeStatement {
        scope: Scope::Key(KeyId::parse(KEY_ID).expect("the harness key id")),
        reason: "fuzz".into(),
        issued_at: NOW,
    };
    let signature = sign_as(&officer, &statement.signed_bytes(&officer)).expect("a harness key");
    Freeze {
        statement,
        officer,
        signature,
    }
}

fn verdict<T, E>(r: Result<T, E>) -> Reached {
    match r {
        Ok(_) => Reached::Accepted,
        Err(_) => Reached::Refused,
    }
}

pub fn run(data: &[u8]) -> Reached {
    let Some((&call, body)) = data.split_first() else {
        return Reached::Undecoded;
    };
    let policy = &*POLICY;
    match call {
        0 => {
            let Ok(r) = pb::VetoRequest::decode(body) else {
                return Reached::Undecoded;
            };
            let Some(wire) = r.rejection else {
                return Reached::Malformed;
            };
            let Ok(mut a): Result<Approval, _> = ringi_proto::bundle::approval_from_pb(&wire)
            else {
                return Reached::Malformed;
            };
            if a.signature.is_empty()
                && let Some(sig) = sign_as(&a.approver, &a.statement.signed_bytes(&a.approver))
            {
                a.signature = sig;
            }
            verdict(ringi_policy::veto::check_veto(policy, &a, NOW))
        }
        1 => {
            let Ok(r) = pb::FreezeRequest::decode(body) else {
                return Reached::Undecoded;
            };
            let Some(wire) = r.freeze else {
                return Reached::Malformed;
            };
            let Ok(mut f) = ringi_proto::freeze::freeze_from_pb(&wire) else {
                return Reached::Malformed;
            };
            if f.signature.is_empty()
                && let Some(sig) = sign_as(&f.officer, &f.statement.signed_bytes(&f.officer))
            {
                f.signature = sig;
            }
            match ringi_policy::freeze::check_freeze(policy, &f, NOW) {
                Ok(officer) => {
                    let key = KeyId::parse(KEY_ID).expect("the harness key id");
                    let mut holds = Holds::default();
                    let in_force = holds.freeze(ActiveFreeze {
                        freeze: f,
                        officer,
                        recorded_at: NOW,
                    });
                    let _ = holds.hold_on(&[0; 32], &key);
                    verdict(in_force)
                }
                Err(_) => Reached::Refused,
            }
        }
        2 => {
            let Ok(r) = pb::UnfreezeRequest::decode(body) else {
                return Reached::Undecoded;
            };
            let mut unfreezes: Vec<Unfreeze> = Vec::new();
            for u in &r.unfreezes {
                let Ok(mut u) = ringi_proto::freeze::unfreeze_from_pb(u) else {
                    return Reached::Malformed;
                };
                if u.signature.is_empty()
                    && let Some(sig) = sign_as(&u.approver, &u.statement.signed_bytes(&u.approver))
                {
                    u.signature = sig;
                }
                unfreezes.push(u);
            }
            verdict(ringi_policy::freeze::check_unfreeze(
                policy,
                &standing_freeze(),
                &unfreezes,
                NOW,
            ))
        }
        3 => {
            let Ok(r) = pb::UpdatePolicyRequest::decode(body) else {
                return Reached::Undecoded;
            };
            let Some(wire) = r.update else {
                return Reached::Malformed;
            };
            let Ok(mut u): Result<PolicyUpdate, _> =
                ringi_proto::policy_update::update_from_pb(&wire)
            else {
                return Reached::Malformed;
            };
            if let Ok(new) = Policy::from_bytes(&u.text) {
                for s in &mut u.signatures {
                    if s.signature.is_empty() {
                        let bytes = signed_bytes(
                            &u.previous_hash,
                            &new.hash(),
                            new.sequence(),
                            u.effective_at,
                            s.issued_at,
                            &s.admin,
                        );
                        if let Some(sig) = sign_as(&s.admin, &bytes) {
                            s.signature = sig;
                        }
                    }
                }
            }
            verdict(ringi_policy::policy_update::check_update(policy, &u, NOW))
        }
        4 => {
            let Ok(r) = pb::RetireKeyRequest::decode(body) else {
                return Reached::Undecoded;
            };
            let Some(wire) = r.order else {
                return Reached::Malformed;
            };
            let Ok(mut o) = ringi_proto::key_order::order_from_pb(&wire) else {
                return Reached::Malformed;
            };
            for s in &mut o.signatures {
                if s.signature.is_empty()
                    && let Some(sig) =
                        sign_as(&s.admin, &o.order.signed_bytes(s.issued_at, &s.admin))
                {
                    s.signature = sig;
                }
            }
            match ringi_policy::retirement::check_retire(policy, &o, NOW) {
                Ok(retirement) => {
                    let key = retirement.key_id.clone();
                    let mut holds = Holds::default();
                    holds.retire(retirement);
                    let _ = holds.hold_on(&[0; 32], &key);
                    let _ = holds.due(NOW);
                    Reached::Accepted
                }
                Err(_) => Reached::Refused,
            }
        }
        _ => Reached::Undecoded,
    }
}

/// One accepted input per call, and a refused one.
pub fn seeds() -> Vec<Vec<u8>> {
    let key = || KEY_ID.to_string();
    let with = |call: u8, body: Vec<u8>| {
        let mut v = vec![call];
        v.extend(body);
        v
    };
    let (_, carol) = approver(2);
    let (_, alice) = approver(0);
    let request = ringi_proto::bundle::request_from_pb(&crate::approval_bundle::request(
        1_000,
        crate::harness_keys::ALLOWED_DESTINATION,
    ))
    .expect("the harness request decodes");
    let rejection = ringi_policy::statement::Statement::for_request(
        &request,
        "compliance",
        ringi_policy::statement::Decision::Reject,
        "no",
        NOW,
        NOW + 60,
    );
    let veto = pb::VetoRequest {
        rejection: Some(ringi_proto::bundle::approval_to_pb(&Approval {
            statement: rejection,
            approver: carol.clone(),
            signature: Vec::new(),
        })),
    };
    let freeze = |officer: &ApproverKey| pb::FreezeRequest {
        freeze: Some(pb::Freeze {
            scope: format!("key:{}", key()),
            reason: "fuzz".into(),
            issued_at: NOW,
            officer_public_key: officer.to_sec1(),
            signature: Vec::new(),
        }),
    };
    let standing = standing_freeze();
    let unfreeze = |who: &ApproverKey| {
        ringi_proto::freeze::unfreeze_to_pb(&Unfreeze {
            statement: UnfreezeStatement {
                freeze_id: standing.id(),
                scope: standing.statement.scope.clone(),
                issued_at: NOW,
            },
            approver: who.clone(),
            signature: Vec::new(),
        })
    };
    let lifted = pb::UnfreezeRequest {
        scope: format!("key:{}", key()),
        unfreezes: vec![unfreeze(&alice), unfreeze(&carol)],
    };
    // A tightening: the same policy, sequence 1, one more tier.
    let next = governed_text(1).replace(
        "tiers = [",
        "tiers = [{ above = 50000000, require = { treasury = 1, compliance = 1 } }, ",
    );
    let update = |admins: &[&ApproverKey]| pb::UpdatePolicyRequest {
        update: Some(ringi_proto::approval::v1::PolicyUpdate {
            policy: next.clone().into_bytes(),
            previous_hash: POLICY.hash().to_vec(),
            effective_at: NOW,
            signatures: admins
                .iter()
                .map(|a| ringi_proto::approval::v1::AdminSignature {
                    admin_public_key: a.to_sec1(),
                    issued_at: NOW,
                    signature: Vec::new(),
                })
                .collect(),
        }),
    };
    let retire = |admins: &[&ApproverKey]| {
        let order = ringi_policy::key_order::KeyOrder {
            key_id: KeyId::parse(KEY_ID).expect("the harness key id"),
            action: ringi_policy::key_order::Action::Retire {
                destroy_after: NOW + 60,
            },
            expires_at: NOW + 600,
        };
        pb::RetireKeyRequest {
            order: Some(ringi_proto::key_order::order_to_pb(
                &ringi_policy::key_order::SignedOrder {
                    order,
                    signatures: admins
                        .iter()
                        .map(|a| ringi_policy::policy_update::AdminSignature {
                            admin: (*a).clone(),
                            issued_at: NOW,
                            signature: Vec::new(),
                        })
                        .collect(),
                },
            )),
        }
    };
    vec![
        with(0, veto.encode_to_vec()),
        with(1, freeze(&carol).encode_to_vec()),
        with(1, freeze(&alice).encode_to_vec()),
        with(2, lifted.encode_to_vec()),
        with(3, update(&[&alice, &carol]).encode_to_vec()),
        with(3, update(&[&alice]).encode_to_vec()),
        with(4, retire(&[&alice, &carol]).encode_to_vec()),
        with(4, retire(&[&carol]).encode_to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_has_an_accepted_seed_and_a_quorum_short_update_is_refused() {
        let reached: Vec<Reached> = seeds().iter().map(|s| run(s)).collect();
        assert_eq!(
            reached,
            vec![
                Reached::Accepted, // carol's rejection
                Reached::Accepted, // carol freezes
                Reached::Refused,  // alice is no freeze officer
                Reached::Accepted, // alice and carol lift the freeze
                Reached::Accepted, // alice and carol tighten the policy
                Reached::Refused,  // alice alone
                Reached::Accepted, // alice and carol retire the key
                Reached::Refused,  // carol alone
            ]
        );
        assert_eq!(run(&[]), Reached::Undecoded);
        assert_eq!(run(&[9, 1, 2]), Reached::Undecoded);
    }
}
