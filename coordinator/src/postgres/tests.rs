//! The PostgreSQL engine against a real server (`test_server`, a private
//! cluster per test): every `store::contract` test the SQLite engine runs,
//! each on a fresh database, and what only this engine has (several
//! stores, as several coordinators, on one database; its migrations).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ringi_policy::statement::Decision;

use super::test_server::PgServer;
use super::*;
use crate::config::StoreEngine;
use crate::store::contract;

/// A fresh database on `server`, and a store on it.
fn store(server: &PgServer) -> PostgresStore {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("contract_{}", N.fetch_add(1, Ordering::SeqCst));
    open(&server.create_database(&name))
}

fn config(url: &str) -> StoreConfig {
    StoreConfig {
        engine: StoreEngine::Postgres,
        url: Some(url.into()),
        max_connections: Some(4),
        ..StoreConfig::default()
    }
}

fn open(url: &str) -> PostgresStore {
    PostgresStore::open(&config(url)).unwrap()
}

#[test]
fn key_store_contract() {
    let server = PgServer::start();
    contract::keys(&store(&server));
    contract::retirements(&store(&server));
}

#[test]
fn request_store_contract() {
    let server = PgServer::start();
    contract::decisions_and_history(&store(&server));
    contract::records_as_written(&store(&server));
    contract::one_decision_per_approver(&store(&server));
    contract::pages(&store(&server));
    contract::idempotency(&store(&server));
    contract::compare_and_set(&store(&server));
    contract::caps(&store(&server));
    contract::window_usage_is_the_sum(&store(&server));
    contract::signed_transactions(&store(&server));
    contract::signing_claims(&store(&server));
    contract::retries(&store(&server));
    contract::claims_return_the_record_as_claimed(&store(&server));
    contract::claims_with_a_first_plan(&store(&server));
    contract::sweep_candidates(&store(&server));
}

/// Stores on one database, as coordinators on one server would be: the
/// compare-and-set and the caps hold across them (SERIALIZABLE, with the
/// retries the races cause).
#[test]
fn coordinators_on_one_database_are_serialized() {
    let server = PgServer::start();
    let stores = |db: &str| {
        let url = server.create_database(db);
        (0..3).map(|_| Arc::new(open(&url))).collect::<Vec<_>>()
    };
    contract::racing_transitions(stores("transitions"));
    contract::racing_caps(stores("caps"));
}

/// Everything written is there for another store opened later (a
/// coordinator restarted, or another one); opening again migrates nothing.
#[test]
fn state_is_shared_and_survives_reopening() {
    let server = PgServer::start();
    let url = server.create_database("reopen");
    let first = open(&url);
    first.insert_key(&contract::key_record("k1")).unwrap();
    let r = contract::request();
    let id = first
        .insert_request(&contract::new_request(r.clone(), "k"), None, 100)
        .unwrap()
        .id();
    let a = contract::approval(&r, Decision::Approve);
    let quorum = next(State::PendingApproval, Event::QuorumMet).unwrap();
    first.record_decision(&id, &a, Some(&quorum), 120).unwrap();

    let second = open(&url);
    assert_eq!(
        second.key(&KeyId::parse("k1").unwrap()).unwrap(),
        contract::key_record("k1")
    );
    let rec = second.request(&id).unwrap();
    assert_eq!(rec.request, r);
    assert_eq!(rec.state, State::Approved);
    assert_eq!(rec.approvals, vec![a]);
    drop(first);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM ringi_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=schema::latest()).collect::<Vec<_>>());
}

/// A schema newer than this build is refused, not used.
#[test]
fn a_newer_schema_is_refused() {
    let server = PgServer::start();
    let url = server.create_database("newer");
    drop(open(&url));
    server.execute(
        "newer",
        &format!(
            "INSERT INTO ringi_schema (version, what) VALUES ({}, 'from the future')",
            schema::latest() + 1
        ),
    );
    match PostgresStore::open(&config(&url)) {
        Err(Error::Store(m)) => assert!(m.contains("newer than this ringi"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a newer schema was used"),
    }
}

/// Two coordinators starting together on an empty database: one creates
/// the schema, the other finds it.
#[test]
fn coordinators_starting_together_migrate_once() {
    let server = PgServer::start();
    let url = server.create_database("together");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&config(&url)).map(|_| ()))
        })
        .collect();
    for o in opened {
        o.join().unwrap().unwrap();
    }
}

