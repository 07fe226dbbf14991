//! Retiring a key on real processes, SoftHSM tokens and mutual TLS: an
//! order signed by the policy's admin quorum (`ringi keys order ...`),
//! delivered to every signer and the coordinator (`ringi keys retire`);
//! from then the key signs nothing, and after its grace period its shares
//! are gone from every token.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ringi_proto::coordinator::v1 as cpb;
use ringi_proto::signer::v1 as pb;
use support::*;

const SIGNERS: [&str; 3] = ["signer-1", "signer-2", "signer-3"];
const APPROVED: [(&str, &str); 2] = [("alice", "treasury"), ("carol", "compliance")];

/// Whether `labels` holds a share (any generation) of `key_id`.
fn holds_share(labels: &[String], key_id: &str) -> bool {
    let label = format!("ringi-share:{key_id}");
    labels
        .iter()
        .any(|l| *l == label || l.starts_with(&format!("{label}@")))
}

/// Writes an unsigned retirement of `key_id` with `grace_secs` to a file.
fn order_file(cluster: &Cluster, name: &str, key_id: &str, grace_secs: u64) -> PathBuf {
    let grace = grace_secs.to_string();
    let json = cluster.ringi_ok(&["keys", "order", "retire", key_id, "--grace-secs", &grace]);
    let path = cluster.dir.path().join(name);
    std::fs::write(&path, json).unwrap();
    path
}

/// `ringi keys retire FILE` to every signer and the coordinator.
fn deliver(cluster: &Cluster, path: &Path) -> Output {
    let signers = cluster.signer_list();
    cluster.ringi(&[
        "keys",
        "retire",
        path.to_str().unwrap(),
        "--signer",
        &signers,
    ])
}

