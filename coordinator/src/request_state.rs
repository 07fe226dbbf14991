//! The life of a signing request, as a pure state machine.
//!
//! ```text
//! PENDING_APPROVAL ──quorum met──▶ APPROVED ──round started──▶ SIGNING ──▶ SIGNED (signature[, transaction])
//!        │  │                         │                           │
//!        │  └──veto──▶ REJECTED       └──expired──▶ EXPIRED       └──▶ FAILED (reason)
//!        └──expired──▶ EXPIRED                         FAILED ──retried by an admin──▶ APPROVED
//! ```
//!
//! SIGNED, REJECTED, EXPIRED and FAILED are terminal: nothing the request's
//! flow does moves them on. FAILED (a signer refused, or the approvals ran
//! out while signers were unreachable) can be sent back to APPROVED by an
//! administrator (`ringi requests retry`), once the cause is fixed. A state change is a
//! [`Transition`], and the only way to make one is [`next`]: the stores take
//! transitions, not free (from, to) pairs, so a change the machine does not
//! allow cannot be recorded, and since [`Event::Signed`] carries the
//! signature (and, for a PSBT request, the finalized PSBT and transaction),
//! neither can SIGNED without one. The store records every
//! transition with its time and reason, in the same transaction as the
//! change that caused it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    PendingApproval,
    Approved,
    Signing,
    Signed,
    Rejected,
    Expired,
    Failed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::PendingApproval,
        State::Approved,
        State::Signing,
        State::Signed,
        State::Rejected,
        State::Expired,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::PendingApproval => "PENDING_APPROVAL",
            State::Approved => "APPROVED",
            State::Signing => "SIGNING",
            State::Signed => "SIGNED",
            State::Rejected => "REJECTED",
            State::Expired => "EXPIRED",
            State::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Signed | State::Rejected | State::Expired | State::Failed
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PSBT request's result: every input signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransaction {
    /// The finalized PSBT (binary BIP-174).
    pub psbt: Vec<u8>,
    /// The signed transaction, consensus-encoded.
    pub tx: Vec<u8>,
}

/// What happened to a request. Its `Display` is the reason recorded with
/// the transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every department of the applicable rule has its quorum.
    QuorumMet,
    /// An approver rejected the request.
    Vetoed {
        approver: String,
        department: String,
        reason: String,
    },
    /// The request's time ran out (`expires_at`).
    Expired { at: u64 },
    /// The policy it was made under was replaced by an update whose
    /// `pending_requests` is "re-approve": it can no longer be signed, and
    /// its wallet must submit it again.
    PolicyReplaced {
        policy_sha256: String,
        sequence: u64,
    },
    /// The coordinator started the signing round.
    SigningStarted,
    /// The group signature (for a PSBT request every input's, 64 bytes
    /// each, in input order), the signers whose shares formed it, and for
    /// a PSBT request the signed transaction.
    Signed {
        signature: Vec<u8>,
        signers: Vec<String>,
        transaction: Option<SignedTransaction>,
    },
    /// The round ended without a signature.
    SigningFailed { reason: String },
    /// An administrator sent a FAILED request back to be signed.
    Retried { by: String },
}

impl Event {
    /// The event's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Event::QuorumMet => "QuorumMet",
            Event::Vetoed { .. } => "Vetoed",
            Event::Expired { .. } => "Expired",
            Event::PolicyReplaced { .. } => "PolicyReplaced",
            Event::SigningStarted => "SigningStarted",
            Event::Signed { .. } => "Signed",
            Event::SigningFailed { .. } => "SigningFailed",
            Event::Retried { .. } => "Retried",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::QuorumMet => f.write_str("quorum met"),
            Event::Vetoed {
                approver,
                department,
                reason,
            } => write!(f, "rejected by {approver} ({department}): {reason}"),
            Event::Expired { at } => write!(f, "request expired at {at}"),
            Event::PolicyReplaced {
                policy_sha256,
                sequence,
            } => write!(
                f,
                "the policy it was made under was replaced by policy {policy_sha256} (sequence {sequence}), which re-approves pending requests: submit it again"
            ),
            Event::SigningStarted => f.write_str("signing round started"),
            Event::Signed { signers, .. } => write!(f, "signed by {}", signers.join(", ")),
            Event::SigningFailed { reason } => f.write_str(reason),
            Event::Retried { by } => write!(f, "retried by {by}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request in state {from} cannot take event {event}")]
pub struct TransitionError {
    pub from: State,
    pub event: &'static str,
}

/// A state change the machine allows; made only by [`next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    from: State,
    to: State,
    event: Event,
}

impl Transition {
    /// The state the change starts from: stores apply it only while the
    /// request is still in it (compare-and-set).
    pub fn from(&self) -> State {
        self.from
    }

