//! One serving process per data directory and per token.
//!
//! Two `ringi-signer serve` on one data directory would interleave their
//! appends to one audit log (breaking its hash chain) and their writes to
//! one spending ledger; two on one token would each keep round-1 nonces the
//! other does not know. So `serve` takes two exclusive advisory locks
//! before it writes anything (the audit log's `node_started` included) and
//! holds them until it exits:
//! - `DATA_DIR/ringi-signer.lock`;
//! - a lock file named by the token (its module path and label) in the
//!   system's temporary directory, so two data directories on one token on
//!   one host are refused too.
//!
//! The kernel releases the locks when the process dies, `kill -9`
//! included: a stale lock file never blocks a restart. A refused start
//! names the process holding the lock and what to do.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why the node cannot start: another process holds a lock, or the lock
/// file cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} {place} is in use by another ringi-signer ({holder}); stop that process first, or give this one another {remedy}"
    )]
    InUse {
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
    _files: Vec<File>,
}

impl InstanceLock {
    /// Locks `data_dir` and the token `(module, token_label)`.
    pub fn acquire(
        data_dir: &Path,
        module: &Path,
        token_label: &str,
    ) -> Result<InstanceLock, LockError> {
        std::fs::create_dir_all(data_dir).map_err(|e| LockError::Open {
            path: data_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let data = lock(
            &data_dir.join("ringi-signer.lock"),
            "data directory",
            data_dir.display().to_string(),
            "--data-dir",
        )?;
        let token = lock(
            &token_lock_path(module, token_label),
            "token",
            format!("{token_label:?} of {}", module.display()),
            "token (--token-label)",
        )?;
        Ok(InstanceLock {
            _files: vec![data, token],
        })
    }
}

/// The per-host lock file of a token.
pub fn token_lock_path(module: &Path, token_label: &str) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(module.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(token_label.as_bytes());
    let digest = hash.finalize();
    std::env::temp_dir().join(format!(
        "ringi-signer-token-{}.lock",
        hex::encode(&digest[..12])
    ))
}

fn lock(
    path: &Path,
    what: &'static str,
    place: String,
    remedy: &'static str,
) -> Result<File, LockError> {
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
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("libmodule.so");
        let label = format!("test-{}", std::process::id());
        let first = InstanceLock::acquire(dir.path(), &module, &label).unwrap();
        let err = InstanceLock::acquire(dir.path(), &module, &label).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("data directory "), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        // Another data directory on the same token: the token lock refuses.
        let other = tempfile::tempdir().unwrap();
        let err = InstanceLock::acquire(other.path(), &module, &label).unwrap_err();
        assert!(err.to_string().starts_with("token \""), "{err}");
        drop(first);
        InstanceLock::acquire(dir.path(), &module, &label).unwrap();
    }
}
