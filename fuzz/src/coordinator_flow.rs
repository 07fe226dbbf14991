//! The coordinator's request flow as plain functions: what a wallet
//! service submits (`ringi::requests::submit::admit`) and what approvers
//! decide (`ringi::requests::decide::apply`), in the order the store would
//! record them, with the state machine applied to every change.
//!
//! Input: `SubmitSigningRequestRequest` (protobuf, length-delimited), then
//! any number of `flags (1) ‖ seconds after submission (2, BE) ‖ Approval
//! (protobuf, length-delimited)`. The key id is parsed at the edge as the
//! gRPC handler does. An approval whose `approver_public_key` is one byte
//! `i` is signed by the harness as test approver `i % 3`; with flag bit 1
//! its statement is bound to the admitted request (id, content digest,
//! key id), so the fuzzer's department, decision, reason and times reach
//! the counting.
//!
//! Reaches: every check of `admit` (rules for the key, message size,
//! amount, requester, idempotency key, allowlist, routing); every check of
//! `apply` (state, expiry, one decision per approver, each policy rule,
//! counting, vetoes) and the state transitions it implies. Invariants
//! checked: a decision that passes alone never makes the valid set
//! inconsistent; a request the coordinator marks APPROVED gives an
//! `ApprovedRequest`, and the bundle the coordinator would send is one the
//! signers' own authorization accepts (the signers re-check, but must not
//! disagree with an honest coordinator).

use prost::Message;
use ringi::error::Error;
use ringi::request_state::State;
use ringi::request_store::RequestRecord;
use ringi::requests::decide::apply;
use ringi::requests::submit::{Submission, admit};
use ringi::store::KeyRecord;
use ringi_policy::key_id::KeyId;
use ringi_policy::subject::KeyFacts;
use ringi_proto::approval::v1 as apb;
use ringi_proto::coordinator::v1 as pb;

use crate::harness_keys::{self, KEY_ID, POLICY};

crate::stages!(
    /// How far an input got.
    Reached {
        Undecodable,
        BadKeyId,
        /// `admit` refused the submission.
        SubmissionRefused,
        Admitted,
        /// `apply` refused a decision.
        DecisionRefused,
        /// A decision was recorded; approvals still missing.
        DecisionRecorded,
        /// A veto moved the request to REJECTED.
        Rejected,
        /// The quorum moved the request to APPROVED, and the signers'
        /// authorization accepts the bundle.
        Approved,
    }
);

/// The key's public record: 2 of signers a, b, c.
fn key_record() -> KeyRecord {
    KeyRecord {
        key_id: KeyId::parse(KEY_ID).expect("a valid key id"),
        kind: ringi_frost::KeyKind::FrostSecp256k1,
        threshold: 2,
        signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
        group_public_key: vec![2; 33],
        public_key_package: Vec::new(),
        created_at: 0,
    }
}

/// When the harness submits.
pub const SUBMITTED_AT: u64 = 1_800_000_000;

