//! `ringi keygen`, `ringi keys`, `ringi pubkey`: the coordinator's keys.
//!
//! A bitcoin-taproot key's internal key, output key and address are
//! recomputed here from its group key ([`crate::view::key_from_pb`]): a
//! coordinator that shows another address than its key's is refused, so an
//! operator never funds an address the signers cannot spend from.

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::key_service_client::KeyServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::view::{self, KeyView};
use crate::{CliError, Output, json};

/// `ringi keygen`: runs a DKG for a key of `kind` ("" for frost-secp256k1),
/// showing each step; prints the group key (and, on stderr, a Taproot
/// key's output key and address).
pub async fn keygen(
    channel: Channel,
    key_id: String,
    threshold: u32,
    signers: Vec<String>,
    kind: String,
) -> Result<(), CliError> {
    let n = signers.len();
    let mut stream = KeyServiceClient::new(channel)
        .create_key(pb::CreateKeyRequest {
            key_id: key_id.clone(),
            threshold,
            signers,
            kind: kind.clone(),
        })
        .await?
        .into_inner();
    let shown_kind = if kind.is_empty() {
        "frost-secp256k1"
    } else {
        kind.as_str()
    };
    eprintln!("ringi: DKG for {shown_kind} key {key_id:?}, {threshold}-of-{n}");
    let key = follow_steps(&mut stream, "DKG").await?;
    let checked = view::key_from_pb(&key)?;
    eprintln!(
        "ringi: {} key {key_id:?} created; group public key:",
        checked.kind
    );
    if let Some(t) = &checked.taproot {
        eprintln!("ringi: output key {}", hex::encode(t.output_key));
        match t.address() {
            Some(address) => eprintln!("ringi: address {address}"),
            None => eprintln!(
                "ringi: the policy sets no network for this key: no address, and no PSBT request until it does"
            ),
        }
    }
    println!("{}", hex::encode(key.group_public_key));
    Ok(())
}

/// Shows a key operation's steps as the coordinator streams them; returns
/// the key its last event carries.
async fn follow_steps(
    stream: &mut tonic::Streaming<pb::CreateKeyEvent>,
    what: &str,
) -> Result<pb::PublicKey, CliError> {
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(pb::create_key_event::Event::StepStarted(s)) => {
                eprintln!("  [{}/{}] {} ...", s.step, s.total_steps, s.description);
            }
            Some(pb::create_key_event::Event::StepFinished(s)) => {
                eprintln!(
                    "  [{}/{}] done in {} ms",
                    s.step, s.total_steps, s.elapsed_ms
                );
            }
            Some(pb::create_key_event::Event::Created(key)) => return Ok(key),
            None => {}
        }
    }
    Err(CliError::Status {
        code: tonic::Code::Unknown,
        message: format!("the coordinator ended the {what} stream without a result"),
    })
}

/// `ringi keys refresh KEY_ID [--order FILE]`: refreshes the key's
/// shares, showing each step; prints the group key (unchanged) when every
/// signer uses its refreshed share. `order`: the admins' signed refresh
/// order, for a key whose rules set `refresh_needs_order`.
pub async fn refresh(
    channel: Channel,
    key_id: String,
    order: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let order = match order {
        Some(path) => {
            let signed = crate::key_order::read(path)?;
            if signed.order.key_id.as_str() != key_id {
                return Err(CliError::Usage(format!(
                    "{} is an order for key {}, not {key_id}",
                    path.display(),
                    signed.order.key_id
                )));
            }
            Some(ringi_proto::key_order::order_to_pb(&signed))
        }
        None => None,
    };
    let before = fetch(channel.clone(), &key_id).await?.0;
    let mut stream = KeyServiceClient::new(channel)
        .refresh_key(pb::RefreshKeyRequest {
            key_id: key_id.clone(),
            order,
        })
        .await?
        .into_inner();
    eprintln!(
        "ringi: refreshing the shares of key {key_id:?} ({} signers)",
        before.signers.len()
    );
    let key = follow_steps(&mut stream, "refresh").await?;
    if key.group_public_key != before.group_public_key {
        return Err(CliError::Status {
            code: tonic::Code::Internal,
            message: format!(
                "the coordinator reports group key {} after the refresh, not the key's {}",
                hex::encode(&key.group_public_key),
                hex::encode(&before.group_public_key)
            ),
        });
    }
    eprintln!(
        "ringi: key {key_id:?} refreshed: every signer uses its new share, the old shares are destroyed; group public key unchanged:"
    );
    println!("{}", hex::encode(key.group_public_key));
    Ok(())
}

