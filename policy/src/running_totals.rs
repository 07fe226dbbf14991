//! Running totals: how the coordinator's stores and each signer's spending
//! ledger read a key's window usage (what its window caps count) in two
//! index lookups instead of a sum over the window. Both must count the
//! same way, so the rule is here ([`usage`], [`counted_after`]); each
//! store makes the two reads it needs ([`Reads`]) and the writes.
//!
//! Each row (a request, or a signer's spend) carries its key's totals
//! through it (amount and number, [`Usage`]) and the time it is counted at
//! (`counted_at`; a signer's `at`). What the window ending at `now` counts is then
//!
//! > the key's last totals − its totals through the last request counted
//! > at or before `now − window` − what the window's requests that ended
//! > without a signature (REJECTED, EXPIRED, FAILED) add up to,
//!
//! the last term read through a partial index that holds only those (a
//! signer records only what it signed: nothing of its ledger ends). A
//! request that ended unsigned leaves the window's usage without any
//! totals changing, and a FAILED one that is retried comes back into it
//! the same way.
//!
//! Summing every request of the window instead made each submission for a
//! key with a 24-hour cap cost time in proportion to the key's requests
//! that day: 17 ms of coordinator CPU per request at 20-30k requests in
//! the window, against 1.6 ms now (docs/bench.md, ninth and tenth
//! sessions).
//!
//! To keep the totals a prefix sum in `counted_at` order, a request is
//! counted at the later of its creation and the key's last request's
//! `counted_at` ([`counted_after`]). Clocks that go back (or two
//! coordinators' clocks apart) keep a request in the window longer: a
//! stricter cap, never a looser one. Totals whose amount saturated (u128)
//! cannot be subtracted: the window's rows are summed instead.
//!
//! What still grows with the window: the sum of its ended requests. A
//! request counts until it ends, so a count cap (`max_requests_per_window`)
//! bounds how many can be pending at once, and with it how fast ended ones
//! pile up; without one, only the rate of submissions does.

use crate::limits::{Limits, Usage};

/// Running totals that do not add up (later ones smaller than earlier
/// ones, or less in the window than ended in it): only a damaged store
/// holds them, and a cap read from them would be wrong, so it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("running totals of key id {key_id:?} that do not add up")]
pub struct TotalsDoNotAddUp {
    pub key_id: String,
}

/// Which of a key's requests [`Reads::sum_after`] adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Those that may still be, or have been, signed: what a cap counts.
    Live,
    /// Those that ended without a signature (REJECTED, EXPIRED, FAILED; a
    /// signer's ledger has none).
    Ended,
}

/// The reads of a key's rows that [`usage`] makes, each store in its own
/// transaction.
pub trait Reads {
    type Error: From<TotalsDoNotAddUp>;

    /// The key's running totals through its last request counted at or
    /// before `through`, and when that request was counted.
    fn totals_through(
        &mut self,
        key_id: &str,
        through: i64,
    ) -> Result<Option<(Usage, i64)>, Self::Error>;

    /// The counted amounts of the key's `which` requests counted after
    /// `since`, added up ([`Usage::add`]).
    fn sum_after(&mut self, key_id: &str, since: i64, which: Counted)
    -> Result<Usage, Self::Error>;
}

/// What the key's window caps count for the window ending at `now`: its
/// live requests counted in the window, from its `last` totals (through
/// its last request) as the module docs say; summed instead when the
/// totals saturated. Nothing when `limits` has no window cap.
pub fn usage<R: Reads>(
    reads: &mut R,
    key_id: &str,
    limits: &Limits,
    now: u64,
    last: Option<Usage>,
) -> Result<Usage, R::Error> {
    let (true, Some(last)) = (limits.has_window(), last) else {
        return Ok(Usage::default());
    };
    let since = i64::try_from(now.saturating_sub(limits.window_secs)).unwrap_or(i64::MAX);
    if last.saturated() {
        // The differences would be wrong; the sum is not.
        return reads.sum_after(key_id, since, Counted::Live);
    }
    let before = reads
        .totals_through(key_id, since)?
        .map_or(Usage::default(), |(totals, _)| totals);
    let ended = reads.sum_after(key_id, since, Counted::Ended)?;
    window_usage(last, before, ended).ok_or_else(|| {
        TotalsDoNotAddUp {
            key_id: key_id.into(),
        }
        .into()
    })
}

/// When a new request of `amount`, created at `created_at`, is counted and
/// its key's totals through it, after `last` (the key's totals through its
/// last request, and when that was counted; `None` for its first).
pub fn counted_after(last: Option<(Usage, i64)>, created_at: u64, amount: u128) -> (i64, Usage) {
    let created_at = i64::try_from(created_at).unwrap_or(i64::MAX);
    let (mut totals, at) = last.map_or((Usage::default(), created_at), |(totals, at)| {
        (totals, at.max(created_at))
    });
    totals.add(amount);
    (at, totals)
}

