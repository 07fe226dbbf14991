//! The signer's own check of a request's approvals, before it touches its
//! token for that request.
//!
//! A stolen coordinator (or its credentials) must not be enough to obtain a
//! signature share, so every Commit and Sign must carry an approval bundle
//! that satisfies this node's pinned policy, evaluated here with this node's
//! clock; and the message in the signing package must be the approved one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use sha2::{Digest, Sha256};

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

/// Bundles this node has already found approved, so round 2 need not verify
/// again the signatures round 1 verified. An entry is keyed by the SHA-256 of
/// the bundle's exact bytes and is only used before the earliest expiry in
/// the bundle: `evaluate`'s verdict can only change through time, by expiry.
pub struct ApprovedBundles {
    entries: Mutex<HashMap<[u8; 32], (SigningRequest, u64)>>,
}

/// Most remembered bundles; beyond, expired ones are dropped, then all.
const MAX_REMEMBERED: usize = 4096;

impl Default for ApprovedBundles {
    fn default() -> Self {
        ApprovedBundles {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl ApprovedBundles {
    /// [`authorize`], remembering approved bundles until their earliest expiry.
    pub fn authorize(
        &self,
        policy: &Policy,
        key_id: &str,
        bundle: Option<&ApprovalBundle>,
        now: u64,
    ) -> Result<SigningRequest, Status> {
        let digest: Option<[u8; 32]> = bundle.map(|b| Sha256::digest(b.encode_to_vec()).into());
        if let Some(d) = &digest {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((request, valid_until)) = entries.get(d)
                && now < *valid_until
                && request.key_id == key_id
            {
                return Ok(request.clone());
            }
        }
        let request = authorize(policy, key_id, bundle, now)?;
        if let (Some(d), Some(b)) = (digest, bundle) {
            let valid_until = b
                .approvals
                .iter()
                .map(|a| a.expires_at)
                .chain([request.expires_at])
                .min()
                .unwrap_or(0);
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entries.len() >= MAX_REMEMBERED {
                entries.retain(|_, (_, until)| now < *until);
                if entries.len() >= MAX_REMEMBERED {
                    entries.clear();
                }
            }
            entries.insert(d, (request.clone(), valid_until));
        }
        Ok(request)
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

    /// A policy with one approver, and a bundle that approver approved,
    /// valid from 1000 until 1060.
    fn approved_bundle() -> (Policy, ApprovalBundle) {
        use p256::ecdsa::signature::Signer;
        use ringi_policy::approver_key::ApproverKey;
        use ringi_policy::statement::{Approval, Decision, Statement};
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let key =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let text = format!(
            "version = 1\n[[departments]]\nname = \"t\"\napprovers = [{{ name = \"a\", key = \"{}\" }}]\n[keys.k]\nrequest_ttl_secs = 100\napproval_ttl_secs = 60\nrequire = {{ t = 1 }}\n",
            key.to_text()
        );
        let policy = Policy::from_bytes(text.as_bytes()).unwrap();
        let request = SigningRequest {
            key_id: "k".parse().unwrap(),
            message: b"m".to_vec(),
            metadata: Default::default(),
            requester: "r".into(),
            created_at: 1000,
            expires_at: 1100,
            policy_hash: policy.hash(),
        };
        let statement = Statement::for_request(&request, "t", Decision::Approve, "", 1000, 1060);
        let sig: p256::ecdsa::Signature = sk.sign(&statement.signed_bytes(&key));
        let approval = Approval {
            statement,
            approver: key,
            signature: sig.to_bytes().to_vec(),
        };
        let bundle = ApprovalBundle {
            request: Some(ringi_proto::bundle::request_to_pb(&request)),
            approvals: vec![ringi_proto::bundle::approval_to_pb(&approval)],
        };
        (policy, bundle)
    }

    #[test]
    fn remembered_bundles_are_reused_only_until_their_earliest_expiry() {
        let (policy, bundle) = approved_bundle();
        let remembered = ApprovedBundles::default();
        assert!(
            remembered
                .authorize(&policy, "k", Some(&bundle), 1001)
                .is_ok()
        );
        assert!(
            remembered
                .authorize(&policy, "k", Some(&bundle), 1059)
                .is_ok()
        );
        // The approval expires at 1060: evaluated again, and refused.
        let err = remembered
            .authorize(&policy, "k", Some(&bundle), 1060)
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("expired"), "{}", err.message());
        // Another key id with the same bundle is not served from memory.
        assert_eq!(
            remembered
                .authorize(&policy, "other", Some(&bundle), 1001)
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        // A changed bundle is a different entry, evaluated on its own.
        let mut tampered = bundle.clone();
        tampered.approvals[0].signature[0] ^= 1;
        assert_eq!(
            remembered
                .authorize(&policy, "k", Some(&tampered), 1001)
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn another_message_is_refused() {
        let request = SigningRequest {
            key_id: "k".parse().unwrap(),
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
