//! `ringi requests submit|list|show|wait`: signing requests as the
//! coordinator shows them.

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use ringi::request_state::State;

use crate::view::{self, RequestView, printable};
use crate::{CliError, Output, json};

/// What `ringi requests submit` asks to sign.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    #[arg(long)]
    pub key_id: String,
    /// The exact bytes to sign, hex-encoded.
    #[arg(long)]
    pub message_hex: String,
    #[arg(long)]
    pub asset: String,
    /// In the asset's smallest unit.
    #[arg(long)]
    pub amount: String,
    #[arg(long)]
    pub destination: String,
    #[arg(long, default_value = "")]
    pub memo: String,
    /// Who asks, as the policy names them (under mutual TLS: the caller's
    /// certified identity, filled in by the coordinator).
    #[arg(long, default_value = "")]
    pub requester: String,
    /// Route to exactly `threshold` named signers (default: any reachable).
    #[arg(long, value_delimiter = ',')]
    pub signers: Vec<String>,
    /// Retries with the same key return the same request (default: a fresh random key).
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

impl SubmitArgs {
    /// The API request: the message decoded, a fresh idempotency key if none
    /// was given.
    pub fn to_request(&self) -> Result<pb::SubmitSigningRequestRequest, CliError> {
        let idempotency_key = self.idempotency_key.clone().unwrap_or_else(|| {
            use rand::RngCore;
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        });
        let message = hex::decode(self.message_hex.trim())
            .map_err(|e| CliError::Usage(format!("--message-hex is not hex: {e}")))?;
        Ok(pb::SubmitSigningRequestRequest {
            key_id: self.key_id.clone(),
            message,
            asset: self.asset.clone(),
            amount: self.amount.clone(),
            destination: self.destination.clone(),
            memo: self.memo.clone(),
            requester: self.requester.clone(),
            signers: self.signers.clone(),
            idempotency_key,
        })
    }
}

/// `ringi requests submit`: prints the request id.
pub async fn submit(channel: Channel, args: &SubmitArgs) -> Result<(), CliError> {
    let request = args.to_request()?;
    let view = view::from_pb(
        &RequestServiceClient::new(channel)
            .submit_signing_request(request)
            .await?
            .into_inner(),
    )?;
    eprintln!("ringi: request submitted, state {}", view.state);
    println!("{}", view.id_hex());
    Ok(())
}

#[derive(Serialize)]
struct RequestJson {
    request_id: String,
    state: String,
    state_reason: String,
    key_id: String,
    message_hex: String,
    message_sha256: String,
    asset: String,
    amount: String,
    destination: String,
    memo: String,
    requester: String,
    created_at: u64,
    expires_at: u64,
    policy_sha256: String,
    content_digest: String,
    decisions: Vec<DecisionJson>,
    still_needed: Vec<NeededJson>,
    signature: String,
    transitions: Vec<TransitionJson>,
}

#[derive(Serialize)]
struct DecisionJson {
    approver: String,
    department: String,
    decision: String,
    reason: String,
    expires_at: u64,
}

#[derive(Serialize)]
struct NeededJson {
    department: String,
    have: u32,
    need: u32,
}

#[derive(Serialize)]
struct TransitionJson {
    from: String,
    to: String,
    reason: String,
    at: u64,
}

fn request_json(v: &RequestView) -> RequestJson {
    use sha2::Digest;
    let r = &v.request;
    RequestJson {
        request_id: v.id_hex(),
        state: v.state.as_str().to_string(),
        state_reason: v.state_reason.clone(),
        message_sha256: hex::encode(sha2::Sha256::digest(&r.message)),
        message_hex: hex::encode(&r.message),
        key_id: r.key_id.to_string(),
        asset: r.metadata.asset.clone(),
        amount: r.metadata.amount.to_string(),
        destination: r.metadata.destination.clone(),
        memo: r.metadata.memo.clone(),
        requester: r.requester.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        policy_sha256: hex::encode(r.policy_hash),
        content_digest: hex::encode(r.content_digest()),
        decisions: v
            .decisions
            .iter()
            .map(|d| DecisionJson {
                approver: d.approver.clone(),
                department: d.department.clone(),
                decision: d.decision.as_str().to_string(),
                reason: d.reason.clone(),
                expires_at: d.expires_at,
            })
            .collect(),
        still_needed: v
            .still_needed
            .iter()
            .map(|n| NeededJson {
                department: n.department.clone(),
                have: n.have,
                need: n.need,
            })
            .collect(),
        signature: v.signature.map(hex::encode).unwrap_or_default(),
        transitions: v
            .transitions
            .iter()
            .map(|t| TransitionJson {
                from: t.from.map(|s| s.as_str()).unwrap_or_default().to_string(),
                to: t.to.as_str().to_string(),
                reason: t.reason.clone(),
                at: t.at,
            })
            .collect(),
    }
}

