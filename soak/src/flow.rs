//! One signing request, end to end, as a wallet and its approvers make it:
//! submit, every department's approval sent at the same moment, then wait
//! for a terminal state. Every step survives a coordinator restart: a call
//! that fails on the transport (or answers UNAVAILABLE) is made again,
//! identically, after a backoff — the same idempotency key for the
//! submission (the coordinator returns the request it made first), the very
//! same signed statement for an approval (the coordinator answers OK with
//! the current view), a new watch of the same request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};
use ringi::request_state::State;
use ringi_cli::approver::ApproverSigner;
use ringi_cli::view::{self, RequestView};
use ringi_policy::statement::{Approval, Decision, Statement};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The longest one call may take before it counts as a transport failure
/// (a coordinator killed mid-call may leave a connection that never answers).
/// The channel (`ringi_net::tls::connect_lazy`) gives up after 10 s too, as
/// a wallet's client would: a call cut off there is made again.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A department's approver. The key sits behind a mutex: a token-backed
/// signer holds a PKCS#11 session, which must not be used from two threads.
pub struct Approver {
    pub department: String,
    pub signer: Mutex<ApproverSigner>,
}

/// What every request shares.
pub struct Ctx {
    pub channel: Channel,
    pub key_id: String,
    pub approvers: Vec<Approver>,
    /// From the first submission to the terminal state, at most.
    pub request_timeout: Duration,
    /// Makes this run's idempotency keys unique across runs.
    pub run_tag: String,
}

/// One approval as sent, and whether the coordinator acknowledged it.
pub struct Sent {
    pub approval: Approval,
    /// `Ok` once an attempt was answered OK; otherwise the last error.
    pub answer: Result<(), String>,
    /// The transport failures after which it was sent again.
    pub retried_after: Vec<String>,
}

/// How a request ended, as the driver saw it.
pub enum Outcome {
    /// The watch delivered a terminal state (SIGNED or not).
    Terminal(Box<RequestView>),
    /// No request id was ever obtained.
    NotSubmitted(String),
    /// Still not terminal at the deadline; the last state seen.
    TimedOut(Option<State>),
    /// The coordinator no longer knows the request id it gave.
    Lost,
    /// Any other refusal or a view that failed its checks.
    Error(String),
}

pub struct Record {
    pub index: usize,
    pub message: [u8; 32],
    pub id: Option<[u8; 32]>,
    pub approvals: Vec<Sent>,
    pub outcome: Outcome,
    /// From the first submission attempt to the terminal state seen.
    pub latency: Duration,
    /// Every transport failure after which a call was made again (or a
    /// watch begun again), as "step: code: message".
    pub retried_after: Vec<String>,
}

impl Record {
    pub fn signed_view(&self) -> Option<&RequestView> {
        match &self.outcome {
            Outcome::Terminal(v) if v.state == State::Signed => Some(v),
            _ => None,
        }
    }
}

/// Whether a failed call may simply be made again: the coordinator was
/// unreachable, or the connection broke before an answer arrived.
pub fn transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => true,
        // hyper reports a connection reset under a stream as an h2 error.
        Code::Internal => {
            let m = status.message();
            m.contains("h2 protocol error") || m.contains("connection")
        }
        _ => false,
    }
}

fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Makes `call` until it is answered with something other than a transport
/// failure, or `deadline` passes; notes each failure retried in `retried`.
async fn retrying<T, F, Fut>(
    deadline: Instant,
    retried: &mut Vec<String>,
    step: &str,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let limit = CALL_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let result = match tokio::time::timeout(limit, call()).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded("no answer in time")),
        };
        match result {
            Err(s) if transient(&s) && Instant::now() + backoff < deadline => {
                retried.push(format!("{step}: {}", status_text(&s)));
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

fn client(ctx: &Ctx) -> RequestServiceClient<Channel> {
    RequestServiceClient::new(ctx.channel.clone())
}

fn status_text(s: &Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Runs request number `index` to its end.
pub async fn run(ctx: Arc<Ctx>, index: usize) -> Record {
    let started = Instant::now();
    let deadline = started + ctx.request_timeout;
    let mut message = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut message);
    let mut record = Record {
        index,
        message,
        id: None,
        approvals: Vec::new(),
        outcome: Outcome::NotSubmitted(String::new()),
        latency: Duration::ZERO,
        retried_after: Vec::new(),
    };
    record.outcome = drive(&ctx, &mut record, deadline).await;
    record.latency = started.elapsed();
    record
}

async fn drive(ctx: &Ctx, record: &mut Record, deadline: Instant) -> Outcome {
    let submit = pb::SubmitSigningRequestRequest {
        key_id: ctx.key_id.clone(),
        message: record.message.to_vec(),
        asset: "SOAK".into(),
        amount: "1".into(),
        destination: "soak".into(),
        memo: format!("soak request {}", record.index),
        idempotency_key: format!("{}-{}", ctx.run_tag, record.index),
        ..Default::default()
    };
    let answer = retrying(deadline, &mut record.retried_after, "submit", || {
        let (mut c, submit) = (client(ctx), submit.clone());
        async move { c.submit_signing_request(submit).await }
    })
    .await;
    let view = match answer.map(|r| view::from_pb(&r.into_inner())) {
        Ok(Ok(view)) => view,
        Ok(Err(e)) => return Outcome::NotSubmitted(format!("submission answer refused: {e}")),
        Err(s) => return Outcome::NotSubmitted(status_text(&s)),
    };
    record.id = Some(view.id);
    if view.request.message != record.message {
        return Outcome::Error("the request recorded another message".into());
    }

    // Signed once, before anything is sent: a resend is the very same statement.
    record.approvals = match ctx
        .approvers
        .iter()
        .map(|a| approve(a, &view))
        .collect::<Result<Vec<_>, String>>()
    {
        Ok(approvals) => approvals
            .into_iter()
            .map(|approval| Sent {
                approval,
                answer: Err("not sent".into()),
                retried_after: Vec::new(),
            })
            .collect(),
        Err(e) => return Outcome::Error(e),
    };
    let answers = futures::future::join_all(
        record
            .approvals
            .iter()
            .map(|sent| decide(ctx, &sent.approval, deadline)),
    )
    .await;
    for (sent, (answer, retried)) in record.approvals.iter_mut().zip(answers) {
        sent.answer = answer;
        record.retried_after.extend(retried.iter().cloned());
        sent.retried_after = retried;
    }

    wait_terminal(ctx, &view.id_hex(), deadline, &mut record.retried_after).await
}

/// `approver`'s approval of the request `view` shows, valid for what the
/// coordinator proposes.
fn approve(approver: &Approver, view: &RequestView) -> Result<Approval, String> {
    let window = view::approval_window(ringi_policy::clock::now(), view.approval_ttl_secs)
        .map_err(|e| e.to_string())?;
    let statement = Statement::for_request(
        &view.request,
        &approver.department,
        Decision::Approve,
        "",
        window.issued_at,
        window.expires_at,
    );
    let signer = approver.signer.lock().unwrap_or_else(|e| e.into_inner());
    let key = signer.public_key();
    let signature = signer
        .sign(&statement.signed_bytes(&key))
        .map_err(|e| format!("signing the {} approval: {e}", approver.department))?;
    Ok(Approval {
        statement,
        approver: key,
        signature,
    })
}

/// Sends `approval` until an answer; returns it and the transport
/// failures it was sent again after.
async fn decide(
    ctx: &Ctx,
    approval: &Approval,
    deadline: Instant,
) -> (Result<(), String>, Vec<String>) {
    let wire = pb::DecideRequest {
        approval: Some(ringi_proto::bundle::approval_to_pb(approval)),
    };
    let step = format!("decide {}", approval.statement.department);
    let mut retried = Vec::new();
    let answer = retrying(deadline, &mut retried, &step, || {
        let (mut c, wire) = (client(ctx), wire.clone());
        async move { c.decide(wire).await }
    })
    .await;
    (answer.map(|_| ()).map_err(|s| status_text(&s)), retried)
}

/// Watches the request until a terminal state, watching again after every
/// broken stream.
async fn wait_terminal(
    ctx: &Ctx,
    id: &str,
    deadline: Instant,
    retried: &mut Vec<String>,
) -> Outcome {
    let mut last = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let watch = pb::WatchSigningRequestRequest {
            request_id: id.to_string(),
        };
        let stream = retrying(deadline, retried, "watch", || {
            let (mut c, watch) = (client(ctx), watch.clone());
            async move { c.watch_signing_request(watch).await }
        })
        .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Outcome::Lost,
            Err(s) if transient(&s) => return Outcome::TimedOut(last),
            Err(s) => return Outcome::Error(format!("watch: {}", status_text(&s))),
        };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, stream.message()).await {
                Err(_) => return Outcome::TimedOut(last),
                Ok(Ok(Some(event))) => {
                    let Some(wire) = event.request else {
                        return Outcome::Error("a watch event without the request".into());
                    };
                    let view = match view::from_pb(&wire) {
                        Ok(v) => v,
                        Err(e) => return Outcome::Error(format!("watch event refused: {e}")),
                    };
                    last = Some(view.state);
                    if view.state.is_terminal() {
                        return Outcome::Terminal(Box::new(view));
                    }
                }
                // The stream ended or broke before a terminal state (the
                // coordinator went away): watch again.
                Ok(Ok(None)) => {
                    retried.push("watch: the stream ended before a terminal state".into());
                    break;
                }
                Ok(Err(s)) if transient(&s) => {
                    retried.push(format!("watch: {}", status_text(&s)));
                    break;
                }
                Ok(Err(s)) => return Outcome::Error(format!("watch: {}", status_text(&s))),
            }
        }
        if Instant::now() + backoff >= deadline {
            return Outcome::TimedOut(last);
        }
        tokio::time::sleep(jittered(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The request as the API shows it now (after the run: every process is
/// up again, so a transport failure is retried for a while only).
pub async fn fetch(ctx: &Ctx, id: &[u8; 32]) -> Result<RequestView, String> {
    let get = pb::GetSigningRequestRequest {
        request_id: hex::encode(id),
    };
    let answer = retrying(
        Instant::now() + Duration::from_secs(60),
        &mut Vec::new(),
        "get",
        || {
            let (mut c, get) = (client(ctx), get.clone());
            async move { c.get_signing_request(get).await }
        },
    )
    .await
    .map_err(|s| status_text(&s))?;
    view::from_pb(&answer.into_inner()).map_err(|e| e.to_string())
}

/// Every request of the key in the store, and its state, page by page.
pub async fn listing(ctx: &Ctx) -> Result<std::collections::BTreeMap<[u8; 32], String>, String> {
    let mut listed = std::collections::BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let list = pb::ListSigningRequestsRequest {
            key_id: ctx.key_id.clone(),
            page_size: 500,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = retrying(
            Instant::now() + Duration::from_secs(60),
            &mut Vec::new(),
            "list",
            || {
                let (mut c, list) = (client(ctx), list.clone());
                async move { c.list_signing_requests(list).await }
            },
        )
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
        for v in &page.requests {
            let id = view::parse_request_id(&v.request_id).map_err(|e| e.to_string())?;
            listed.insert(id, v.state.clone());
        }
        if page.next_page_token.is_empty() {
            return Ok(listed);
        }
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_are_retried() {
        assert!(transient(&Status::unavailable("connection refused")));
        assert!(transient(&Status::unknown("transport error")));
        assert!(transient(&Status::internal(
            "h2 protocol error: error reading a body from connection"
        )));
        // Answers of the coordinator itself are final.
        assert!(!transient(&Status::internal("database failed")));
        assert!(!transient(&Status::not_found("no such request")));
        assert!(!transient(&Status::failed_precondition("already decided")));
        assert!(!transient(&Status::already_exists("approver decided")));
    }
}