/// A stored nonce of another length is a corrupt record, never a request.
#[test]
fn a_malformed_row_is_corrupt_not_a_request() {
    let server = PgServer::start();
    let store = store(&server);
    let r = contract::request();
    let id = store
        .insert_request(&contract::new_request(r, "k"), None, 100)
        .unwrap()
        .id();
    store
        .raw(&format!(
            "UPDATE requests SET nonce = '\\x0102' WHERE request_id = '\\x{}'",
            hex::encode(id)
        ))
        .unwrap();
    match store.request(&id) {
        Err(Error::Corrupt(m)) => assert!(m.contains("nonce"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A server that is not there is an error naming the store, after the
/// connect timeout at most, and never shows the password.
#[test]
fn an_unreachable_server_is_an_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "host={} port=1 user=ringi password=s3cret dbname=ringi connect_timeout=2",
        dir.path().display()
    );
    match PostgresStore::open(&config(&url)) {
        Err(Error::Store(m)) => {
            assert!(m.contains("cannot connect"), "{m}");
            assert!(!m.contains("s3cret"), "{m}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

/// Connections the server dropped (a restart, a failover) are replaced:
/// the store keeps working once the server is back.
#[test]
fn dropped_connections_are_replaced() {
    let server = PgServer::start();
    let url = server.create_database("dropped");
    let store = open(&url);
    store.insert_key(&contract::key_record("k1")).unwrap();
    // Every session of the database ended by the server.
    server.execute(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = 'dropped' AND pid <> pg_backend_pid()",
    );
    // The first call may meet the dead connection; within a few, the
    // pool has replaced it.
    let found = (0..5).any(|_| store.find_key(&KeyId::parse("k1").unwrap()).is_ok());
    assert!(found, "the store never recovered");
    store.insert_key(&contract::key_record("k2")).unwrap();
}

/// TLS to the server (rustls): with the configured CA, a client
/// certificate and the password from its file, the store works and its
/// connections are encrypted; a plaintext attempt, a server certificate
/// from another CA, a missing client certificate or a wrong password are
/// each refused, and no error shows the password.
#[test]
fn tls_with_a_client_certificate_and_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = |name: &str| {
        let out = dir.path().join(name);
        ringi_cli::dev_certs::generate(&ringi_cli::dev_certs::DevCertsRequest {
            out: out.clone(),
            signers: 0,
            signer_csrs: Vec::new(),
            coordinator_csr: None,
            clients: vec!["ringi-db".into()],
        })
        .unwrap();
        out
    };
    let (trusted, other) = (certs("trusted"), certs("other"));
    let server = PgServer::start_tls(&trusted);
    server.execute("postgres", "CREATE ROLE ringi LOGIN PASSWORD 's3cret'");
    server.execute("postgres", "CREATE DATABASE tls OWNER ringi");
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let port = server.tcp_port().unwrap();
    let full = StoreConfig {
        engine: StoreEngine::Postgres,
        url: Some(format!("host=localhost port={port} user=ringi dbname=tls")),
        password_file: Some(password),
        ca: Some(trusted.join("ca.pem")),
        cert: Some(trusted.join("ringi-db.pem")),
        key: Some(trusted.join("ringi-db.key")),
        max_connections: Some(2),
    };
    let store = PostgresStore::open(&full).unwrap();
    assert!(store.describe().ends_with("tls=on"), "{}", store.describe());
    contract::keys(&store);
    let mut admin = postgres::Client::connect(&server.url("postgres"), postgres::NoTls).unwrap();
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE ssl AND usename = 'ringi'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the store's connections are not TLS");

    // Each refused for its own reason, named in the error.
    let refused = |config: StoreConfig, what: &str| match PostgresStore::open(&config) {
        Err(Error::Store(m)) => {
            assert!(m.contains(what), "{what}: {m}");
            assert!(!m.contains("s3cret"), "{what}: {m}")
        }
        Err(e) => panic!("{what}: {e}"),
        Ok(_) => panic!("{what}: connected"),
    };
    refused(
        StoreConfig {
            ca: None,
            cert: None,
            key: None,
            ..full.clone()
        },
        "no encryption",
    );
    refused(
        StoreConfig {
            ca: Some(other.join("ca.pem")),
            ..full.clone()
        },
        "TLS handshake",
    );
    refused(
        StoreConfig {
            cert: None,
            key: None,
            ..full.clone()
        },
        "requires a valid client certificate",
    );
    refused(
        StoreConfig {
            password_file: Some(wrong),
            ..full.clone()
        },
        "password authentication failed",
    );
}

/// A version-1 database's requests get their keys' running totals when a
/// store opens it (version 2, SQLite's 10): made out of order, of two keys,
/// some ended unsigned, and on a third key amounts whose sum passes u128
/// (saturated, as `Usage::add` saturates). The caps then count what a sum
/// of the written rows counts, for every window start.
#[test]
fn requests_from_version_1_get_running_totals() {
    let server = PgServer::start();
    let url = server.create_database("v1");
    let states = [
        "PENDING_APPROVAL",
        "SIGNED",
        "EXPIRED",
        "APPROVED",
        "REJECTED",
        "FAILED",
    ];
    // (key, created_at, amount, live)
    let mut written: Vec<(&str, i64, u128, bool)> = Vec::new();
    for i in 0..40u8 {
        let key = if i % 3 == 0 { "k2" } else { "k1" };
        let state = states[usize::from(i) % states.len()];
        let live = !matches!(state, "EXPIRED" | "REJECTED" | "FAILED");
        let amount = u128::from(i) * 1_000_000_000_000_000_000_007;
        written.push((key, 1000 + i64::from(i) * 37 % 50, amount, live));
    }
    for (at, amount) in [(1000, u128::MAX - 1), (1010, u128::MAX - 1), (1020, 7)] {
        written.push(("k3", at, amount, true));
    }
    {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        schema::migrate_to(&mut client, 1).unwrap();
        for (i, &(key, at, amount, _)) in written.iter().enumerate() {
            let state = if key == "k3" {
                "SIGNED"
            } else {
                states[i % states.len()]
            };
            client
                .execute(
                    "INSERT INTO requests (request_id, key_id, message, asset, amount, destination,
                        memo, requester, created_at, expires_at, policy_hash, signers, state,
                        state_reason, counted_amount, nonce)
                     VALUES ($1, $2, '', 'BTC', '0', '', '', 'w', $3, 9999, '', '', $4, '', $5, '')",
                    &[&vec![i as u8; 32], &key, &at, &state, &amount.to_string()],
                )
                .unwrap();
        }
    }
    let store = open(&url);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let saturated: String = client
        .query_one(
            "SELECT running_amount FROM requests WHERE key_id = 'k3' ORDER BY running_count DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(saturated, u128::MAX.to_string());
    let mut n = 0;
    for key in ["k1", "k2", "k3"] {
        for since in 995..1055 {
            let mut expected = Usage::default();
            for &(k, at, amount, live) in &written {
                if k == key && at > since && live {
                    expected.add(amount);
                }
            }
            let window_secs = 10_000;
            let now = since as u64 + window_secs;
            n += 1;
            let mut r = contract::request();
            r.key_id = KeyId::parse(key).unwrap();
            r.message = vec![n as u8, (n >> 8) as u8];
            r.metadata.amount = 1;
            r.created_at = now;
            let mut probe = contract::new_request(r, &format!("probe-{n}"));
            probe.limits = Limits {
                window_secs,
                max_amount_per_window: Some(0),
                ..Limits::default()
            };
            match store.insert_request(&probe, None, now) {
                Err(Error::CapExceeded {
                    cap: ringi_policy::limits::CapExceeded::WindowAmount { total, .. },
                    ..
                }) => assert_eq!(
                    total,
                    expected.amount.saturating_add(1),
                    "{key} since {since}"
                ),
                other => panic!("{key} since {since}: {other:?}"),
            }
        }
    }
}
