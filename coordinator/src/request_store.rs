//! Signing requests, their approvals and their state history in the
//! coordinator's SQLite database (tables created in [`crate::store`]).
//!
//! Every change is one transaction that checks the state it starts from
//! (compare-and-set), writes the change and its transition record together:
//! a crash or a concurrent writer never leaves an approval without its state
//! change, or a state change without its history.

use ringi_policy::approver_key::ApproverKey;
use ringi_policy::limits::{Limits, Usage, check};
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_policy::statement::{Approval, Decision, Statement};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{Error, Result};
use crate::request_state::State;
use crate::store::Store;

/// Most requests one listing returns.
pub const LIST_LIMIT: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Empty for the first record (submission).
    pub from: String,
    pub to: State,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: [u8; 32],
    pub request: SigningRequest,
    /// Operator routing: the signers to use, or empty for any.
    pub signers: Vec<String>,
    pub state: State,
    pub state_reason: String,
    pub signature: Option<Vec<u8>>,
    pub approvals: Vec<Approval>,
    pub transitions: Vec<TransitionRecord>,
}

/// Which requests a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub pending_only: bool,
    pub key_id: Option<&'a str>,
    pub state: Option<State>,
    pub page_size: usize,
    pub after: Option<Position>,
}

/// Where a page ended: listings continue strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub created_at: u64,
    pub request_id: [u8; 32],
}

impl Position {
    /// The opaque page token: hex of created_at (8 bytes) ‖ request id.
    pub fn token(&self) -> String {
        let mut bytes = self.created_at.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.request_id);
        hex::encode(bytes)
    }

    pub fn parse(token: &str) -> Option<Position> {
        let bytes = hex::decode(token).ok()?;
        if bytes.len() != 40 {
            return None;
        }
        Some(Position {
            created_at: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            request_id: bytes[8..].try_into().ok()?,
        })
    }
}

/// A state change to make together with another write.
pub struct Change<'a> {
    pub from: State,
    pub to: State,
    pub reason: &'a str,
}

impl Store {
    /// Records a new request in PENDING_APPROVAL. ALREADY_EXISTS if its id
    /// exists (the id hashes every field, so that is the same request).
    pub fn insert_request(
        &self,
        request: &SigningRequest,
        signers: &[String],
        now: u64,
    ) -> Result<[u8; 32]> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let id = insert_request_tx(&tx, request, signers, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// Records a new request under the caller's idempotency key, in one
    /// transaction: if (requester, key) is known with the same
    /// `content_hash`, returns the existing request id and `false`; with
    /// another content hash, ALREADY_EXISTS; otherwise inserts both and
    /// returns the new id and `true`.
    ///
    /// A new request must also fit the key's window caps, counted over the
    /// requests of the window that may still be or have been signed, in the
    /// same transaction (so concurrent submissions cannot overshoot).
    #[allow(clippy::too_many_arguments)]
    pub fn insert_request_idempotent(
        &self,
        request: &SigningRequest,
        signers: &[String],
        idempotency_key: &str,
        content_hash: &[u8; 32],
        limits: &Limits,
        daily_volume: Option<u128>,
        now: u64,
    ) -> Result<([u8; 32], bool)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let known: Option<(Vec<u8>, Vec<u8>)> = tx
            .query_row(
                "SELECT content_hash, request_id FROM idempotency_keys WHERE requester = ?1 AND idempotency_key = ?2",
                params![request.requester, idempotency_key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((hash, id)) = known {
            if hash != content_hash {
                return Err(Error::AlreadyExists(format!(
                    "idempotency key {idempotency_key:?} of {:?} was used for a request with different content",
                    request.requester
                )));
            }
            return Ok((id.try_into().map_err(|_| corrupt("request id"))?, false));
        }
        let mut usage = Usage::default();
        if limits.has_window() {
            let since = now.saturating_sub(limits.window_secs) as i64;
            let mut stmt = tx.prepare(
                "SELECT amount FROM requests WHERE key_id = ?1 AND created_at > ?2
                 AND state NOT IN ('REJECTED', 'EXPIRED', 'FAILED')",
            )?;
            let amounts = stmt.query_map(params![request.key_id.as_str(), since], |r| {
                r.get::<_, String>(0)
            })?;
            for a in amounts {
                let a: u128 = a?.parse().map_err(|_| corrupt("amount"))?;
                usage.amount = usage.amount.saturating_add(a);
                usage.requests += 1;
            }
        }
        check(limits, request.metadata.amount, usage, daily_volume).map_err(|e| {
            Error::ResourceExhausted(format!("spending cap of key {:?}: {e}", request.key_id))
        })?;
        let id = insert_request_tx(&tx, request, signers, now)?;
        tx.execute(
            "INSERT INTO idempotency_keys (requester, idempotency_key, content_hash, request_id) VALUES (?1, ?2, ?3, ?4)",
            params![request.requester, idempotency_key, &content_hash[..], &id[..]],
        )?;
        tx.commit()?;
        Ok((id, true))
    }
}

fn insert_request_tx(
    tx: &Transaction<'_>,
    request: &SigningRequest,
    signers: &[String],
    now: u64,
) -> Result<[u8; 32]> {
    let id = request.id();
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM requests WHERE request_id = ?1",
            [&id[..]],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(Error::AlreadyExists(format!(
            "request {} exists already",
            hex::encode(id)
        )));
    }
    let m = &request.metadata;
    tx.execute(
        "INSERT INTO requests (request_id, key_id, message, asset, amount, destination, memo, requester,
                               created_at, expires_at, policy_hash, signers, state, state_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, '')",
        params![
            &id[..],
            request.key_id.as_str(),
            request.message,
            m.asset,
            m.amount.to_string(),
            m.destination,
            m.memo,
            request.requester,
            request.created_at as i64,
            request.expires_at as i64,
            &request.policy_hash[..],
            signers.join(","),
            State::PendingApproval.as_str(),
        ],
    )?;
    insert_transition(tx, &id, "", State::PendingApproval, "submitted", now)?;
    Ok(id)
}

