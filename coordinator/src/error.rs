//! The coordinator's errors, and the one place they become gRPC statuses.
//!
//! Every variant says what went wrong in the coordinator's own terms (a
//! state conflict, a policy violation, a cap, a signer's refusal), never in
//! terms of a status code; code that needs to react to an error matches its
//! variant (the compare-and-set loser matches [`Error::StateConflict`]).
//! [`Error::code`] maps each variant to the status documented in
//! `proto/ringi/coordinator/v1/coordinator.proto`, and `From<Error> for
//! Status` is the only conversion to the wire.
//!
//! Signers' failures keep each signer's name, status code and message
//! ([`SignerFailures`]), so the code the caller sees can follow what the
//! signers said: when every signer refused on the same ground, that ground's
//! code (see [`SignerFailures::unanimous_refusal`]); when they were down,
//! `UNAVAILABLE`.

use std::collections::HashSet;
use std::fmt;

use ringi_policy::evaluate::Violation;
use ringi_policy::key_id::{KeyId, KeyIdError};
use ringi_policy::limits::CapExceeded;
use ringi_policy::volumes::VolumeError;
use ringi_proto::bundle::BundleError;
use tonic::{Code, Status};

use crate::request_state::{State, TransitionError};

/// A signing request's id: SHA-256 of its canonical encoding.
pub type RequestId = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- INVALID_ARGUMENT: the input itself is wrong. ---
    /// A malformed field: `field` names it, `reason` completes the sentence
    /// ("message" "must be 1..=1048576 bytes, got 0").
    #[error("{field} {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("key_id: {0}")]
    BadKeyId(#[from] KeyIdError),
    /// An approval that does not decode.
    #[error(transparent)]
    BadApproval(#[from] BundleError),
    /// A key-creation request the registry cannot serve.
    #[error(transparent)]
    KeySpec(#[from] KeySpecError),
    /// Operator routing (`signers`) the key cannot serve.
    #[error(transparent)]
    Routing(#[from] RoutingError),

    // --- NOT_FOUND ---
    #[error(transparent)]
    NotFound(#[from] Missing),

    // --- ALREADY_EXISTS ---
    #[error("key id {0:?} exists already")]
    KeyExists(KeyId),
    #[error("request {} exists already", hex::encode(.0))]
    RequestExists(RequestId),
    /// This approver key has decided on the request already.
    #[error("approver key {approver} has already decided on request {}", hex::encode(.request))]
    DuplicateDecision {
        request: RequestId,
        approver: String,
    },
    /// The requester's idempotency key was used for other content.
    #[error(
        "idempotency key {idempotency_key:?} of {requester:?} was used for a request with different content"
    )]
    IdempotencyConflict {
        requester: String,
        idempotency_key: String,
    },

    // --- FAILED_PRECONDITION: the request is fine, the state is not. ---
    #[error("the coordinator has no approval policy configured (policy_file)")]
    NoPolicy,
    #[error("the approval policy has no rules for key {0:?}")]
    NoRules(KeyId),
    /// The operators' daily-volume file cannot be used.
    #[error(transparent)]
    DailyVolume(#[from] VolumeError),
    #[error("request {} has expired: request expired at {at}", hex::encode(.request))]
    Expired { request: RequestId, at: u64 },
    /// A decision arrived for a request that left PENDING_APPROVAL.
    #[error("request {} is {state}: already decided", hex::encode(.request))]
    AlreadyDecided { request: RequestId, state: State },
    /// A compare-and-set lost: the request is no longer in `expected`.
    #[error("request {} is {actual}, not {expected}", hex::encode(.request))]
    StateConflict {
        request: RequestId,
        expected: State,
        actual: State,
    },
    /// The state machine does not allow this event in this state.
    #[error(transparent)]
    IllegalTransition(#[from] TransitionError),
    /// A request was to be signed without a quorum (or with a veto).
    #[error("request {} cannot be signed: {why}", hex::encode(.request))]
    NotApproved { request: RequestId, why: String },
    /// The key is retired (`KeyService.RetireKey`): it takes no new
    /// request, no refresh.
    #[error("{0}")]
    KeyRetired(Box<ringi_policy::retirement::Retirement>),

    // --- A key order's rules (code: see `RetireRefused::grpc_code`). ---
    /// A retirement order that is not a retirement, or breaks a rule of
    /// key orders (signatures, admins, quorum, validity).
    #[error("retirement order refused: {0}")]
    RetireRefused(#[from] ringi_policy::retirement::RetireRefused),

    // --- ABORTED: another signing run holds the request. ---
    /// Another coordinator process holds the request's signing claim.
    #[error("request {} is being signed by {owner} (claim held until {until})", hex::encode(.request))]
    SigningClaimed {
        request: RequestId,
        owner: String,
        until: u64,
    },
    /// A later claim took the request over: this run may write nothing more.
    #[error("request {}: this signing run's claim (fence {fence}) was taken over", hex::encode(.request))]
    ClaimLost { request: RequestId, fence: u64 },
    /// A run's claim was made with its first round-2 plan, but the plan was
    /// not taken (`SigningClaim::takes_first_plan`: the request changed
    /// since the run read it, or an earlier run left plans to resume):
    /// nothing went out; the run signs again under the claim.
    #[error("request {}: claimed, but its first signing plan was not taken (the request changed, or earlier plans are resumed first)", hex::encode(.request))]
    PlanDeferred { request: RequestId },

    // --- PERMISSION_DENIED: a rule of the policy is broken (but see
    // `violation_code`: a request the rules cannot even read is
    // INVALID_ARGUMENT, a fee over its cap RESOURCE_EXHAUSTED). ---
    #[error(transparent)]
    PolicyViolation(#[from] Violation),
    #[error("destination {destination:?} is not on the allowlist of key {key:?}")]
    DestinationNotAllowed { key: KeyId, destination: String },

    // --- RESOURCE_EXHAUSTED ---
    #[error("spending cap of key {key:?}: {cap}")]
    CapExceeded { key: KeyId, cap: CapExceeded },

    // --- The signers (code: see `code`). ---
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),

    // --- INTERNAL: the coordinator's own state. ---
    /// The storage engine failed.
    #[error("database: {0}")]
    Store(String),
    /// Stored data does not decode.
    #[error("{0}")]
    Corrupt(String),
    /// A stored request's approvals no longer evaluate.
    #[error("request {}: its recorded approvals do not evaluate: {violation}", hex::encode(.request))]
    Inconsistent {
        request: RequestId,
        violation: Violation,
    },
    /// Anything else of the coordinator's own (a worker task that died).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("key id {0:?} does not exist")]
    Key(KeyId),
    #[error("request {} does not exist", hex::encode(.0))]
    Request(RequestId),
}

/// Why a key-creation request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySpecError {
    #[error("a key needs 2..={max} signers, got {got}")]
    SignerCount { got: usize, max: usize },
    #[error("signer {0:?} is listed twice")]
    DuplicateSigner(String),
    #[error("signer {0:?} is not in the coordinator's registry")]
    UnknownSigner(String),
    #[error("threshold must be 2..={signers} (the number of signers), got {got}")]
    Threshold { got: u32, signers: usize },
}

/// Why operator routing (the signers a request names) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("key {key:?} signs with exactly {threshold} signers; {requested} were requested")]
    Count {
        key: KeyId,
        threshold: u16,
        requested: usize,
    },
    #[error("signer {0:?} is requested twice")]
    Duplicate(String),
    #[error("signer {signer:?} holds no share of key {key:?}")]
    NoShare { key: KeyId, signer: String },
}

/// How one signer failed a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerFault {
    /// It answered with this status.
    Status { code: Code, message: String },
    /// It answered, but with something unusable (a wrong identifier,
    /// undecodable bytes, an invalid signature share).
    BadAnswer(String),
    /// The coordinator's registry does not know it.
    NotRegistered,
    /// The registry gives it another identifier than the key does.
    IdentifierMismatch { key_identifier: u16 },
}

/// One signer's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerFailure {
    pub signer: String,
    pub fault: SignerFault,
}

impl SignerFailure {
    pub fn status(signer: &str, status: &Status) -> Self {
        SignerFailure {
            signer: signer.to_string(),
            fault: SignerFault::Status {
                code: status.code(),
                message: status.message().to_string(),
            },
        }
    }

    pub fn bad_answer(signer: &str, reason: impl Into<String>) -> Self {
        SignerFailure {
            signer: signer.to_string(),
            fault: SignerFault::BadAnswer(reason.into()),
        }
    }
}

impl fmt::Display for SignerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.signer;
        match &self.fault {
            SignerFault::Status { code, message } => {
                write!(f, "signer {name}: {code:?}: {message}")
            }
            SignerFault::BadAnswer(reason) => write!(f, "signer {name}: {reason}"),
            SignerFault::NotRegistered => {
                write!(f, "signer {name}: not in the coordinator's registry")
            }
            SignerFault::IdentifierMismatch { key_identifier } => write!(
                f,
                "signer {name}: registry identifier differs from the key's ({key_identifier})"
            ),
        }
    }
}

