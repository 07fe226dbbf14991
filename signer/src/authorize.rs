//! The signer's own check of a request's approvals, before it touches its
//! token for that request.
//!
//! A stolen coordinator (or its credentials) must not be enough to obtain a
//! signature share, so every Commit and Sign must carry an approval bundle
//! that satisfies this node's pinned policy, evaluated here with this node's
//! clock; and the message in the signing package must be the approved one.

use std::time::{SystemTime, UNIX_EPOCH};

use ringi_policy::evaluate::{Outcome, Violation, describe_missing, evaluate};
use ringi_policy::policy::Policy;
use ringi_policy::request::SigningRequest;
use ringi_proto::approval::v1::ApprovalBundle;
use tonic::Status;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks that `bundle` authorises signing with `key_id` under `policy` at
/// `now`; returns the approved request.
pub fn authorize(
    policy: &Policy,
    key_id: &str,
    bundle: Option<&ApprovalBundle>,
    now: u64,
) -> Result<SigningRequest, Status> {
    let bundle = bundle.ok_or_else(|| {
        Status::permission_denied(
            "no approval bundle: this node signs only requests approved under its policy",
        )
    })?;
    let (request, approvals) = ringi_proto::bundle::bundle_from_pb(bundle)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    if request.key_id != key_id {
        return Err(Status::permission_denied(format!(
            "the approved request is for key {:?}, not {key_id:?}",
            request.key_id
        )));
    }
    match evaluate(policy, &request, &approvals, now) {
        Ok(Outcome::Approved) => Ok(request),
        Ok(Outcome::Pending { missing }) => Err(Status::failed_precondition(format!(
            "approval quorum not met: {}",
            describe_missing(&missing)
        ))),
        Ok(Outcome::Rejected {
            approver,
            department,
            reason,
        }) => Err(Status::failed_precondition(format!(
            "the request was rejected by {approver} ({department}): {reason}"
        ))),
        Err(
            v @ (Violation::PolicyMismatch { .. }
            | Violation::RequestExpired { .. }
            | Violation::ApprovalExpired { .. }),
        ) => Err(Status::failed_precondition(v.to_string())),
        Err(v) => Err(Status::permission_denied(v.to_string())),
    }
}

/// Checks that the signing package signs exactly the approved message.
pub fn check_message(request: &SigningRequest, package_message: &[u8]) -> Result<(), Status> {
    if request.message == package_message {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "the signing package's message is not the message that was approved",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn no_bundle_is_permission_denied() {
        let policy = Policy::from_bytes(
            b"version = 1\n[[departments]]\nname = \"t\"\napprovers = [{ name = \"a\", key = \"p256:036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\" }]\n[keys.k]\nrequest_ttl_secs = 10\napproval_ttl_secs = 10\nrequire = { t = 1 }\n",
        )
        .unwrap();
        let err = authorize(&policy, "k", None, 0).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = authorize(&policy, "k", Some(&ApprovalBundle::default()), 0).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn another_message_is_refused() {
        let request = SigningRequest {
            key_id: "k".into(),
            message: b"approved".to_vec(),
            metadata: Default::default(),
            requester: "r".into(),
            created_at: 0,
            expires_at: 1,
            policy_hash: [0; 32],
        };
        assert!(check_message(&request, b"approved").is_ok());
        assert_eq!(
            check_message(&request, b"other").unwrap_err().code(),
            Code::PermissionDenied
        );
    }
}
