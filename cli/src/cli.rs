//! The `ringi` command-line client: talks to a running coordinator over gRPC.
//!
//! Output goes to stdout (machine-usable: hex or JSON), progress and errors
//! to stderr. A refused request exits non-zero with the coordinator's status
//! code and message.

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::key_service_client::KeyServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// A CLI failure: its message, printed as `ringi: error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message} ({code:?})")]
    Status { code: tonic::Code, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the coordinator at {address}: {reason}")]
    Connect { address: String, reason: String },
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// The CLI's TLS identity, for a coordinator that runs mutual TLS.
#[derive(Clone)]
pub struct ClientTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    /// The name in the coordinator's certificate.
    pub server_name: String,
}

pub async fn connect(address: &str, tls: Option<&ClientTls>) -> Result<Channel, CliError> {
    if let Some(tls) = tls {
        let usage = |e: ringi_net::tls::TlsError| CliError::Usage(e.to_string());
        let config = ringi_net::tls::client_config(
            ringi_net::tls::load_certs(&tls.cert).map_err(usage)?,
            ringi_net::tls::load_key(&tls.key).map_err(usage)?,
            &ringi_net::tls::load_certs(&tls.ca).map_err(usage)?,
        )
        .map_err(usage)?;
        return ringi_net::tls::connect(address, &tls.server_name, std::sync::Arc::new(config))
            .await
            .map_err(|e| CliError::Connect {
                address: address.to_string(),
                reason: e.to_string(),
            });
    }
    let uri = ringi_net::transport::check_plaintext_dial(address)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let connect_err = |reason: String| CliError::Connect {
        address: address.to_string(),
        reason,
    };
    tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| connect_err(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| connect_err(e.to_string()))
}

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

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

// ---- signing requests and approvals -------------------------------------

use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;

use crate::approver::ApproverSigner;