/// Every signer failure of one operation, in the order they happened, and
/// failures no single signer could be blamed for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignerFailures {
    pub signers: Vec<SignerFailure>,
    /// e.g. an aggregation that failed without naming a culprit.
    pub unattributed: Vec<String>,
}

impl SignerFailure {
    /// Whether this failure will not pass by waiting: a refusal status
    /// (except a full nonce pool: it drains), a bad answer, or a signer
    /// that cannot be used at all (unregistered, mismatched).
    pub fn is_for_good(&self) -> bool {
        match &self.fault {
            SignerFault::Status { code, message } => {
                is_refusal(*code)
                    && !(*code == Code::ResourceExhausted && message.contains("nonce"))
            }
            SignerFault::BadAnswer(_)
            | SignerFault::NotRegistered
            | SignerFault::IdentifierMismatch { .. } => true,
        }
    }
}

impl SignerFailures {
    /// The signers that failed for good ([`SignerFailure::is_for_good`]).
    pub fn refusing_for_good(&self) -> HashSet<&str> {
        self.signers
            .iter()
            .filter(|f| f.is_for_good())
            .map(|f| f.signer.as_str())
            .collect()
    }
}

/// Status codes by which a signer deliberately refuses (it was reached, it
/// looked at the request, and said no), as opposed to being down, slow, or
/// broken.
pub fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unauthenticated
    )
}

