//! The audit trail: an append-only, hash-chained log of every decision, one
//! JSON object per line, that an auditor can verify offline.
//!
//! ```text
//! {"seq":1,"at":1795400000,"event":"request_submitted","fields":{...},"prev":"00…00","hash":"…"}
//! hash = SHA-256(Canonical("ringi audit entry v1",
//!                seq (u64), at (u64), event, field names and values in order, prev (32 bytes)))
//! ```
//!
//! Each entry names the hash of the one before it (`prev`; zeros for the
//! first), so editing, deleting or reordering any entry breaks the chain at
//! that entry. Signer nodes also append `checkpoint` entries signed by a key
//! held in their token (ECDSA P-256 over SHA-256 of
//! `Canonical("ringi audit checkpoint v1", seq of the head, head hash)`), so
//! rewriting a whole log from some point needs that key too.
//!
//! Entries carry ids, amounts, names, decisions and reasons: never a share,
//! a nonce, a PIN or a private key.
//!
//! A broken log is not appended to; `crate::audit_repair` sets its broken
//! tail aside and records the gap as an [`AUDIT_GAP`] entry.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::approver_key::ApproverKey;
use crate::encoding::{Canonical, sha256};

/// Event name of a signed checkpoint entry.
pub const CHECKPOINT: &str = "checkpoint";

/// Event name of the entry a repair appends where a broken tail was set
/// aside (see `crate::audit_repair`).
pub const AUDIT_GAP: &str = "audit_gap";

/// When a node signs its trail: a checkpoint once [`every`] entries wait
/// for one, or once any entry has waited [`interval`]; and at shutdown.
///
/// Checked by a timer every [`tick`], off the path of the calls that
/// append: an entry waits at most about a tick past the 50th for its
/// checkpoint under load, and at most [`interval`] when the node is quiet.
/// (Until issue 13's eleventh session, the append that made 50 signed the
/// checkpoint itself, holding the log through the token's signature and
/// an fsync while the other appends waited: under load, one every ten
/// requests, 5-8 % of the coordinator's CPU in `bench-load.sh`,
/// docs/bench.md.)
///
/// [`every`]: CheckpointSchedule::every
/// [`interval`]: CheckpointSchedule::interval
/// [`tick`]: CheckpointSchedule::tick
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSchedule {
    /// Entries that make a checkpoint due.
    pub every: u64,
    /// The longest an entry waits for a checkpoint.
    pub interval: Duration,
    /// How often the timer asks [`CheckpointSchedule::due`].
    pub tick: Duration,
}

/// The schedule both the coordinator and the signers keep.
pub const CHECKPOINTS: CheckpointSchedule = CheckpointSchedule {
    every: 50,
    interval: Duration::from_secs(30),
    tick: Duration::from_secs(1),
};

