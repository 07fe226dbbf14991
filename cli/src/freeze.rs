//! `ringi freeze`, `ringi unfreeze sign|submit`, `ringi holds`: stopping a
//! key (or every key) at every signer without the coordinator, and lifting
//! it under a quorum (`ringi_policy::freeze`).
//!
//! A freeze is one officer's statement, sent to each signer named by
//! `--signer`. Lifting it takes several people, who are rarely at one
//! terminal: each signs an unfreeze statement into a file
//! (`unfreeze sign`, JSON), and anyone delivers the files together
//! (`unfreeze submit`); each signer checks the quorum itself.

use ringi_policy::clock::now;
use ringi_policy::freeze::{Freeze, FreezeStatement, Scope, Unfreeze, UnfreezeStatement};
use ringi_proto::signer::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::connect::ClientTls;
use crate::signers::{Answers, SignerEndpoint, all_answered, ask_each, report, require, texts};

fn scope_of(key_id: Option<&str>, all: bool) -> Result<Scope, CliError> {
    match (key_id, all) {
        (Some(k), false) => Scope::parse(&format!("key:{k}")).map_err(CliError::Usage),
        (None, true) => Ok(Scope::All),
        _ => Err(CliError::Usage(
            "name what to freeze: --key-id KEY or --all".into(),
        )),
    }
}

/// Signs a freeze and delivers it to every signer; prints its id.
pub async fn freeze(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    key_id: Option<&str>,
    all: bool,
    reason: &str,
    officer: ApproverSigner,
) -> Result<(), CliError> {
    require(signers)?;
    let statement = FreezeStatement {
        scope: scope_of(key_id, all)?,
        reason: reason.to_string(),
        issued_at: now(),
    };
    let key = officer.public_key();
    let signature = officer
        .sign(&statement.signed_bytes(&key))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let freeze = Freeze {
        statement,
        officer: key,
        signature,
    };
    let wire = ringi_proto::freeze::freeze_to_pb(&freeze);
    let answers = ask_each(signers, tls, |mut client| {
        let wire = wire.clone();
        async move {
            let r = client
                .freeze(pb::FreezeRequest { freeze: Some(wire) })
                .await?
                .into_inner();
            Ok(if r.recorded {
                "frozen".to_string()
            } else {
                format!(
                    "frozen already, by freeze {} (an unfreeze must name that one)",
                    hex::encode(&r.freeze_id)
                )
            })
        }
    })
    .await;
    let id = hex::encode(freeze.id());
    println!("{id}");
    report(&format!("freeze {id}"), &texts(answers))
}

/// An unfreeze statement as a file (JSON), as one approver signed it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnfreezeFile {
    pub scope: String,
    /// Hex, 32 bytes.
    pub freeze_id: String,
    pub issued_at: u64,
    /// Hex, SEC1.
    pub approver_public_key: String,
    /// Hex, 64 bytes.
    pub signature: String,
}

impl UnfreezeFile {
    fn to_pb(&self) -> Result<pb::Unfreeze, CliError> {
        let hex = |field: &str, text: &str| {
            hex::decode(text).map_err(|e| CliError::Usage(format!("{field}: {e}")))
        };
        Ok(pb::Unfreeze {
            scope: self.scope.clone(),
            freeze_id: hex("freeze_id", &self.freeze_id)?,
            issued_at: self.issued_at,
            approver_public_key: hex("approver_public_key", &self.approver_public_key)?,
            signature: hex("signature", &self.signature)?,
        })
    }
}

