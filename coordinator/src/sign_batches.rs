//! Round-2 calls to one signer, gathered into `SignBatch` calls while
//! earlier ones are in flight.
//!
//! With many approved requests signing at once, most of a signer's cost
//! per `Sign` is not the signing: it is the call (HTTP/2 and TLS framing on
//! both sides, a blocking-thread hop), the share's unsealing in the token
//! and the ledger's durable commit. A `SignBatch` pays each once for many
//! Signs of one key (`signer/src/round2.rs`, `sign_each`), and answers
//! each item exactly as its own `Sign` would have.
//!
//! How, without adding latency: each signer has a queue and at most
//! [`IN_FLIGHT`] calls out at a time. A Sign that finds a call slot free
//! and nothing queued goes out at once, alone, as a plain `Sign`, from its
//! caller's task (one signing at a time is as fast as before). Signs that
//! arrive while the slots are taken wait in the queue; when a slot frees,
//! everything queued for one key goes out as one `SignBatch` (up to
//! [`MAX_BATCH`]). So batches form only under load, and grow with it. (The
//! requests of a batch are kept until it is answered, to send them one by
//! one to a signer that turns out not to know `SignBatch`.)
//!
//! A signer that does not know `SignBatch` (UNIMPLEMENTED) gets each item
//! as a `Sign` from then on. A call that fails whole (the signer
//! unreachable, a timeout) fails each of its items with that status: the
//! signing round treats it as it treats a failed `Sign` (asked again with
//! the same package, which a signer that did sign answers with the same
//! share).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures::future::join_all;
use ringi_proto::signer::v1 as pb;
use ringi_proto::signer::v1::signer_client::SignerClient;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Calls to one signer out at a time (Sign or SignBatch).
pub const IN_FLIGHT: usize = 2;

/// The most Signs in one `SignBatch` (the signer's own limit,
/// `signer/src/round2.rs` `MAX_SIGN_BATCH`).
pub const MAX_BATCH: usize = 64;

/// One signer's queue of round-2 calls. Cloned with its signer; the task
/// that sends the queued calls starts with the first Sign that waits
/// (inside the runtime).
#[derive(Clone)]
pub struct SignBatches {
    client: SignerClient<Channel>,
    /// The signer's call slots ([`IN_FLIGHT`]).
    slots: Arc<Semaphore>,
    /// Signs queued and not yet taken into a call.
    waiting: Arc<AtomicUsize>,
    queue: Arc<OnceLock<mpsc::UnboundedSender<Queued>>>,
}

struct Queued {
    request: pb::SignRequest,
    answer: oneshot::Sender<Result<pb::SignResponse, Status>>,
}

impl SignBatches {
    pub fn new(client: SignerClient<Channel>) -> Self {
        SignBatches {
            client,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            waiting: Arc::default(),
            queue: Arc::default(),
        }
    }

    /// Round 2 at this signer: the answer its `Sign` gives `request`
    /// (sent alone or in a batch).
    pub async fn sign(&self, request: pb::SignRequest) -> Result<pb::SignResponse, Status> {
        // A free slot and nobody waiting: the call goes out from here, with
        // no hand-off to the queue's task (one signing at a time).
        if self.waiting.load(Ordering::SeqCst) == 0
            && let Ok(_slot) = self.slots.clone().try_acquire_owned()
        {
            return self.client.clone().sign(request).await.map(|r| {
                crate::phases::record_signer(r.metadata());
                r.into_inner()
            });
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_calls(
                self.client.clone(),
                self.slots.clone(),
                self.waiting.clone(),
                rx,
            ));
            tx
        });
        let (answer, answered) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if queue.send(Queued { request, answer }).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::unavailable(
                "the coordinator's call queue to this signer is closed",
            ));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(Status::internal("a Sign call was dropped unanswered")))
    }
}