impl CheckpointSchedule {
    /// Whether a checkpoint is due with `waiting` entries appended since
    /// the last one, made `since_last` ago (or since the log was opened).
    pub fn due(&self, waiting: u64, since_last: Duration) -> bool {
        waiting >= self.every || (waiting > 0 && since_last >= self.interval)
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    pub at: u64,
    pub event: String,
    pub fields: BTreeMap<String, String>,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev: String,
    /// Hex SHA-256 of this entry.
    pub hash: String,
}

/// The hash of one entry, as the chain records it (see the module docs).
pub fn entry_hash(
    seq: u64,
    at: u64,
    event: &str,
    fields: &BTreeMap<String, String>,
    prev: &[u8; 32],
) -> [u8; 32] {
    let mut c = Canonical::new("ringi audit entry v1")
        .u64(seq)
        .u64(at)
        .str(event);
    for (k, v) in fields {
        c = c.str(k).str(v);
    }
    sha256(&c.bytes(prev).finish())
}

/// One entry as its line in the log (without the newline), and its hash.
pub(crate) fn entry_line(
    seq: u64,
    at: u64,
    event: &str,
    fields: BTreeMap<String, String>,
    prev: &[u8; 32],
) -> Result<(String, [u8; 32]), serde_json::Error> {
    let hash = entry_hash(seq, at, event, &fields, prev);
    let entry = Entry {
        seq,
        at,
        event: event.to_string(),
        fields,
        prev: hex::encode(prev),
        hash: hex::encode(hash),
    };
    Ok((serde_json::to_string(&entry)?, hash))
}

/// What a checkpoint signs: the position and hash of the head it covers.
pub fn checkpoint_statement(head_seq: u64, head: &[u8; 32]) -> Vec<u8> {
    Canonical::new("ringi audit checkpoint v1")
        .u64(head_seq)
        .bytes(head)
        .finish()
}

/// Where and why a log fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("line {line}: not a log entry ({reason})")]
    Malformed { line: usize, reason: String },
    #[error(
        "line {line}: entry seq {found}, expected {expected} (an entry was deleted, inserted or reordered)"
    )]
    Sequence {
        line: usize,
        expected: u64,
        found: u64,
    },
    #[error("line {line} (seq {seq}): prev does not match the hash of the entry before it")]
    Link { line: usize, seq: u64 },
    #[error("line {line} (seq {seq}): the entry's content does not match its hash (it was edited)")]
    Hash { line: usize, seq: u64 },
    #[error("line {line} (seq {seq}): checkpoint signature does not verify")]
    Checkpoint { line: usize, seq: u64 },
    #[error(
        "line {line} (seq {seq}): checkpoint signed by {found}, not the expected key {expected}"
    )]
    CheckpointKey {
        line: usize,
        seq: u64,
        found: String,
        expected: String,
    },
}

impl Broken {
    /// The (1-based) line of the first broken entry: every line before it
    /// verifies.
    pub fn line(&self) -> usize {
        match self {
            Broken::Malformed { line, .. }
            | Broken::Sequence { line, .. }
            | Broken::Link { line, .. }
            | Broken::Hash { line, .. }
            | Broken::Checkpoint { line, .. }
            | Broken::CheckpointKey { line, .. } => *line,
        }
    }
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: u64,
    pub head: [u8; 32],
    /// Keys that signed checkpoints.
    pub checkpoint_keys: Vec<String>,
    /// The [`AUDIT_GAP`] entries: where a repair set a broken tail aside
    /// (the log verifies, but entries are missing there).
    pub gaps: Vec<Entry>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Verifies a whole log, given its lines. `expected_key`, if given, must
/// have signed every checkpoint.
pub fn verify<I, S>(lines: I, expected_key: Option<&ApproverKey>) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    let mut checkpoints = 0;
    let mut keys: Vec<String> = Vec::new();
    let mut gaps = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let line_no = i + 1;
        let text = line.as_ref();
        if text.trim().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_str(text).map_err(|err| Broken::Malformed {
            line: line_no,
            reason: err.to_string(),
        })?;
        if e.seq != seq + 1 {
            return Err(Broken::Sequence {
                line: line_no,
                expected: seq + 1,
                found: e.seq,
            });
        }
        if hex32(&e.prev) != Some(prev) {
            return Err(Broken::Link {
                line: line_no,
                seq: e.seq,
            });
        }
        let hash = entry_hash(e.seq, e.at, &e.event, &e.fields, &prev);
        if hex32(&e.hash) != Some(hash) {
            return Err(Broken::Hash {
                line: line_no,
                seq: e.seq,
            });
        }
        if e.event == CHECKPOINT {
            let bad = || Broken::Checkpoint {
                line: line_no,
                seq: e.seq,
            };
            let field = |k: &str| e.fields.get(k).cloned().ok_or_else(bad);
            let key = ApproverKey::parse(&field("key")?).map_err(|_| bad())?;
            let signature = hex::decode(field("signature")?).map_err(|_| bad())?;
            let head_seq: u64 = field("head_seq")?.parse().map_err(|_| bad())?;
            let head = hex32(&field("head")?).ok_or_else(bad)?;
            if head_seq != e.seq - 1
                || head != prev
                || !key.verify(&checkpoint_statement(head_seq, &head), &signature)
            {
                return Err(bad());
            }
            if let Some(expected) = expected_key
                && &key != expected
            {
                return Err(Broken::CheckpointKey {
                    line: line_no,
                    seq: e.seq,
                    found: key.to_text(),
                    expected: expected.to_text(),
                });
            }
            if !keys.contains(&key.to_text()) {
                keys.push(key.to_text());
            }
            checkpoints += 1;
        }
        if e.event == AUDIT_GAP {
            gaps.push(e.clone());
        }
        prev = hash;
        seq = e.seq;
    }
    Ok(Verified {
        entries: seq,
        checkpoints,
        head: prev,
        checkpoint_keys: keys,
        gaps,
    })
}