/// Status codes by which a signer is unreachable or did not answer in time.
pub fn is_unavailability(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded)
}

impl SignerFailures {
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty() && self.unattributed.is_empty()
    }

    pub fn push(&mut self, failure: SignerFailure) {
        self.signers.push(failure);
    }

    /// The names of the signers that failed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.signers.iter().map(|f| f.signer.as_str())
    }

    fn codes(&self) -> impl Iterator<Item = Option<Code>> + '_ {
        self.signers.iter().map(|f| match &f.fault {
            SignerFault::Status { code, .. } => Some(*code),
            _ => None,
        })
    }

    /// The refusal code (see [`is_refusal`]) that *every* failing signer
    /// answered with, if they all answered with the same one and nothing
    /// else failed: the signers refused the request on one ground (a
    /// policy's, a cap's), which is what the caller must be told, rather
    /// than that signers were unavailable.
    pub fn unanimous_refusal(&self) -> Option<Code> {
        if !self.unattributed.is_empty() {
            return None;
        }
        let mut codes = self.codes();
        let first = codes.next()??;
        (is_refusal(first) && codes.all(|c| c == Some(first))).then_some(first)
    }

    /// Whether every failure was a signer being unreachable or too slow.
    pub fn all_unavailable(&self) -> bool {
        self.unattributed.is_empty() && self.codes().all(|c| c.is_some_and(is_unavailability))
    }

    /// Whether any signer said the thing exists already.
    pub fn any_already_exists(&self) -> bool {
        self.codes().any(|c| c == Some(Code::AlreadyExists))
    }
}

