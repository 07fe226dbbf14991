//! Signing requests, their approvals and their state history: the
//! [`RequestStore`] contract and the records it keeps.
//!
//! Every change is one atomic step that checks the state it starts from
//! (compare-and-set) and writes the change with its transition record, so a
//! crash or a concurrent writer never leaves an approval without its state
//! change, or a state change without its history. State changes are
//! [`Transition`]s made by the state machine ([`crate::request_state::next`]).

use ringi_policy::key_id::KeyId;
use ringi_policy::limits::Limits;
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::Approval;

use crate::error::{RequestId, Result};
use crate::request_state::{SignedTransaction, State, Transition};

/// Most requests one listing returns.
pub const LIST_LIMIT: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Empty for the first record (submission).
    pub from: String,
    pub to: State,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: RequestId,
    pub request: SigningRequest,
    /// Operator routing: the signers to use, or empty for any.
    pub signers: Vec<String>,
    pub state: State,
    pub state_reason: String,
    /// Set exactly when the state is SIGNED.
    pub signature: Option<Vec<u8>>,
    /// Set exactly when the state is SIGNED and the request is a PSBT
    /// request: the finalized PSBT and the signed transaction.
    pub signed_transaction: Option<SignedTransaction>,
    pub approvals: Vec<Approval>,
    pub transitions: Vec<TransitionRecord>,
}

impl RequestRecord {
    /// The approvals that have not expired at `now`: the ones that count.
    pub fn valid_approvals(&self, now: u64) -> Vec<Approval> {
        self.approvals
            .iter()
            .filter(|a| a.statement.expires_at > now)
            .cloned()
            .collect()
    }
}

/// A request admitted for recording (see `requests::submit::admit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub request: SigningRequest,
    /// Operator routing: the signers to use, or empty for any.
    pub signers: Vec<String>,
    /// Chosen by the requester; scoped by requester.
    pub idempotency_key: String,
    /// What the idempotency key must always map to: every field the caller
    /// chose (times excluded, since a retry comes later).
    pub content_hash: [u8; 32],
    /// What the caps count for this request: the declared amount of a raw
    /// request, the sum of the payments derived from a PSBT
    /// (`ringi_policy::subject::Subject::amount`).
    pub counted_amount: u128,
    /// The key's spending caps at admission.
    pub limits: Limits,
}

/// What [`RequestStore::insert_request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new request.
    Created(RequestId),
    /// The request first recorded under this idempotency key.
    Existing(RequestId),
}

impl Inserted {
    pub fn id(self) -> RequestId {
        match self {
            Inserted::Created(id) | Inserted::Existing(id) => id,
        }
    }
}

/// Which requests a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub pending_only: bool,
    pub key_id: Option<&'a KeyId>,
    pub state: Option<State>,
    pub page_size: usize,
    pub after: Option<Position>,
}

/// Where a page ended: listings continue strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub created_at: u64,
    pub request_id: RequestId,
}

impl Position {
    /// The opaque page token: hex of created_at (8 bytes) ‖ request id.
    pub fn token(&self) -> String {
        let mut bytes = self.created_at.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.request_id);
        hex::encode(bytes)
    }

    pub fn parse(token: &str) -> Option<Position> {
        let bytes = hex::decode(token).ok()?;
        if bytes.len() != 40 {
            return None;
        }
        Some(Position {
            created_at: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            request_id: bytes[8..].try_into().ok()?,
        })
    }
}

/// What [`RequestStore::record_decision_with`] runs inside its write: from
/// the request as it stands there, the approval to store and the state
/// change it causes.
pub type Decision<'a> = dyn FnMut(&RequestRecord) -> Result<(Approval, Option<Transition>)> + 'a;

