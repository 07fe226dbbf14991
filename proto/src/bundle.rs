//! Conversions between the wire form of signing requests and approvals
//! (`ringi.approval.v1.ApprovalBundle`) and the `ringi-policy` types the rules
//! run on. Decoding refuses malformed fields with a message naming them.

use ringi_policy::approver_key::ApproverKey;
use ringi_policy::key_id::KeyId;
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_policy::statement::{Approval, Decision, Statement};

use crate::approval::v1 as pb;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("approval bundle: {0}")]
pub struct BundleError(pub String);

pub(crate) fn hash32(field: &str, bytes: &[u8]) -> Result<[u8; 32], BundleError> {
    bytes
        .try_into()
        .map_err(|_| BundleError(format!("{field} must be 32 bytes, got {}", bytes.len())))
}

fn key_id(field: &str, text: &str) -> Result<KeyId, BundleError> {
    KeyId::parse(text).map_err(|e| BundleError(format!("{field}: {e}")))
}

/// Decodes a request, refusing one whose fields do not fit together (a PSBT
/// request that declares a message, asset, amount or destination; a request
/// with neither a message nor a PSBT; a nonce neither empty nor 16 bytes).
pub fn request_from_pb(r: &pb::SigningRequest) -> Result<SigningRequest, BundleError> {
    let psbt = (!r.psbt.is_empty()).then(|| r.psbt.clone());
    // A PSBT request declares no amount; "" reads as none.
    let amount = if psbt.is_some() && r.amount.is_empty() {
        0
    } else {
        r.amount.parse::<u128>().map_err(|_| {
            BundleError(format!(
                "amount {:?} is not a non-negative integer",
                r.amount
            ))
        })?
    };
    let request = SigningRequest {
        key_id: key_id("key_id", &r.key_id)?,
        message: r.message.clone(),
        metadata: Metadata {
            asset: r.asset.clone(),
            amount,
            destination: r.destination.clone(),
            memo: r.memo.clone(),
        },
        requester: r.requester.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        psbt,
        policy_hash: hash32("policy_hash", &r.policy_hash)?,
        nonce: r.nonce.clone(),
    };
    request
        .check_shape()
        .map_err(|e| BundleError(e.to_string()))?;
    Ok(request)
}

pub fn request_to_pb(r: &SigningRequest) -> pb::SigningRequest {
    pb::SigningRequest {
        key_id: r.key_id.to_string(),
        message: r.message.clone(),
        asset: r.metadata.asset.clone(),
        amount: if r.psbt.is_some() {
            String::new()
        } else {
            r.metadata.amount.to_string()
        },
        destination: r.metadata.destination.clone(),
        memo: r.metadata.memo.clone(),
        requester: r.requester.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        policy_hash: r.policy_hash.to_vec(),
        psbt: r.psbt.clone().unwrap_or_default(),
        nonce: r.nonce.clone(),
    }
}

pub fn approval_from_pb(a: &pb::Approval) -> Result<Approval, BundleError> {
    let decision = match a.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        "request" => Decision::Request,
        other => {
            return Err(BundleError(format!(
                "decision {other:?} is not \"approve\", \"reject\" or \"request\""
            )));
        }
    };
    let approver = ApproverKey::from_sec1(&a.approver_public_key)
        .map_err(|e| BundleError(format!("approver_public_key: {e}")))?;
    Ok(Approval {
        statement: Statement {
            request_id: hash32("request_id", &a.request_id)?,
            content_digest: hash32("content_digest", &a.content_digest)?,
            key_id: key_id("key_id", &a.key_id)?,
            department: a.department.clone(),
            decision,
            reason: a.reason.clone(),
            issued_at: a.issued_at,
            expires_at: a.expires_at,
        },
        approver,
        signature: a.signature.clone(),
    })
}

pub fn approval_to_pb(a: &Approval) -> pb::Approval {
    let s = &a.statement;
    pb::Approval {
        request_id: s.request_id.to_vec(),
        content_digest: s.content_digest.to_vec(),
        key_id: s.key_id.to_string(),
        department: s.department.clone(),
        decision: s.decision.as_str().to_string(),
        reason: s.reason.clone(),
        issued_at: s.issued_at,
        expires_at: s.expires_at,
        approver_public_key: a.approver.to_sec1(),
        signature: a.signature.clone(),
    }
}

