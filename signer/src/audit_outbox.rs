//! The `share_released` audit entry, committed with the release it
//! records.
//!
//! A share leaves the node only once its release is recorded
//! ([`crate::spending::SpendingLedger::release`]) and its audit entry is
//! durable. Both used to need their own fsync, one after the other: the
//! ledger's commit, then the audit log's append (`bench.sh`: 0.25 ms of a
//! 3 ms one-round signing, on a disk shared with the other nodes). Now the
//! entry is written **into the ledger, in the release's own transaction**
//! (one commit, one fsync: the entry is durable exactly when the release
//! is), and then appended to the audit log (`audit.jsonl`) unsynced, with
//! the ledger's id for it in the field [`LEDGER_ENTRY`]. The log reaches
//! the disk with its next sync: a durable entry (a resent share, a
//! governance decision), a checkpoint (`ringi_policy::audit::CHECKPOINTS`:
//! within about a second of 50 entries, within 30 s of one, at shutdown).
//!
//! What a crash can cost the log — the entries appended since its last
//! sync (power lost), or an entry not yet appended (the process killed
//! between the commit and the append) — the ledger still holds. At start,
//! before serving, [`reconcile`] appends every kept entry the log lacks,
//! marked [`RECOVERED`], syncs the log, and records how far the log is
//! complete; so the trail ends up with every released share, each once.
//!
//! If the append itself fails, the Sign is refused (no share leaves, as
//! before); the entry stays kept, and the share recorded, so the same
//! package asked again is answered with the same share (`share_resent`,
//! a durable entry) and the next start completes the log.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

use ringi_policy::audit::Entry;
use rusqlite::{Connection, OptionalExtension, params};

use crate::node_audit::AuditSink;
use crate::spending::{LedgerError, SpendingLedger};

/// The field of a log entry naming the ledger's id for it.
pub const LEDGER_ENTRY: &str = "ledger_entry";
/// The field marking an entry appended at start from the ledger (the log
/// had lost it, or never got it).
pub const RECOVERED: &str = "recovered";

/// The ledger's tables for kept entries.
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS audit_outbox (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        event  TEXT NOT NULL,
        fields TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS audit_outbox_reconciled (
        only    INTEGER PRIMARY KEY CHECK (only = 0),
        through INTEGER NOT NULL
    );";

/// An entry as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The ledger's id for it ([`LEDGER_ENTRY`] in the log).
    pub id: i64,
    /// When it was committed (seconds).
    pub at: u64,
    pub event: String,
    pub fields: BTreeMap<String, String>,
}

impl Kept {
    /// The fields the log records for it: its own, and its id.
    pub fn logged_fields(&self) -> Vec<(&str, String)> {
        let own: Vec<(&str, String)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        logged_fields(&own, self.id)
    }
}

/// `fields` with the ledger's `id` for the entry, as the log records it.
pub fn logged_fields<'a>(fields: &[(&'a str, String)], id: i64) -> Vec<(&'a str, String)> {
    let mut logged = fields.to_vec();
    logged.push((LEDGER_ENTRY, id.to_string()));
    logged
}

/// Keeps an entry; inside a ledger write (so it commits with that write).
/// Returns its id.
pub(crate) fn keep(
    conn: &Connection,
    at: u64,
    event: &str,
    fields: &[(&str, String)],
) -> Result<i64, LedgerError> {
    let fields: BTreeMap<&str, &str> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fields = serde_json::to_string(&fields)
        .map_err(|e| LedgerError::Store(format!("audit entry fields: {e}")))?;
    conn.prepare_cached("INSERT INTO audit_outbox (at, event, fields) VALUES (?1, ?2, ?3)")?
        .execute(params![at as i64, event, fields])?;
    Ok(conn.last_insert_rowid())
}

