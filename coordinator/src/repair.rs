//! Repairing a lost share and replacing its node (`ringi keys repair`):
//! `t` of the key's signers help rebuild participant `i`'s share for a new
//! node (frost `keys::repairable`; the signer's `repair.rs`), which then
//! takes over identifier `i` in the key's record; the old node's name is no
//! longer a signer of the key.
//!
//! The coordinator relays sealed envelopes and learns nothing; what it may
//! do is bounded by the admins' repair order, which every node checks
//! itself: the key, the participant and the new node's transport key. The
//! coordinator adds what only it knows: the new node must not already be a
//! signer of the key under another identifier (one node with two shares
//! could sign alone where the threshold is two).
//!
//! Steps: (1) node info: the new node's transport key is the order's, and
//! it holds no share of the key; the first `t` reachable signers of the
//! key (other than `i`) that hold it are the helpers; (2) RepairHelp on each
//! helper, deltas routed to their helpers; (3) RepairCombine, sigmas
//! relayed to the new node; (4) RepairReceive on the new node; (5) the
//! record names the new node for identifier `i`. A failure before (4) stores
//! nothing anywhere; (4) is all or nothing on the new node.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use rand::RngCore;
use ringi_policy::key_order::{Action, SignedOrder};
use ringi_proto::signer::v1 as pb;

use crate::error::{Error, LifecycleError, Result, SignerFailure, SignerFailures};
use crate::registry::{Registry, Signer};
use crate::store::{KeyRecord, KeyStore, blocking};
use crate::transport_keys;

/// What to repair, as the admin asks.
pub struct RepairRequest {
    pub order: SignedOrder,
    /// The registry name of the node that receives the share.
    pub signer: String,
}

/// What a repair did.
#[derive(Debug, Clone)]
pub struct Repaired {
    pub record: KeyRecord,
    pub identifier: u16,
    /// The name that held the identifier before (the replaced node).
    pub replaced: String,
    pub helpers: Vec<String>,
}

/// Checks the request against the key's record and the registry (pure):
/// a repair order of a participant of the key; the new node is in the
/// registry under that identifier and is not a signer of the key under
/// another one; the order's helpers are other signers of the key in the
/// registry, at least the threshold. Returns (participant, name that held
/// it, new node, the helpers in identifier order).
pub fn check(
    record: &KeyRecord,
    registry: &Registry,
    req: &RepairRequest,
) -> std::result::Result<(u16, String, Signer, Vec<Signer>), String> {
    let Action::Repair {
        identifier,
        helpers: ordered,
        ..
    } = &req.order.order.action
    else {
        return Err(format!(
            "the order is a {} order, not a repair",
            req.order.order.action.name()
        ));
    };
    let identifier = *identifier;
    let replaced = record
        .signers
        .iter()
        .find(|(_, id)| *id == identifier)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| format!("the key has no participant {identifier}"))?;
    let recipient = registry.get(&req.signer).ok_or_else(|| {
        format!(
            "signer {:?} is not in the coordinator's registry",
            req.signer
        )
    })?;
    if recipient.identifier != identifier {
        return Err(format!(
            "signer {} has identifier {} in the registry; to take over participant {identifier} it must be registered with identifier {identifier}",
            recipient.name, recipient.identifier
        ));
    }
    if let Some((_, other)) = record
        .signers
        .iter()
        .find(|(name, id)| *name == req.signer && *id != identifier)
    {
        return Err(format!(
            "signer {} already holds participant {other} of the key: one node must not hold two shares",
            req.signer
        ));
    }
    let mut helpers = Vec::new();
    for id in ordered.keys() {
        let (name, _) = record
            .signers
            .iter()
            .find(|(_, held)| held == id)
            .ok_or_else(|| format!("the order's helper {id} is no participant of the key"))?;
        match registry.get(name) {
            Some(s) if s.identifier == *id => helpers.push(s.clone()),
            _ => {
                return Err(format!(
                    "the order's helper {id} ({name}) is not in the registry under identifier {id}"
                ));
            }
        }
    }
    if helpers.len() < usize::from(record.threshold) {
        return Err(format!(
            "a repair needs {} helpers (the key's threshold), the order names {}",
            record.threshold,
            helpers.len()
        ));
    }
    Ok((identifier, replaced, recipient.clone(), helpers))
}

