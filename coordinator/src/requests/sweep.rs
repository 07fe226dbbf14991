//! The sweep: expires the waiting requests whose time has passed (or whose
//! policy was replaced) and resumes the signings no run holds. At start
//! (`takeover`: this process holds the data directory, so every earlier
//! claim's holder is gone), every two seconds after (`server.rs`: a run
//! whose task died, a claim whose holder stopped renewing it), and at once
//! after a policy update.
//!
//! With coordinators sharing a store, this is also how one picks up what
//! another left when it died: the APPROVED requests it had not started (a
//! run elsewhere would have moved them to SIGNING) and the SIGNING ones
//! whose claim's lease passed. A SIGNING request whose claim another owner
//! holds, lease unexpired, is left to it (without `takeover`): that run is
//! alive, and trying would only take a signing slot to be refused.
//!
//! What a sweep reads ([`Scope`], chosen by [`Sweeper::scope`]): requests
//! wait for their approvers for hours, and a sweep that read every waiting
//! request every two seconds cost the coordinator CPU in proportion to how
//! many were waiting (10,000 prepared requests: 5,000 record reads a
//! second). So only the first sweep, and the first after the policy in
//! force changed, reads them all ([`Scope::All`]: a replaced policy may
//! void some, see [`super::superseded`]); the others read the waiting
//! requests whose time has passed and the APPROVED and SIGNING ones
//! ([`Scope::Due`]). Under an unchanged policy in force a pending request's
//! fate does not change with time except by its expiry: the policy it is
//! judged by depends only on the policies and on the request
//! (`PolicyStore::for_request`).

use std::collections::HashSet;
use std::sync::Arc;

use crate::coordinator::Coordinator;
use crate::error::{RequestId, Result};
use crate::request_state::State;
use crate::store::blocking;

use super::{get, now, run_signing};

/// Which requests a sweep reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every waiting request (PENDING_APPROVAL, APPROVED, SIGNING).
    All,
    /// The APPROVED and SIGNING requests, and the waiting ones whose time
    /// has passed.
    Due,
}

/// The periodic sweep's memory: whether it still takes claims over, and
/// which policy was in force when it last read every waiting request.
pub struct Sweeper {
    takeover: bool,
    /// `None` before the first sweep; then the hash of the policy in force
    /// at the last [`Scope::All`] (`Some(None)`: there was none).
    read_all_under: Option<Option<[u8; 32]>>,
}

impl Sweeper {
    /// The first sweep takes over every SIGNING request if `takeover`.
    pub fn new(takeover: bool) -> Self {
        Sweeper {
            takeover,
            read_all_under: None,
        }
    }

    /// What the next sweep reads, with `in_force` the hash of the policy in
    /// force now (`None`: no policy): everything the first time and after
    /// the policy in force changed, else what is due. Pure.
    pub fn scope(&mut self, in_force: Option<[u8; 32]>) -> Scope {
        if self.read_all_under == Some(in_force) {
            return Scope::Due;
        }
        self.read_all_under = Some(in_force);
        Scope::All
    }

    /// One periodic sweep. A failed one is read whole next time (the
    /// requests it did not reach may include some only a full read finds).
    pub async fn sweep(&mut self, c: &Arc<Coordinator>) -> Result<()> {
        let scope = self.scope(c.policy().ok().map(|p| p.hash()));
        let swept = sweep_in(c, self.takeover, scope).await;
        if swept.is_err() {
            self.read_all_under = None;
        }
        self.takeover = false;
        swept
    }
}

/// A sweep that reads every waiting request: what a policy update asks
/// for at once (its requests are resolved now, not at the next periodic
/// sweep).
pub async fn sweep(c: &Arc<Coordinator>, takeover: bool) -> Result<()> {
    sweep_in(c, takeover, Scope::All).await
}

async fn sweep_in(c: &Arc<Coordinator>, takeover: bool, scope: Scope) -> Result<()> {
    let store = c.requests.clone();
    let now = now();
    let (ids, held) = blocking(move || {
        let ids = match scope {
            Scope::All => {
                store.requests_in(&[State::PendingApproval, State::Approved, State::Signing])?
            }
            Scope::Due => {
                let mut ids = store.requests_in(&[State::Approved, State::Signing])?;
                ids.extend(store.waiting_due(now)?);
                ids.sort_unstable();
                ids.dedup();
                ids
            }
        };
        Ok((ids, store.live_claims(now)?))
    })
    .await?;
    let held_elsewhere: HashSet<RequestId> = held
        .into_iter()
        .filter(|(_, owner)| *owner != c.owner)
        .map(|(id, _)| id)
        .collect();
    for id in ids {
        let record = get(c, id).await?;
        let left_to_another =
            record.state == State::Signing && !takeover && held_elsewhere.contains(&id);
        if matches!(record.state, State::Approved | State::Signing)
            && !c.signing_runs.is_running(&id)
            && !left_to_another
        {
            tracing::info!(request_id = %hex::encode(id), state = %record.state, "resuming signing");
            let c = c.clone();
            tokio::spawn(async move { run_signing(&c, id, takeover).await });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_read_first_and_after_the_policy_in_force_changed() {
        let (a, b) = (Some([1; 32]), Some([2; 32]));
        let mut sweeper = Sweeper::new(false);
        assert_eq!(sweeper.scope(a), Scope::All, "the first sweep");
        assert_eq!(sweeper.scope(a), Scope::Due);
        assert_eq!(sweeper.scope(a), Scope::Due);
        assert_eq!(sweeper.scope(b), Scope::All, "another policy in force");
        assert_eq!(sweeper.scope(b), Scope::Due);
        assert_eq!(sweeper.scope(None), Scope::All, "no policy any more");
        assert_eq!(sweeper.scope(None), Scope::Due);
        assert_eq!(sweeper.scope(a), Scope::All, "the first policy again");

        let mut without_policy = Sweeper::new(true);
        assert_eq!(without_policy.scope(None), Scope::All);
        assert_eq!(without_policy.scope(None), Scope::Due);
    }
}
