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

#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// The record of `new` as [`RequestStore::insert_request`] creates it
    /// at `now`: PENDING_APPROVAL, no approvals, its "submitted" history
    /// record. A writer that just created it has it without reading it
    /// back.
    pub fn submitted(new: &NewRequest, now: u64) -> RequestRecord {
        RequestRecord {
            id: new.request.id(),
            request: new.request.clone(),
            signers: new.signers.clone(),
            state: State::PendingApproval,
            state_reason: String::new(),
            signature: None,
            signed_transaction: None,
            approvals: Vec::new(),
            transitions: vec![TransitionRecord {
                from: String::new(),
                to: State::PendingApproval,
                reason: "submitted".into(),
                at: now,
            }],
        }
    }

    /// This record after `approval` and `transition` were recorded at
    /// `now` ([`RequestStore::record_decision_with`]): the approver's
    /// earlier (expired) decision, if any, is replaced, and the new one
    /// comes last, as the stores order approvals by arrival. Pure: the
    /// stores return it instead of reading the request again inside the
    /// write (the contract tests hold them to equal the stored record).
    pub fn with_decision(
        mut self,
        approval: Approval,
        transition: Option<&Transition>,
        now: u64,
    ) -> RequestRecord {
        self.approvals.retain(|a| a.approver != approval.approver);
        self.approvals.push(approval);
        match transition {
            Some(t) => self.after(t, now),
            None => self,
        }
    }

    /// This record after `transition` was applied at `now`
    /// ([`RequestStore::transition`], [`RequestStore::finish_signing`]):
    /// its state and reason, its signature and signed transaction when it
    /// is to SIGNED, and one more history record. Pure, as
    /// [`RequestRecord::with_decision`].
    pub fn after(mut self, transition: &Transition, now: u64) -> RequestRecord {
        let reason = transition.reason();
        self.state = transition.to();
        self.signature = transition.signature().map(<[u8]>::to_vec);
        self.signed_transaction = transition.signed_transaction().cloned();
        self.transitions.push(TransitionRecord {
            from: transition.from().as_str().to_string(),
            to: transition.to(),
            reason: reason.clone(),
            at: now,
        });
        self.state_reason = reason;
        self
    }

    /// The record as a claim left it ([`RequestStore::claim_signing`]),
    /// built from `known` (the request as its caller last had it) when the
    /// store still holds that: the same state, checked by the claim, and
    /// the same number of history records (`transitions`, read by the
    /// store). Approvals change only while a request is PENDING_APPROVAL,
    /// and every other change adds a history record, so those two facts
    /// say the record is current. `started`: the transition the claim
    /// applied at `now`, if it started the signing. `None` when `known` is
    /// absent or stale: the store reads the request instead. Pure.
    pub fn as_claimed(
        known: Option<&RequestRecord>,
        state: State,
        transitions: usize,
        started: Option<&Transition>,
        now: u64,
    ) -> Option<RequestRecord> {
        let known = known.filter(|k| k.state == state && k.transitions.len() == transitions)?;
        Some(match started {
            Some(t) => known.clone().after(t, now),
            None => known.clone(),
        })
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

/// A signing run's hold on a request (see [`RequestStore::claim_signing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningClaim {
    /// Grows with every claim of the request: a run's writes name it, and
    /// a run that lost its claim to a later one can no longer write.
    pub fence: u64,
    /// Who holds it (a coordinator process: its boot id).
    pub owner: String,
    /// Whether this claim started the signing (APPROVED → SIGNING), rather
    /// than renewing or taking over a SIGNING request.
    pub started: bool,
    /// Until when (seconds); a claim past its lease may be taken over.
    pub lease_until: u64,
    /// The round-2 plans earlier runs recorded, by input, oldest first.
    pub plans: Vec<SigningPlan>,
    /// The request as claimed (SIGNING), its approvals the ones the rounds
    /// present to the signers.
    pub record: RequestRecord,
}

impl SigningClaim {
    /// Whether a claim may carry, in its own transaction, the first round-2
    /// plan of a package built from `known` before the claim
    /// ([`RequestStore::claim_signing_with_plan`]): only when it started
    /// the signing (APPROVED → SIGNING) of a request `known` still
    /// described (`current`: its record was built from `known`, see
    /// [`RequestRecord::as_claimed`]), with no plan left by an earlier run
    /// (those are resumed first). Otherwise the package may present
    /// approvals the request no longer has, or skip a plan a signer
    /// already answered: nothing is planned, and the run signs again under
    /// the claim. Pure.
    pub fn takes_first_plan(&self, current: bool) -> bool {
        self.started && current && self.plans.is_empty()
    }
}

/// What [`RequestStore::claim_signing_with_plan`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedClaim {
    pub claim: SigningClaim,
    /// Whether the plan was recorded under the claim: round 2 may go out.
    pub planned: bool,
}

/// What a signing run recorded before it sent round 2 of one input: the
/// signing package and the signers it went to. A signer releases one share
/// per request input and answers the same package again with the same
/// share, so a run that resumes the request after a crash asks them for
/// that package again and aggregates the same signature, instead of
/// starting a signing the signers that already released would refuse (or,
/// were they to sign, a second signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningPlan {
    /// The input (0 for a raw-message request).
    pub input: u32,
    /// The serialized FROST signing package.
    pub package: Vec<u8>,
    /// The signers the package went to, by registry name.
    pub signers: Vec<String>,
}

/// Who asks for a claim, and how.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub owner: &'a str,
    /// Take a SIGNING request over from another owner whatever its lease:
    /// only for a coordinator that knows every other owner is gone (the
    /// embedded store's single-instance lock at start-up).
    pub takeover: bool,
    pub now: u64,
    pub lease_secs: u64,
    /// The request as the caller last had it (the decision that approved
    /// it, or the run's previous claim): returned as claimed without being
    /// read again when it is still current ([`RequestRecord::as_claimed`]).
    pub known: Option<&'a RequestRecord>,
}

