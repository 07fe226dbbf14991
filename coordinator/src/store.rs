//! The coordinator's durable state, as two traits whose documentation is
//! the contract every storage engine must meet: [`KeyStore`] (keys' public
//! data) and [`crate::request_store::RequestStore`] (signing requests, their
//! approvals and history). [`crate::sqlite::SqliteStore`], an embedded
//! SQLite database under the data directory, and
//! [`crate::postgres::PostgresStore`], one PostgreSQL database shared by
//! several coordinators, implement both and pass the same `contract`
//! tests.
//!
//! The store holds only public data (group keys, public key packages, which
//! signer holds which identifier, requests and signed approvals); no share
//! ever reaches the coordinator.
//!
//! Calls are synchronous; async callers run them with [`blocking`].

use ringi_frost::KeyKind;
use ringi_policy::holds::Retired;
use ringi_policy::key_id::KeyId;
use ringi_policy::retirement::Retirement;
use ringi_policy::subject::KeyFacts;

use crate::error::{Error, Missing, Result};

/// A key's public record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: KeyId,
    /// Which suite the key signs with, fixed at keygen.
    pub kind: ringi_frost::KeyKind,
    pub threshold: u16,
    /// (signer name, FROST identifier), ordered by identifier.
    pub signers: Vec<(String, u16)>,
    /// SEC1 compressed, 33 bytes.
    pub group_public_key: Vec<u8>,
    /// frost `PublicKeyPackage::serialize()`.
    pub public_key_package: Vec<u8>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

impl KeyRecord {
    /// What the policy's evaluation must know of the key besides its rules
    /// (`ringi_policy::subject::KeyFacts`): its kind, and for a Taproot key
    /// its internal and output keys, derived from the stored group key.
    pub fn facts(&self) -> Result<KeyFacts> {
        match self.kind {
            KeyKind::FrostSecp256k1 => Ok(KeyFacts::FrostSecp256k1),
            KeyKind::BitcoinTaproot => {
                let (internal_key, output_key) = self.taproot_keys()?;
                Ok(KeyFacts::BitcoinTaproot {
                    internal_key,
                    output_key,
                })
            }
        }
    }

    /// The x-only internal key P and key-path output key Q of the group key
    /// (`ringi_frost::taproot::keys_of_group`); meaningful for a
    /// bitcoin-taproot key only.
    pub fn taproot_keys(&self) -> Result<([u8; 32], [u8; 32])> {
        ringi_frost::taproot::keys_of_group(&self.group_public_key).map_err(|e| {
            Error::Corrupt(format!(
                "stored group key of bitcoin-taproot key {:?}: {e}",
                self.key_id
            ))
        })
    }
}

/// Keys' public records.
pub trait KeyStore: Send + Sync {
    /// Records a new key with its signers, all or nothing.
    ///
    /// Atomicity: the check that `key.key_id` is free and the insert are one
    /// transaction, so of two concurrent inserts of one key id exactly one
    /// succeeds and the other gets [`Error::KeyExists`]. A key the engine
    /// cannot store as a whole (two signers with one name or one
    /// identifier) is refused with an error and leaves nothing behind.
    fn insert_key(&self, key: &KeyRecord) -> Result<()>;

    /// Replaces a key's public key package after a refresh (same group
    /// key, new verifying shares), if it is still `expected`: a compare and
    /// set in one transaction, so two refreshes of one key cannot both
    /// record theirs. [`Error::NotFound`] for an unknown key;
    /// [`Error::Corrupt`] naming the mismatch when the stored package is
    /// not `expected`.
    fn replace_key_package(&self, key_id: &KeyId, expected: &[u8], new: &[u8]) -> Result<()>;

    /// Names `signer` as the key's participant `identifier` (a repaired
    /// share's new node), in one transaction. [`Error::NotFound`] for an
    /// unknown key; [`Error::Corrupt`] when the key has no such participant
    /// or `signer` is another participant of it.
    fn replace_key_signer(&self, key_id: &KeyId, identifier: u16, signer: &str) -> Result<()>;

    /// The key with its signers, read consistently, or `None`.
    fn find_key(&self, key_id: &KeyId) -> Result<Option<KeyRecord>>;

    /// Every key, ordered by key id.
    fn keys(&self) -> Result<Vec<KeyRecord>>;

    /// Records the retirement of a key (its order checked by the caller,
    /// `ringi_policy::retirement::check_retire`) with the signed order as
    /// delivered (protobuf, kept as evidence), durably before it returns.
    /// A key is retired once: if it is retired already, nothing changes
    /// and the first retirement is returned ([`Retired::Already`]).
    /// [`Error::NotFound`] for a key the store does not have. Here
    /// `accepted_at` is when the coordinator accepted the order and
    /// `destroyed_at` when every signer of the key was seen without a
    /// share of it ([`KeyStore::mark_shares_destroyed`]).
    fn retire_key(&self, retirement: &Retirement, signed_order: &[u8]) -> Result<Retired>;

    /// The key's retirement, if it is retired.
    fn key_retirement(&self, key_id: &KeyId) -> Result<Option<Retirement>>;

    /// Every retirement, ordered by key id.
    fn key_retirements(&self) -> Result<Vec<Retirement>>;

    /// Records that no signer of the retired key holds a share of it any
    /// more, at `at`; false if recorded already (or the key is not
    /// retired).
    fn mark_shares_destroyed(&self, key_id: &KeyId, at: u64) -> Result<bool>;

    /// The key, or [`Error::NotFound`].
    fn key(&self, key_id: &KeyId) -> Result<KeyRecord> {
        self.find_key(key_id)?
            .ok_or_else(|| Missing::Key(key_id.clone()).into())
    }
}

/// Store calls on blocking threads at once. Bounded: unbounded, a burst of
/// 64 requests in flight kept ~64 blocking threads alive, each with its own
/// allocator arena, and the coordinator's memory grew under load (the
/// daemons now also cap glibc's arenas at 2). Not 4 any more: the embedded
/// engine commits the writes that wait together as one batch (one fsync,
/// see `crate::sqlite`), so a batch holds at most this many writes: in one
/// run (an fsync ~3.4 ms), 4 writers inserted ~1,250 a second, 16 ~3,700.
const STORE_THREADS: usize = 16;
static STORE_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STORE_THREADS);