impl fmt::Display for SignerFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self
            .signers
            .iter()
            .map(ToString::to_string)
            .chain(self.unattributed.iter().cloned())
            .collect::<Vec<_>>();
        f.write_str(&all.join("; "))
    }
}

/// Why a signing round produced no signature.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SigningError {
    /// Fewer than the threshold of signers contributed, after retries.
    #[error(
        "could not gather {threshold} signature shares for key {key:?}{}: {failures}",
        refusal_note(.failures)
    )]
    Signers {
        key: KeyId,
        threshold: u16,
        failures: SignerFailures,
    },
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The engine could not encode a signing package or a signature.
    #[error("{0}")]
    Encoding(String),
    /// Input `input` of a PSBT request could not be signed, so the request
    /// was not (all inputs or none).
    #[error("input {input} of {inputs}: {error}")]
    Input {
        input: usize,
        inputs: usize,
        error: Box<SigningError>,
    },
    /// Every input was signed but the transaction could not be finalized
    /// (a signature that does not verify under the output key).
    #[error("the signed PSBT does not finalize: {0}")]
    Finalize(ringi_psbt::PsbtError),
    /// The round-2 plan could not be recorded (the store failed, or the
    /// run's claim was taken over), so round 2 was not sent.
    #[error("the signing plan could not be recorded, round 2 not sent: {0}")]
    PlanNotRecorded(String),
}

fn refusal_note(failures: &SignerFailures) -> String {
    failures
        .unanimous_refusal()
        .map(|code| format!(" (every signer refused: {code:?})"))
        .unwrap_or_default()
}

/// Why a distributed key generation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeygenError {
    /// Signers failed a step (a DKG needs every one of them).
    #[error("DKG for key id {key:?} failed: {failures}")]
    Signers {
        key: KeyId,
        failures: SignerFailures,
    },
    #[error("signer {signer} already holds a share for key id {key:?}")]
    ShareExists { key: KeyId, signer: String },
    /// No curve every participant has a DKG transport key on.
    #[error("DKG for key id {key:?} cannot run: {reason}; nothing started")]
    NoTransportCurve { key: KeyId, reason: String },
    /// The finish results are not all byte-identical, or do not decode.
    #[error("DKG for key id {key:?}: {reason}; nothing stored")]
    BadResult { key: KeyId, reason: String },
    /// Some signers did not store their shares at commit.
    #[error(
        "DKG for key id {key:?} failed: {failures} (signers not named here stored their shares; remove them before reusing this key id)"
    )]
    CommitIncomplete {
        key: KeyId,
        failures: SignerFailures,
    },
    /// Every signer stored its share but the coordinator's store refused.
    #[error(
        "every signer stored its share for key id {key:?}, but the coordinator could not record the key: {reason}"
    )]
    NotRecorded { key: KeyId, reason: String },
}

