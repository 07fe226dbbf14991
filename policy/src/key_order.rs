//! Key orders: the key lifecycle operations that change who can sign, or
//! whether a key signs at all, ordered by the policy's admins. A signer
//! carries one out only when `admin_quorum` distinct admins of the policy
//! it enforces signed the very same order: a stolen coordinator (or one
//! operator) cannot retire a key, or hand a share to a node of its choice.
//!
//! ```text
//! order     = Canonical("ringi key order v1")
//!     ‖ key_id ‖ action ("retire" | "repair" | "refresh")
//!     ‖ destroy_after (u64; retire: when the shares are destroyed; else 0)
//!     ‖ identifier (u64; repair: the participant repaired; else 0)
//!     ‖ recipient (repair: the new node's DKG transport key, SEC1
//!                  compressed; else empty)
//!     ‖ expires_at (u64)
//!     [repair only:] ‖ helper count (u64)
//!                    ‖ per helper, by identifier: identifier (u64)
//!                      ‖ its DKG transport key (SEC1 compressed)
//! statement = Canonical("ringi key order signature v1")
//!     ‖ SHA-256(order) ‖ issued_at (u64) ‖ admin key (SEC1 compressed)
//! signature = ECDSA-P256-SHA256(statement), 64 bytes r ‖ s
//! ```
//!
//! Rules ([`check_order`]), all pure: the policy names admins; every
//! signature verifies and is an admin's of the policy; none is issued in
//! the future; the order has not expired (a repair, which hands a share
//! out, must be carried out while fresh; a retirement is recorded once and
//! stays); `admin_quorum` distinct admins signed. A retirement's grace
//! period (from the order to `destroy_after`) is the operator's choice.

use std::collections::BTreeSet;

use crate::approver_key::ApproverKey;
use crate::encoding::{Canonical, sha256};
use crate::evaluate::CLOCK_SKEW_SECS;
use crate::key_id::KeyId;
use crate::policy::Policy;
use crate::policy_update::AdminSignature;
use crate::transport_key::TransportCurve;

/// Longest an order may be valid for (from its signing to `expires_at`).
pub const ORDER_MAX_VALIDITY_SECS: u64 = 7 * 24 * 3600;

/// What an order tells the signers to do with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sign nothing more with the key; destroy the shares at or after
    /// `destroy_after` (seconds since the Unix epoch).
    Retire { destroy_after: u64 },
    /// Rebuild participant `identifier`'s lost share for the node whose
    /// DKG transport key is `recipient` (SEC1 compressed), with exactly
    /// the `helpers` named (identifier, DKG transport key SEC1 compressed):
    /// a helper's share is safe only if every other helper is the node
    /// that holds its identifier, which no helper can tell by itself.
    Repair {
        identifier: u16,
        recipient: Vec<u8>,
        helpers: std::collections::BTreeMap<u16, Vec<u8>>,
    },
    /// Refresh the key's shares (needed only for a key whose rules set
    /// `refresh_needs_order`).
    Refresh,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Retire { .. } => "retire",
            Action::Repair { .. } => "repair",
            Action::Refresh => "refresh",
        }
    }
}

/// The order the admins sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOrder {
    pub key_id: KeyId,
    pub action: Action,
    /// After this (seconds since the Unix epoch) the order is refused.
    pub expires_at: u64,
}

impl KeyOrder {
    /// The order's canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (destroy_after, identifier, recipient) = match &self.action {
            Action::Retire { destroy_after } => (*destroy_after, 0, &[][..]),
            Action::Repair {
                identifier,
                recipient,
                ..
            } => (0, u64::from(*identifier), recipient.as_slice()),
            Action::Refresh => (0, 0, &[][..]),
        };
        let mut c = Canonical::new("ringi key order v1")
            .str(self.key_id.as_str())
            .str(self.action.name())
            .u64(destroy_after)
            .u64(identifier)
            .bytes(recipient)
            .u64(self.expires_at);
        if let Action::Repair { helpers, .. } = &self.action {
            c = c.u64(helpers.len() as u64);
            for (id, key) in helpers {
                c = c.u64(u64::from(*id)).bytes(key);
            }
        }
        c.finish()
    }

    /// The order's id: SHA-256 of its canonical bytes.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.encode())
    }

    /// The bytes `admin` signs for this order at `issued_at`.
    pub fn signed_bytes(&self, issued_at: u64, admin: &ApproverKey) -> Vec<u8> {
        Canonical::new("ringi key order signature v1")
            .bytes(&self.id())
            .u64(issued_at)
            .bytes(&admin.to_sec1())
            .finish()
    }
}

/// An order with its admins' signatures, as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOrder {
    pub order: KeyOrder,
    pub signatures: Vec<AdminSignature>,
}

