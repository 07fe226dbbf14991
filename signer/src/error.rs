//! How the node's errors become gRPC statuses: the one place that does.
//!
//! The plain functions of the node (authorization, the signing rounds, the
//! vault, DKG, the token, the nonce store, the ledger) return their own
//! error enums; the gRPC edge (`crate::service`) turns them into statuses
//! here, and nowhere else. Every refusal carries a precise code and a
//! message that names the rule or the field; none carries secret material
//! (the error types below never hold any).

use ringi_policy::key_id::KeyIdError;
use tonic::{Code, Status};

use crate::authorize::AuthorizationError;
use crate::dkg::DkgError;
use crate::dkg_envelope::EnvelopeError;
use crate::node_audit::AuditUnavailable;
use crate::nonces::NonceError;
use crate::releases::ReleaseError;
use crate::signing::SignError;
use crate::spending::LedgerError;
use crate::token::TokenError;
use crate::vault::VaultError;
use ringi_policy::evaluate::Violation;

/// What the gRPC edge itself refuses or fails at: decoding the wire before
/// a plain function runs, encoding its result after, the worker thread.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("key_id: {0}")]
    KeyId(#[from] KeyIdError),
    /// A result that cannot be serialized (`what`: which one).
    #[error("{what}: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("worker failed: {0}")]
    Worker(String),
}

