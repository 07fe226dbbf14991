//! [`ApprovedRequest`]: a signing request whose approvals meet its quorum,
//! the one thing the signing engine signs.
//!
//! It can only be made by running the policy's `evaluate` over the request
//! and its still-valid approvals and getting `Outcome::Approved`, so the
//! engine never starts a round for a request the coordinator itself would
//! not approve. (The signers do not trust this: each one evaluates the same
//! bundle again against its own pinned policy.)
//!
//! It carries the request's [`Subject`]: for a PSBT request, the derived
//! transaction whose inputs' sighashes are the messages to sign, one FROST
//! signing each ([`ApprovedRequest::messages`]).

use ringi_policy::evaluate::{Outcome, describe_missing, evaluate_subject};
use ringi_policy::policy::Policy;
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::Approval;
use ringi_policy::subject::{KeyFacts, Subject};

use crate::error::{Error, RequestId, Result};
use crate::request_state::State;
use crate::request_store::RequestRecord;

/// Longest message accepted.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// Checks a raw-message request's message length (1..=[`MAX_MESSAGE_LEN`]);
/// a PSBT request has none (its messages are the sighashes it derives).
pub fn check_message(request: &SigningRequest) -> Result<()> {
    let len = request.message.len();
    if request.psbt.is_some() || (1..=MAX_MESSAGE_LEN).contains(&len) {
        return Ok(());
    }
    Err(Error::InvalidInput {
        field: "message",
        reason: format!("must be 1..={MAX_MESSAGE_LEN} bytes, got {len}"),
    })
}

/// A request ready to sign: the request, the approvals that carry it, and
/// the operator's routing.
#[derive(Debug, Clone)]
pub struct ApprovedRequest {
    id: RequestId,
    request: SigningRequest,
    subject: Subject,
    approvals: Vec<Approval>,
    signers: Vec<String>,
}

impl ApprovedRequest {
    /// Checks `request` for the key described by `key` with `approvals`
    /// under `policy` at `now`; only `Outcome::Approved` makes an
    /// `ApprovedRequest`. A vetoed or pending request is
    /// [`Error::NotApproved`]; a broken rule, [`Error::PolicyViolation`].
    pub fn evaluate(
        policy: &Policy,
        key: &KeyFacts,
        request: SigningRequest,
        approvals: Vec<Approval>,
        signers: Vec<String>,
        now: u64,
    ) -> Result<Self> {
        let id = request.id();
        check_message(&request)?;
        let why = match evaluate_subject(policy, &request, key, &approvals, now)? {
            (Outcome::Approved, subject) => {
                return Ok(ApprovedRequest {
                    id,
                    request,
                    subject,
                    approvals,
                    signers,
                });
            }
            (Outcome::Pending { missing }, _) => {
                format!("quorum not met: {}", describe_missing(&missing))
            }
            (
                Outcome::Rejected {
                    approver,
                    department,
                    reason,
                },
                _,
            ) => format!("rejected by {approver} ({department}): {reason}"),
        };
        Err(Error::NotApproved { request: id, why })
    }

    /// The approved request of a record that the state machine put in
    /// APPROVED, or a SIGNING record being resumed after a restart: its
    /// approvals still valid at `now` must still meet the quorum.
    pub fn from_record(
        policy: &Policy,
        key: &KeyFacts,
        record: &RequestRecord,
        now: u64,
    ) -> Result<Self> {
        if !matches!(record.state, State::Approved | State::Signing) {
            return Err(Error::NotApproved {
                request: record.id,
                why: format!("it is {}", record.state),
            });
        }
        Self::evaluate(
            policy,
            key,
            record.request.clone(),
            record.valid_approvals(now),
            record.signers.clone(),
            now,
        )
    }

    pub fn id(&self) -> &RequestId {
        &self.id
    }

    pub fn request(&self) -> &SigningRequest {
        &self.request
    }

    /// What the request moves, as the policy judged it.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The exact messages to sign, one FROST signing each: a raw request's
    /// message, or each input's BIP-341 sighash of a PSBT request, in
    /// input order.
    pub fn messages(&self) -> Vec<&[u8]> {
        match self.subject.transaction() {
            Some(tx) => tx.sighashes.iter().map(|h| &h[..]).collect(),
            None => vec![&self.request.message[..]],
        }
    }

    /// The approvals that met the quorum (every signer checks them).
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }

    /// The earliest moment at or after `now` the policy's time rules let
    /// this request be signed (delay after full approval, signing hours;
    /// `ringi_policy::time_rules`): `now` when none apply.
    pub fn signable_from(&self, policy: &Policy, now: u64) -> u64 {
        ringi_policy::time_rules::request_signable_from(
            policy,
            &self.request,
            &self.subject,
            &self.approvals,
            now,
        )
        .unwrap_or(now)
    }

    /// The signers to use, or empty for any `t` of the key's.
    pub fn signers(&self) -> &[String] {
        &self.signers
    }
}