impl Error {
    /// What was refused, by name: the variant, or for a policy violation
    /// the rule broken. A metric label (`crate::metrics::refused`): a name
    /// from this code, never a value from the request.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "invalid_input",
            Error::BadKeyId(_) => "bad_key_id",
            Error::BadApproval(_) => "bad_approval",
            Error::KeySpec(_) => "key_spec",
            Error::Routing(_) => "routing",
            Error::NotFound(_) => "not_found",
            Error::KeyExists(_) => "key_exists",
            Error::RequestExists(_) => "request_exists",
            Error::DuplicateDecision { .. } => "duplicate_decision",
            Error::IdempotencyConflict { .. } => "idempotency_conflict",
            Error::NoPolicy => "no_policy",
            Error::NoRules(_) => "no_rules",
            Error::DailyVolume(_) => "daily_volume",
            Error::Expired { .. } => "expired",
            Error::AlreadyDecided { .. } => "already_decided",
            Error::StateConflict { .. } => "state_conflict",
            Error::IllegalTransition(_) => "illegal_transition",
            Error::NotApproved { .. } => "not_approved",
            Error::KeyRetired(_) => "key_retired",
            Error::RetireRefused(_) => "retire_refused",
            Error::SigningClaimed { .. } => "signing_claimed",
            Error::ClaimLost { .. } => "claim_lost",
            Error::PlanDeferred { .. } => "plan_deferred",
            Error::PolicyViolation(v) => v.rule(),
            Error::DestinationNotAllowed { .. } => "destination_not_allowed",
            Error::CapExceeded { .. } => "cap_exceeded",
            Error::Signing(_) => "signing",
            Error::Keygen(_) => "keygen",
            Error::Lifecycle(_) => "lifecycle",
            Error::Store(_) => "store",
            Error::Corrupt(_) => "corrupt",
            Error::Inconsistent { .. } => "inconsistent",
            Error::Internal(_) => "internal",
        }
    }

    /// The gRPC status code of this error (as documented in
    /// `coordinator.proto`).
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidInput { .. }
            | Error::BadKeyId(_)
            | Error::BadApproval(_)
            | Error::KeySpec(_)
            | Error::Routing(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::KeyExists(_)
            | Error::RequestExists(_)
            | Error::DuplicateDecision { .. }
            | Error::IdempotencyConflict { .. } => Code::AlreadyExists,
            Error::NoPolicy
            | Error::NoRules(_)
            | Error::DailyVolume(_)
            | Error::Expired { .. }
            | Error::AlreadyDecided { .. }
            | Error::StateConflict { .. }
            | Error::IllegalTransition(_)
            | Error::NotApproved { .. }
            | Error::KeyRetired(_) => Code::FailedPrecondition,
            Error::RetireRefused(e) => Code::from(e.grpc_code()),
            Error::SigningClaimed { .. } | Error::ClaimLost { .. } | Error::PlanDeferred { .. } => {
                Code::Aborted
            }
            Error::PolicyViolation(v) => violation_code(v),
            Error::DestinationNotAllowed { .. } => Code::PermissionDenied,
            Error::CapExceeded { .. } => Code::ResourceExhausted,
            Error::Signing(e) => e.code(),
            Error::Keygen(e) => e.code(),
            Error::Lifecycle(e) => e.code(),
            Error::Store(_)
            | Error::Corrupt(_)
            | Error::Inconsistent { .. }
            | Error::Internal(_) => Code::Internal,
        }
    }
}

/// The code of a policy rule a request or approval breaks: a request the
/// rules cannot read (its shape, its PSBT, a PSBT for a key that cannot
/// sign one) is INVALID_ARGUMENT; a fee over the key's caps is
/// RESOURCE_EXHAUSTED, like the spending caps; every other rule (an
/// allowlist, blind signing not allowed, an approval's checks) is
/// PERMISSION_DENIED.
pub fn violation_code(v: &Violation) -> Code {
    match v {
        Violation::Shape(_)
        | Violation::Psbt(_)
        | Violation::NotATaprootKey(_)
        | Violation::NoNetwork(_) => Code::InvalidArgument,
        Violation::FeeTooHigh { .. } | Violation::FeeRateTooHigh { .. } => Code::ResourceExhausted,
        _ => Code::PermissionDenied,
    }
}

impl SigningError {
    /// `UNAVAILABLE` when too few signers answered; the signers' own code
    /// when every one of them refused on the same ground.
    pub fn code(&self) -> Code {
        match self {
            SigningError::Signers { failures, .. } => {
                failures.unanimous_refusal().unwrap_or(Code::Unavailable)
            }
            SigningError::Routing(_) => Code::InvalidArgument,
            SigningError::Encoding(_) | SigningError::Finalize(_) => Code::Internal,
            SigningError::Input { error, .. } => error.code(),
            SigningError::PlanNotRecorded(_) => Code::Aborted,
        }
    }