/// The queue's task: takes a call slot, then everything queued by then,
/// and sends it, one call per key.
async fn send_calls(
    client: SignerClient<Channel>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) {
    let batches = Arc::new(AtomicBool::new(true));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let mut by_key: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
        by_key
            .entry(first.request.key_id.clone())
            .or_default()
            .push(first);
        let mut taken = 1;
        while taken < MAX_BATCH {
            let Ok(next) = queue.try_recv() else { break };
            by_key
                .entry(next.request.key_id.clone())
                .or_default()
                .push(next);
            taken += 1;
        }
        waiting.fetch_sub(taken, Ordering::SeqCst);
        let client = client.clone();
        let batches = batches.clone();
        tokio::spawn(async move {
            join_all(
                by_key
                    .into_iter()
                    .map(|(key_id, items)| call(client.clone(), &batches, key_id, items)),
            )
            .await;
            drop(slot);
        });
    }
}

/// One key's queued Signs: alone as `Sign`, several as `SignBatch` (or as
/// separate `Sign`s to a signer without it).
async fn call(
    client: SignerClient<Channel>,
    batches: &AtomicBool,
    key_id: String,
    items: Vec<Queued>,
) {
    if items.len() == 1 || !batches.load(Ordering::Relaxed) {
        each_alone(&client, items).await;
        return;
    }
    crate::phases::count("sign_batches", 1);
    crate::phases::count("sign_batch_items", items.len() as u64);
    let (requests, answers): (Vec<pb::SignRequest>, Vec<_>) =
        items.into_iter().map(|q| (q.request, q.answer)).unzip();
    let sent = client
        .clone()
        .sign_batch(pb::SignBatchRequest {
            key_id,
            items: requests.clone(),
        })
        .await;
    match sent {
        Ok(response) => {
            crate::phases::record_signer(response.metadata());
            let results = response.into_inner().results;
            let count = results.len();
            let mut results = results.into_iter();
            for answer in answers {
                let result = match results.next() {
                    Some(result) => item_answer(result),
                    None => Err(Status::internal(format!(
                        "the signer answered a SignBatch of {} items with {count} results",
                        requests.len()
                    ))),
                };
                let _ = answer.send(result);
            }
        }
        Err(status) if status.code() == Code::Unimplemented => {
            tracing::info!("a signer does not know SignBatch: its Signs go out one by one");
            batches.store(false, Ordering::Relaxed);
            let items = requests
                .into_iter()
                .zip(answers)
                .map(|(request, answer)| Queued { request, answer });
            each_alone(&client, items).await;
        }
        Err(status) => {
            for answer in answers {
                let _ = answer.send(Err(status.clone()));
            }
        }
    }
}

/// `items` as separate `Sign`s, at once.
async fn each_alone(client: &SignerClient<Channel>, items: impl IntoIterator<Item = Queued>) {
    join_all(
        items
            .into_iter()
            .map(|item| sign_alone(client.clone(), item)),
    )
    .await;
}

async fn sign_alone(mut client: SignerClient<Channel>, item: Queued) {
    let result = client.sign(item.request).await.map(|r| {
        crate::phases::record_signer(r.metadata());
        r.into_inner()
    });
    let _ = item.answer.send(result);
}