/// The lines of a log as `BufRead::lines` splits them (on `\n`, a `\r`
/// before it dropped, the last line possibly unterminated), each with the
/// byte offset just past it (past its newline, if it has one).
pub(crate) fn split_lines(bytes: &[u8]) -> Vec<(&[u8], usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let (line, end) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                let line = &bytes[start..start + n];
                (line.strip_suffix(b"\r").unwrap_or(line), start + n + 1)
            }
            None => (&bytes[start..], bytes.len()),
        };
        lines.push((line, end));
        start = end;
    }
    lines
}

/// [`verify`] over a log's bytes: a line that is not UTF-8 text is
/// malformed (the log is written as text, so such a line is damage).
pub fn verify_bytes(bytes: &[u8], expected_key: Option<&ApproverKey>) -> Result<Verified, Broken> {
    let lines = split_lines(bytes);
    let texts: Vec<&str> = lines
        .iter()
        .map_while(|(line, _)| std::str::from_utf8(line).ok())
        .collect();
    let verified = verify(&texts, expected_key)?;
    if texts.len() < lines.len() {
        return Err(Broken::Malformed {
            line: texts.len() + 1,
            reason: "not UTF-8 text".into(),
        });
    }
    Ok(verified)
}

/// [`verify_bytes`] over a reader, a line at a time: what a node opening
/// its log uses, so a long log is never held in memory whole. Also says
/// whether the last line ended with a newline.
pub fn verify_reader<R: BufRead>(
    reader: R,
    expected_key: Option<&ApproverKey>,
) -> std::io::Result<(Result<Verified, Broken>, bool)> {
    struct Lines<R> {
        reader: R,
        line_no: usize,
        not_text: Option<usize>,
        error: Option<std::io::Error>,
        ended: bool,
    }
    impl<R: BufRead> Iterator for Lines<R> {
        type Item = String;
        fn next(&mut self) -> Option<String> {
            let mut buf = Vec::new();
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => None,
                Ok(_) => {
                    self.line_no += 1;
                    self.ended = buf.last() == Some(&b'\n');
                    if self.ended {
                        buf.pop();
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                    }
                    match String::from_utf8(buf) {
                        Ok(text) => Some(text),
                        Err(_) => {
                            self.not_text = Some(self.line_no);
                            None
                        }
                    }
                }
                Err(e) => {
                    self.error = Some(e);
                    None
                }
            }
        }
    }
    let mut lines = Lines {
        reader,
        line_no: 0,
        not_text: None,
        error: None,
        ended: true,
    };
    let verified = verify(&mut lines, expected_key);
    if let Some(e) = lines.error {
        return Err(e);
    }
    let verified = match (verified, lines.not_text) {
        (Err(broken), _) => Err(broken),
        (Ok(_), Some(line)) => Err(Broken::Malformed {
            line,
            reason: "not UTF-8 text".into(),
        }),
        (Ok(v), None) => Ok(v),
    };
    Ok((verified, lines.ended))
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("audit log {path} is broken, refusing to append to it: {broken}{}", repair_advice(.repair))]
    Broken {
        path: PathBuf,
        broken: Broken,
        /// The command that repairs this node's log, which only the binary
        /// opening it knows (see [`AuditError::with_repair_command`]).
        repair: Option<String>,
    },
}

