//! Retiring a key on the coordinator (`KeyService.RetireKey`).
//!
//! The signers enforce a retirement: each gets the admins' order directly
//! (`ringi keys retire` sends it to them), refuses every round of the key
//! from then on and destroys its shares after the grace period
//! (`signer/src/retirement.rs`). The coordinator checks the same order
//! against its own policy ([`check_retire`]) and records it so it takes
//! no new request for the key ([`crate::requests::submit`]), runs no
//! refresh of it, and shows the key as retired. After `destroy_after` it
//! watches the key's signers until none of them lists a share of the key
//! ([`confirm_destructions`]), then records and audits it: the
//! coordinator's trail says when the key was gone everywhere.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use prost::Message;
use ringi_policy::holds::Retired;
use ringi_policy::key_id::KeyId;
use ringi_policy::retirement::{Retirement, check_retire};
use ringi_proto::approval::v1 as apb;
use ringi_proto::signer::v1 as spb;

use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::store::{KeyRecord, blocking};

/// How often the coordinator looks for retired keys whose shares should be
/// gone, and asks their signers.
pub const CONFIRM_INTERVAL: Duration = Duration::from_secs(2);

/// A retirement as recorded, with the key.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub record: KeyRecord,
    /// The retirement in force: this order's, or an earlier one's.
    pub retirement: Retirement,
    /// True if the key was retired before (nothing changed).
    pub already: bool,
}

/// Checks a retirement order against the coordinator's policy and records
/// it (see the module documentation and `coordinator.proto`).
pub async fn retire(c: &Arc<Coordinator>, wire: &apb::KeyOrder) -> Result<Recorded> {
    let signed = ringi_proto::key_order::order_from_pb(wire).map_err(|e| Error::InvalidInput {
        field: "order",
        reason: e.0,
    })?;
    let key_id = signed.order.key_id.clone();
    let record = {
        let store = c.keys.clone();
        let id = key_id.clone();
        blocking(move || store.key(&id)).await?
    };
    let existing = {
        let store = c.keys.clone();
        let id = key_id.clone();
        blocking(move || store.key_retirement(&id)).await?
    };
    // The very order accepted before: in force, whatever its expiry now.
    if let Some(first) = existing
        && first.order_id == signed.order.id()
        && matches!(
            signed.order.action,
            ringi_policy::key_order::Action::Retire { .. }
        )
    {
        return Ok(Recorded {
            record,
            retirement: first,
            already: true,
        });
    }
    let now = ringi_policy::clock::now();
    let retirement = check_retire(c.policy()?.as_ref(), &signed, now)?;
    let store = c.keys.clone();
    let bytes = wire.encode_to_vec();
    let candidate = retirement.clone();
    let outcome = blocking(move || store.retire_key(&candidate, &bytes)).await?;
    Ok(match outcome {
        Retired::New => Recorded {
            record,
            retirement,
            already: false,
        },
        Retired::Already(first) => Recorded {
            record,
            retirement: *first,
            already: true,
        },
    })
}

/// The refusal of a new operation on `key_id` if it is retired.
pub fn refuse_if_retired(retirement: Option<Retirement>) -> Result<()> {
    match retirement {
        Some(r) => Err(Error::KeyRetired(Box::new(r))),
        None => Ok(()),
    }
}

/// What the key's signers said about its shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Every signer of the key answered and none lists a share of it.
    Gone,
    /// Some still hold one, or did not answer (named, with why).
    Waiting(Vec<String>),
}

/// Whether every signer of `record` answered GetNodeInfo without a share
/// of the key.
pub async fn standing(c: &Coordinator, record: &KeyRecord) -> Standing {
    let answers = join_all(record.signers.iter().map(|(name, _)| async move {
        let Some(signer) = c.registry.get(name) else {
            return Some(format!("{name}: not in the registry"));
        };
        let mut client = signer.client.clone();
        match client.get_node_info(spb::GetNodeInfoRequest {}).await {
            Err(status) => Some(format!("{name}: unreachable ({:?})", status.code())),
            Ok(info) => info
                .into_inner()
                .key_shares
                .iter()
                .any(|k| k.key_id == record.key_id.as_str())
                .then(|| format!("{name}: still holds a share")),
        }
    }))
    .await;
    let waiting: Vec<String> = answers.into_iter().flatten().collect();
    if waiting.is_empty() {
        Standing::Gone
    } else {
        Standing::Waiting(waiting)
    }
}