/// The kept entries after the last reconciled one, oldest first.
pub(crate) fn unreconciled(conn: &Connection) -> Result<Vec<Kept>, LedgerError> {
    let through = reconciled_through(conn)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, event, fields FROM audit_outbox WHERE id > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([through], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut kept = Vec::new();
    for row in rows {
        let (id, at, event, fields) = row?;
        let fields = serde_json::from_str(&fields)
            .map_err(|e| LedgerError::Store(format!("kept audit entry {id}: {e}")))?;
        kept.push(Kept {
            id,
            at: at as u64,
            event,
            fields,
        });
    }
    Ok(kept)
}

fn reconciled_through(conn: &Connection) -> Result<i64, LedgerError> {
    Ok(conn
        .query_row(
            "SELECT through FROM audit_outbox_reconciled WHERE only = 0",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Records that the log holds, durably, every kept entry up to `through`;
/// inside a ledger write.
pub(crate) fn mark_reconciled(conn: &Connection, through: i64) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO audit_outbox_reconciled (only, through) VALUES (0, ?1)
         ON CONFLICT (only) DO UPDATE SET through = MAX(through, excluded.through)",
        [through],
    )?;
    Ok(())
}

/// Of `kept`, the entries no line of the log names (by [`LEDGER_ENTRY`]).
/// Lines that are not entries (a torn last line) name nothing. Pure.
pub fn missing<S: AsRef<str>>(
    kept: Vec<Kept>,
    log_lines: impl IntoIterator<Item = S>,
) -> Vec<Kept> {
    let Some(first) = kept.first().map(|k| k.id) else {
        return kept;
    };
    let logged: BTreeSet<i64> = log_lines
        .into_iter()
        .filter_map(|line| serde_json::from_str::<Entry>(line.as_ref()).ok())
        .filter_map(|e| e.fields.get(LEDGER_ENTRY)?.parse().ok())
        .filter(|id| *id >= first)
        .collect();
    kept.into_iter()
        .filter(|k| !logged.contains(&k.id))
        .collect()
}

/// Why the log could not be completed at start (the node does not serve).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("audit log {path}: {reason}")]
    Log { path: String, reason: String },
    #[error(transparent)]
    Append(#[from] ringi_policy::audit::AuditError),
}

/// At start, before serving: appends to the log at `log_path` (through
/// `audit`, durably) every entry the ledger kept that the log lacks, each
/// marked [`RECOVERED`]; syncs the log (entries a killed process wrote but
/// never synced); then records the kept entries reconciled. Returns how
/// many entries it appended.
pub fn reconcile(
    ledger: &SpendingLedger,
    audit: &dyn AuditSink,
    log_path: &Path,
) -> Result<usize, ReconcileError> {
    let kept = ledger.unreconciled_audit_entries()?;
    let Some(last) = kept.last().map(|k| k.id) else {
        return Ok(0);
    };
    let log_error = |e: std::io::Error| ReconcileError::Log {
        path: log_path.display().to_string(),
        reason: e.to_string(),
    };
    // Streamed: the log can be large, and only its ids are wanted.
    let file = std::fs::File::open(log_path).map_err(log_error)?;
    let mut read_error = None;
    let lines = BufReader::new(file)
        .lines()
        .map_while(|line| line.map_err(|e| read_error = Some(e)).ok());
    let missing = missing(kept, lines);
    if let Some(e) = read_error {
        return Err(log_error(e));
    }
    for entry in &missing {
        let mut fields = entry.logged_fields();
        fields.push((RECOVERED, "ledger".to_string()));
        fields.push(("kept_at", entry.at.to_string()));
        audit.record_durable(&entry.event, &fields)?;
    }
    std::fs::File::open(log_path)
        .and_then(|f| f.sync_all())
        .map_err(log_error)?;
    ledger.audit_entries_reconciled(last)?;
    Ok(missing.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_doubles::MemoryAudit;

    fn kept(id: i64) -> Kept {
        Kept {
            id,
            at: 100 + id as u64,
            event: "share_released".into(),
            fields: BTreeMap::from([("request_id".to_string(), format!("r{id}"))]),
        }
    }

    fn line(event: &str, fields: &[(&str, String)]) -> String {
        serde_json::to_string(&Entry {
            seq: 1,
            at: 1,
            event: event.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            prev: String::new(),
            hash: String::new(),
        })
        .unwrap()
    }

    #[test]
    fn missing_is_what_no_line_names() {
        let log = [
            line("node_started", &[]),
            line("share_released", &kept(1).logged_fields()),
            line("share_released", &kept(3).logged_fields()),
            // A field of another name, or a torn line, names nothing.
            line("share_released", &[("request_id", "2".into())]),
            "{\"seq\":9,\"at\":".to_string(),
        ];
        let left: Vec<i64> = missing((1..=4).map(kept).collect(), log.iter())
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(left, [2, 4]);
        assert!(missing(Vec::new(), log.iter()).is_empty());
    }

    /// Through a real ledger and log: entries kept with releases but
    /// missing from the log are appended once, marked recovered; a second
    /// start appends nothing.
    #[test]
    fn reconcile_appends_what_the_log_lacks_once() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SpendingLedger::open(&dir.path().join("ledger.sqlite3")).unwrap();
        let log_path = dir.path().join("audit.jsonl");
        let log = ringi_policy::audit::AuditLog::open(&log_path).unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let fields = [("request_id", format!("r{n}"))];
            let id = ledger
                .keep_audit_entry(200 + n, "share_released", &fields)
                .unwrap();
            // The first reached the log; the others were lost with the
            // process.
            if n == 0 {
                log.append(1, "share_released", &logged_fields(&fields, id))
                    .unwrap();
            }
            ids.push(id);
        }
        drop(log);
        let node = NodeLog(ringi_policy::audit::AuditLog::open(&log_path).unwrap());
        assert_eq!(reconcile(&ledger, &node, &log_path).unwrap(), 2);
        assert_eq!(reconcile(&ledger, &node, &log_path).unwrap(), 0, "once");
        drop(node);

        let text = std::fs::read_to_string(&log_path).unwrap();
        let verified = ringi_policy::audit::verify_bytes(text.as_bytes(), None).unwrap();
        assert_eq!(verified.entries, 3, "the chain still verifies");
        let entries: Vec<Entry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let named: Vec<(String, Option<&str>)> = entries
            .iter()
            .map(|e| {
                (
                    e.fields[LEDGER_ENTRY].clone(),
                    e.fields.get(RECOVERED).map(String::as_str),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                (ids[0].to_string(), None),
                (ids[1].to_string(), Some("ledger")),
                (ids[2].to_string(), Some("ledger")),
            ]
        );
        assert_eq!(entries[2].fields["request_id"], "r2");
        assert_eq!(entries[2].fields["kept_at"], "202");
    }

    /// A failing log refuses the start: nothing is marked reconciled, and
    /// the next start appends the entries.
    #[test]
    fn a_failing_log_leaves_the_entries_to_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SpendingLedger::open(&dir.path().join("ledger.sqlite3")).unwrap();
        let log_path = dir.path().join("audit.jsonl");
        std::fs::write(&log_path, "").unwrap();
        ledger
            .keep_audit_entry(1, "share_released", &[("request_id", "r".into())])
            .unwrap();
        let failing = MemoryAudit::default();
        failing.set_failing(true);
        assert!(reconcile(&ledger, &failing, &log_path).is_err());
        let working = MemoryAudit::default();
        assert_eq!(reconcile(&ledger, &working, &log_path).unwrap(), 1);
        assert_eq!(working.events(), ["share_released"]);
    }

    /// An [`AuditSink`] over a real log, as `NodeAudit` without a token.
    struct NodeLog(ringi_policy::audit::AuditLog);

    impl AuditSink for NodeLog {
        fn record(
            &self,
            event: &str,
            fields: &[(&str, String)],
        ) -> Result<(), ringi_policy::audit::AuditError> {
            self.0.append(1, event, fields)
        }

        fn record_durable(
            &self,
            event: &str,
            fields: &[(&str, String)],
        ) -> Result<(), ringi_policy::audit::AuditError> {
            self.0.append_durable(1, event, fields)
        }
    }
}