    /// Whether signing again later may succeed: the signers were
    /// unreachable, slow or busy, rather than refusing. A signing of a key
    /// with `signers` signers is given up (FAILED) only when so many of
    /// them refused for good (a policy refusal, a share released for
    /// another package, a bad answer) that fewer than the threshold are
    /// left who might still sign.
    pub fn is_retryable(&self, signers: usize) -> bool {
        match self {
            SigningError::Signers {
                threshold,
                failures,
                ..
            } => {
                let refusing = failures.refusing_for_good();
                let any_transient = failures.signers.iter().any(|f| !f.is_for_good());
                any_transient && signers.saturating_sub(refusing.len()) >= usize::from(*threshold)
            }
            SigningError::Input { error, .. } => error.is_retryable(signers),
            SigningError::PlanNotRecorded(_) => true,
            SigningError::Routing(_) | SigningError::Encoding(_) | SigningError::Finalize(_) => {
                false
            }
        }
    }
}

/// Why a key lifecycle operation (refresh, import) did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LifecycleError {
    /// The signers do not hold the key as the coordinator records it (or,
    /// for an import, as each other do).
    #[error("key id {key:?}: {reason}; nothing changed")]
    Mismatch { key: KeyId, reason: String },
    /// Signers failed a refresh step before anything was stored.
    #[error("refresh of key id {key:?} failed: {failures}; the old shares stay in use")]
    RefreshFailed {
        key: KeyId,
        failures: SignerFailures,
    },
    /// The refreshed results disagree, do not decode, or change the group
    /// key.
    #[error("refresh of key id {key:?}: {reason}; nothing stored, the old shares stay in use")]
    BadResult { key: KeyId, reason: String },
    /// Some signers did not store their refreshed share: the refresh is
    /// undone (the others' refreshed shares discarded).
    #[error(
        "refresh of key id {key:?} failed at the store step: {failures}; the old shares stay in use{}",
        match not_discarded {
            None => " and the refreshed shares were discarded".to_string(),
            Some(names) => format!(
                "; refreshed shares still wait on {} (run the refresh again to discard them)",
                names.join(", ")
            ),
        }
    )]
    StoreIncomplete {
        key: KeyId,
        failures: SignerFailures,
        not_discarded: Option<Vec<String>>,
    },
    /// Waiting refreshed shares of an interrupted refresh could not be
    /// discarded.
    #[error(
        "key id {key:?}: an interrupted refresh left refreshed shares that could not be discarded: {failures}"
    )]
    Cleanup {
        key: KeyId,
        failures: SignerFailures,
    },
    /// Every signer stored its refreshed share but the coordinator could not
    /// record the new public key package: nothing was activated.
    #[error(
        "refresh of key id {key:?}: the coordinator could not record the new public key package ({reason}); the old shares stay in use, run the refresh again"
    )]
    NotRecorded { key: KeyId, reason: String },
    /// The refresh is recorded but some signers have not put their
    /// refreshed share in use.
    #[error(
        "refresh of key id {key:?} is recorded, but not in use on every signer yet: {failures}; run the refresh again to finish it (until then signing needs the signers that finished)"
    )]
    ActivationIncomplete {
        key: KeyId,
        failures: SignerFailures,
    },
    /// A repair step failed on a helper or the new node: nothing stored.
    #[error("repair of key id {key:?} failed: {failures}; nothing stored")]
    RepairFailed {
        key: KeyId,
        failures: SignerFailures,
    },
    /// Import: fewer than a threshold of signers agree on the key.
    #[error("key id {key:?} cannot be imported from the signers: {reason}")]
    NoAgreement { key: KeyId, reason: String },
}

