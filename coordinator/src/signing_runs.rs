//! At most one signing run per request in this process.
//!
//! A run is started by the Decide that meets the quorum and by the start-up
//! sweep that resumes APPROVED and interrupted SIGNING requests; both may
//! reach one request (a SIGNING request is resumed without a state change
//! to claim it). A run first claims its request here; a second run for the
//! same request while the first holds the claim does nothing. Across
//! processes (coordinators sharing a PostgreSQL store), the fenced claim in
//! the store decides (`crate::signing_claim`); this only spares a process
//! from racing itself for it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::RequestId;

/// The requests with a signing run in progress.
#[derive(Debug, Default)]
pub struct SigningRuns {
    running: Arc<Mutex<HashSet<RequestId>>>,
}

/// A request's claim; released when dropped (the run ended, whatever way).
#[derive(Debug)]
pub struct RunClaim {
    id: RequestId,
    running: Arc<Mutex<HashSet<RequestId>>>,
}

impl SigningRuns {
    /// Whether a run holds `id` now.
    pub fn is_running(&self, id: &RequestId) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Claims `id`, or `None` if a run holds it already.
    pub fn claim(&self, id: RequestId) -> Option<RunClaim> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(id).then(|| RunClaim {
            id,
            running: self.running.clone(),
        })
    }
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_per_request_until_it_ends() {
        let runs = SigningRuns::default();
        let first = runs.claim([1; 32]).expect("free");
        assert!(runs.claim([1; 32]).is_none(), "a second run is refused");
        let other = runs.claim([2; 32]).expect("another request is its own");
        drop(first);
        assert!(
            runs.claim([1; 32]).is_some(),
            "free again once the run ends"
        );
        drop(other);
    }
}
