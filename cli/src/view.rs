//! A coordinator's view of a signing request, decoded and checked.
//!
//! The approver's CLI does not trust the coordinator: what it shows a person
//! and what it signs must be exactly the request whose id was asked for, and
//! nothing a broken or hostile coordinator sends may crash it. [`from_pb`]
//! (and [`decode`], from raw protobuf bytes, for the fuzz target) is a pure
//! function from the wire view to a [`RequestView`] whose every field has
//! been checked, or to the [`ViewError`] that names the first bad field:
//!
//! - the request id is 64 hex digits, the request is present, decodes (key id,
//!   amount, policy hash), hashes to that id, and expires no earlier than it
//!   was created; the content digest shown is the request's;
//! - the state and every transition's states are request states; a signature
//!   is present exactly when the request is SIGNED (a raw request: 65 bytes,
//!   or 64 for a bitcoin-taproot key; a PSBT request: 64 bytes per input);
//!   a signed PSBT and transaction are present exactly when a PSBT request
//!   is SIGNED;
//! - every approval decodes, is about this request (id, key, content) and its
//!   signature verifies; the decision summaries are those approvals, one for
//!   one, in order (only the approvers' names are the coordinator's word).
//!
//! What needs the key (from `GetPublicKey`, see [`KeyView`]) is checked by
//! [`check_with_key`]: the key's Taproot keys and address recomputed here
//! from its group key; a PSBT request's transaction derived here from the
//! request's PSBT (`ringi_psbt::derive`), and the coordinator's
//! `transaction` required to be exactly that; `blind` required to be true
//! exactly for a raw request on a bitcoin-taproot key; a signed request's
//! signature of the key's length, and a signed PSBT and transaction
//! required to be what finalizing the request's PSBT with its signatures
//! gives (which verifies every signature under the output key).
//!
//! The approval validity the coordinator proposes (`approval_ttl_secs`, from
//! its policy) is checked only when signing, by [`approval_window_under`]:
//! between 1 s and [`MAX_APPROVAL_TTL_SECS`], `now + ttl` must not overflow,
//! and, when the approver gave their own copy of the policy (whose hash
//! [`check_policy`] requires to be the request's), at most that policy's
//! `approval_ttl_secs` for the key. The signers enforce the policy's own
//! `approval_ttl_secs` on every approval anyway; the bounds here keep the
//! CLI from signing a statement valid for longer than the policy allows.
//!
//! For the person deciding, the module also says what the approver's own
//! policy makes of a request ([`applied_rule`], [`local_standing`]), what
//! the approver decided before ([`previous_decision`]), which other
//! requests sign the same ([`same_subject`]), and writes amounts with their
//! asset's decimals ([`amount_text`]) and times as RFC 3339 UTC with the
//! time left ([`when`]).

use prost::Message;
use ringi::request_state::State;
use ringi_frost::KeyKind;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::evaluate::{Outcome, describe_missing, evaluate};
use ringi_policy::policy::{KeyRules, Policy, Quorums};
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::{Approval, Decision};
use ringi_policy::subject::{KeyFacts, Subject, subject};
use ringi_proto::coordinator::v1 as pb;
use ringi_psbt::{Derived, Network, OwnKey};

/// The longest approval validity the CLI signs for: 7 days. A policy's
/// `approval_ttl_secs` is minutes to hours in practice; a coordinator that
/// proposes more is broken or lying, and the approver's signature would
/// outlive any review of the request.
pub const MAX_APPROVAL_TTL_SECS: u64 = 7 * 24 * 60 * 60;

/// A FROST(secp256k1) signature (RFC 9591) as the coordinator returns it:
/// 65 bytes.
pub const SIGNATURE_LEN: usize = 65;

/// A BIP-340 signature (bitcoin-taproot keys): 64 bytes.
pub const BIP340_SIGNATURE_LEN: usize = 64;

/// Why a coordinator's view (or its proposed approval validity) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("the coordinator's answer is not a signing request view: {0}")]
    Protobuf(String),
    #[error("request id {0:?} is not 64 hex digits")]
    BadRequestId(String),
    #[error("the view of request {id} carries no request")]
    MissingRequest { id: String },
    #[error("request {id} is malformed: {reason}")]
    BadRequest { id: String, reason: String },
    #[error("the coordinator's copy of request {id} hashes to {actual}, not to that id")]
    IdMismatch { id: String, actual: String },
    #[error("request {id}: content digest {claimed:?} is not the request's ({actual})")]
    ContentDigestMismatch {
        id: String,
        claimed: String,
        actual: String,
    },
    #[error("request {id} expires at {expires_at}, before it was created at {created_at}")]
    ExpiresBeforeCreated {
        id: String,
        created_at: u64,
        expires_at: u64,
    },
    #[error("request {id}: {field} {value:?} is not a request state")]
    BadState {
        id: String,
        field: &'static str,
        value: String,
    },
    #[error("request {id} is {state} with a signature of {len} bytes")]
    BadSignature {
        id: String,
        state: State,
        len: usize,
    },
    #[error(
        "request {id} is {state} {} a signed PSBT and transaction",
        if *.present { "with" } else { "without" }
    )]
    BadSignedTransaction {
        id: String,
        state: State,
        present: bool,
    },
    #[error("key {key}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("request {id} is for key {request_key}, but the key shown is {key}")]
    OtherKey {
        id: String,
        request_key: String,
        key: String,
    },
    #[error("request {id}: its PSBT does not derive here: {reason}")]
    Psbt { id: String, reason: String },
    #[error(
        "request {id}: the coordinator's transaction is not what the request's PSBT does ({what}); refusing it"
    )]
    TransactionMismatch { id: String, what: String },
    #[error("request {id}: the coordinator says blind = {claimed}, but it is {actual}")]
    BlindMismatch {
        id: String,
        claimed: bool,
        actual: bool,
    },
    #[error(
        "request {id}: its signed transaction is not the request's PSBT with its signatures: {reason}"
    )]
    SignedTransactionMismatch { id: String, reason: String },
    #[error("request {id}: approval #{index} is malformed: {reason}")]
    BadApproval {
        id: String,
        index: usize,
        reason: String,
    },
    #[error("request {id}: approval #{index} is about another request")]
    ApprovalForOtherRequest { id: String, index: usize },
    #[error("request {id}: approval #{index}: its signature does not verify")]
    ApprovalSignature { id: String, index: usize },
    #[error("request {id}: {decisions} decision summaries for {approvals} approvals")]
    DecisionCount {
        id: String,
        decisions: usize,
        approvals: usize,
    },
    #[error("request {id}: decision #{index} is not what approval #{index} says")]
    DecisionMismatch { id: String, index: usize },
    #[error(
        "the coordinator proposes approvals valid for 0 s (has its policy no rules for this key?); refusing to sign"
    )]
    ZeroApprovalTtl,
    #[error(
        "the coordinator proposes approvals valid for {secs} s, more than the {max} s (7 days) the CLI signs for; refusing to sign"
    )]
    ApprovalTtlTooLong { secs: u64, max: u64 },
    #[error("an approval issued at {now} and valid for {ttl} s would expire past the end of time")]
    ApprovalExpiryOverflow { now: u64, ttl: u64 },
    #[error(
        "the coordinator proposes approvals valid for {secs} s, more than the approval_ttl_secs of {max} s your policy sets for key {key_id}; refusing to sign"
    )]
    ApprovalTtlAbovePolicy { key_id: String, secs: u64, max: u64 },
    #[error(
        "request {id} was made under policy {request}, but your policy file hashes to {yours}; refusing to sign (one of the two is not the policy in force)"
    )]
    PolicyMismatch {
        id: String,
        yours: String,
        request: String,
    },
    #[error("your policy has no rules for key {key_id}; refusing to sign")]
    PolicyHasNoRules { key_id: String },
}

