//! One serving process per data directory (and, for a signer, per token).
//!
//! Two daemons on one data directory would interleave their appends to
//! one audit log (breaking its hash chain) and their writes to one
//! database. So `ringi serve` and `ringi-signer serve` take an exclusive
//! advisory lock on `DATA_DIR/<program>.lock` before they write anything,
//! and hold it until they exit. The kernel releases it when the process
//! dies, `kill -9` included: a stale lock file never blocks a restart. A
//! refused start names the process holding the lock and what to do.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the node cannot start: another process holds a lock, or the lock
/// file cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} {place} is in use by another {program} ({holder}); stop that process first, or give this one another {remedy}"
    )]
    InUse {
        program: String,
        what: &'static str,
        place: String,
        holder: String,
        remedy: &'static str,
    },
    #[error("cannot open the lock file {path}: {reason}")]
    Open { path: PathBuf, reason: String },
}

/// Held for the life of the serving process.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Locks `data_dir` (created if missing) for `program` (e.g. `ringi`).
    pub fn data_dir(data_dir: &Path, program: &str) -> Result<InstanceLock, LockError> {
        std::fs::create_dir_all(data_dir).map_err(|e| LockError::Open {
            path: data_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        InstanceLock::file(
            &data_dir.join(format!("{program}.lock")),
            program,
            "data directory",
            data_dir.display().to_string(),
            "data directory",
        )
    }

    /// Locks the lock file `path`, which stands for `what` `place`; a
    /// refusal suggests another `remedy`.
    pub fn file(
        path: &Path,
        program: &str,
        what: &'static str,
        place: String,
        remedy: &'static str,
    ) -> Result<InstanceLock, LockError> {
        let open_error = |e: std::io::Error| LockError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(open_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::InUse {
                    program: program.to_string(),
                    what,
                    place,
                    holder: if holder.is_empty() {
                        "pid unknown".into()
                    } else {
                        format!("pid {holder}")
                    },
                    remedy,
                });
            }
            Err(TryLockError::Error(e)) => return Err(open_error(e)),
        }
        // Who holds it, for the next one's message; best effort.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = writeln!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(InstanceLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("ringi-lock-test-{}", std::process::id()));
        let first = InstanceLock::data_dir(&dir, "ringi").unwrap();
        let err = InstanceLock::data_dir(&dir, "ringi").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("data directory "), "{message}");
        assert!(
            message.contains(&format!("another ringi (pid {})", std::process::id())),
            "{message}"
        );
        // Another program's lock in the same directory is its own.
        let other = InstanceLock::data_dir(&dir, "ringi-signer").unwrap();
        drop((first, other));
        InstanceLock::data_dir(&dir, "ringi").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