/// The window's usage from the key's `last` totals, its totals `before` the
/// window (through its last request counted at or before the window's
/// start) and the sum of the window's requests that `ended` unsigned; `None`
/// when these do not add up, which only a damaged store gives.
pub fn window_usage(last: Usage, before: Usage, ended: Usage) -> Option<Usage> {
    last.minus(before)?.minus(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake store, named as one: one key's requests in memory, as
    /// (counted_at, amount, ended), in the order they were counted. The
    /// real stores are held to the same sums by the coordinator's store
    /// contract (`window_usage_is_the_sum`) and the signer's ledger tests.
    struct FakeRequests(Vec<(i64, u128, bool)>);

    type Error = TotalsDoNotAddUp;

    impl Reads for FakeRequests {
        type Error = Error;

        fn totals_through(&mut self, _: &str, through: i64) -> Result<Option<(Usage, i64)>, Error> {
            let mut last = None;
            let mut totals = Usage::default();
            for &(at, amount, _) in &self.0 {
                totals.add(amount);
                if at <= through {
                    last = Some((totals, at));
                }
            }
            Ok(last)
        }

        fn sum_after(&mut self, _: &str, since: i64, which: Counted) -> Result<Usage, Error> {
            let mut sum = Usage::default();
            for &(at, amount, ended) in &self.0 {
                if at > since && ended == (which == Counted::Ended) {
                    sum.add(amount);
                }
            }
            Ok(sum)
        }
    }

    fn capped(window_secs: u64) -> Limits {
        Limits {
            window_secs,
            max_requests_per_window: Some(1),
            ..Limits::default()
        }
    }

    fn last(requests: &mut FakeRequests) -> Option<Usage> {
        requests
            .totals_through("k", i64::MAX)
            .unwrap()
            .map(|(t, _)| t)
    }

    #[test]
    fn usage_is_the_windows_live_requests() {
        let mut requests = FakeRequests(vec![
            (100, 5, false),
            (110, 7, true),
            (120, 11, false),
            (120, 13, false),
            (130, 17, true),
        ]);
        let last = last(&mut requests);
        let mut at =
            |now, window| super::usage(&mut requests, "k", &capped(window), now, last).unwrap();
        assert_eq!(at(130, 100), usage(5 + 11 + 13, 3));
        assert_eq!(at(130, 20), usage(11 + 13, 2));
        assert_eq!(
            at(130, 10),
            Usage::default(),
            "only ended requests after 120"
        );
        assert_eq!(at(1000, 10), Usage::default());
        // No window cap: nothing is read, nothing counts.
        assert_eq!(
            super::usage(&mut requests, "k", &Limits::default(), 130, last).unwrap(),
            Usage::default()
        );
    }

    #[test]
    fn saturated_totals_are_summed_instead() {
        let mut requests = FakeRequests(vec![
            (100, u128::MAX - 1, false),
            (110, 2, false),
            (120, 3, false),
        ]);
        let last = last(&mut requests);
        assert!(last.unwrap().saturated());
        // The totals' difference would say 1; the sum says 2 + 3.
        assert_eq!(
            super::usage(&mut requests, "k", &capped(15), 120, last).unwrap(),
            usage(5, 2)
        );
    }

    #[test]
    fn totals_that_do_not_add_up_are_a_corrupt_store() {
        let mut requests = FakeRequests(vec![(100, 5, false), (110, 7, false)]);
        // Totals read as larger than the last: a damaged store.
        let small = Some(usage(1, 1));
        match super::usage(&mut requests, "k", &capped(5), 110, small) {
            Err(e) => assert_eq!(e.key_id, "k"),
            other => panic!("{other:?}"),
        }
    }

    fn usage(amount: u128, requests: u64) -> Usage {
        Usage { amount, requests }
    }

    #[test]
    fn a_first_request_is_counted_when_it_is_made() {
        assert_eq!(counted_after(None, 100, 7), (100, usage(7, 1)));
    }

    #[test]
    fn a_request_is_counted_after_the_last_one_even_if_made_before_it() {
        let last = Some((usage(10, 2), 150));
        assert_eq!(counted_after(last, 200, 5), (200, usage(15, 3)));
        // Made before the key's last request (a clock set back): counted
        // at the last one's time, so the totals stay in order.
        assert_eq!(counted_after(last, 120, 5), (150, usage(15, 3)));
    }

    #[test]
    fn a_saturated_amount_stays_saturated_and_still_counts_the_request() {
        let (_, totals) = counted_after(Some((usage(u128::MAX - 1, 1), 1)), 2, 5);
        assert_eq!(totals, usage(u128::MAX, 2));
        assert!(totals.saturated());
    }

    #[test]
    fn the_window_is_the_difference_less_what_ended_unsigned() {
        assert_eq!(
            window_usage(usage(100, 10), usage(40, 4), usage(15, 2)),
            Some(usage(45, 4))
        );
        assert_eq!(
            window_usage(usage(100, 10), usage(100, 10), Usage::default()),
            Some(Usage::default())
        );
        // Totals that decrease, or more ended than the window holds: a
        // damaged store, refused rather than read as a small usage.
        assert_eq!(
            window_usage(usage(40, 4), usage(100, 10), Usage::default()),
            None
        );
        assert_eq!(
            window_usage(usage(100, 10), usage(40, 4), usage(61, 1)),
            None
        );
        assert_eq!(
            window_usage(usage(100, 10), usage(40, 4), usage(1, 7)),
            None
        );
    }
}