/// One approval or rejection as shown: the coordinator's name for the
/// approver (from its policy), the rest from the signed approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionView {
    pub approver: String,
    pub approver_key: ApproverKey,
    pub department: String,
    pub decision: Decision,
    pub reason: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// A department still short of its quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub department: String,
    pub have: u32,
    pub need: u32,
}

/// One state change; `from` is `None` for the submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionView {
    pub from: Option<State>,
    pub to: State,
    pub reason: String,
    pub at: u64,
}

/// A checked view of a signing request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    /// The request id; `request` hashes to it.
    pub id: [u8; 32],
    pub request: SigningRequest,
    pub state: State,
    pub state_reason: String,
    /// The signed approvals and rejections, each about this request and
    /// each verified.
    pub approvals: Vec<Approval>,
    /// The same, one for one, as the coordinator names them.
    pub decisions: Vec<DecisionView>,
    pub still_needed: Vec<Needed>,
    /// As the coordinator sent it (0 when its policy has no rules for the
    /// key); checked by [`approval_window`] before signing.
    pub approval_ttl_secs: u64,
    /// The signature (for a PSBT request every input's, 64 bytes each):
    /// `Some` exactly when SIGNED.
    pub signature: Option<Vec<u8>>,
    pub transitions: Vec<TransitionView>,
    /// The coordinator's derivation of a PSBT request's transaction, as
    /// sent: only [`check_with_key`] makes it trustworthy (it must equal
    /// the CLI's own derivation).
    pub transaction: Option<pb::Transaction>,
    /// A SIGNED PSBT request's finalized PSBT and signed transaction.
    pub signed_psbt: Option<Vec<u8>>,
    pub signed_transaction: Option<Vec<u8>>,
    /// The coordinator's word that the request is blind (checked by
    /// [`check_with_key`]).
    pub blind: bool,
}

impl RequestView {
    /// The request id, hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// Decodes protobuf bytes as a `SigningRequestView` and checks it. Never
/// panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<RequestView, ViewError> {
    let view =
        pb::SigningRequestView::decode(bytes).map_err(|e| ViewError::Protobuf(e.to_string()))?;
    from_pb(&view)
}

/// Parses a request id: 64 hex digits.
pub fn parse_request_id(text: &str) -> Result<[u8; 32], ViewError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ViewError::BadRequestId(text.to_string()))
}

fn state(id: &str, field: &'static str, value: &str) -> Result<State, ViewError> {
    State::parse(value).ok_or_else(|| ViewError::BadState {
        id: id.to_string(),
        field,
        value: value.to_string(),
    })
}

/// Checks a coordinator's view; see the module documentation for the rules.
pub fn from_pb(v: &pb::SigningRequestView) -> Result<RequestView, ViewError> {
    let id = parse_request_id(&v.request_id)?;
    let id_hex = hex::encode(id);
    let wire = v
        .request
        .as_ref()
        .ok_or_else(|| ViewError::MissingRequest { id: id_hex.clone() })?;
    let request =
        ringi_proto::bundle::request_from_pb(wire).map_err(|e| ViewError::BadRequest {
            id: id_hex.clone(),
            reason: e.to_string(),
        })?;
    let actual = request.id();
    if actual != id {
        return Err(ViewError::IdMismatch {
            id: id_hex,
            actual: hex::encode(actual),
        });
    }
    if request.expires_at < request.created_at {
        return Err(ViewError::ExpiresBeforeCreated {
            id: id_hex,
            created_at: request.created_at,
            expires_at: request.expires_at,
        });
    }
    let content = request.content_digest();
    if hex::decode(&v.content_digest).ok().as_deref() != Some(&content[..]) {
        return Err(ViewError::ContentDigestMismatch {
            id: id_hex,
            claimed: v.content_digest.clone(),
            actual: hex::encode(content),
        });
    }

    let current = state(&id_hex, "state", &v.state)?;
    let transitions = v
        .transitions
        .iter()
        .map(|t| {
            Ok(TransitionView {
                from: match t.from_state.as_str() {
                    "" => None,
                    s => Some(state(&id_hex, "transition from_state", s)?),
                },
                to: state(&id_hex, "transition to_state", &t.to_state)?,
                reason: t.reason.clone(),
                at: t.at,
            })
        })
        .collect::<Result<Vec<_>, ViewError>>()?;
    let is_psbt = request.psbt.is_some();
    let signature = match (current, v.signature.len()) {
        (State::Signed, SIGNATURE_LEN | BIP340_SIGNATURE_LEN) if !is_psbt => {
            Some(v.signature.clone())
        }
        (State::Signed, len) if is_psbt && len > 0 && len % BIP340_SIGNATURE_LEN == 0 => {
            Some(v.signature.clone())
        }
        (s, 0) if s != State::Signed => None,
        (s, len) => {
            return Err(ViewError::BadSignature {
                id: id_hex,
                state: s,
                len,
            });
        }
    };
    let signed_present = !v.signed_psbt.is_empty() || !v.signed_transaction.is_empty();
    let signed_complete = !v.signed_psbt.is_empty() && !v.signed_transaction.is_empty();
    let signed_expected = current == State::Signed && is_psbt;
    if signed_present != signed_expected || (signed_present && !signed_complete) {
        return Err(ViewError::BadSignedTransaction {
            id: id_hex,
            state: current,
            present: signed_present,
        });
    }
    if v.transaction.is_some() && !is_psbt {
        return Err(ViewError::TransactionMismatch {
            id: id_hex,
            what: "a transaction shown for a raw-message request".into(),
        });
    }

    let mut approvals = Vec::with_capacity(v.approvals.len());
    for (index, a) in v.approvals.iter().enumerate() {
        let approval =
            ringi_proto::bundle::approval_from_pb(a).map_err(|e| ViewError::BadApproval {
                id: id_hex.clone(),
                index,
                reason: e.to_string(),
            })?;
        let s = &approval.statement;
        if s.request_id != id || s.key_id != request.key_id || s.content_digest != content {
            return Err(ViewError::ApprovalForOtherRequest { id: id_hex, index });
        }
        if !approval.signature_valid() {
            return Err(ViewError::ApprovalSignature { id: id_hex, index });
        }
        approvals.push(approval);
    }
    if v.decisions.len() != approvals.len() {
        return Err(ViewError::DecisionCount {
            id: id_hex,
            decisions: v.decisions.len(),
            approvals: approvals.len(),
        });
    }
    let mut decisions = Vec::with_capacity(approvals.len());
    for (index, (d, a)) in v.decisions.iter().zip(&approvals).enumerate() {
        let s = &a.statement;
        if d.department != s.department
            || d.decision != s.decision.as_str()
            || d.reason != s.reason
            || d.issued_at != s.issued_at
            || d.expires_at != s.expires_at
        {
            return Err(ViewError::DecisionMismatch { id: id_hex, index });
        }
        decisions.push(DecisionView {
            approver: d.approver.clone(),
            approver_key: a.approver.clone(),
            department: s.department.clone(),
            decision: s.decision,
            reason: s.reason.clone(),
            issued_at: s.issued_at,
            expires_at: s.expires_at,
        });
    }

    Ok(RequestView {
        id,
        request,
        state: current,
        state_reason: v.state_reason.clone(),
        approvals,
        decisions,
        still_needed: v
            .still_needed
            .iter()
            .map(|n| Needed {
                department: n.department.clone(),
                have: n.have,
                need: n.need,
            })
            .collect(),
        approval_ttl_secs: v.approval_ttl_secs,
        signature,
        transitions,
        transaction: v.transaction.clone(),
        signed_psbt: signed_present.then(|| v.signed_psbt.clone()),
        signed_transaction: signed_present.then(|| v.signed_transaction.clone()),
        blind: v.blind,
    })
}

