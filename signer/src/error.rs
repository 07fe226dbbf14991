//! How the node's errors become gRPC statuses.
//!
//! Every refusal carries a precise code and a message that names the rule or
//! the field; none carries secret material (the error types below never hold
//! any).

use tonic::{Code, Status};

use crate::dkg::DkgError;
use crate::dkg_envelope::EnvelopeError;
use crate::nonces::NonceError;
use crate::token::TokenError;
use crate::vault::VaultError;

pub fn token_status(e: &TokenError) -> Status {
    let code = match e {
        TokenError::ShareExists(_) => Code::AlreadyExists,
        TokenError::Unseal => Code::DataLoss,
        _ => Code::Unavailable,
    };
    Status::new(code, format!("token: {e}"))
}

impl From<VaultError> for Status {
    fn from(e: VaultError) -> Self {
        let code = match &e {
            VaultError::UnknownKey(_) => Code::NotFound,
            VaultError::KeyExists(_) => Code::AlreadyExists,
            VaultError::NotAParticipant(_) => Code::InvalidArgument,
            VaultError::NonceUnavailable => Code::FailedPrecondition,
            VaultError::NonceStore(NonceError::Full(_)) => Code::ResourceExhausted,
            VaultError::NonceStore(NonceError::Encoding) => Code::InvalidArgument,
            VaultError::Frost(_) => Code::InvalidArgument,
            VaultError::Corrupt { .. } => Code::DataLoss,
            VaultError::Token(t) => return token_status(t),
        };
        Status::new(code, e.to_string())
    }
}

impl From<DkgError> for Status {
    fn from(e: DkgError) -> Self {
        let code = match &e {
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
            DkgError::Vault(_) | DkgError::Token(_) => {
                return match e {
                    DkgError::Vault(v) => v.into(),
                    DkgError::Token(t) => token_status(&t),
                    _ => unreachable!(),
                };
            }
        };
        Status::new(code, e.to_string())
    }
}
