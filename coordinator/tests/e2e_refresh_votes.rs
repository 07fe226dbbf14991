//! A compromised coordinator against a refresh's switch, on real signers
//! (mutual TLS, SoftHSM tokens): the test drives the refresh DKG itself,
//! with the coordinator's certificate, and then tries to activate some
//! signers' refreshed shares and discard the others', which would split the
//! key into generations that no longer reach the threshold. Each signer
//! acts only on the other participants' sealed votes
//! (`ringi-signer`'s `refresh_vote.rs`), so the key keeps signing, and an
//! honest `ringi keys refresh` settles what the attacker left.

mod support;

use std::collections::BTreeMap;

use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

type Client = pb::signer_client::SignerClient<tonic::transport::Channel>;

/// What a refresh DKG driven by the test left on each signer.
struct Driven {
    session_id: Vec<u8>,
    package: Vec<u8>,
    group_key: Vec<u8>,
}

/// Runs a refresh DKG of `key_id` on every signer up to (not including)
/// the store step, as a coordinator would.
async fn refresh_dkg(
    clients: &mut [Client],
    key_id: &str,
    participants: &[pb::DkgParticipant],
    current_package: &[u8],
    session: u8,
) -> Driven {
    let session_id = vec![session; 16];
    let mut round1 = BTreeMap::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let r = client
            .dkg_round1(pb::DkgRound1Request {
                key_id: key_id.into(),
                session_id: session_id.clone(),
                identifier: i as u32 + 1,
                min_signers: 2,
                participants: participants.to_vec(),
                refresh: true,
                public_key_package: current_package.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        round1.insert(i as u32 + 1, r.round1_package);
    }
    let mut sealed = BTreeMap::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let me = i as u32 + 1;
        let others = round1
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        let r = client
            .dkg_round2(pb::DkgRound2Request {
                key_id: key_id.into(),
                session_id: session_id.clone(),
                round1_packages: others,
            })
            .await
            .unwrap()
            .into_inner();
        sealed.insert(me, r.sealed_round2_packages);
    }
    let mut finished = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let me = i as u32 + 1;
        let to_me = sealed
            .iter()
            .filter(|(sender, _)| **sender != me)
            .map(|(sender, packages)| (*sender, packages[&me].clone()))
            .collect();
        finished.push(
            client
                .dkg_finish(pb::DkgFinishRequest {
                    key_id: key_id.into(),
                    session_id: session_id.clone(),
                    sealed_round2_packages: to_me,
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    assert!(
        finished
            .iter()
            .all(|f| f.public_key_package == finished[0].public_key_package)
    );
    Driven {
        session_id,
        package: finished[0].public_key_package.clone(),
        group_key: finished[0].group_public_key.clone(),
    }
}

async fn commit(client: &mut Client, key_id: &str, run: &Driven) -> pb::DkgCommitResponse {
    client
        .dkg_commit(pb::DkgCommitRequest {
            key_id: key_id.into(),
            session_id: run.session_id.clone(),
            group_public_key: run.group_key.clone(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn vote(
    client: &mut Client,
    key_id: &str,
    package: &[u8],
    participants: &[pb::DkgParticipant],
) -> pb::RefreshVoteResponse {
    client
        .refresh_vote(pb::RefreshVoteRequest {
            key_id: key_id.into(),
            public_key_package: package.to_vec(),
            participants: participants.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn activate(
    client: &mut Client,
    key_id: &str,
    participants: &[pb::DkgParticipant],
    votes: BTreeMap<u32, Vec<u8>>,
) -> Result<pb::ActivateShareResponse, tonic::Status> {
    client
        .activate_share(pb::ActivateShareRequest {
            key_id: key_id.into(),
            generation: 1,
            participants: participants.to_vec(),
            stored_votes: votes,
        })
        .await
        .map(|r| r.into_inner())
}

async fn discard(
    client: &mut Client,
    key_id: &str,
    participants: &[pb::DkgParticipant],
    votes: BTreeMap<u32, Vec<u8>>,
) -> Result<pb::DiscardShareResponse, tonic::Status> {
    client
        .discard_share(pb::DiscardShareRequest {
            key_id: key_id.into(),
            generation: 1,
            participants: participants.to_vec(),
            aborted_votes: votes,
        })
        .await
        .map(|r| r.into_inner())
}

/// Signer `i`'s (generation in use, waiting generation) of `key_id`.
async fn generations(cluster: &Cluster, i: usize, key_id: &str) -> (u32, u32) {
    let share = cluster
        .node_info(i)
        .await
        .key_shares
        .into_iter()
        .find(|k| k.key_id == key_id)
        .unwrap();
    (share.generation, share.pending_generation)
}

fn refused(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("a signer acted without the votes it needs");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_cannot_switch_some_signers_and_strand_the_others() {
    let mut cluster = Cluster::start_tls(3);
    let signers = ["signer-1", "signer-2", "signer-3"];
    let group_key = cluster.keygen("k", 2, &signers);
    let recorded = cluster.coordinator_key("k").await.public_key_package;
    let participants = cluster.dkg_participants().await;
    let mut c = Vec::new();
    for i in 0..3 {
        c.push(cluster.signer_client(i).await);
    }

    // 1. The attacker stores the refreshed share on signers 1 and 2 only.
    let run = refresh_dkg(&mut c, "k", &participants, &recorded, 1).await;
    let one = commit(&mut c[0], "k", &run).await;
    let two = commit(&mut c[1], "k", &run).await;
    assert_eq!((one.generation, two.generation), (1, 1));
    assert_eq!(one.stored_votes.keys().copied().collect::<Vec<_>>(), [2, 3]);

    // Signer 1 will not switch without signer 3's stored vote, nor on a
    // vote that is not what it claims to be.
    refused(
        activate(&mut c[0], "k", &participants, BTreeMap::new()).await,
        Code::FailedPrecondition,
        "no stored vote from participants [2, 3]",
    );
    refused(
        activate(
            &mut c[0],
            "k",
            &participants,
            [(2, two.stored_votes[&1].clone())].into(),
        )
        .await,
        Code::FailedPrecondition,
        "no stored vote from participants [3]",
    );
    refused(
        activate(
            &mut c[0],
            "k",
            &participants,
            [
                (2, two.stored_votes[&1].clone()),
                (3, two.stored_votes[&1].clone()),
            ]
            .into(),
        )
        .await,
        Code::PermissionDenied,
        "vote from participant 3 does not open",
    );
    // Signer 3's own vote to signer 2, relayed to signer 1, does not open.
    refused(
        activate(
            &mut c[0],
            "k",
            &participants,
            [
                (2, two.stored_votes[&1].clone()),
                (3, one.stored_votes[&2].clone()),
            ]
            .into(),
        )
        .await,
        Code::PermissionDenied,
        "does not open",
    );
    // Nor will signer 2 drop its refreshed share without an aborted vote:
    // none at all, or a stored vote passed off as one.
    refused(
        discard(&mut c[1], "k", &participants, BTreeMap::new()).await,
        Code::FailedPrecondition,
        "no participant has voted that it aborted",
    );
    refused(
        discard(
            &mut c[1],
            "k",
            &participants,
            [(1, one.stored_votes[&2].clone())].into(),
        )
        .await,
        Code::PermissionDenied,
        "aborted vote from participant 1 does not open",
    );
    for i in 0..2 {
        assert_eq!(generations(&cluster, i, "k").await, (0, 1));
    }

    // Signer 3 never stored: it votes aborted, and from then on it cannot
    // store that refresh; signers 1 and 2 discard on its vote.
    let three = vote(&mut c[2], "k", &run.package, &participants).await;
    assert_eq!(three.vote(), pb::RefreshVoteKind::RefreshVoteAborted);
    let late = c[2]
        .dkg_commit(pb::DkgCommitRequest {
            key_id: "k".into(),
            session_id: run.session_id.clone(),
            group_public_key: run.group_key.clone(),
        })
        .await
        .expect_err("a node that voted aborted stored the share after all");
    assert_eq!(late.code(), Code::NotFound, "{late:?}");
    // Signer 1, which stored, votes stored however often it is asked.
    let again = vote(&mut c[0], "k", &run.package, &participants).await;
    assert_eq!(again.vote(), pb::RefreshVoteKind::RefreshVoteStored);
    for (i, client) in c.iter_mut().enumerate().take(2) {
        let me = i as u32 + 1;
        let answer = discard(
            client,
            "k",
            &participants,
            [(3, three.votes[&me].clone())].into(),
        )
        .await
        .unwrap();
        assert!(answer.discarded);
        assert_eq!(generations(&cluster, i, "k").await, (0, 0));
    }
    // The old shares still sign, with any two signers.
    for pair in [["signer-1", "signer-2"], ["signer-2", "signer-3"]] {
        let signature = cluster.sign("k", b"after the stranded refresh", &pair);
        assert!(frost_verify(
            &group_key,
            b"after the stranded refresh",
            &signature
        ));
    }

    // 2. Every signer stores; the attacker switches signer 1 only, and
    // finds no way to make signers 2 and 3 drop theirs.
    let run = refresh_dkg(&mut c, "k", &participants, &recorded, 2).await;
    let mut stored = Vec::new();
    for client in c.iter_mut() {
        stored.push(commit(client, "k", &run).await);
    }
    for (i, client) in c.iter_mut().enumerate() {
        let answer = vote(client, "k", &run.package, &participants).await;
        assert_eq!(
            answer.vote(),
            pb::RefreshVoteKind::RefreshVoteStored,
            "signer {i}"
        );
    }
    refused(
        discard(
            &mut c[2],
            "k",
            &participants,
            [(1, stored[0].stored_votes[&3].clone())].into(),
        )
        .await,
        Code::PermissionDenied,
        "does not open",
    );
    let to_one: BTreeMap<u32, Vec<u8>> = [
        (2, stored[1].stored_votes[&1].clone()),
        (3, stored[2].stored_votes[&1].clone()),
    ]
    .into();
    let switched = activate(&mut c[0], "k", &participants, to_one.clone())
        .await
        .unwrap();
    assert_eq!(
        (switched.already_active, switched.retired_generation),
        (false, 0)
    );
    assert_eq!(generations(&cluster, 0, "k").await, (1, 0));
    assert_eq!(generations(&cluster, 1, "k").await, (0, 1));
    let log = std::fs::read_to_string(cluster.signers[0].dir.join("data/audit.jsonl")).unwrap();
    assert!(
        log.contains("refresh_activated") && log.contains("2,3"),
        "{log}"
    );

    // The coordinator's database is lost on top of it: the key is imported
    // with the refreshed package, the one every signer holds (in use on
    // signer 1, waiting on the others).
    cluster.stop_coordinator();
    std::fs::remove_dir_all(cluster.dir.path().join("coordinator")).unwrap();
    cluster.start_coordinator();
    let out = cluster.ringi(&["keys", "import-from-signers", "k"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.coordinator_key("k").await.public_key_package,
        run.package
    );

    // The honest coordinator's refresh settles it: every signer votes
    // stored, so the other two switch.
    let out = cluster.ringi(&["keys", "refresh", "k"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("settle"), "{stderr}");
    assert_eq!(
        cluster.coordinator_key("k").await.public_key_package,
        run.package
    );
    for i in 0..3 {
        assert_eq!(generations(&cluster, i, "k").await, (1, 0), "signer {i}");
    }
    for pair in [
        ["signer-1", "signer-2"],
        ["signer-1", "signer-3"],
        ["signer-2", "signer-3"],
    ] {
        let signature = cluster.sign("k", b"after the settled refresh", &pair);
        assert!(frost_verify(
            &group_key,
            b"after the settled refresh",
            &signature
        ));
    }
    // Each signer's audit trail names its votes.
    let log = std::fs::read_to_string(cluster.signers[2].dir.join("data/audit.jsonl")).unwrap();
    assert!(
        log.contains("refresh_vote") && log.contains("aborted") && log.contains("stored"),
        "{log}"
    );
}
