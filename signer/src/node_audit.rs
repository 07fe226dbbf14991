//! This node's audit trail: every decision it makes (commitments issued,
//! shares released or refused and why, DKG shares stored) appended to the
//! hash-chained log of `ringi_policy::audit`, with checkpoints signed by the
//! token's audit key on the schedule the coordinator keeps too
//! (`ringi_policy::audit::CHECKPOINTS`: 50 entries waiting, or one entry
//! for 30 s, checked every second by the server's timer) and at shutdown.
//!
//! A share is returned only after its `share_released` entry is durable:
//! committed to the ledger with the release itself, then appended to this
//! log ([`crate::audit_outbox`], which completes the log from the ledger
//! at start). Other entries that gate an action are on disk before it
//! ([`audited`]: an fsync shared with concurrent calls, see
//! `ringi_policy::audit::AuditLog::append_durable`), except those that
//! record nonces drawn, which live in memory only and die with the process
//! ([`recorded`]: written before the commitments leave, not synced). If the
//! log cannot be written, the node refuses to sign.
//!
//! The signing rounds write through [`AuditSink`], which [`NodeAudit`]
//! implements; tests use an in-memory sink instead
//! (`crate::test_doubles::MemoryAudit`), so the rounds run without a token.

use std::path::Path;
use std::sync::Arc;

use ringi_policy::approver_key::ApproverKey;
use ringi_policy::audit::{AuditError, AuditLog, CHECKPOINTS};
use ringi_policy::clock::now;

use crate::token::Token;

/// Where the node's decisions are recorded. An entry is an event name and
/// its fields; an error means the entry was not written (and the caller
/// refuses what it was about to do).
pub trait AuditSink: Send + Sync {
    /// Appends one entry (written, not synced: refusals, which are logged
    /// from the async edge and gate nothing).
    fn record(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError>;

    /// Appends one entry and returns once it is on disk: an entry that
    /// must exist before the node acts. Blocks for an fsync (shared with
    /// concurrent callers): call it from a blocking thread.
    fn record_durable(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        self.record(event, fields)
    }
}

/// An audit entry that could not be written: the node refuses what the
/// entry was to record.
#[derive(Debug, thiserror::Error)]
#[error("audit log unavailable, refusing: {0}")]
pub struct AuditUnavailable(#[from] pub AuditError);

/// Appends an entry that must exist before the node acts (a share leaves,
/// a DKG share is kept, a veto is recorded), durably.
pub fn audited(
    audit: &dyn AuditSink,
    event: &str,
    fields: &[(&str, String)],
) -> Result<(), AuditUnavailable> {
    Ok(audit.record_durable(event, fields)?)
}

/// Appends an entry that gates an action whose effects die with the
/// process: nonces drawn and their commitments handed out (a live round 1,
/// a preprocessed batch). Written before the commitments leave, so a
/// refusal to write still refuses the round; not synced, because what it
/// records lives in this process's memory only (`crate::nonces`): a power
/// cut that loses the entry loses the nonces with it, so no share can
/// ever be released under commitments the trail does not show. The log
/// reaches the disk with its next sync (a checkpoint, see
/// `ringi_policy::audit::CHECKPOINTS`; a durable entry), as the
/// `share_released` entries do (`crate::audit_outbox`). A
/// one-round signing, on preprocessed commitments, never had a durable
/// entry per request before its round 2; this spares a live round 1 its
/// fsync (`bench.sh`: 0.29 ms p50, 1.8 ms p99 of each signer's round 1).
pub fn recorded(
    audit: &dyn AuditSink,
    event: &str,
    fields: &[(&str, String)],
) -> Result<(), AuditUnavailable> {
    Ok(audit.record(event, fields)?)
}

pub struct NodeAudit {
    log: AuditLog,
    token: Arc<Token>,
    public_key: String,
}

impl NodeAudit {
    pub fn open(path: &Path, token: Arc<Token>) -> Result<Self, anyhow::Error> {
        let log = AuditLog::open(path)?;
        let public_key = ApproverKey::from_sec1(&token.audit_public_key()?)
            .map_err(|e| anyhow::anyhow!("audit key: {e}"))?
            .to_text();
        Ok(NodeAudit {
            log,
            token,
            public_key,
        })
    }

    /// The key that signs this node's checkpoints (`p256:...`).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Appends an entry. Checkpoints are the server's timer's
    /// ([`NodeAudit::checkpoint_due`]), off the path of the calls that
    /// append.
    pub fn record(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        self.log.append(now(), event, fields)
    }

    /// Appends an entry and returns once it is on disk.
    pub fn record_durable(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        self.log.append_durable(now(), event, fields)
    }

    /// Whether a checkpoint is due (`ringi_policy::audit::CHECKPOINTS`).
    pub fn checkpoint_due(&self) -> bool {
        self.log.checkpoint_due(&CHECKPOINTS)
    }

    /// Appends a checkpoint signed by the token's audit key.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        self.log.checkpoint(now(), |statement| {
            let signature = self
                .token
                .audit_sign(statement)
                .map_err(|e| e.to_string())?;
            Ok((self.public_key.clone(), signature))
        })
    }

    /// Checkpoints if anything was appended since the last checkpoint.
    pub fn checkpoint_if_new(&self) -> Result<(), AuditError> {
        if self.log.since_checkpoint() > 0 {
            self.checkpoint()?;
        }
        Ok(())
    }
}

impl AuditSink for NodeAudit {
    fn record(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        NodeAudit::record(self, event, fields)
    }

    fn record_durable(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        NodeAudit::record_durable(self, event, fields)
    }
}