/// A key as `GetPublicKey` shows it, checked: its Taproot keys and address
/// are recomputed here from its group key, never taken as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    pub key_id: String,
    pub kind: KeyKind,
    /// SEC1 compressed.
    pub group_public_key: Vec<u8>,
    /// A bitcoin-taproot key's keys.
    pub taproot: Option<TaprootView>,
}

/// A bitcoin-taproot key's keys and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaprootView {
    pub internal_key: [u8; 32],
    pub output_key: [u8; 32],
    /// The coordinator's word (from its policy); the signers use their own.
    pub network: Option<Network>,
}

impl TaprootView {
    /// The key's P2TR address, if it has a network.
    pub fn address(&self) -> Option<String> {
        self.network
            .map(|n| ringi_frost::taproot::address(&self.output_key, n))
    }
}

/// Checks a key as the coordinator shows it. Never panics.
pub fn key_from_pb(k: &pb::PublicKey) -> Result<KeyView, ViewError> {
    let bad = |reason: String| ViewError::BadKey {
        key: k.key_id.clone(),
        reason,
    };
    let kind = match k.kind.as_str() {
        // A coordinator from before key kinds.
        "" => KeyKind::FrostSecp256k1,
        name => KeyKind::parse(name).map_err(|e| bad(e.to_string()))?,
    };
    let taproot = match kind {
        KeyKind::FrostSecp256k1 => {
            if !(k.internal_key.is_empty()
                && k.output_key.is_empty()
                && k.network.is_empty()
                && k.address.is_empty())
            {
                return Err(bad(
                    "a frost-secp256k1 key shown with Taproot keys or an address".into(),
                ));
            }
            None
        }
        KeyKind::BitcoinTaproot => {
            let (internal_key, output_key) =
                ringi_frost::taproot::keys_of_group(&k.group_public_key)
                    .map_err(|e| bad(e.to_string()))?;
            if k.internal_key != internal_key || k.output_key != output_key {
                return Err(bad(
                    "its internal or output key is not its group key's".into()
                ));
            }
            let network = match k.network.as_str() {
                "" => None,
                name => Some(
                    Network::parse(name)
                        .ok_or_else(|| bad(format!("network {name:?} is not a network")))?,
                ),
            };
            let view = TaprootView {
                internal_key,
                output_key,
                network,
            };
            if view.address().unwrap_or_default() != k.address {
                return Err(bad(format!(
                    "address {:?} is not its output key's",
                    printable(&k.address)
                )));
            }
            Some(view)
        }
    };
    Ok(KeyView {
        key_id: k.key_id.clone(),
        kind,
        group_public_key: k.group_public_key.clone(),
        taproot,
    })
}

/// What a request is, once checked against its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// A raw message on a frost-secp256k1 key.
    Raw,
    /// A raw message on a bitcoin-taproot key: what it moves is unknown.
    Blind,
    /// A PSBT request, its transaction derived here.
    Transaction(Box<Derived>),
}

/// Checks what of `view` needs its key (see the module documentation):
/// derives a PSBT request's transaction here and requires the
/// coordinator's to be the same, checks `blind`, and checks a signed
/// request's signature and signed transaction. Never panics.
pub fn check_with_key(view: &RequestView, key: &KeyView) -> Result<Checked, ViewError> {
    let id = view.id_hex();
    if key.key_id != view.request.key_id.as_str() {
        return Err(ViewError::OtherKey {
            id,
            request_key: view.request.key_id.to_string(),
            key: key.key_id.clone(),
        });
    }
    let blind = key.kind == KeyKind::BitcoinTaproot && view.request.psbt.is_none();
    if view.blind != blind {
        return Err(ViewError::BlindMismatch {
            id,
            claimed: view.blind,
            actual: blind,
        });
    }
    let Some(psbt) = &view.request.psbt else {
        let expected = match key.kind {
            KeyKind::FrostSecp256k1 => SIGNATURE_LEN,
            KeyKind::BitcoinTaproot => BIP340_SIGNATURE_LEN,
        };
        if let Some(signature) = &view.signature
            && signature.len() != expected
        {
            return Err(ViewError::BadSignature {
                id,
                state: view.state,
                len: signature.len(),
            });
        }
        return Ok(if blind { Checked::Blind } else { Checked::Raw });
    };
    let psbt_error = |reason: String| ViewError::Psbt {
        id: id.clone(),
        reason,
    };
    let taproot = key
        .taproot
        .ok_or_else(|| psbt_error(format!("key {} is not a bitcoin-taproot key", key.key_id)))?;
    let network = taproot.network.ok_or_else(|| {
        psbt_error(format!(
            "the coordinator gives no network for key {}",
            key.key_id
        ))
    })?;
    let own = OwnKey {
        internal_key: taproot.internal_key,
        output_key: taproot.output_key,
        network,
    };
    // Any sighash type the derivation knows: whether the policy allows
    // SIGHASH_ALL is the signers' to enforce; the approver is shown which.
    let derived = ringi_psbt::derive(psbt, &own, true).map_err(|e| psbt_error(e.to_string()))?;
    let mine = ringi::service::transaction_pb(&derived, network);
    match &view.transaction {
        Some(theirs) if *theirs == mine => {}
        Some(theirs) => {
            return Err(ViewError::TransactionMismatch {
                id,
                what: transaction_difference(theirs, &mine),
            });
        }
        None => {
            return Err(ViewError::TransactionMismatch {
                id,
                what: "no transaction shown for a PSBT request".into(),
            });
        }
    }
    if let Some(signature) = &view.signature {
        let mismatch = |reason: String| ViewError::SignedTransactionMismatch {
            id: id.clone(),
            reason,
        };
        let inputs = derived.inputs.len();
        if signature.len() != inputs * BIP340_SIGNATURE_LEN {
            return Err(mismatch(format!(
                "{} signature bytes for {inputs} inputs",
                signature.len()
            )));
        }
        let signatures: Vec<[u8; 64]> = signature
            .chunks_exact(BIP340_SIGNATURE_LEN)
            .filter_map(|c| <[u8; 64]>::try_from(c).ok())
            .collect();
        let finalized = ringi_psbt::finalize(psbt, &own, true, &signatures)
            .map_err(|e| mismatch(e.to_string()))?;
        if view.signed_psbt.as_deref() != Some(&finalized.psbt[..])
            || view.signed_transaction.as_deref() != Some(&finalized.tx[..])
        {
            return Err(mismatch(
                "the signed PSBT or transaction shown differs from it".into(),
            ));
        }
    }
    Ok(Checked::Transaction(Box::new(derived)))
}

