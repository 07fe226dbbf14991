//! What round 1 ([`crate::round1`]) and round 2 ([`crate::round2`]) share:
//! their dependencies ([`SigningContext`]) and their one error type
//! ([`SignError`]). Plain Rust: no gRPC, no protobuf; the gRPC edge
//! (`crate::service`) maps a [`SignError`] to a status in `crate::error`.

use std::path::PathBuf;
use std::sync::Arc;

use ringi_frost::Suite;
use ringi_policy::policy::Policy;
use ringi_policy::volumes::VolumeError;

use crate::authorize::{ApprovedBundles, AuthorizationError};
use crate::node_audit::{AuditSink, AuditUnavailable};
use crate::spending::{LedgerError, SpendingLedger};
use crate::vault::{ShareVault, VaultError};

/// Everything a signing round depends on.
#[derive(Clone)]
pub struct SigningContext<S: Suite> {
    /// The shares (and round-1 nonces) of suite `S`.
    pub vault: Arc<dyn ShareVault<S>>,
    /// The pinned approval policy every signing request must satisfy.
    pub policy: Arc<Policy>,
    /// Bundles already found approved (round 1), so round 2 is cheaper.
    pub approved: Arc<ApprovedBundles>,
    /// What this node has signed, for its own check of the spending caps.
    pub ledger: Arc<SpendingLedger>,
    /// Operators' daily-volume figures for percentage caps, if configured.
    pub daily_volume_file: Option<PathBuf>,
    /// The node's audit trail.
    pub audit: Arc<dyn AuditSink>,
}

impl<S: Suite> SigningContext<S> {
    /// A context with an empty remembered-approvals cache.
    pub fn new(
        vault: Arc<dyn ShareVault<S>>,
        policy: Arc<Policy>,
        ledger: Arc<SpendingLedger>,
        daily_volume_file: Option<PathBuf>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        SigningContext {
            vault,
            policy,
            approved: Arc::new(ApprovedBundles::default()),
            ledger,
            daily_volume_file,
            audit,
        }
    }
}

/// Why a signing round refused. Secret-free: no variant holds share,
/// nonce or PIN material.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The request is not approved under the pinned policy, signs another
    /// message, or exceeds a spending cap.
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
    #[error("signing_package is malformed: {0}")]
    MalformedSigningPackage(String),
    /// The vault's refusal: unknown key, not a participant, nonces used
    /// already, the token, ...
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The spending ledger could not be read or written (not a cap).
    #[error("spending ledger: {0}")]
    LedgerStore(String),
    /// The audit entry could not be written, so nothing is released.
    #[error(transparent)]
    AuditUnavailable(#[from] AuditUnavailable),
    /// The daily-volume file that percentage caps refer to is unreadable.
    #[error(transparent)]
    DailyVolume(#[from] VolumeError),
}

impl From<LedgerError> for SignError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Cap(cap) => AuthorizationError::CapExceeded(cap).into(),
            LedgerError::Store(reason) => SignError::LedgerStore(reason),
        }
    }
}
