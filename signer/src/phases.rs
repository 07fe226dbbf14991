//! Where this node's time goes in a Commit or Sign call, told to the
//! coordinator with the answer: the call's time per [`SignerPhase`] in the
//! gRPC response metadata [`METADATA_KEY`], e.g.
//! `verify=123;token=456;ledger=789;audit=12` (microseconds, ASCII). The
//! coordinator adds them to its phase histograms
//! (`coordinator/src/phases.rs`, `record_signer`), so `ringi bench` shows
//! both sides of a signing.
//!
//! A round runs on one blocking thread per call (`crate::service`), so the
//! accumulator is thread-local: the round functions wrap their steps in
//! [`time`], and the edge runs the round inside [`measured`], which starts
//! the thread's accumulator empty and hands back what the round added. A
//! round called outside [`measured`] (unit tests) only adds to a
//! thread-local nobody reads.
//!
//! Only durations leave the node this way: no key, request or approval.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The response metadata carrying a call's [`Timings`].
pub const METADATA_KEY: &str = "ringi-phases";

/// A step of a signing round on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerPhase {
    /// The check of the approval bundle against the pinned policy.
    Verify,
    /// Token work: unsealing the share, and committing or signing with it.
    Token,
    /// Spending-ledger and release-log writes.
    Ledger,
    /// Audit appends.
    Audit,
}

impl SignerPhase {
    /// Every phase, in the order they are encoded.
    pub const ALL: [SignerPhase; 4] = [
        SignerPhase::Verify,
        SignerPhase::Token,
        SignerPhase::Ledger,
        SignerPhase::Audit,
    ];

    /// Its name in [`METADATA_KEY`] (the coordinator's parser knows these).
    pub fn wire_name(self) -> &'static str {
        match self {
            SignerPhase::Verify => "verify",
            SignerPhase::Token => "token",
            SignerPhase::Ledger => "ledger",
            SignerPhase::Audit => "audit",
        }
    }
}

/// A call's time per phase: the sum of every step timed under it, or none
/// if no step ran (round 1 writes no ledger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    spent: [Option<Duration>; SignerPhase::ALL.len()],
}

impl Timings {
    /// Adds `elapsed` to `phase`.
    pub fn add(&mut self, phase: SignerPhase, elapsed: Duration) {
        let slot = &mut self.spent[phase as usize];
        *slot = Some(slot.unwrap_or_default().saturating_add(elapsed));
    }

    /// The time spent in `phase`, if any step of it ran.
    pub fn get(&self, phase: SignerPhase) -> Option<Duration> {
        self.spent[phase as usize]
    }

    /// The [`METADATA_KEY`] value: `NAME=MICROS` for each phase that ran,
    /// `;`-separated, in [`SignerPhase::ALL`] order; empty if none ran.
    pub fn encode(&self) -> String {
        SignerPhase::ALL
            .iter()
            .filter_map(|p| {
                let micros = u64::try_from(self.get(*p)?.as_micros()).unwrap_or(u64::MAX);
                Some(format!("{}={micros}", p.wire_name()))
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// `message` as a response carrying these timings (none if no phase
    /// ran).
    pub fn respond<T>(&self, message: T) -> tonic::Response<T> {
        let mut response = tonic::Response::new(message);
        let encoded = self.encode();
        // Digits, letters, '=' and ';': always a valid ASCII value.
        if let (false, Ok(value)) = (encoded.is_empty(), encoded.parse()) {
            response.metadata_mut().insert(METADATA_KEY, value);
        }
        response
    }
}

thread_local! {
    /// What the round running on this thread has spent so far.
    static CURRENT: Cell<Timings> = Cell::new(Timings::default());
}

/// Runs `f`, adding its time to `phase` of the round running on this
/// thread.
pub fn time<T>(phase: SignerPhase, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    CURRENT.with(|current| {
        let mut t = current.get();
        t.add(phase, elapsed);
        current.set(t);
    });
    out
}

/// Runs the round `f` on this thread with an empty accumulator, and returns
/// its result with what its [`time`]d steps spent. Not nested: an inner
/// `measured` would take the outer one's figures.
pub fn measured<T>(f: impl FnOnce() -> T) -> (T, Timings) {
    CURRENT.with(Cell::take);
    let out = f();
    (out, CURRENT.with(Cell::take))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn encodes_the_phases_that_ran_in_order() {
        let mut t = Timings::default();
        assert_eq!(t.encode(), "");
        t.add(SignerPhase::Audit, us(12));
        t.add(SignerPhase::Verify, us(123));
        t.add(SignerPhase::Token, us(400));
        t.add(SignerPhase::Token, us(56));
        assert_eq!(t.encode(), "verify=123;token=456;audit=12");
        t.add(SignerPhase::Ledger, Duration::from_nanos(789_999));
        assert_eq!(t.encode(), "verify=123;token=456;ledger=789;audit=12");
        let mut zero = Timings::default();
        zero.add(SignerPhase::Ledger, Duration::ZERO);
        assert_eq!(zero.encode(), "ledger=0");
    }

    #[test]
    fn huge_durations_saturate() {
        let mut t = Timings::default();
        t.add(SignerPhase::Token, Duration::MAX);
        t.add(SignerPhase::Token, Duration::MAX);
        assert_eq!(t.get(SignerPhase::Token), Some(Duration::MAX));
        assert_eq!(t.encode(), format!("token={}", u64::MAX));
    }

    #[test]
    fn measured_collects_only_its_rounds_steps() {
        // Left over from a round outside `measured`: not counted.
        time(SignerPhase::Ledger, || ());
        let (out, t) = measured(|| {
            let a = time(SignerPhase::Verify, || 2);
            let b = time(SignerPhase::Audit, || 3);
            time(SignerPhase::Audit, || ());
            // Another thread's steps are its own.
            std::thread::spawn(|| time(SignerPhase::Token, || ()))
                .join()
                .unwrap();
            a * b
        });
        assert_eq!(out, 6);
        assert!(t.get(SignerPhase::Verify).is_some());
        assert!(t.get(SignerPhase::Audit).is_some());
        assert_eq!(t.get(SignerPhase::Token), None);
        assert_eq!(t.get(SignerPhase::Ledger), None);
        // Taken: the next round starts empty.
        let ((), t) = measured(|| ());
        assert_eq!(t, Timings::default());
    }

    #[test]
    fn the_response_carries_the_timings() {
        let mut t = Timings::default();
        t.add(SignerPhase::Verify, us(5));
        t.add(SignerPhase::Token, us(7));
        let response = t.respond(42u8);
        assert_eq!(
            response.metadata().get(METADATA_KEY).unwrap(),
            "verify=5;token=7"
        );
        assert_eq!(response.into_inner(), 42);
        let none = Timings::default().respond(());
        assert!(none.metadata().get(METADATA_KEY).is_none());
    }
}
