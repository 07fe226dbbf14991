//! Department approvals over real processes: the coordinator's flow, every
//! refusal path, an approver key in a SoftHSM token, a coordinator restart
//! between approvals, and the bypass test: a client with the coordinator's
//! access calling the signers directly.

mod support;

use std::collections::BTreeMap;

use frost_secp256k1::round1::SigningCommitments;
use frost_secp256k1::{Identifier, SigningPackage};
use ringi_policy::statement::Decision;
use ringi_proto::approval::v1::ApprovalBundle;
use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

fn show(cluster: &Cluster, id: &str) -> serde_json::Value {
    serde_json::from_str(&cluster.ringi_ok(&["requests", "show", id, "--output", "json"])).unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn signs_only_after_every_required_department_with_a_token_approver() {
    // carol (compliance) approves with a key inside a SoftHSM token.
    let cluster = Cluster::start_with(3, Some("carol"));
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    let message = b"sighash of a 0.00001 BTC withdrawal".to_vec();
    let id = cluster.submit("hot-1", &message, 1000, "wallet-service", &[]);
    let v = show(&cluster, &id);
    assert_eq!(v["state"], "PENDING_APPROVAL");
    assert_eq!(v["still_needed"].as_array().unwrap().len(), 2);

    assert!(cluster.approve(&id, "alice", "treasury").status.success());
    let v = show(&cluster, &id);
    assert_eq!(
        v["state"], "PENDING_APPROVAL",
        "one department is not enough"
    );
    assert_eq!(v["still_needed"][0]["department"], "compliance");
    assert_eq!(v["signature"], "");

    let token = cluster.dir.path().join("approver-carol");
    let out = std::process::Command::new(ringi_bin())
        .env("RINGI_COORDINATOR", &cluster.coordinator_address)
        .envs(node_env(&token))
        .args([
            "approve",
            &id,
            "--department",
            "compliance",
            "--token",
            "approver-carol",
            "--key-label",
            "carol",
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = cluster.wait(&id);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let signature = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(independent_verify(&group_key, &message, &signature));
    let v = show(&cluster, &id);
    let states: Vec<&str> = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["PENDING_APPROVAL", "APPROVED", "SIGNING", "SIGNED"]
    );
    let approvers: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["approver"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["alice", "carol"]);

    // The token key is sensitive and never leaves the token.
    let pin = std::fs::read_to_string(token.join("pin")).unwrap();
    let listing = std::process::Command::new("pkcs11-tool")
        .envs(node_env(&token))
        .args([
            "--module",
            &cluster.signers[0].module(),
            "--token-label",
            "approver-carol",
            "--login",
            "--pin",
            pin.trim(),
            "--list-objects",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let private = pkcs11_object(&listing, "Private Key Object", "carol");
    assert!(private.contains("sensitive"), "{listing}");
}

#[test]
fn every_refusal_path_through_the_cli() {
    let cluster = Cluster::start(3);
    cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.keygen("short-req", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.keygen("short-appr", 2, &["signer-1", "signer-2", "signer-3"]);
    let id = cluster.submit("hot-1", b"m1", 1000, "wallet-service", &[]);

    // Key in the wrong department.
    let out = cluster.approve(&id, "alice", "compliance");
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("alice belongs to \"treasury\", not \"compliance\"")
            && stderr_of(&out).contains("PermissionDenied"),
        "{}",
        stderr_of(&out)
    );
    // Same key twice: another statement (issued a second later) is a
    // conflict. (The very same statement again would be idempotent: the
    // CLI signs deterministically, so within one second it is the same.)
    assert!(cluster.approve(&id, "alice", "treasury").status.success());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = cluster.approve(&id, "alice", "treasury");
    assert!(
        stderr_of(&out).contains("has already decided")
            && stderr_of(&out).contains("AlreadyExists"),
        "{}",
        stderr_of(&out)
    );
    // Missing department: still pending, nothing signed.
    let v = show(&cluster, &id);
    assert_eq!(v["state"], "PENDING_APPROVAL");
    assert_eq!(v["still_needed"][0]["department"], "compliance");
    // Veto, then nothing more can be decided.
    let dave = cluster.key_file("dave");
    let out = cluster.ringi(&[
        "reject",
        &id,
        "--department",
        "compliance",
        "--reason",
        "sanctioned address",
        "--key-file",
        &dave,
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v = show(&cluster, &id);
    assert_eq!(v["state"], "REJECTED");
    assert!(
        v["state_reason"]
            .as_str()
            .unwrap()
            .contains("rejected by dave (compliance): sanctioned address")
    );
    let out = cluster.approve(&id, "carol", "compliance");
    assert!(
        stderr_of(&out).contains("already decided"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(show(&cluster, &id)["signature"], "");

    // The requester cannot approve.
    let id = cluster.submit("hot-1", b"m2", 1000, "alice", &[]);
    let out = cluster.approve(&id, "alice", "treasury");
    assert!(
        stderr_of(&out).contains("separation of duties"),
        "{}",
        stderr_of(&out)
    );

    // Above the tier, the base quorum is not enough.
    let id = cluster.submit("hot-1", b"m3", 5_000_000, "wallet-service", &[]);
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let v = show(&cluster, &id);
    assert_eq!(v["state"], "PENDING_APPROVAL");
    let needed: Vec<String> = v["still_needed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "{} {} of {}",
                n["department"].as_str().unwrap(),
                n["have"],
                n["need"]
            )
        })
        .collect();
    assert_eq!(needed, ["security 0 of 1", "treasury 1 of 2"]);
    for (who, dept) in [("bob", "treasury"), ("erin", "security")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    assert!(
        cluster.wait(&id).status.success(),
        "the stricter quorum signs"
    );

    // An expired approval no longer counts (approval_ttl_secs = 3).
    let id = cluster.submit("short-appr", b"m4", 1000, "wallet-service", &[]);
    assert!(cluster.approve(&id, "alice", "treasury").status.success());
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert!(cluster.approve(&id, "carol", "compliance").status.success());
    let v = show(&cluster, &id);
    assert_eq!(v["state"], "PENDING_APPROVAL", "alice's approval expired");
    let short: Vec<&str> = v["still_needed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["department"].as_str().unwrap())
        .collect();
    assert!(short.contains(&"treasury"), "{short:?}");

    // An expired request (request_ttl_secs = 2) can no longer be approved.
    let id = cluster.submit("short-req", b"m5", 1000, "wallet-service", &[]);
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let out = cluster.approve(&id, "alice", "treasury");
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("EXPIRED") || stderr_of(&out).contains("expired"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(show(&cluster, &id)["state"], "EXPIRED");

    // One nobody reads is expired by the sweep, with its audit entry: the
    // sweeps after the first read only the waiting requests whose time has
    // passed (`requests::sweep`), and this one must be among them.
    let unread = cluster.submit("short-req", b"m5b", 1000, "wallet-service", &[]);
    let audit = cluster.dir.path().join("coordinator/audit.jsonl");
    let expired_entry = format!("\"request_id\":\"{unread}\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let trail = std::fs::read_to_string(&audit).unwrap_or_default();
        if trail
            .lines()
            .any(|l| l.contains("\"request_expired\"") && l.contains(&expired_entry))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request {unread} not expired by a sweep"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(show(&cluster, &unread)["state"], "EXPIRED");

    // A key that is not in the roster.
    let id = cluster.submit("hot-1", b"m6", 1000, "wallet-service", &[]);
    let mallory = cluster.dir.path().join("mallory.pem");
    ringi_cli::approver::generate_key_file(&mallory).unwrap();
    let out = cluster.ringi(&[
        "approve",
        &id,
        "--department",
        "treasury",
        "--key-file",
        mallory.to_str().unwrap(),
        "--yes",
    ]);
    assert!(
        stderr_of(&out).contains("not in the policy's roster")
            && stderr_of(&out).contains("PermissionDenied"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        show(&cluster, &id)["decisions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing recorded"
    );
    // A key file that is not a key.
    let junk = cluster.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let out = cluster.ringi(&[
        "approve",
        &id,
        "--department",
        "treasury",
        "--key-file",
        junk.to_str().unwrap(),
        "--yes",
    ]);
    assert!(
        stderr_of(&out).contains("is not a PKCS#8 PEM P-256 private key"),
        "{}",
        stderr_of(&out)
    );

    // Unknown request.
    let out = cluster.approve(&"ab".repeat(32), "alice", "treasury");
    assert!(
        stderr_of(&out).contains("does not exist") && stderr_of(&out).contains("NotFound"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn approvals_survive_a_coordinator_restart() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    let id = cluster.submit("hot-1", b"restart", 1000, "wallet-service", &[]);
    assert!(cluster.approve(&id, "alice", "treasury").status.success());
    cluster.stop_coordinator();
    cluster.start_coordinator();
    let v = show(&cluster, &id);
    assert_eq!(
        v["decisions"].as_array().unwrap().len(),
        1,
        "alice's approval was kept"
    );
    assert!(cluster.approve(&id, "carol", "compliance").status.success());
    let out = cluster.wait(&id);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let signature = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(independent_verify(&group_key, b"restart", &signature));
}

#[test]
fn the_coordinator_refuses_a_policy_with_a_zero_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), None);
    let text = std::fs::read_to_string(&policy).unwrap().replacen(
        "compliance = 1 }",
        "compliance = 0 }",
        1,
    );
    std::fs::write(&policy, text).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\npolicy_file = \"{}\"\n",
            dir.path().display(),
            policy.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(ringi_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("sets a quorum of 0 for department \"compliance\""),
        "{}",
        stderr_of(&out)
    );
}

fn id(n: u16) -> Identifier {
    Identifier::try_from(n).unwrap()
}

/// Round 1 on signers 1 and 2 with `bundle`, returning the signing package.
async fn commit_both(cluster: &Cluster, message: &[u8], bundle: &ApprovalBundle) -> SigningPackage {
    let mut commitments = BTreeMap::new();
    for n in [1u16, 2] {
        let r = cluster
            .signer_client(n as usize - 1)
            .await
            .commit(pb::CommitRequest {
                key_id: "hot-1".into(),
                approval_bundle: Some(bundle.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        commitments.insert(
            id(n),
            SigningCommitments::deserialize(&r.commitments).unwrap(),
        );
    }
    SigningPackage::new(commitments, message)
}

async fn sign_on_1(
    cluster: &Cluster,
    package: &SigningPackage,
    bundle: Option<ApprovalBundle>,
) -> tonic::Status {
    cluster
        .signer_client(0)
        .await
        .sign(pb::SignRequest {
            excluded_identifiers: Vec::new(),
            key_id: "hot-1".into(),
            signing_package: package.serialize().unwrap(),
            approval_bundle: bundle,
        })
        .await
        .expect_err("the signer must refuse")
}

/// A client holding everything the coordinator holds calls the signers
/// directly. Without valid approvals for this exact message, no share.
#[tokio::test(flavor = "multi_thread")]
async fn the_bypass_test() {
    let cluster = Cluster::start(3);
    cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    let approved = [("alice", "treasury"), ("carol", "compliance")];
    let (request, good) = cluster.bundle("hot-1", b"approved payment", &approved);
    let package = commit_both(&cluster, b"approved payment", &good).await;

    // No approvals at all.
    let err = sign_on_1(&cluster, &package, None).await;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("no approval bundle"),
        "{}",
        err.message()
    );
    let err = cluster
        .signer_client(0)
        .await
        .commit(pb::CommitRequest {
            key_id: "hot-1".into(),
            approval_bundle: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "round 1 is refused too");

    // Forged: signed by a key outside the roster, then a roster key's name
    // put on a signature it did not make.
    let forged_dir = tempfile::tempdir().unwrap();
    let mallory = forged_dir.path().join("mallory.pem");
    ringi_cli::approver::generate_key_file(&mallory).unwrap();
    let mallory = ringi_cli::approver::ApproverSigner::from_file(&mallory).unwrap();
    let mut forged = good.clone();
    let now = ringi::requests::now();
    let statement = ringi_policy::statement::Statement::for_request(
        &request,
        "treasury",
        Decision::Approve,
        "",
        now,
        now + 60,
    );
    let signature = mallory
        .sign(&statement.signed_bytes(&mallory.public_key()))
        .unwrap();
    forged.approvals[0] = ringi_proto::bundle::approval_to_pb(&ringi_policy::statement::Approval {
        statement: statement.clone(),
        approver: mallory.public_key(),
        signature: signature.clone(),
    });
    let err = sign_on_1(&cluster, &package, Some(forged.clone())).await;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not in the policy's roster"),
        "{}",
        err.message()
    );
    forged.approvals[0].approver_public_key = good.approvals[0].approver_public_key.clone();
    let err = sign_on_1(&cluster, &package, Some(forged)).await;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("signature does not verify"),
        "{}",
        err.message()
    );

    // Valid approvals, but for another message: the request in the bundle
    // is the approved one and the package signs something else...
    let other_package =
        SigningPackage::new(package.signing_commitments().clone(), b"attacker's payment");
    let err = sign_on_1(&cluster, &other_package, Some(good.clone())).await;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not the message that was approved"),
        "{}",
        err.message()
    );
    // ...or the bundle's request is altered to the other message, and the
    // approvals no longer match it.
    let mut altered = good.clone();
    altered.request.as_mut().unwrap().message = b"attacker's payment".to_vec();
    let err = sign_on_1(&cluster, &other_package, Some(altered)).await;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("for another request"),
        "{}",
        err.message()
    );

    // The same content under another nonce is another request (a twin
    // submitted in the same second): the signer recomputes the id with the
    // nonce, and the approvals of one do not authorize the other.
    let mut twin = good.clone();
    twin.request.as_mut().unwrap().nonce[0] ^= 1;
    let err = sign_on_1(&cluster, &package, Some(twin)).await;
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("for another request"),
        "{}",
        err.message()
    );
    // A nonce of another length than 16 bytes does not decode.
    let mut short = good.clone();
    short.request.as_mut().unwrap().nonce.pop();
    let err = sign_on_1(&cluster, &package, Some(short)).await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains(
            "nonce must be 16 bytes (or empty, for a request made before nonces), got 15"
        ),
        "{}",
        err.message()
    );

    // Approvals replayed from another request.
    let (_, other_bundle) = cluster.bundle("hot-1", b"another request", &approved);
    let mut replayed = good.clone();
    replayed.approvals = other_bundle.approvals.clone();
    let err = sign_on_1(&cluster, &package, Some(replayed)).await;
    assert_eq!(err.code(), Code::PermissionDenied);

    // One department only, or the same approver twice: quorum not met.
    let (_, one) = cluster.bundle("hot-1", b"approved payment", &[("alice", "treasury")]);
    let err = sign_on_1(&cluster, &package, Some(one)).await;
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("quorum not met: compliance 0 of 1"),
        "{}",
        err.message()
    );
    let (_, twice) = cluster.bundle(
        "hot-1",
        b"approved payment",
        &[("alice", "treasury"), ("alice", "treasury")],
    );
    let err = sign_on_1(&cluster, &package, Some(twice)).await;
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A veto in the bundle.
    let mut vetoed = good.clone();
    vetoed
        .approvals
        .push(cluster.approval(&request, "erin", "security", Decision::Reject));
    let err = sign_on_1(&cluster, &package, Some(vetoed)).await;
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("rejected by erin"),
        "{}",
        err.message()
    );

    // After all those refusals, the real approvals still work: the refusals
    // consumed no nonce.
    let share = cluster
        .signer_client(0)
        .await
        .sign(pb::SignRequest {
            excluded_identifiers: Vec::new(),
            key_id: "hot-1".into(),
            signing_package: package.serialize().unwrap(),
            approval_bundle: Some(good),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(share.signature_share.len(), 32);
}
