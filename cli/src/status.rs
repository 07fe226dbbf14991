//! `ringi status`: the coordinator's latest pre-flight check of its
//! signers (`OperationsService.GetStatus`): which signer cannot sign and
//! why, and which key cannot be signed now. Exits non-zero while a key in
//! service cannot reach its threshold, so a script or a dashboard can act
//! on it.

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::operations_service_client::OperationsServiceClient;
use tonic::transport::Channel;

use crate::view::printable;
use crate::{CliError, Output};

pub async fn status(channel: Channel, output: Output) -> Result<(), CliError> {
    let status = OperationsServiceClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    match output {
        Output::Text => print!("{}", text(&status, ringi_policy::clock::now())),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json(&status))
                .map_err(|e| CliError::Usage(e.to_string()))?
        ),
    }
    let down: Vec<&str> = status
        .keys
        .iter()
        .filter(|k| !k.serving && !k.retired)
        .map(|k| k.key_id.as_str())
        .collect();
    if down.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "keys that cannot be signed now: {}",
            printable(&down.join(", "))
        )))
    }
}

/// The report as text, every name from the coordinator made printable.
pub fn text(s: &pb::GetStatusResponse, now: u64) -> String {
    let mut out = format!(
        "checked {}s ago; coordinator policy {}\n",
        now.saturating_sub(s.checked_at),
        hex::encode(&s.policy_hash)
    );
    out.push_str("signers:\n");
    for signer in &s.signers {
        let state = if signer.problems.is_empty() {
            "ok".to_string()
        } else {
            signer.problems.join("; ")
        };
        out.push_str(&format!(
            "  {} (identifier {}): {}\n",
            printable(&signer.name),
            signer.identifier,
            printable(&state)
        ));
    }
    out.push_str("keys:\n");
    for key in &s.keys {
        let state = match (key.retired, key.serving) {
            (true, _) => "RETIRED",
            (false, true) => "SERVING",
            (false, false) => "NOT_SERVING",
        };
        out.push_str(&format!(
            "  {}: {state}, {} of threshold {} can sign ({})\n",
            printable(&key.key_id),
            key.able_signers.len(),
            key.threshold,
            printable(&key.able_signers.join(", "))
        ));
        for problem in &key.problems {
            out.push_str(&format!("    {}\n", printable(problem)));
        }
    }
    out
}

fn json(s: &pb::GetStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "checked_at": s.checked_at,
        "policy_hash": hex::encode(&s.policy_hash),
        "signers": s.signers.iter().map(|x| serde_json::json!({
            "name": x.name,
            "identifier": x.identifier,
            "reachable": x.reachable,
            "token_serving": x.token_serving,
            "policy_hash": hex::encode(&x.policy_hash),
            "key_ids": x.key_ids,
            "problems": x.problems,
        })).collect::<Vec<_>>(),
        "keys": s.keys.iter().map(|k| serde_json::json!({
            "key_id": k.key_id,
            "threshold": k.threshold,
            "able_signers": k.able_signers,
            "serving": k.serving,
            "retired": k.retired,
            "problems": k.problems,
        })).collect::<Vec<_>>(),
    })
}
