//! The policy a node (a signer or the coordinator) enforces, and how it
//! rolls forward without a restart ([`crate::policy_update`]).
//!
//! The operator pins the first policy (its file, and for a signer its
//! hash). Each update the admins sign is checked against the policy in
//! force, kept durably in `policy.sqlite3` under the node's data directory
//! (the update as it arrived, signatures included), and put in force at its
//! effective time; at start the node replays the stored chain from the
//! pinned policy (or from a later version the operator pinned), checking
//! each link again, so a tampered or reordered store stops the node instead
//! of changing its policy.
//!
//! Evaluations ask [`PolicyStore::for_request`]: the policy in force, or,
//! where the new policy keeps requests made under the one it replaced
//! (`pending_requests = "keep"`), that previous policy for those requests.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, params};

use crate::approver_key::ApproverKey;
use crate::encoding::sha256;
use crate::policy::{PendingRequests, Policy};
pub use crate::policy_update::RefusalKind;
use crate::policy_update::{
    AcceptedUpdate, AdminSignature, Change, PolicyUpdate, UpdateRefused, check_update,
};
use crate::request::SigningRequest;

/// Why an update was not applied, or the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error(transparent)]
    Refused(#[from] UpdateRefused),
    #[error(
        "an update to sequence {sequence} is pending until {effective_at}: a further update waits for it"
    )]
    Pending { sequence: u64, effective_at: u64 },
    #[error("policy store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("policy store: stored update #{index} no longer applies ({reason}); refusing to start")]
    BrokenChain { index: usize, reason: String },
}

impl PolicyStoreError {
    pub fn kind(&self) -> RefusalKind {
        match self {
            PolicyStoreError::Refused(r) => r.kind(),
            PolicyStoreError::Pending { .. } => RefusalKind::NotNow,
            PolicyStoreError::Sqlite(_) | PolicyStoreError::BrokenChain { .. } => {
                RefusalKind::Unavailable
            }
        }
    }
}

struct State {
    current: Arc<Policy>,
    /// The policy `current` replaced, for `pending_requests = "keep"`.
    previous: Option<Arc<Policy>>,
    /// When `current` came into force (0 for the pinned policy).
    current_since: u64,
    /// An accepted update waiting for its effective time.
    pending: Option<(Arc<Policy>, u64)>,
}

impl State {
    /// Puts a due pending update in force.
    fn promote(&mut self, now: u64) {
        if let Some((policy, at)) = &self.pending
            && *at <= now
        {
            let next = policy.clone();
            self.current_since = *at;
            self.previous = Some(std::mem::replace(&mut self.current, next));
            self.pending = None;
        }
    }
}

pub struct PolicyStore {
    state: RwLock<State>,
    /// `None`: a fixed policy (tests, fuzzing): updates stay in memory.
    conn: Option<Mutex<Connection>>,
}

/// What an accepted update did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub hash: [u8; 32],
    pub sequence: u64,
    pub effective_at: u64,
    pub change: Change,
    pub admins: Vec<String>,
    /// The same update had been accepted before.
    pub already: bool,
}

impl PolicyStore {
    /// A store over `pinned` alone, in memory.
    pub fn fixed(pinned: Policy) -> Self {
        PolicyStore {
            state: RwLock::new(State {
                current: Arc::new(pinned),
                previous: None,
                current_since: 0,
                pending: None,
            }),
            conn: None,
        }
    }