impl AuditError {
    /// Names `command` in a broken log's message as the way out; other
    /// errors are returned unchanged.
    pub fn with_repair_command(self, command: impl Into<String>) -> Self {
        match self {
            AuditError::Broken { path, broken, .. } => AuditError::Broken {
                path,
                broken,
                repair: Some(command.into()),
            },
            other => other,
        }
    }
}

fn repair_advice(command: &Option<String>) -> String {
    match command {
        Some(command) => format!(
            "; keep a copy, then run `{command}` (the broken tail is kept aside and the gap recorded)"
        ),
        None => String::new(),
    }
}

struct Tail {
    file: File,
    seq: u64,
    head: [u8; 32],
    since_checkpoint: u64,
    /// When the last checkpoint was written (or the log opened).
    last_checkpoint: Instant,
}

/// Where the grouped fsync of appended entries stands.
#[derive(Default)]
struct Synced {
    /// Every entry up to this seq is on disk (as far as this process made
    /// it so).
    seq: u64,
    /// A caller is running the fsync; the others wait for its outcome.
    running: bool,
    /// An fsync failed: what was written may not be on disk, and a later
    /// fsync could report success for it anyway (the kernel reports a lost
    /// write once), so no entry is acknowledged as durable until the log
    /// is opened again.
    failed: Option<String>,
}

/// An open log, appending after its verified head.
///
/// [`AuditLog::append`] writes an entry to the file (it survives the
/// process, not a power loss); [`AuditLog::append_durable`] also returns
/// only once the entry is on disk. Durable appends share their fsyncs:
/// an fsync covers every entry written before it started, so callers that
/// append while one runs all wait for the next one, which one of them runs
/// (group commit, as in `crate::group_commit`, for a file).
pub struct AuditLog {
    path: PathBuf,
    tail: Mutex<Tail>,
    /// The same file, fsynced without holding `tail` (appends go on
    /// meanwhile).
    sync_file: File,
    /// The seq of the last entry written to the file.
    written: AtomicU64,
    synced: Mutex<Synced>,
    /// Signalled when an fsync ends.
    sync_ended: Condvar,
    /// Fsyncs run by durable appends (tests, benchmarks).
    syncs: AtomicU64,
}

