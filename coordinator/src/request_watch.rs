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
//! A writer that holds the record it just wrote [`publish`]es it, and the
//! watchers send it on instead of each reading it back from the store (in
//! the load test, two of the three reloads per watched request). A change
//! announced without its record ([`notify`]) makes every watcher read the
//! store, from then on: a record published after an unknown change might
//! be older than it.
//!
//! Only this process's changes are seen: a coordinator sharing its store
//! with others learns of their changes when the request's expiry timer
//! makes the watcher read it again, as before.
//!
//! [`publish`]: RequestWatches::publish
//! [`notify`]: RequestWatches::notify

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::RequestId;
use crate::request_store::RequestRecord;

/// How far a record has come: its transitions and approvals, both only
/// ever appended. Of two records of one request, the one with the greater
/// version is the later write.
pub fn version(record: &RequestRecord) -> (usize, usize) {
    (record.transitions.len(), record.approvals.len())
}

/// What a watched request's watchers see: a change counter (the channel
/// wakes them) and the latest record published, if it is known to be the
/// latest.
#[derive(Default)]
struct Latest {
    changes: u64,
    record: Option<Arc<RequestRecord>>,
    /// A change was announced without its record: records published
    /// since cannot be known to be the latest.
    unknown: bool,
}

/// The watched requests.
#[derive(Default, Clone)]
pub struct RequestWatches {
    watched: Arc<Mutex<HashMap<RequestId, watch::Sender<Latest>>>>,
}

impl RequestWatches {
    /// Starts watching `id`: changes from now on wake the [`Changes`].
    /// Subscribe before the first read of the request, so no change falls
    /// in between.
    pub fn subscribe(&self, id: RequestId) -> Changes {
        let mut watched = self.lock();
        let receiver = watched
            .entry(id)
            .or_insert_with(|| watch::channel(Latest::default()).0)
            .subscribe();
        Changes {
            id,
            receiver,
            watches: self.clone(),
        }
    }

    /// Request `id` changed: wake its watchers, if any, to read it from the
    /// store.
    pub fn notify(&self, id: RequestId) {
        if let Some(sender) = self.lock().get(&id) {
            sender.send_modify(|latest| {
                latest.changes = latest.changes.wrapping_add(1);
                latest.record = None;
                latest.unknown = true;
            });
        }
    }

    /// `record` was just written: wake its watchers, if any, with it. Of
    /// records published out of order, the latest ([`version`]) stays.
    pub fn publish(&self, record: &RequestRecord) {
        if let Some(sender) = self.lock().get(&record.id) {
            sender.send_modify(|latest| {
                latest.changes = latest.changes.wrapping_add(1);
                let newer = latest
                    .record
                    .as_ref()
                    .is_none_or(|r| version(r) <= version(record));
                if !latest.unknown && newer {
                    latest.record = Some(Arc::new(record.clone()));
                }
            });
        }
    }

    /// How many requests have a watcher (for tests).
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, watch::Sender<Latest>>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One watcher's view of one request's changes.
pub struct Changes {
    id: RequestId,
    receiver: watch::Receiver<Latest>,
    watches: RequestWatches,
}

impl Changes {
    /// Waits until the request changes after the last call (or after
    /// [`RequestWatches::subscribe`]). Changes made while the watcher was
    /// busy are not lost: they make this return at once, however many.
    ///
    /// Returns the latest record if every change since the subscription
    /// was published with its record; `None` if the watcher must read the
    /// store. A record returned may be no newer than one the watcher read
    /// itself (compare [`version`]s): then nothing changed since.
    pub async fn changed(&mut self) -> Option<Arc<RequestRecord>> {
        if self.receiver.changed().await.is_err() {
            // The sender lives in the map while this receiver does.
            std::future::pending::<()>().await
        }
        self.receiver.borrow_and_update().record.clone()
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
        next(changes).await.is_some()
    }

    /// `None` if not woken; else what the change carried.
    async fn next(changes: &mut Changes) -> Option<Option<Arc<RequestRecord>>> {
        tokio::time::timeout(Duration::from_millis(50), changes.changed())
            .await
            .ok()
    }

    /// A record of request `[1; 32]` with `transitions` transitions and
    /// `approvals` approvals (their content does not matter here).
    fn record(transitions: usize, approvals: usize) -> RequestRecord {
        let f = crate::requests::fixture::fixture();
        let request = f.request();
        let approval = f.decide(
            &request,
            "alice",
            "treasury",
            ringi_policy::statement::Decision::Approve,
        );
        let transition = crate::request_store::TransitionRecord {
            from: String::new(),
            to: crate::request_state::State::PendingApproval,
            reason: String::new(),
            at: 0,
        };
        RequestRecord {
            id: [1; 32],
            request,
            signers: Vec::new(),
            state: crate::request_state::State::PendingApproval,
            state_reason: String::new(),
            signature: None,
            signed_transaction: None,
            approvals: vec![approval; approvals],
            transitions: vec![transition; transitions],
        }
    }

    #[tokio::test]
    async fn a_published_record_reaches_the_watchers_and_the_latest_stays() {
        let watches = RequestWatches::default();
        let mut a = watches.subscribe([1; 32]);
        watches.publish(&record(2, 1));
        let got = next(&mut a).await.expect("woken").expect("a record");
        assert_eq!(version(&got), (2, 1));
        // Published out of order: the later write stays.
        watches.publish(&record(3, 2));
        watches.publish(&record(2, 2));
        let got = next(&mut a).await.expect("woken").expect("a record");
        assert_eq!(version(&got), (3, 2));
    }

    #[tokio::test]
    async fn after_a_change_without_its_record_every_watcher_reads_the_store() {
        let watches = RequestWatches::default();
        let mut a = watches.subscribe([1; 32]);
        watches.publish(&record(2, 1));
        watches.notify([1; 32]);
        assert_eq!(
            next(&mut a).await.expect("woken").map(|r| version(&r)),
            None
        );
        // A record published after an unknown change may be older than it.
        watches.publish(&record(3, 1));
        assert_eq!(
            next(&mut a).await.expect("woken").map(|r| version(&r)),
            None
        );
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
