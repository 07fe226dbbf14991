//! The coordinator's audit trail made whole after a crash.
//!
//! The coordinator appends an audit entry right after the database commit
//! it describes (the store is the record; the signers' trails, written
//! before a share leaves, are the enforcement point). A `kill -9` between
//! the two loses the entry. So at start, before serving, the coordinator
//! compares what the store holds for the recent past with what the trail
//! says, and appends every entry that is missing, marked
//! `recovered = "true"` and with the time the store recorded (`store_at`):
//! an auditor reading the trail sees every submission, decision and
//! outcome the store has, and which entries were written late.
//!
//! "Recent" is every request changed since a margin before the trail's
//! last entry ([`MARGIN_SECS`]): an entry is appended within moments of its
//! commit, so a request unchanged for longer than that before the last
//! entry was audited in full. Each such request's entries are looked up in
//! the whole trail (which opening it has just read and verified anyway).
//!
//! [`expected`] and [`missing`] are pure: they compare records with entries.

use std::collections::HashSet;
use std::io::BufRead;

use ringi_policy::audit::Entry;
use ringi_policy::encoding::{Canonical, sha256};

use crate::coordinator::Coordinator;
use crate::error::Result;
use crate::request_state::State;
use crate::request_store::RequestRecord;

/// How far before the trail's last entry the store is compared.
pub const MARGIN_SECS: u64 = 600;

/// An entry the store calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub event: &'static str,
    /// What identifies it among the request's entries of that event
    /// (an approver key and the statement's issue time for a decision).
    pub detail: String,
    pub request_id: String,
    /// When the store recorded it.
    pub store_at: u64,
    /// The fields of the recovered entry (besides request_id and the
    /// recovery marks).
    pub fields: Vec<(&'static str, String)>,
}

/// How an audit entry is matched: a digest of (event, request id,
/// detail), so the keys of a busy trail take little memory.
pub type AuditKey = [u8; 32];

/// The key of an entry with this event, request id and detail.
pub fn audit_key(event: &str, request_id: &str, detail: &str) -> AuditKey {
    sha256(
        &Canonical::new("ringi audit reconciliation key")
            .str(event)
            .str(request_id)
            .str(detail)
            .finish(),
    )
}

/// The detail a decision's entry is matched by.
pub fn decision_detail(approver_key: &str, issued_at: u64) -> String {
    format!("{approver_key}@{issued_at}")
}

/// The key of an entry of the trail, if it is one the store calls for.
pub fn key_of(entry: &Entry) -> Option<AuditKey> {
    let id = entry.fields.get("request_id")?.clone();
    let detail = match entry.event.as_str() {
        "decision_recorded" => decision_detail(
            entry.fields.get("approver_key")?,
            entry.fields.get("issued_at")?.parse().ok()?,
        ),
        _ => String::new(),
    };
    Some(audit_key(&entry.event, &id, &detail))
}

/// The entries `record` calls for.
pub fn expected(record: &RequestRecord) -> Vec<Expected> {
    let id = hex::encode(record.id);
    let mut out = Vec::new();
    let mut push = |event, detail: String, store_at, fields| {
        out.push(Expected {
            event,
            detail,
            request_id: id.clone(),
            store_at,
            fields,
        });
    };
    let r = &record.request;
    for t in &record.transitions {
        let (event, fields) = match (t.from.as_str(), t.to) {
            ("", _) => (
                "request_submitted",
                vec![
                    ("key_id", r.key_id.to_string()),
                    ("requester", r.requester.clone()),
                ],
            ),
            (_, State::Signing) => ("signing_started", vec![]),
            (_, State::Signed) => (
                "signature_produced",
                vec![(
                    "signature",
                    record
                        .signature
                        .as_deref()
                        .map(hex::encode)
                        .unwrap_or_default(),
                )],
            ),
            (_, State::Failed) => ("signing_failed", vec![("reason", t.reason.clone())]),
            (_, State::Expired) => ("request_expired", vec![]),
            ("FAILED", State::Approved) => ("request_retried", vec![("reason", t.reason.clone())]),
            // APPROVED and REJECTED come with the decision that caused them.
            _ => continue,
        };
        push(event, String::new(), t.at, fields);
    }
    for a in &record.approvals {
        let s = &a.statement;
        let key = a.approver.to_text();
        push(
            "decision_recorded",
            decision_detail(&key, s.issued_at),
            // (The store's receipt time is not on the record; the issue
            // time only orders the recovered entries.)
            s.issued_at,
            vec![
                ("approver_key", key),
                ("issued_at", s.issued_at.to_string()),
                ("department", s.department.clone()),
                ("decision", s.decision.as_str().to_string()),
                ("reason", s.reason.clone()),
            ],
        );
    }
    out
}

