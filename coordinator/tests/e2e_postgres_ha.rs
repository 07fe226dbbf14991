//! Two coordinators on one PostgreSQL server (issue 16), real processes
//! throughout: a private PostgreSQL cluster, three signers on SoftHSM
//! tokens over mutual TLS, two `ringi serve` with the same config but their
//! own listen address and data directory. Requests are submitted and
//! approved through both; one coordinator is killed with SIGKILL while it
//! holds signings; the other takes over what it left (its SIGNING requests
//! once their lease passed, its APPROVED ones not yet started). Every
//! request ends SIGNED, exactly once, with a signature that verifies.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ringi_policy::statement::Decision;
use ringi_proto::coordinator::v1 as pb;
use support::pg_server::PgServer;
use support::*;
use tonic::transport::Channel;

const REQUESTS: usize = 200;
const IN_FLIGHT: usize = 16;
/// Short, so the survivor takes the dead one's signings over within the
/// test; production keeps the default (120 s).
const LEASE_SECS: u64 = 4;

/// The second coordinator, killed on drop if the test fails first.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// The two coordinators' channels, by identity, and whether the first one
/// is dead (its calls then go to the second).
struct Coordinators {
    wallet: [Channel; 2],
    approver: [Channel; 2],
    a_dead: AtomicBool,
}

impl Coordinators {
    /// Which coordinator request `i`'s call `step` goes to first.
    fn pick(&self, i: usize, step: usize) -> usize {
        if self.a_dead.load(Ordering::SeqCst) {
            1
        } else {
            (i + step) % 2
        }
    }
}

