//! `ringi requests submit|list|show|wait`: signing requests as the
//! coordinator shows them.
//!
//! A PSBT request's transaction is derived here from the request's PSBT
//! with the key's own keys (`view::check_with_key`), and the coordinator's
//! derivation must match it: what an approver is shown — each payment's
//! address and amount, the change, the fee and fee rate, the inputs, the
//! txid — is never the coordinator's word. A raw message on a
//! bitcoin-taproot key is shown as BLIND.

use std::collections::BTreeMap;

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::key_service_client::KeyServiceClient;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use ringi_psbt::bitcoin::base64::Engine as _;
use ringi_psbt::{Derived, btc};
use serde::Serialize;
use tonic::transport::Channel;

use ringi::request_state::State;

use ringi_policy::policy::Policy;
use ringi_policy::statement::Decision;

use crate::view::{self, Checked, KeyView, RequestView, printable};
use crate::{CliError, Output, json};

/// What `ringi requests submit` asks to sign: a raw message with what the
/// requester declares, or a PSBT.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    #[arg(long)]
    pub key_id: String,
    /// The exact bytes to sign, hex-encoded (a raw-message request).
    #[arg(long, required_unless_present = "psbt", conflicts_with = "psbt")]
    pub message_hex: Option<String>,
    #[arg(long, required_unless_present = "psbt", conflicts_with = "psbt")]
    pub asset: Option<String>,
    /// In the asset's smallest unit.
    #[arg(long, required_unless_present = "psbt", conflicts_with = "psbt")]
    pub amount: Option<String>,
    #[arg(long, required_unless_present = "psbt", conflicts_with = "psbt")]
    pub destination: Option<String>,
    /// A PSBT request (bitcoin-taproot keys): a file holding the unsigned
    /// PSBT (binary BIP-174 or base64), or the base64 text itself. What it
    /// pays is derived from it; nothing is declared.
    #[arg(long, value_name = "FILE|BASE64")]
    pub psbt: Option<String>,
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
    /// Sign the request as its requester with this P-256 key file (keys
    /// whose policy sets `signed_requests`; see `crate::request_signature`).
    #[arg(long, env = "RINGI_REQUESTER_KEY_FILE")]
    pub requester_key_file: Option<std::path::PathBuf>,
}

/// The magic bytes every binary PSBT starts with (BIP-174).
const PSBT_MAGIC: &[u8] = b"psbt\xff";

/// A PSBT given as a file (binary or base64) or as base64 text.
pub fn read_psbt(arg: &str) -> Result<Vec<u8>, CliError> {
    let path = std::path::Path::new(arg);
    let text = if path.is_file() {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        if bytes.starts_with(PSBT_MAGIC) {
            return Ok(bytes);
        }
        String::from_utf8(bytes).map_err(|_| {
            CliError::Usage(format!(
                "{} is neither a binary PSBT nor base64 text",
                path.display()
            ))
        })?
    } else {
        arg.to_string()
    };
    let compact: String = text.split_whitespace().collect();
    let bytes = ringi_psbt::bitcoin::base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            CliError::Usage(format!(
                "--psbt is neither a file nor base64 text of a PSBT: {e}"
            ))
        })?;
    if !bytes.starts_with(PSBT_MAGIC) {
        return Err(CliError::Usage(
            "--psbt does not hold a PSBT (no BIP-174 magic bytes)".into(),
        ));
    }
    Ok(bytes)
}

impl SubmitArgs {
    /// The API request: the message or PSBT decoded, a fresh idempotency
    /// key if none was given.
    pub fn to_request(&self) -> Result<pb::SubmitSigningRequestRequest, CliError> {
        let idempotency_key = self.idempotency_key.clone().unwrap_or_else(|| {
            use rand::RngCore;
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        });
        let message = match &self.message_hex {
            Some(text) => hex::decode(text.trim())
                .map_err(|e| CliError::Usage(format!("--message-hex is not hex: {e}")))?,
            None => Vec::new(),
        };
        let psbt = match &self.psbt {
            Some(arg) => read_psbt(arg)?,
            None => Vec::new(),
        };
        Ok(pb::SubmitSigningRequestRequest {
            key_id: self.key_id.clone(),
            message,
            asset: self.asset.clone().unwrap_or_default(),
            amount: self.amount.clone().unwrap_or_default(),
            destination: self.destination.clone().unwrap_or_default(),
            memo: self.memo.clone(),
            requester: self.requester.clone(),
            signers: self.signers.clone(),
            idempotency_key,
            psbt,
        })
    }
}

