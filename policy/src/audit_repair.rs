//! Repairing a broken audit log, so its node can start again, without
//! losing or hiding anything.
//!
//! A node refuses to append to a log that does not verify (a torn last
//! write after a crash or a full disk, garbage appended, an edited entry).
//! [`repair`] keeps the longest prefix of whole lines that verifies, moves
//! every byte after it into a new file next to the log
//! (`audit.jsonl.broken-<unix seconds>[-n]`, never overwriting one), and
//! appends an [`AUDIT_GAP`] entry chained to the last good entry that names
//! that file, the tail's length, SHA-256 and line count, and what was
//! broken. Nothing is deleted: the tail's bytes are in the new file, and
//! the gap stays visible to every later `verify`.
//!
//! The caller must hold the node's lock on its data directory: nothing else
//! may write the log meanwhile.
//!
//! The order of the writes makes an interruption safe: the tail file is
//! written and synced (with its directory) before the log is touched; then
//! the gap entry is written over the start of the tail in place and the log
//! cut just after it. A crash in between leaves the log still broken
//! (repair again: the tail is kept twice, never lost), never a log that
//! verifies without its gap entry.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::audit::{AUDIT_GAP, AuditError, Broken, entry_line, split_lines, verify_bytes};
use crate::encoding::sha256;

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The log verifies; nothing was changed.
    Intact { entries: u64 },
    /// The broken tail was set aside and the gap recorded.
    Repaired {
        /// Where the tail's bytes are now.
        kept_in: PathBuf,
        tail_bytes: u64,
        /// Hex SHA-256 of the tail's bytes.
        tail_sha256: String,
        /// Lines set aside (a partial last line counts as one).
        tail_lines: usize,
        /// Entries kept (the good prefix).
        entries_kept: u64,
        /// The seq of the `audit_gap` entry.
        gap_seq: u64,
        /// What was broken, as `verify` reported it.
        reason: Broken,
    },
}

impl Repair {
    /// One line for the operator.
    pub fn describe(&self, log: &Path) -> String {
        match self {
            Repair::Intact { entries } => format!(
                "intact: audit log {} verifies ({entries} entries); nothing changed",
                log.display()
            ),
            Repair::Repaired {
                kept_in,
                tail_bytes,
                tail_sha256,
                tail_lines,
                entries_kept,
                gap_seq,
                reason,
            } => format!(
                "repaired: audit log {} was broken at {reason}; kept its first {entries_kept} entries, \
                 moved the {tail_lines} line(s) after them ({tail_bytes} bytes, sha256 {tail_sha256}) to {}, \
                 and recorded the gap as entry {gap_seq} ({AUDIT_GAP})",
                log.display(),
                kept_in.display()
            ),
        }
    }
}