/// One item's answer in a `SignBatchResponse`, as its `Sign` would have
/// answered.
fn item_answer(result: pb::SignResult) -> Result<pb::SignResponse, Status> {
    match result.outcome {
        Some(pb::sign_result::Outcome::Response(response)) => Ok(response),
        Some(pb::sign_result::Outcome::Refusal(refusal)) => {
            Err(Status::new(Code::from(refusal.code), refusal.message))
        }
        None => Err(Status::internal(
            "the signer answered a SignBatch item with nothing",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use ringi_proto::signer::v1::signer_server::{Signer, SignerServer};
    use tonic::{Request, Response};

    use super::*;

    /// A signer of before `SignBatch` (a test double, on loopback): every
    /// call but `Sign` is UNIMPLEMENTED, as tonic answers an unknown method.
    /// Its `Sign` answers, slowly, with the package as the share, and
    /// counts; so does `SignBatch`.
    #[derive(Default, Clone)]
    struct OldSigner {
        signs: Arc<AtomicU32>,
        batches: Arc<AtomicU32>,
    }

    /// `impl Signer for OldSigner`: the calls named UNIMPLEMENTED, the
    /// methods given as written.
    macro_rules! old_signer {
        ([$($name:ident: $req:ident => $resp:ident),* $(,)?] $($methods:item)*) => {
            #[tonic::async_trait]
            impl Signer for OldSigner {
                $(
                    async fn $name(
                        &self,
                        _: Request<pb::$req>,
                    ) -> Result<Response<pb::$resp>, Status> {
                        Err(Status::unimplemented(stringify!($name)))
                    }
                )*
                $($methods)*
            }
        };
    }

    old_signer! {
        [
            get_node_info: GetNodeInfoRequest => GetNodeInfoResponse,
            dkg_round1: DkgRound1Request => DkgRound1Response,
            dkg_round2: DkgRound2Request => DkgRound2Response,
            dkg_finish: DkgFinishRequest => DkgFinishResponse,
            dkg_commit: DkgCommitRequest => DkgCommitResponse,
            dkg_abort: DkgAbortRequest => DkgAbortResponse,
            activate_share: ActivateShareRequest => ActivateShareResponse,
            discard_share: DiscardShareRequest => DiscardShareResponse,
            refresh_vote: RefreshVoteRequest => RefreshVoteResponse,
            repair_help: RepairHelpRequest => RepairHelpResponse,
            repair_combine: RepairCombineRequest => RepairCombineResponse,
            repair_receive: RepairReceiveRequest => RepairReceiveResponse,
            commit: CommitRequest => CommitResponse,
            preprocess: PreprocessRequest => PreprocessResponse,
        ]

        async fn sign(
            &self,
            request: Request<pb::SignRequest>,
        ) -> Result<Response<pb::SignResponse>, Status> {
            self.signs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(Response::new(pb::SignResponse {
                signature_share: request.into_inner().signing_package,
            }))
        }

        async fn sign_batch(
            &self,
            _: Request<pb::SignBatchRequest>,
        ) -> Result<Response<pb::SignBatchResponse>, Status> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            Err(Status::unimplemented("SignBatch"))
        }
    }

    /// A signer without `SignBatch`: the Signs a batch would have carried
    /// go out one by one, each answered with its own share, and no batch is
    /// tried again.
    #[tokio::test]
    async fn a_signer_without_sign_batch_gets_every_sign_alone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let old = OldSigner::default();
        let served = old.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(SignerServer::new(served))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        let calls = SignBatches::new(SignerClient::new(channel));
        let sign = |n: u8| {
            let calls = calls.clone();
            async move {
                calls
                    .sign(pb::SignRequest {
                        key_id: "k".into(),
                        signing_package: vec![n],
                        approval_bundle: None,
                        excluded_identifiers: Vec::new(),
                    })
                    .await
            }
        };
        // Two calls fill the slots; the rest queue and would go as batches.
        for round in 0..2u8 {
            let answers = join_all((0..8u8).map(|n| sign(round * 8 + n))).await;
            for (n, answer) in answers.into_iter().enumerate() {
                assert_eq!(
                    answer.unwrap().signature_share,
                    vec![round * 8 + n as u8],
                    "each Sign gets its own answer"
                );
            }
        }
        assert_eq!(old.signs.load(Ordering::SeqCst), 16);
        assert_eq!(
            old.batches.load(Ordering::SeqCst),
            1,
            "one SignBatch tried, then none"
        );
    }

    #[test]
    fn an_items_refusal_keeps_its_code_and_reason() {
        let refused = item_answer(pb::SignResult {
            outcome: Some(pb::sign_result::Outcome::Refusal(pb::SignRefusal {
                code: Code::FailedPrecondition as i32,
                message: "no unused round-1 nonces match".into(),
            })),
        })
        .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(refused.message(), "no unused round-1 nonces match");
        let share = item_answer(pb::SignResult {
            outcome: Some(pb::sign_result::Outcome::Response(pb::SignResponse {
                signature_share: vec![7; 32],
            })),
        })
        .unwrap();
        assert_eq!(share.signature_share, vec![7; 32]);
        assert_eq!(
            item_answer(pb::SignResult { outcome: None })
                .unwrap_err()
                .code(),
            Code::Internal
        );
    }
}