/// `ringi requests submit`: prints the request id.
pub async fn submit(channel: Channel, args: &SubmitArgs) -> Result<(), CliError> {
    let request = args.to_request()?;
    let requester_key = match &args.requester_key_file {
        Some(path) => Some(
            crate::approver::ApproverSigner::from_file(path)
                .map_err(|e| CliError::Usage(format!("--requester-key-file: {e}")))?,
        ),
        None => None,
    };
    let view = view::from_pb(
        &RequestServiceClient::new(channel.clone())
            .submit_signing_request(request.clone())
            .await?
            .into_inner(),
    )?;
    if let Some(key) = &requester_key {
        crate::request_signature::sign_request(channel, &request, &view, key).await?;
    }
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
    /// The key's kind.
    kind: String,
    /// A raw message on a bitcoin-taproot key: what it moves is unknown.
    blind: bool,
    message_hex: String,
    message_sha256: String,
    asset: String,
    amount: String,
    /// The amount for a person: with the asset's decimals when the CLI
    /// knows them ("0.50000000 BTC (50000000 sat)"), raw otherwise.
    amount_text: String,
    destination: String,
    /// A PSBT request's unsigned PSBT, base64 (empty otherwise).
    psbt: String,
    /// A PSBT request's transaction, derived here from its PSBT.
    transaction: Option<TransactionJson>,
    memo: String,
    requester: String,
    created_at: u64,
    expires_at: u64,
    policy_sha256: String,
    /// Hex of the request's nonce (empty for a request made before
    /// nonces): with the fields above, what its id is computed over.
    nonce: String,
    content_digest: String,
    decisions: Vec<DecisionJson>,
    still_needed: Vec<NeededJson>,
    signature: String,
    /// A SIGNED PSBT request: the finalized PSBT (base64) and the signed
    /// transaction (hex, for `bitcoin-cli sendrawtransaction`).
    signed_psbt: String,
    signed_transaction: String,
    transitions: Vec<TransitionJson>,
}

#[derive(Serialize)]
struct TransactionJson {
    txid: String,
    network: String,
    inputs: Vec<InputJson>,
    payments: Vec<OutputJson>,
    change: Vec<OutputJson>,
    fee_sats: u64,
    fee_btc: String,
    vsize: u64,
    fee_rate_sat_vb: u64,
    total_paid_sats: u64,
    total_paid_btc: String,
}

#[derive(Serialize)]
struct InputJson {
    outpoint: String,
    value_sats: u64,
    value_btc: String,
    sighash_type: String,
}

#[derive(Serialize)]
struct OutputJson {
    index: usize,
    address: String,
    value_sats: u64,
    value_btc: String,
}