/// Which requests a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub pending_only: bool,
    pub key_id: Option<&'a KeyId>,
    /// Only requests for one of these keys (a wallet's read scope), on
    /// top of `key_id`; `None`: any key.
    pub key_ids: Option<&'a [KeyId]>,
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
    ///   request of the same key counted after `now - window_secs` that is
    ///   not REJECTED, EXPIRED or FAILED: else [`Error::CapExceeded`]. A
    ///   request is counted at the later of its `created_at` and the time
    ///   the key's request before it was counted at (the same time, unless
    ///   a clock went back: `ringi_policy::running_totals`). The cost of this
    ///   count does not grow with the requests in the window.
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

    /// Ids of requests in any of `states` (through the state's index: the
    /// table holds every request ever made).
    fn requests_in(&self, states: &[State]) -> Result<Vec<RequestId>>;

    /// Ids of the requests still waiting (PENDING_APPROVAL or APPROVED)
    /// whose time has passed at `now` (`expires_at <= now`): what the
    /// periodic sweep must expire, without reading every request that
    /// waits for its approvers.
    fn waiting_due(&self, now: u64) -> Result<Vec<RequestId>>;

    /// Claims the signing of request `id` for `claim.owner`, the one step
    /// before any signer is asked for anything:
    ///
    /// - APPROVED: moves it to SIGNING (with its history record, "signing
    ///   started") and claims it.
    /// - SIGNING: claims it if its claim's lease has passed, or its owner is
    ///   `claim.owner` (renewing: the fence stays), or `claim.takeover`;
    ///   else [`Error::SigningClaimed`] naming the holder.
    /// - Any other state: [`Error::StateConflict`] (expected APPROVED).
    ///
    /// A new claim's fence is one more than any earlier claim's of the
    /// request. Returns the claim with the plans earlier runs recorded and
    /// the request as claimed, read in the same transaction unless
    /// `claim.known` is current ([`RequestRecord::as_claimed`]).
    ///
    /// Atomicity: one transaction; of concurrent claimers exactly one wins.
    ///
    /// [`Error::SigningClaimed`]: crate::error::Error::SigningClaimed
    /// [`Error::StateConflict`]: crate::error::Error::StateConflict
    fn claim_signing(&self, id: &RequestId, claim: ClaimRequest<'_>) -> Result<SigningClaim>;

    /// Records `plan` (after the input's earlier ones: each may have
    /// released shares, and a resumed run tries them all) while the run's
    /// claim (`fence`) still holds the SIGNING request; else
    /// [`Error::ClaimLost`] and nothing is written. Durable when it
    /// returns: round 2 may go out.
    ///
    /// [`Error::ClaimLost`]: crate::error::Error::ClaimLost
    fn record_signing_plan(&self, id: &RequestId, fence: u64, plan: &SigningPlan) -> Result<()>;

    /// [`RequestStore::claim_signing`] and, when the claim takes it
    /// ([`SigningClaim::takes_first_plan`]: it started the signing of the
    /// request `claim.known` describes, with no earlier plan),
    /// [`RequestStore::record_signing_plan`] of `plan` under the new
    /// claim, in one transaction: a fresh request's claim and first
    /// round-2 plan with one commit. Refused as `claim_signing` refuses;
    /// a claim that does not take the plan is still made (and returned,
    /// `planned` false). Durable when it returns.
    fn claim_signing_with_plan(
        &self,
        id: &RequestId,
        claim: ClaimRequest<'_>,
        plan: &SigningPlan,
    ) -> Result<PlannedClaim>;

    /// Ends the run that holds claim `fence`: applies `transition` (from
    /// SIGNING, as [`RequestStore::transition`]) only while that claim
    /// holds, else [`Error::ClaimLost`]. A change to SIGNED also drops the
    /// request's plans (nothing is left to resume); a change to FAILED
    /// keeps them, for a retry to resume with the same packages.
    ///
    /// [`Error::ClaimLost`]: crate::error::Error::ClaimLost
    fn finish_signing(
        &self,
        id: &RequestId,
        fence: u64,
        transition: &Transition,
        now: u64,
    ) -> Result<()>;

    /// An administrator's retry of a FAILED request: back to APPROVED (with
    /// its history record), if the request's counted amount still fits the
    /// key's caps counted as at submission (the failed request stopped
    /// counting; others may have used the room since). Errors:
    /// [`Error::StateConflict`] if not FAILED, [`Error::CapExceeded`].
    ///
    /// [`Error::StateConflict`]: crate::error::Error::StateConflict
    /// [`Error::CapExceeded`]: crate::error::Error::CapExceeded
    fn retry_failed(
        &self,
        id: &RequestId,
        transition: &Transition,
        limits: &Limits,
        daily_volume: Option<u128>,
        now: u64,
    ) -> Result<()>;

    /// Ids of requests with a change (submission, decision or state
    /// change) at or after `since`: what an audit reconciliation looks at.
    fn changed_since(&self, since: u64) -> Result<Vec<RequestId>>;

    /// The SIGNING requests whose claim still holds at `now` (its lease
    /// not passed), with each claim's owner: what a coordinator's sweep
    /// leaves to the run (maybe another coordinator's) that holds it.
    fn live_claims(&self, now: u64) -> Result<Vec<(RequestId, String)>>;

    /// The engine's writer thread, if it has one: the async side's writes
    /// go there instead of to a blocking thread each
    /// ([`crate::store_writer::write`]).
    fn writer(&self) -> Option<&crate::store_writer::StoreWriter> {
        None
    }
}
