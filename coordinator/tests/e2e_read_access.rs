//! Read authorisation over real processes and mutual TLS: two wallets, each
//! allowed one key, read only their own key's requests (another key's
//! request answers exactly as one that does not exist), an approver reads
//! every request, and a configured client with no role reads nothing.

mod support;

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use support::*;
use tonic::Code;
use tonic::transport::Channel;

/// Submits a request for `key_id` as the wallet behind `channel`.
async fn submit(channel: &Channel, key_id: &str, message: &[u8]) -> String {
    RequestServiceClient::new(channel.clone())
        .submit_signing_request(pb::SubmitSigningRequestRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            asset: "BTC".into(),
            amount: "1000".into(),
            destination: "bc1qdestination".into(),
            idempotency_key: hex::encode(message),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id
}

async fn get(channel: &Channel, id: &str) -> Result<pb::SigningRequestView, tonic::Status> {
    RequestServiceClient::new(channel.clone())
        .get_signing_request(pb::GetSigningRequestRequest {
            request_id: id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// The first event of a watch (the request's submission).
async fn watch(channel: &Channel, id: &str) -> Result<pb::SigningRequestEvent, tonic::Status> {
    let mut stream = RequestServiceClient::new(channel.clone())
        .watch_signing_request(pb::WatchSigningRequestRequest {
            request_id: id.into(),
        })
        .await?
        .into_inner();
    Ok(stream.message().await?.expect("a first event"))
}

/// Every request id listed (all pages of `page_size`), and the pages.
async fn list(
    channel: &Channel,
    key_id: &str,
    page_size: u32,
) -> Result<(Vec<String>, usize), tonic::Status> {
    let mut client = RequestServiceClient::new(channel.clone());
    let (mut ids, mut pages, mut page_token) = (Vec::new(), 0, String::new());
    loop {
        let page = client
            .list_signing_requests(pb::ListSigningRequestsRequest {
                key_id: key_id.into(),
                page_size,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        pages += 1;
        ids.extend(page.requests.into_iter().map(|v| v.request_id));
        if page.next_page_token.is_empty() {
            return Ok((ids, pages));
        }
        page_token = page.next_page_token;
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn wallets_read_only_their_keys_and_approvers_read_every_request() {
    let cluster = Cluster::start_tls(2);
    cluster.keygen("hot-1", 2, &["signer-1", "signer-2"]);
    cluster.keygen("cold-1", 2, &["signer-1", "signer-2"]);
    // limited-wallet: hot-1 only; cold-wallet: cold-1 only;
    // approver-desk: the approver role alone; no-role: configured, no role.
    let hot_wallet = cluster.channel_as("limited-wallet").await;
    let cold_wallet = cluster.channel_as("cold-wallet").await;
    let approver = cluster.channel_as("approver-desk").await;
    let no_role = cluster.channel_as("no-role").await;

    let hot = [
        submit(&hot_wallet, "hot-1", b"hot a").await,
        submit(&hot_wallet, "hot-1", b"hot b").await,
    ];
    let cold = submit(&cold_wallet, "cold-1", b"cold a").await;
    let unknown = "ab".repeat(32);

    for (wallet, name, own, own_key, others, other_key) in [
        (
            &hot_wallet,
            "limited-wallet",
            hot.to_vec(),
            "hot-1",
            vec![cold.clone()],
            "cold-1",
        ),
        (
            &cold_wallet,
            "cold-wallet",
            vec![cold.clone()],
            "cold-1",
            hot.to_vec(),
            "hot-1",
        ),
    ] {
        // Its own requests: Get, Watch, List (every page holds only its own).
        for id in &own {
            assert_eq!(&get(wallet, id).await.unwrap().request_id, id);
            let first = watch(wallet, id).await.unwrap();
            assert_eq!(first.request.unwrap().request_id, *id);
        }
        let (listed, pages) = list(wallet, "", 1).await.unwrap();
        assert_eq!(sorted(listed), sorted(own.clone()), "{name} lists its own");
        assert!(pages >= own.len(), "{name}: one request a page");
        let (listed, _) = list(wallet, own_key, 0).await.unwrap();
        assert_eq!(sorted(listed), sorted(own.clone()));
        // Another key's request: exactly what an unknown id gets.
        let missing = get(wallet, &unknown).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        assert_eq!(
            missing.message(),
            format!("request {unknown} does not exist")
        );
        for id in &others {
            let err = get(wallet, id).await.unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{name} read {id}");
            assert_eq!(err.message(), format!("request {id} does not exist"));
            let err = watch(wallet, id).await.unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{name} watched {id}");
            assert_eq!(err.message(), format!("request {id} does not exist"));
        }
        // Naming another key in a listing: refused by the caller's scope.
        let err = list(wallet, other_key, 0).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(
            err.message(),
            format!("client {name:?} may not read requests for key {other_key:?}")
        );
    }

    // The approver reads everything.
    let all = sorted(vec![hot[0].clone(), hot[1].clone(), cold.clone()]);
    for id in &all {
        assert_eq!(&get(&approver, id).await.unwrap().request_id, id);
        assert_eq!(
            &watch(&approver, id)
                .await
                .unwrap()
                .request
                .unwrap()
                .request_id,
            id
        );
    }
    assert_eq!(sorted(list(&approver, "", 0).await.unwrap().0), all);
    assert_eq!(
        list(&approver, "cold-1", 0).await.unwrap().0,
        vec![cold.clone()]
    );
    // So does a wallet allowed every key.
    let any_wallet = cluster.channel_as("wallet-service").await;
    assert_eq!(sorted(list(&any_wallet, "", 0).await.unwrap().0), all);

    // A configured client without a role reads nothing.
    let expected =
        "client \"no-role\" has no role that may read requests (wallet, approver or admin)";
    let err = get(&no_role, &cold).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, expected)
    );
    let err = watch(&no_role, &cold).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, expected)
    );
    let err = list(&no_role, "", 0).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, expected)
    );

    // The approver's CLI (approver role alone) reads what it needs, shows
    // the request and records its approval.
    let out = cluster.ringi_as(
        "approver-desk",
        &[
            "approve",
            &cold,
            "--department",
            "treasury",
            "--key-file",
            &cluster.key_file("alice"),
            "--yes",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("other open   none for the same message"),
        "{stderr}"
    );
    // The wallet sees the approval on its request.
    let v = get(&cold_wallet, &cold).await.unwrap();
    assert_eq!(v.decisions.len(), 1);
    assert_eq!(v.decisions[0].approver, "alice");
}
