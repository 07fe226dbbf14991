//! Retiring a key: the admins' order ([`crate::key_order`], action
//! `retire`) that ends a key. From the moment a node accepts it, the key
//! signs nothing more on that node (no round 1, no round 2, no
//! preprocessing, no DKG, a refresh's included, under its key id); at or
//! after the order's `destroy_after` the node destroys every share of the
//! key in its token.
//!
//! [`check_retire`] is the one check of a retirement order both the
//! coordinator and every signer run (pure); [`Retirement`] is what a node
//! records once it accepted one. A key is retired once: a later order for
//! the same key changes nothing (the first order's `destroy_after`
//! stands), so a retirement can be neither shortened nor extended, nor
//! undone.

use std::fmt;

use crate::key_id::KeyId;
use crate::key_order::{Action, OrderRefused, SignedOrder, check_order};
use crate::policy::Policy;

/// A retirement a node accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    pub key_id: KeyId,
    /// The order's id (`KeyOrder::id`).
    pub order_id: [u8; 32],
    /// When the shares are destroyed (seconds since the Unix epoch): at or
    /// after this.
    pub destroy_after: u64,
    /// The admins whose signatures counted.
    pub admins: Vec<String>,
    /// When this node accepted the order.
    pub accepted_at: u64,
    /// When this node destroyed the key's shares; `None`: not yet.
    pub destroyed_at: Option<u64>,
}

impl Retirement {
    /// The admins as the node stores keep them: their names, comma
    /// separated.
    pub fn admins_text(&self) -> String {
        self.admins.join(",")
    }

    /// The admins from [`Retirement::admins_text`].
    pub fn admins_from_text(text: &str) -> Vec<String> {
        text.split(',')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()
    }

    /// Whether the shares are due for destruction at `now` and not yet
    /// destroyed.
    pub fn due(&self, now: u64) -> bool {
        self.destroyed_at.is_none() && now >= self.destroy_after
    }
}

impl fmt::Display for Retirement {
    /// "key K is retired (order 1a2b3c4d..., by alice, carol, accepted at
    /// T): it signs nothing more; its shares are destroyed at or after D"
    /// (or "were destroyed at X").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} is retired (order {}, by {}, accepted at {}): it signs nothing more; ",
            self.key_id,
            hex::encode(&self.order_id[..8]),
            self.admins.join(", "),
            self.accepted_at
        )?;
        match self.destroyed_at {
            Some(at) => write!(f, "its shares were destroyed at {at}"),
            None => write!(
                f,
                "its shares are destroyed at or after {}",
                self.destroy_after
            ),
        }
    }
}

/// Why a retirement order is refused. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetireRefused {
    /// The order is a valid order of another action.
    #[error("the order is a {0} order, not a retirement")]
    NotARetirement(&'static str),
    #[error(transparent)]
    Order(#[from] OrderRefused),
}

impl RetireRefused {
    /// INVALID_ARGUMENT for an order of another action; otherwise the
    /// order rule's code ([`OrderRefused::grpc_code`]).
    pub fn grpc_code(&self) -> i32 {
        match self {
            RetireRefused::NotARetirement(_) => 3,
            RetireRefused::Order(e) => e.grpc_code(),
        }
    }
}

/// The retirement `signed` orders, if it is a retirement that passes every
/// rule of [`check_order`] under `policy` at `now`; accepted at `now`.
pub fn check_retire(
    policy: &Policy,
    signed: &SignedOrder,
    now: u64,
) -> Result<Retirement, RetireRefused> {
    let Action::Retire { destroy_after } = signed.order.action else {
        return Err(RetireRefused::NotARetirement(signed.order.action.name()));
    };
    let admins = check_order(policy, signed, now)?;
    Ok(Retirement {
        key_id: signed.order.key_id.clone(),
        order_id: signed.order.id(),
        destroy_after,
        admins,
        accepted_at: now,
        destroyed_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_order::KeyOrder;
    use crate::key_order::tests::{NOW, sign};
    use crate::policy::tests::{HOT, keys, policy_text};

    const ADMINS: &str =
        "\n[governance]\nadmins = [\"alice\", \"carol\", \"erin\"]\nadmin_quorum = 2\n";

    fn order(action: Action) -> KeyOrder {
        KeyOrder {
            key_id: KeyId::parse("hot-1").unwrap(),
            action,
            expires_at: NOW + 600,
        }
    }

    #[test]
    fn a_quorum_retires_and_other_orders_are_not_retirements() {
        let keys = keys();
        let policy =
            Policy::from_bytes(policy_text(&keys, &format!("{HOT}{ADMINS}")).as_bytes()).unwrap();
        let retire = order(Action::Retire {
            destroy_after: NOW + 30,
        });
        let signed = |o: &KeyOrder, who: &[&str]| SignedOrder {
            order: o.clone(),
            signatures: who.iter().map(|w| sign(&keys, w, o, NOW)).collect(),
        };
        let r = check_retire(&policy, &signed(&retire, &["carol", "alice"]), NOW).unwrap();
        assert_eq!(r.key_id, "hot-1");
        assert_eq!(r.order_id, retire.id());
        assert_eq!(r.destroy_after, NOW + 30);
        assert_eq!(r.admins, vec!["alice".to_string(), "carol".to_string()]);
        assert_eq!((r.accepted_at, r.destroyed_at), (NOW, None));
        assert!(!r.due(NOW + 29));
        assert!(r.due(NOW + 30));
        let text = r.to_string();
        assert!(text.contains("key hot-1 is retired"), "{text}");
        assert!(text.contains("at or after"), "{text}");
        assert!(
            Retirement {
                destroyed_at: Some(NOW + 31),
                ..r.clone()
            }
            .to_string()
            .contains("were destroyed at")
        );
        assert!(
            !Retirement {
                destroyed_at: Some(NOW + 31),
                ..r
            }
            .due(NOW + 40)
        );

        let one = check_retire(&policy, &signed(&retire, &["alice"]), NOW).unwrap_err();
        assert_eq!(
            one,
            RetireRefused::Order(OrderRefused::QuorumNotMet { have: 1, need: 2 })
        );
        assert_eq!(one.grpc_code(), 9);
        let bob = check_retire(&policy, &signed(&retire, &["alice", "bob"]), NOW).unwrap_err();
        assert_eq!(bob.grpc_code(), 7);
        let repair = order(Action::Repair {
            identifier: 1,
            recipient: vec![2; 33],
            helpers: [(2, vec![3; 33])].into_iter().collect(),
        });
        let err = check_retire(&policy, &signed(&repair, &["alice", "carol"]), NOW).unwrap_err();
        assert_eq!(err, RetireRefused::NotARetirement("repair"));
        assert_eq!(err.grpc_code(), 3);
    }
}