/// Signs one approver's consent to lift freeze `freeze_id` of the scope;
/// prints the statement file (JSON) on stdout.
pub fn unfreeze_sign(
    key_id: Option<&str>,
    all: bool,
    freeze_id: &str,
    approver: ApproverSigner,
) -> Result<(), CliError> {
    let freeze_id: [u8; 32] = hex::decode(freeze_id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CliError::Usage("--freeze-id must be 64 hex digits".into()))?;
    let statement = UnfreezeStatement {
        freeze_id,
        scope: scope_of(key_id, all)?,
        issued_at: now(),
    };
    let key = approver.public_key();
    let signature = approver
        .sign(&statement.signed_bytes(&key))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let unfreeze = Unfreeze {
        statement,
        approver: key,
        signature,
    };
    let wire = ringi_proto::freeze::unfreeze_to_pb(&unfreeze);
    let file = UnfreezeFile {
        scope: wire.scope,
        freeze_id: hex::encode(wire.freeze_id),
        issued_at: wire.issued_at,
        approver_public_key: hex::encode(wire.approver_public_key),
        signature: hex::encode(wire.signature),
    };
    println!("{}", crate::json(&file));
    Ok(())
}

/// Delivers the unfreeze statements in `files` to every signer.
pub async fn unfreeze_submit(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    key_id: Option<&str>,
    all: bool,
    files: &[std::path::PathBuf],
) -> Result<(), CliError> {
    require(signers)?;
    let scope = scope_of(key_id, all)?;
    let mut unfreezes = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        let file: UnfreezeFile = serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!("{}: not an unfreeze file: {e}", path.display()))
        })?;
        unfreezes.push(file.to_pb()?);
    }
    let answers = ask_each(signers, tls, |mut client| {
        let request = pb::UnfreezeRequest {
            scope: scope.to_text(),
            unfreezes: unfreezes.clone(),
        };
        async move {
            let r = client.unfreeze(request).await?.into_inner();
            Ok(format!("lifted (by {})", r.approvers.join(", ")))
        }
    })
    .await;
    report(&format!("unfreeze of {}", scope.to_text()), &texts(answers))
}

/// Prints each signer's freezes in force, count of vetoed requests and
/// retired keys.
pub async fn holds(signers: &[SignerEndpoint], tls: Option<&ClientTls>) -> Result<(), CliError> {
    require(signers)?;
    let answers = ask_each(signers, tls, |mut client| async move {
        Ok(client.get_holds(pb::GetHoldsRequest {}).await?.into_inner())
    })
    .await;
    for (name, answer) in &answers {
        let Ok(h) = answer else { continue };
        println!("{name}: {} vetoed request(s)", h.vetoed_requests);
        for f in &h.freezes {
            let (scope, reason) = f
                .freeze
                .as_ref()
                .map(|x| (x.scope.as_str(), x.reason.as_str()))
                .unwrap_or_default();
            println!(
                "{name}: FROZEN {} by {} at {}: {} (freeze {})",
                crate::view::printable(scope),
                crate::view::printable(&f.officer),
                f.recorded_at,
                crate::view::printable(reason),
                hex::encode(&f.freeze_id)
            );
        }
        for r in &h.retirements {
            let destruction = if r.destroyed_at == 0 {
                format!(
                    "shares destroyed at or after {}",
                    crate::view::rfc3339(r.destroy_after)
                )
            } else {
                format!(
                    "shares destroyed at {}",
                    crate::view::rfc3339(r.destroyed_at)
                )
            };
            println!(
                "{name}: RETIRED {} by {} at {}; {destruction} (order {})",
                crate::view::printable(&r.key_id),
                crate::view::printable(&r.admins.join(", ")),
                crate::view::rfc3339(r.accepted_at),
                hex::encode(&r.order_id)
            );
        }
    }
    all_answered(&answers)
}

/// Sends a signed rejection to every signer (`ringi reject --signer ...`).
pub async fn send_rejection(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    rejection: &ringi_policy::statement::Approval,
) -> Answers {
    let wire = ringi_proto::bundle::approval_to_pb(rejection);
    let answers = ask_each(signers, tls, |mut client| {
        let request = pb::VetoRequest {
            rejection: Some(wire.clone()),
        };
        async move {
            let r = client.veto(request).await?.into_inner();
            Ok(if r.recorded {
                "rejection recorded: this signer will not sign the request".to_string()
            } else {
                "rejected already".to_string()
            })
        }
    })
    .await;
    texts(answers)
}