/// `ringi keys import-from-signers KEY_ID`: re-registers the key from its
/// signers; says which signers vouched for it and why the others did not;
/// prints the group key.
pub async fn import_from_signers(channel: Channel, key_id: String) -> Result<(), CliError> {
    let answer = KeyServiceClient::new(channel)
        .import_key(pb::ImportKeyRequest {
            key_id: key_id.clone(),
        })
        .await?
        .into_inner();
    let key = answer.key.ok_or_else(|| CliError::Status {
        code: tonic::Code::Internal,
        message: "the coordinator answered the import without the key".into(),
    })?;
    let checked = view::key_from_pb(&key)?;
    eprintln!(
        "ringi: {} key {key_id:?} ({}-of-{}) imported; vouched for by {}",
        checked.kind,
        key.threshold,
        key.signers.len(),
        answer.agreeing_signers.join(", ")
    );
    for other in &answer.other_signers {
        eprintln!("ringi:   not counted: {}", view::printable(other));
    }
    println!("{}", hex::encode(key.group_public_key));
    Ok(())
}

#[derive(Serialize)]
struct KeyJson {
    key_id: String,
    kind: String,
    threshold: u32,
    signers: Vec<SignerJson>,
    group_public_key: String,
    /// bitcoin-taproot keys: x-only, hex (empty otherwise).
    internal_key: String,
    output_key: String,
    /// bitcoin-taproot keys with a network in the policy (empty otherwise).
    network: String,
    address: String,
    created_at: i64,
    /// Retirement: when the coordinator accepted it (0: in service), when
    /// the shares are destroyed, and when no signer held one any more (0:
    /// not seen yet).
    retired_at: u64,
    destroy_after: u64,
    shares_destroyed_at: u64,
    /// Hex; empty for a key in service.
    retirement_order_id: String,
    retired_by: Vec<String>,
}

/// A key's state in words: "active", or its retirement and how far the
/// destruction of its shares is.
pub fn status_text(k: &pb::PublicKey) -> String {
    if k.retired_at == 0 {
        return "active".into();
    }
    if k.shares_destroyed_at != 0 {
        return format!(
            "retired at {}, shares destroyed on every signer by {}",
            crate::view::rfc3339(k.retired_at),
            crate::view::rfc3339(k.shares_destroyed_at)
        );
    }
    format!(
        "retired at {}, shares destroyed at or after {}",
        crate::view::rfc3339(k.retired_at),
        crate::view::rfc3339(k.destroy_after)
    )
}

#[derive(Serialize)]
struct SignerJson {
    name: String,
    identifier: u32,
}

fn key_json(k: &pb::PublicKey, checked: &KeyView) -> KeyJson {
    let taproot = checked.taproot.as_ref();
    KeyJson {
        key_id: k.key_id.clone(),
        kind: checked.kind.to_string(),
        threshold: k.threshold,
        signers: k
            .signers
            .iter()
            .map(|s| SignerJson {
                name: s.name.clone(),
                identifier: s.identifier,
            })
            .collect(),
        group_public_key: hex::encode(&k.group_public_key),
        internal_key: taproot
            .map(|t| hex::encode(t.internal_key))
            .unwrap_or_default(),
        output_key: taproot
            .map(|t| hex::encode(t.output_key))
            .unwrap_or_default(),
        network: taproot
            .and_then(|t| t.network)
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        address: taproot.and_then(|t| t.address()).unwrap_or_default(),
        created_at: k.created_at,
        retired_at: k.retired_at,
        destroy_after: k.destroy_after,
        shares_destroyed_at: k.shares_destroyed_at,
        retirement_order_id: hex::encode(&k.retirement_order_id),
        retired_by: k.retired_by.clone(),
    }
}

