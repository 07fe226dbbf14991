//! Holds: what stops a request that is otherwise approved. A veto
//! ([`crate::veto`]) holds one request for good; a freeze
//! ([`crate::freeze`]) holds a key, or every key, until a quorum lifts it.
//!
//! [`Holds`] is the state a signer keeps (durably, `signer/src/holds.rs`)
//! and consults after its own evaluation of the approvals, before each
//! round: pure, so the rule "a held request is not signed" is tested here
//! without a node.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::freeze::{Freeze, FreezeRefused, Scope};
use crate::key_id::KeyId;
use crate::veto::Veto;

/// A freeze in force, and who froze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFreeze {
    pub freeze: Freeze,
    pub officer: String,
    /// When this node recorded it.
    pub recorded_at: u64,
}

/// Why a request may not be signed now, though approved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hold {
    #[error(
        "the request was rejected by {} ({}), sent to this signer directly: {}",
        .0.approver,
        .0.department,
        .0.reason
    )]
    Vetoed(Veto),
    #[error("{scope} is frozen by {officer}: {reason}; a quorum must lift the freeze")]
    Frozen {
        scope: String,
        officer: String,
        reason: String,
    },
}

/// What a freeze did to the holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frozen {
    /// The scope is frozen from now on.
    New,
    /// The scope was frozen already, by the freeze with this id; the
    /// first freeze stays in force (an unfreeze must name it).
    Already([u8; 32]),
}

/// The vetoes and freezes a node holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    vetoes: HashMap<[u8; 32], Veto>,
    freezes: BTreeMap<Scope, ActiveFreeze>,
    lifted: HashSet<[u8; 32]>,
}

impl Holds {
    /// What holds the request `request_id` for `key_id`, if anything: its
    /// veto first, then a freeze of every key, then of its key.
    pub fn hold_on(&self, request_id: &[u8; 32], key_id: &KeyId) -> Option<Hold> {
        self.vetoed(request_id).or_else(|| self.frozen(key_id))
    }

    /// The veto of `request_id`, if any.
    pub fn vetoed(&self, request_id: &[u8; 32]) -> Option<Hold> {
        self.vetoes.get(request_id).cloned().map(Hold::Vetoed)
    }

    /// The freeze holding `key_id` (of every key first), if any.
    pub fn frozen(&self, key_id: &KeyId) -> Option<Hold> {
        [Scope::All, Scope::Key(key_id.clone())]
            .iter()
            .find_map(|scope| self.freezes.get(scope))
            .map(|a| Hold::Frozen {
                scope: a.freeze.statement.scope.to_text(),
                officer: a.officer.clone(),
                reason: a.freeze.statement.reason.clone(),
            })
    }

    /// Records a veto; false if the request was vetoed already (the first
    /// veto is kept).
    pub fn add_veto(&mut self, veto: Veto) -> bool {
        if self.vetoes.contains_key(&veto.request_id) {
            return false;
        }
        self.vetoes.insert(veto.request_id, veto);
        true
    }

    /// Whether `freeze` can be put in force: not one lifted before.
    pub fn admit(&self, freeze: &Freeze) -> Result<Frozen, FreezeRefused> {
        let id = freeze.id();
        if self.lifted.contains(&id) {
            return Err(FreezeRefused::Lifted);
        }
        Ok(match self.freezes.get(&freeze.statement.scope) {
            Some(a) => Frozen::Already(a.freeze.id()),
            None => Frozen::New,
        })
    }

    /// Puts an admitted freeze in force (see [`Holds::admit`]); a scope
    /// frozen already keeps its first freeze.
    pub fn freeze(&mut self, active: ActiveFreeze) -> Result<Frozen, FreezeRefused> {
        let outcome = self.admit(&active.freeze)?;
        if outcome == Frozen::New {
            self.freezes
                .insert(active.freeze.statement.scope.clone(), active);
        }
        Ok(outcome)
    }

    /// The freeze in force for `scope`.
    pub fn active(&self, scope: &Scope) -> Option<&ActiveFreeze> {
        self.freezes.get(scope)
    }