/// Runs the repair and records the new node for the identifier.
pub async fn run(
    registry: &Registry,
    store: &Arc<dyn KeyStore>,
    req: RepairRequest,
) -> Result<Repaired> {
    let key_id = req.order.order.key_id.clone();
    let record = {
        let store = store.clone();
        let id = key_id.clone();
        blocking(move || store.key(&id)).await?
    };
    let mismatch = |reason: String| -> Error {
        LifecycleError::Mismatch {
            key: key_id.clone(),
            reason,
        }
        .into()
    };
    let (identifier, replaced, recipient, candidates) =
        check(&record, registry, &req).map_err(mismatch)?;
    let order_pb = ringi_proto::key_order::order_to_pb(&req.order);

    // 1. Node info: the recipient, and the helpers that hold the key.
    let mut recipient_client = recipient.client.clone();
    let info = recipient_client
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .map_err(|status| {
            Error::from(LifecycleError::RepairFailed {
                key: key_id.clone(),
                failures: one_failure(&recipient.name, &status),
            })
        })?
        .into_inner();
    if let Some(held) = info.key_shares.iter().find(|k| k.key_id == key_id.as_str()) {
        let repaired_before = held.identifier == u32::from(identifier)
            && held.group_public_key == record.group_public_key
            && held.public_key_package == record.public_key_package;
        if !repaired_before || replaced == recipient.name {
            return Err(mismatch(format!(
                "{} holds a share of the key already",
                recipient.name
            )));
        }
        // A repair that stopped after the new node stored its share: only
        // the record is left to do.
        tracing::info!(key_id = %key_id, signer = %recipient.name, "the new node holds the repaired share already; recording it");
        return record_new_node(
            store,
            record,
            identifier,
            replaced,
            &recipient.name,
            Vec::new(),
        )
        .await;
    }
    // The recipient and the helpers by the keys the order names (on the
    // repair's one curve, `crate::transport_keys`); a recipient without
    // the ordered key is named by its preferred one, for it to refuse.
    let (ordered_recipient, ordered_keys) = match &req.order.order.action {
        Action::Repair {
            recipient, helpers, ..
        } => (recipient.clone(), helpers.clone()),
        _ => (Vec::new(), BTreeMap::new()),
    };
    let recipient_pb = transport_keys::participant_with_key(identifier, &info, &ordered_recipient)
        .unwrap_or_else(|| pb::DkgParticipant {
            identifier: u32::from(identifier),
            dkg_public_key: info.dkg_public_key.clone(),
            dkg_key_certificate: info.dkg_key_certificate.clone(),
            dkg_key_signature: info.dkg_key_signature.clone(),
        });
    let infos = join_all(candidates.iter().map(|s| {
        let mut client = s.client.clone();
        async move { client.get_node_info(pb::GetNodeInfoRequest {}).await }
    }))
    .await;
    let mut helpers = Vec::new();
    let mut failures = SignerFailures::default();
    for (signer, info) in candidates.iter().zip(infos) {
        match info {
            Ok(info) => {
                let info = info.into_inner();
                let Some(participant) = ordered_keys.get(&signer.identifier).and_then(|key| {
                    transport_keys::participant_with_key(signer.identifier, &info, key)
                }) else {
                    return Err(mismatch(format!(
                        "helper {}'s transport keys ({}) do not include the one the order names",
                        signer.name,
                        transport_keys::offered(&info)
                            .iter()
                            .map(|(key, _)| hex::encode(key))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                let holds = info.key_shares.iter().any(|k| {
                    k.key_id == key_id.as_str()
                        && k.identifier == u32::from(signer.identifier)
                        && k.group_public_key == record.group_public_key
                });
                if holds {
                    helpers.push((signer.clone(), participant));
                } else {
                    failures.push(SignerFailure::status(
                        &signer.name,
                        &tonic::Status::not_found("holds no share of the key under its identifier"),
                    ));
                }
            }
            Err(status) => failures.push(SignerFailure::status(&signer.name, &status)),
        }
    }
    if !failures.is_empty() {
        return Err(LifecycleError::RepairFailed {
            key: key_id.clone(),
            failures,
        }
        .into());
    }
    let participants: Vec<pb::DkgParticipant> = helpers.iter().map(|(_, p)| p.clone()).collect();
    let mut session_id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_id);

    // 2. Deltas, routed helper to helper.
    let sealed = on_helpers(&key_id, &helpers, |(mut client, _)| {
        let req = pb::RepairHelpRequest {
            order: Some(order_pb.clone()),
            session_id: session_id.clone(),
            helpers: participants.clone(),
            recipient: Some(recipient_pb.clone()),
        };
        async move { Ok(client.repair_help(req).await?.into_inner().sealed_deltas) }
    })
    .await?;
    let mut inbox: BTreeMap<u32, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for ((sender, _), deltas) in helpers.iter().zip(sealed) {
        for (to, delta) in deltas {
            inbox
                .entry(to)
                .or_default()
                .insert(u32::from(sender.identifier), delta);
        }
    }

    // 3. Sigmas, sealed to the recipient.
    let sigmas = on_helpers(&key_id, &helpers, |(mut client, id)| {
        let req = pb::RepairCombineRequest {
            key_id: key_id.to_string(),
            session_id: session_id.clone(),
            sealed_deltas: inbox.get(&u32::from(id)).cloned().unwrap_or_default(),
        };
        async move { Ok(client.repair_combine(req).await?.into_inner().sealed_sigma) }
    })
    .await?;
    let sealed_sigmas: BTreeMap<u32, Vec<u8>> = helpers
        .iter()
        .map(|(s, _)| u32::from(s.identifier))
        .zip(sigmas)
        .collect();

    // 4. The recipient rebuilds and stores its share.
    let share = recipient_client
        .repair_receive(pb::RepairReceiveRequest {
            order: Some(order_pb.clone()),
            session_id: session_id.clone(),
            helpers: participants.clone(),
            public_key_package: record.public_key_package.clone(),
            sealed_sigmas,
            kind: record.kind.as_str().to_string(),
        })
        .await
        .map_err(|status| {
            Error::from(LifecycleError::RepairFailed {
                key: key_id.clone(),
                failures: one_failure(&recipient.name, &status),
            })
        })?
        .into_inner()
        .share
        .unwrap_or_default();
    if share.group_public_key != record.group_public_key
        || share.identifier != u32::from(identifier)
    {
        return Err(LifecycleError::BadResult {
            key: key_id.clone(),
            reason: format!(
                "{} reports participant {} of group key {} after the repair",
                recipient.name,
                share.identifier,
                hex::encode(&share.group_public_key)
            ),
        }
        .into());
    }

    // 5. The record names the new node.
    let helper_names = helpers.iter().map(|(s, _)| s.name.clone()).collect();
    record_new_node(
        store,
        record,
        identifier,
        replaced,
        &recipient.name,
        helper_names,
    )
    .await
}

/// Names `new_node` as participant `identifier` in the key's record.
async fn record_new_node(
    store: &Arc<dyn KeyStore>,
    mut record: KeyRecord,
    identifier: u16,
    replaced: String,
    new_node: &str,
    helpers: Vec<String>,
) -> Result<Repaired> {
    {
        let store = store.clone();
        let id = record.key_id.clone();
        let name = new_node.to_string();
        blocking(move || store.replace_key_signer(&id, identifier, &name))
            .await
            .map_err(|e| LifecycleError::NotRecorded {
                key: record.key_id.clone(),
                reason: e.to_string(),
            })?;
    }
    for entry in &mut record.signers {
        if entry.1 == identifier {
            entry.0 = new_node.to_string();
        }
    }
    Ok(Repaired {
        record,
        identifier,
        replaced,
        helpers,
    })
}

type Client = (
    pb::signer_client::SignerClient<tonic::transport::Channel>,
    u16,
);

/// Calls `f` on every helper at once (with its client and identifier);
/// fails with every helper's error if any fails.
async fn on_helpers<T, F, Fut>(
    key_id: &ringi_policy::key_id::KeyId,
    helpers: &[(Signer, pb::DkgParticipant)],
    f: F,
) -> Result<Vec<T>>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let results = join_all(
        helpers
            .iter()
            .map(|(s, _)| f((s.client.clone(), s.identifier))),
    )
    .await;
    let mut ok = Vec::with_capacity(results.len());
    let mut failures = SignerFailures::default();
    for ((signer, _), result) in helpers.iter().zip(results) {
        match result {
            Ok(v) => ok.push(v),
            Err(status) => failures.push(SignerFailure::status(&signer.name, &status)),
        }
    }
    if failures.is_empty() {
        Ok(ok)
    } else {
        Err(LifecycleError::RepairFailed {
            key: key_id.clone(),
            failures,
        }
        .into())
    }
}

fn one_failure(name: &str, status: &tonic::Status) -> SignerFailures {
    let mut failures = SignerFailures::default();
    failures.push(SignerFailure::status(name, status));
    failures
}
