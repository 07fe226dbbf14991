//! What the coordinator has seen of each signer lately: how fast it answers,
//! and whether it sent a signature share that does not verify.
//!
//! Robust signing in the spirit of ROAST (Ruffing et al., CCS 2022): the
//! engine prefers signers that answer quickly, asks more than `t` for a live
//! round 1 and keeps the first `t`, and never again asks a signer that sent
//! an invalid share (it is faulty or compromised; an operator must look at
//! it). So one slow signer does not slow every signing, and one cheating
//! signer costs one attempt, not every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Weight of a new latency sample in the moving average.
const WEIGHT: f64 = 0.3;
/// A latency average older than this is forgotten, so a signer that was
/// slow once is tried again (and measured again) later.
const MEMORY: Duration = Duration::from_secs(30);
/// Latencies within one band count as equally fast (and are shuffled
/// among): the order only avoids signers that are clearly slower.
const BAND: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Standing {
    latency_ms: f64,
    measured_at: Option<Instant>,
    excluded: Option<String>,
}

/// The standing of every signer.
#[derive(Default)]
pub struct SignerStandings {
    by_name: Mutex<HashMap<String, Standing>>,
    /// Exclusions not yet written to the audit trail.
    unaudited: Mutex<Vec<(String, String)>>,
}

impl SignerStandings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Standing>> {
        self.by_name.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how long one of `signer`'s calls took.
    pub fn observe(&self, signer: &str, elapsed: Duration) {
        let mut all = self.lock();
        let s = all.entry(signer.to_string()).or_default();
        let sample = elapsed.as_secs_f64() * 1000.0;
        let fresh = s.measured_at.is_some_and(|t| t.elapsed() < MEMORY);
        s.latency_ms = if fresh {
            (1.0 - WEIGHT) * s.latency_ms + WEIGHT * sample
        } else {
            sample
        };
        s.measured_at = Some(Instant::now());
    }

    /// The band of `signer`'s recent latency: 0 for unknown or fast; the
    /// engine tries lower bands first.
    pub fn band(&self, signer: &str) -> u64 {
        match self.lock().get(signer) {
            Some(s) if s.measured_at.is_some_and(|t| t.elapsed() < MEMORY) => {
                (s.latency_ms / BAND.as_secs_f64() / 1000.0) as u64
            }
            _ => 0,
        }
    }

    /// Excludes `signer` from every signing from now on (until this process
    /// restarts), for `reason`. Returns whether it was newly excluded.
    pub fn exclude(&self, signer: &str, reason: &str) -> bool {
        let mut all = self.lock();
        let s = all.entry(signer.to_string()).or_default();
        if s.excluded.is_some() {
            return false;
        }
        s.excluded = Some(reason.to_string());
        self.unaudited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((signer.to_string(), reason.to_string()));
        true
    }

    /// The exclusions made since the last call, to be audited (each is
    /// handed out once).
    pub fn take_unaudited(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.unaudited.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Why `signer` is excluded, if it is.
    pub fn excluded(&self, signer: &str) -> Option<String> {
        self.lock().get(signer).and_then(|s| s.excluded.clone())
    }

    /// Every excluded signer and why, by name.
    pub fn all_excluded(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .lock()
            .iter()
            .filter_map(|(n, s)| s.excluded.clone().map(|r| (n.clone(), r)))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_signer_lands_in_a_higher_band() {
        let s = SignerStandings::default();
        assert_eq!(s.band("a"), 0, "unknown counts as fast");
        for _ in 0..5 {
            s.observe("a", Duration::from_millis(1));
            s.observe("b", Duration::from_millis(200));
        }
        assert_eq!(s.band("a"), 0);
        assert!(s.band("b") >= 5, "{}", s.band("b"));
    }

    #[test]
    fn the_average_follows_a_signer_that_recovers() {
        let s = SignerStandings::default();
        s.observe("b", Duration::from_millis(200));
        for _ in 0..20 {
            s.observe("b", Duration::from_millis(1));
        }
        assert_eq!(s.band("b"), 0);
    }

    #[test]
    fn exclusion_is_recorded_once_with_its_reason() {
        let s = SignerStandings::default();
        assert!(s.exclude("c", "invalid signature share"));
        assert!(!s.exclude("c", "again"));
        assert_eq!(s.excluded("c").as_deref(), Some("invalid signature share"));
        assert_eq!(s.excluded("a"), None);
        assert_eq!(
            s.all_excluded(),
            vec![("c".to_string(), "invalid signature share".to_string())]
        );
        assert_eq!(s.take_unaudited(), s.all_excluded());
        assert!(s.take_unaudited().is_empty(), "handed out once");
    }
}
