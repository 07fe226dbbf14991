//! How many P-256 verifications one request costs the coordinator, through
//! its real paths in one process: submit, watchers (three from the start,
//! one joining while the request is pending), two Decides, views (Get,
//! List, each Decide's answer, every watch event), the signing run's own
//! check of the approvals (`ApprovedRequest::from_record`), and an
//! operator's retry with the signing run it starts.
//!
//! Each approval signature is verified once per process (the verdict cache,
//! `ringi_policy::verified_signatures`), so the whole flow costs two
//! verifications, one per approval, however many views and watchers there
//! are. Without the cache the same flow cost 17, every evaluation
//! verifying every approval it saw: alice's Decide 2 (her approval alone,
//! then with the others), carol's 3, six views of the request pending with
//! alice's approval (Decide's answer, three Gets, List, the late watcher's
//! first event), and 2 each for the signing run, the retry's check and the
//! retried run. The process-wide counter is why this is a test binary of
//! its own with one test: no other test shares the process.

mod support;

use std::sync::Arc;

use ringi::coordinator::Coordinator;
use ringi::registry::Registry;
use ringi::requests;
use ringi::service::RequestService;
use ringi::sqlite::SqliteStore;
use ringi::store::KeyStore;
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_server::RequestService as _;
use support::in_process::{Approver, key_record, policy, submission};
use tokio_stream::StreamExt;
use tonic::Request;

/// P-256 verifications this process has made (the policy crate's metric).
fn verifications() -> u64 {
    ringi_policy::approver_key::verifications()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_approval_signature_is_verified_once_per_process() {
    let alice = Approver::new("alice", "treasury");
    let carol = Approver::new("carol", "compliance");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("ringi.db")).unwrap());
    store.insert_key(&key_record("hot-1")).unwrap();
    let c = Arc::new(Coordinator::with_store(
        Registry::new(&[]).unwrap(),
        store,
        Some(Arc::new(policy(&[&alice, &carol]))),
    ));
    let service = RequestService(c.clone());
    let before = verifications();

    let record = requests::submit(&c, submission("hot-1", "one"))
        .await
        .unwrap();
    let request_id = hex::encode(record.id);

    // Three watchers from the start, each following the request to its end.
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(watch(&service, &request_id).await);
    }
    let get = || {
        service.get_signing_request(Request::new(pb::GetSigningRequestRequest {
            request_id: request_id.clone(),
        }))
    };

    let view = service
        .decide(Request::new(alice.approve(&record)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.still_needed.len(), 1, "compliance is still needed");
    for _ in 0..3 {
        let view = get().await.unwrap().into_inner();
        assert_eq!(view.still_needed[0].department, "compliance");
    }
    let listed = service
        .list_signing_requests(Request::new(pb::ListSigningRequestsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.requests[0].still_needed.len(), 1);
    // A watcher joining now is first shown the pending request, with what
    // it still needs (an evaluation of alice's approval).
    let late = watch(&service, &request_id).await;

    service
        .decide(Request::new(carol.approve(&record)))
        .await
        .unwrap();
    // The quorum starts the signing run, which checks the approvals again
    // and then fails for want of signers: every watcher sees it end.
    for watcher in watchers {
        assert_eq!(
            watcher.await.unwrap(),
            [
                ("PENDING_APPROVAL".to_string(), 2),
                ("APPROVED".to_string(), 0),
                ("SIGNING".to_string(), 0),
                ("FAILED".to_string(), 0),
            ],
            "each watcher saw every transition"
        );
    }
    assert_eq!(
        late.await.unwrap()[0],
        ("PENDING_APPROVAL".to_string(), 1),
        "the late watcher saw compliance still needed"
    );
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().into_inner().state, "FAILED");
    }

    // An operator's retry checks the approvals again, then a new signing
    // run does, and fails the same way.
    let retried = service
        .retry_signing_request(Request::new(pb::RetrySigningRequestRequest {
            request_id: request_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.state, "APPROVED");
    let states: Vec<String> = watch(&service, &request_id)
        .await
        .await
        .unwrap()
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert_eq!(
        states[3..],
        ["FAILED", "APPROVED", "SIGNING", "FAILED"],
        "the retried run ended"
    );

    let spent = verifications() - before;
    assert_eq!(
        spent, 2,
        "one P-256 verification per approval for the whole flow, not {spent}"
    );
}

/// Follows request `id` to its end: each event's new state and how many
/// departments its view says are still needed. Returns once subscribed.
async fn watch(
    service: &RequestService,
    id: &str,
) -> tokio::task::JoinHandle<Vec<(String, usize)>> {
    let mut events = service
        .watch_signing_request(Request::new(pb::WatchSigningRequestRequest {
            request_id: id.to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            seen.push((
                event.transition.unwrap().to_state,
                event.request.unwrap().still_needed.len(),
            ));
        }
        seen
    })
}