/// Verifies the log at `path`; if it is broken, sets its broken tail aside
/// and records the gap (see the module docs). `now` is the gap entry's
/// time and names the tail's file.
pub fn repair(path: &Path, now: u64) -> Result<Repair, AuditError> {
    let io = |e: std::io::Error| AuditError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    let broken = match verify_bytes(&bytes, None) {
        Ok(v) => return Ok(Repair::Intact { entries: v.entries }),
        Err(broken) => broken,
    };
    // Every line before the broken one verifies; those are whole lines,
    // since another line follows them.
    let lines = split_lines(&bytes);
    let good_lines = broken.line() - 1;
    let cut = match good_lines {
        0 => 0,
        n => lines[n - 1].1,
    };
    let good =
        verify_bytes(&bytes[..cut], None).expect("the lines before the first broken one verify");
    let tail = &bytes[cut..];
    let tail_lines = lines.len() - good_lines;

    let kept_in = keep_tail(path, now, tail).map_err(io)?;
    let kept_name = kept_in
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tail_sha256 = hex::encode(sha256(tail));
    let fields = BTreeMap::from([
        ("kept_in".to_string(), kept_name),
        ("tail_bytes".to_string(), tail.len().to_string()),
        ("tail_sha256".to_string(), tail_sha256.clone()),
        ("tail_lines".to_string(), tail_lines.to_string()),
        ("reason".to_string(), broken.to_string()),
    ]);
    let gap_seq = good.entries + 1;
    let (mut line, _) =
        entry_line(gap_seq, now, AUDIT_GAP, fields, &good.head).map_err(|e| AuditError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    line.push('\n');
    let mut log = OpenOptions::new().write(true).open(path).map_err(io)?;
    log.seek(SeekFrom::Start(cut as u64)).map_err(io)?;
    log.write_all(line.as_bytes()).map_err(io)?;
    log.set_len((cut + line.len()) as u64).map_err(io)?;
    log.sync_all().map_err(io)?;
    Ok(Repair::Repaired {
        kept_in,
        tail_bytes: tail.len() as u64,
        tail_sha256,
        tail_lines,
        entries_kept: good.entries,
        gap_seq,
        reason: broken,
    })
}

/// Writes `tail` to a new file next to the log (never an existing one) and
/// syncs it and the directory; returns its path.
fn keep_tail(log: &Path, now: u64, tail: &[u8]) -> std::io::Result<PathBuf> {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit.jsonl".into());
    for n in 0u32.. {
        let candidate = dir.join(match n {
            0 => format!("{name}.broken-{now}"),
            n => format!("{name}.broken-{now}-{n}"),
        });
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        file.write_all(tail)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        return Ok(candidate);
    }
    unreachable!("u32 names run out before the directory does")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, verify};

    /// A log of `n` entries.
    fn write_log(dir: &Path, n: u64) -> PathBuf {
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..n {
            log.append(100 + i, "share_released", &[("n", i.to_string())])
                .unwrap();
        }
        path
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// The file names in `dir` but the log's.
    fn kept_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "audit.jsonl")
            .collect();
        names.sort();
        names
    }

    /// Repairs `path` (broken by `tail` after `good` bytes), checks what
    /// was kept and the gap entry, and returns the repair.
    fn repaired(path: &Path, good: &[u8], tail: &[u8], entries_kept: u64) -> Repair {
        let r = repair(path, 1_795_400_000).unwrap();
        let Repair::Repaired {
            kept_in,
            tail_bytes,
            tail_sha256,
            entries_kept: kept,
            gap_seq,
            ..
        } = &r
        else {
            panic!("not repaired: {r:?}");
        };
        assert_eq!(read(kept_in), tail, "the whole tail is kept");
        assert_eq!(*tail_bytes, tail.len() as u64);
        assert_eq!(*tail_sha256, hex::encode(sha256(tail)));
        assert_eq!((*kept, *gap_seq), (entries_kept, entries_kept + 1));
        let log = read(path);
        assert!(log.starts_with(good), "the good prefix is untouched");
        let v = verify_bytes(&log, None).expect("the repaired log verifies");
        assert_eq!(v.entries, entries_kept + 1);
        assert_eq!(v.gaps.len(), 1);
        let gap = &v.gaps[0];
        assert_eq!(gap.seq, entries_kept + 1);
        assert_eq!(
            gap.fields["kept_in"],
            kept_in.file_name().unwrap().to_string_lossy()
        );
        assert_eq!(gap.fields["tail_bytes"], tail.len().to_string());
        assert_eq!(gap.fields["tail_sha256"], *tail_sha256);
        r
    }

    #[test]
    fn a_torn_last_line_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 3);
        let good = read(&path);
        let torn = b"{\"seq\":4,\"at\":1,\"ev".to_vec();
        std::fs::write(&path, [good.clone(), torn.clone()].concat()).unwrap();
        assert!(AuditLog::open(&path).is_err());
        let r = repaired(&path, &good, &torn, 3);
        let Repair::Repaired {
            tail_lines, reason, ..
        } = &r
        else {
            unreachable!()
        };
        assert_eq!(*tail_lines, 1);
        assert!(matches!(reason, Broken::Malformed { line: 4, .. }));
        assert_eq!(
            kept_files(dir.path()),
            ["audit.jsonl.broken-1795400000".to_string()]
        );
        // The node opens it again and continues the chain after the gap.
        AuditLog::open(&path)
            .unwrap()
            .append(200, "node_started", &[])
            .unwrap();
        assert_eq!(verify_bytes(&read(&path), None).unwrap().entries, 5);
    }

    #[test]
    fn garbage_appended_is_set_aside_whole_lines_and_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 2);
        let good = read(&path);
        let garbage = b"garbage\n\xff\xfe more\npartial".to_vec();
        std::fs::write(&path, [good.clone(), garbage.clone()].concat()).unwrap();
        let r = repaired(&path, &good, &garbage, 2);
        assert!(matches!(r, Repair::Repaired { tail_lines: 3, .. }), "{r:?}");
    }

    #[test]
    fn an_edited_middle_entry_sets_aside_everything_from_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 5);
        let text = String::from_utf8(read(&path)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let good = format!("{}\n{}\n", lines[0], lines[1]);
        let edited = lines[2].replace("\"n\":\"2\"", "\"n\":\"9\"");
        assert_ne!(edited, lines[2]);
        let tail = format!("{edited}\n{}\n{}\n", lines[3], lines[4]);
        std::fs::write(&path, format!("{good}{tail}")).unwrap();
        let r = repaired(&path, good.as_bytes(), tail.as_bytes(), 2);
        let Repair::Repaired {
            tail_lines, reason, ..
        } = &r
        else {
            unreachable!()
        };
        assert_eq!(*tail_lines, 3);
        assert_eq!(*reason, Broken::Hash { line: 3, seq: 3 });
        let v = verify_bytes(&read(&path), None).unwrap();
        assert!(v.gaps[0].fields["reason"].contains("line 3 (seq 3)"));
    }

    #[test]
    fn a_bad_first_line_leaves_the_gap_as_entry_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, b"not an entry\n").unwrap();
        repaired(&path, b"", b"not an entry\n", 0);
        let text = String::from_utf8(read(&path)).unwrap();
        let first: crate::audit::Entry =
            serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            (first.seq, first.prev.as_str()),
            (1, "0".repeat(64).as_str())
        );
    }

    #[test]
    fn an_intact_log_is_left_untouched_and_repair_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 3);
        let before = read(&path);
        assert_eq!(repair(&path, 5).unwrap(), Repair::Intact { entries: 3 });
        assert_eq!(read(&path), before);
        assert!(kept_files(dir.path()).is_empty());

        std::fs::write(&path, [before.clone(), b"junk".to_vec()].concat()).unwrap();
        let first = repair(&path, 5).unwrap();
        assert!(matches!(first, Repair::Repaired { .. }));
        let after = read(&path);
        // Repairing again finds the repaired log intact and changes nothing.
        assert_eq!(repair(&path, 6).unwrap(), Repair::Intact { entries: 4 });
        assert_eq!(read(&path), after);
        assert_eq!(kept_files(dir.path()).len(), 1);
    }

    #[test]
    fn a_kept_tail_never_overwrites_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 1);
        let good = read(&path);
        std::fs::write(dir.path().join("audit.jsonl.broken-7"), b"earlier").unwrap();
        std::fs::write(&path, [good.clone(), b"x".to_vec()].concat()).unwrap();
        let Repair::Repaired { kept_in, .. } = repair(&path, 7).unwrap() else {
            panic!("not repaired")
        };
        assert!(kept_in.ends_with("audit.jsonl.broken-7-1"));
        assert_eq!(read(&dir.path().join("audit.jsonl.broken-7")), b"earlier");
        // The gap shows in a verification of the lines, too.
        let text = String::from_utf8(read(&path)).unwrap();
        let v = verify(text.lines(), None).unwrap();
        assert_eq!(v.gaps.len(), 1);
        assert_eq!(v.gaps[0].fields["tail_lines"], "1");
    }
}