    /// Opens the store at `path` and replays its updates from `pinned`.
    pub fn open(path: &Path, pinned: Policy, now: u64) -> Result<Self, PolicyStoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS policy_updates (
                 sequence INTEGER PRIMARY KEY,
                 policy_hash BLOB NOT NULL,
                 previous_hash BLOB NOT NULL,
                 effective_at INTEGER NOT NULL,
                 accepted_at INTEGER NOT NULL,
                 policy BLOB NOT NULL,
                 -- JSON: admin (hex SEC1), issued_at, signature (hex) per admin
                 signatures TEXT NOT NULL
             );",
        )?;
        type Row = (Vec<u8>, Vec<u8>, i64, i64, String);
        let rows: Vec<Row> = conn
            .prepare(
                "SELECT policy, previous_hash, effective_at, accepted_at, signatures
                 FROM policy_updates ORDER BY sequence",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        // An operator may pin a later version of the chain (the file
        // updated to what the node already accepted): replay from there.
        let skip = rows
            .iter()
            .position(|row| sha256(&row.0) == pinned.hash())
            .map_or(0, |i| i + 1);
        let mut state = State {
            current: Arc::new(pinned),
            previous: None,
            current_since: 0,
            pending: None,
        };
        for (index, (text, previous, effective_at, accepted_at, signatures)) in
            rows.into_iter().enumerate().skip(skip)
        {
            let broken = |reason: String| PolicyStoreError::BrokenChain { index, reason };
            let update = PolicyUpdate {
                text,
                previous_hash: previous
                    .try_into()
                    .map_err(|_| broken("previous_hash is not 32 bytes".into()))?,
                effective_at: effective_at as u64,
                signatures: signatures_from_json(&signatures).map_err(broken)?,
            };
            // Every link is checked against the policy before it, as when
            // it arrived: a store that does not chain from the pin stops
            // the node.
            state.promote(u64::MAX);
            let accepted = check_update(&state.current, &update, accepted_at as u64)
                .map_err(|e| broken(e.to_string()))?;
            state.pending = Some((Arc::new(accepted.policy), accepted.effective_at));
        }
        state.promote(now);
        Ok(PolicyStore {
            state: RwLock::new(state),
            conn: Some(Mutex::new(conn)),
        })
    }

    /// The policy in force at `now`.
    pub fn current(&self, now: u64) -> Arc<Policy> {
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            if state.pending.as_ref().is_none_or(|(_, at)| *at > now) {
                return state.current.clone();
            }
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.promote(now);
        state.current.clone()
    }

    /// The policy `request` is judged by at `now`: the one in force, or
    /// the one it replaced if the policy in force keeps such requests and
    /// the request was made before the update came into force and lives no
    /// longer than the old policy allowed from then (a coordinator cannot
    /// keep minting requests under a replaced policy: its `created_at` is
    /// the coordinator's word, so the window is bounded by the old
    /// `request_ttl_secs` after the update). Any other request is judged by
    /// the policy in force, which refuses it by its hash.
    pub fn for_request(&self, request: &SigningRequest, now: u64) -> Arc<Policy> {
        let current = self.current(now);
        if current.hash() == request.policy_hash
            || current.governance().pending_requests != PendingRequests::Keep
        {
            return current;
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        match &state.previous {
            Some(p)
                if p.hash() == request.policy_hash
                    && request.created_at < state.current_since
                    && p.key(&request.key_id).is_some_and(|rules| {
                        request.expires_at
                            <= state.current_since.saturating_add(rules.request_ttl_secs)
                    }) =>
            {
                p.clone()
            }
            _ => current,
        }
    }

    /// The policy in force and the pending update, if any.
    pub fn status(&self, now: u64) -> (Arc<Policy>, Option<(Arc<Policy>, u64)>) {
        let current = self.current(now);
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (current, state.pending.clone())
    }

    /// Checks `update` against the policy in force and keeps it (durably)
    /// before answering; in force at once if its time has come.
    pub fn apply(&self, update: &PolicyUpdate, now: u64) -> Result<Applied, PolicyStoreError> {
        let conn = self
            .conn
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()));
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.promote(now);
        if let Some((pending, at)) = &state.pending {
            // The same update again (a retry): answered as accepted.
            if Policy::from_bytes(&update.text).is_ok_and(|p| p.hash() == pending.hash()) {
                return Ok(already(pending, *at));
            }
            return Err(PolicyStoreError::Pending {
                sequence: pending.sequence(),
                effective_at: *at,
            });
        }
        if Policy::from_bytes(&update.text).is_ok_and(|p| p.hash() == state.current.hash())
            && update.previous_hash != state.current.hash()
        {
            return Ok(already(&state.current, now));
        }
        let AcceptedUpdate {
            policy,
            effective_at,
            change,
            admins,
        } = check_update(&state.current, update, now)?;
        if let Some(conn) = &conn {
            conn.execute(
                "INSERT INTO policy_updates
                     (sequence, policy_hash, previous_hash, effective_at, accepted_at, policy, signatures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    policy.sequence() as i64,
                    &policy.hash()[..],
                    &update.previous_hash[..],
                    effective_at as i64,
                    now as i64,
                    &update.text,
                    signatures_to_json(&update.signatures)
                ],
            )?;
        }
        let applied = Applied {
            hash: policy.hash(),
            sequence: policy.sequence(),
            effective_at,
            change,
            admins,
            already: false,
        };
        state.pending = Some((Arc::new(policy), effective_at));
        state.promote(now);
        Ok(applied)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSignature {
    admin: String,
    issued_at: u64,
    signature: String,
}

