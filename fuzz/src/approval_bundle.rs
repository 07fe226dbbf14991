//! What every signer receives from the coordinator before it touches its
//! token: an approval bundle (protobuf), decoded (`bundle_from_pb`) and
//! evaluated against the pinned policy (`ringi_policy::evaluate`).
//!
//! Input: `flags (1) ‖ seconds after created_at (2, BE) ‖ ApprovalBundle`.
//! - flag bit 0: the request names the pinned policy's hash (else the
//!   fuzzer's bytes, which fail the policy check);
//! - flag bit 1: every approval statement is bound to the request (its id,
//!   content digest and key id), so the fuzzer's other statement fields
//!   (department, decision, reason, times) reach the counting;
//! - an approval whose `approver_public_key` is one byte `i` is signed by
//!   the harness as test approver `i % 3` (alice, bob: treasury; carol:
//!   compliance), over the statement the fuzzer chose.
//!
//! Reaches: protobuf decode; field decoding (key id, amount, hashes,
//! decision, approver key); policy pin; key rules; request lifetime and
//! expiry; the allowlist; per approval: request binding, content digest,
//! signature, roster, department, expiry, lifetime, issued-in-the-future,
//! separation of duties; vetoes; quorums per tier and destination.

use prost::Message;
use ringi_policy::evaluate::{Outcome, evaluate};
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::Approval;
use ringi_policy::subject::KeyFacts;
use ringi_proto::approval::v1 as pb;
use ringi_proto::bundle::BundleError;

use crate::harness_keys::{self, POLICY};

crate::stages!(
    /// How far an input got.
    Reached {
        /// Too short, or not an `ApprovalBundle`.
        Undecodable,
        /// A field did not decode (`BundleError`).
        Malformed,
        /// The policy pin, the request's own rules, or the allowlist.
        RequestRefused,
        /// An approval broke a rule (binding, digest, signature, roster...).
        ApprovalRefused,
        /// Evaluated: quorum not met.
        Pending,
        /// Evaluated: vetoed.
        Rejected,
        /// Evaluated: every quorum met.
        Approved,
    }
);

/// An input prepared as a signer would receive it: the decoded bundle (or
/// why it did not decode), with the harness's signatures applied, and the
/// time to evaluate it at.
pub struct Prepared {
    pub bundle: Result<(SigningRequest, Vec<Approval>), BundleError>,
    pub now: u64,
}

/// Decodes `flags ‖ seconds ‖ ApprovalBundle` and applies the flags (see
/// the module docs); `None` if the input is too short or not protobuf.
/// Returns the rest of the input after the bundle's length-delimited
/// encoding when `delimited` is set (for harnesses that take more input).
pub fn prepare(data: &[u8], delimited: bool) -> Option<(Prepared, &[u8])> {
    let [flags, t0, t1, bytes @ ..] = data else {
        return None;
    };
    let mut rest: &[u8] = &[];
    let mut bundle = if delimited {
        let mut cursor: &[u8] = bytes;
        let bundle = pb::ApprovalBundle::decode_length_delimited(&mut cursor).ok()?;
        rest = cursor;
        bundle
    } else {
        pb::ApprovalBundle::decode(bytes).ok()?
    };
    // Which approvals the harness signs, and as whom.
    let mut sign_as = Vec::with_capacity(bundle.approvals.len());
    for a in &mut bundle.approvals {
        if let [i] = a.approver_public_key[..] {
            let index = usize::from(i) % harness_keys::APPROVERS.len();
            a.approver_public_key = harness_keys::approver(index).1.to_sec1();
            sign_as.push(Some(index));
        } else {
            sign_as.push(None);
        }
    }
    let after = u64::from(u16::from_be_bytes([*t0, *t1]));
    let decoded =
        ringi_proto::bundle::bundle_from_pb(&bundle).map(|(mut request, mut approvals)| {
            if flags & 1 != 0 {
                request.policy_hash = POLICY.hash();
            }
            for (approval, signer) in approvals.iter_mut().zip(&sign_as) {
                if flags & 2 != 0 {
                    approval.statement.request_id = request.id();
                    approval.statement.content_digest = request.content_digest();
                    approval.statement.key_id = request.key_id.clone();
                }
                if let Some(index) = signer {
                    let (key, signature) = harness_keys::sign(*index, &approval.statement);
                    approval.approver = key;
                    approval.signature = signature;
                }
            }
            (request, approvals)
        });
    let now = match &decoded {
        Ok((request, _)) => request.created_at.saturating_add(after),
        Err(_) => after,
    };
    Some((
        Prepared {
            bundle: decoded,
            now,
        },
        rest,
    ))
}