impl Store {
    /// The request, or NOT_FOUND.
    pub fn request(&self, id: &[u8; 32]) -> Result<RequestRecord> {
        let conn = self.lock();
        load_request(&conn, id)?
            .ok_or_else(|| Error::NotFound(format!("request {} does not exist", hex::encode(id))))
    }

    /// Requests, newest first: at most `page_size` (1..=[`LIST_LIMIT`])
    /// after the `after` position, and the position to continue from if
    /// there may be more.
    pub fn list_requests(
        &self,
        filter: &ListFilter<'_>,
    ) -> Result<(Vec<RequestRecord>, Option<Position>)> {
        let page_size = filter.page_size.clamp(1, LIST_LIMIT);
        let conn = self.lock();
        let (after_time, after_id) = match &filter.after {
            Some(p) => (p.created_at as i64, p.request_id.to_vec()),
            None => (i64::MAX, vec![0xff; 33]),
        };
        let mut stmt = conn.prepare(
            "SELECT request_id, created_at FROM requests
             WHERE (?1 = 0 OR state = 'PENDING_APPROVAL') AND (?2 IS NULL OR key_id = ?2) AND (?3 IS NULL OR state = ?3)
               AND (created_at, request_id) < (?4, ?5)
             ORDER BY created_at DESC, request_id DESC LIMIT ?6",
        )?;
        let rows: Vec<(Vec<u8>, i64)> = stmt
            .query_map(
                params![
                    filter.pending_only as i64,
                    filter.key_id,
                    filter.state.map(State::as_str),
                    after_time,
                    after_id,
                    page_size as i64
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        let next = (rows.len() == page_size)
            .then(|| rows.last())
            .flatten()
            .and_then(|(id, t)| {
                Some(Position {
                    created_at: *t as u64,
                    request_id: <[u8; 32]>::try_from(id.as_slice()).ok()?,
                })
            });
        let records = rows
            .iter()
            .filter_map(|(id, _)| <[u8; 32]>::try_from(id.as_slice()).ok())
            .filter_map(|id| load_request(&conn, &id).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok((records, next))
    }

    /// Ids of requests in any of `states`.
    pub fn requests_in(&self, states: &[State]) -> Result<Vec<[u8; 32]>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT request_id, state FROM requests")?;
        let rows: Vec<(Vec<u8>, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .filter(|(_, s)| State::parse(s).is_some_and(|s| states.contains(&s)))
            .filter_map(|(id, _)| <[u8; 32]>::try_from(id.as_slice()).ok())
            .collect())
    }

    /// Stores an approval (and a state change, if any) while the request is
    /// still in `expected`. ALREADY_EXISTS if this approver decided already.
    pub fn record_decision(
        &self,
        id: &[u8; 32],
        expected: State,
        approval: &Approval,
        change: Option<Change<'_>>,
        now: u64,
    ) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        check_state(&tx, id, expected)?;
        let key = approval.approver.to_sec1();
        let dup: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM approvals WHERE request_id = ?1 AND approver_key = ?2",
                params![&id[..], key],
                |r| r.get(0),
            )
            .optional()?;
        if dup.is_some() {
            return Err(Error::AlreadyExists(format!(
                "approver key {} has already decided on request {}",
                approval.approver.to_text(),
                hex::encode(id)
            )));
        }
        let s = &approval.statement;
        tx.execute(
            "INSERT INTO approvals (request_id, approver_key, department, decision, reason, issued_at, expires_at,
                                    content_digest, signature, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                &id[..],
                key,
                s.department,
                s.decision.as_str(),
                s.reason,
                s.issued_at as i64,
                s.expires_at as i64,
                &s.content_digest[..],
                approval.signature,
                now as i64,
            ],
        )?;
        if let Some(change) = change {
            apply_change(&tx, id, &change, None, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves the request from `change.from` to `change.to` (compare-and-set),
    /// storing `signature` if given. FAILED_PRECONDITION if its state moved.
    pub fn transition(
        &self,
        id: &[u8; 32],
        change: Change<'_>,
        signature: Option<&[u8]>,
        now: u64,
    ) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        check_state(&tx, id, change.from)?;
        apply_change(&tx, id, &change, signature, now)?;
        tx.commit()?;
        Ok(())
    }
}

fn check_state(tx: &Transaction<'_>, id: &[u8; 32], expected: State) -> Result<()> {
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM requests WHERE request_id = ?1",
            [&id[..]],
            |r| r.get(0),
        )
        .optional()?;
    match state {
        None => Err(Error::NotFound(format!(
            "request {} does not exist",
            hex::encode(id)
        ))),
        Some(s) if s == expected.as_str() => Ok(()),
        Some(s) => Err(Error::FailedPrecondition(format!(
            "request {} is {s}, not {expected}",
            hex::encode(id)
        ))),
    }
}

