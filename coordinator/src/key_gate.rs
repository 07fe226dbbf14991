//! One gate per key between signings and the lifecycle operations that
//! change the key's shares or signers (refresh, repair): a signing holds
//! the gate shared for its rounds, a lifecycle operation holds it alone.
//!
//! Why: a signing verifies each signature share against the key's public
//! key package as it loaded it. Were the shares switched under it (a
//! refresh's activation), honest signers' shares would fail that check and
//! be excluded as cheaters. With the gate, a refresh waits for the
//! signings in flight, and signings that start meanwhile wait (a refresh
//! takes well under a second, `docs/bench.md`) and then load the new
//! package.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ringi_policy::key_id::KeyId;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

#[derive(Default)]
pub struct KeyGates {
    gates: Mutex<HashMap<KeyId, Arc<RwLock<()>>>>,
}

impl KeyGates {
    fn gate(&self, key_id: &KeyId) -> Arc<RwLock<()>> {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key_id.clone())
            .or_default()
            .clone()
    }

    /// For a signing's rounds: shared with other signings of the key.
    pub async fn signing(&self, key_id: &KeyId) -> OwnedRwLockReadGuard<()> {
        self.gate(key_id).read_owned().await
    }

    /// For a lifecycle operation: alone, once the signings in flight end.
    pub async fn exclusive(&self, key_id: &KeyId) -> OwnedRwLockWriteGuard<()> {
        self.gate(key_id).write_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_lifecycle_operation_waits_for_signings_and_holds_new_ones() {
        let gates = Arc::new(KeyGates::default());
        let k = KeyId::parse("k").unwrap();
        let other = KeyId::parse("other").unwrap();
        let signing = gates.signing(&k).await;
        let second = gates.signing(&k).await; // signings share the gate
        let waiting = {
            let gates = gates.clone();
            let k = k.clone();
            tokio::spawn(async move { gates.exclusive(&k).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the operation waits for signings");
        // Another key is not held up.
        drop(gates.exclusive(&other).await);
        drop((signing, second));
        let exclusive = waiting.await.unwrap();
        let blocked = {
            let gates = gates.clone();
            let k = k.clone();
            tokio::spawn(async move { gates.signing(&k).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !blocked.is_finished(),
            "a new signing waits for the operation"
        );
        drop(exclusive);
        blocked.await.unwrap();
    }
}