/// Text for a terminal: every string that came from the coordinator (or
/// through it, from a requester) is shown with its control characters
/// escaped, so it cannot move the cursor or recolour what is around it.
fn print_request_text(j: &RequestJson) {
    let p = printable;
    println!("request      {}", j.request_id);
    if j.state_reason.is_empty() {
        println!("state        {}", j.state);
    } else {
        println!("state        {} ({})", j.state, p(&j.state_reason));
    }
    println!("key          {}", j.key_id);
    println!(
        "signs        {} bytes, SHA-256 {}",
        j.message_hex.len() / 2,
        j.message_sha256
    );
    println!("asset        {}", p(&j.asset));
    println!("amount       {}", j.amount);
    println!("destination  {}", p(&j.destination));
    println!("memo         {}", p(&j.memo));
    println!("requester    {}", p(&j.requester));
    println!("expires at   {}", j.expires_at);
    println!("policy       {}", j.policy_sha256);
    for d in &j.decisions {
        let reason = if d.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", p(&d.reason))
        };
        println!(
            "decision     {} ({}) {}{}",
            p(&d.approver),
            p(&d.department),
            d.decision,
            reason
        );
    }
    if !j.still_needed.is_empty() {
        let needed: Vec<String> = j
            .still_needed
            .iter()
            .map(|n| format!("{} {} of {}", p(&n.department), n.have, n.need))
            .collect();
        println!("still needed {}", needed.join(", "));
    }
    if !j.signature.is_empty() {
        println!("signature    {}", j.signature);
    }
}

/// Fetches request `id` and checks the coordinator's view of it: it must
/// be that request (see [`crate::view`]).
pub(crate) async fn fetch(channel: Channel, id: &str) -> Result<RequestView, CliError> {
    let expected = view::parse_request_id(id).map_err(|e| CliError::Usage(e.to_string()))?;
    let view = view::from_pb(
        &RequestServiceClient::new(channel)
            .get_signing_request(pb::GetSigningRequestRequest {
                request_id: id.to_string(),
            })
            .await?
            .into_inner(),
    )?;
    if view.id != expected {
        return Err(CliError::Usage(format!(
            "asked for request {id}, the coordinator returned request {}; refusing it",
            view.id_hex()
        )));
    }
    Ok(view)
}

/// `ringi requests show`.
pub async fn show(channel: Channel, id: &str, output: Output) -> Result<(), CliError> {
    let view = fetch(channel, id).await?;
    let j = request_json(&view);
    match output {
        Output::Text => print_request_text(&j),
        Output::Json => println!("{}", json(&j)),
    }
    Ok(())
}

/// `ringi requests list`: every page.
pub async fn list(
    channel: Channel,
    pending_only: bool,
    key_id: Option<String>,
    state: Option<String>,
    output: Output,
) -> Result<(), CliError> {
    let mut client = RequestServiceClient::new(channel);
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_signing_requests(pb::ListSigningRequestsRequest {
                pending_only,
                key_id: key_id.clone().unwrap_or_default(),
                state: state.clone().unwrap_or_default(),
                page_size: 0,
                page_token,
            })
            .await?
            .into_inner();
        all.extend(page.requests);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let list = all
        .iter()
        .map(|v| Ok(request_json(&view::from_pb(v)?)))
        .collect::<Result<Vec<RequestJson>, CliError>>()?;
    match output {
        Output::Text => {
            for j in &list {
                println!(
                    "{}\t{}\t{}\t{} {}\t{}",
                    j.request_id,
                    j.state,
                    j.key_id,
                    j.amount,
                    printable(&j.asset),
                    printable(&j.destination)
                );
            }
        }
        Output::Json => println!("{}", json(&list)),
    }
    Ok(())
}

/// `ringi requests wait`: waits for a terminal state; prints the signature
/// if SIGNED, fails with the reason otherwise. A timeout too long to
/// represent waits without a deadline.
pub async fn wait(
    channel: Channel,
    id: &str,
    timeout: std::time::Duration,
) -> Result<(), CliError> {
    let deadline = std::time::Instant::now().checked_add(timeout);
    loop {
        let view = fetch(channel.clone(), id).await?;
        match (view.state, view.signature) {
            (State::Signed, Some(signature)) => {
                println!("{}", hex::encode(signature));
                return Ok(());
            }
            (state, _) if state.is_terminal() => {
                return Err(CliError::Status {
                    code: tonic::Code::FailedPrecondition,
                    message: format!("request {id} is {state}: {}", printable(&view.state_reason)),
                });
            }
            (state, _) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => {
                return Err(CliError::Status {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!(
                        "request {id} is still {state} after {} s",
                        timeout.as_secs()
                    ),
                });
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}