fn apply_change(
    tx: &Transaction<'_>,
    id: &[u8; 32],
    change: &Change<'_>,
    signature: Option<&[u8]>,
    now: u64,
) -> Result<()> {
    tx.execute(
        "UPDATE requests SET state = ?2, state_reason = ?3, signature = COALESCE(?4, signature) WHERE request_id = ?1",
        params![&id[..], change.to.as_str(), change.reason, signature],
    )?;
    insert_transition(tx, id, change.from.as_str(), change.to, change.reason, now)
}

fn insert_transition(
    tx: &Transaction<'_>,
    id: &[u8; 32],
    from: &str,
    to: State,
    reason: &str,
    now: u64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO transitions (request_id, seq, from_state, to_state, reason, at)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE request_id = ?1), ?2, ?3, ?4, ?5)",
        params![&id[..], from, to.as_str(), reason, now as i64],
    )?;
    Ok(())
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("database holds a malformed {what}"))
}

fn load_request(conn: &Connection, id: &[u8; 32]) -> Result<Option<RequestRecord>> {
    let row = conn
        .query_row(
            "SELECT key_id, message, asset, amount, destination, memo, requester, created_at, expires_at,
                    policy_hash, signers, state, state_reason, signature
             FROM requests WHERE request_id = ?1",
            [&id[..]],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?),
                    (r.get::<_, i64>(7)?, r.get::<_, i64>(8)?, r.get::<_, Vec<u8>>(9)?),
                    (r.get::<_, String>(10)?, r.get::<_, String>(11)?, r.get::<_, String>(12)?, r.get::<_, Option<Vec<u8>>>(13)?),
                ))
            },
        )
        .optional()?;
    let Some((
        (key_id, message, asset, amount),
        (destination, memo, requester),
        (created_at, expires_at, policy_hash),
        (signers, state, state_reason, signature),
    )) = row
    else {
        return Ok(None);
    };
    let request = SigningRequest {
        key_id: key_id.try_into().map_err(|_| corrupt("key id"))?,
        message,
        metadata: Metadata {
            asset,
            amount: amount.parse().map_err(|_| corrupt("amount"))?,
            destination,
            memo,
        },
        requester,
        created_at: created_at as u64,
        expires_at: expires_at as u64,
        policy_hash: policy_hash.try_into().map_err(|_| corrupt("policy hash"))?,
    };
    let mut stmt = conn.prepare(
        "SELECT approver_key, department, decision, reason, issued_at, expires_at, content_digest, signature
         FROM approvals WHERE request_id = ?1 ORDER BY rowid",
    )?;
    let approvals = stmt
        .query_map([&id[..]], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, Vec<u8>>(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(
            |(key, department, decision, reason, issued_at, expires_at, digest, signature)| {
                Ok(Approval {
                    statement: Statement {
                        request_id: *id,
                        content_digest: digest.try_into().map_err(|_| corrupt("content digest"))?,
                        key_id: request.key_id.clone(),
                        department,
                        decision: match decision.as_str() {
                            "approve" => Decision::Approve,
                            "reject" => Decision::Reject,
                            _ => return Err(corrupt("decision")),
                        },
                        reason,
                        issued_at: issued_at as u64,
                        expires_at: expires_at as u64,
                    },
                    approver: ApproverKey::from_sec1(&key).map_err(|_| corrupt("approver key"))?,
                    signature,
                })
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let mut stmt =
        conn.prepare("SELECT from_state, to_state, reason, at FROM transitions WHERE request_id = ?1 ORDER BY seq")?;
    let transitions = stmt
        .query_map([&id[..]], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(from, to, reason, at)| {
            Ok(TransitionRecord {
                from,
                to: State::parse(&to).ok_or_else(|| corrupt("state"))?,
                reason,
                at: at as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(RequestRecord {
        id: *id,
        request,
        signers: signers
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        state: State::parse(&state).ok_or_else(|| corrupt("state"))?,
        state_reason,
        signature,
        approvals,
        transitions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SigningRequest {
        SigningRequest {
            key_id: "hot-1".parse().unwrap(),
            message: vec![1; 32],
            metadata: Metadata {
                asset: "BTC".into(),
                amount: 123_456_789_012_345_678_901_234_567,
                destination: "bc1q".into(),
                memo: "rebalance".into(),
            },
            requester: "wallet".into(),
            created_at: 100,
            expires_at: 200,
            policy_hash: [9; 32],
        }
    }

    fn approval(request: &SigningRequest, decision: Decision) -> Approval {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        Approval {
            statement: Statement::for_request(request, "treasury", decision, "why", 110, 150),
            approver: ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
                .unwrap(),
            signature: vec![7; 64],
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_request_and_its_decisions_survive_reopening() {
        let (dir, store) = store();
        let r = request();
        let id = store
            .insert_request(&r, &["s1".into(), "s2".into()], 100)
            .unwrap();
        assert_eq!(id, r.id());
        let a = approval(&r, Decision::Approve);
        store
            .record_decision(&id, State::PendingApproval, &a, None, 120)
            .unwrap();
        let b = approval(&r, Decision::Approve);
        let change = Change {
            from: State::PendingApproval,
            to: State::Approved,
            reason: "quorum met",
        };
        store
            .record_decision(&id, State::PendingApproval, &b, Some(change), 121)
            .unwrap();
        drop(store);

        let store = Store::open(&dir.path().join("db")).unwrap();
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.request, r);
        assert_eq!(rec.signers, vec!["s1", "s2"]);
        assert_eq!(rec.state, State::Approved);
        assert_eq!(rec.approvals, vec![a, b]);
        let states: Vec<State> = rec.transitions.iter().map(|t| t.to).collect();
        assert_eq!(states, vec![State::PendingApproval, State::Approved]);
        assert_eq!(rec.transitions[1].reason, "quorum met");
        assert_eq!(store.requests_in(&[State::Approved]).unwrap(), vec![id]);
    }

    #[test]
    fn the_same_approver_cannot_decide_twice_and_nothing_is_half_written() {
        let (_dir, store) = store();
        let r = request();
        let id = store.insert_request(&r, &[], 100).unwrap();
        let a = approval(&r, Decision::Approve);
        store
            .record_decision(&id, State::PendingApproval, &a, None, 120)
            .unwrap();
        let change = Change {
            from: State::PendingApproval,
            to: State::Approved,
            reason: "x",
        };
        let err = store
            .record_decision(&id, State::PendingApproval, &a, Some(change), 121)
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(ref m) if m.contains("has already decided")),
            "{err}"
        );
        let rec = store.request(&id).unwrap();
        assert_eq!(
            rec.state,
            State::PendingApproval,
            "the state change rolled back with the approval"
        );
        assert_eq!(rec.approvals.len(), 1);
        assert_eq!(rec.transitions.len(), 1);
    }

    #[test]
    fn pages_cover_every_request_once_newest_first() {
        let (_dir, store) = store();
        let mut ids = Vec::new();
        for i in 0..7u64 {
            let mut r = request();
            r.created_at = 100 + i / 2; // several requests per second
            r.message = vec![i as u8; 4];
            ids.push(store.insert_request(&r, &[], 100).unwrap());
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

    #[test]
    fn idempotency_keys_return_the_first_request_or_refuse_other_content() {
        let (_dir, store) = store();
        let r = request();
        let (id, created) = store
            .insert_request_idempotent(&r, &[], "k1", &[1; 32], &Limits::default(), None, 100)
            .unwrap();
        assert!(created);
        let mut later = r.clone();
        later.created_at += 5;
        let (again, created) = store
            .insert_request_idempotent(&later, &[], "k1", &[1; 32], &Limits::default(), None, 105)
            .unwrap();
        assert_eq!((again, created), (id, false));
        assert!(matches!(
            store.insert_request_idempotent(
                &later,
                &[],
                "k1",
                &[2; 32],
                &Limits::default(),
                None,
                105
            ),
            Err(Error::AlreadyExists(_))
        ));
        let mut other_requester = later.clone();
        other_requester.requester = "other".into();
        assert!(
            store
                .insert_request_idempotent(
                    &other_requester,
                    &[],
                    "k1",
                    &[2; 32],
                    &Limits::default(),
                    None,
                    105
                )
                .unwrap()
                .1
        );
    }

    #[test]
    fn changes_are_compare_and_set() {
        let (_dir, store) = store();
        let r = request();
        let id = store.insert_request(&r, &[], 100).unwrap();
        let wrong = Change {
            from: State::Approved,
            to: State::Signing,
            reason: "",
        };
        assert!(matches!(
            store.transition(&id, wrong, None, 101),
            Err(Error::FailedPrecondition(_))
        ));
        let late = approval(&r, Decision::Approve);
        assert!(matches!(
            store.record_decision(&id, State::Approved, &late, None, 101),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(store.request(&id).unwrap().approvals.is_empty());
        assert!(matches!(
            store.insert_request(&r, &[], 100),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(store.request(&[0; 32]), Err(Error::NotFound(_))));
        let sig = [5u8; 65];
        for (from, to) in [
            (State::PendingApproval, State::Approved),
            (State::Approved, State::Signing),
            (State::Signing, State::Signed),
        ] {
            store
                .transition(
                    &id,
                    Change {
                        from,
                        to,
                        reason: "",
                    },
                    (to == State::Signed).then_some(&sig[..]),
                    102,
                )
                .unwrap();
        }
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.signature.as_deref(), Some(&sig[..]));
        let list = |pending_only, key_id, state| {
            let filter = ListFilter {
                pending_only,
                key_id,
                state,
                page_size: 10,
                after: None,
            };
            store.list_requests(&filter).unwrap().0.len()
        };
        assert_eq!(list(true, None, None), 0);
        assert_eq!(list(false, Some("hot-1"), None), 1);
        assert_eq!(list(false, Some("other"), None), 0);
        assert_eq!(list(false, None, Some(State::Signed)), 1);
        assert_eq!(list(false, None, Some(State::Failed)), 0);
    }
}