/// Decodes a whole bundle.
pub fn bundle_from_pb(
    b: &pb::ApprovalBundle,
) -> Result<(SigningRequest, Vec<Approval>), BundleError> {
    let request = request_from_pb(
        b.request
            .as_ref()
            .ok_or_else(|| BundleError("no request".into()))?,
    )?;
    let approvals = b
        .approvals
        .iter()
        .enumerate()
        .map(|(i, a)| {
            approval_from_pb(a).map_err(|e| BundleError(format!("approval #{i}: {}", e.0)))
        })
        .collect::<Result<_, _>>()?;
    Ok((request, approvals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SigningRequest {
        SigningRequest {
            key_id: KeyId::parse("k").unwrap(),
            message: vec![1, 2, 3],
            metadata: Metadata {
                asset: "BTC".into(),
                amount: u128::MAX,
                destination: "d".into(),
                memo: "m".into(),
            },
            psbt: None,
            requester: "r".into(),
            created_at: 1,
            expires_at: 2,
            policy_hash: [3; 32],
            nonce: vec![4; ringi_policy::request::NONCE_LEN],
        }
    }

    #[test]
    fn requests_round_trip() {
        assert_eq!(request_from_pb(&request_to_pb(&request())), Ok(request()));
        let mut psbt = request();
        psbt.message.clear();
        psbt.metadata = Metadata {
            memo: "m".into(),
            ..Metadata::default()
        };
        psbt.psbt = Some(vec![1, 2]);
        let wire = request_to_pb(&psbt);
        assert_eq!(wire.amount, "");
        assert_eq!(request_from_pb(&wire), Ok(psbt));
        // A request made before nonces keeps its empty nonce, and its id.
        let legacy = SigningRequest {
            nonce: Vec::new(),
            ..request()
        };
        let decoded = request_from_pb(&request_to_pb(&legacy)).unwrap();
        assert_eq!(decoded.id(), legacy.id());
        assert_ne!(decoded.id(), request().id());
    }

    #[test]
    fn a_nonce_of_another_length_is_refused() {
        for len in [1, 15, 17, 32] {
            let mut r = request_to_pb(&request());
            r.nonce = vec![4; len];
            assert_eq!(
                request_from_pb(&r).unwrap_err().0,
                format!(
                    "nonce must be 16 bytes (or empty, for a request made before nonces), got {len}"
                )
            );
        }
        // In a bundle too (what a signer decodes).
        let mut r = request_to_pb(&request());
        r.nonce = vec![4; 15];
        let bundle = pb::ApprovalBundle {
            request: Some(r),
            approvals: Vec::new(),
        };
        assert!(
            bundle_from_pb(&bundle)
                .unwrap_err()
                .to_string()
                .contains("nonce must be 16 bytes"),
        );
    }

    #[test]
    fn a_psbt_request_that_declares_an_amount_is_refused() {
        let mut r = request_to_pb(&request());
        r.psbt = vec![1, 2];
        assert!(
            request_from_pb(&r)
                .unwrap_err()
                .0
                .contains("declares no message"),
            "{:?}",
            request_from_pb(&r)
        );
        r.message.clear();
        assert!(
            request_from_pb(&r)
                .unwrap_err()
                .0
                .contains("declares no asset")
        );
    }

    #[test]
    fn malformed_fields_are_named() {
        let mut r = request_to_pb(&request());
        r.amount = "-1".into();
        assert!(request_from_pb(&r).unwrap_err().0.contains("amount"));
        let mut r = request_to_pb(&request());
        r.policy_hash = vec![1; 31];
        assert!(
            request_from_pb(&r)
                .unwrap_err()
                .0
                .contains("policy_hash must be 32 bytes")
        );
        let empty = pb::ApprovalBundle::default();
        assert_eq!(bundle_from_pb(&empty).unwrap_err().0, "no request");
        let bundle = pb::ApprovalBundle {
            request: Some(request_to_pb(&request())),
            approvals: vec![pb::Approval {
                decision: "maybe".into(),
                ..Default::default()
            }],
        };
        assert!(
            bundle_from_pb(&bundle)
                .unwrap_err()
                .0
                .contains("approval #0: decision \"maybe\"")
        );
    }
}