impl From<EdgeError> for Status {
    fn from(e: EdgeError) -> Self {
        let code = match &e {
            EdgeError::KeyId(_) => Code::InvalidArgument,
            EdgeError::Encode { .. } | EdgeError::Worker(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<AuthorizationError> for Status {
    fn from(e: AuthorizationError) -> Self {
        use AuthorizationError as A;
        let code = match &e {
            A::NoBundle => Code::PermissionDenied,
            A::MalformedBundle(_) => Code::InvalidArgument,
            A::WrongKey { .. } => Code::PermissionDenied,
            A::QuorumNotMet { .. }
            | A::Rejected { .. }
            | A::PolicyMismatch { .. }
            | A::RequestExpired { .. }
            | A::ApprovalExpired { .. }
            | A::Held(_) => Code::FailedPrecondition,
            // Not a refusal: the time rules say later (a delay still
            // running, signing hours closed). UNAVAILABLE makes the
            // coordinator try again with backoff instead of failing the
            // request over a second of clock skew.
            A::NotYet(_) => Code::Unavailable,
            A::MessageMismatch => Code::PermissionDenied,
            A::CapExceeded(_) => Code::ResourceExhausted,
            // A request that cannot be what it claims (an undecodable or
            // ill-formed PSBT, a PSBT for a non-Taproot key or one without
            // a network): the input is wrong, whoever approved it.
            A::Violation(
                Violation::Psbt(_)
                | Violation::Shape(_)
                | Violation::NotATaprootKey(_)
                | Violation::NoNetwork(_),
            ) => Code::InvalidArgument,
            // The fee caps are caps, as the spending caps are (and as the
            // coordinator answers at submission).
            A::Violation(Violation::FeeTooHigh { .. } | Violation::FeeRateTooHigh { .. }) => {
                Code::ResourceExhausted
            }
            // Every other rule (forged or foreign approvals, allowlist,
            // blind signing): not permitted.
            A::Violation(_) => Code::PermissionDenied,
        };
        Status::new(code, e.to_string())
    }
}

impl From<SignError> for Status {
    fn from(e: SignError) -> Self {
        let code = match e {
            SignError::Authorization(a) => return a.into(),
            SignError::Vault(v) => return v.into(),
            SignError::AuditUnavailable(a) => return a.into(),
            SignError::MalformedSigningPackage(_)
            | SignError::BatchSize(_)
            | SignError::BadExclusion(_) => Code::InvalidArgument,
            SignError::LedgerStore(_) => Code::Unavailable,
            SignError::DailyVolume(_) => Code::FailedPrecondition,
            SignError::Release(ReleaseError::AlreadyReleased { .. }) => Code::FailedPrecondition,
            SignError::Release(ReleaseError::InProgress { .. }) => Code::Aborted,
            SignError::Release(ReleaseError::Store(_)) => Code::Unavailable,
        };
        Status::new(code, e.to_string())
    }
}

impl From<AuditUnavailable> for Status {
    fn from(e: AuditUnavailable) -> Self {
        Status::unavailable(e.to_string())
    }
}

impl From<LedgerError> for Status {
    fn from(e: LedgerError) -> Self {
        SignError::from(e).into()
    }
}

impl From<NonceError> for Status {
    fn from(e: NonceError) -> Self {
        let code = match &e {
            NonceError::Full(_) => Code::ResourceExhausted,
            NonceError::Encoding => Code::InvalidArgument,
            // A vault's drawing function returned nothing: this node's bug.
            NonceError::NothingDrawn => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<TokenError> for Status {
    fn from(e: TokenError) -> Self {
        let code = match &e {
            TokenError::ShareExists(_) => Code::AlreadyExists,
            TokenError::Unseal => Code::DataLoss,
            _ => Code::Unavailable,
        };
        Status::new(code, format!("token: {e}"))
    }
}

impl From<VaultError> for Status {
    fn from(e: VaultError) -> Self {
        let code = match e {
            VaultError::Token(t) => return t.into(),
            VaultError::NonceStore(n) => return n.into(),
            VaultError::UnknownKey(_) => Code::NotFound,
            VaultError::KeyExists(_) => Code::AlreadyExists,
            VaultError::NotAParticipant(_) => Code::InvalidArgument,
            VaultError::NonceUnavailable => Code::FailedPrecondition,
            VaultError::Frost(_) | VaultError::BadIdentifier(_) => Code::InvalidArgument,
            VaultError::Corrupt { .. } => Code::DataLoss,
            VaultError::RefreshPending { .. }
            | VaultError::NoSuchGeneration { .. }
            | VaultError::DiscardInUse { .. } => Code::FailedPrecondition,
        };
        Status::new(code, e.to_string())
    }
}

impl From<DkgError> for Status {
    fn from(e: DkgError) -> Self {
        let code = match e {
            DkgError::Vault(v) => return v.into(),
            DkgError::Token(t) => return t.into(),
            DkgError::InvalidArgument(_) => Code::InvalidArgument,
            DkgError::KeyExists(_) => Code::AlreadyExists,
            DkgError::UntrustedPeer { .. } | DkgError::DuplicatePeer { .. } => {
                Code::PermissionDenied
            }
            DkgError::NoRun(_) | DkgError::NothingToRefresh(_) => Code::NotFound,
            DkgError::RefreshMismatch { .. } => Code::FailedPrecondition,
            DkgError::OutOfOrder { .. }
            | DkgError::PeerInvalid { .. }
            | DkgError::GroupKeyMismatch { .. } => Code::FailedPrecondition,
            DkgError::Envelope(EnvelopeError::Malformed(_)) => Code::InvalidArgument,
            DkgError::Envelope(_) => Code::FailedPrecondition,
            DkgError::Vote(ref v) => {
                use crate::refresh_vote::VoteError as V;
                match v {
                    V::InvalidArgument(_) => Code::InvalidArgument,
                    V::NotAParticipant(_) | V::Missing { .. } | V::NoAbort => {
                        Code::FailedPrecondition
                    }
                    V::Forged { .. } => Code::PermissionDenied,
                    V::Ecdh { .. } => Code::Internal,
                }
            }
        };
        Status::new(code, e.to_string())
    }
}

impl From<crate::repair::RepairError> for Status {
    fn from(e: crate::repair::RepairError) -> Self {
        use crate::repair::RepairError as R;
        let code = match e {
            R::Vault(v) => return v.into(),
            R::Token(t) => return t.into(),
            R::Order(ref o) => Code::from_i32(o.grpc_code()),
            R::NotARepair(_) | R::OtherKey { .. } | R::InvalidArgument(_) => Code::InvalidArgument,
            R::Envelope(EnvelopeError::Malformed(_)) => Code::InvalidArgument,
            R::NotHeld(_) | R::NoRun(_) => Code::NotFound,
            R::AlreadyHeld(_) => Code::AlreadyExists,
            R::UntrustedPeer { .. } | R::DuplicatePeer { .. } | R::NotTheOrderedHelpers(_) => {
                Code::PermissionDenied
            }
            R::NotAParticipant(_) => Code::FailedPrecondition,
            R::OwnShare(_)
            | R::Unvouched(_)
            | R::OtherRecipient { .. }
            | R::Frost(_)
            | R::WrongShare(_)
            | R::Envelope(_) => Code::FailedPrecondition,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringi_policy::audit::AuditError;
    use ringi_policy::evaluate::Violation;
    use ringi_policy::limits::CapExceeded;
    use ringi_policy::volumes::VolumeError;
    use ringi_proto::bundle::BundleError;
    use std::collections::BTreeMap;

    fn audit_error() -> AuditError {
        AuditError::Io {
            path: "audit.jsonl".into(),
            reason: "disk full".into(),
        }
    }

    /// Every refusal keeps the code (and the words the coordinator's tests
    /// and operators look for) it had before the statuses moved here.
    #[test]
    fn every_error_keeps_its_code() {
        use AuthorizationError as A;
        let k = |s: &str| ringi_policy::key_id::KeyId::parse(s).unwrap();
        let table: Vec<(Status, Code, &str)> = vec![
            // Authorization.
            (
                A::NoBundle.into(),
                Code::PermissionDenied,
                "no approval bundle",
            ),
            (
                A::MalformedBundle(BundleError("no request".into())).into(),
                Code::InvalidArgument,
                "approval bundle: no request",
            ),
            (
                A::WrongKey {
                    approved: k("a"),
                    requested: k("b"),
                }
                .into(),
                Code::PermissionDenied,
                "is for key \"a\", not \"b\"",
            ),
            (
                A::QuorumNotMet {
                    missing: BTreeMap::from([("compliance".into(), (0, 1))]),
                }
                .into(),
                Code::FailedPrecondition,
                "quorum not met: compliance 0 of 1",
            ),
            (
                A::Rejected {
                    approver: "erin".into(),
                    department: "security".into(),
                    reason: "no".into(),
                }
                .into(),
                Code::FailedPrecondition,
                "rejected by erin (security): no",
            ),
            (
                A::PolicyMismatch {
                    pinned: "aa".into(),
                    request: "bb".into(),
                }
                .into(),
                Code::FailedPrecondition,
                "enforces policy aa",
            ),
            (
                A::RequestExpired {
                    expires_at: 1,
                    now: 2,
                }
                .into(),
                Code::FailedPrecondition,
                "expired",
            ),
            (
                A::ApprovalExpired {
                    index: 0,
                    approver: "alice".into(),
                    expires_at: 1,
                    now: 2,
                }
                .into(),
                Code::FailedPrecondition,
                "expired",
            ),
            (
                A::MessageMismatch.into(),
                Code::PermissionDenied,
                "not the message that was approved",
            ),
            (
                A::CapExceeded(CapExceeded::WindowAmount {
                    amount: 1,
                    total: 2600,
                    cap: 2500,
                    window_secs: 8,
                })
                .into(),
                Code::ResourceExhausted,
                "max_amount_per_window 2500",
            ),
            (
                A::Violation(Violation::UnknownApprover { index: 0 }).into(),
                Code::PermissionDenied,
                "not in the policy's roster",
            ),
            (
                A::Violation(Violation::DestinationNotAllowed("x".into())).into(),
                Code::PermissionDenied,
                "not on the key's allowlist",
            ),
            // Signing rounds.
            (
                SignError::MalformedSigningPackage("bad".into()).into(),
                Code::InvalidArgument,
                "signing_package is malformed",
            ),
            (
                SignError::LedgerStore("locked".into()).into(),
                Code::Unavailable,
                "spending ledger: locked",
            ),
            (
                SignError::AuditUnavailable(AuditUnavailable(audit_error())).into(),
                Code::Unavailable,
                "audit log unavailable, refusing",
            ),
            (
                SignError::DailyVolume(VolumeError::Read {
                    path: "v.toml".into(),
                    reason: "gone".into(),
                })
                .into(),
                Code::FailedPrecondition,
                "daily volume file",
            ),
            (
                SignError::Authorization(A::NoBundle).into(),
                Code::PermissionDenied,
                "no approval bundle",
            ),
            (
                SignError::Vault(VaultError::NonceUnavailable).into(),
                Code::FailedPrecondition,
                "used at most once",
            ),
            // Ledger.
            (
                LedgerError::Cap(CapExceeded::PerRequest { amount: 3, cap: 2 }).into(),
                Code::ResourceExhausted,
                "max_amount_per_request 2",
            ),
            (
                LedgerError::Store("io".into()).into(),
                Code::Unavailable,
                "spending ledger: io",
            ),
            // Vault.
            (
                VaultError::UnknownKey("cold-1".into()).into(),
                Code::NotFound,
                "cold-1",
            ),
            (
                VaultError::KeyExists("k".into()).into(),
                Code::AlreadyExists,
                "exists",
            ),
            (
                VaultError::NotAParticipant(1).into(),
                Code::InvalidArgument,
                "no commitments from this node",
            ),
            (
                VaultError::NonceUnavailable.into(),
                Code::FailedPrecondition,
                "used at most once",
            ),
            (
                VaultError::NonceStore(NonceError::Full(2)).into(),
                Code::ResourceExhausted,
                "too many round-1 nonces",
            ),
            (
                VaultError::Frost("bad".into()).into(),
                Code::InvalidArgument,
                "FROST refused",
            ),
            (
                VaultError::BadIdentifier(0).into(),
                Code::InvalidArgument,
                "participant number 0",
            ),
            (
                VaultError::Corrupt {
                    key_id: "k".into(),
                    reason: "r".into(),
                }
                .into(),
                Code::DataLoss,
                "corrupt",
            ),
            (
                VaultError::Token(TokenError::Unseal).into(),
                Code::DataLoss,
                "token: ",
            ),
            // Nonces and token.
            (
                NonceError::Encoding.into(),
                Code::InvalidArgument,
                "cannot be serialized",
            ),
            (
                NonceError::NothingDrawn.into(),
                Code::Internal,
                "no nonce pair was drawn",
            ),
            (
                TokenError::ShareExists("k".into()).into(),
                Code::AlreadyExists,
                "token: ",
            ),
            (
                TokenError::Unexpected { what: "length" }.into(),
                Code::Unavailable,
                "token: ",
            ),
            // DKG.
            (
                DkgError::InvalidArgument("threshold".into()).into(),
                Code::InvalidArgument,
                "threshold",
            ),
            (
                DkgError::KeyExists("k".into()).into(),
                Code::AlreadyExists,
                "exists",
            ),
            (
                DkgError::UntrustedPeer {
                    participant: 2,
                    reason: crate::dkg_peer::PeerError::Missing,
                }
                .into(),
                Code::PermissionDenied,
                "participant 2",
            ),
            (
                DkgError::DuplicatePeer {
                    first: 2,
                    second: 3,
                    name: "signer-2".into(),
                }
                .into(),
                Code::PermissionDenied,
                "both \"signer-2\"",
            ),
            (
                DkgError::NoRun("k".into()).into(),
                Code::NotFound,
                "no DKG run",
            ),
            (
                DkgError::OutOfOrder {
                    key_id: "k".into(),
                    expected: "DkgFinish",
                }
                .into(),
                Code::FailedPrecondition,
                "not at this step",
            ),
            (
                DkgError::PeerInvalid {
                    culprit: "2".into(),
                    reason: "r".into(),
                }
                .into(),
                Code::FailedPrecondition,
                "participant 2",
            ),
            (
                DkgError::GroupKeyMismatch {
                    given: "a".into(),
                    computed: "b".into(),
                }
                .into(),
                Code::FailedPrecondition,
                "nothing stored",
            ),
            (
                DkgError::Envelope(EnvelopeError::Malformed("short")).into(),
                Code::InvalidArgument,
                "malformed",
            ),
            (
                DkgError::Envelope(EnvelopeError::Open { sender: 2 }).into(),
                Code::FailedPrecondition,
                "does not open",
            ),
            (
                DkgError::Vault(VaultError::KeyExists("k".into())).into(),
                Code::AlreadyExists,
                "exists",
            ),
            (
                DkgError::Token(TokenError::Unseal).into(),
                Code::DataLoss,
                "token: ",
            ),
            // The edge itself.
            (
                EdgeError::KeyId(ringi_policy::key_id::KeyIdError::BadCharacter).into(),
                Code::InvalidArgument,
                "key_id: ",
            ),
            (
                EdgeError::Encode {
                    what: "commitments",
                    reason: "r".into(),
                }
                .into(),
                Code::Internal,
                "commitments: r",
            ),
            (
                EdgeError::Worker("panicked".into()).into(),
                Code::Internal,
                "worker failed",
            ),
            (
                AuditUnavailable(audit_error()).into(),
                Code::Unavailable,
                "audit log unavailable, refusing",
            ),
        ];
        for (status, code, words) in table {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(words), "{words:?} in {status:?}");
        }
    }
}