/// Why an order is refused. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefused {
    #[error("the policy names no admins: no key order can be given")]
    NoAdmins,
    #[error("signature #{index}: does not verify")]
    BadSignature { index: usize },
    #[error("signature #{index}: the key is not an admin of the policy")]
    NotAnAdmin { index: usize },
    #[error("signature #{index} by {admin}: issued in the future")]
    IssuedInFuture { index: usize, admin: String },
    #[error("the order expired at {expires_at}")]
    Expired { expires_at: u64 },
    #[error(
        "the order is valid until {expires_at}, more than {ORDER_MAX_VALIDITY_SECS} s after its first signature"
    )]
    TooLong { expires_at: u64 },
    #[error("admin quorum not met: {have} of {need} distinct admins signed")]
    QuorumNotMet { have: u32, need: u32 },
    #[error("a repair names participant {0}, which is not a FROST identifier (1..=65535)")]
    BadIdentifier(u16),
    #[error("a repair's recipient is not a DKG transport key (secp256k1 or P-256)")]
    BadRecipient,
    #[error("a repair's helpers: {0}")]
    BadHelpers(String),
    #[error(
        "the policy's rules for key {0} set refresh_needs_order: a refresh needs a refresh order signed by the admin quorum"
    )]
    Required(String),
    #[error("a {got} order cannot authorize a {expected}")]
    WrongAction {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the order is for key {order}, not {asked}")]
    OtherKey { order: String, asked: String },
}

impl OrderRefused {
    /// PERMISSION_DENIED for a signature that does not count;
    /// INVALID_ARGUMENT for a malformed order; FAILED_PRECONDITION for one
    /// that is not (or no longer) applicable.
    pub fn grpc_code(&self) -> i32 {
        match self {
            OrderRefused::BadSignature { .. }
            | OrderRefused::NotAnAdmin { .. }
            | OrderRefused::Required(_) => 7,
            OrderRefused::BadIdentifier(_)
            | OrderRefused::BadRecipient
            | OrderRefused::BadHelpers(_)
            | OrderRefused::WrongAction { .. }
            | OrderRefused::OtherKey { .. } => 3,
            _ => 9,
        }
    }
}

/// The admins whose signatures counted, if `signed` passes every rule at
/// `now` under `policy`.
pub fn check_order(
    policy: &Policy,
    signed: &SignedOrder,
    now: u64,
) -> Result<Vec<String>, OrderRefused> {
    let governance = policy.governance();
    if governance.admins.is_empty() {
        return Err(OrderRefused::NoAdmins);
    }
    if let Action::Repair {
        identifier,
        recipient,
        helpers,
    } = &signed.order.action
    {
        if *identifier == 0 {
            return Err(OrderRefused::BadIdentifier(*identifier));
        }
        // Every key of a repair on one curve: the helpers and the
        // recipient derive pairwise ECDH secrets.
        let Some(curve) = TransportCurve::of(recipient) else {
            return Err(OrderRefused::BadRecipient);
        };
        if helpers.is_empty() {
            return Err(OrderRefused::BadHelpers("none named".into()));
        }
        for (id, key) in helpers {
            if *id == 0 || id == identifier {
                return Err(OrderRefused::BadHelpers(format!(
                    "participant {id} cannot help repair participant {identifier}"
                )));
            }
            if TransportCurve::of(key) != Some(curve) || key == recipient {
                return Err(OrderRefused::BadHelpers(format!(
                    "helper {id}'s transport key is not a distinct {curve} key (the recipient's curve)"
                )));
            }
        }
        let distinct: BTreeSet<&Vec<u8>> = helpers.values().collect();
        if distinct.len() != helpers.len() {
            return Err(OrderRefused::BadHelpers(
                "two helpers share a transport key".into(),
            ));
        }
    }
    let mut admins = BTreeSet::new();
    let mut first_signed = u64::MAX;
    for (index, s) in signed.signatures.iter().enumerate() {
        let bytes = signed.order.signed_bytes(s.issued_at, &s.admin);
        if !s.admin.verify(&bytes, &s.signature) {
            return Err(OrderRefused::BadSignature { index });
        }
        let name = policy
            .approver(&s.admin)
            .map(|a| a.name.clone())
            .filter(|n| governance.admins.contains(n))
            .ok_or(OrderRefused::NotAnAdmin { index })?;
        if s.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(OrderRefused::IssuedInFuture { index, admin: name });
        }
        first_signed = first_signed.min(s.issued_at);
        admins.insert(name);
    }
    let expires_at = signed.order.expires_at;
    if now > expires_at {
        return Err(OrderRefused::Expired { expires_at });
    }
    if expires_at.saturating_sub(first_signed) > ORDER_MAX_VALIDITY_SECS {
        return Err(OrderRefused::TooLong { expires_at });
    }
    let need = governance.admin_quorum;
    let have = admins.len() as u32;
    if have < need {
        return Err(OrderRefused::QuorumNotMet { have, need });
    }
    Ok(admins.into_iter().collect())
}