/// Names the first field where the coordinator's transaction differs.
fn transaction_difference(theirs: &pb::Transaction, mine: &pb::Transaction) -> String {
    let fields: [(&str, bool); 9] = [
        ("txid", theirs.txid != mine.txid),
        ("network", theirs.network != mine.network),
        ("inputs", theirs.inputs != mine.inputs),
        ("payments", theirs.payments != mine.payments),
        ("change", theirs.change != mine.change),
        ("fee", theirs.fee_sats != mine.fee_sats),
        ("vsize", theirs.vsize != mine.vsize),
        ("fee rate", theirs.fee_rate_sat_vb != mine.fee_rate_sat_vb),
        ("total paid", theirs.total_paid_sats != mine.total_paid_sats),
    ];
    fields
        .iter()
        .find(|(_, differs)| *differs)
        .map_or("some field", |(name, _)| name)
        .to_string()
        + " differs"
}

/// When a new approval statement is issued and expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalWindow {
    pub issued_at: u64,
    pub expires_at: u64,
}

/// The validity of an approval issued `now` for `ttl_secs`, as the
/// coordinator proposes: refused if 0, longer than
/// [`MAX_APPROVAL_TTL_SECS`], or past `u64::MAX`.
pub fn approval_window(now: u64, ttl_secs: u64) -> Result<ApprovalWindow, ViewError> {
    if ttl_secs == 0 {
        return Err(ViewError::ZeroApprovalTtl);
    }
    if ttl_secs > MAX_APPROVAL_TTL_SECS {
        return Err(ViewError::ApprovalTtlTooLong {
            secs: ttl_secs,
            max: MAX_APPROVAL_TTL_SECS,
        });
    }
    let expires_at = now
        .checked_add(ttl_secs)
        .ok_or(ViewError::ApprovalExpiryOverflow { now, ttl: ttl_secs })?;
    Ok(ApprovalWindow {
        issued_at: now,
        expires_at,
    })
}

/// The approval validity to sign for: what the coordinator proposes, which
/// must not exceed `policy_max` (the `approval_ttl_secs` of the approver's
/// own copy of the policy for `key_id`, when the approver gave one), then
/// [`approval_window`]'s bounds. A shorter validity than the policy's is
/// fine: it only makes the approval stricter.
pub fn approval_window_under(
    now: u64,
    ttl_secs: u64,
    key_id: &str,
    policy_max: Option<u64>,
) -> Result<ApprovalWindow, ViewError> {
    if let Some(max) = policy_max
        && ttl_secs > max
    {
        return Err(ViewError::ApprovalTtlAbovePolicy {
            key_id: key_id.to_string(),
            secs: ttl_secs,
            max,
        });
    }
    approval_window(now, ttl_secs)
}

/// The rules of `request`'s key in the approver's own copy of the policy,
/// if that copy is the policy the request was made under (its SHA-256 is
/// the request's `policy_hash`): what the approver checks the tier and the
/// approval validity against, instead of the coordinator's word.
pub fn check_policy<'p>(
    policy: &'p Policy,
    request: &SigningRequest,
) -> Result<&'p KeyRules, ViewError> {
    if policy.hash() != request.policy_hash {
        return Err(ViewError::PolicyMismatch {
            id: hex::encode(request.id()),
            yours: hex::encode(policy.hash()),
            request: hex::encode(request.policy_hash),
        });
    }
    policy
        .key(request.key_id.as_str())
        .ok_or_else(|| ViewError::PolicyHasNoRules {
            key_id: request.key_id.to_string(),
        })
}

/// What the signers need to know of a key to derive a request's subject.
pub fn key_facts(key: &KeyView) -> KeyFacts {
    match key.taproot {
        Some(t) => KeyFacts::BitcoinTaproot {
            internal_key: t.internal_key,
            output_key: t.output_key,
        },
        None => KeyFacts::FrostSecp256k1,
    }
}

/// The rule of the approver's policy that applies to a request: which one
/// (the base rule, a tier, blind signing), the quorums it sets with any an
/// unlisted destination adds, and notes on how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRule {
    /// e.g. "the tier above 0.01000000 BTC (1000000 sat)".
    pub rule: String,
    /// Department → approvers needed, unlisted destinations included.
    pub quorums: Quorums,
    /// e.g. "destination bc1q... is not on the allowlist: also security 1".
    pub notes: Vec<String>,
}

/// Works out the rule `rules` applies to `request` on `key`, deriving the
/// request's subject as the signers do (`ringi_policy::subject`): a PSBT's
/// payments, never a declared amount. `Err` says why the signers would
/// refuse the request outright (a PSBT or fee rule, a destination the
/// allowlist refuses, blind signing not allowed).
pub fn applied_rule(
    rules: &KeyRules,
    request: &SigningRequest,
    key: &KeyView,
) -> Result<AppliedRule, String> {
    let what = subject(rules, request, &key_facts(key)).map_err(|v| v.to_string())?;
    if what == Subject::Blind {
        return match &rules.blind_signing {
            Some(quorums) => Ok(AppliedRule {
                rule: "blind_signing (a raw message on a bitcoin-taproot key)".into(),
                quorums: quorums.clone(),
                notes: Vec::new(),
            }),
            None => Err(format!(
                "the policy allows no blind signing for key {}: the signers will refuse it",
                request.key_id
            )),
        };
    }
    // A PSBT's amounts are satoshis whatever the (empty) declared asset.
    let asset = if what.transaction().is_some() {
        "BTC"
    } else {
        request.metadata.asset.as_str()
    };
    let amount = what.amount();
    let rule = match rules.tiers.iter().rev().find(|(above, _)| amount > *above) {
        Some((above, _)) => format!("the tier above {}", amount_text(asset, *above)),
        None => "the base rule".to_string(),
    };
    let destinations = what.destinations();
    let quorums = rules.quorums_for_all(amount, &destinations).map_err(|d| {
        format!(
            "destination {} is not on the key's allowlist: the signers will refuse it",
            printable(&d)
        )
    })?;
    let mut notes = vec![format!(
        "the amount counted is {}",
        amount_text(asset, amount)
    )];
    if let Some(list) = &rules.destinations {
        for d in destinations.iter().filter(|d| !list.allowed.contains(*d)) {
            let extra = list.unlisted_require.as_ref().map(quorums_text);
            notes.push(format!(
                "destination {} is not on the allowlist: also {}",
                printable(d),
                extra.unwrap_or_default()
            ));
        }
    }
    Ok(AppliedRule {
        rule,
        quorums,
        notes,
    })
}

