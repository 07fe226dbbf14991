//! Running totals: how both store engines read a key's window usage (what
//! its window caps count) in two index lookups instead of a sum over the
//! window. The rules are here, as plain functions; each engine does the
//! reads and writes.
//!
//! Each request row carries its key's totals through it (amount and number
//! of the key's requests, [`Usage`]) and the time it is counted at
//! (`counted_at`). What the window ending at `now` counts is then
//!
//! > the key's last totals − its totals through the last request counted
//! > at or before `now − window` − what the window's requests that ended
//! > without a signature (REJECTED, EXPIRED, FAILED) add up to,
//!
//! the last term read through a partial index that holds only those. A
//! request that ended unsigned leaves the window's usage without any
//! totals changing, and a FAILED one that is retried comes back into it
//! the same way.
//!
//! Summing every request of the window instead made each submission for a
//! key with a 24-hour cap cost time in proportion to the key's requests
//! that day: 10-11.5 ms of coordinator CPU per request at 10-15k requests
//! in the window (docs/bench.md, ninth session).
//!
//! To keep the totals a prefix sum in `counted_at` order, a request is
//! counted at the later of its creation and the key's last request's
//! `counted_at` ([`counted_after`]). Clocks that go back (or two
//! coordinators' clocks apart) keep a request in the window longer: a
//! stricter cap, never a looser one. Totals whose amount saturated (u128)
//! cannot be subtracted: the engine sums the window's rows instead.
//!
//! The signers' spending ledgers use the same scheme (`signer/src/spending.rs`).

use ringi_policy::limits::Usage;

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
