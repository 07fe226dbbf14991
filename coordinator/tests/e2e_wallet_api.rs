//! The wallet-service API over real processes: idempotent submission under
//! concurrent retries, identical submissions under two idempotency keys,
//! and the watch stream.

mod support;

use std::sync::Arc;

use ringi_policy::statement::Decision;
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use support::*;
use tonic::Code;
use tonic::transport::Channel;

async fn client(cluster: &Cluster) -> RequestServiceClient<Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.coordinator_address))
            .unwrap()
            .connect()
            .await
            .unwrap();
    RequestServiceClient::new(channel)
}

fn submission(message: &[u8], idempotency_key: &str) -> pb::SubmitSigningRequestRequest {
    pb::SubmitSigningRequestRequest {
        key_id: "hot-1".into(),
        message: message.to_vec(),
        asset: "BTC".into(),
        amount: "1000".into(),
        destination: "bc1qdest".into(),
        memo: "payout".into(),
        requester: "wallet-service".into(),
        signers: vec![],
        idempotency_key: idempotency_key.into(),
        psbt: Vec::new(),
    }
}

async fn approve_both(
    cluster: &Cluster,
    client: &mut RequestServiceClient<Channel>,
    view: &pb::SigningRequestView,
) {
    let request = ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        client
            .decide(pb::DecideRequest {
                approval: Some(cluster.approval(&request, who, dept, Decision::Approve)),
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_retries_make_one_request_and_one_signature() {
    let cluster = Arc::new(Cluster::start(3));
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    let c = client(&cluster).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move {
                c.submit_signing_request(submission(b"pay once", "order-42"))
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().unwrap().into_inner().request_id);
    }
    assert_eq!(ids.len(), 1, "one request for one idempotency key");
    let id = ids.into_iter().next().unwrap();

    // The same key with other content is refused, and creates nothing.
    let mut c2 = c.clone();
    let err = c2
        .submit_signing_request(submission(b"pay twice", "order-42"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains("different content"),
        "{}",
        err.message()
    );
    let err = c2
        .submit_signing_request(submission(b"no key", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let listed = c2
        .list_signing_requests(pb::ListSigningRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.requests.len(), 1);

    let view = c2
        .get_signing_request(pb::GetSigningRequestRequest {
            request_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    approve_both(&cluster, &mut c2, &view).await;
    let out = cluster.wait(&id);
    assert!(out.status.success());
    let signature = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(independent_verify(&group_key, b"pay once", &signature));

    // Retrying after it was signed returns the same signed request: no
    // second request, no second signing.
    let again = c2
        .submit_signing_request(submission(b"pay once", "order-42"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.request_id, id);
    assert_eq!(again.state, "SIGNED");
    assert_eq!(again.signature, signature);
    let signed_transitions = again
        .transitions
        .iter()
        .filter(|t| t.to_state == "SIGNED")
        .count();
    assert_eq!(signed_transitions, 1);
}

/// Two identical submissions (same content, same requester) within one
/// second, under two idempotency keys, are two requests with two ids (their
/// nonces differ). Each is approved with the real CLI, which recomputes its
/// id from the fields it is shown, nonce included, and signed by the real
/// signers, which recompute it from the bundle: so the nonce reaches both.
/// Resending either idempotency key returns its own request.
#[tokio::test(flavor = "multi_thread")]
async fn identical_submissions_in_one_second_are_two_requests() {
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut c = client(&cluster).await;
    // Two submissions take milliseconds; should they straddle a second
    // boundary, try again with fresh keys, so the pair shares its second.
    let mut pair = None;
    for attempt in 0..5 {
        let (key_a, key_b) = (format!("twin-a-{attempt}"), format!("twin-b-{attempt}"));
        let a = c
            .submit_signing_request(submission(b"twin payout", &key_a))
            .await
            .unwrap()
            .into_inner();
        let b = c
            .submit_signing_request(submission(b"twin payout", &key_b))
            .await
            .expect("an identical submission under another key is another request")
            .into_inner();
        if a.request.as_ref().unwrap().created_at == b.request.as_ref().unwrap().created_at {
            pair = Some(((key_a, a), (key_b, b)));
            break;
        }
    }
    let ((key_a, a), (key_b, b)) = pair.expect("two submissions within one second");
    assert_ne!(a.request_id, b.request_id);
    let (wa, wb) = (a.request.as_ref().unwrap(), b.request.as_ref().unwrap());
    assert_eq!(wa.nonce.len(), 16);
    assert_eq!(wb.nonce.len(), 16);
    assert_ne!(wa.nonce, wb.nonce);
    // One content, what approvals name; each view's request hashes to its id.
    assert_eq!(a.content_digest, b.content_digest);
    for view in [&a, &b] {
        let request = ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
        assert_eq!(hex::encode(request.id()), view.request_id);
    }
    // The CLI shows the nonce the id is computed over.
    let shown: serde_json::Value = serde_json::from_str(&cluster.ringi_ok(&[
        "requests",
        "show",
        &a.request_id,
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(shown["nonce"], hex::encode(&wa.nonce));

    for view in [&a, &b] {
        for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
            let out = cluster.approve(&view.request_id, who, dept);
            assert!(
                out.status.success(),
                "approve: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut signatures = Vec::new();
    for view in [&a, &b] {
        let out = cluster.wait(&view.request_id);
        assert!(
            out.status.success(),
            "wait {}: {}",
            view.request_id,
            String::from_utf8_lossy(&out.stderr)
        );
        let signature = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        assert!(independent_verify(&group_key, b"twin payout", &signature));
        signatures.push(signature);
    }

    // Each idempotency key still names its own request, SIGNED once.
    for (key, view, signature) in [(&key_a, &a, &signatures[0]), (&key_b, &b, &signatures[1])] {
        let again = c
            .submit_signing_request(submission(b"twin payout", key))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.request_id, view.request_id);
        assert_eq!(
            again.request.as_ref().unwrap().nonce,
            view.request.as_ref().unwrap().nonce
        );
        assert_eq!(again.state, "SIGNED");
        assert_eq!(&again.signature, signature);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_every_transition_in_order_until_the_end() {
    let cluster = Cluster::start(3);
    cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut c = client(&cluster).await;
    let view = c
        .submit_signing_request(submission(b"watched", "w-1"))
        .await
        .unwrap()
        .into_inner();
    let mut stream = c
        .watch_signing_request(pb::WatchSigningRequestRequest {
            request_id: view.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.transition.unwrap().to_state, "PENDING_APPROVAL");

    approve_both(&cluster, &mut c, &view).await;
    let mut states = Vec::new();
    let mut last = None;
    while let Some(event) = stream.message().await.unwrap() {
        assert_eq!(
            event.seq as usize,
            states.len() + 2,
            "in order, none skipped"
        );
        states.push(event.transition.unwrap().to_state);
        last = event.request;
    }
    assert_eq!(states, ["APPROVED", "SIGNING", "SIGNED"]);
    assert_eq!(
        last.unwrap().signature.len(),
        65,
        "the stream ends with the signed request"
    );

    // A rejected request's stream ends at REJECTED.
    let view = c
        .submit_signing_request(submission(b"vetoed", "w-2"))
        .await
        .unwrap()
        .into_inner();
    let request = ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
    let mut stream = c
        .watch_signing_request(pb::WatchSigningRequestRequest {
            request_id: view.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    c.decide(pb::DecideRequest {
        approval: Some(cluster.approval(&request, "erin", "security", Decision::Reject)),
    })
    .await
    .unwrap();
    let mut states = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        states.push(event.transition.unwrap().to_state);
    }
    assert_eq!(states, ["PENDING_APPROVAL", "REJECTED"]);

    let err = c
        .watch_signing_request(pb::WatchSigningRequestRequest {
            request_id: "00".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// `grpc.health.v1` and server reflection answer on the coordinator and on
/// a signer, as grpcurl-style tools expect.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_on_coordinator_and_signers() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let cluster = Cluster::start(1);
    for (address, service) in [
        (
            cluster.coordinator_address.clone(),
            "ringi.coordinator.v1.RequestService",
        ),
        (cluster.signers[0].address.clone(), "ringi.signer.v1.Signer"),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        for name in [service, ""] {
            let status = health
                .check(HealthCheckRequest {
                    service: name.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{address} {name:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == service), "{names:?}");
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
    }
}