async fn holds(cluster: &Cluster, i: usize) -> pb::GetHoldsResponse {
    use ringi_net::tls;
    let certs = cluster.certs.as_ref().unwrap();
    let node = &cluster.signers[i];
    // Any certified client may read a signer's holds: the operator here.
    let config = tls::client_config(
        tls::load_certs(&certs.join("operator.pem")).unwrap(),
        tls::load_key(&certs.join("operator.key")).unwrap(),
        &tls::load_certs(&certs.join("ca.pem")).unwrap(),
    )
    .unwrap();
    let channel = tls::connect(&node.address, &node.name, std::sync::Arc::new(config))
        .await
        .unwrap();
    pb::governance_client::GovernanceClient::new(channel)
        .get_holds(pb::GetHoldsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// A direct round 1 on signer `i` for `key_id`, as a coordinator would
/// send it, with an approved bundle.
async fn commit(cluster: &Cluster, i: usize, key_id: &str) -> Result<(), tonic::Status> {
    let (_, bundle) = cluster.bundle(key_id, b"after the retirement", &APPROVED);
    cluster
        .signer_client(i)
        .await
        .commit(pb::CommitRequest {
            key_id: key_id.into(),
            approval_bundle: Some(bundle),
        })
        .await
        .map(|_| ())
}

fn assert_retired_refusal(result: Result<(), tonic::Status>, key_id: &str, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "{what}: {status:?}"
    );
    assert!(
        status
            .message()
            .contains(&format!("key {key_id} is retired")),
        "{what}: {}",
        status.message()
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn audit_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retired_key_signs_nothing_and_its_shares_are_destroyed_after_the_grace_period() {
    let mut cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("k", 2, &SIGNERS);
    cluster.keygen("hot-1", 2, &SIGNERS);
    let signature = cluster.sign("k", b"before the retirement", &[]);
    assert!(frost_verify(
        &group_key,
        b"before the retirement",
        &signature
    ));
    for i in 0..3 {
        assert!(holds_share(&cluster.share_labels(i), "k"));
    }

    // One admin is not a quorum: every signer and the coordinator refuse,
    // and nothing is retired.
    let weak = order_file(&cluster, "weak.json", "k", 3);
    cluster.sign_order(&weak, "alice");
    let out = deliver(&cluster, &weak);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("NOT recorded").count(), 4, "{err}");
    assert!(err.contains("1 of 2 distinct admins"), "{err}");
    assert!(err.contains("in force at 0 of 3 signers"), "{err}");
    // A non-admin's signature (bob, a treasurer) does not count either.
    cluster.sign_order(&weak, "bob");
    let out = deliver(&cluster, &weak);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("NOT recorded").count(), 4, "{err}");
    assert!(err.contains("not an admin"), "{err}");
    assert!(err.contains("PermissionDenied"), "{err}");
    for i in 0..3 {
        assert!(holds(&cluster, i).await.retirements.is_empty());
    }
    assert_eq!(cluster.coordinator_key("k").await.retired_at, 0);
    let signature = cluster.sign("k", b"still in service", &[]);
    assert!(frost_verify(&group_key, b"still in service", &signature));

    // alice and carol (two of the admins alice, carol, erin): retired on
    // every signer and on the coordinator.
    let order = order_file(&cluster, "retire-k.json", "k", 3);
    cluster.sign_order(&order, "alice");
    cluster.sign_order(&order, "carol");
    let shown = cluster.ringi_ok(&[
        "keys",
        "order",
        "show",
        order.to_str().unwrap(),
        "--policy",
        cluster.policy_path.to_str().unwrap(),
    ]);
    assert!(
        shown.contains("(alice)") && shown.contains("(carol)"),
        "{shown}"
    );
    assert!(shown.contains("would be carried out now"), "{shown}");
    let out = deliver(&cluster, &order);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("in force at 3 of 3 signers"), "{err}");
    assert!(
        err.contains("coordinator: retired: takes no request"),
        "{err}"
    );
    let order_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for i in 0..3 {
        let h = holds(&cluster, i).await;
        assert_eq!(h.retirements.len(), 1);
        assert_eq!(h.retirements[0].key_id, "k");
        assert_eq!(hex::encode(&h.retirements[0].order_id), order_id);
        assert_eq!(h.retirements[0].admins, ["alice", "carol"]);
    }
    let signers = cluster.signer_list();
    let shown = cluster.ringi_ok(&["holds", "--signer", &signers]);
    assert_eq!(
        shown.matches("RETIRED k by alice, carol").count(),
        3,
        "{shown}"
    );
    let key = cluster.coordinator_key("k").await;
    assert!(key.retired_at > 0);
    assert_eq!(hex::encode(&key.retirement_order_id), order_id);
    let destroy_after = key.destroy_after;
    let listed = cluster.ringi_ok(&["keys"]);
    assert!(listed.contains("retired at"), "{listed}");

    // A new request for the key is refused by the coordinator...
    let out = cluster.try_submit("k", &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("key k is retired"), "{err}");
    assert!(err.contains("FailedPrecondition"), "{err}");
    // ... and a coordinator that asks anyway gets nothing from any signer:
    // round 1, a refresh's DKG.
    for i in 0..3 {
        assert_retired_refusal(commit(&cluster, i, "k").await, "k", "Commit");
    }
    let participants = cluster.dkg_participants().await;
    let refresh = cluster
        .signer_client(0)
        .await
        .dkg_round1(pb::DkgRound1Request {
            key_id: "k".into(),
            session_id: vec![7; 32],
            identifier: 1,
            min_signers: 2,
            participants,
            kind: String::new(),
            refresh: true,
            public_key_package: key.public_key_package.clone(),
            order: None,
        })
        .await
        .map(|_| ());
    assert_retired_refusal(refresh, "k", "DkgRound1 (refresh)");
    let err = cluster.ringi_err(&["keys", "refresh", "k"]);
    assert!(err.contains("key k is retired"), "{err}");
    // Nor is a share of it handed to a node by a repair, even under a
    // repair order of the admins: the coordinator and the receiving signer
    // refuse.
    let helpers = vec![
        (2, cluster.node_info(1).await.dkg_public_key),
        (3, cluster.node_info(2).await.dkg_public_key),
    ];
    let repair = cluster.repair_order_file(
        "repair-k.json",
        "k",
        1,
        &cluster.node_info(0).await.dkg_public_key,
        &helpers,
        &["alice", "carol"],
    );
    let repair = ringi_proto::key_order::order_to_pb(&ringi_cli::key_order::read(&repair).unwrap());
    let refused =
        cpb::key_service_client::KeyServiceClient::new(cluster.channel_as("operator").await)
            .repair_key(cpb::RepairKeyRequest {
                order: Some(repair.clone()),
                signer: "signer-1".into(),
            })
            .await
            .map(|_| ());
    assert_retired_refusal(refused, "k", "RepairKey");
    let refused = cluster
        .signer_client(0)
        .await
        .repair_receive(pb::RepairReceiveRequest {
            order: Some(repair),
            ..Default::default()
        })
        .await
        .map(|_| ());
    assert_retired_refusal(refused, "k", "RepairReceive");

    // A key retired with a long grace period: a signer restarted still
    // refuses it (the retirement is durable), keeps its share until the
    // grace ends, and the same order delivered again changes nothing.
    let long = order_file(&cluster, "retire-hot.json", "hot-1", 3600);
    cluster.sign_order(&long, "carol");
    cluster.sign_order(&long, "erin");
    let out = deliver(&cluster, &long);
    assert!(out.status.success(), "{}", stderr(&out));
    cluster.signers[1].stop();
    cluster.signers[1].start();
    assert_retired_refusal(
        commit(&cluster, 1, "hot-1").await,
        "hot-1",
        "Commit after a restart",
    );
    assert!(holds_share(&cluster.share_labels(1), "hot-1"));
    let out = deliver(&cluster, &long);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("retired already").count(), 4, "{err}");

    // After the grace period: k's shares are gone from every token (and
    // from what each signer reports); the coordinator sees it too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = Vec::new();
        for i in 0..3 {
            if holds_share(&cluster.share_labels(i), "k") {
                left.push(format!("signer-{} token", i + 1));
            }
            if cluster
                .node_info(i)
                .await
                .key_shares
                .iter()
                .any(|s| s.key_id == "k")
            {
                left.push(format!("signer-{} node info", i + 1));
            }
        }
        if cluster.coordinator_key("k").await.shares_destroyed_at == 0 {
            left.push("coordinator not yet confirmed".into());
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "k's shares not destroyed 60 s after {destroy_after}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ringi::requests::now() >= destroy_after);
    // Still retired (not unknown) without its shares; hot-1's shares stay.
    for i in 0..3 {
        assert_retired_refusal(
            commit(&cluster, i, "k").await,
            "k",
            "Commit after destruction",
        );
        assert!(holds_share(&cluster.share_labels(i), "hot-1"));
        let h = holds(&cluster, i).await;
        let k = h.retirements.iter().find(|r| r.key_id == "k").unwrap();
        assert!(k.destroyed_at >= destroy_after, "{k:?}");
    }

    // The audit trails record each step on every node.
    let coordinator_log = audit_log(&cluster.dir.path().join("coordinator/audit.jsonl"));
    for event in ["key_retire_refused", "key_retired", "key_shares_destroyed"] {
        assert!(
            coordinator_log.contains(&format!("\"{event}\"")),
            "the coordinator's trail lacks {event}"
        );
    }
    for node in &cluster.signers {
        let log = audit_log(&node.dir.join("data/audit.jsonl"));
        for event in ["key_retired", "key_shares_destroyed"] {
            assert!(
                log.contains(&format!("\"{event}\"")),
                "{} lacks {event}",
                node.name
            );
        }
        let destroyed = log
            .lines()
            .find(|l| l.contains("\"key_shares_destroyed\""))
            .unwrap();
        assert!(destroyed.contains("\"k\""), "{destroyed}");
        assert!(destroyed.contains("frost-secp256k1"), "{destroyed}");
    }
}
