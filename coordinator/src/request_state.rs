//! The life of a signing request, as a pure state machine.
//!
//! ```text
//! PENDING_APPROVAL ──quorum met──▶ APPROVED ──round started──▶ SIGNING ──▶ SIGNED
//!        │  │                         │                           │
//!        │  └──veto──▶ REJECTED       └──expired──▶ EXPIRED       └──▶ FAILED (reason)
//!        └──expired──▶ EXPIRED
//! ```
//!
//! SIGNED, REJECTED, EXPIRED and FAILED are terminal. The store records every
//! transition with its time and reason, in the same transaction as the change
//! that caused it.

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

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    QuorumMet,
    Vetoed,
    Expired,
    SigningStarted,
    Signed,
    SigningFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request in state {from} cannot take event {event:?}")]
pub struct TransitionError {
    pub from: State,
    pub event: Event,
}

/// The state after `event`, or why the event does not apply.
pub fn next(from: State, event: Event) -> Result<State, TransitionError> {
    use Event as E;
    use State as S;
    let to = match (from, event) {
        (S::PendingApproval, E::QuorumMet) => S::Approved,
        (S::PendingApproval, E::Vetoed) => S::Rejected,
        (S::PendingApproval | S::Approved, E::Expired) => S::Expired,
        (S::Approved, E::SigningStarted) => S::Signing,
        (S::Signing, E::Signed) => S::Signed,
        (S::Signing, E::SigningFailed) => S::Failed,
        _ => return Err(TransitionError { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path() {
        let mut s = State::PendingApproval;
        for e in [Event::QuorumMet, Event::SigningStarted, Event::Signed] {
            s = next(s, e).unwrap();
        }
        assert_eq!(s, State::Signed);
    }

    #[test]
    fn terminal_states_take_no_event() {
        let events = [
            Event::QuorumMet,
            Event::Vetoed,
            Event::Expired,
            Event::SigningStarted,
            Event::Signed,
            Event::SigningFailed,
        ];
        for s in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in events {
                assert_eq!(next(s, e), Err(TransitionError { from: s, event: e }));
            }
        }
    }

    #[test]
    fn a_veto_or_expiry_ends_a_pending_request() {
        assert_eq!(
            next(State::PendingApproval, Event::Vetoed),
            Ok(State::Rejected)
        );
        assert_eq!(
            next(State::PendingApproval, Event::Expired),
            Ok(State::Expired)
        );
        // Once signing started, a late veto cannot stop the round: the
        // signers checked the bundle they were given.
        assert!(next(State::Signing, Event::Vetoed).is_err());
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
