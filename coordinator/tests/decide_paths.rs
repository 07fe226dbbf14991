//! The paths of a Decide that a running cluster reaches only through races
//! or the clock, driven in one process (`support::in_process`): a decision
//! is judged and written in one hop to the store, against the request as
//! it stands inside the write (`ringi::requests::decide`), and these are
//! the cases that hop must hand back or refuse.

mod support;

use std::sync::Arc;

use ringi::coordinator::Coordinator;
use ringi::error::Error;
use ringi::registry::Registry;
use ringi::request_state::State;
use ringi::request_store::RequestStore;
use ringi::requests::{self, submit};
use ringi::sqlite::SqliteStore;
use ringi::store::KeyStore;
use ringi_policy::evaluate::Violation;
use ringi_policy::key_id::KeyId;
use support::in_process::{Approver, key_record, policy, submission};

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    c: Arc<Coordinator>,
    alice: Approver,
    carol: Approver,
}

/// A coordinator with keys hot-1 and hot-2 (one treasury and one
/// compliance approval each) and no signers.
fn setup() -> Setup {
    let alice = Approver::new("alice", "treasury");
    let carol = Approver::new("carol", "compliance");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("ringi.db")).unwrap());
    for key in ["hot-1", "hot-2"] {
        store.insert_key(&key_record(key)).unwrap();
    }
    let c = Arc::new(Coordinator::with_store(
        Registry::new(&[]).unwrap(),
        store.clone(),
        Some(Arc::new(policy(&[&alice, &carol]))),
    ));
    Setup {
        _dir: dir,
        store,
        c,
        alice,
        carol,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_naming_another_key_is_refused_and_writes_nothing() {
    let s = setup();
    let record = requests::submit(&s.c, submission("hot-1", "k"))
        .await
        .unwrap();
    // Alice's own signature, over a statement for this request's id and
    // content but naming hot-2, a key she may also approve for.
    let mut statement = s.alice.approval(&record).statement;
    statement.key_id = KeyId::parse("hot-2").unwrap();
    let err = requests::decide(&s.c, s.alice.signed(statement))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PolicyViolation(Violation::OtherRequest { index: 0 })
        ),
        "{err:?}"
    );
    let stored = s.store.request(&record.id).unwrap();
    assert!(stored.approvals.is_empty(), "nothing recorded");
    assert_eq!(stored, record, "the request is as submitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_a_request_past_its_expiry_expires_it() {
    let s = setup();
    // Admitted a day and a bit ago: its 86,400 s have passed.
    let now = requests::now();
    let admitted = submit::admit(
        &s.c.policy().unwrap(),
        &key_record("hot-1"),
        submission("hot-1", "old"),
        now - 90_000,
        submit::fresh_nonce(),
    )
    .unwrap();
    let id = s
        .store
        .insert_request(&admitted.new, None, now - 90_000)
        .unwrap()
        .id();
    let record = s.store.request(&id).unwrap();
    assert_eq!(record.state, State::PendingApproval);

    let err = requests::decide(&s.c, s.alice.approval(&record))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err:?}");
    let stored = s.store.request(&id).unwrap();
    assert_eq!(stored.state, State::Expired, "the Decide expired it");
    assert!(stored.approvals.is_empty(), "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_statement_sent_again_or_at_once_is_recorded_once() {
    let s = setup();
    let record = requests::submit(&s.c, submission("hot-1", "k"))
        .await
        .unwrap();
    let alice = s.alice.approval(&record);
    let first = requests::decide(&s.c, alice.clone()).await.unwrap();
    assert_eq!(first.approvals, vec![alice.clone()]);
    // A client retrying after a timeout gets the request as it is.
    let again = requests::decide(&s.c, alice.clone()).await.unwrap();
    assert_eq!(again, first);

    // Eight copies of carol's approval at once: every caller is answered
    // with the request holding it once, and the quorum it completes is
    // recorded once.
    let carol = s.carol.approval(&record);
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (c, carol) = (s.c.clone(), carol.clone());
            tokio::spawn(async move { requests::decide(&c, carol).await })
        })
        .collect();
    for copy in copies {
        let answered = copy.await.unwrap().unwrap();
        assert_eq!(
            answered.approvals.iter().filter(|a| **a == carol).count(),
            1
        );
    }
    let stored = s.store.request(&record.id).unwrap();
    assert_eq!(stored.approvals, vec![alice, carol]);
    let approved = stored
        .transitions
        .iter()
        .filter(|t| t.to == State::Approved)
        .count();
    assert_eq!(approved, 1, "{:?}", stored.transitions);
}
