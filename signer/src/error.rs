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
use crate::signing::SignError;
use crate::spending::LedgerError;
use crate::token::TokenError;
use crate::vault::VaultError;

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
            | A::ApprovalExpired { .. } => Code::FailedPrecondition,
            A::MessageMismatch => Code::PermissionDenied,
            A::CapExceeded(_) => Code::ResourceExhausted,
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
            SignError::MalformedSigningPackage(_) => Code::InvalidArgument,
            SignError::LedgerStore(_) => Code::Unavailable,
            SignError::DailyVolume(_) => Code::FailedPrecondition,
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
            DkgError::NoRun(_) => Code::NotFound,
            DkgError::OutOfOrder { .. }
            | DkgError::PeerInvalid { .. }
            | DkgError::GroupKeyMismatch { .. } => Code::FailedPrecondition,
            DkgError::Envelope(EnvelopeError::Malformed(_)) => Code::InvalidArgument,
            DkgError::Envelope(_) => Code::FailedPrecondition,
        };
        Status::new(code, e.to_string())
    }
}