/// Whether a refresh of `key_id` may run under `policy` at `now` (pure):
/// free unless the key's rules set `refresh_needs_order`; then `order` must
/// be a refresh order for this key passing [`check_order`]. Returns the
/// admins whose signatures counted (none when no order is needed).
pub fn check_refresh(
    policy: &Policy,
    key_id: &KeyId,
    order: Option<&SignedOrder>,
    now: u64,
) -> Result<Vec<String>, OrderRefused> {
    let needed = policy.key(key_id).is_some_and(|k| k.refresh_needs_order);
    let Some(order) = order else {
        return if needed {
            Err(OrderRefused::Required(key_id.to_string()))
        } else {
            Ok(Vec::new())
        };
    };
    if order.order.action != Action::Refresh {
        return Err(OrderRefused::WrongAction {
            expected: "refresh",
            got: order.order.action.name(),
        });
    }
    if order.order.key_id != *key_id {
        return Err(OrderRefused::OtherKey {
            order: order.order.key_id.to_string(),
            asked: key_id.to_string(),
        });
    }
    check_order(policy, order, now)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::tests::{HOT, Keys, keys, policy_text};
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer;

    pub const NOW: u64 = 1_800_000_000;
    const ADMINS: &str =
        "\n[governance]\nadmins = [\"alice\", \"carol\", \"erin\"]\nadmin_quorum = 2\n";

    fn policy(keys: &Keys, governance: &str) -> Policy {
        Policy::from_bytes(policy_text(keys, &format!("{HOT}{governance}")).as_bytes()).unwrap()
    }

    pub fn sign(keys: &Keys, who: &str, order: &KeyOrder, issued_at: u64) -> AdminSignature {
        let admin = ApproverKey::parse(&keys.public(who)).unwrap();
        let sig: Signature = keys
            .secret(who)
            .sign(&order.signed_bytes(issued_at, &admin));
        AdminSignature {
            admin,
            issued_at,
            signature: sig.to_bytes().to_vec(),
        }
    }

    fn retire() -> KeyOrder {
        KeyOrder {
            key_id: KeyId::parse("hot-1").unwrap(),
            action: Action::Retire {
                destroy_after: NOW + 3600,
            },
            expires_at: NOW + 600,
        }
    }

    fn signed(keys: &Keys, order: &KeyOrder, who: &[&str]) -> SignedOrder {
        SignedOrder {
            order: order.clone(),
            signatures: who.iter().map(|w| sign(keys, w, order, NOW)).collect(),
        }
    }

    #[test]
    fn a_quorum_of_admins_orders() {
        let keys = keys();
        let p = policy(&keys, ADMINS);
        assert_eq!(
            check_order(&p, &signed(&keys, &retire(), &["alice", "erin"]), NOW),
            Ok(vec!["alice".to_string(), "erin".to_string()])
        );
    }

    #[test]
    fn each_rule_refuses_with_its_name() {
        let keys = keys();
        let p = policy(&keys, ADMINS);
        let order = retire();
        let check = |s: &SignedOrder| check_order(&p, s, NOW);
        assert_eq!(
            check(&signed(&keys, &order, &["alice", "alice"])),
            Err(OrderRefused::QuorumNotMet { have: 1, need: 2 })
        );
        assert_eq!(
            check(&signed(&keys, &order, &["alice", "bob"])),
            Err(OrderRefused::NotAnAdmin { index: 1 })
        );
        // A signature of another order does not count for this one.
        let mut other = signed(&keys, &order, &["alice", "carol"]);
        other.order.action = Action::Retire {
            destroy_after: NOW + 1,
        };
        assert_eq!(check(&other), Err(OrderRefused::BadSignature { index: 0 }));
        let mut future = signed(&keys, &order, &["alice"]);
        future
            .signatures
            .push(sign(&keys, "carol", &order, NOW + 10_000));
        assert!(matches!(
            check(&future),
            Err(OrderRefused::IssuedInFuture { index: 1, .. })
        ));
        assert_eq!(
            check_order(&p, &signed(&keys, &order, &["alice", "carol"]), NOW + 601),
            Err(OrderRefused::Expired {
                expires_at: NOW + 600
            })
        );
        let long = KeyOrder {
            expires_at: NOW + ORDER_MAX_VALIDITY_SECS + 1,
            ..order.clone()
        };
        assert!(matches!(
            check(&signed(&keys, &long, &["alice", "carol"])),
            Err(OrderRefused::TooLong { .. })
        ));
        let repair = |identifier, recipient: Vec<u8>| KeyOrder {
            action: Action::Repair {
                identifier,
                recipient,
                helpers: [
                    (2, vec![3; 33]),
                    (3, vec![2; 32].into_iter().chain([7]).collect()),
                ]
                .into_iter()
                .collect(),
            },
            ..order.clone()
        };
        assert_eq!(
            check(&signed(&keys, &repair(0, vec![2; 33]), &["alice", "carol"])),
            Err(OrderRefused::BadIdentifier(0))
        );
        assert_eq!(
            check(&signed(&keys, &repair(1, vec![4; 65]), &["alice", "carol"])),
            Err(OrderRefused::BadRecipient)
        );
        assert!(check(&signed(&keys, &repair(1, vec![2; 33]), &["alice", "carol"])).is_ok());
        assert!(matches!(
            check(&signed(&keys, &repair(2, vec![2; 33]), &["alice", "carol"])),
            Err(OrderRefused::BadHelpers(_))
        ));
        let no_helpers = KeyOrder {
            action: Action::Repair {
                identifier: 1,
                recipient: vec![2; 33],
                helpers: Default::default(),
            },
            ..order.clone()
        };
        assert!(matches!(
            check(&signed(&keys, &no_helpers, &["alice", "carol"])),
            Err(OrderRefused::BadHelpers(_))
        ));
        let no_admins = policy(&keys, "");
        assert_eq!(
            check_order(&no_admins, &signed(&keys, &order, &["alice", "carol"]), NOW),
            Err(OrderRefused::NoAdmins)
        );
    }

    #[test]
    fn a_refresh_needs_an_order_only_where_the_rules_say_so() {
        let keys = keys();
        let guarded = format!(
            "{HOT}refresh_needs_order = true\n[keys.cold-1]\nrequest_ttl_secs = 60\napproval_ttl_secs = 60\nrequire = {{ treasury = 1 }}\n{ADMINS}"
        );
        let p = Policy::from_bytes(policy_text(&keys, &guarded).as_bytes()).unwrap();
        let hot = KeyId::parse("hot-1").unwrap();
        let cold = KeyId::parse("cold-1").unwrap();
        assert_eq!(check_refresh(&p, &cold, None, NOW), Ok(vec![]));
        assert_eq!(
            check_refresh(&p, &hot, None, NOW),
            Err(OrderRefused::Required("hot-1".into()))
        );
        let order = |key_id: &KeyId, action: Action| KeyOrder {
            key_id: key_id.clone(),
            action,
            expires_at: NOW + 600,
        };
        let good = signed(&keys, &order(&hot, Action::Refresh), &["alice", "carol"]);
        assert_eq!(
            check_refresh(&p, &hot, Some(&good), NOW),
            Ok(vec!["alice".to_string(), "carol".to_string()])
        );
        let one = signed(&keys, &order(&hot, Action::Refresh), &["alice"]);
        assert_eq!(
            check_refresh(&p, &hot, Some(&one), NOW),
            Err(OrderRefused::QuorumNotMet { have: 1, need: 2 })
        );
        let other = signed(&keys, &order(&cold, Action::Refresh), &["alice", "carol"]);
        assert!(matches!(
            check_refresh(&p, &hot, Some(&other), NOW),
            Err(OrderRefused::OtherKey { .. })
        ));
        let retire = signed(&keys, &retire(), &["alice", "carol"]);
        assert!(matches!(
            check_refresh(&p, &hot, Some(&retire), NOW),
            Err(OrderRefused::WrongAction { .. })
        ));
        // Without admins, the rule cannot be set.
        let text = policy_text(&keys, &format!("{HOT}refresh_needs_order = true\n"));
        assert!(
            Policy::from_bytes(text.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("refresh_needs_order")
        );
    }

    #[test]
    fn every_field_is_bound() {
        let base = retire();
        let variants = [
            KeyOrder {
                key_id: KeyId::parse("cold-1").unwrap(),
                ..base.clone()
            },
            KeyOrder {
                expires_at: base.expires_at + 1,
                ..base.clone()
            },
            KeyOrder {
                action: Action::Retire {
                    destroy_after: NOW + 3601,
                },
                ..base.clone()
            },
            KeyOrder {
                action: Action::Repair {
                    identifier: 1,
                    recipient: vec![2; 33],
                    helpers: [(2, vec![3; 33])].into_iter().collect(),
                },
                ..base.clone()
            },
            KeyOrder {
                action: Action::Repair {
                    identifier: 1,
                    recipient: vec![2; 33],
                    helpers: [(2, vec![3; 33]), (3, vec![4; 33])].into_iter().collect(),
                },
                ..base.clone()
            },
            KeyOrder {
                action: Action::Refresh,
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.id(), base.id(), "{v:?}");
        }
    }
}
