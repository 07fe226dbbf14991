//! One serving `ringi-signer` per data directory and per token.
//!
//! Besides the data directory's lock (`ringi_net::instance_lock`), taken
//! before anything is written, a signer locks its token once it is open
//! (which writes nothing): a lock file named by the token's module path,
//! label and serial number in the system's temporary directory, so two
//! data directories on one token on one host are refused too (they would
//! each keep round-1 nonces the other does not know).

use std::path::{Path, PathBuf};

pub use ringi_net::instance_lock::{InstanceLock, LockError};
use sha2::{Digest, Sha256};

/// Locks the token `token_label` (serial `serial`) of `module` on this host.
pub fn token(module: &Path, token_label: &str, serial: &str) -> Result<InstanceLock, LockError> {
    InstanceLock::file(
        &token_lock_path(module, token_label, serial),
        "ringi-signer",
        "token",
        format!("{token_label:?} (serial {serial}) of {}", module.display()),
        "token (--token-label)",
    )
}

/// The per-host lock file of a token.
pub fn token_lock_path(module: &Path, token_label: &str, serial: &str) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(module.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(token_label.as_bytes());
    hash.update([0]);
    hash.update(serial.as_bytes());
    let digest = hash.finalize();
    std::env::temp_dir().join(format!(
        "ringi-signer-token-{}.lock",
        hex::encode(&digest[..12])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_locked_by_its_serial_too() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("libmodule.so");
        let label = format!("test-{}", std::process::id());
        let held = token(&module, &label, "0001").unwrap();
        let err = token(&module, &label, "0001").unwrap_err();
        assert!(err.to_string().starts_with("token \""), "{err}");
        assert!(err.to_string().contains("another ringi-signer"), "{err}");
        // Another token with the same label (another serial) is another
        // token.
        token(&module, &label, "0002").unwrap();
        drop(held);
        token(&module, &label, "0001").unwrap();
    }
}