/// Runs a synchronous store call on a blocking thread (at most
/// [`STORE_THREADS`] at once; the others wait without a thread).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let _slot = STORE_SLOTS
        .acquire()
        .await
        .map_err(|e| Error::Internal(format!("store slots closed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
}

/// The contract tests: generic over the engine, so every implementation
/// runs the same ones (see `sqlite.rs` and `postgres/tests.rs`).
#[cfg(test)]
pub(crate) mod contract {
    use std::sync::Arc;

    use ringi_policy::approver_key::ApproverKey;
    use ringi_policy::limits::{CapExceeded, Limits};
    use ringi_policy::request::{Metadata, SigningRequest};
    use ringi_policy::statement::{Approval, Decision, Statement};

    use super::*;
    use crate::error::RequestId;
    use crate::request_state::{Event, SignedTransaction, State, Transition, next};
    use crate::request_store::{
        Inserted, ListFilter, NewRequest, Position, RequestRecord, RequestStore,
    };

    pub fn key_record(key_id: &str) -> KeyRecord {
        KeyRecord {
            key_id: KeyId::parse(key_id).unwrap(),
            kind: ringi_frost::KeyKind::FrostSecp256k1,
            threshold: 2,
            signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
            group_public_key: vec![2; 33],
            public_key_package: vec![1, 2, 3],
            created_at: 1_700_000_000,
        }
    }

    fn id(text: &str) -> KeyId {
        KeyId::parse(text).unwrap()
    }

    /// Insert, read back, list; duplicates and half-records refused.
    pub fn keys<S: KeyStore>(store: &S) {
        store.insert_key(&key_record("k1")).unwrap();
        store.insert_key(&key_record("k0")).unwrap();
        assert_eq!(store.key(&id("k1")).unwrap(), key_record("k1"));
        assert_eq!(
            store.keys().unwrap(),
            vec![key_record("k0"), key_record("k1")]
        );

        let mut other = key_record("k1");
        other.threshold = 3;
        assert!(
            matches!(store.insert_key(&other), Err(Error::KeyExists(ref k)) if k == "k1"),
            "an existing key id is refused"
        );
        assert_eq!(store.key(&id("k1")).unwrap().threshold, 2, "unchanged");

        let mut bad = key_record("k2");
        bad.signers = vec![("a".into(), 1), ("b".into(), 1)];
        assert!(store.insert_key(&bad).is_err());
        assert!(
            store.find_key(&id("k2")).unwrap().is_none(),
            "no half record"
        );

        match store.key(&id("nope")) {
            Err(Error::NotFound(Missing::Key(k))) => assert_eq!(k, "nope"),
            other => panic!("{other:?}"),
        }
    }

    /// A key is retired once, durably; the first retirement stands; an
    /// unknown key cannot be retired; the destruction is recorded once.
    pub fn retirements<S: KeyStore>(store: &S) {
        store.insert_key(&key_record("k1")).unwrap();
        store.insert_key(&key_record("k0")).unwrap();
        let retirement = |key: &str, order: u8, destroy_after| Retirement {
            key_id: id(key),
            order_id: [order; 32],
            destroy_after,
            admins: vec!["alice".into(), "carol".into()],
            accepted_at: 1_000,
            destroyed_at: None,
        };
        assert_eq!(store.key_retirement(&id("k1")).unwrap(), None);
        assert_eq!(
            store
                .retire_key(&retirement("k1", 1, 1_030), b"order")
                .unwrap(),
            Retired::New
        );
        assert_eq!(
            store
                .retire_key(&retirement("k1", 2, 1_001), b"other")
                .unwrap(),
            Retired::Already(Box::new(retirement("k1", 1, 1_030)))
        );
        assert!(matches!(
            store.retire_key(&retirement("nope", 1, 1), b"order"),
            Err(Error::NotFound(Missing::Key(k))) if k == "nope"
        ));
        assert_eq!(
            store.key_retirement(&id("k1")).unwrap(),
            Some(retirement("k1", 1, 1_030))
        );
        store
            .retire_key(&retirement("k0", 3, 2_000), b"order")
            .unwrap();
        let all = store.key_retirements().unwrap();
        assert_eq!(
            all.iter().map(|r| r.key_id.as_str()).collect::<Vec<_>>(),
            ["k0", "k1"]
        );
        assert!(store.mark_shares_destroyed(&id("k1"), 1_040).unwrap());
        assert!(!store.mark_shares_destroyed(&id("k1"), 1_041).unwrap());
        assert!(!store.mark_shares_destroyed(&id("nope"), 1_041).unwrap());
        assert_eq!(
            store
                .key_retirement(&id("k1"))
                .unwrap()
                .unwrap()
                .destroyed_at,
            Some(1_040)
        );
        // The key itself is kept: its public data and history stay.
        assert_eq!(store.key(&id("k1")).unwrap(), key_record("k1"));
    }

    pub fn request() -> SigningRequest {
        SigningRequest {
            key_id: id("hot-1"),
            message: vec![1; 32],
            metadata: Metadata {
                asset: "BTC".into(),
                amount: 123_456_789_012_345_678_901_234_567,
                destination: "bc1q".into(),
                memo: "rebalance".into(),
            },
            psbt: None,
            requester: "wallet".into(),
            created_at: 100,
            expires_at: 200,
            policy_hash: [9; 32],
            nonce: vec![5; ringi_policy::request::NONCE_LEN],
        }
    }

    pub fn new_request(request: SigningRequest, idempotency_key: &str) -> NewRequest {
        NewRequest {
            content_hash: ringi_policy::encoding::sha256(&request.canonical()),
            counted_amount: request.metadata.amount,
            request,
            signers: Vec::new(),
            idempotency_key: idempotency_key.into(),
            limits: Limits::default(),
        }
    }

    pub fn approval(request: &SigningRequest, decision: Decision) -> Approval {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        Approval {
            statement: Statement::for_request(request, "treasury", decision, "why", 110, 150),
            approver: ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
                .unwrap(),
            signature: vec![7; 64],
        }
    }

    fn insert<S: RequestStore + ?Sized>(store: &S, new: &NewRequest, now: u64) -> RequestId {
        match store.insert_request(new, None, now).unwrap() {
            Inserted::Created(id) => id,
            Inserted::Existing(id) => panic!("{} existed", hex::encode(id)),
        }
    }

    fn quorum() -> Transition {
        next(State::PendingApproval, Event::QuorumMet).unwrap()
    }

    /// A request, its decisions (one with the state change it caused) and
    /// its history, read back as written.
    pub fn decisions_and_history<S: RequestStore>(store: &S) {
        let r = request();
        let mut new = new_request(r.clone(), "k1");
        new.signers = vec!["s1".into(), "s2".into()];
        let id = insert(store, &new, 100);
        assert_eq!(id, r.id());
        let a = approval(&r, Decision::Approve);
        store.record_decision(&id, &a, None, 120).unwrap();
        let b = approval(&r, Decision::Approve);
        store
            .record_decision(&id, &b, Some(&quorum()), 121)
            .unwrap();

        let rec = store.request(&id).unwrap();
        assert_eq!(rec.request, r);
        assert_eq!(rec.signers, vec!["s1", "s2"]);
        assert_eq!(rec.state, State::Approved);
        assert_eq!(rec.state_reason, "quorum met");
        assert_eq!(rec.approvals, vec![a, b]);
        let states: Vec<State> = rec.transitions.iter().map(|t| t.to).collect();
        assert_eq!(states, vec![State::PendingApproval, State::Approved]);
        assert_eq!(rec.transitions[0].from, "");
        assert_eq!(rec.transitions[0].reason, "submitted");
        assert_eq!(rec.transitions[1].from, "PENDING_APPROVAL");
        assert_eq!(rec.transitions[1].reason, "quorum met");
        assert_eq!((rec.transitions[0].at, rec.transitions[1].at), (100, 121));
        assert_eq!(store.requests_in(&[State::Approved]).unwrap(), vec![id]);
        assert!(store.requests_in(&[State::Signing]).unwrap().is_empty());
    }

    /// What the sweep reads: the waiting requests whose time has passed
    /// (`waiting_due`, PENDING_APPROVAL or APPROVED with `expires_at <=
    /// now`, never one signing, signed or already ended), and the requests
    /// in given states (`requests_in`, several states at once).
    pub fn sweep_candidates<S: RequestStore>(store: &S) {
        let nth = |n: u8, expires_at: u64| {
            let mut r = request();
            r.message = vec![n; 32];
            r.expires_at = expires_at;
            r
        };
        let mut ids = std::collections::BTreeMap::new();
        for (n, expires_at) in [(1, 200), (2, 300), (3, 150), (4, 120), (5, 110), (6, 130)] {
            let r = nth(n, expires_at);
            let id = insert(store, &new_request(r.clone(), &format!("k{n}")), 100);
            ids.insert(n, (id, r));
        }
        let (pending_200, pending_300) = (ids[&1].0, ids[&2].0);
        // 3: approved; 4: signing; 5: expired; 6: rejected.
        for n in [3, 4] {
            let (id, r) = &ids[&n];
            let a = approval(r, Decision::Approve);
            store.record_decision(id, &a, Some(&quorum()), 101).unwrap();
        }
        let approved_150 = ids[&3].0;
        let started = next(State::Approved, Event::SigningStarted).unwrap();
        store.transition(&ids[&4].0, &started, 102).unwrap();
        let expired = next(State::PendingApproval, Event::Expired { at: 110 }).unwrap();
        store.transition(&ids[&5].0, &expired, 110).unwrap();
        let (id6, r6) = &ids[&6];
        let veto = Event::Vetoed {
            approver: "carol".into(),
            department: "compliance".into(),
            reason: "no".into(),
        };
        let vetoed = next(State::PendingApproval, veto).unwrap();
        store
            .record_decision(id6, &approval(r6, Decision::Reject), Some(&vetoed), 103)
            .unwrap();

        let due = |now: u64| {
            let mut due = store.waiting_due(now).unwrap();
            due.sort();
            due
        };
        let sorted = |mut v: Vec<RequestId>| {
            v.sort();
            v
        };
        assert!(due(149).is_empty());
        assert_eq!(due(150), vec![approved_150]);
        assert_eq!(due(200), sorted(vec![approved_150, pending_200]));
        assert_eq!(due(299), sorted(vec![approved_150, pending_200]));
        assert_eq!(
            due(300),
            sorted(vec![approved_150, pending_200, pending_300])
        );
        assert_eq!(due(u64::MAX / 2), due(300));
        assert_eq!(
            sorted(
                store
                    .requests_in(&[State::PendingApproval, State::Signing])
                    .unwrap()
            ),
            sorted(vec![pending_200, pending_300, ids[&4].0])
        );
        assert_eq!(
            sorted(
                store
                    .requests_in(&[State::Expired, State::Rejected])
                    .unwrap()
            ),
            sorted(vec![ids[&5].0, *id6])
        );
        assert!(store.requests_in(&[]).unwrap().is_empty());
    }

    /// The records writers build instead of reading the request back
    /// (`RequestRecord::submitted`, `with_decision`, `after`) equal what
    /// the store then reads: at submission, after a decision that changes
    /// nothing, after one renewing an expired approval, after the one
    /// meeting the quorum, and through signing to SIGNED with a signed
    /// transaction.
    pub fn records_as_written<S: RequestStore>(store: &S) {
        let r = psbt_request(7, 100);
        let mut new = new_request(r.clone(), "as-written");
        new.signers = vec!["s2".into(), "s3".into()];
        let id = insert(store, &new, 100);
        let mut expected = RequestRecord::submitted(&new, 100);
        assert_eq!(store.request(&id).unwrap(), expected);

        let written = |approval: &Approval, transition: Option<Transition>, now| {
            let recorded = store
                .record_decision_with(
                    &id,
                    &mut |_| Ok((approval.clone(), transition.clone())),
                    now,
                )
                .unwrap();
            assert_eq!(recorded, store.request(&id).unwrap(), "as returned");
            recorded
        };
        let first = approval(&r, Decision::Approve);
        expected = expected.with_decision(first.clone(), None, 120);
        assert_eq!(written(&first, None, 120), expected);
        // The same approver again once the first expired (at 150).
        let mut renewed = first.clone();
        renewed.statement.issued_at = 151;
        renewed.statement.expires_at = 190;
        renewed.signature = vec![8; 64];
        expected = expected.with_decision(renewed.clone(), None, 160);
        assert_eq!(written(&renewed, None, 160), expected);
        assert_eq!(expected.approvals, vec![renewed]);
        let second = approval(&r, Decision::Approve);
        expected = expected.with_decision(second.clone(), Some(&quorum()), 161);
        assert_eq!(written(&second, Some(quorum()), 161), expected);
        assert_eq!(expected.state, State::Approved);

        let started = next(State::Approved, Event::SigningStarted).unwrap();
        store.transition(&id, &started, 162).unwrap();
        expected = expected.after(&started, 162);
        assert_eq!(store.request(&id).unwrap(), expected);
        let signed = next(
            State::Signing,
            Event::Signed {
                signature: vec![3; 64],
                signers: vec!["s2".into(), "s3".into()],
                transaction: Some(SignedTransaction {
                    psbt: vec![1, 2],
                    tx: vec![3, 4],
                }),
            },
        )
        .unwrap();
        store.transition(&id, &signed, 163).unwrap();
        expected = expected.after(&signed, 163);
        assert_eq!(store.request(&id).unwrap(), expected);
        assert!(expected.signature.is_some() && expected.signed_transaction.is_some());
    }

    /// An approver decides once; a refused decision writes nothing, not
    /// even the state change that came with it.
    pub fn one_decision_per_approver<S: RequestStore>(store: &S) {
        let r = request();
        let id = insert(store, &new_request(r.clone(), "k1"), 100);
        let a = approval(&r, Decision::Approve);
        store.record_decision(&id, &a, None, 120).unwrap();
        let err = store
            .record_decision(&id, &a, Some(&quorum()), 121)
            .unwrap_err();
        assert!(
            matches!(err, Error::DuplicateDecision { .. })
                && err.to_string().contains("has already decided"),
            "{err}"
        );
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.state, State::PendingApproval, "rolled back together");
        assert_eq!(rec.approvals.len(), 1);
        assert_eq!(rec.transitions.len(), 1);
    }

    /// Pages cover every request once, newest first, across equal times.
    pub fn pages<S: RequestStore>(store: &S) {
        for i in 0..7u64 {
            let mut r = request();
            r.created_at = 100 + i / 2; // several requests per second
            r.message = vec![i as u8; 4];
            insert(store, &new_request(r, &format!("k{i}")), 100);
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let filter = ListFilter {
                page_size: 3,
                after,
                ..Default::default()
            };
            let (page, next) = store.list_requests(&filter).unwrap();
            seen.extend(page.iter().map(|r| (r.request.created_at, r.id)));
            match next {
                Some(p) => after = Some(Position::parse(&p.token()).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7);
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "newest first, no repeats");
        assert!(Position::parse("zz").is_none());
    }

    /// An idempotency key returns its first request, or refuses other
    /// content; it is scoped by requester.
    pub fn idempotency<S: RequestStore>(store: &S) {
        let r = request();
        let mut first = new_request(r.clone(), "k1");
        first.content_hash = [1; 32];
        let Inserted::Created(id) = store.insert_request(&first, None, 100).unwrap() else {
            panic!("not created")
        };
        // A retry: admitted later, with a nonce of its own (so another id),
        // it still finds the first request.
        let mut later = first.clone();
        later.request.created_at += 5;
        later.request.nonce = vec![6; ringi_policy::request::NONCE_LEN];
        assert_ne!(later.request.id(), id);
        assert_eq!(
            store.insert_request(&later, None, 105).unwrap(),
            Inserted::Existing(id)
        );
        later.content_hash = [2; 32];
        assert!(matches!(
            store.insert_request(&later, None, 105),
            Err(Error::IdempotencyConflict { .. })
        ));
        later.request.requester = "other".into();
        assert!(matches!(
            store.insert_request(&later, None, 105).unwrap(),
            Inserted::Created(_)
        ));
        // The same content under a new idempotency key, with its own nonce,
        // is another request.
        let mut other = first.clone();
        other.idempotency_key = "k3".into();
        other.request.nonce = vec![7; ringi_policy::request::NONCE_LEN];
        match store.insert_request(&other, None, 100).unwrap() {
            Inserted::Created(other_id) => {
                assert_ne!(other_id, id);
                assert_eq!(store.request(&other_id).unwrap().request, other.request);
            }
            existing => panic!("{existing:?}"),
        }
        // The same request (its very nonce) under a new idempotency key.
        let mut again = first.clone();
        again.idempotency_key = "k2".into();
        assert!(matches!(
            store.insert_request(&again, None, 106),
            Err(Error::RequestExists(i)) if i == id
        ));
    }

    /// Changes apply only from the state they name (compare-and-set); the
    /// loser learns the state it lost to.
    pub fn compare_and_set<S: RequestStore>(store: &S) {
        let r = request();
        let id = insert(store, &new_request(r.clone(), "k1"), 100);
        let wrong = next(State::Approved, Event::SigningStarted).unwrap();
        assert!(matches!(
            store.transition(&id, &wrong, 101),
            Err(Error::StateConflict {
                expected: State::Approved,
                actual: State::PendingApproval,
                ..
            })
        ));
        store.transition(&id, &quorum(), 101).unwrap();
        let late = approval(&r, Decision::Approve);
        assert!(matches!(
            store.record_decision(&id, &late, None, 101),
            Err(Error::StateConflict {
                expected: State::PendingApproval,
                actual: State::Approved,
                ..
            })
        ));
        assert!(store.request(&id).unwrap().approvals.is_empty());
        assert!(matches!(
            store.request(&[0; 32]),
            Err(Error::NotFound(Missing::Request(_)))
        ));
        assert!(matches!(
            store.transition(&[0; 32], &quorum(), 101),
            Err(Error::NotFound(Missing::Request(_)))
        ));
        let sig = vec![5u8; 65];
        for event in [
            Event::SigningStarted,
            Event::Signed {
                signature: sig.clone(),
                signers: vec!["a".into(), "b".into()],
                transaction: None,
            },
        ] {
            let from = store.request(&id).unwrap().state;
            store
                .transition(&id, &next(from, event).unwrap(), 102)
                .unwrap();
        }
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.state, State::Signed);
        assert_eq!(rec.state_reason, "signed by a, b");
        assert_eq!(rec.signature.as_deref(), Some(&sig[..]));
        assert_eq!(rec.signed_transaction, None);
        let list = |pending_only, key_id: Option<&str>, state| {
            let key_id = key_id.map(|k| KeyId::parse(k).unwrap());
            let filter = ListFilter {
                pending_only,
                key_id: key_id.as_ref(),
                state,
                page_size: 10,
                ..Default::default()
            };
            store.list_requests(&filter).unwrap().0.len()
        };
        assert_eq!(list(true, None, None), 0);
        assert_eq!(list(false, Some("hot-1"), None), 1);
        assert_eq!(list(false, Some("other"), None), 0);
        assert_eq!(list(false, None, Some(State::Signed)), 1);
        assert_eq!(list(false, None, Some(State::Failed)), 0);
        // A key set (a wallet's scope): only its members, whole names only.
        let in_set = |keys: &[&str]| {
            let keys: Vec<KeyId> = keys.iter().map(|k| KeyId::parse(k).unwrap()).collect();
            let filter = ListFilter {
                key_ids: Some(&keys),
                page_size: 10,
                ..Default::default()
            };
            store.list_requests(&filter).unwrap().0.len()
        };
        assert_eq!(in_set(&["other", "hot-1"]), 1);
        assert_eq!(in_set(&["other"]), 0);
        assert_eq!(in_set(&["hot-", "ot-1", "hot-10"]), 0);
        assert_eq!(in_set(&[]), 0);
    }

    /// Window caps count the key's live requests of the window, and not
    /// those that ended without a signature.
    pub fn caps<S: RequestStore>(store: &S) {
        let limits = Limits {
            window_secs: 100,
            max_amount_per_window: Some(25),
            ..Limits::default()
        };
        let submit = |n: u8, amount: u128, now: u64| {
            let mut r = request();
            r.message = vec![n];
            r.metadata.amount = amount;
            r.created_at = now;
            let mut new = new_request(r, &format!("cap-{n}"));
            new.limits = limits.clone();
            store.insert_request(&new, None, now)
        };
        // A PSBT request declares no amount: what counts is the amount
        // derived from it (its payments).
        let psbt = |n: u8, counted: u128, now: u64| {
            let mut new = new_request(psbt_request(n, now), &format!("cap-psbt-{n}"));
            new.counted_amount = counted;
            new.limits = limits.clone();
            store.insert_request(&new, None, now)
        };

        let first = match submit(1, 10, 1000).unwrap() {
            Inserted::Created(id) => id,
            other => panic!("{other:?}"),
        };
        submit(2, 10, 1001).unwrap();
        match submit(3, 10, 1002) {
            Err(Error::CapExceeded {
                cap: CapExceeded::WindowAmount { total: 30, .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A request that ended without a signature frees its amount.
        store
            .transition(
                &first,
                &next(State::PendingApproval, Event::Expired { at: 1003 }).unwrap(),
                1003,
            )
            .unwrap();
        submit(4, 10, 1004).unwrap();
        // Outside the window nothing counts.
        submit(5, 20, 1200).unwrap();
        // A PSBT request counts its derived payments, not its declared 0.
        match psbt(1, 26, 2000) {
            Err(Error::CapExceeded {
                cap: CapExceeded::WindowAmount { total: 26, .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        psbt(2, 20, 2000).unwrap();
        match submit(6, 10, 2001) {
            Err(Error::CapExceeded {
                cap: CapExceeded::WindowAmount { total: 30, .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// The window usage the caps read (from running totals,
    /// `ringi_policy::running_totals`) equals the window's live requests summed,
    /// through 600 random steps over two keys: submissions with a clock
    /// that sometimes goes back, requests vetoed, expired, failed and
    /// retried (a retry is checked against the window ending when the
    /// request was made), and amounts that saturate u128 on a third key.
    /// The usage is read through refusals: a probe with a cap of 0 is
    /// refused with the total it would have made.
    pub fn window_usage_is_the_sum<S: RequestStore>(store: &S) {
        use rand::{Rng, SeedableRng};

        struct Made {
            id: RequestId,
            key: &'static str,
            created_at: u64,
            counted_at: u64,
            amount: u128,
            state: State,
        }
        /// The `n`th request made that is in `state`, if there is one.
        fn one_in(made: &mut [Made], state: State, n: usize) -> Option<&mut Made> {
            made.iter_mut().filter(|m| m.state == state).nth(n)
        }
        let live = |s: State| !matches!(s, State::Rejected | State::Expired | State::Failed);
        // What the caps must count, summed: the reference.
        let summed = |made: &[Made], key: &str, now: u64, window: u64| {
            let mut usage = ringi_policy::limits::Usage::default();
            for m in made {
                if m.key == key && m.counted_at > now.saturating_sub(window) && live(m.state) {
                    usage.add(m.amount);
                }
            }
            usage
        };
        let by_amount = |window_secs| Limits {
            window_secs,
            max_amount_per_window: Some(0),
            ..Limits::default()
        };
        let by_count = |window_secs| Limits {
            window_secs,
            max_requests_per_window: Some(0),
            ..Limits::default()
        };
        let refused_total = |result: Result<Inserted>| match result {
            Err(Error::CapExceeded {
                cap: CapExceeded::WindowAmount { total, .. },
                ..
            }) => total,
            other => panic!("{other:?}"),
        };
        let refused_count = |result: Result<Inserted>| match result {
            Err(Error::CapExceeded {
                cap: CapExceeded::WindowCount { count, .. },
                ..
            }) => count,
            other => panic!("{other:?}"),
        };
        let n = std::cell::Cell::new(0u32);
        let new = |key: &str, amount: u128, now: u64, limits: Limits| {
            n.set(n.get() + 1);
            let mut r = request();
            r.key_id = id(key);
            r.message = n.get().to_be_bytes().to_vec();
            r.metadata.amount = amount;
            r.created_at = now;
            r.expires_at = now + 10_000;
            let mut new = new_request(r, &format!("window-{}", n.get()));
            new.limits = limits;
            new
        };

        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let mut made: Vec<Made> = Vec::new();
        let mut last_counted = std::collections::HashMap::new();
        let mut now = 10_000u64;
        let windows = [1, 30, 200, 100_000];
        for step in 0..600 {
            if rng.gen_ratio(1, 12) {
                now -= rng.gen_range(1..80);
            } else {
                now += rng.gen_range(0..12);
            }
            let key = if rng.gen_bool(0.5) { "k1" } else { "k2" };
            match rng.gen_range(0..10) {
                0..=4 => {
                    let amount = rng.gen_range(0..1_000u128);
                    let id = insert(store, &new(key, amount, now, Limits::default()), now);
                    let counted_at = last_counted.get(key).map_or(now, |&at: &u64| at.max(now));
                    last_counted.insert(key, counted_at);
                    made.push(Made {
                        id,
                        key,
                        created_at: now,
                        counted_at,
                        amount,
                        state: State::PendingApproval,
                    });
                }
                5 | 6 => {
                    let Some(m) = one_in(&mut made, State::PendingApproval, rng.gen_range(0..8))
                    else {
                        continue;
                    };
                    let event = if rng.gen_bool(0.5) {
                        Event::Expired { at: now }
                    } else {
                        Event::Vetoed {
                            approver: "a".into(),
                            department: "risk".into(),
                            reason: "no".into(),
                        }
                    };
                    let t = next(State::PendingApproval, event).unwrap();
                    store.transition(&m.id, &t, now).unwrap();
                    m.state = t.to();
                }
                7 => {
                    let Some(m) = one_in(&mut made, State::PendingApproval, rng.gen_range(0..8))
                    else {
                        continue;
                    };
                    store.transition(&m.id, &quorum(), now).unwrap();
                    let c = store.claim_signing(&m.id, claim("a", true, now)).unwrap();
                    let failed = next(
                        State::Signing,
                        Event::SigningFailed {
                            reason: "refused".into(),
                        },
                    )
                    .unwrap();
                    store.finish_signing(&m.id, c.fence, &failed, now).unwrap();
                    m.state = State::Failed;
                }
                _ => {
                    let Some(m) = one_in(&mut made, State::Failed, rng.gen_range(0..3)) else {
                        continue;
                    };
                    let retried = next(State::Failed, Event::Retried { by: "ops".into() }).unwrap();
                    let window = windows[rng.gen_range(0..windows.len())];
                    // Checked as at its creation, without itself (FAILED).
                    let (id, key, created_at, amount) = (m.id, m.key, m.created_at, m.amount);
                    let expected = summed(&made, key, created_at, window);
                    let result = store.retry_failed(&id, &retried, &by_amount(window), None, now);
                    let total = match result {
                        Err(Error::CapExceeded {
                            cap: CapExceeded::WindowAmount { total, .. },
                            ..
                        }) => total,
                        Ok(()) if expected.amount + amount == 0 => 0,
                        other => panic!("step {step}: {other:?}"),
                    };
                    assert_eq!(total, expected.amount + amount, "step {step}: retry");
                    if total == 0 {
                        // Passed the cap of 0: it is APPROVED again.
                        made.iter_mut().find(|m| m.id == id).unwrap().state = State::Approved;
                        continue;
                    }
                    store
                        .retry_failed(&id, &retried, &Limits::default(), None, now)
                        .unwrap();
                    made.iter_mut().find(|m| m.id == id).unwrap().state = State::Approved;
                }
            }
            for key in ["k1", "k2"] {
                for window in windows {
                    let expected = summed(&made, key, now, window);
                    let total = refused_total(store.insert_request(
                        &new(key, 1, now, by_amount(window)),
                        None,
                        now,
                    ));
                    assert_eq!(total, expected.amount + 1, "step {step}, {key}, {window} s");
                    let count = refused_count(store.insert_request(
                        &new(key, 1, now, by_count(window)),
                        None,
                        now,
                    ));
                    assert_eq!(
                        count,
                        expected.requests + 1,
                        "step {step}, {key}, {window} s"
                    );
                }
            }
        }
        assert!(made.iter().filter(|m| m.state == State::Approved).count() > 3);
        assert!(made.iter().filter(|m| !live(m.state)).count() > 30);

        // Amounts near u128's range: the totals saturate, and the caps
        // count the window's rows instead (still saturating, never wrapped).
        for (i, amount) in [u128::MAX - 5, 3, 10].into_iter().enumerate() {
            let at = 20_000 + i as u64 * 100;
            insert(store, &new("k3", amount, at, Limits::default()), at);
        }
        let count = |now, window| {
            refused_count(store.insert_request(&new("k3", 1, now, by_count(window)), None, now))
        };
        let total = |now, window| {
            refused_total(store.insert_request(&new("k3", 1, now, by_amount(window)), None, now))
        };
        assert_eq!(total(20_200, 1_000), u128::MAX);
        assert_eq!(count(20_200, 1_000), 4);
        // The window after the first: 3 + 10, and the probe's 1.
        assert_eq!(total(20_200, 150), 14);
        assert_eq!(count(20_200, 150), 3);
        assert_eq!(total(20_200, 50), 11);
    }

    /// A PSBT request of `n`, made at `now`.
    pub fn psbt_request(n: u8, now: u64) -> SigningRequest {
        let mut r = request();
        r.message.clear();
        r.metadata = Metadata {
            memo: "sweep".into(),
            ..Metadata::default()
        };
        r.psbt = Some(vec![0x70, 0x73, 0x62, 0x74, 0xff, n]);
        r.created_at = now;
        r
    }

    /// A PSBT request is stored with its PSBT; it is SIGNED with its
    /// signed transaction, all at once, and never without it; a raw
    /// request never with one.
    pub fn signed_transactions<S: RequestStore>(store: &S) {
        let r = psbt_request(1, 100);
        let id = insert(store, &new_request(r.clone(), "psbt"), 100);
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.request, r, "the PSBT is kept");
        store.transition(&id, &quorum(), 101).unwrap();
        store
            .transition(
                &id,
                &next(State::Approved, Event::SigningStarted).unwrap(),
                102,
            )
            .unwrap();
        let signed = |transaction| {
            next(
                State::Signing,
                Event::Signed {
                    signature: vec![3; 128],
                    signers: vec!["a".into(), "b".into()],
                    transaction,
                },
            )
            .unwrap()
        };
        let err = store.transition(&id, &signed(None), 103).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert_eq!(store.request(&id).unwrap().state, State::Signing);
        let result = SignedTransaction {
            psbt: vec![1, 2, 3],
            tx: vec![4, 5, 6],
        };
        store
            .transition(&id, &signed(Some(result.clone())), 104)
            .unwrap();
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.state, State::Signed);
        assert_eq!(rec.signature, Some(vec![3; 128]));
        assert_eq!(rec.signed_transaction, Some(result.clone()));

        let raw = insert(store, &new_request(request(), "raw"), 100);
        store.transition(&raw, &quorum(), 101).unwrap();
        store
            .transition(
                &raw,
                &next(State::Approved, Event::SigningStarted).unwrap(),
                102,
            )
            .unwrap();
        assert!(matches!(
            store.transition(&raw, &signed(Some(result)), 103),
            Err(Error::Internal(_))
        ));
        store.transition(&raw, &signed(None), 104).unwrap();
        assert_eq!(store.request(&raw).unwrap().signed_transaction, None);
    }

    /// Concurrent compare-and-sets through any of `stores` (handles on one
    /// database): exactly one wins, every other loses with StateConflict.
    pub fn racing_transitions<S: RequestStore + 'static>(stores: Vec<Arc<S>>) {
        let id = insert(&*stores[0], &new_request(request(), "race"), 100);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = stores[i % stores.len()].clone();
                std::thread::spawn(move || store.transition(&id, &quorum(), 101))
            })
            .collect();
        let results: Vec<Result<()>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(
                    e,
                    Error::StateConflict {
                        actual: State::Approved,
                        ..
                    }
                )),
            "{results:?}"
        );
        assert_eq!(stores[0].request(&id).unwrap().transitions.len(), 2);
    }

    /// Concurrent submissions through any of `stores` cannot together
    /// exceed a cap.
    pub fn racing_caps<S: RequestStore + 'static>(stores: Vec<Arc<S>>) {
        let limits = Limits {
            window_secs: 1000,
            max_requests_per_window: Some(3),
            ..Limits::default()
        };
        let threads: Vec<_> = (0..10u8)
            .map(|i| {
                let store = stores[i as usize % stores.len()].clone();
                let limits = limits.clone();
                std::thread::spawn(move || {
                    let mut r = request();
                    r.message = vec![i];
                    let mut new = new_request(r, &format!("race-{i}"));
                    new.limits = limits;
                    store.insert_request(&new, None, 150)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            3,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, Error::CapExceeded { .. })),
            "{results:?}"
        );
    }

    fn claim(owner: &str, takeover: bool, now: u64) -> crate::request_store::ClaimRequest<'_> {
        crate::request_store::ClaimRequest {
            owner,
            takeover,
            now,
            lease_secs: 100,
            known: None,
        }
    }

    pub fn approved<S: RequestStore + ?Sized>(store: &S, key: &str) -> RequestId {
        let r = request();
        let id = insert(store, &new_request(r.clone(), key), 100);
        let a = approval(&r, Decision::Approve);
        store
            .record_decision(&id, &a, Some(&quorum()), 101)
            .unwrap();
        id
    }

    /// Fails the SIGNING request `id` under claim `fence` at `now` and has an
    /// admin retry it at `now + 10`: APPROVED again, its plans kept.
    pub fn fail_and_retry<S: RequestStore + ?Sized>(
        store: &S,
        id: &RequestId,
        fence: u64,
        now: u64,
    ) {
        let failed = next(
            State::Signing,
            Event::SigningFailed {
                reason: "refused".into(),
            },
        )
        .unwrap();
        store.finish_signing(id, fence, &failed, now).unwrap();
        let retried = next(State::Failed, Event::Retried { by: "ops".into() }).unwrap();
        store
            .retry_failed(id, &retried, &Limits::default(), None, now + 10)
            .unwrap();
    }

    /// Signing claims: one holder at a time, fences that grow, writes of a
    /// run that lost its claim refused, plans kept until SIGNED.
    pub fn signing_claims<S: RequestStore>(store: &S) {
        use crate::request_store::SigningPlan;
        let id = approved(store, "k1");
        let first = store.claim_signing(&id, claim("a", false, 200)).unwrap();
        assert_eq!((first.fence, first.lease_until), (1, 300));
        assert!(first.plans.is_empty());
        assert_eq!(store.request(&id).unwrap().state, State::Signing);
        // Live until its lease ends, for the sweeps of other coordinators.
        assert_eq!(store.live_claims(299).unwrap(), vec![(id, "a".to_string())]);
        assert!(store.live_claims(300).unwrap().is_empty());
        // Held: another owner is refused until the lease ends.
        assert!(matches!(
            store.claim_signing(&id, claim("b", false, 250)),
            Err(Error::SigningClaimed { ref owner, until: 300, .. }) if owner == "a"
        ));
        // The holder renews: same fence.
        assert_eq!(
            store
                .claim_signing(&id, claim("a", false, 260))
                .unwrap()
                .fence,
            1
        );
        let plan = SigningPlan {
            input: 0,
            package: vec![1, 2, 3],
            signers: vec!["s1".into(), "s2".into()],
        };
        store.record_signing_plan(&id, 1, &plan).unwrap();
        // A takeover (the restarted process) gets a larger fence and the plan.
        let second = store.claim_signing(&id, claim("b", true, 270)).unwrap();
        assert_eq!(second.fence, 2);
        assert_eq!(second.plans, vec![plan.clone()]);
        // The old run can write nothing more.
        assert!(matches!(
            store.record_signing_plan(&id, 1, &plan),
            Err(Error::ClaimLost { fence: 1, .. })
        ));
        let signed = next(
            State::Signing,
            Event::Signed {
                signature: vec![9; 65],
                signers: vec!["s1".into(), "s2".into()],
                transaction: None,
            },
        )
        .unwrap();
        assert!(matches!(
            store.finish_signing(&id, 1, &signed, 280),
            Err(Error::ClaimLost { .. })
        ));
        assert_eq!(store.request(&id).unwrap().state, State::Signing);
        // A lease that ran out may be taken without takeover.
        let third = store.claim_signing(&id, claim("c", false, 371)).unwrap();
        assert_eq!(third.fence, 3);
        store.finish_signing(&id, 3, &signed, 380).unwrap();
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.state, State::Signed);
        assert_eq!(rec.signature, Some(vec![9; 65]));
        // Signed: nothing to claim, and the plans are gone.
        assert!(matches!(
            store.claim_signing(&id, claim("c", true, 390)),
            Err(Error::StateConflict {
                actual: State::Signed,
                ..
            })
        ));
        // Pending requests cannot be claimed either.
        let mut other = request();
        other.metadata.memo = "another".into();
        let pending = insert(store, &new_request(other, "k2"), 100);
        assert!(matches!(
            store.claim_signing(&pending, claim("a", true, 200)),
            Err(Error::StateConflict {
                actual: State::PendingApproval,
                ..
            })
        ));
        // A SIGNED request holds no live claim, whatever its lease said.
        assert!(store.live_claims(372).unwrap().is_empty());
        assert!(store.changed_since(375).unwrap().contains(&id));
        assert!(!store.changed_since(381).unwrap().contains(&id));
    }

    /// A FAILED request keeps its plans and goes back to APPROVED by an
    /// admin's retry, which then claims it with a larger fence; a retry of
    /// anything but FAILED, or over a cap, is refused.
    pub fn retries<S: RequestStore>(store: &S) {
        use crate::request_store::SigningPlan;
        let id = approved(store, "k1");
        let c = store.claim_signing(&id, claim("a", false, 200)).unwrap();
        let plan = SigningPlan {
            input: 0,
            package: vec![4],
            signers: vec!["s1".into()],
        };
        store.record_signing_plan(&id, c.fence, &plan).unwrap();
        let failed = next(
            State::Signing,
            Event::SigningFailed {
                reason: "refused".into(),
            },
        )
        .unwrap();
        store.finish_signing(&id, c.fence, &failed, 210).unwrap();
        let retried = next(State::Failed, Event::Retried { by: "ops".into() }).unwrap();
        let tight = Limits {
            max_amount_per_request: Some(1),
            ..Limits::default()
        };
        assert!(matches!(
            store.retry_failed(&id, &retried, &tight, None, 220),
            Err(Error::CapExceeded { .. })
        ));
        assert_eq!(store.request(&id).unwrap().state, State::Failed);
        store
            .retry_failed(&id, &retried, &Limits::default(), None, 220)
            .unwrap();
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.state, State::Approved);
        assert_eq!(rec.state_reason, "retried by ops");
        assert!(matches!(
            store.retry_failed(&id, &retried, &Limits::default(), None, 221),
            Err(Error::StateConflict {
                actual: State::Approved,
                ..
            })
        ));
        let again = store.claim_signing(&id, claim("b", false, 230)).unwrap();
        assert_eq!(again.fence, c.fence + 1);
        assert_eq!(again.plans, vec![plan]);
    }

    /// A claim returns the request as claimed, equal to a fresh read: built
    /// from the caller's record when that is current, read in the claim's
    /// transaction when it is absent or stale (another state, or a history
    /// that grew: a run that failed and an admin's retry since).
    pub fn claims_return_the_record_as_claimed<S: RequestStore>(store: &S) {
        let id = approved(store, "k1");
        let approved_record = store.request(&id).unwrap();
        let with = |owner, now, known| crate::request_store::ClaimRequest {
            known,
            ..claim(owner, false, now)
        };
        // Current: built, not read.
        let first = store
            .claim_signing(&id, with("a", 200, Some(&approved_record)))
            .unwrap();
        assert!(first.started);
        assert_eq!(first.record, store.request(&id).unwrap());
        assert_eq!(first.record.state, State::Signing);
        // A renewal with the claimed record, and without any.
        let renewed = store
            .claim_signing(&id, with("a", 201, Some(&first.record)))
            .unwrap();
        assert!(!renewed.started);
        assert_eq!(renewed.record, first.record);
        assert_eq!(
            store
                .claim_signing(&id, with("a", 202, None))
                .unwrap()
                .record,
            first.record
        );
        // Stale by state: the APPROVED record of before the claim.
        assert_eq!(
            store
                .claim_signing(&id, with("a", 203, Some(&approved_record)))
                .unwrap()
                .record,
            first.record
        );
        // Stale by history: APPROVED again after a failure and a retry,
        // while the caller still has the first APPROVED record.
        fail_and_retry(store, &id, first.fence, 210);
        let again = store
            .claim_signing(&id, with("b", 230, Some(&approved_record)))
            .unwrap();
        let read = store.request(&id).unwrap();
        assert_eq!(again.record, read);
        assert_eq!(
            read.transitions.len(),
            approved_record.transitions.len() + 4
        );
    }

    /// A fresh request's claim and first plan in one transaction: planned
    /// only when the claim started the signing of the request the caller
    /// still has, with no earlier plan; otherwise claimed without it (or
    /// refused as a claim is), and nothing half-written.
    pub fn claims_with_a_first_plan<S: RequestStore>(store: &S) {
        use crate::request_store::SigningPlan;
        let plan = |package: u8| SigningPlan {
            input: 0,
            package: vec![package],
            signers: vec!["s1".into(), "s2".into()],
        };
        let with = |owner, now, known| crate::request_store::ClaimRequest {
            known,
            ..claim(owner, false, now)
        };
        // Fresh and current: claimed and planned at once.
        let id = approved(store, "k1");
        let approved_record = store.request(&id).unwrap();
        let first = store
            .claim_signing_with_plan(&id, with("a", 200, Some(&approved_record)), &plan(1))
            .unwrap();
        assert!(first.planned);
        assert!(first.claim.started);
        assert_eq!(first.claim.fence, 1);
        assert_eq!(first.claim.record, store.request(&id).unwrap());
        assert_eq!(first.claim.record.state, State::Signing);
        // Under that claim, later plans go as before; a renewal sees both.
        store.record_signing_plan(&id, 1, &plan(2)).unwrap();
        let renewed = store.claim_signing(&id, with("a", 201, None)).unwrap();
        assert_eq!(renewed.plans, vec![plan(1), plan(2)]);
        // Already SIGNING (the stale APPROVED record): another owner is
        // refused and nothing is written; the holder renews, unplanned.
        assert!(matches!(
            store.claim_signing_with_plan(&id, with("b", 202, Some(&approved_record)), &plan(3)),
            Err(Error::SigningClaimed { .. })
        ));
        let again = store
            .claim_signing_with_plan(&id, with("a", 203, Some(&approved_record)), &plan(3))
            .unwrap();
        assert!(!again.planned);
        assert_eq!(again.claim.plans, vec![plan(1), plan(2)]);
        // APPROVED again after a failure and a retry: earlier plans exist
        // (and the caller's record is stale): claimed, not planned.
        fail_and_retry(store, &id, 1, 210);
        let retried_record = store.request(&id).unwrap();
        let resumed = store
            .claim_signing_with_plan(&id, with("b", 230, Some(&retried_record)), &plan(4))
            .unwrap();
        assert!(!resumed.planned, "earlier plans are resumed first");
        assert!(resumed.claim.started);
        assert_eq!(resumed.claim.fence, 2);
        assert_eq!(resumed.claim.plans, vec![plan(1), plan(2)]);
        // A fresh request claimed without a record of it: claimed, not
        // planned (the package came from a record the claim cannot vouch
        // for), and no plan written.
        let mut r = request();
        r.metadata.memo = "fresh".into();
        let fresh = insert(store, &new_request(r.clone(), "k3"), 100);
        store
            .record_decision(
                &fresh,
                &approval(&r, Decision::Approve),
                Some(&quorum()),
                101,
            )
            .unwrap();
        let unknown = store
            .claim_signing_with_plan(&fresh, with("a", 240, None), &plan(5))
            .unwrap();
        assert!(!unknown.planned);
        assert!(unknown.claim.started);
        assert!(
            store
                .claim_signing(&fresh, with("a", 241, None))
                .unwrap()
                .plans
                .is_empty()
        );
        // A pending request: refused as a claim is, nothing written.
        let mut other = request();
        other.metadata.memo = "another".into();
        let pending = insert(store, &new_request(other, "k2"), 100);
        assert!(matches!(
            store.claim_signing_with_plan(&pending, with("a", 250, None), &plan(6)),
            Err(Error::StateConflict {
                actual: State::PendingApproval,
                ..
            })
        ));
        let rec = store.request(&pending).unwrap();
        assert_eq!(rec.state, State::PendingApproval);
        assert_eq!(rec.transitions.len(), 1);
    }
}