impl AuditLog {
    /// Opens (or creates) the log and verifies it; a broken log is refused.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |e: std::io::Error| AuditError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let (verified, ended) = if path.exists() {
            verify_reader(BufReader::new(File::open(path).map_err(io)?), None).map_err(io)?
        } else {
            (verify_bytes(&[], None), true)
        };
        let v = verified.map_err(|broken| AuditError::Broken {
            path: path.to_path_buf(),
            broken,
            repair: None,
        })?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        // A last entry that verifies but lost its newline (a write torn
        // just before it): end its line, or the next entry would be glued
        // to it and break the log.
        if !ended {
            file.write_all(b"\n").map_err(io)?;
        }
        let (seq, head) = (v.entries, v.head);
        let sync_file = file.try_clone().map_err(io)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            tail: Mutex::new(Tail {
                file,
                seq,
                head,
                since_checkpoint: 0,
                last_checkpoint: Instant::now(),
            }),
            sync_file,
            written: AtomicU64::new(seq),
            synced: Mutex::new(Synced {
                seq,
                ..Synced::default()
            }),
            sync_ended: Condvar::new(),
            syncs: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries appended since the last checkpoint (or since opening).
    pub fn since_checkpoint(&self) -> u64 {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since_checkpoint
    }

    /// Whether `schedule` calls for a checkpoint now.
    pub fn checkpoint_due(&self, schedule: &CheckpointSchedule) -> bool {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        schedule.due(tail.since_checkpoint, tail.last_checkpoint.elapsed())
    }

    /// Appends one entry, written to the file but not synced (the
    /// coordinator's trail, which it rebuilds from its store after a
    /// crash). Checkpoints are the caller's ([`AuditLog::checkpoint_due`]).
    pub fn append(
        &self,
        at: u64,
        event: &str,
        fields: &[(&str, String)],
    ) -> Result<(), AuditError> {
        self.append_at(at, event, fields)?;
        Ok(())
    }

    /// Appends one entry and returns once it is on disk, its fsync shared
    /// with the durable appends of other threads (see [`AuditLog`]): for an
    /// entry that must exist before its node acts. An error means the entry
    /// may not be durable (it may still be in the file).
    pub fn append_durable(
        &self,
        at: u64,
        event: &str,
        fields: &[(&str, String)],
    ) -> Result<(), AuditError> {
        let seq = self.append_at(at, event, fields)?;
        self.sync_through(seq)
    }

    /// Fsyncs run by durable appends so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Writes one entry; its seq.
    fn append_at(
        &self,
        at: u64,
        event: &str,
        fields: &[(&str, String)],
    ) -> Result<u64, AuditError> {
        let fields: BTreeMap<String, String> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        self.write(&mut tail, at, event, fields)?;
        Ok(tail.seq)
    }

    /// Returns once every entry up to `seq` is on disk: after an fsync that
    /// started once `seq` was written, run by this caller or another.
    fn sync_through(&self, seq: u64) -> Result<(), AuditError> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if synced.seq >= seq {
                return Ok(());
            }
            if let Some(reason) = &synced.failed {
                return Err(AuditError::Io {
                    path: self.path.clone(),
                    reason: format!("the log could not be synced to disk: {reason}"),
                });
            }
            if synced.running {
                synced = self
                    .sync_ended
                    .wait(synced)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This caller syncs, for itself and every entry written so far.
            synced.running = true;
            let through = self.written.load(Ordering::SeqCst);
            drop(synced);
            self.syncs.fetch_add(1, Ordering::Relaxed);
            let result = self.sync_data();
            synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
            synced.running = false;
            match result {
                Ok(()) => synced.seq = synced.seq.max(through),
                Err(e) => synced.failed = Some(e.to_string()),
            }
            self.sync_ended.notify_all();
        }
    }

    fn sync_data(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if tests::SYNC_FAILS.with(|f| f.get()) {
            return Err(std::io::Error::other("the test made the fsync fail"));
        }
        self.sync_file.sync_data()
    }

    /// Appends a checkpoint over the current head, signed by `sign` (which
    /// returns `(public key text, signature)` for the statement it is given),
    /// and returns once it is on disk. The fsync is shared with durable
    /// appends and made after the log is released, so appends go on
    /// during it.
    pub fn checkpoint(
        &self,
        at: u64,
        sign: impl FnOnce(&[u8]) -> Result<(String, Vec<u8>), String>,
    ) -> Result<(), AuditError> {
        let seq = self.append_checkpoint(at, sign)?;
        self.sync_through(seq)
    }

    /// Writes the checkpoint entry (not synced); its seq.
    fn append_checkpoint(
        &self,
        at: u64,
        sign: impl FnOnce(&[u8]) -> Result<(String, Vec<u8>), String>,
    ) -> Result<u64, AuditError> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let statement = checkpoint_statement(tail.seq, &tail.head);
        let (key, signature) = sign(&statement).map_err(|reason| AuditError::Io {
            path: self.path.clone(),
            reason: format!("checkpoint signing failed: {reason}"),
        })?;
        let fields = BTreeMap::from([
            ("head".to_string(), hex::encode(tail.head)),
            ("head_seq".to_string(), tail.seq.to_string()),
            ("key".to_string(), key),
            ("signature".to_string(), hex::encode(signature)),
        ]);
        self.write(&mut tail, at, CHECKPOINT, fields)?;
        tail.last_checkpoint = Instant::now();
        Ok(tail.seq)
    }

    fn write(
        &self,
        tail: &mut Tail,
        at: u64,
        event: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<(), AuditError> {
        let seq = tail.seq + 1;
        let (mut line, hash) =
            entry_line(seq, at, event, fields, &tail.head).map_err(|e| AuditError::Io {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        line.push('\n');
        let io = |e: std::io::Error| AuditError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        tail.file.write_all(line.as_bytes()).map_err(io)?;
        tail.file.flush().map_err(io)?;
        tail.seq = seq;
        self.written.store(seq, Ordering::SeqCst);
        tail.head = hash;
        tail.since_checkpoint = if event == CHECKPOINT {
            0
        } else {
            tail.since_checkpoint + 1
        };
        Ok(())
    }
}

/// One entry flattened for a SIEM: its fields merged with seq, time, event,
/// node and hash.
pub fn export_line(node: &str, e: &Entry) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("node".into(), node.into());
    obj.insert("seq".into(), e.seq.into());
    obj.insert("at".into(), e.at.into());
    obj.insert("event".into(), e.event.clone().into());
    for (k, v) in &e.fields {
        obj.entry(k.clone()).or_insert_with(|| v.clone().into());
    }
    obj.insert("hash".into(), e.hash.clone().into());
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    thread_local! {
        /// Makes this thread's fsyncs of the log fail.
        pub(super) static SYNC_FAILS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn write_log(dir: &Path) -> (PathBuf, ApproverKey) {
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let key =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        for i in 0..5u64 {
            log.append(
                100 + i,
                "share_released",
                &[("request_id", format!("{i:064x}")), ("key_id", "k".into())],
            )
            .unwrap();
            if i == 2 {
                log.checkpoint(103, |statement| {
                    let sig: p256::ecdsa::Signature = sk.sign(statement);
                    Ok((key.to_text(), sig.to_bytes().to_vec()))
                })
                .unwrap();
            }
        }
        (path, key)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn an_intact_log_verifies_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_log(dir.path());
        let v = verify(lines(&path), Some(&key)).unwrap();
        assert_eq!((v.entries, v.checkpoints), (6, 1));
        // Reopening continues the chain.
        AuditLog::open(&path)
            .unwrap()
            .append(200, "x", &[])
            .unwrap();
        assert_eq!(verify(lines(&path), Some(&key)).unwrap().entries, 7);
    }

    #[test]
    fn edits_deletions_and_reorders_are_caught_at_the_first_broken_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_log(dir.path());
        let original = lines(&path);

        let mut edited = original.clone();
        edited[1] = edited[1].replace("\"key_id\":\"k\"", "\"key_id\":\"z\"");
        assert_eq!(verify(&edited, None), Err(Broken::Hash { line: 2, seq: 2 }));

        let mut deleted = original.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&deleted, None),
            Err(Broken::Sequence {
                line: 2,
                expected: 2,
                found: 3
            })
        );

        let mut reordered = original.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            verify(&reordered, None),
            Err(Broken::Sequence { line: 2, .. })
        ));

        // Rewriting from an entry on, renumbered and rehashed, still fails at
        // the checkpoint: its signature covers the old head.
        let mut forged = original.clone();
        let mut e: Entry = serde_json::from_str(&forged[0]).unwrap();
        e.fields.insert("key_id".into(), "z".into());
        let mut prev = [0u8; 32];
        let mut rewritten = Vec::new();
        for (i, line) in forged.iter().enumerate() {
            let mut x: Entry = if i == 0 {
                e.clone()
            } else {
                serde_json::from_str(line).unwrap()
            };
            x.prev = hex::encode(prev);
            let h = entry_hash(x.seq, x.at, &x.event, &x.fields, &prev);
            x.hash = hex::encode(h);
            prev = h;
            rewritten.push(serde_json::to_string(&x).unwrap());
        }
        forged = rewritten;
        assert_eq!(
            verify(&forged, None),
            Err(Broken::Checkpoint { line: 4, seq: 4 })
        );

        assert!(matches!(
            verify(["not json"], None),
            Err(Broken::Malformed { line: 1, .. })
        ));
        // A broken log is not appended to.
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        assert!(matches!(
            AuditLog::open(&path),
            Err(AuditError::Broken { .. })
        ));
    }

    #[test]
    fn a_last_entry_without_its_newline_is_ended_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_log(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        AuditLog::open(&path)
            .unwrap()
            .append(200, "x", &[])
            .unwrap();
        assert_eq!(verify(lines(&path), None).unwrap().entries, 7);
    }

    #[test]
    fn a_line_that_is_not_text_is_malformed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_log(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"\xff\xfe\n");
        assert_eq!(
            verify_bytes(&bytes, None),
            Err(Broken::Malformed {
                line: 7,
                reason: "not UTF-8 text".into()
            })
        );
        std::fs::write(&path, &bytes).unwrap();
        let err = AuditLog::open(&path).err().unwrap();
        assert!(matches!(err, AuditError::Broken { .. }), "{err}");
        // The binary opening the log names its repair command.
        let message = err
            .with_repair_command("ringi audit repair --config c.toml")
            .to_string();
        assert!(
            message.contains("line 7: not a log entry (not UTF-8 text); keep a copy, then run `ringi audit repair --config c.toml`"),
            "{message}"
        );
    }

    #[test]
    fn checkpoints_from_another_key_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_log(dir.path());
        let other = ApproverKey::parse(
            "p256:036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        )
        .unwrap();
        assert!(matches!(
            verify(lines(&path), Some(&other)),
            Err(Broken::CheckpointKey { seq: 4, .. })
        ));
    }

    #[test]
    fn export_flattens_fields() {
        let e = Entry {
            seq: 3,
            at: 9,
            event: "share_released".into(),
            fields: BTreeMap::from([("request_id".into(), "ab".into())]),
            prev: "00".into(),
            hash: "ff".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&export_line("signer-1", &e)).unwrap();
        assert_eq!(v["node"], "signer-1");
        assert_eq!(v["request_id"], "ab");
        assert_eq!(v["seq"], 3);
    }

    /// A lone durable append runs its own fsync (nothing to share it
    /// with); 32 threads appending at once share them; the log holds every
    /// entry, in each thread's order, and verifies.
    #[test]
    fn durable_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            log.append_durable(100, "alone", &[("i", i.to_string())])
                .unwrap();
        }
        assert_eq!(log.syncs(), 3);
        let start = std::sync::Barrier::new(32);
        std::thread::scope(|scope| {
            for t in 0..32 {
                let (log, start) = (&log, &start);
                scope.spawn(move || {
                    start.wait();
                    for i in 0..20 {
                        log.append_durable(
                            100,
                            "share_released",
                            &[("thread", t.to_string()), ("i", i.to_string())],
                        )
                        .unwrap();
                    }
                });
            }
        });
        let syncs = log.syncs() - 3;
        assert!(syncs < 32 * 20, "no fsync was shared: {syncs}");
        assert_eq!(verify(lines(&path), None).unwrap().entries, 3 + 32 * 20);
        let mut next = [0u32; 32];
        for line in lines(&path).iter().skip(3) {
            let e: Entry = serde_json::from_str(line).unwrap();
            let t: usize = e.fields["thread"].parse().unwrap();
            assert_eq!(e.fields["i"], next[t].to_string());
            next[t] += 1;
        }
    }

    /// An fsync that fails fails the durable append waiting on it, and
    /// every durable append after it while the log stays open (the kernel
    /// may have dropped what it failed to write); plain appends go on, and
    /// the log, opened again, verifies and syncs.
    #[test]
    fn a_failed_fsync_is_never_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append_durable(100, "a", &[]).unwrap();
        SYNC_FAILS.with(|f| f.set(true));
        let err = log.append_durable(101, "b", &[]).unwrap_err();
        SYNC_FAILS.with(|f| f.set(false));
        assert!(err.to_string().contains("could not be synced"), "{err}");
        assert!(log.append_durable(102, "c", &[]).is_err());
        log.append(103, "d", &[]).unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.append_durable(104, "e", &[]).unwrap();
        assert_eq!(verify(lines(&path), None).unwrap().entries, 5);
    }

    /// Due at 50 entries waiting, or at one entry that has waited the
    /// interval; never with nothing waiting.
    #[test]
    fn the_checkpoint_schedule() {
        let s = CHECKPOINTS;
        let (now, later) = (Duration::ZERO, s.interval);
        assert!(!s.due(0, now) && !s.due(0, later * 10));
        assert!(!s.due(s.every - 1, now));
        assert!(s.due(s.every, now) && s.due(s.every + 1, now));
        assert!(s.due(1, later) && !s.due(1, later - Duration::from_millis(1)));
    }

    /// The log counts what waits for a checkpoint from its opening and from
    /// each checkpoint; a checkpoint whose fsync fails is an error, and is
    /// not taken as durable by a later one.
    #[test]
    fn a_log_says_when_its_checkpoint_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let key =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let sign = |statement: &[u8]| {
            let sig: p256::ecdsa::Signature = sk.sign(statement);
            Ok((key.to_text(), sig.to_bytes().to_vec()))
        };
        let never_by_time = CheckpointSchedule {
            interval: Duration::from_secs(3600),
            ..CHECKPOINTS
        };
        let at_once = CheckpointSchedule {
            interval: Duration::ZERO,
            ..CHECKPOINTS
        };
        assert!(!log.checkpoint_due(&at_once), "nothing waits");
        for i in 0..CHECKPOINTS.every {
            assert!(!log.checkpoint_due(&never_by_time), "{i} entries");
            log.append(100 + i, "e", &[]).unwrap();
            assert!(log.checkpoint_due(&at_once));
        }
        assert!(log.checkpoint_due(&never_by_time));
        log.checkpoint(200, sign).unwrap();
        assert!(!log.checkpoint_due(&at_once));
        log.append(201, "e", &[]).unwrap();
        assert!(log.checkpoint_due(&at_once) && !log.checkpoint_due(&never_by_time));

        SYNC_FAILS.with(|f| f.set(true));
        let err = log.checkpoint(202, sign).unwrap_err();
        SYNC_FAILS.with(|f| f.set(false));
        assert!(err.to_string().contains("could not be synced"), "{err}");
        assert!(log.checkpoint(203, sign).is_err());
        drop(log);
        let v = verify(lines(&path), Some(&key)).unwrap();
        assert_eq!((v.entries, v.checkpoints), (CHECKPOINTS.every + 4, 3));
    }
}