/// The expected entries the trail lacks (at least one entry per key).
pub fn missing(expected: Vec<Expected>, audited: &HashSet<AuditKey>) -> Vec<Expected> {
    let mut seen = HashSet::new();
    expected
        .into_iter()
        .filter(|e| {
            let key = audit_key(e.event, &e.request_id, &e.detail);
            !audited.contains(&key) && seen.insert(key)
        })
        .collect()
}

/// Appends, to the coordinator's trail, every entry the store's recent
/// changes call for and the trail lacks. Returns how many were appended.
pub fn run(c: &Coordinator) -> Result<usize> {
    let Some(log) = &c.audit else {
        return Ok(0);
    };
    let io = |e: std::io::Error| crate::error::Error::Internal(format!("audit log: {e}"));
    let entries = || -> Result<_> {
        let file = std::fs::File::open(log.path()).map_err(io)?;
        Ok(std::io::BufReader::new(file)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str::<Entry>(&l).ok()))
    };
    // Streamed twice, never held whole: the trail of a long-running
    // coordinator is large, and a restart must not need memory for all of it.
    let since = entries()?
        .last()
        .map_or(0, |e| e.at.saturating_sub(MARGIN_SECS));
    let ids = c.requests.changed_since(since)?;
    let recent: HashSet<String> = ids.iter().map(hex::encode).collect();
    let audited: HashSet<AuditKey> = entries()?
        .filter(|e| {
            e.fields
                .get("request_id")
                .is_some_and(|id| recent.contains(id))
        })
        .filter_map(|e| key_of(&e))
        .collect();
    // One request at a time: what is held is the keys and what is lacking.
    let mut lacking = Vec::new();
    for id in &ids {
        lacking.extend(missing(expected(&c.requests.request(id)?), &audited));
    }
    lacking.sort_by_key(|e| e.store_at);
    for e in &lacking {
        let mut fields = vec![("request_id", e.request_id.clone())];
        fields.extend(e.fields.iter().cloned());
        fields.push(("recovered", "true".into()));
        fields.push(("store_at", e.store_at.to_string()));
        c.audit(e.event, &fields);
        tracing::warn!(event = e.event, request_id = %e.request_id, "audit entry recovered from the store (lost in a crash)");
    }
    Ok(lacking.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_store::TransitionRecord;
    use crate::store::contract;
    use ringi_policy::statement::Decision;

    /// A request submitted at 100, approved at 110, signed at 111.
    fn signed_record() -> RequestRecord {
        let request = contract::request();
        let approval = contract::approval(&request, Decision::Approve);
        let t = |from: &str, to, at| TransitionRecord {
            from: from.into(),
            to,
            reason: String::new(),
            at,
        };
        RequestRecord {
            id: request.id(),
            request,
            signers: vec![],
            state: State::Signed,
            state_reason: String::new(),
            signature: Some(vec![7; 65]),
            signed_transaction: None,
            approvals: vec![approval],
            transitions: vec![
                t("", State::PendingApproval, 100),
                t("PENDING_APPROVAL", State::Approved, 110),
                t("APPROVED", State::Signing, 110),
                t("SIGNING", State::Signed, 111),
            ],
        }
    }

    fn entry(event: &str, fields: &[(&str, &str)]) -> Entry {
        Entry {
            seq: 1,
            at: 0,
            event: event.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_signed_request_calls_for_every_step_and_finds_those_audited() {
        let record = signed_record();
        let id = hex::encode(record.id);
        let all = expected(&record);
        let events: Vec<&str> = all.iter().map(|e| e.event).collect();
        for e in [
            "request_submitted",
            "signing_started",
            "signature_produced",
            "decision_recorded",
        ] {
            assert!(events.contains(&e), "{events:?}");
        }
        // Nothing audited: everything is missing, once each.
        assert_eq!(missing(all.clone(), &HashSet::new()).len(), all.len());
        // Everything audited: nothing is.
        let mut audited = HashSet::new();
        for e in &all {
            let mut fields = vec![("request_id", id.as_str())];
            let owned: Vec<(&str, String)> = e.fields.clone();
            for (k, v) in &owned {
                fields.push((k, v.as_str()));
            }
            audited.insert(key_of(&entry(e.event, &fields)).unwrap());
        }
        assert!(missing(all.clone(), &audited).is_empty());
        // The submission lost: only it is missing.
        audited.remove(&audit_key("request_submitted", &id, ""));
        let lacking = missing(all, &audited);
        assert_eq!(lacking.len(), 1);
        assert_eq!(lacking[0].event, "request_submitted");
    }

    #[test]
    fn entries_without_a_request_are_not_matched() {
        assert_eq!(key_of(&entry("key_created", &[("key_id", "k")])), None);
        // A decision entry from before issued_at was audited has no key:
        // a request changed within the margin gets its decision again.
        assert_eq!(
            key_of(&entry(
                "decision_recorded",
                &[("request_id", "aa"), ("approver_key", "p256:02")]
            )),
            None
        );
    }
}