#[derive(Serialize)]
struct DecisionJson {
    approver: String,
    department: String,
    decision: String,
    reason: String,
    issued_at: u64,
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

fn transaction_json(d: &Derived, network: &str) -> TransactionJson {
    let output = |o: &ringi_psbt::OutputView| OutputJson {
        index: o.index,
        address: o.address.clone(),
        value_sats: o.value,
        value_btc: btc(o.value),
    };
    TransactionJson {
        txid: d.txid.clone(),
        network: network.to_string(),
        inputs: d
            .inputs
            .iter()
            .map(|i| InputJson {
                outpoint: i.outpoint.clone(),
                value_sats: i.value,
                value_btc: btc(i.value),
                sighash_type: i.sighash.as_str().to_string(),
            })
            .collect(),
        payments: d.payments.iter().map(output).collect(),
        change: d.change.iter().map(output).collect(),
        fee_sats: d.fee,
        fee_btc: btc(d.fee),
        vsize: d.vsize,
        fee_rate_sat_vb: d.fee_rate(),
        total_paid_sats: d.total_paid(),
        total_paid_btc: btc(d.total_paid()),
    }
}

fn base64(bytes: &[u8]) -> String {
    ringi_psbt::bitcoin::base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn request_json(v: &RequestView, key: &KeyView, checked: &Checked) -> RequestJson {
    use sha2::Digest;
    let r = &v.request;
    let network = key
        .taproot
        .and_then(|t| t.network)
        .map(|n| n.as_str())
        .unwrap_or_default();
    RequestJson {
        request_id: v.id_hex(),
        state: v.state.as_str().to_string(),
        state_reason: v.state_reason.clone(),
        message_sha256: hex::encode(sha2::Sha256::digest(&r.message)),
        message_hex: hex::encode(&r.message),
        key_id: r.key_id.to_string(),
        kind: key.kind.to_string(),
        blind: matches!(checked, Checked::Blind),
        asset: r.metadata.asset.clone(),
        amount: r.metadata.amount.to_string(),
        amount_text: view::amount_text(&r.metadata.asset, r.metadata.amount),
        destination: r.metadata.destination.clone(),
        psbt: r.psbt.as_deref().map(base64).unwrap_or_default(),
        transaction: match checked {
            Checked::Transaction(d) => Some(transaction_json(d, network)),
            _ => None,
        },
        memo: r.metadata.memo.clone(),
        requester: r.requester.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        policy_sha256: hex::encode(r.policy_hash),
        nonce: hex::encode(&r.nonce),
        content_digest: hex::encode(r.content_digest()),
        decisions: v
            .decisions
            .iter()
            .map(|d| DecisionJson {
                approver: d.approver.clone(),
                department: d.department.clone(),
                decision: d.decision.as_str().to_string(),
                reason: d.reason.clone(),
                issued_at: d.issued_at,
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
        signature: v.signature.as_deref().map(hex::encode).unwrap_or_default(),
        signed_psbt: v.signed_psbt.as_deref().map(base64).unwrap_or_default(),
        signed_transaction: v
            .signed_transaction
            .as_deref()
            .map(hex::encode)
            .unwrap_or_default(),
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

/// `amount` sats as "0.00150000 BTC (150000 sat)".
fn amount_text(sats: u64) -> String {
    view::amount_text("BTC", u128::from(sats))
}

/// What a request does, for a terminal: the transaction of a PSBT request
/// (derived here), a loud warning for a blind one, or the declared amount
/// and destination of a raw one. Shared by `requests show` and `approve`.
fn print_subject(j: &RequestJson, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let p = printable;
    if j.blind {
        writeln!(
            out,
            "*** BLIND *** a raw message on a bitcoin-taproot key: what the signature moves cannot be known"
        )?;
    }
    let Some(t) = &j.transaction else {
        writeln!(
            out,
            "signs        {} bytes, SHA-256 {}",
            j.message_hex.len() / 2,
            j.message_sha256
        )?;
        writeln!(out, "asset        {}", p(&j.asset))?;
        writeln!(out, "amount       {}", j.amount_text)?;
        return writeln!(out, "destination  {}", p(&j.destination));
    };
    writeln!(out, "transaction  {} ({})", t.txid, t.network)?;
    for (i, input) in t.inputs.iter().enumerate() {
        writeln!(
            out,
            "input {i:<6} {}  {}  sighash {}",
            input.outpoint,
            amount_text(input.value_sats),
            input.sighash_type
        )?;
    }
    for o in &t.payments {
        writeln!(
            out,
            "PAYS         {}  {}  (output {})",
            p(&o.address),
            amount_text(o.value_sats),
            o.index
        )?;
    }
    for o in &t.change {
        writeln!(
            out,
            "change       {}  {}  (output {}, back to this key)",
            p(&o.address),
            amount_text(o.value_sats),
            o.index
        )?;
    }
    writeln!(
        out,
        "fee          {}, {} sat/vB over {} vB",
        amount_text(t.fee_sats),
        t.fee_rate_sat_vb,
        t.vsize
    )?;
    writeln!(out, "total paid   {}", amount_text(t.total_paid_sats))
}

/// What the approver's view shows besides the request itself.
pub(crate) struct Context<'a> {
    /// The CLI's clock: times are shown relative to it.
    pub now: u64,
    /// The approver's own copy of the policy, if given
    /// (`--policy`/`RINGI_POLICY_FILE`).
    pub policy: Option<&'a Policy>,
    /// Other open requests that sign the same, or why they could not be
    /// looked for.
    pub twins: Result<Twins, String>,
}

/// A request as a person reads it (`requests show`, and `approve`/`reject`
/// before they ask): amounts with the asset's decimals, times in RFC 3339
/// UTC with the time left, the memo and requester, the rule of the
/// approver's own policy that applies, every decision with when it was
/// made and until when it counts, what is still needed, and other open
/// requests for the same message. Every string that came from the
/// coordinator (or through it, from a requester) is shown with its
/// control characters escaped, so it cannot move the cursor or recolour
/// what is around it.
pub(crate) fn write_view(
    out: &mut dyn std::io::Write,
    e: &Examined,
    ctx: &Context<'_>,
) -> std::io::Result<()> {
    let p = printable;
    let j = e.json();
    let v = &e.view;
    let now = ctx.now;
    writeln!(out, "request      {}", j.request_id)?;
    if j.state_reason.is_empty() {
        writeln!(out, "state        {}", j.state)?;
    } else {
        writeln!(out, "state        {} ({})", j.state, p(&j.state_reason))?;
    }
    writeln!(out, "key          {} ({})", j.key_id, j.kind)?;
    print_subject(&j, out)?;
    if j.memo.is_empty() {
        writeln!(out, "memo         (none)")?;
    } else {
        writeln!(out, "memo         {}", p(&j.memo))?;
    }
    writeln!(out, "requester    {}", p(&j.requester))?;
    writeln!(out, "created      {}", view::when(now, j.created_at))?;
    writeln!(out, "expires      {}", view::when(now, j.expires_at))?;
    let rules = match ctx.policy {
        None => {
            writeln!(
                out,
                "policy       {} (not checked: no policy file, --policy or RINGI_POLICY_FILE)",
                j.policy_sha256
            )?;
            writeln!(
                out,
                "rule         the tier cannot be checked locally without the policy file"
            )?;
            None
        }
        Some(policy) => match view::check_policy(policy, &v.request) {
            Ok(rules) => {
                writeln!(out, "policy       {} (your copy)", j.policy_sha256)?;
                Some((policy, rules))
            }
            Err(err) => {
                writeln!(out, "policy       {} NOT YOURS: {err}", j.policy_sha256)?;
                None
            }
        },
    };
    if let Some((policy, rules)) = rules {
        match view::applied_rule(rules, &v.request, &e.key) {
            Ok(rule) => {
                writeln!(
                    out,
                    "rule         {}: {}",
                    rule.rule,
                    view::quorums_text(&rule.quorums)
                )?;
                for note in &rule.notes {
                    writeln!(out, "             {note}")?;
                }
            }
            Err(refused) => writeln!(out, "rule         REFUSED by your policy: {refused}")?,
        }
        writeln!(
            out,
            "approvals    valid for at most {} s ({}) under your policy",
            rules.approval_ttl_secs,
            view::duration_text(rules.approval_ttl_secs)
        )?;
        // What the coordinator's "still needed" should say.
        writeln!(
            out,
            "your policy  {}",
            view::local_standing(policy, v, &e.key, now)
        )?;
    }
    for d in &v.decisions {
        if d.decision == Decision::Request {
            // The wallet's own signature on the request it made.
            writeln!(
                out,
                "signed by    {} (the requester's own signature), at {}",
                p(&d.approver),
                view::when(now, d.issued_at),
            )?;
            continue;
        }
        let reason = if d.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", p(&d.reason))
        };
        let counts = if now < d.expires_at {
            format!("valid until {}", view::when(now, d.expires_at))
        } else {
            format!("EXPIRED at {}", view::when(now, d.expires_at))
        };
        writeln!(
            out,
            "decision     {} ({}) {}{}, issued {}, {counts}",
            p(&d.approver),
            p(&d.department),
            d.decision.as_str(),
            reason,
            view::when(now, d.issued_at),
        )?;
    }
    if !j.still_needed.is_empty() {
        let needed: Vec<String> = j
            .still_needed
            .iter()
            .map(|n| format!("{} {} of {}", p(&n.department), n.have, n.need))
            .collect();
        writeln!(out, "still needed {}", needed.join(", "))?;
    }
    match &ctx.twins {
        Err(why) => writeln!(out, "other open   could not be checked: {}", p(why))?,
        Ok(t) => {
            if t.found.is_empty() {
                writeln!(out, "other open   none for the same message")?;
            }
            for twin in &t.found {
                writeln!(
                    out,
                    "other open   {} {}, created {}: {}",
                    twin.id,
                    twin.state,
                    view::when(now, twin.created_at),
                    twin.what
                )?;
            }
            if t.unchecked > 0 {
                writeln!(
                    out,
                    "other open   {} more the coordinator showed malformed (not compared)",
                    t.unchecked
                )?;
            }
            if t.truncated {
                writeln!(
                    out,
                    "other open   only the newest {} per state were compared",
                    TWIN_PAGES * TWIN_PAGE_SIZE as usize
                )?;
            }
        }
    }
    if !j.signature.is_empty() {
        writeln!(out, "signature    {}", j.signature)?;
    }
    if !j.signed_transaction.is_empty() {
        writeln!(out, "signed tx    {}", j.signed_transaction)?;
    }
    Ok(())
}

/// Another open request that would sign the same as the one shown.
pub(crate) struct Twin {
    pub id: String,
    pub state: State,
    pub created_at: u64,
    /// "the same message", "the same PSBT", "the same transaction (txid)".
    pub what: &'static str,
}

/// The other open requests for the same key that sign the same thing.
#[derive(Default)]
pub(crate) struct Twins {
    pub found: Vec<Twin>,
    /// Listed views that failed the checks (not compared).
    pub unchecked: usize,
    /// More pages than the CLI reads were left.
    pub truncated: bool,
}

/// Pages read per state when looking for twins, and their size: enough
/// for any real backlog, bounded against a coordinator that pages forever.
const TWIN_PAGES: usize = 10;
const TWIN_PAGE_SIZE: u32 = 500;

/// Looks through the open requests (PENDING_APPROVAL, APPROVED, SIGNING)
/// of `e`'s key for others that sign the same message or transaction
/// ([`view::same_subject`]): a second request for one payment is how a
/// payment gets made twice. Each listed view is checked like any other.
pub(crate) async fn twins(channel: Channel, e: &Examined) -> Result<Twins, CliError> {
    let mut client = RequestServiceClient::new(channel);
    let mut twins = Twins::default();
    for state in [State::PendingApproval, State::Approved, State::Signing] {
        let mut page_token = String::new();
        for page_number in 0.. {
            if page_number == TWIN_PAGES {
                twins.truncated = true;
                break;
            }
            let page = client
                .list_signing_requests(pb::ListSigningRequestsRequest {
                    pending_only: false,
                    key_id: e.view.request.key_id.to_string(),
                    state: state.as_str().to_string(),
                    page_size: TWIN_PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            for listed in &page.requests {
                let Ok(other) = view::from_pb(listed) else {
                    twins.unchecked += 1;
                    continue;
                };
                if other.id == e.view.id || other.request.key_id != e.view.request.key_id {
                    continue;
                }
                let Ok(checked) = view::check_with_key(&other, &e.key) else {
                    twins.unchecked += 1;
                    continue;
                };
                if let Some(what) = view::same_subject(&e.view, &e.checked, &other, &checked) {
                    twins.found.push(Twin {
                        id: other.id_hex(),
                        state: other.state,
                        created_at: other.request.created_at,
                        what,
                    });
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    Ok(twins)
}

/// Reads the approver's own copy of the policy (`--policy`,
/// `RINGI_POLICY_FILE`).
pub fn load_policy(path: &std::path::Path) -> Result<Policy, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read policy file {}: {e}", path.display())))?;
    Policy::from_bytes(&bytes)
        .map_err(|e| CliError::Usage(format!("policy file {} is invalid: {e}", path.display())))
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

/// A checked request with its key, checked against each other
/// ([`view::check_with_key`]): what `show` prints and `approve` signs.
pub(crate) struct Examined {
    pub view: RequestView,
    pub key: KeyView,
    pub checked: Checked,
}

impl Examined {
    fn json(&self) -> RequestJson {
        request_json(&self.view, &self.key, &self.checked)
    }
}

/// Fetches request `id` and its key, and checks them (see [`fetch`] and
/// [`view::check_with_key`]).
pub(crate) async fn examine(channel: Channel, id: &str) -> Result<Examined, CliError> {
    let view = fetch(channel.clone(), id).await?;
    let (_, key) = crate::keys::fetch(channel, view.request.key_id.as_str()).await?;
    let checked = view::check_with_key(&view, &key)?;
    Ok(Examined { view, key, checked })
}

/// `ringi requests show` without a policy file: see [`show_under`].
pub async fn show(channel: Channel, id: &str, output: Output) -> Result<(), CliError> {
    show_under(channel, id, output, None).await
}

/// `ringi requests show`: the approver's view of a request (see
/// [`write_view`]), under the approver's `policy` if given; or its JSON.
pub async fn show_under(
    channel: Channel,
    id: &str,
    output: Output,
    policy: Option<&Policy>,
) -> Result<(), CliError> {
    let examined = examine(channel.clone(), id).await?;
    match output {
        Output::Text => {
            let twins = twins(channel, &examined).await.map_err(|e| e.to_string());
            let context = Context {
                now: ringi_policy::clock::now(),
                policy,
                twins,
            };
            let _ = write_view(&mut std::io::stdout().lock(), &examined, &context);
        }
        Output::Json => println!("{}", json(&examined.json())),
    }
    Ok(())
}

/// `ringi requests list`: every page, each request checked against its key.
pub async fn list(
    channel: Channel,
    pending_only: bool,
    key_id: Option<String>,
    state: Option<String>,
    output: Output,
) -> Result<(), CliError> {
    let mut client = RequestServiceClient::new(channel.clone());
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
    let views = all
        .iter()
        .map(view::from_pb)
        .collect::<Result<Vec<RequestView>, _>>()?;
    let mut keys: BTreeMap<String, KeyView> = BTreeMap::new();
    if !views.is_empty() {
        for k in KeyServiceClient::new(channel)
            .list_keys(pb::ListKeysRequest {})
            .await?
            .into_inner()
            .keys
        {
            let checked = view::key_from_pb(&k)?;
            keys.insert(checked.key_id.clone(), checked);
        }
    }
    let list = views
        .iter()
        .map(|v| {
            let key = keys.get(v.request.key_id.as_str()).ok_or_else(|| {
                CliError::Usage(format!(
                    "request {} is for key {}, which the coordinator does not list",
                    v.id_hex(),
                    v.request.key_id
                ))
            })?;
            let checked = view::check_with_key(v, key)?;
            Ok(request_json(v, key, &checked))
        })
        .collect::<Result<Vec<RequestJson>, CliError>>()?;
    match output {
        Output::Text => {
            for j in &list {
                let (amount, destination) = match &j.transaction {
                    Some(t) => (
                        amount_text(t.total_paid_sats),
                        t.payments
                            .iter()
                            .map(|o| o.address.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    None if j.blind => ("BLIND".to_string(), String::new()),
                    None => (j.amount_text.clone(), j.destination.clone()),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    j.request_id,
                    j.state,
                    j.key_id,
                    amount,
                    printable(&destination)
                );
            }
        }
        Output::Json => println!("{}", json(&list)),
    }
    Ok(())
}

/// What `ringi requests wait` prints once the request is SIGNED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitOutput {
    /// The signature, hex (for a PSBT request every input's, 64 bytes each).
    Signature,
    /// The signed transaction, hex: what `bitcoin-cli sendrawtransaction`
    /// takes (PSBT requests).
    Tx,
    /// The finalized PSBT, base64 (PSBT requests).
    Psbt,
}

/// `ringi requests wait`: follows the request until it reaches a terminal
/// state, writing each state transition to stderr as it happens (its
/// history first, then each new one from the WatchSigningRequest stream);
/// prints the signature (or the signed transaction or PSBT, checked
/// against the request's PSBT and key) if SIGNED, fails with the reason
/// otherwise (FAILED_PRECONDITION), or with DEADLINE_EXCEEDED when
/// `timeout` passes first. A timeout too long to represent waits without
/// a deadline.
pub async fn wait(
    channel: Channel,
    id: &str,
    timeout: std::time::Duration,
    output: WaitOutput,
) -> Result<(), CliError> {
    let text = wait_with(channel, id, timeout, output, &mut std::io::stderr()).await?;
    println!("{text}");
    Ok(())
}

/// [`wait`], writing the transitions to `progress` and returning what it
/// prints on stdout.
async fn wait_with(
    channel: Channel,
    id: &str,
    timeout: std::time::Duration,
    output: WaitOutput,
    progress: &mut (dyn std::io::Write + Send),
) -> Result<String, CliError> {
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    let mut last = None;
    let followed = follow(channel.clone(), id, progress, &mut last);
    let view = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, followed).await {
            Ok(view) => view?,
            Err(_) => {
                let now = match last {
                    Some(state) => format!("is still {state}"),
                    None => "could not be read".to_string(),
                };
                return Err(CliError::Status {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("request {id} {now} after {} s", timeout.as_secs()),
                });
            }
        },
        None => followed.await?,
    };
    match view.state {
        State::Signed => signed_text(channel, view, output).await,
        state => Err(CliError::Status {
            code: tonic::Code::FailedPrecondition,
            message: format!("request {id} is {state}: {}", printable(&view.state_reason)),
        }),
    }
}

/// Follows request `id` until it is in a terminal state and returns its
/// checked view then; `last` is the last state read. Each transition is
/// written to `progress` once, as it happens: the ones the request had
/// already, then each the coordinator streams (it replays the history
/// first, which is skipped here). A stream that ends before a terminal
/// state (the coordinator shutting down) is opened again.
async fn follow(
    channel: Channel,
    id: &str,
    progress: &mut (dyn std::io::Write + Send),
    last: &mut Option<State>,
) -> Result<RequestView, CliError> {
    let mut client = RequestServiceClient::new(channel.clone());
    let mut shown = 0usize;
    let mut watched = false;
    loop {
        let view = fetch(channel.clone(), id).await?;
        *last = Some(view.state);
        for t in view.transitions.iter().skip(shown) {
            let from = t.from.map(State::as_str).unwrap_or_default();
            write_transition(progress, from, t.to.as_str(), &t.reason);
        }
        shown = shown.max(view.transitions.len());
        if view.state.is_terminal() {
            return Ok(view);
        }
        if watched {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let mut events = client
            .watch_signing_request(pb::WatchSigningRequestRequest {
                request_id: id.to_string(),
            })
            .await?
            .into_inner();
        while let Some(event) = events.message().await? {
            let Some(t) = event.transition else { continue };
            if (event.seq as usize) <= shown {
                continue;
            }
            shown = event.seq as usize;
            write_transition(progress, &t.from_state, &t.to_state, &t.reason);
            if let Some(state) = State::parse(&t.to_state) {
                *last = Some(state);
            }
        }
        // The stream ended: after the terminal transition, which the next
        // fetch returns checked, or early (then watched again, after a
        // pause that keeps a coordinator closing every stream at once from
        // being hammered).
        watched = true;
    }
}

/// One transition, one line: `ringi: FROM -> TO (reason)`; every string
/// came from the coordinator and is shown escaped.
fn write_transition(out: &mut (dyn std::io::Write + Send), from: &str, to: &str, reason: &str) {
    let p = printable;
    let states = if from.is_empty() {
        p(to).to_string()
    } else {
        format!("{} -> {}", p(from), p(to))
    };
    let line = if reason.is_empty() {
        format!("ringi: {states}\n")
    } else {
        format!("ringi: {states} ({})\n", p(reason))
    };
    // Progress only: a closed stderr must not fail the wait.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// What `wait` prints for a SIGNED request.
async fn signed_text(
    channel: Channel,
    view: RequestView,
    output: WaitOutput,
) -> Result<String, CliError> {
    if output != WaitOutput::Signature {
        if view.request.psbt.is_none() {
            return Err(CliError::Usage(format!(
                "request {} signs a raw message, not a PSBT: it has no transaction (use --output signature)",
                view.id_hex()
            )));
        }
        // The signed transaction must be the request's PSBT with
        // signatures that verify under the key's output key.
        let (_, key) = crate::keys::fetch(channel, view.request.key_id.as_str()).await?;
        view::check_with_key(&view, &key)?;
    }
    Ok(match output {
        // `from_pb` checked it is there, of a signature's length.
        WaitOutput::Signature => hex::encode(view.signature.unwrap_or_default()),
        WaitOutput::Tx => hex::encode(view.signed_transaction.unwrap_or_default()),
        WaitOutput::Psbt => base64(&view.signed_psbt.unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    //! `wait` against an in-process fake coordinator whose Watch stream the
    //! test drives event by event.

    use std::sync::{Arc, Mutex};

    use ringi_policy::key_id::KeyId;
    use ringi_policy::request::{Metadata, SigningRequest};
    use ringi_proto::coordinator::v1::request_service_server::{
        RequestService, RequestServiceServer,
    };
    use tokio::sync::mpsc;
    use tonic::{Request, Response, Status};

    use super::*;

    type Events = mpsc::Receiver<Result<pb::SigningRequestEvent, Status>>;

    struct Fake {
        /// What GetSigningRequest answers.
        view: Mutex<pb::SigningRequestView>,
        /// What the first WatchSigningRequest streams.
        events: Mutex<Option<Events>>,
    }

    #[derive(Clone)]
    struct FakeService(Arc<Fake>);

    #[tonic::async_trait]
    impl RequestService for FakeService {
        async fn submit_signing_request(
            &self,
            _: Request<pb::SubmitSigningRequestRequest>,
        ) -> Result<Response<pb::SigningRequestView>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn retry_signing_request(
            &self,
            _: Request<pb::RetrySigningRequestRequest>,
        ) -> Result<Response<pb::SigningRequestView>, Status> {
            Err(Status::unimplemented("fake"))
        }

        type WatchSigningRequestStream =
            tokio_stream::wrappers::ReceiverStream<Result<pb::SigningRequestEvent, Status>>;

        async fn watch_signing_request(
            &self,
            _: Request<pb::WatchSigningRequestRequest>,
        ) -> Result<Response<Self::WatchSigningRequestStream>, Status> {
            let events = self.0.events.lock().unwrap().take();
            let events = events.ok_or_else(|| Status::unavailable("watched once already"))?;
            Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
                events,
            )))
        }

        async fn get_signing_request(
            &self,
            _: Request<pb::GetSigningRequestRequest>,
        ) -> Result<Response<pb::SigningRequestView>, Status> {
            Ok(Response::new(self.0.view.lock().unwrap().clone()))
        }

        async fn list_signing_requests(
            &self,
            _: Request<pb::ListSigningRequestsRequest>,
        ) -> Result<Response<pb::ListSigningRequestsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn decide(
            &self,
            _: Request<pb::DecideRequest>,
        ) -> Result<Response<pb::SigningRequestView>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    /// What `wait` wrote to stderr.
    #[derive(Clone, Default)]
    struct Progress(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Progress {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Progress {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// Waits until `line` has been written.
        async fn until(&self, line: &str) {
            while !self.text().lines().any(|l| l == line) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }

    /// The same request every call: its time is read once per test
    /// process (read per call, a test that spans a second boundary saw two
    /// requests with two ids).
    fn request() -> SigningRequest {
        static NOW: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let now = *NOW.get_or_init(ringi_policy::clock::now);
        SigningRequest {
            key_id: KeyId::parse("hot-1").unwrap(),
            message: vec![0xab; 32],
            metadata: Metadata {
                asset: "BTC".into(),
                amount: 1000,
                destination: "bc1qexample".into(),
                memo: String::new(),
            },
            psbt: None,
            requester: "wallet-service".into(),
            created_at: now,
            expires_at: now + 600,
            policy_hash: [7; 32],
            nonce: vec![5; 16],
        }
    }

    fn transition(from: &str, to: &str, reason: &str) -> pb::Transition {
        pb::Transition {
            from_state: from.into(),
            to_state: to.into(),
            reason: reason.into(),
            at: 0,
        }
    }

    /// The request in `state` after `transitions`.
    fn view(state: &str, transitions: &[pb::Transition]) -> pb::SigningRequestView {
        let r = request();
        pb::SigningRequestView {
            request_id: hex::encode(r.id()),
            request: Some(ringi_proto::bundle::request_to_pb(&r)),
            state: state.into(),
            content_digest: hex::encode(r.content_digest()),
            transitions: transitions.to_vec(),
            ..Default::default()
        }
    }

    fn event(seq: u32, t: &pb::Transition) -> Result<pb::SigningRequestEvent, Status> {
        Ok(pb::SigningRequestEvent {
            seq,
            transition: Some(t.clone()),
            request: None,
        })
    }

    /// A fake coordinator showing `first`, a channel to its Watch stream,
    /// and a client channel to it.
    async fn start(
        first: pb::SigningRequestView,
    ) -> (
        Arc<Fake>,
        mpsc::Sender<Result<pb::SigningRequestEvent, Status>>,
        Channel,
    ) {
        let (tx, rx) = mpsc::channel(16);
        let fake = Arc::new(Fake {
            view: Mutex::new(first),
            events: Mutex::new(Some(rx)),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RequestServiceServer::new(FakeService(fake.clone())))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        (fake, tx, channel)
    }

    const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

    #[tokio::test]
    async fn wait_writes_each_transition_as_it_happens_and_prints_only_the_signature() {
        let submitted = transition("", "PENDING_APPROVAL", "submitted");
        let approved = transition("PENDING_APPROVAL", "APPROVED", "quorum met");
        let signing = transition("APPROVED", "SIGNING", "signing round started");
        let signed = transition("SIGNING", "SIGNED", "signed by signer-1, signer-2");
        let (fake, events, channel) =
            start(view("PENDING_APPROVAL", std::slice::from_ref(&submitted))).await;
        let id = fake.view.lock().unwrap().request_id.clone();
        let progress = Progress::default();
        let mut writer = progress.clone();
        let coordinator = async {
            progress.until("ringi: PENDING_APPROVAL (submitted)").await;
            // The coordinator replays the history first: not shown twice.
            events.send(event(1, &submitted)).await.unwrap();
            events.send(event(2, &approved)).await.unwrap();
            // Shown while the request is still on its way, not at the end.
            progress
                .until("ringi: PENDING_APPROVAL -> APPROVED (quorum met)")
                .await;
            let mut v = view(
                "SIGNED",
                &[
                    submitted.clone(),
                    approved.clone(),
                    signing.clone(),
                    signed.clone(),
                ],
            );
            v.signature = vec![5; 65];
            *fake.view.lock().unwrap() = v;
            events.send(event(3, &signing)).await.unwrap();
            events.send(event(4, &signed)).await.unwrap();
            drop(events);
        };
        let waited = wait_with(
            channel,
            &id,
            10 * SECOND,
            WaitOutput::Signature,
            &mut writer,
        );
        let (printed, ()) =
            tokio::time::timeout(10 * SECOND, async { tokio::join!(waited, coordinator) })
                .await
                .expect("wait ends once the stream reports SIGNED");
        assert_eq!(printed.unwrap(), hex::encode([5u8; 65]));
        assert_eq!(
            progress.text(),
            "ringi: PENDING_APPROVAL (submitted)\n\
             ringi: PENDING_APPROVAL -> APPROVED (quorum met)\n\
             ringi: APPROVED -> SIGNING (signing round started)\n\
             ringi: SIGNING -> SIGNED (signed by signer-1, signer-2)\n"
        );
    }

    #[tokio::test]
    async fn wait_fails_with_the_reason_of_a_veto() {
        let submitted = transition("", "PENDING_APPROVAL", "submitted");
        let vetoed = transition(
            "PENDING_APPROVAL",
            "REJECTED",
            "rejected by erin (security): no",
        );
        let (fake, events, channel) =
            start(view("PENDING_APPROVAL", std::slice::from_ref(&submitted))).await;
        let id = fake.view.lock().unwrap().request_id.clone();
        let progress = Progress::default();
        let mut writer = progress.clone();
        let coordinator = async {
            progress.until("ringi: PENDING_APPROVAL (submitted)").await;
            let mut v = view("REJECTED", &[submitted.clone(), vetoed.clone()]);
            v.state_reason = vetoed.reason.clone();
            *fake.view.lock().unwrap() = v;
            events.send(event(2, &vetoed)).await.unwrap();
            drop(events);
        };
        let waited = wait_with(
            channel,
            &id,
            10 * SECOND,
            WaitOutput::Signature,
            &mut writer,
        );
        let (waited, ()) = tokio::join!(waited, coordinator);
        let e = waited.unwrap_err();
        assert!(
            matches!(&e, CliError::Status { code: tonic::Code::FailedPrecondition, message }
                if message.ends_with("is REJECTED: rejected by erin (security): no")),
            "{e}"
        );
        assert_eq!(
            progress.text(),
            "ringi: PENDING_APPROVAL (submitted)\n\
             ringi: PENDING_APPROVAL -> REJECTED (rejected by erin (security): no)\n"
        );
    }

    #[tokio::test]
    async fn wait_gives_up_at_its_time_limit() {
        let submitted = transition("", "PENDING_APPROVAL", "submitted");
        let (fake, _events, channel) = start(view("PENDING_APPROVAL", &[submitted])).await;
        let id = fake.view.lock().unwrap().request_id.clone();
        let started = std::time::Instant::now();
        let e = wait_with(
            channel,
            &id,
            SECOND,
            WaitOutput::Signature,
            &mut Progress::default(),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < 5 * SECOND);
        assert!(
            matches!(&e, CliError::Status { code: tonic::Code::DeadlineExceeded, message }
                if message.ends_with("is still PENDING_APPROVAL after 1 s")),
            "{e}"
        );
    }
}
