//! Approval statements: what an approver signs to approve or reject a
//! request.
//!
//! ```text
//! statement = Canonical("ringi approval v1")
//!     ‖ request_id (32) ‖ content_digest (32) ‖ key_id ‖ department
//!     ‖ decision ("approve" | "reject") ‖ reason
//!     ‖ issued_at (u64) ‖ expires_at (u64) ‖ approver key (SEC1 compressed)
//! signature = ECDSA-P256-SHA256(statement), 64 bytes r ‖ s
//! ```
//!
//! `content_digest` is [`SigningRequest::content_digest`]: the message and
//! metadata the approver was shown. The approver's own key is inside the
//! statement, so a signature cannot be re-attributed to another key.
//!
//! A requester signs the same statement about the request it made, with the
//! decision `request` and an empty department: its proof of who asked,
//! bound to the request id (and so to every field of the request).

use crate::approver_key::ApproverKey;
use crate::encoding::Canonical;
use crate::key_id::KeyId;
use crate::request::SigningRequest;
use crate::verified_signatures::VerifiedSignatures;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    /// The requester's own signature on the request it made (a key with
    /// `signed_requests`): not an approval, never counted toward a quorum;
    /// it proves who asked (see `crate::evaluate`).
    Request,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Request => "request",
        }
    }
}

/// The signed content of one approval or rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub request_id: [u8; 32],
    pub content_digest: [u8; 32],
    pub key_id: KeyId,
    pub department: String,
    pub decision: Decision,
    /// Why, for a rejection (shown to everyone); may be empty for approvals.
    pub reason: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Statement {
    /// A statement about `request`.
    pub fn for_request(
        request: &SigningRequest,
        department: &str,
        decision: Decision,
        reason: &str,
        issued_at: u64,
        expires_at: u64,
    ) -> Self {
        Statement {
            request_id: request.id(),
            content_digest: request.content_digest(),
            key_id: request.key_id.clone(),
            department: department.to_string(),
            decision,
            reason: reason.to_string(),
            issued_at,
            expires_at,
        }
    }

    /// The exact bytes the approver signs.
    pub fn signed_bytes(&self, approver: &ApproverKey) -> Vec<u8> {
        Canonical::new("ringi approval v1")
            .bytes(&self.request_id)
            .bytes(&self.content_digest)
            .str(&self.key_id)
            .str(&self.department)
            .str(self.decision.as_str())
            .str(&self.reason)
            .u64(self.issued_at)
            .u64(self.expires_at)
            .bytes(&approver.to_sec1())
            .finish()
    }
}

/// A statement, who signed it, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub statement: Statement,
    pub approver: ApproverKey,
    /// 64 bytes, r ‖ s.
    pub signature: Vec<u8>,
}

impl Approval {
    /// Verifies the signature (always: see [`Approval::signature_valid_in`]).
    pub fn signature_valid(&self) -> bool {
        self.approver.verify(
            &self.statement.signed_bytes(&self.approver),
            &self.signature,
        )
    }

    /// [`Approval::signature_valid`], answered from `verified` if this very
    /// statement, key and signature verified before in this process.
    pub fn signature_valid_in(&self, verified: &VerifiedSignatures) -> bool {
        verified.verify(
            &self.approver,
            &self.statement.signed_bytes(&self.approver),
            &self.signature,
        )
    }
}