    pub fn to(&self) -> State {
        self.to
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The reason recorded with the change.
    pub fn reason(&self) -> String {
        self.event.to_string()
    }

    /// The signature to record: `Some` exactly when the change is to
    /// SIGNED.
    pub fn signature(&self) -> Option<&[u8]> {
        match &self.event {
            Event::Signed { signature, .. } => Some(signature),
            _ => None,
        }
    }

    /// The signed transaction to record with the signature (PSBT requests).
    pub fn signed_transaction(&self) -> Option<&SignedTransaction> {
        match &self.event {
            Event::Signed { transaction, .. } => transaction.as_ref(),
            _ => None,
        }
    }
}

/// The state after `event`, or why the event does not apply.
pub fn target(from: State, event: &Event) -> Result<State, TransitionError> {
    use Event as E;
    use State as S;
    let to = match (from, event) {
        (S::PendingApproval, E::QuorumMet) => S::Approved,
        (S::PendingApproval, E::Vetoed { .. }) => S::Rejected,
        (S::PendingApproval | S::Approved, E::Expired { .. } | E::PolicyReplaced { .. }) => {
            S::Expired
        }
        (S::Approved, E::SigningStarted) => S::Signing,
        (S::Signing, E::Signed { .. }) => S::Signed,
        (S::Signing, E::SigningFailed { .. }) => S::Failed,
        (S::Failed, E::Retried { .. }) => S::Approved,
        _ => {
            return Err(TransitionError {
                from,
                event: event.name(),
            });
        }
    };
    Ok(to)
}

/// The transition `event` makes from `from`, or why it does not apply.
pub fn next(from: State, event: Event) -> Result<Transition, TransitionError> {
    let to = target(from, &event)?;
    Ok(Transition { from, to, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        vec![
            Event::QuorumMet,
            Event::Vetoed {
                approver: "dave".into(),
                department: "compliance".into(),
                reason: "no".into(),
            },
            Event::Expired { at: 5 },
            Event::SigningStarted,
            Event::Signed {
                signature: vec![1; 65],
                signers: vec!["a".into(), "b".into()],
                transaction: None,
            },
            Event::SigningFailed {
                reason: "signers down".into(),
            },
            Event::Retried { by: "ops".into() },
        ]
    }

    #[test]
    fn the_happy_path() {
        let mut s = State::PendingApproval;
        for e in [
            Event::QuorumMet,
            Event::SigningStarted,
            Event::Signed {
                signature: vec![7; 65],
                signers: vec!["a".into(), "b".into()],
                transaction: None,
            },
        ] {
            let t = next(s, e).unwrap();
            assert_eq!(t.from(), s);
            s = t.to();
            if s == State::Signed {
                assert_eq!(t.signature(), Some(&[7u8; 65][..]));
                assert_eq!(t.reason(), "signed by a, b");
            } else {
                assert_eq!(t.signature(), None);
            }
        }
        assert_eq!(s, State::Signed);
    }

    #[test]
    fn terminal_states_take_no_event_but_an_admins_retry_of_failed() {
        for s in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in events() {
                if s == State::Failed && matches!(e, Event::Retried { .. }) {
                    let t = next(s, e).unwrap();
                    assert_eq!(t.to(), State::Approved);
                    assert_eq!(t.reason(), "retried by ops");
                    continue;
                }
                let name = e.name();
                assert_eq!(
                    next(s, e),
                    Err(TransitionError {
                        from: s,
                        event: name
                    })
                );
            }
        }
    }

    #[test]
    fn only_a_signed_event_carries_a_signature_and_only_it_reaches_signed() {
        for s in State::ALL {
            for e in events() {
                if let Ok(t) = next(s, e) {
                    assert_eq!(t.to() == State::Signed, t.signature().is_some(), "{t:?}");
                }
            }
        }
    }

    #[test]
    fn every_allowed_change_is_listed() {
        let mut allowed = Vec::new();
        for s in State::ALL {
            for e in events() {
                if let Ok(t) = next(s, e) {
                    allowed.push((t.from(), t.to()));
                }
            }
        }
        use State as S;
        assert_eq!(
            allowed,
            vec![
                (S::PendingApproval, S::Approved),
                (S::PendingApproval, S::Rejected),
                (S::PendingApproval, S::Expired),
                (S::Approved, S::Expired),
                (S::Approved, S::Signing),
                (S::Signing, S::Signed),
                (S::Signing, S::Failed),
                (S::Failed, S::Approved),
            ]
        );
    }

    #[test]
    fn a_veto_or_expiry_ends_a_pending_request_with_its_reason() {
        let veto = next(State::PendingApproval, events().remove(1)).unwrap();
        assert_eq!(veto.to(), State::Rejected);
        assert_eq!(veto.reason(), "rejected by dave (compliance): no");
        let expiry = next(State::PendingApproval, Event::Expired { at: 200 }).unwrap();
        assert_eq!(expiry.to(), State::Expired);
        assert_eq!(expiry.reason(), "request expired at 200");
        // Once signing started, a late veto or expiry cannot stop the round:
        // the signers checked the bundle they were given.
        assert!(next(State::Signing, events().remove(1)).is_err());
        assert!(next(State::Signing, Event::Expired { at: 1 }).is_err());
        assert!(next(State::PendingApproval, Event::SigningStarted).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("pending"), None);
    }
}