/// For every retired key past its `destroy_after` whose destruction is not
/// recorded yet: asks its signers, and records and audits
/// (`key_shares_destroyed`) once none holds a share. Returns the keys
/// recorded now.
pub async fn confirm_destructions(c: &Coordinator, now: u64) -> Result<Vec<KeyId>> {
    let store = c.keys.clone();
    let due: Vec<Retirement> = blocking(move || store.key_retirements())
        .await?
        .into_iter()
        .filter(|r| r.due(now))
        .collect();
    let mut confirmed = Vec::new();
    for retirement in due {
        let store = c.keys.clone();
        let id = retirement.key_id.clone();
        let record = blocking(move || store.key(&id)).await?;
        match standing(c, &record).await {
            Standing::Waiting(why) => {
                tracing::debug!(key_id = %record.key_id, waiting = ?why, "retired key: shares not yet gone everywhere");
            }
            Standing::Gone => {
                let store = c.keys.clone();
                let id = retirement.key_id.clone();
                let at = ringi_policy::clock::now();
                if blocking(move || store.mark_shares_destroyed(&id, at)).await? {
                    let signers: Vec<&str> =
                        record.signers.iter().map(|(n, _)| n.as_str()).collect();
                    c.audit(
                        "key_shares_destroyed",
                        &[
                            ("key_id", record.key_id.to_string()),
                            ("order_id", hex::encode(retirement.order_id)),
                            ("signers", signers.join(",")),
                        ],
                    );
                    tracing::warn!(key_id = %record.key_id, signers = %signers.join(","), "retired key: no signer holds a share of it any more");
                    confirmed.push(record.key_id.clone());
                }
            }
        }
    }
    Ok(confirmed)
}

/// Runs [`confirm_destructions`] every [`CONFIRM_INTERVAL`] for the life
/// of the process.
pub fn spawn(c: Arc<Coordinator>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONFIRM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = confirm_destructions(&c, ringi_policy::clock::now()).await {
                tracing::warn!(error = %e, "retired keys: confirming the destruction failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::requests::fixture::{HOT, fixture_with};
    use crate::requests::submit::{Submission, submit};
    use crate::sqlite::SqliteStore;
    use crate::store::KeyStore;
    use ringi_frost::frost_core::keys::{IdentifierList, generate_with_dealer};
    use ringi_policy::key_order::{Action, KeyOrder, SignedOrder};
    use tonic::Code;

    const ADMINS: &str =
        "\n[governance]\nadmins = [\"alice\", \"carol\", \"erin\"]\nadmin_quorum = 2\n";

    fn submission() -> Submission {
        Submission {
            key_id: KeyId::parse("hot-1").unwrap(),
            message: vec![0xab; 32],
            asset: "BTC".into(),
            amount: "1000".into(),
            destination: "bc1qexample".into(),
            memo: String::new(),
            requester: "wallet-service".into(),
            signers: Vec::new(),
            idempotency_key: "k1".into(),
            psbt: None,
        }
    }

    #[tokio::test]
    async fn a_retired_key_takes_no_request_and_the_first_retirement_stands() {
        let f = fixture_with(&format!("{HOT}{ADMINS}"));
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("ringi.sqlite3")).unwrap());
        let (_, public) = generate_with_dealer::<ringi_frost::Secp256k1, _>(
            3,
            2,
            IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        store
            .insert_key(&KeyRecord {
                group_public_key: public.verifying_key().serialize().unwrap(),
                public_key_package: public.serialize().unwrap(),
                ..crate::store::contract::key_record("hot-1")
            })
            .unwrap();
        let c = Arc::new(Coordinator::with_store(
            Registry::new(&[]).unwrap(),
            store.clone(),
            Some(Arc::new(f.policy.clone())),
        ));
        let now = ringi_policy::clock::now();
        let order = |key: &str, destroy_after| KeyOrder {
            key_id: KeyId::parse(key).unwrap(),
            action: Action::Retire { destroy_after },
            expires_at: now + 600,
        };
        let wire = |o: &KeyOrder, who: &[&str]| {
            ringi_proto::key_order::order_to_pb(&SignedOrder {
                order: o.clone(),
                signatures: who.iter().map(|w| f.order_signature(w, o, now)).collect(),
            })
        };
        let first = order("hot-1", now + 30);
        // Refused: one admin; a non-admin; an unknown key. Nothing recorded.
        let err = retire(&c, &wire(&first, &["alice"])).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let err = retire(&c, &wire(&first, &["alice", "bob"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        let err = retire(&c, &wire(&order("nope", now), &["alice", "carol"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err}");
        assert!(submit(&c, submission()).await.is_ok());

        let done = retire(&c, &wire(&first, &["alice", "carol"]))
            .await
            .unwrap();
        assert!(!done.already);
        assert_eq!(done.retirement.destroy_after, now + 30);
        let err = submit(&c, submission()).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.to_string().contains("key hot-1 is retired"), "{err}");
        // Another order: the first stands.
        let again = retire(&c, &wire(&order("hot-1", now), &["carol", "erin"]))
            .await
            .unwrap();
        assert!(again.already);
        assert_eq!(again.retirement.destroy_after, now + 30);

        // Before destroy_after nothing is asked; after it, a signer that
        // cannot be asked keeps the destruction unconfirmed.
        assert!(confirm_destructions(&c, now).await.unwrap().is_empty());
        assert!(confirm_destructions(&c, now + 30).await.unwrap().is_empty());
        let record = store.key(&KeyId::parse("hot-1").unwrap()).unwrap();
        assert!(matches!(standing(&c, &record).await, Standing::Waiting(w) if w.len() == 3));
    }
}