/// `ringi requests submit`: prints the request id.
pub async fn requests_submit(
    channel: Channel,
    request: pb::SubmitSigningRequestRequest,
) -> Result<(), CliError> {
    let view = RequestServiceClient::new(channel)
        .submit_signing_request(request)
        .await?
        .into_inner();
    eprintln!("ringi: request submitted, state {}", view.state);
    println!("{}", view.request_id);
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

fn request_json(v: &pb::SigningRequestView) -> RequestJson {
    use sha2::Digest;
    let r = v.request.clone().unwrap_or_default();
    RequestJson {
        request_id: v.request_id.clone(),
        state: v.state.clone(),
        state_reason: v.state_reason.clone(),
        message_sha256: hex::encode(sha2::Sha256::digest(&r.message)),
        message_hex: hex::encode(&r.message),
        key_id: r.key_id,
        asset: r.asset,
        amount: r.amount,
        destination: r.destination,
        memo: r.memo,
        requester: r.requester,
        created_at: r.created_at,
        expires_at: r.expires_at,
        policy_sha256: hex::encode(r.policy_hash),
        content_digest: v.content_digest.clone(),
        decisions: v
            .decisions
            .iter()
            .map(|d| DecisionJson {
                approver: d.approver.clone(),
                department: d.department.clone(),
                decision: d.decision.clone(),
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
        signature: hex::encode(&v.signature),
        transitions: v
            .transitions
            .iter()
            .map(|t| TransitionJson {
                from: t.from_state.clone(),
                to: t.to_state.clone(),
                reason: t.reason.clone(),
                at: t.at,
            })
            .collect(),
    }
}

fn print_request_text(j: &RequestJson) {
    println!("request      {}", j.request_id);
    if j.state_reason.is_empty() {
        println!("state        {}", j.state);
    } else {
        println!("state        {} ({})", j.state, j.state_reason);
    }
    println!("key          {}", j.key_id);
    println!(
        "signs        {} bytes, SHA-256 {}",
        j.message_hex.len() / 2,
        j.message_sha256
    );
    println!("asset        {}", j.asset);
    println!("amount       {}", j.amount);
    println!("destination  {}", j.destination);
    println!("memo         {}", j.memo);
    println!("requester    {}", j.requester);
    println!("expires at   {}", j.expires_at);
    println!("policy       {}", j.policy_sha256);
    for d in &j.decisions {
        let reason = if d.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", d.reason)
        };
        println!(
            "decision     {} ({}) {}{}",
            d.approver, d.department, d.decision, reason
        );
    }
    if !j.still_needed.is_empty() {
        let needed: Vec<String> = j
            .still_needed
            .iter()
            .map(|n| format!("{} {} of {}", n.department, n.have, n.need))
            .collect();
        println!("still needed {}", needed.join(", "));
    }
    if !j.signature.is_empty() {
        println!("signature    {}", j.signature);
    }
}

fn parse_id(id: &str) -> Result<[u8; 32], CliError> {
    hex::decode(id)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| CliError::Usage(format!("request id {id:?} is not 64 hex digits")))
}

async fn fetch(channel: Channel, id: &str) -> Result<pb::SigningRequestView, CliError> {
    parse_id(id)?;
    Ok(RequestServiceClient::new(channel)
        .get_signing_request(pb::GetSigningRequestRequest {
            request_id: id.to_string(),
        })
        .await?
        .into_inner())
}

/// `ringi requests show`.
pub async fn requests_show(channel: Channel, id: &str, output: Output) -> Result<(), CliError> {
    let view = fetch(channel, id).await?;
    let j = request_json(&view);
    match output {
        Output::Text => print_request_text(&j),
        Output::Json => println!("{}", json(&j)),
    }
    Ok(())
}

/// `ringi requests list`: every page.
pub async fn requests_list(
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
    let list: Vec<RequestJson> = all.iter().map(request_json).collect();
    match output {
        Output::Text => {
            for j in &list {
                println!(
                    "{}\t{}\t{}\t{} {}\t{}",
                    j.request_id, j.state, j.key_id, j.amount, j.asset, j.destination
                );
            }
        }
        Output::Json => println!("{}", json(&list)),
    }
    Ok(())
}

/// `ringi requests wait`: waits for a terminal state; prints the signature
/// if SIGNED, fails with the reason otherwise.
pub async fn requests_wait(
    channel: Channel,
    id: &str,
    timeout: std::time::Duration,
) -> Result<(), CliError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let view = fetch(channel.clone(), id).await?;
        match view.state.as_str() {
            "SIGNED" => {
                println!("{}", hex::encode(&view.signature));
                return Ok(());
            }
            "REJECTED" | "EXPIRED" | "FAILED" => {
                return Err(CliError::Status {
                    code: tonic::Code::FailedPrecondition,
                    message: format!("request {id} is {}: {}", view.state, view.state_reason),
                });
            }
            _ if std::time::Instant::now() >= deadline => {
                return Err(CliError::Status {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!(
                        "request {id} is still {} after {} s",
                        view.state,
                        timeout.as_secs()
                    ),
                });
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// `ringi approve` / `ringi reject`: signs a statement about exactly what
/// the coordinator shows, after recomputing the request id from it.
pub async fn decide(
    channel: Channel,
    id: &str,
    department: &str,
    decision: ringi_policy::statement::Decision,
    reason: &str,
    signer: ApproverSigner,
) -> Result<(), CliError> {
    let expected = parse_id(id)?;
    let view = fetch(channel.clone(), id).await?;
    let request = ringi_proto::bundle::request_from_pb(&view.request.clone().unwrap_or_default())
        .map_err(|e| {
        CliError::Usage(format!("the coordinator returned a malformed request: {e}"))
    })?;
    if request.id() != expected {
        return Err(CliError::Usage(format!(
            "the coordinator's copy of request {id} does not hash to that id; refusing to sign it"
        )));
    }
    if view.state != "PENDING_APPROVAL" {
        return Err(CliError::Status {
            code: tonic::Code::FailedPrecondition,
            message: format!(
                "request {id} is {}: already decided or expired {}",
                view.state, view.state_reason
            ),
        });
    }
    let now = ringi_policy::clock::now();
    let statement = ringi_policy::statement::Statement::for_request(
        &request,
        department,
        decision,
        reason,
        now,
        now + view.approval_ttl_secs,
    );
    let approver = signer.public_key();
    let signature = signer
        .sign(&statement.signed_bytes(&approver))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    eprintln!(
        "ringi: {} request {id} for {} {} to {} as {} ({})",
        decision.as_str(),
        request.metadata.amount,
        request.metadata.asset,
        request.metadata.destination,
        approver.to_text(),
        department
    );
    let approval = ringi_policy::statement::Approval {
        statement,
        approver,
        signature,
    };
    let view = RequestServiceClient::new(channel)
        .decide(pb::DecideRequest {
            approval: Some(ringi_proto::bundle::approval_to_pb(&approval)),
        })
        .await?
        .into_inner();
    let needed: Vec<String> = view
        .still_needed
        .iter()
        .map(|n| format!("{} {} of {}", n.department, n.have, n.need))
        .collect();
    if needed.is_empty() {
        eprintln!("ringi: request is now {}", view.state);
    } else {
        eprintln!(
            "ringi: request is now {}; still needed: {}",
            view.state,
            needed.join(", ")
        );
    }
    println!("{}", view.state);
    Ok(())
}

/// `ringi health`: prints the server's serving status; an error unless it
/// is SERVING (so a container health check can run it as is).
pub async fn health(channel: Channel, service: String) -> Result<(), CliError> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.clone(),
        })
        .await?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "service {service:?} is {}",
            status.as_str_name()
        )))
    }
}