/// Signing requests, approvals and history.
///
/// Every write is atomic (all of it or nothing) and isolated from
/// concurrent writers, including writers in other processes on the same
/// database: an engine may not rely on callers serializing their calls.
pub trait RequestStore: Send + Sync {
    /// Records `new` in PENDING_APPROVAL, with its first history record
    /// ("submitted", at `now`), under its idempotency key.
    ///
    /// - If (requester, idempotency key) is known with the same content
    ///   hash: writes nothing and returns [`Inserted::Existing`] with the
    ///   first request's id.
    /// - With another content hash: [`Error::IdempotencyConflict`].
    /// - Otherwise the request's `counted_amount` must fit the key's caps
    ///   (`ringi_policy::limits::check` with `new.limits` and
    ///   `daily_volume`), counting as usage the `counted_amount` of every
    ///   request of the same key created after `now - window_secs` that is
    ///   not REJECTED, EXPIRED or FAILED: else [`Error::CapExceeded`].
    /// - A request with the same id exists: [`Error::RequestExists`].
    ///
    /// Atomicity: the idempotency lookup, the usage count, the cap check and
    /// both inserts are one serializable transaction. Two concurrent
    /// submissions with one idempotency key create one request; concurrent
    /// submissions cannot together exceed a cap.
    ///
    /// [`Error::IdempotencyConflict`]: crate::error::Error::IdempotencyConflict
    /// [`Error::CapExceeded`]: crate::error::Error::CapExceeded
    /// [`Error::RequestExists`]: crate::error::Error::RequestExists
    fn insert_request(
        &self,
        new: &NewRequest,
        daily_volume: Option<u128>,
        now: u64,
    ) -> Result<Inserted>;

    /// Stores `approval` and, if given, the state change it caused, while
    /// the request is PENDING_APPROVAL.
    ///
    /// Atomicity: one compare-and-set transaction: the state check, the
    /// approval, the state change and its history record are written
    /// together or not at all. Errors: [`Error::StateConflict`] if the
    /// request left PENDING_APPROVAL, [`Error::DuplicateDecision`] if this
    /// approver key has a decision still valid at `now` (an expired one is
    /// replaced: an approval renewed), [`Error::NotFound`];
    /// [`Error::IllegalTransition`] (nothing written) if `transition` does
    /// not start from PENDING_APPROVAL.
    ///
    /// [`Error::StateConflict`]: crate::error::Error::StateConflict
    /// [`Error::DuplicateDecision`]: crate::error::Error::DuplicateDecision
    /// [`Error::NotFound`]: crate::error::Error::NotFound
    /// [`Error::IllegalTransition`]: crate::error::Error::IllegalTransition
    fn record_decision(
        &self,
        id: &RequestId,
        approval: &Approval,
        transition: Option<&Transition>,
        now: u64,
    ) -> Result<()> {
        self.record_decision_with(
            id,
            &mut |_| Ok((approval.clone(), transition.cloned())),
            now,
        )
        .map(|_| ())
    }

    /// Records a decision whose effect is computed **inside** the write:
    /// `decide` gets the request as it stands in the transaction (with the
    /// approvals that others recorded a moment ago) and returns the
    /// approval to store and the state change it causes. So two approvals
    /// arriving together cannot both count against a snapshot that misses
    /// the other: the one written second sees the first, and the quorum
    /// transition cannot be missed by any interleaving. Returns the record
    /// as written.
    ///
    /// Atomicity and errors as [`RequestStore::record_decision`]; an error
    /// from `decide` writes nothing.
    fn record_decision_with(
        &self,
        id: &RequestId,
        decide: &mut Decision<'_>,
        now: u64,
    ) -> Result<RequestRecord>;

    /// Applies `transition` (its state, reason, and when it is to SIGNED
    /// its signature and, for a PSBT request, its signed transaction) with
    /// its history record, while the request is still in
    /// `transition.from()`.
    ///
    /// Atomicity: one compare-and-set transaction; a SIGNED record is
    /// never visible without its signature or signed transaction. Of concurrent callers
    /// making changes from one state, exactly one succeeds; the others get
    /// [`Error::StateConflict`] naming the state they lost to. Unknown id:
    /// [`Error::NotFound`].
    ///
    /// [`Error::StateConflict`]: crate::error::Error::StateConflict
    /// [`Error::NotFound`]: crate::error::Error::NotFound
    fn transition(&self, id: &RequestId, transition: &Transition, now: u64) -> Result<()>;

    /// The request with its approvals and history, read as one consistent
    /// snapshot, or [`Error::NotFound`].
    ///
    /// [`Error::NotFound`]: crate::error::Error::NotFound
    fn request(&self, id: &RequestId) -> Result<RequestRecord>;

    /// Requests, newest first (created_at, then request id, descending): at
    /// most `page_size` (clamped to 1..=[`LIST_LIMIT`]) strictly after the
    /// `after` position, and the position to continue from if there may be
    /// more.
    fn list_requests(
        &self,
        filter: &ListFilter<'_>,
    ) -> Result<(Vec<RequestRecord>, Option<Position>)>;

    /// Ids of requests in any of `states`.
    fn requests_in(&self, states: &[State]) -> Result<Vec<RequestId>>;
}