/// Appends per second, 2000 entries from 1 to 64 threads: written only (as
/// every append was before durable appends), durable with an fsync each
/// (what durability costs without sharing), and durable with shared
/// fsyncs. Printed, not asserted: `cargo test -p ringi-policy --lib
/// audit::bench -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use std::time::Instant;

    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Mode {
        Written,
        SyncEach,
        Shared,
    }

    fn appends(writers: usize, n: usize, mode: Mode) -> (f64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let each_sync = Mutex::new(());
        let start = Instant::now();
        std::thread::scope(|scope| {
            for w in 0..writers {
                let (log, each_sync) = (&log, &each_sync);
                scope.spawn(move || {
                    for i in (w..n).step_by(writers) {
                        let fields = [("request_id", format!("{i:064x}"))];
                        match mode {
                            Mode::Written => {
                                log.append(1, "share_released", &fields).unwrap();
                            }
                            Mode::SyncEach => {
                                log.append(1, "share_released", &fields).unwrap();
                                let _one_at_a_time = each_sync.lock().unwrap();
                                log.sync_file.sync_data().unwrap();
                            }
                            Mode::Shared => {
                                log.append_durable(1, "share_released", &fields).unwrap();
                            }
                        }
                    }
                });
            }
        });
        (n as f64 / start.elapsed().as_secs_f64(), log.syncs())
    }

    #[test]
    #[ignore = "a measurement, run by hand"]
    fn concurrent_appends() {
        for writers in [1, 4, 16, 64] {
            let (written, _) = appends(writers, 2000, Mode::Written);
            let (each, _) = appends(writers, 2000, Mode::SyncEach);
            let (shared, syncs) = appends(writers, 2000, Mode::Shared);
            println!(
                "audit log, 2000 appends, {writers:>2} writers: written only {written:>6.0}/s; an fsync each {each:>5.0}/s; shared fsyncs {shared:>5.0}/s ({syncs} fsyncs)"
            );
        }
    }
}
