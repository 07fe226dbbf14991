//! What the approver's CLI receives from the coordinator: a protobuf
//! `SigningRequestView`, decoded and checked (`ringi_cli::view::decode`)
//! before anything is shown or signed, then the approval validity the
//! coordinator proposes (`ringi_cli::view::approval_window`).
//!
//! Input: `flags (1) ‖ SigningRequestView`.
//! - flag bit 0: the view names its own request (the harness writes the
//!   request's id and content digest), so the fuzzer's other fields reach
//!   the state, signature and approval checks;
//! - flag bit 1: every approval statement is bound to the request (its id,
//!   content digest and key id);
//! - an approval whose `approver_public_key` is one byte `i` is signed by the
//!   harness as test approver `i % 3`, over the statement the fuzzer chose;
//! - flag bit 2: the decision summaries are the approvals, one for one
//!   (the fuzzer's `approver` names kept).
//!
//! The approval window is computed from the request's `created_at` as "now",
//! so the fuzzer reaches the overflow of `now + approval_ttl_secs`.
//!
//! Reaches: protobuf decode; request id syntax; request decoding (key id,
//! amount, policy hash); id and content-digest binding; creation/expiry
//! order; states of the view and of every transition; signature presence
//! and length; approval decoding, binding and signature; decision summaries;
//! the approval validity bounds and the overflow of its expiry.

use prost::Message;
use ringi_cli::view::{self, ViewError};
use ringi_proto::coordinator::v1 as pb;

use crate::harness_keys;

