//! `ringi keygen`, `ringi keys`, `ringi pubkey`: the coordinator's keys.

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::key_service_client::KeyServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::{CliError, Output, json};

/// `ringi keygen`: runs a DKG, showing each step; prints the group key.
pub async fn keygen(
    channel: Channel,
    key_id: String,
    threshold: u32,
    signers: Vec<String>,
) -> Result<(), CliError> {
    let n = signers.len();
    let mut stream = KeyServiceClient::new(channel)
        .create_key(pb::CreateKeyRequest {
            key_id: key_id.clone(),
            threshold,
            signers,
        })
        .await?
        .into_inner();
    eprintln!("ringi: DKG for key {key_id:?}, {threshold}-of-{n}");
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
            Some(pb::create_key_event::Event::Created(key)) => {
                eprintln!("ringi: key {key_id:?} created; group public key:");
                println!("{}", hex::encode(key.group_public_key));
                return Ok(());
            }
            None => {}
        }
    }
    Err(CliError::Status {
        code: tonic::Code::Unknown,
        message: "the coordinator ended the DKG stream without a result".into(),
    })
}

#[derive(Serialize)]
struct KeyJson {
    key_id: String,
    threshold: u32,
    signers: Vec<SignerJson>,
    group_public_key: String,
    created_at: i64,
}

#[derive(Serialize)]
struct SignerJson {
    name: String,
    identifier: u32,
}

impl From<pb::PublicKey> for KeyJson {
    fn from(k: pb::PublicKey) -> Self {
        KeyJson {
            key_id: k.key_id,
            threshold: k.threshold,
            signers: k
                .signers
                .into_iter()
                .map(|s| SignerJson {
                    name: s.name,
                    identifier: s.identifier,
                })
                .collect(),
            group_public_key: hex::encode(k.group_public_key),
            created_at: k.created_at,
        }
    }
}

/// `ringi pubkey`: prints the group public key (hex, SEC1 compressed).
pub async fn pubkey(channel: Channel, key_id: String, output: Output) -> Result<(), CliError> {
    let key = KeyServiceClient::new(channel)
        .get_public_key(pb::GetPublicKeyRequest { key_id })
        .await?
        .into_inner()
        .key
        .ok_or_else(|| CliError::Status {
            code: tonic::Code::Internal,
            message: "the coordinator returned no key".into(),
        })?;
    match output {
        Output::Text => println!("{}", hex::encode(&key.group_public_key)),
        Output::Json => println!("{}", json(&KeyJson::from(key))),
    }
    Ok(())
}

/// `ringi keys`: lists every key.
pub async fn keys(channel: Channel, output: Output) -> Result<(), CliError> {
    let keys = KeyServiceClient::new(channel)
        .list_keys(pb::ListKeysRequest {})
        .await?
        .into_inner()
        .keys;
    match output {
        Output::Text => {
            for k in keys {
                let names: Vec<String> = k.signers.iter().map(|s| s.name.clone()).collect();
                println!(
                    "{}\t{}-of-{}\t{}\t{}",
                    k.key_id,
                    k.threshold,
                    k.signers.len(),
                    names.join(","),
                    hex::encode(&k.group_public_key)
                );
            }
        }
        Output::Json => {
            let list: Vec<KeyJson> = keys.into_iter().map(KeyJson::from).collect();
            println!("{}", json(&list));
        }
    }
    Ok(())
}