pub fn run(data: &[u8]) -> Reached {
    let mut cursor = data;
    let Ok(submit) = pb::SubmitSigningRequestRequest::decode_length_delimited(&mut cursor) else {
        return Reached::Undecodable;
    };
    let Ok(key_id) = KeyId::parse(&submit.key_id) else {
        return Reached::BadKeyId;
    };
    let submission = Submission {
        key_id,
        message: submit.message,
        asset: submit.asset,
        amount: submit.amount,
        destination: submit.destination,
        memo: submit.memo,
        requester: submit.requester,
        signers: submit.signers,
        idempotency_key: submit.idempotency_key,
        psbt: (!submit.psbt.is_empty()).then_some(submit.psbt),
    };
    // A fixed nonce (the coordinator draws one): inputs replay exactly.
    let nonce = [0x5a; ringi_policy::request::NONCE_LEN];
    let Ok(admitted) = admit(&POLICY, &key_record(), submission, SUBMITTED_AT, nonce) else {
        return Reached::SubmissionRefused;
    };
    // As the store records it (`RequestRecord::submitted`).
    let mut record = RequestRecord::submitted(&admitted.new, SUBMITTED_AT);
    let mut reached = Reached::Admitted;
    while let [flags, t0, t1, rest @ ..] = cursor {
        cursor = rest;
        let Ok(mut wire) = apb::Approval::decode_length_delimited(&mut cursor) else {
            break;
        };
        let now = SUBMITTED_AT + u64::from(u16::from_be_bytes([*t0, *t1]));
        let signer = match wire.approver_public_key[..] {
            [i] => {
                let index = usize::from(i) % harness_keys::APPROVERS.len();
                wire.approver_public_key = harness_keys::approver(index).1.to_sec1();
                Some(index)
            }
            _ => None,
        };
        let Ok(mut approval) = ringi_proto::bundle::approval_from_pb(&wire) else {
            reached = reached.max(Reached::DecisionRefused);
            continue;
        };
        if flags & 2 != 0 {
            approval.statement.request_id = record.id;
            approval.statement.content_digest = record.request.content_digest();
            approval.statement.key_id = record.request.key_id.clone();
        }
        if let Some(index) = signer {
            let (key, signature) = harness_keys::sign(index, &approval.statement);
            approval.approver = key;
            approval.signature = signature;
        }
        let effect = match apply(&POLICY, &KeyFacts::FrostSecp256k1, &record, approval, now) {
            Ok(effect) => effect,
            Err(e) => {
                assert!(
                    !matches!(e, Error::Inconsistent { .. }),
                    "a decision valid alone made the request inconsistent: {e}"
                );
                reached = reached.max(Reached::DecisionRefused);
                continue;
            }
        };
        // As the store records it (`RequestRecord::with_decision`).
        record = record.with_decision(effect.approval.clone(), effect.transition.as_ref(), now);
        reached = reached.max(Reached::DecisionRecorded);
        let Some(transition) = effect.transition else {
            continue;
        };
        assert_eq!(transition.from(), State::PendingApproval);
        match record.state {
            State::Rejected => return reached.max(Reached::Rejected),
            State::Approved => {
                let approved = ringi::approved::ApprovedRequest::from_record(
                    &POLICY,
                    &KeyFacts::FrostSecp256k1,
                    &record,
                    now,
                )
                .expect("an APPROVED request gives an ApprovedRequest");
                let bundle = ringi::signing::bundle(&approved);
                let decoded = ringi_proto::bundle::bundle_from_pb(&bundle)
                    .expect("the coordinator's bundle decodes");
                ringi_signer::authorize::authorize(
                    &POLICY,
                    &record.request.key_id,
                    &KeyFacts::FrostSecp256k1,
                    &ringi_signer::authorize::PresentedBundle::from(Some(Ok(decoded))),
                    now,
                )
                .expect("the signers accept what the coordinator approved");
                return Reached::Approved;
            }
            other => panic!("a decision moved the request to {other}"),
        }
    }
    reached
}

/// A submission of `amount` to `destination`.
pub fn submission(amount: &str, destination: &str) -> pb::SubmitSigningRequestRequest {
    pb::SubmitSigningRequestRequest {
        key_id: KEY_ID.into(),
        message: vec![0xab; 32],
        asset: "BTC".into(),
        amount: amount.into(),
        destination: destination.into(),
        memo: "fuzz seed".into(),
        requester: "wallet-service".into(),
        signers: Vec::new(),
        idempotency_key: "seed-1".into(),
        psbt: Vec::new(),
    }
}

/// Encodes a harness input: the submission, then each decision.
pub fn input(
    submit: pb::SubmitSigningRequestRequest,
    decisions: &[(u8, u16, apb::Approval)],
) -> Vec<u8> {
    let mut out = submit.encode_length_delimited_to_vec();
    for (flags, after, approval) in decisions {
        out.push(*flags);
        out.extend_from_slice(&after.to_be_bytes());
        out.extend(approval.encode_length_delimited_to_vec());
    }
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    use crate::approval_bundle::approval;
    let allowed = harness_keys::ALLOWED_DESTINATION;
    let mut late = approval(2, "compliance", "approve");
    late.issued_at += 100;
    late.expires_at += 100;
    vec![
        input(
            submission("1000", allowed),
            &[
                (2, 10, approval(0, "treasury", "approve")),
                (2, 20, approval(2, "compliance", "approve")),
            ],
        ),
        input(
            submission("1000", allowed),
            &[
                (2, 10, approval(0, "treasury", "approve")),
                (2, 20, approval(2, "compliance", "reject")),
            ],
        ),
        input(
            submission("1000", allowed),
            &[
                (2, 10, approval(0, "treasury", "approve")),
                (2, 20, approval(0, "treasury", "approve")),
            ],
        ),
        input(
            submission("1000", "bc1qelsewhere"),
            &[(2, 10, approval(0, "treasury", "approve")), (2, 700, late)],
        ),
        input(
            submission("1000", allowed),
            &[(2, 10, approval(0, "compliance", "approve"))],
        ),
        input(submission("-1", allowed), &[]),
    ]
}