crate::stages!(
    /// How far an input got.
    Reached {
        /// Not a `SigningRequestView`.
        Undecodable,
        /// Refused for its request: id, request fields, binding, times.
        RequestRefused,
        /// Refused for its state, a transition's, or its signature.
        StateRefused,
        /// Refused for an approval or a decision summary.
        ApprovalRefused,
        /// Decoded; the proposed approval validity refused (0 s, over 7
        /// days, or an expiry past `u64::MAX`).
        WindowRefused,
        /// Decoded, and a statement could be signed for it.
        Signable,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let [flags, bytes @ ..] = data else {
        return Reached::Undecodable;
    };
    let Ok(mut v) = pb::SigningRequestView::decode(bytes) else {
        return Reached::Undecodable;
    };
    let request = v
        .request
        .as_ref()
        .and_then(|r| ringi_proto::bundle::request_from_pb(r).ok());
    if let (true, Some(r)) = (flags & 1 != 0, &request) {
        v.request_id = hex::encode(r.id());
        v.content_digest = hex::encode(r.content_digest());
    }
    for a in &mut v.approvals {
        if let (true, Some(r)) = (flags & 2 != 0, &request) {
            a.request_id = r.id().to_vec();
            a.content_digest = r.content_digest().to_vec();
            a.key_id = r.key_id.to_string();
        }
        if let [i] = a.approver_public_key[..] {
            let index = usize::from(i) % harness_keys::APPROVERS.len();
            a.approver_public_key = harness_keys::approver(index).1.to_sec1();
            if let Ok(parsed) = ringi_proto::bundle::approval_from_pb(a) {
                a.signature = harness_keys::sign(index, &parsed.statement).1;
            }
        }
    }
    if flags & 4 != 0 {
        let names: Vec<String> = v.decisions.iter().map(|d| d.approver.clone()).collect();
        v.decisions = v
            .approvals
            .iter()
            .enumerate()
            .map(|(i, a)| pb::DecisionSummary {
                approver: names.get(i).cloned().unwrap_or_default(),
                department: a.department.clone(),
                decision: a.decision.clone(),
                reason: a.reason.clone(),
                issued_at: a.issued_at,
                expires_at: a.expires_at,
            })
            .collect();
    }
    let decoded = match view::decode(&v.encode_to_vec()) {
        Ok(d) => d,
        Err(e) => {
            return match e {
                ViewError::Protobuf(_) => Reached::Undecodable,
                ViewError::BadRequestId(_)
                | ViewError::MissingRequest { .. }
                | ViewError::BadRequest { .. }
                | ViewError::IdMismatch { .. }
                | ViewError::ContentDigestMismatch { .. }
                | ViewError::ExpiresBeforeCreated { .. } => Reached::RequestRefused,
                ViewError::BadState { .. }
                | ViewError::BadSignature { .. }
                | ViewError::BadSignedTransaction { .. }
                | ViewError::TransactionMismatch { .. } => Reached::StateRefused,
                ViewError::BadApproval { .. }
                | ViewError::ApprovalForOtherRequest { .. }
                | ViewError::ApprovalSignature { .. }
                | ViewError::DecisionCount { .. }
                | ViewError::DecisionMismatch { .. } => Reached::ApprovalRefused,
                ViewError::ZeroApprovalTtl
                | ViewError::ApprovalTtlTooLong { .. }
                | ViewError::ApprovalExpiryOverflow { .. }
                | ViewError::ApprovalTtlAbovePolicy { .. }
                | ViewError::PolicyMismatch { .. }
                | ViewError::PolicyHasNoRules { .. }
                | ViewError::BadKey { .. }
                | ViewError::OtherKey { .. }
                | ViewError::Psbt { .. }
                | ViewError::BlindMismatch { .. }
                | ViewError::SignedTransactionMismatch { .. } => {
                    unreachable!(
                        "decode judges neither the approval validity nor the view against its key: {e}"
                    )
                }
            };
        }
    };
    // What passed is the request it names, with verified approvals.
    assert_eq!(
        decoded.request.id(),
        decoded.id,
        "a view of another request"
    );
    assert!(decoded.approvals.iter().all(|a| a.signature_valid()));
    assert_eq!(
        decoded.signature.is_some(),
        decoded.state.as_str() == "SIGNED"
    );
    let _ = view::printable(&decoded.request.metadata.destination);
    match view::approval_window(decoded.request.created_at, decoded.approval_ttl_secs) {
        Ok(w) => {
            assert!(w.expires_at > w.issued_at);
            assert!(w.expires_at - w.issued_at <= view::MAX_APPROVAL_TTL_SECS);
            Reached::Signable
        }
        Err(_) => Reached::WindowRefused,
    }
}

/// A request for the fuzz policy's key, created at `created_at`.
pub fn request(created_at: u64) -> ringi_proto::approval::v1::SigningRequest {
    ringi_proto::approval::v1::SigningRequest {
        key_id: harness_keys::KEY_ID.into(),
        message: vec![0xab; 32],
        asset: "BTC".into(),
        amount: "1000".into(),
        destination: harness_keys::ALLOWED_DESTINATION.into(),
        memo: "fuzz seed".into(),
        requester: "wallet-service".into(),
        created_at,
        expires_at: created_at.saturating_add(600),
        policy_hash: vec![0; 32],
        psbt: vec![],
        nonce: vec![0x5a; ringi_policy::request::NONCE_LEN],
    }
}

/// A view of `request` in `state`, with an approval by alice that the
/// harness binds and signs (flags 2) and its decision summary (flags 4).
pub fn view(
    request: ringi_proto::approval::v1::SigningRequest,
    state: &str,
    approval_ttl_secs: u64,
) -> pb::SigningRequestView {
    let created_at = request.created_at;
    pb::SigningRequestView {
        request: Some(request),
        state: state.into(),
        approvals: vec![ringi_proto::approval::v1::Approval {
            key_id: harness_keys::KEY_ID.into(),
            department: "treasury".into(),
            decision: "approve".into(),
            issued_at: created_at,
            expires_at: created_at.saturating_add(300),
            approver_public_key: vec![0],
            ..Default::default()
        }],
        decisions: vec![pb::DecisionSummary {
            approver: "alice".into(),
            ..Default::default()
        }],
        approval_ttl_secs,
        signature: if state == "SIGNED" {
            vec![5; view::SIGNATURE_LEN]
        } else {
            Vec::new()
        },
        transitions: vec![pb::Transition {
            from_state: String::new(),
            to_state: "PENDING_APPROVAL".into(),
            reason: "submitted".into(),
            at: created_at,
        }],
        ..Default::default()
    }
}

/// Encodes a harness input.
pub fn input(flags: u8, view: pb::SigningRequestView) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend(view.encode_to_vec());
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    const T: u64 = 1_800_000_000;
    let mut bad_state = view(request(T), "PENDING_APPROVAL", 3600);
    bad_state.transitions[0].to_state = "LIMBO".into();
    vec![
        // Sound: pending, and signed.
        input(7, view(request(T), "PENDING_APPROVAL", 3600)),
        input(7, view(request(T), "SIGNED", 3600)),
        // Absurd validities, and an expiry past the end of time.
        input(7, view(request(T), "PENDING_APPROVAL", u64::MAX)),
        input(7, view(request(T), "PENDING_APPROVAL", 0)),
        input(7, view(request(u64::MAX - 100), "PENDING_APPROVAL", 3600)),
        // A view that does not name its request.
        input(6, view(request(T), "PENDING_APPROVAL", 3600)),
        // A state that is not a state.
        input(7, bad_state),
        // An approval not bound to the request; decisions not derived.
        input(5, view(request(T), "PENDING_APPROVAL", 3600)),
        input(3, view(request(T), "PENDING_APPROVAL", 3600)),
        // A request made before nonces (its v1 id), and a nonce of another
        // length than 16 bytes.
        input(
            7,
            view(
                ringi_proto::approval::v1::SigningRequest {
                    nonce: Vec::new(),
                    ..request(T)
                },
                "PENDING_APPROVAL",
                3600,
            ),
        ),
        input(
            7,
            view(
                ringi_proto::approval::v1::SigningRequest {
                    nonce: vec![0x5a; 15],
                    ..request(T)
                },
                "PENDING_APPROVAL",
                3600,
            ),
        ),
    ]
}
