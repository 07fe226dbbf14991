//! What one read of a request costs the embedded store
//! (`SqliteStore::request`: the request, its approvals, its history), with
//! and without writes in between: a write by the writer connection makes
//! SQLite drop the reader connection's page cache, so under load every read
//! fetches its pages again from the OS. Run with
//! `cargo run --release -p ringi --example store_reads`.

use std::time::Instant;

use p256::ecdsa::SigningKey;
use ringi::request_store::{NewRequest, RequestStore};
use ringi::sqlite::SqliteStore;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::key_id::KeyId;
use ringi_policy::limits::Limits;
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_policy::statement::{Approval, Decision, Statement};

const REQUESTS: usize = 5_000;
const READS: usize = 3_000;

fn request(i: usize) -> SigningRequest {
    SigningRequest {
        key_id: KeyId::parse("hot-1").unwrap(),
        message: format!("message {i}").into_bytes(),
        metadata: Metadata {
            asset: "BTC".into(),
            amount: 1_000 + i as u128,
            destination: "bc1qexample".into(),
            memo: String::new(),
        },
        psbt: None,
        requester: "wallet".into(),
        created_at: 1_800_000_000,
        expires_at: 1_900_000_000,
        policy_hash: [9; 32],
        nonce: vec![i as u8; ringi_policy::request::NONCE_LEN],
    }
}

fn approval(r: &SigningRequest, department: &str, key: &SigningKey) -> Approval {
    use p256::ecdsa::signature::Signer;
    let statement = Statement::for_request(
        r,
        department,
        Decision::Approve,
        "",
        1_800_000_001,
        1_900_000_000,
    );
    let approver =
        ApproverKey::from_sec1(key.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
    let signature: p256::ecdsa::Signature = key.sign(&statement.signed_bytes(&approver));
    Approval {
        statement,
        approver,
        signature: signature.to_bytes().to_vec(),
    }
}

fn percentiles(mut us: Vec<f64>) -> String {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    format!("p50 {:7.1} µs   p99 {:7.1} µs", at(0.5), at(0.99))
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ringi.sqlite3")).unwrap();
    let (alice, carol) = (
        SigningKey::random(&mut rand::rngs::OsRng),
        SigningKey::random(&mut rand::rngs::OsRng),
    );
    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        let r = request(i);
        let new = NewRequest {
            content_hash: ringi_policy::encoding::sha256(&r.canonical()),
            counted_amount: r.metadata.amount,
            request: r.clone(),
            signers: Vec::new(),
            idempotency_key: format!("k{i}"),
            limits: Limits::default(),
        };
        let id = store
            .insert_request(&new, None, 1_800_000_000)
            .unwrap()
            .id();
        store
            .record_decision(&id, &approval(&r, "treasury", &alice), None, 1_800_000_001)
            .unwrap();
        store
            .record_decision(
                &id,
                &approval(&r, "compliance", &carol),
                None,
                1_800_000_002,
            )
            .unwrap();
        ids.push(id);
    }
    let pick = |n: usize| ids[(n * 7919) % ids.len()];
    let mut quiet = Vec::new();
    for n in 0..READS {
        let id = pick(n);
        let t = Instant::now();
        store.request(&id).unwrap();
        quiet.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut busy = Vec::new();
    for n in 0..READS {
        // A write (a new request) between reads, as under load.
        let r = request(REQUESTS + n);
        let new = NewRequest {
            content_hash: ringi_policy::encoding::sha256(&r.canonical()),
            counted_amount: r.metadata.amount,
            request: r,
            signers: Vec::new(),
            idempotency_key: format!("w{n}"),
            limits: Limits::default(),
        };
        store.insert_request(&new, None, 1_800_000_003).unwrap();
        let id = pick(n);
        let t = Instant::now();
        store.request(&id).unwrap();
        busy.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!("store_reads: {REQUESTS} requests with 2 approvals each, {READS} reads of each kind");
    println!("read, no write in between:   {}", percentiles(quiet));
    println!("read, a write before each:   {}", percentiles(busy));
}
