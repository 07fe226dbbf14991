//! Key orders to and from the wire (`ringi.approval.v1.KeyOrder`), as
//! `ringi_policy::key_order` types.

use ringi_policy::key_id::KeyId;
use ringi_policy::key_order::{Action, KeyOrder, SignedOrder};

use crate::approval::v1 as pb;
use crate::bundle::BundleError;
use crate::policy_update::{admin_signatures_from_pb, admin_signatures_to_pb};

pub fn order_from_pb(o: &pb::KeyOrder) -> Result<SignedOrder, BundleError> {
    let key_id = KeyId::parse(&o.key_id).map_err(|e| BundleError(format!("key_id: {e}")))?;
    let action = match o.action.as_str() {
        "retire" => Action::Retire {
            destroy_after: o.destroy_after,
        },
        "repair" => {
            let mut helpers = std::collections::BTreeMap::new();
            for h in &o.helpers {
                let id = u16::try_from(h.identifier).map_err(|_| {
                    BundleError(format!("helper identifier {} is over 65535", h.identifier))
                })?;
                if helpers.insert(id, h.transport_key.clone()).is_some() {
                    return Err(BundleError(format!("helper {id} is named twice")));
                }
            }
            Action::Repair {
                identifier: u16::try_from(o.identifier).map_err(|_| {
                    BundleError(format!("identifier {} is over 65535", o.identifier))
                })?,
                recipient: o.recipient.clone(),
                helpers,
            }
        }
        "refresh" => Action::Refresh,
        other => {
            return Err(BundleError(format!(
                "action {other:?} is not \"retire\", \"repair\" or \"refresh\""
            )));
        }
    };
    let signatures = admin_signatures_from_pb(&o.signatures)?;
    Ok(SignedOrder {
        order: KeyOrder {
            key_id,
            action,
            expires_at: o.expires_at,
        },
        signatures,
    })
}

pub fn order_to_pb(s: &SignedOrder) -> pb::KeyOrder {
    let (destroy_after, identifier, recipient, helpers) = match &s.order.action {
        Action::Retire { destroy_after } => (*destroy_after, 0, Vec::new(), Vec::new()),
        Action::Repair {
            identifier,
            recipient,
            helpers,
        } => (
            0,
            u32::from(*identifier),
            recipient.clone(),
            helpers
                .iter()
                .map(|(id, key)| pb::RepairHelper {
                    identifier: u32::from(*id),
                    transport_key: key.clone(),
                })
                .collect(),
        ),
        Action::Refresh => (0, 0, Vec::new(), Vec::new()),
    };
    pb::KeyOrder {
        key_id: s.order.key_id.to_string(),
        action: s.order.action.name().to_string(),
        destroy_after,
        identifier,
        recipient,
        expires_at: s.order.expires_at,
        signatures: admin_signatures_to_pb(&s.signatures),
        helpers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_round_trip_and_bad_fields_are_named() {
        for action in [
            Action::Retire { destroy_after: 9 },
            Action::Repair {
                identifier: 3,
                recipient: vec![2; 33],
                helpers: [(1, vec![3; 33]), (2, vec![4; 33])].into_iter().collect(),
            },
            Action::Refresh,
        ] {
            let signed = SignedOrder {
                order: KeyOrder {
                    key_id: KeyId::parse("k").unwrap(),
                    action,
                    expires_at: 5,
                },
                signatures: Vec::new(),
            };
            assert_eq!(order_from_pb(&order_to_pb(&signed)).unwrap(), signed);
        }
        let mut bad = order_to_pb(&SignedOrder {
            order: KeyOrder {
                key_id: KeyId::parse("k").unwrap(),
                action: Action::Retire { destroy_after: 1 },
                expires_at: 1,
            },
            signatures: Vec::new(),
        });
        bad.action = "burn".into();
        assert!(order_from_pb(&bad).unwrap_err().0.contains("burn"));
        bad.action = "repair".into();
        bad.identifier = 70_000;
        assert!(order_from_pb(&bad).unwrap_err().0.contains("over 65535"));
        bad.key_id = "bad key".into();
        assert!(order_from_pb(&bad).unwrap_err().0.contains("key_id"));
    }
}