/// e.g. "compliance 1, treasury 2".
pub fn quorums_text(quorums: &Quorums) -> String {
    quorums
        .iter()
        .map(|(d, n)| format!("{} {n}", printable(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the request stands under the approver's own policy at `now`,
/// counting the approvals still valid then: what the coordinator's
/// "still needed" should say.
pub fn local_standing(policy: &Policy, view: &RequestView, key: &KeyView, now: u64) -> String {
    let valid: Vec<Approval> = view
        .approvals
        .iter()
        .filter(|a| now < a.statement.expires_at)
        .cloned()
        .collect();
    match evaluate(policy, &view.request, &key_facts(key), &valid, now) {
        Ok(Outcome::Pending { missing }) => format!("still needs {}", describe_missing(&missing)),
        Ok(Outcome::Approved) => "the quorum is met".into(),
        Ok(Outcome::Rejected {
            approver,
            department,
            reason,
        }) => format!(
            "rejected by {} ({}): {}",
            printable(&approver),
            printable(&department),
            printable(&reason)
        ),
        Err(v) => format!("refused: {}", printable(&v.to_string())),
    }
}

/// The approver's own earlier decision on a request, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// None recorded.
    None,
    /// One still valid: another would be refused (ALREADY_EXISTS).
    Valid { decision: Decision, expires_at: u64 },
    /// Only expired ones (the latest expiry): a new approval renews it.
    Expired { expires_at: u64 },
}

/// What `me` decided on `view` before, as of `now` (approvals and
/// rejections: a requester's own `request` statement is no decision).
pub fn previous_decision(view: &RequestView, me: &ApproverKey, now: u64) -> Previous {
    let mine = view
        .approvals
        .iter()
        .filter(|a| &a.approver == me && a.statement.decision != Decision::Request);
    let mut latest = None;
    for a in mine {
        let s = &a.statement;
        if now < s.expires_at {
            return Previous::Valid {
                decision: s.decision,
                expires_at: s.expires_at,
            };
        }
        latest = latest.max(Some(s.expires_at));
    }
    match latest {
        Some(expires_at) => Previous::Expired { expires_at },
        None => Previous::None,
    }
}

/// Whether `other` would sign the same thing as `view`: the same raw
/// message, the same PSBT, or a PSBT of the same transaction (same txid,
/// so the same sighashes). `None` if not, or not for the same key.
pub fn same_subject(
    view: &RequestView,
    checked: &Checked,
    other: &RequestView,
    other_checked: &Checked,
) -> Option<&'static str> {
    if view.request.key_id != other.request.key_id {
        return None;
    }
    match (&view.request.psbt, &other.request.psbt) {
        (None, None) if view.request.message == other.request.message => Some("the same message"),
        (Some(a), Some(b)) if a == b => Some("the same PSBT"),
        (Some(_), Some(_)) => match (checked, other_checked) {
            (Checked::Transaction(a), Checked::Transaction(b)) if a.txid == b.txid => {
                Some("the same transaction (txid)")
            }
            _ => None,
        },
        _ => None,
    }
}

/// Assets whose decimals the CLI knows: (symbol, decimals, name of the
/// smallest unit). Matched exactly (case-sensitive): an asset the table
/// does not name is shown raw, never guessed.
pub const ASSETS: &[(&str, u32, &str)] = &[
    ("BTC", 8, "sat"),
    ("LTC", 8, "litoshi"),
    ("ETH", 18, "wei"),
    ("SOL", 9, "lamport"),
    ("USD", 2, "cent"),
    ("EUR", 2, "cent"),
    ("JPY", 0, "yen"),
];

/// `amount` (in the asset's smallest unit, as requests carry it) for a
/// person: with the asset's decimals and the raw figure
/// ("0.50000000 BTC (50000000 sat)"), or, for an asset the CLI does not
/// know, raw with the unit named ("50000000 FOO (smallest unit)").
pub fn amount_text(asset: &str, amount: u128) -> String {
    let Some(&(symbol, decimals, unit)) = ASSETS.iter().find(|(s, ..)| *s == asset) else {
        return if asset.is_empty() {
            format!("{amount} (smallest unit, no asset named)")
        } else {
            format!("{amount} {} (smallest unit)", printable(asset))
        };
    };
    if decimals == 0 {
        return format!("{amount} {symbol}");
    }
    let scale = 10u128.pow(decimals);
    let (whole, fraction) = (amount / scale, amount % scale);
    let width = decimals as usize;
    format!("{whole}.{fraction:0width$} {symbol} ({amount} {unit})")
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const RFC3339_MAX: u64 = 253_402_300_799;

/// Seconds since the Unix epoch as RFC 3339 UTC ("2026-12-06T10:00:00Z");
/// a time past year 9999 (only a broken or hostile coordinator sends one)
/// is written as seconds, never a panic.
pub fn rfc3339(secs: u64) -> String {
    if secs > RFC3339_MAX {
        return format!("{secs} s after 1970 (past year 9999)");
    }
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A duration in its two largest units: "45s", "12m5s", "3h12m", "2d3h".
pub fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// `at` relative to `now`: "in 3h12m", "5m0s ago", "now".
pub fn time_left(now: u64, at: u64) -> String {
    match at.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {}", duration_text(at - now)),
        std::cmp::Ordering::Equal => "now".into(),
        std::cmp::Ordering::Less => format!("{} ago", duration_text(now - at)),
    }
}

/// `at` as RFC 3339 with its distance from `now`:
/// "2026-12-06T10:00:00Z (in 3h12m)".
pub fn when(now: u64, at: u64) -> String {
    format!("{} ({})", rfc3339(at), time_left(now, at))
}

/// `text` for a terminal: control characters (escape sequences, carriage
/// returns, newlines...) and bidirectional overrides escaped as `\u{1b}`
/// and the like, everything else as is. The strings of a request come from
/// whoever submitted it, and must not redraw or reorder what the approver
/// reads.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approver::ApproverSigner;
    use ringi_policy::statement::Statement;

    const NOW: u64 = 1_700_000_000;

    fn signer() -> ApproverSigner {
        ApproverSigner::File(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap())
    }

    fn request() -> SigningRequest {
        SigningRequest {
            key_id: ringi_policy::key_id::KeyId::parse("hot-1").unwrap(),
            message: vec![0xab; 32],
            metadata: ringi_policy::request::Metadata {
                asset: "BTC".into(),
                amount: 150_000_000,
                destination: "bc1qexample".into(),
                memo: "exchange rebalance".into(),
            },
            psbt: None,
            requester: "wallet-service".into(),
            created_at: NOW,
            expires_at: NOW + 600,
            policy_hash: [7; 32],
            nonce: vec![3; ringi_policy::request::NONCE_LEN],
        }
    }

    fn approval(request: &SigningRequest, signer: &ApproverSigner) -> Approval {
        let statement =
            Statement::for_request(request, "treasury", Decision::Approve, "", NOW, NOW + 300);
        let approver = signer.public_key();
        let signature = signer.sign(&statement.signed_bytes(&approver)).unwrap();
        Approval {
            statement,
            approver,
            signature,
        }
    }

    /// A well-formed PENDING_APPROVAL view with one approval.
    fn good() -> pb::SigningRequestView {
        let r = request();
        let a = approval(&r, &signer());
        pb::SigningRequestView {
            request_id: hex::encode(r.id()),
            request: Some(ringi_proto::bundle::request_to_pb(&r)),
            state: "PENDING_APPROVAL".into(),
            state_reason: String::new(),
            content_digest: hex::encode(r.content_digest()),
            approvals: vec![ringi_proto::bundle::approval_to_pb(&a)],
            still_needed: vec![pb::Needed {
                department: "compliance".into(),
                have: 0,
                need: 1,
            }],
            approval_ttl_secs: 3600,
            signature: Vec::new(),
            transitions: vec![pb::Transition {
                from_state: String::new(),
                to_state: "PENDING_APPROVAL".into(),
                reason: "submitted".into(),
                at: NOW,
            }],
            decisions: vec![pb::DecisionSummary {
                approver: "alice".into(),
                department: "treasury".into(),
                decision: "approve".into(),
                reason: String::new(),
                issued_at: NOW,
                expires_at: NOW + 300,
            }],
            transaction: None,
            signed_psbt: Vec::new(),
            signed_transaction: Vec::new(),
            blind: false,
        }
    }

    fn refused(edit: impl FnOnce(&mut pb::SigningRequestView)) -> ViewError {
        let mut v = good();
        edit(&mut v);
        from_pb(&v).expect_err("the view must be refused")
    }

    #[test]
    fn a_good_view_decodes_with_every_field() {
        let v = good();
        let d = decode(&v.encode_to_vec()).unwrap();
        assert_eq!(d.id, request().id());
        assert_eq!(d.request, request());
        assert_eq!(d.state, State::PendingApproval);
        assert_eq!(d.approvals.len(), 1);
        assert_eq!(d.decisions[0].approver, "alice");
        assert_eq!(d.decisions[0].decision, Decision::Approve);
        assert_eq!(d.decisions[0].approver_key, signer().public_key());
        assert_eq!(d.transitions[0].from, None);
        assert_eq!(d.transitions[0].to, State::PendingApproval);
        assert_eq!(d.signature, None);
        assert_eq!(d.approval_ttl_secs, 3600);
        assert_eq!(d.id_hex(), v.request_id);
    }

    #[test]
    fn a_signed_view_carries_its_signature() {
        let mut v = good();
        v.state = "SIGNED".into();
        v.signature = vec![9; SIGNATURE_LEN];
        assert_eq!(from_pb(&v).unwrap().signature, Some(vec![9; SIGNATURE_LEN]));
        // A bitcoin-taproot key's BIP-340 signature (a blind request).
        v.signature = vec![9; BIP340_SIGNATURE_LEN];
        assert_eq!(
            from_pb(&v).unwrap().signature,
            Some(vec![9; BIP340_SIGNATURE_LEN])
        );
    }

    #[test]
    fn bytes_that_are_not_a_view_are_refused() {
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff]),
            Err(ViewError::Protobuf(_))
        ));
        // Empty bytes are a view with every field empty: no request id.
        assert_eq!(decode(&[]), Err(ViewError::BadRequestId(String::new())));
    }

    #[test]
    fn a_bad_request_id_is_refused() {
        for bad in ["", "zz", &"ab".repeat(31), &"ab".repeat(33)] {
            assert_eq!(
                refused(|v| v.request_id = bad.to_string()),
                ViewError::BadRequestId(bad.to_string())
            );
        }
    }

    #[test]
    fn a_missing_or_undecodable_request_is_refused() {
        assert!(matches!(
            refused(|v| v.request = None),
            ViewError::MissingRequest { .. }
        ));
        for edit in [
            (|r: &mut ringi_proto::approval::v1::SigningRequest| r.amount = "-1".into())
                as fn(&mut _),
            |r| r.amount = "340282366920938463463374607431768211456".into(),
            |r| r.key_id = "no spaces".into(),
            |r| r.policy_hash = vec![0; 31],
            |r| r.nonce = vec![0; 15],
            |r| r.nonce = vec![0; 17],
        ] {
            assert!(matches!(
                refused(|v| edit(v.request.as_mut().unwrap())),
                ViewError::BadRequest { .. }
            ));
        }
    }

    #[test]
    fn a_request_that_does_not_hash_to_its_id_is_refused() {
        // The coordinator shows another destination than the request's id
        // commits to.
        assert!(matches!(
            refused(|v| v.request.as_mut().unwrap().destination = "bc1qmallory".into()),
            ViewError::IdMismatch { .. }
        ));
        // The id commits to the nonce: the same content under another nonce
        // (a twin submission), or with its nonce dropped (a v1 id), is
        // another request.
        assert!(matches!(
            refused(|v| v.request.as_mut().unwrap().nonce[0] ^= 1),
            ViewError::IdMismatch { .. }
        ));
        assert!(matches!(
            refused(|v| v.request.as_mut().unwrap().nonce.clear()),
            ViewError::IdMismatch { .. }
        ));
    }

    #[test]
    fn a_request_expiring_before_its_creation_is_refused() {
        let mut r = request();
        r.expires_at = r.created_at - 1;
        let err = refused(|v| {
            v.request_id = hex::encode(r.id());
            v.request = Some(ringi_proto::bundle::request_to_pb(&r));
        });
        assert!(
            matches!(err, ViewError::ExpiresBeforeCreated { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_content_digest_is_refused() {
        for bad in ["", "nothex", &"00".repeat(32)] {
            assert!(matches!(
                refused(|v| v.content_digest = bad.to_string()),
                ViewError::ContentDigestMismatch { .. }
            ));
        }
    }

    #[test]
    fn a_state_that_is_not_a_state_is_refused() {
        for (field, edit) in [
            (
                "state",
                (|v: &mut pb::SigningRequestView| v.state = "pending".into()) as fn(&mut _),
            ),
            ("state", |v| v.state = String::new()),
            ("transition from_state", |v| {
                v.transitions[0].from_state = "LIMBO".into()
            }),
            ("transition to_state", |v| {
                v.transitions[0].to_state = String::new()
            }),
        ] {
            match refused(edit) {
                ViewError::BadState { field: f, .. } => assert_eq!(f, field),
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn a_signature_is_refused_unless_signed_and_64_or_65_bytes() {
        assert!(matches!(
            refused(|v| v.signature = vec![1; SIGNATURE_LEN]),
            ViewError::BadSignature {
                state: State::PendingApproval,
                ..
            }
        ));
        for len in [0, 63, 66, 128] {
            assert_eq!(
                refused(|v| {
                    v.state = "SIGNED".into();
                    v.signature = vec![1; len];
                }),
                ViewError::BadSignature {
                    id: hex::encode(request().id()),
                    state: State::Signed,
                    len
                }
            );
        }
    }

    #[test]
    fn malformed_foreign_or_forged_approvals_are_refused() {
        assert!(matches!(
            refused(|v| v.approvals[0].decision = "maybe".into()),
            ViewError::BadApproval { index: 0, .. }
        ));
        assert!(matches!(
            refused(|v| v.approvals[0].approver_public_key = vec![2; 5]),
            ViewError::BadApproval { index: 0, .. }
        ));
        let mut other = request();
        other.metadata.memo = "another".into();
        let foreign = approval(&other, &signer());
        assert!(matches!(
            refused(|v| v.approvals[0] = ringi_proto::bundle::approval_to_pb(&foreign)),
            ViewError::ApprovalForOtherRequest { index: 0, .. }
        ));
        assert!(matches!(
            refused(|v| v.approvals[0].signature[0] ^= 1),
            ViewError::ApprovalSignature { index: 0, .. }
        ));
    }

    #[test]
    fn decisions_must_be_the_approvals() {
        assert!(matches!(
            refused(|v| v.decisions.clear()),
            ViewError::DecisionCount {
                decisions: 0,
                approvals: 1,
                ..
            }
        ));
        for edit in [
            (|d: &mut pb::DecisionSummary| d.decision = "reject".into()) as fn(&mut _),
            |d| d.department = "compliance".into(),
            |d| d.reason = "because".into(),
            |d| d.expires_at += 1,
            |d| d.issued_at -= 1,
        ] {
            assert!(matches!(
                refused(|v| edit(&mut v.decisions[0])),
                ViewError::DecisionMismatch { index: 0, .. }
            ));
        }
    }

    #[test]
    fn the_approval_window_is_checked() {
        assert_eq!(
            approval_window(NOW, 3600),
            Ok(ApprovalWindow {
                issued_at: NOW,
                expires_at: NOW + 3600
            })
        );
        assert_eq!(
            approval_window(NOW, MAX_APPROVAL_TTL_SECS)
                .unwrap()
                .expires_at,
            NOW + MAX_APPROVAL_TTL_SECS
        );
        assert_eq!(approval_window(NOW, 0), Err(ViewError::ZeroApprovalTtl));
        assert_eq!(
            approval_window(NOW, MAX_APPROVAL_TTL_SECS + 1),
            Err(ViewError::ApprovalTtlTooLong {
                secs: MAX_APPROVAL_TTL_SECS + 1,
                max: MAX_APPROVAL_TTL_SECS
            })
        );
        assert_eq!(
            approval_window(NOW, u64::MAX),
            Err(ViewError::ApprovalTtlTooLong {
                secs: u64::MAX,
                max: MAX_APPROVAL_TTL_SECS
            })
        );
    }

    #[test]
    fn an_approval_expiry_past_the_end_of_time_is_refused_not_a_panic() {
        // The old `now + approval_ttl_secs` overflowed here (a panic in a
        // debug build, a wrapped expiry in a release build).
        assert_eq!(
            approval_window(u64::MAX - 10, 3600),
            Err(ViewError::ApprovalExpiryOverflow {
                now: u64::MAX - 10,
                ttl: 3600
            })
        );
        assert_eq!(
            approval_window(u64::MAX - 3600, 3600).unwrap().expires_at,
            u64::MAX
        );
    }

    #[test]
    fn control_characters_are_escaped_for_a_terminal() {
        assert_eq!(printable("bc1qexample"), "bc1qexample");
        assert_eq!(printable("caf\u{e9} \u{1f600}"), "caf\u{e9} \u{1f600}");
        assert_eq!(
            printable("bc1qmallory\u{1b}[2K\rbc1qexample\n"),
            "bc1qmallory\\u{1b}[2K\\rbc1qexample\\n"
        );
        assert_eq!(printable("bc1q\u{202e}elpmaxe"), "bc1q\\u{202e}elpmaxe");
    }

    // --- What the approver sees ---

    fn key_of(seed: u8) -> ApproverSigner {
        ApproverSigner::File(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    /// alice (the test signer) and bob in treasury, carol in compliance,
    /// erin in security; hot-1 needs treasury and compliance, above 1 BTC
    /// also a second treasurer and security; approvals valid 600 s.
    fn policy(extra: &str) -> Policy {
        let [alice, bob, carol, erin] = [7u8, 8, 9, 10].map(|s| key_of(s).public_key().to_text());
        Policy::from_bytes(
            format!(
                "version = 1\n\
                 [[departments]]\nname = \"treasury\"\napprovers = [{{ name = \"alice\", key = \"{alice}\" }}, {{ name = \"bob\", key = \"{bob}\" }}]\n\
                 [[departments]]\nname = \"compliance\"\napprovers = [{{ name = \"carol\", key = \"{carol}\" }}]\n\
                 [[departments]]\nname = \"security\"\napprovers = [{{ name = \"erin\", key = \"{erin}\" }}]\n\
                 [keys.hot-1]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\n\
                 require = {{ treasury = 1, compliance = 1 }}\n\
                 tiers = [{{ above = 100000000, require = {{ treasury = 2, compliance = 1, security = 1 }} }}]\n{extra}"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn frost_key() -> KeyView {
        KeyView {
            key_id: "hot-1".into(),
            kind: KeyKind::FrostSecp256k1,
            group_public_key: vec![2; 33],
            taproot: None,
        }
    }

    /// The test request made under `policy`, as a checked view with
    /// alice's approval (issued NOW, valid 300 s).
    fn view_under(policy: &Policy, edit: impl FnOnce(&mut SigningRequest)) -> RequestView {
        let mut r = request();
        r.policy_hash = policy.hash();
        edit(&mut r);
        let a = approval(&r, &signer());
        let mut v = good();
        v.request_id = hex::encode(r.id());
        v.request = Some(ringi_proto::bundle::request_to_pb(&r));
        v.content_digest = hex::encode(r.content_digest());
        v.approvals = vec![ringi_proto::bundle::approval_to_pb(&a)];
        from_pb(&v).unwrap()
    }

    #[test]
    fn amounts_are_shown_with_their_assets_decimals() {
        assert_eq!(
            amount_text("BTC", 50_000_000),
            "0.50000000 BTC (50000000 sat)"
        );
        assert_eq!(amount_text("BTC", 0), "0.00000000 BTC (0 sat)");
        assert_eq!(
            amount_text("BTC", 2_100_000_000_000_000),
            "21000000.00000000 BTC (2100000000000000 sat)"
        );
        assert_eq!(
            amount_text("ETH", 1_500_000_000_000_000_000),
            "1.500000000000000000 ETH (1500000000000000000 wei)"
        );
        assert_eq!(amount_text("JPY", 1000), "1000 JPY");
        assert_eq!(amount_text("USD", 1234), "12.34 USD (1234 cent)");
        // The largest amount a request can carry does not overflow.
        assert_eq!(
            amount_text("ETH", u128::MAX),
            format!(
                "{}.{} ETH ({} wei)",
                u128::MAX / 10u128.pow(18),
                u128::MAX % 10u128.pow(18),
                u128::MAX
            )
        );
        // Unknown (or differently spelled) assets: raw, the unit named.
        assert_eq!(
            amount_text("FOO", 50_000_000),
            "50000000 FOO (smallest unit)"
        );
        assert_eq!(amount_text("btc", 5), "5 btc (smallest unit)");
        assert_eq!(amount_text("", 5), "5 (smallest unit, no asset named)");
        assert_eq!(
            amount_text("F\u{1b}[2K", 5),
            "5 F\\u{1b}[2K (smallest unit)"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(NOW), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_551_200), "2026-12-06T10:00:00Z");
        assert_eq!(rfc3339(RFC3339_MAX), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(u64::MAX),
            "18446744073709551615 s after 1970 (past year 9999)"
        );
    }

    #[test]
    fn time_left_is_in_its_two_largest_units() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(725), "12m5s");
        assert_eq!(duration_text(3 * 3600 + 12 * 60 + 59), "3h12m");
        assert_eq!(duration_text(2 * 86_400 + 3 * 3600 + 5), "2d3h");
        assert_eq!(time_left(NOW, NOW + 11_520), "in 3h12m");
        assert_eq!(time_left(NOW, NOW), "now");
        assert_eq!(time_left(NOW, NOW - 300), "5m0s ago");
        assert_eq!(
            time_left(0, u64::MAX),
            format!("in {}d7h", u64::MAX / 86_400)
        );
        assert_eq!(when(NOW, NOW + 11_520), "2023-11-15T01:25:20Z (in 3h12m)");
    }

    #[test]
    fn a_validity_above_the_approvers_policy_is_refused() {
        assert_eq!(
            approval_window_under(NOW, 600, "hot-1", Some(600)),
            Ok(ApprovalWindow {
                issued_at: NOW,
                expires_at: NOW + 600
            })
        );
        // Shorter than the policy's: stricter, fine.
        assert_eq!(
            approval_window_under(NOW, 60, "hot-1", Some(600))
                .unwrap()
                .expires_at,
            NOW + 60
        );
        let err = approval_window_under(NOW, 601, "hot-1", Some(600)).unwrap_err();
        assert_eq!(
            err,
            ViewError::ApprovalTtlAbovePolicy {
                key_id: "hot-1".into(),
                secs: 601,
                max: 600
            }
        );
        assert_eq!(
            err.to_string(),
            "the coordinator proposes approvals valid for 601 s, more than the approval_ttl_secs of 600 s your policy sets for key hot-1; refusing to sign"
        );
        // Without a policy, only the CLI's own bounds.
        assert!(approval_window_under(NOW, 601, "hot-1", None).is_ok());
        assert_eq!(
            approval_window_under(NOW, MAX_APPROVAL_TTL_SECS + 1, "hot-1", Some(u64::MAX)),
            Err(ViewError::ApprovalTtlTooLong {
                secs: MAX_APPROVAL_TTL_SECS + 1,
                max: MAX_APPROVAL_TTL_SECS
            })
        );
    }

    #[test]
    fn the_approvers_policy_must_be_the_requests() {
        let p = policy("");
        let mut r = request();
        r.policy_hash = p.hash();
        assert_eq!(check_policy(&p, &r).unwrap().approval_ttl_secs, 600);
        // A comment changes the file, so its hash: another policy.
        let edited = policy("# edited\n");
        assert_eq!(
            check_policy(&edited, &r),
            Err(ViewError::PolicyMismatch {
                id: hex::encode(r.id()),
                yours: hex::encode(edited.hash()),
                request: hex::encode(p.hash()),
            })
        );
        let mut other_key = r.clone();
        other_key.key_id = ringi_policy::key_id::KeyId::parse("cold-1").unwrap();
        assert_eq!(
            check_policy(&p, &other_key),
            Err(ViewError::PolicyHasNoRules {
                key_id: "cold-1".into()
            })
        );
    }

    #[test]
    fn the_applied_rule_is_the_tier_of_the_amount() {
        let p = policy("");
        let rules = p.key("hot-1").unwrap();
        let mut r = request(); // 1.5 BTC
        let rule = applied_rule(rules, &r, &frost_key()).unwrap();
        assert_eq!(rule.rule, "the tier above 1.00000000 BTC (100000000 sat)");
        assert_eq!(
            quorums_text(&rule.quorums),
            "compliance 1, security 1, treasury 2"
        );
        assert_eq!(
            rule.notes,
            ["the amount counted is 1.50000000 BTC (150000000 sat)"]
        );
        // At the threshold itself: the base rule ("above" is strict).
        r.metadata.amount = 100_000_000;
        let rule = applied_rule(rules, &r, &frost_key()).unwrap();
        assert_eq!(rule.rule, "the base rule");
        assert_eq!(quorums_text(&rule.quorums), "compliance 1, treasury 1");
    }

    #[test]
    fn an_unlisted_destination_adds_its_quorum_or_is_refused() {
        let p = policy(
            "[keys.hot-1.destinations]\nallowed = [\"bc1qlisted\"]\nunlisted_require = { security = 1 }\n",
        );
        let rules = p.key("hot-1").unwrap();
        let mut r = request();
        r.metadata.amount = 1000;
        let rule = applied_rule(rules, &r, &frost_key()).unwrap();
        assert_eq!(
            quorums_text(&rule.quorums),
            "compliance 1, security 1, treasury 1"
        );
        assert_eq!(
            rule.notes[1],
            "destination bc1qexample is not on the allowlist: also security 1"
        );
        r.metadata.destination = "bc1qlisted".into();
        assert_eq!(
            applied_rule(rules, &r, &frost_key()).unwrap().notes.len(),
            1
        );
        let strict = policy("[keys.hot-1.destinations]\nallowed = [\"bc1qlisted\"]\n");
        r.metadata.destination = "bc1qexample".into();
        assert_eq!(
            applied_rule(strict.key("hot-1").unwrap(), &r, &frost_key()),
            Err(
                "destination bc1qexample is not on the key's allowlist: the signers will refuse it"
                    .into()
            )
        );
    }

    #[test]
    fn the_local_standing_counts_only_valid_approvals() {
        let p = policy("");
        let v = view_under(&p, |_| {});
        let key = frost_key();
        assert_eq!(
            local_standing(&p, &v, &key, NOW + 1),
            "still needs compliance 0 of 1, security 0 of 1, treasury 1 of 2"
        );
        // alice's approval expired at NOW + 300.
        assert_eq!(
            local_standing(&p, &v, &key, NOW + 300),
            "still needs compliance 0 of 1, security 0 of 1, treasury 0 of 2"
        );
        // Under another policy the request is refused, not counted.
        let other = policy("# edited\n");
        assert!(
            local_standing(&other, &v, &key, NOW + 1)
                .starts_with("refused: request was made under policy"),
        );
    }

    #[test]
    fn an_expired_approval_of_ones_own_is_renewed_a_valid_one_is_not() {
        let p = policy("");
        let v = view_under(&p, |_| {});
        let alice = signer().public_key();
        assert_eq!(
            previous_decision(&v, &alice, NOW + 299),
            Previous::Valid {
                decision: Decision::Approve,
                expires_at: NOW + 300
            }
        );
        assert_eq!(
            previous_decision(&v, &alice, NOW + 300),
            Previous::Expired {
                expires_at: NOW + 300
            }
        );
        assert_eq!(
            previous_decision(&v, &key_of(8).public_key(), NOW),
            Previous::None
        );
        // A requester's own `request` statement is no decision of theirs.
        let mut signed = v.clone();
        let s = &mut signed.approvals[0].statement;
        s.decision = Decision::Request;
        s.department = String::new();
        assert_eq!(previous_decision(&signed, &alice, NOW), Previous::None);
    }

    #[test]
    fn the_same_message_on_the_same_key_is_found() {
        let p = policy("");
        let a = view_under(&p, |_| {});
        let twin = view_under(&p, |r| r.nonce = vec![4; ringi_policy::request::NONCE_LEN]);
        assert_ne!(a.id, twin.id);
        assert_eq!(
            same_subject(&a, &Checked::Raw, &twin, &Checked::Raw),
            Some("the same message")
        );
        let other = view_under(&p, |r| r.message = vec![0xcd; 32]);
        assert_eq!(same_subject(&a, &Checked::Raw, &other, &Checked::Raw), None);
        let other_key = view_under(&p, |r| {
            r.key_id = ringi_policy::key_id::KeyId::parse("hot-2").unwrap()
        });
        assert_eq!(
            same_subject(&a, &Checked::Raw, &other_key, &Checked::Raw),
            None
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap stand-in for the fuzz target: truncations and bit flips of
        // a good view.
        let bytes = good().encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x80;
            let _ = decode(&b);
        }
    }
}