/// The key `key_id`, as the coordinator shows it, checked.
pub async fn fetch(channel: Channel, key_id: &str) -> Result<(pb::PublicKey, KeyView), CliError> {
    let key = KeyServiceClient::new(channel)
        .get_public_key(pb::GetPublicKeyRequest {
            key_id: key_id.to_string(),
        })
        .await?
        .into_inner()
        .key
        .ok_or_else(|| CliError::Status {
            code: tonic::Code::Internal,
            message: "the coordinator returned no key".into(),
        })?;
    let checked = view::key_from_pb(&key)?;
    if checked.key_id != key_id {
        return Err(CliError::Usage(format!(
            "asked for key {key_id}, the coordinator returned key {}; refusing it",
            view::printable(&checked.key_id)
        )));
    }
    Ok((key, checked))
}

/// `ringi pubkey`: prints the group public key (hex, SEC1 compressed); for
/// a bitcoin-taproot key, then its kind, internal and output keys (x-only),
/// network and P2TR address, one per line.
pub async fn pubkey(channel: Channel, key_id: String, output: Output) -> Result<(), CliError> {
    let (key, checked) = fetch(channel, &key_id).await?;
    match output {
        Output::Text => {
            println!("{}", hex::encode(&key.group_public_key));
            if let Some(t) = &checked.taproot {
                println!("kind          {}", checked.kind);
                println!("internal key  {}", hex::encode(t.internal_key));
                println!("output key    {}", hex::encode(t.output_key));
                match (t.network, t.address()) {
                    (Some(network), Some(address)) => {
                        println!("network       {}", network.as_str());
                        println!("address       {address}");
                    }
                    _ => println!("network       (none in the policy: no PSBT requests)"),
                }
            }
            if key.retired_at != 0 {
                println!("status        {}", status_text(&key));
            }
        }
        Output::Json => println!("{}", json(&key_json(&key, &checked))),
    }
    Ok(())
}

/// `ringi keys`: lists every key, one a line: key id, t-of-n, signers,
/// group key, kind, for a bitcoin-taproot key its output key and address
/// (`-` otherwise, or without a network), and its status ("active", or
/// retired: [`status_text`]).
pub async fn keys(channel: Channel, output: Output) -> Result<(), CliError> {
    let keys = KeyServiceClient::new(channel)
        .list_keys(pb::ListKeysRequest {})
        .await?
        .into_inner()
        .keys;
    let checked = keys
        .iter()
        .map(view::key_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    match output {
        Output::Text => {
            for (k, c) in keys.iter().zip(&checked) {
                let names: Vec<String> = k.signers.iter().map(|s| s.name.clone()).collect();
                let taproot = c.taproot.as_ref();
                let output_key = taproot
                    .map(|t| hex::encode(t.output_key))
                    .unwrap_or_else(|| "-".into());
                let address = taproot
                    .and_then(|t| t.address())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}-of-{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    view::printable(&k.key_id),
                    k.threshold,
                    k.signers.len(),
                    view::printable(&names.join(",")),
                    hex::encode(&k.group_public_key),
                    c.kind,
                    output_key,
                    address,
                    status_text(k)
                );
            }
        }
        Output::Json => {
            let list: Vec<KeyJson> = keys
                .iter()
                .zip(&checked)
                .map(|(k, c)| key_json(k, c))
                .collect();
            println!("{}", json(&list));
        }
    }
    Ok(())
}