impl LifecycleError {
    /// FAILED_PRECONDITION for a disagreement the operator must resolve;
    /// UNAVAILABLE when signers could not be reached (or did not finish)
    /// and running it again may succeed; ABORTED when a refresh was undone;
    /// INTERNAL for results that disagree or could not be recorded.
    pub fn code(&self) -> Code {
        match self {
            LifecycleError::Mismatch { .. } | LifecycleError::NoAgreement { .. } => {
                Code::FailedPrecondition
            }
            LifecycleError::RefreshFailed { failures, .. }
            | LifecycleError::RepairFailed { failures, .. }
            | LifecycleError::Cleanup { failures, .. } => {
                if failures.all_unavailable() {
                    Code::Unavailable
                } else {
                    Code::FailedPrecondition
                }
            }
            LifecycleError::StoreIncomplete { .. } => Code::Aborted,
            LifecycleError::ActivationIncomplete { .. } => Code::Unavailable,
            LifecycleError::BadResult { .. } | LifecycleError::NotRecorded { .. } => Code::Internal,
        }
    }
}

impl KeygenError {
    /// A DKG needs every signer: ALREADY_EXISTS if any holds the key id,
    /// UNAVAILABLE if the failures were all signers being unreachable,
    /// FAILED_PRECONDITION if any refused a step; INTERNAL when the
    /// results disagree or could not be recorded.
    pub fn code(&self) -> Code {
        match self {
            KeygenError::Signers { failures, .. } => {
                if failures.any_already_exists() {
                    Code::AlreadyExists
                } else if failures.all_unavailable() {
                    Code::Unavailable
                } else {
                    Code::FailedPrecondition
                }
            }
            KeygenError::ShareExists { .. } => Code::AlreadyExists,
            KeygenError::NoTransportCurve { .. } => Code::FailedPrecondition,
            KeygenError::BadResult { .. }
            | KeygenError::CommitIncomplete { .. }
            | KeygenError::NotRecorded { .. } => Code::Internal,
        }
    }
}

