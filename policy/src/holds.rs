//! Holds: what stops a request that is otherwise approved. A veto
//! ([`crate::veto`]) holds one request for good; a freeze
//! ([`crate::freeze`]) holds a key, or every key, until a quorum lifts it;
//! a retirement ([`crate::retirement`]) holds a key for good, and more than
//! its requests: the key signs nothing at all (no preprocessing, no DKG).
//!
//! [`Holds`] is the state a signer keeps (durably, `signer/src/holds.rs`)
//! and consults after its own evaluation of the approvals, before each
//! round: pure, so the rule "a held request is not signed" is tested here
//! without a node.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::freeze::{Freeze, FreezeRefused, Scope};
use crate::key_id::KeyId;
use crate::retirement::Retirement;
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
    /// The key is retired: nothing more is signed with it, ever.
    #[error("{0}")]
    Retired(Box<Retirement>),
}

/// What a retirement did to the holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    /// The key is retired from now on.
    New,
    /// The key was retired already, by this earlier retirement, which
    /// stands (its `destroy_after` too).
    Already(Box<Retirement>),
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
    retirements: BTreeMap<KeyId, Retirement>,
}

impl Holds {
    /// What holds the request `request_id` for `key_id`, if anything: the
    /// key's retirement first, then the request's veto, then a freeze of
    /// every key, then of its key.
    pub fn hold_on(&self, request_id: &[u8; 32], key_id: &KeyId) -> Option<Hold> {
        self.retired(key_id)
            .or_else(|| self.vetoed(request_id))
            .or_else(|| self.frozen(key_id))
    }

    /// The retirement of `key_id` as a hold, if the key is retired.
    pub fn retired(&self, key_id: &KeyId) -> Option<Hold> {
        self.retirements
            .get(key_id)
            .map(|r| Hold::Retired(Box::new(r.clone())))
    }

    /// The retirement of `key_id`, if any.
    pub fn retirement(&self, key_id: &KeyId) -> Option<&Retirement> {
        self.retirements.get(key_id)
    }

    /// Every retirement, by key id.
    pub fn retirements(&self) -> impl Iterator<Item = &Retirement> {
        self.retirements.values()
    }

    /// Retires a key (its order checked by the caller,
    /// `crate::retirement::check_retire`); a key retired already keeps its
    /// first retirement.
    pub fn retire(&mut self, retirement: Retirement) -> Retired {
        match self.retirements.get(&retirement.key_id) {
            Some(first) => Retired::Already(Box::new(first.clone())),
            None => {
                self.retirements
                    .insert(retirement.key_id.clone(), retirement);
                Retired::New
            }
        }
    }

    /// The retired keys whose shares are due for destruction at `now`
    /// (`destroy_after` reached, not destroyed yet).
    pub fn due(&self, now: u64) -> Vec<KeyId> {
        self.retirements
            .values()
            .filter(|r| r.due(now))
            .map(|r| r.key_id.clone())
            .collect()
    }

    /// Records that `key_id`'s shares were destroyed at `at`; false if the
    /// key is not retired (nothing recorded) or was destroyed already.
    pub fn mark_destroyed(&mut self, key_id: &KeyId, at: u64) -> bool {
        match self.retirements.get_mut(key_id) {
            Some(r) if r.destroyed_at.is_none() => {
                r.destroyed_at = Some(at);
                true
            }
            _ => false,
        }
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
    fn a_retirement_holds_its_key_first_for_good_and_the_first_stands() {
        let keys = keys();
        let mut holds = Holds::default();
        let retirement = |order: u8, destroy_after| Retirement {
            key_id: key("hot-1"),
            order_id: [order; 32],
            destroy_after,
            admins: vec!["alice".into(), "carol".into()],
            accepted_at: NOW,
            destroyed_at: None,
        };
        assert_eq!(holds.retire(retirement(1, NOW + 30)), Retired::New);
        // A second order changes nothing: the first one's time stands.
        assert_eq!(
            holds.retire(retirement(2, NOW + 1)),
            Retired::Already(Box::new(retirement(1, NOW + 30)))
        );
        // The retirement comes before a veto or a freeze of the key.
        holds.add_veto(Veto {
            request_id: [7; 32],
            key_id: key("hot-1"),
            approver: "carol".into(),
            department: "compliance".into(),
            reason: "no".into(),
        });
        let f = freeze(&keys, "erin", Scope::Key(key("hot-1")), NOW);
        holds.freeze(active(f)).unwrap();
        let hold = holds.hold_on(&[7; 32], &key("hot-1")).unwrap();
        assert!(matches!(&hold, Hold::Retired(r) if r.order_id == [1; 32]));
        assert!(hold.to_string().contains("retired"), "{hold}");
        assert_eq!(holds.retired(&key("cold-1")), None);
        assert_eq!(holds.hold_on(&[8; 32], &key("cold-1")), None);
        // Destruction: due from destroy_after on, once.
        assert!(holds.due(NOW + 29).is_empty());
        assert_eq!(holds.due(NOW + 30), vec![key("hot-1")]);
        assert!(holds.mark_destroyed(&key("hot-1"), NOW + 31));
        assert!(!holds.mark_destroyed(&key("hot-1"), NOW + 32));
        assert!(!holds.mark_destroyed(&key("cold-1"), NOW + 32));
        assert!(holds.due(NOW + 100).is_empty());
        // Still retired once the shares are gone.
        assert!(matches!(
            holds.retired(&key("hot-1")),
            Some(Hold::Retired(r)) if r.destroyed_at == Some(NOW + 31)
        ));
        assert_eq!(holds.retirements().count(), 1);
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