    /// Every freeze in force.
    pub fn freezes(&self) -> impl Iterator<Item = &ActiveFreeze> {
        self.freezes.values()
    }

    /// How many requests are vetoed.
    pub fn veto_count(&self) -> usize {
        self.vetoes.len()
    }

    /// Lifts the freeze of `scope` (its unfreeze checked by the caller,
    /// `crate::freeze::check_unfreeze`); remembers its id so it cannot be
    /// replayed. Returns the lifted freeze.
    pub fn lift(&mut self, scope: &Scope) -> Option<ActiveFreeze> {
        let lifted = self.freezes.remove(scope)?;
        self.lifted.insert(lifted.freeze.id());
        Some(lifted)
    }

    /// Remembers a freeze id lifted earlier (loading from storage).
    pub fn remember_lifted(&mut self, id: [u8; 32]) {
        self.lifted.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freeze::tests::{NOW, freeze};
    use crate::policy::tests::keys;

    fn key(k: &str) -> KeyId {
        KeyId::parse(k).unwrap()
    }

    fn active(f: Freeze) -> ActiveFreeze {
        ActiveFreeze {
            freeze: f,
            officer: "erin".into(),
            recorded_at: NOW,
        }
    }

    #[test]
    fn a_veto_holds_its_request_only() {
        let mut holds = Holds::default();
        let veto = Veto {
            request_id: [7; 32],
            key_id: key("hot-1"),
            approver: "carol".into(),
            department: "compliance".into(),
            reason: "unknown beneficiary".into(),
        };
        assert!(holds.add_veto(veto.clone()));
        assert!(!holds.add_veto(veto.clone()));
        let hold = holds.hold_on(&[7; 32], &key("hot-1")).unwrap();
        assert_eq!(hold, Hold::Vetoed(veto));
        assert!(hold.to_string().contains("rejected by carol (compliance)"));
        assert_eq!(holds.hold_on(&[8; 32], &key("hot-1")), None);
        assert_eq!(holds.veto_count(), 1);
    }

    #[test]
    fn a_key_freeze_holds_its_key_a_global_one_every_key() {
        let keys = keys();
        let mut holds = Holds::default();
        let f = freeze(&keys, "erin", Scope::Key(key("hot-1")), NOW);
        assert_eq!(holds.freeze(active(f.clone())), Ok(Frozen::New));
        assert!(matches!(
            holds.hold_on(&[1; 32], &key("hot-1")),
            Some(Hold::Frozen { scope, .. }) if scope == "key:hot-1"
        ));
        assert_eq!(holds.hold_on(&[1; 32], &key("cold-1")), None);
        // A second freeze of a frozen scope keeps the first.
        let again = freeze(&keys, "erin", Scope::Key(key("hot-1")), NOW + 1);
        assert_eq!(holds.freeze(active(again)), Ok(Frozen::Already(f.id())));
        let all = freeze(&keys, "erin", Scope::All, NOW);
        holds.freeze(active(all)).unwrap();
        assert!(matches!(
            holds.hold_on(&[1; 32], &key("cold-1")),
            Some(Hold::Frozen { scope, .. }) if scope == "all"
        ));
    }

    #[test]
    fn a_lifted_freeze_cannot_be_replayed() {
        let keys = keys();
        let mut holds = Holds::default();
        let f = freeze(&keys, "erin", Scope::All, NOW);
        holds.freeze(active(f.clone())).unwrap();
        assert_eq!(holds.lift(&Scope::All).map(|a| a.freeze), Some(f.clone()));
        assert_eq!(holds.hold_on(&[1; 32], &key("hot-1")), None);
        assert_eq!(holds.freeze(active(f.clone())), Err(FreezeRefused::Lifted));
        assert_eq!(holds.lift(&Scope::All), None);
        // A new freeze (another statement) is admitted.
        let later = freeze(&keys, "erin", Scope::All, NOW + 60);
        assert_eq!(holds.freeze(active(later)), Ok(Frozen::New));
    }
}