fn signatures_to_json(signatures: &[AdminSignature]) -> String {
    let stored: Vec<StoredSignature> = signatures
        .iter()
        .map(|s| StoredSignature {
            admin: hex::encode(s.admin.to_sec1()),
            issued_at: s.issued_at,
            signature: hex::encode(&s.signature),
        })
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".into())
}

fn signatures_from_json(text: &str) -> Result<Vec<AdminSignature>, String> {
    let stored: Vec<StoredSignature> =
        serde_json::from_str(text).map_err(|e| format!("signatures: {e}"))?;
    stored
        .into_iter()
        .map(|s| {
            let admin = hex::decode(&s.admin).map_err(|e| format!("admin: {e}"))?;
            Ok(AdminSignature {
                admin: ApproverKey::from_sec1(&admin).map_err(|e| format!("admin: {e}"))?,
                issued_at: s.issued_at,
                signature: hex::decode(&s.signature).map_err(|e| format!("signature: {e}"))?,
            })
        })
        .collect()
}

fn already(policy: &Policy, effective_at: u64) -> Applied {
    Applied {
        hash: policy.hash(),
        sequence: policy.sequence(),
        effective_at,
        change: Change::Tightening,
        admins: Vec::new(),
        already: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_update::signed_bytes;
    use p256::ecdsa::signature::Signer;

    const NOW: u64 = 1_800_000_000;

    struct Admins(Vec<(String, p256::ecdsa::SigningKey)>);

    impl Admins {
        fn new() -> Self {
            Admins(
                ["alice", "carol"]
                    .iter()
                    .map(|n| {
                        (
                            n.to_string(),
                            p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
                        )
                    })
                    .collect(),
            )
        }

        fn key(&self, i: usize) -> ApproverKey {
            ApproverKey::from_sec1(
                self.0[i]
                    .1
                    .verifying_key()
                    .to_encoded_point(true)
                    .as_bytes(),
            )
            .unwrap()
        }

        fn text(&self, sequence: u64, treasury: u32, keep: bool) -> String {
            format!(
                "version = 1\nsequence = {sequence}\n[[departments]]\nname = \"treasury\"\napprovers = [{{ name = \"alice\", key = \"{}\" }}, {{ name = \"carol\", key = \"{}\" }}]\n[keys.k]\nrequest_ttl_secs = 60\napproval_ttl_secs = 60\nrequire = {{ treasury = {treasury} }}\n[governance]\nadmins = [\"alice\", \"carol\"]\nadmin_quorum = 2\nloosening_delay_secs = 100\npending_requests = \"{}\"\n",
                self.key(0).to_text(),
                self.key(1).to_text(),
                if keep { "keep" } else { "re-approve" }
            )
        }

        fn update(&self, current: &Policy, text: &str, effective_at: u64) -> PolicyUpdate {
            let new = Policy::from_bytes(text.as_bytes()).unwrap();
            PolicyUpdate {
                text: text.as_bytes().to_vec(),
                previous_hash: current.hash(),
                effective_at,
                signatures: (0..2)
                    .map(|i| {
                        let admin = self.key(i);
                        let bytes = signed_bytes(
                            &current.hash(),
                            &new.hash(),
                            new.sequence(),
                            effective_at,
                            NOW,
                            &admin,
                        );
                        let sig: p256::ecdsa::Signature = self.0[i].1.sign(&bytes);
                        AdminSignature {
                            admin,
                            issued_at: NOW,
                            signature: sig.to_bytes().to_vec(),
                        }
                    })
                    .collect(),
            }
        }
    }

    #[test]
    fn updates_roll_forward_survive_a_reopen_and_keep_old_requests_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.sqlite3");
        let admins = Admins::new();
        let v0 = Policy::from_bytes(admins.text(0, 1, true).as_bytes()).unwrap();
        let v1_text = admins.text(1, 2, true);
        let v1_hash = Policy::from_bytes(v1_text.as_bytes()).unwrap().hash();
        {
            let store = PolicyStore::open(&path, v0.clone(), NOW).unwrap();
            let applied = store
                .apply(&admins.update(&v0, &v1_text, NOW), NOW)
                .unwrap();
            assert_eq!(applied.change, Change::Tightening);
            assert_eq!(store.current(NOW).hash(), v1_hash);
            // v1 keeps v0's requests made before it came into force, for
            // as long as v0 let them live from then...
            let made = |hash: [u8; 32], created_at: u64, expires_at: u64| SigningRequest {
                key_id: "k".parse().unwrap(),
                message: b"m".to_vec(),
                metadata: Default::default(),
                psbt: None,
                requester: "w".into(),
                created_at,
                expires_at,
                policy_hash: hash,
                nonce: vec![1; crate::request::NONCE_LEN],
            };
            let kept = made(v0.hash(), NOW - 1, NOW + 59);
            assert_eq!(store.for_request(&kept, NOW).hash(), v0.hash());
            // ...not one made since (a coordinator minting under v0), nor
            // one that would outlive v0's request_ttl_secs after the update.
            assert_eq!(
                store
                    .for_request(&made(v0.hash(), NOW, NOW + 10), NOW)
                    .hash(),
                v1_hash
            );
            assert_eq!(
                store
                    .for_request(&made(v0.hash(), NOW - 1, NOW + 61), NOW)
                    .hash(),
                v1_hash
            );
            assert_eq!(
                store.for_request(&made([9; 32], NOW - 1, NOW), NOW).hash(),
                v1_hash
            );
            // The same update again is answered as done.
            assert!(
                store
                    .apply(&admins.update(&v0, &v1_text, NOW), NOW)
                    .unwrap()
                    .already
            );
        }
        // A restart replays the chain from the same pin.
        let store = PolicyStore::open(&path, v0.clone(), NOW + 1).unwrap();
        assert_eq!(store.current(NOW + 1).hash(), v1_hash);
        // A loosening (back to one treasurer) is pending for its delay.
        let v1 = store.current(NOW + 1);
        let v2_text = admins.text(2, 1, false);
        let early = store.apply(&admins.update(&v1, &v2_text, NOW + 100), NOW + 1);
        assert!(matches!(
            early,
            Err(PolicyStoreError::Refused(UpdateRefused::TooEarly { .. }))
        ));
        // From when this node received it, not from the admins' own times.
        let applied = store
            .apply(&admins.update(&v1, &v2_text, NOW + 101), NOW + 1)
            .unwrap();
        assert!(matches!(applied.change, Change::Loosening(_)));
        assert_eq!(store.current(NOW + 100).hash(), v1_hash);
        let (_, pending) = store.status(NOW + 100);
        assert_eq!(
            pending.map(|(p, at)| (p.sequence(), at)),
            Some((2, NOW + 101))
        );
        // v2 re-approves: v1's requests are judged by v2, which refuses them.
        assert_eq!(store.current(NOW + 101).sequence(), 2);
        let under_v1 = SigningRequest {
            key_id: "k".parse().unwrap(),
            message: b"m".to_vec(),
            metadata: Default::default(),
            psbt: None,
            requester: "w".into(),
            created_at: NOW + 50,
            expires_at: NOW + 60,
            policy_hash: v1_hash,
            nonce: Vec::new(),
        };
        assert_eq!(store.for_request(&under_v1, NOW + 101).sequence(), 2);
        // Pinning v1 itself (the operator updated the file) replays v2 on it.
        let v1_pinned = Policy::from_bytes(v1_text.as_bytes()).unwrap();
        let store = PolicyStore::open(&path, v1_pinned, NOW + 101).unwrap();
        assert_eq!(store.current(NOW + 101).sequence(), 2);
        // A store that does not chain from the pin stops the node.
        let other = Policy::from_bytes(admins.text(0, 2, false).as_bytes()).unwrap();
        assert!(matches!(
            PolicyStore::open(&path, other, NOW),
            Err(PolicyStoreError::BrokenChain { index: 0, .. })
        ));
    }
}