pub fn run(data: &[u8]) -> Reached {
    let Some((prepared, _)) = prepare(data, false) else {
        return Reached::Undecodable;
    };
    let Ok((request, approvals)) = prepared.bundle else {
        return Reached::Malformed;
    };
    let _ = request.id();
    match evaluate(
        &POLICY,
        &request,
        &KeyFacts::FrostSecp256k1,
        &approvals,
        prepared.now,
    ) {
        Ok(Outcome::Approved) => Reached::Approved,
        Ok(Outcome::Rejected { .. }) => Reached::Rejected,
        Ok(Outcome::Pending { .. }) => Reached::Pending,
        Err(v) => {
            use ringi_policy::evaluate::Violation as V;
            match v {
                V::PolicyMismatch { .. }
                | V::UnknownKey(_)
                | V::RequestExpired { .. }
                | V::RequestLifetimeTooLong { .. }
                | V::DestinationNotAllowed(_) => Reached::RequestRefused,
                _ => Reached::ApprovalRefused,
            }
        }
    }
}

/// A request of `amount` to `destination`, created at 1_800_000_000.
pub fn request(amount: u128, destination: &str) -> pb::SigningRequest {
    pb::SigningRequest {
        key_id: harness_keys::KEY_ID.into(),
        message: vec![0xab; 32],
        asset: "BTC".into(),
        amount: amount.to_string(),
        destination: destination.into(),
        memo: "fuzz seed".into(),
        requester: "wallet-service".into(),
        created_at: 1_800_000_000,
        expires_at: 1_800_003_600,
        policy_hash: vec![0; 32],
        psbt: vec![],
        nonce: vec![0x5a; ringi_policy::request::NONCE_LEN],
    }
}

/// An approval statement for the harness to bind and sign as approver `who`.
pub fn approval(who: u8, department: &str, decision: &str) -> pb::Approval {
    pb::Approval {
        request_id: vec![0; 32],
        content_digest: vec![0; 32],
        key_id: harness_keys::KEY_ID.into(),
        department: department.into(),
        decision: decision.into(),
        reason: if decision == "reject" {
            "not this week".into()
        } else {
            String::new()
        },
        issued_at: 1_800_000_010,
        expires_at: 1_800_000_600,
        approver_public_key: vec![who],
        signature: Vec::new(),
    }
}

/// Encodes a harness input.
pub fn input(
    flags: u8,
    after: u16,
    request: pb::SigningRequest,
    approvals: Vec<pb::Approval>,
) -> Vec<u8> {
    encode(flags, after, request, approvals, false)
}

/// Encodes a harness input, the bundle length-delimited if `delimited`
/// (for harnesses that read more input after it).
pub fn encode(
    flags: u8,
    after: u16,
    request: pb::SigningRequest,
    approvals: Vec<pb::Approval>,
    delimited: bool,
) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&after.to_be_bytes());
    let bundle = pb::ApprovalBundle {
        request: Some(request),
        approvals,
    };
    if delimited {
        out.extend(bundle.encode_length_delimited_to_vec());
    } else {
        out.extend(bundle.encode_to_vec());
    }
    out
}

/// Decisions as (approver index, department, decision).
type Decisions<'a> = &'a [(u8, &'a str, &'a str)];

pub fn seeds() -> Vec<Vec<u8>> {
    let allowed = harness_keys::ALLOWED_DESTINATION;
    let big = harness_keys::TIER_ABOVE + 1;
    let both: Decisions = &[(0, "treasury", "approve"), (2, "compliance", "approve")];
    let three: Decisions = &[
        (0, "treasury", "approve"),
        (1, "treasury", "approve"),
        (2, "compliance", "approve"),
    ];
    let alice: Decisions = &[(0, "treasury", "approve")];
    let cases: [(u8, u16, u128, &str, Decisions); 9] = [
        // Base rule met: treasury + compliance.
        (3, 60, 1000, allowed, both),
        // Quorum not met.
        (3, 60, 1000, allowed, alice),
        // A veto.
        (
            3,
            60,
            1000,
            allowed,
            &[(0, "treasury", "approve"), (2, "compliance", "reject")],
        ),
        // Upper tier: two treasury approvers.
        (3, 60, big, allowed, three),
        // An unlisted destination needs a second treasury approver.
        (3, 60, 1000, "bc1qother", three),
        // Alice claiming compliance.
        (3, 60, 1000, allowed, &[(0, "compliance", "approve")]),
        // An expired approval.
        (3, 700, 1000, allowed, both),
        // Unbound statements, unpinned policy.
        (0, 60, 1000, allowed, alice),
        (1, 60, 1000, allowed, alice),
    ];
    let approvals = |decisions: Decisions| {
        decisions
            .iter()
            .map(|(who, department, decision)| approval(*who, department, decision))
            .collect::<Vec<_>>()
    };
    let mut seeds: Vec<Vec<u8>> = cases
        .iter()
        .map(|(flags, after, amount, destination, decisions)| {
            input(
                *flags,
                *after,
                request(*amount, destination),
                approvals(decisions),
            )
        })
        .collect();
    // A request made before nonces (its v1 id), and a nonce of another
    // length than 16 bytes (refused at decoding).
    let mut legacy = request(1000, allowed);
    legacy.nonce.clear();
    seeds.push(input(3, 60, legacy, approvals(both)));
    let mut short = request(1000, allowed);
    short.nonce.pop();
    seeds.push(input(3, 60, short, approvals(both)));
    seeds
}
