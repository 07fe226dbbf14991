//! The coordinator's errors: each maps to one gRPC status code (documented in
//! `proto/ringi/coordinator/v1/coordinator.proto`) and carries a message that
//! says which input or which signer was at fault.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Too few signers answered.
    #[error("{0}")]
    Unavailable(String),
    /// A spending cap would be exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A signature, roster, department, requester or expiry rule is broken.
    #[error("{0}")]
    PermissionDenied(String),
    /// A signer refused a step for a reason other than its availability.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The coordinator's own state failed (database), or signers disagreed.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unavailable(_) => Code::Unavailable,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Internal(format!("database: {e}"))
    }
}

/// Describes a signer's refusal: which signer, which code, what it said.
pub fn signer_failure(signer: &str, status: &Status) -> String {
    format!("signer {signer}: {:?}: {}", status.code(), status.message())
}
