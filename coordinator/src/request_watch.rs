//! Who is watching which request: the changes `WatchSigningRequest`
//! streams wait for.
//!
//! A change to one request wakes only that request's watchers. (One
//! broadcast of every request's id to every watcher woke all 64 watchers
//! of a load test for each of about five changes per request, each to
//! compare an id and sleep again: issue 13's "no work repeated per
//! watch".) A watcher holds a [`Changes`]; the request's entry lives while
//! any does.
//!
//! Only this process's changes are seen: a coordinator sharing its store
//! with others learns of their changes when the request's expiry timer
//! makes the watcher read it again, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::RequestId;

/// The watched requests, each with a counter of its changes.
#[derive(Default, Clone)]
pub struct RequestWatches {
    watched: Arc<Mutex<HashMap<RequestId, watch::Sender<u64>>>>,
}

impl RequestWatches {
    /// Starts watching `id`: changes from now on wake the [`Changes`].
    /// Subscribe before the first read of the request, so no change falls
    /// in between.
    pub fn subscribe(&self, id: RequestId) -> Changes {
        let mut watched = self.lock();
        let receiver = watched
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Changes {
            id,
            receiver,
            watches: self.clone(),
        }
    }

    /// Request `id` changed: wake its watchers, if any.
    pub fn notify(&self, id: RequestId) {
        if let Some(sender) = self.lock().get(&id) {
            sender.send_modify(|changes| *changes = changes.wrapping_add(1));
        }
    }

    /// How many requests have a watcher (for tests).
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, watch::Sender<u64>>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One watcher's view of one request's changes.
pub struct Changes {
    id: RequestId,
    receiver: watch::Receiver<u64>,
    watches: RequestWatches,
}

impl Changes {
    /// Waits until the request changes after the last call (or after
    /// [`RequestWatches::subscribe`]). Changes made while the watcher was
    /// busy are not lost: they make this return at once, however many.
    pub async fn changed(&mut self) {
        if self.receiver.changed().await.is_err() {
            // The sender lives in the map while this receiver does.
            std::future::pending::<()>().await
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        let mut watched = self.watches.lock();
        // Under the lock no one subscribes meanwhile; this receiver is
        // still counted.
        if watched
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            watched.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(changes: &mut Changes) -> bool {
        tokio::time::timeout(Duration::from_millis(50), changes.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_change_wakes_only_that_requests_watchers() {
        let watches = RequestWatches::default();
        let mut a1 = watches.subscribe([1; 32]);
        let mut a2 = watches.subscribe([1; 32]);
        let mut b = watches.subscribe([2; 32]);
        watches.notify([1; 32]);
        assert!(woken(&mut a1).await);
        assert!(woken(&mut a2).await);
        assert!(!woken(&mut b).await);
        // Seen once: no second wake without a second change.
        assert!(!woken(&mut a1).await);
    }

    #[tokio::test]
    async fn changes_while_busy_are_not_lost() {
        let watches = RequestWatches::default();
        let mut a = watches.subscribe([1; 32]);
        watches.notify([1; 32]);
        watches.notify([1; 32]);
        assert!(woken(&mut a).await);
        assert!(!woken(&mut a).await);
    }

    #[tokio::test]
    async fn a_change_before_subscribing_is_not_reported() {
        let watches = RequestWatches::default();
        watches.notify([1; 32]);
        assert_eq!(watches.watched(), 0, "no entry for an unwatched request");
        let mut a = watches.subscribe([1; 32]);
        assert!(!woken(&mut a).await);
    }

    #[tokio::test]
    async fn the_entry_goes_with_the_last_watcher() {
        let watches = RequestWatches::default();
        let a1 = watches.subscribe([1; 32]);
        let mut a2 = watches.subscribe([1; 32]);
        assert_eq!(watches.watched(), 1);
        drop(a1);
        assert_eq!(watches.watched(), 1);
        watches.notify([1; 32]);
        assert!(woken(&mut a2).await);
        drop(a2);
        assert_eq!(watches.watched(), 0);
    }
}