/// Submits request `i` (idempotent: a retry on the other coordinator
/// returns the same request) and returns it.
async fn submit(c: &Coordinators, i: usize) -> (String, ringi_policy::request::SigningRequest) {
    let mut tries = 0;
    loop {
        let which = c.pick(i, tries);
        let mut client =
            pb::request_service_client::RequestServiceClient::new(c.wallet[which].clone());
        let sent = client
            .submit_signing_request(raw_submission(
                "busy",
                message(i).as_slice(),
                &format!("ha-{i}"),
            ))
            .await;
        match sent {
            Ok(view) => {
                let view = view.into_inner();
                let request =
                    ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
                return (view.request_id, request);
            }
            Err(e) if tries < 20 => {
                // The coordinator it went to was killed: the other one.
                eprintln!("submit {i} on coordinator {which}: {e}; again");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("submit {i}: {e}"),
        }
    }
}

/// Sends an approval; an approval already recorded (the killed coordinator
/// took it before dying) or a request already past approval counts.
/// Returns the coordinator that recorded it.
async fn decide(
    c: &Coordinators,
    i: usize,
    step: usize,
    approval: ringi_proto::approval::v1::Approval,
) -> usize {
    let mut tries = 0;
    loop {
        let which = c.pick(i, step + tries);
        let mut client =
            pb::request_service_client::RequestServiceClient::new(c.approver[which].clone());
        let sent = client
            .decide(pb::DecideRequest {
                approval: Some(approval.clone()),
            })
            .await;
        match sent {
            Ok(_) => return which,
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition
                ) && tries > 0 =>
            {
                return which;
            }
            Err(e) if tries < 20 => {
                eprintln!("decide {i}/{step} on coordinator {which}: {e}; again");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("decide {i}/{step}: {e}"),
        }
    }
}

fn message(i: usize) -> Vec<u8> {
    format!("ha request {i}").into_bytes()
}

/// Rows of `sql`'s first column (a count) in the shared database.
fn count(url: &str, sql: &str) -> i64 {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.query_one(sql, &[]).unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_coordinators_sign_every_request_once_when_one_is_killed() {
    // The postgres client blocks: off the async threads.
    let (pg, url) = tokio::task::block_in_place(|| {
        let pg = PgServer::start();
        let url = pg.create_database("ringi");
        (pg, url)
    });
    let mut cluster = Cluster::start_tls(3);
    // The cluster's own coordinator (SQLite) is replaced by two on
    // PostgreSQL: the same config, the store named in one table.
    cluster.stop_coordinator();
    cluster.coordinator_extra = format!(
        "signing_lease_secs = {LEASE_SECS}\nsigning_concurrency = 2\n\n[store]\nengine = \"postgres\"\nurl = \"{url}\"\nmax_connections = 8\n"
    );
    cluster.write_coordinator_config();
    cluster.start_coordinator();
    let a_pid = cluster.coordinator.as_ref().unwrap().id();
    let a_address = cluster.coordinator_address.clone();
    // B: another data directory (its audit log, its lock) and listener.
    let config = std::fs::read_to_string(cluster.config_path()).unwrap();
    let b_dir = cluster.dir.path().join("coordinator-b");
    let b_config_path = cluster.dir.path().join("coordinator-b.toml");
    let a_data_dir = format!(
        "data_dir = \"{}\"",
        cluster.dir.path().join("coordinator").display()
    );
    assert!(config.contains(&a_data_dir));
    std::fs::write(
        &b_config_path,
        config.replace(&a_data_dir, &format!("data_dir = \"{}\"", b_dir.display())),
    )
    .unwrap();
    let mut cmd = Command::new(ringi_bin());
    cmd.args(["serve", "--config"]).arg(&b_config_path);
    let (b_child, b_address) = spawn_listening(cmd, &cluster.dir.path().join("coordinator-b.log"));
    let b = Process(b_child);

    let group_key = cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let coordinators = Arc::new(Coordinators {
        wallet: [
            cluster.channel_to(&a_address, "wallet-service").await,
            cluster.channel_to(&b_address, "wallet-service").await,
        ],
        approver: [
            cluster.channel_to(&a_address, "approver-desk").await,
            cluster.channel_to(&b_address, "approver-desk").await,
        ],
        a_dead: AtomicBool::new(false),
    });
    let cluster = Arc::new(cluster);

    // The killer: once a quarter of the requests are approved, waits for
    // A to hold live signing claims, then SIGKILLs it.
    let approved = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (url, approved, coordinators) = (url.clone(), approved.clone(), coordinators.clone());
        tokio::task::spawn_blocking(move || {
            let owner = format!("coordinator-{a_pid}-%");
            let deadline = Instant::now() + Duration::from_secs(300);
            let held = || {
                count(
                    &url,
                    &format!(
                        "SELECT count(*) FROM signing_claims c JOIN requests r USING (request_id)
                         WHERE r.state = 'SIGNING' AND c.owner LIKE '{owner}'"
                    ),
                )
            };
            while Instant::now() < deadline {
                if approved.load(Ordering::SeqCst) >= REQUESTS / 4 && held() >= 2 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // SAFETY: kill(2) with a pid this test started and a signal
            // number; it touches no memory.
            let killed = unsafe { libc::kill(a_pid as libc::pid_t, libc::SIGKILL) };
            assert_eq!(killed, 0, "{}", std::io::Error::last_os_error());
            coordinators.a_dead.store(true, Ordering::SeqCst);
            // Counted after the kill: what A held at its death (it may
            // have finished a signing between the check and the signal).
            held()
        })
    };

    // Submit and approve through both: the submission to one, treasury's
    // approval to the other, compliance's (the quorum) to the first.
    let started = Instant::now();
    let outcomes: Vec<(String, usize, usize)> = futures::stream::iter(0..REQUESTS)
        .map(|i| {
            let (c, cluster, approved) = (coordinators.clone(), cluster.clone(), approved.clone());
            async move {
                let (id, request) = submit(&c, i).await;
                let first = cluster.approval(&request, "alice", "treasury", Decision::Approve);
                decide(&c, i, 1, first).await;
                let second = cluster.approval(&request, "carol", "compliance", Decision::Approve);
                let quorum_on = decide(&c, i, 2, second).await;
                approved.fetch_add(1, Ordering::SeqCst);
                (id, i, quorum_on)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let held_at_kill = killer.await.unwrap();
    assert!(
        coordinators.a_dead.load(Ordering::SeqCst),
        "coordinator A was never killed"
    );

    // Every request SIGNED, read through the survivor; none stuck.
    let mut reader = pb::request_service_client::RequestServiceClient::new(
        cluster.channel_to(&b_address, "operator").await,
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut views: HashMap<String, pb::SigningRequestView> = HashMap::new();
    loop {
        views.clear();
        for (id, ..) in &outcomes {
            let view = reader
                .get_signing_request(pb::GetSigningRequestRequest {
                    request_id: id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            views.insert(id.clone(), view);
        }
        let unsigned: Vec<(&String, &str)> = views
            .iter()
            .filter(|(_, v)| v.state != "SIGNED")
            .map(|(id, v)| (id, v.state.as_str()))
            .collect();
        assert!(
            unsigned
                .iter()
                .all(|(_, s)| matches!(*s, "PENDING_APPROVAL" | "APPROVED" | "SIGNING")),
            "requests ended without a signature: {unsigned:?}"
        );
        if unsigned.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} requests stuck: {unsigned:?}",
            unsigned.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();

    // Exactly once: one SIGNED transition each, and the signature verifies.
    for (id, i, _) in &outcomes {
        let view = &views[id];
        let signed = view
            .transitions
            .iter()
            .filter(|t| t.to_state == "SIGNED")
            .count();
        assert_eq!(signed, 1, "request {i} ({id}): {:?}", view.transitions);
        let signing = view
            .transitions
            .iter()
            .filter(|t| t.to_state == "SIGNING")
            .count();
        assert_eq!(signing, 1, "request {i} ({id}): {:?}", view.transitions);
        assert!(
            frost_verify(&group_key, &message(*i), &view.signature),
            "request {i}: the signature does not verify"
        );
    }
    // What the survivor took over: signings A held (a later claim, fence
    // 2 or more) and quorums A recorded but had not started.
    let taken_over = tokio::task::block_in_place(|| {
        count(&url, "SELECT count(*) FROM signing_claims WHERE fence >= 2")
    });
    let b_owner = format!("coordinator-{}-%", b.0.id());
    let quorum_on_a: Vec<String> = outcomes
        .iter()
        .filter(|(_, _, on)| *on == 0)
        .map(|(id, ..)| format!("'\\x{id}'"))
        .collect();
    let started_by_b = if quorum_on_a.is_empty() {
        0
    } else {
        tokio::task::block_in_place(|| {
            count(
                &url,
                &format!(
                    "SELECT count(*) FROM signing_claims WHERE fence = 1 AND owner LIKE '{b_owner}'
                     AND request_id IN ({})",
                    quorum_on_a.join(",")
                ),
            )
        })
    };
    println!(
        "ha: {REQUESTS} requests, {IN_FLIGHT} in flight, all SIGNED once in {:.1} s; A killed holding {held_at_kill} live signing claims; B took over {taken_over} signings (fence >= 2) and started {started_by_b} that reached their quorum on A",
        elapsed.as_secs_f64()
    );
    assert!(
        held_at_kill >= 1,
        "A held no signing at its death: the takeover was not exercised"
    );
    assert!(
        taken_over >= held_at_kill,
        "the survivor resumed {taken_over} of the {held_at_kill} signings A held at its death"
    );
    // The survivor stops cleanly (its pool closes its connections off the
    // async threads).
    drop(b);
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator-b.log")).unwrap();
    assert!(!log.contains("panicked"), "coordinator B:\n{log}");
    drop(pg);
}