impl From<ringi_policy::running_totals::TotalsDoNotAddUp> for Error {
    fn from(e: ringi_policy::running_totals::TotalsDoNotAddUp) -> Self {
        Error::Corrupt(format!("database holds {e}"))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<SigningError> for Status {
    fn from(e: SigningError) -> Self {
        Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(signer: &str, code: Code) -> SignerFailure {
        SignerFailure::status(signer, &Status::new(code, "no"))
    }

    fn signing(failures: Vec<SignerFailure>) -> Error {
        SigningError::Signers {
            key: KeyId::parse("hot-1").unwrap(),
            threshold: 2,
            failures: SignerFailures {
                signers: failures,
                unattributed: Vec::new(),
            },
        }
        .into()
    }

    #[test]
    fn a_unanimous_refusal_is_the_callers_code() {
        for code in [
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ] {
            let e = signing(vec![
                refused("a", code),
                refused("b", code),
                refused("c", code),
            ]);
            assert_eq!(e.code(), code);
            assert!(
                e.to_string()
                    .contains(&format!("every signer refused: {code:?}")),
                "{e}"
            );
            assert_eq!(Status::from(e).code(), code);
        }
    }

    #[test]
    fn signers_down_or_disagreeing_is_unavailable() {
        let down = signing(vec![
            refused("a", Code::Unavailable),
            refused("b", Code::DeadlineExceeded),
        ]);
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.to_string().contains("every signer refused"));
        let mixed = signing(vec![
            refused("a", Code::PermissionDenied),
            refused("b", Code::Unavailable),
        ]);
        assert_eq!(mixed.code(), Code::Unavailable);
        let two_grounds = signing(vec![
            refused("a", Code::PermissionDenied),
            refused("b", Code::ResourceExhausted),
        ]);
        assert_eq!(two_grounds.code(), Code::Unavailable);
        let garbage = signing(vec![
            refused("a", Code::PermissionDenied),
            SignerFailure::bad_answer("b", "undecodable commitments"),
        ]);
        assert_eq!(garbage.code(), Code::Unavailable);
        assert_eq!(signing(vec![]).code(), Code::Unavailable);
        let internal = signing(vec![refused("a", Code::Internal)]);
        assert_eq!(internal.code(), Code::Unavailable);
    }

    #[test]
    fn messages_name_each_signer_and_its_code() {
        let e = signing(vec![
            refused("signer-2", Code::Unavailable),
            SignerFailure {
                signer: "signer-3".into(),
                fault: SignerFault::NotRegistered,
            },
        ]);
        assert_eq!(
            e.to_string(),
            "could not gather 2 signature shares for key \"hot-1\": signer signer-2: Unavailable: no; signer signer-3: not in the coordinator's registry"
        );
    }

    #[test]
    fn dkg_failures_keep_their_codes() {
        let dkg = |failures| -> Code {
            Error::from(KeygenError::Signers {
                key: KeyId::parse("k").unwrap(),
                failures: SignerFailures {
                    signers: failures,
                    unattributed: Vec::new(),
                },
            })
            .code()
        };
        assert_eq!(
            dkg(vec![refused("a", Code::Unavailable)]),
            Code::Unavailable
        );
        assert_eq!(
            dkg(vec![
                refused("a", Code::PermissionDenied),
                refused("b", Code::AlreadyExists)
            ]),
            Code::AlreadyExists
        );
        assert_eq!(
            dkg(vec![
                refused("a", Code::PermissionDenied),
                refused("b", Code::Unavailable)
            ]),
            Code::FailedPrecondition
        );
    }

    /// A request the rules cannot read is INVALID_ARGUMENT, a fee over
    /// its cap RESOURCE_EXHAUSTED, any other broken rule PERMISSION_DENIED.
    #[test]
    fn policy_violations_have_the_code_of_their_kind() {
        let key = KeyId::parse("tr-1").unwrap();
        for (violation, code) in [
            (
                Violation::Psbt(ringi_psbt::PsbtError::NoInputs),
                Code::InvalidArgument,
            ),
            (
                Violation::Shape(ringi_policy::request::ShapeError::Empty),
                Code::InvalidArgument,
            ),
            (
                Violation::NotATaprootKey(key.clone()),
                Code::InvalidArgument,
            ),
            (Violation::NoNetwork(key.clone()), Code::InvalidArgument),
            (
                Violation::FeeTooHigh { fee: 2, cap: 1 },
                Code::ResourceExhausted,
            ),
            (
                Violation::FeeRateTooHigh {
                    rate: 2,
                    vsize: 100,
                    cap: 1,
                },
                Code::ResourceExhausted,
            ),
            (
                Violation::BlindSigningNotAllowed(key.clone()),
                Code::PermissionDenied,
            ),
            (
                Violation::DestinationNotAllowed("bcrt1q".into()),
                Code::PermissionDenied,
            ),
            (Violation::BadSignature { index: 0 }, Code::PermissionDenied),
        ] {
            assert_eq!(Error::from(violation.clone()).code(), code, "{violation}");
        }
        let input = Error::from(SigningError::Input {
            input: 1,
            inputs: 2,
            error: Box::new(SigningError::Signers {
                key,
                threshold: 2,
                failures: SignerFailures {
                    signers: vec![
                        refused("a", Code::InvalidArgument),
                        refused("b", Code::InvalidArgument),
                    ],
                    unattributed: Vec::new(),
                },
            }),
        });
        assert_eq!(input.code(), Code::InvalidArgument);
        assert!(input.to_string().starts_with("input 1 of 2: "), "{input}");
    }

    #[test]
    fn state_conflicts_and_missing_things_read_as_before() {
        let e = Error::StateConflict {
            request: [0xab; 32],
            expected: State::PendingApproval,
            actual: State::Approved,
        };
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.to_string().ends_with("is APPROVED, not PENDING_APPROVAL"));
        let e = Error::from(Missing::Key(KeyId::parse("ghost").unwrap()));
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.to_string(), "key id \"ghost\" does not exist");
    }
}
