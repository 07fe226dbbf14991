//! Spending caps: the hot-wallet limits exchanges promised regulators.
//!
//! Per key id, any of:
//! - `max_amount_per_request`;
//! - over a rolling window of `window_secs`: `max_amount_per_window`,
//!   `max_requests_per_window`, and `max_window_percent_of_daily_volume` (a
//!   share of a daily-volume figure that operators update in a separate file,
//!   so it changes without a new policy);
//!
//! The coordinator checks them at submission against its request history;
//! every signer checks them again at round 2 against its own durable
//! counters, so a compromised coordinator cannot exceed them on any signer.
//! [`check`] is the one rule both run.

/// The caps of one key. `None` means no such cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_amount_per_request: Option<u128>,
    /// Length of the rolling window; 0 when no window cap is set.
    pub window_secs: u64,
    pub max_amount_per_window: Option<u128>,
    pub max_requests_per_window: Option<u64>,
    /// Basis points (1/100 of a percent) of the daily volume.
    pub window_bps_of_daily_volume: Option<u32>,
}

impl Limits {
    pub fn has_window(&self) -> bool {
        self.max_amount_per_window.is_some()
            || self.max_requests_per_window.is_some()
            || self.window_bps_of_daily_volume.is_some()
    }
}

/// What was already spent in the window, not counting the request checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub amount: u128,
    pub requests: u64,
}

impl Usage {
    /// Counts one more request of `amount`. The amount saturates: a sum
    /// past u128 is over any cap, never wrapped under one.
    pub fn add(&mut self, amount: u128) {
        self.amount = self.amount.saturating_add(amount);
        self.requests += 1;
    }

    /// Running totals as the stores keep them: the amount in decimal text
    /// (a u128 fits no SQL integer), the count as a signed 64-bit integer;
    /// `None` if either is not a valid value.
    pub fn from_stored(amount: &str, requests: i64) -> Option<Usage> {
        Some(Usage {
            amount: amount.parse().ok()?,
            requests: u64::try_from(requests).ok()?,
        })
    }

    /// Whether the amount has saturated ([`Usage::add`]): running totals
    /// that did can no longer be subtracted, and their owner sums the
    /// rows instead.
    pub fn saturated(&self) -> bool {
        self.amount == u128::MAX
    }

    /// What was counted between running totals `earlier` and these (both
    /// of one key, `earlier` read at or before these): `None` when
    /// `earlier` is larger, which running totals never are unless the
    /// store holding them is damaged.
    pub fn minus(self, earlier: Usage) -> Option<Usage> {
        Some(Usage {
            amount: self.amount.checked_sub(earlier.amount)?,
            requests: self.requests.checked_sub(earlier.requests)?,
        })
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CapExceeded {
    #[error("amount {amount} exceeds max_amount_per_request {cap}")]
    PerRequest { amount: u128, cap: u128 },
    #[error(
        "amount {amount} would bring the total over the last {window_secs} s to {total}, above max_amount_per_window {cap}"
    )]
    WindowAmount {
        amount: u128,
        total: u128,
        cap: u128,
        window_secs: u64,
    },
    #[error(
        "this would be request {count} in the last {window_secs} s, above max_requests_per_window {cap}"
    )]
    WindowCount {
        count: u64,
        cap: u64,
        window_secs: u64,
    },
    #[error(
        "amount {amount} would bring the total over the last {window_secs} s to {total}, above {percent}% of the daily volume {volume} ({cap})"
    )]
    WindowVolume {
        amount: u128,
        total: u128,
        cap: u128,
        percent: String,
        volume: u128,
        window_secs: u64,
    },
    #[error(
        "the cap is a share of the daily volume, but no daily volume figure is configured for this key"
    )]
    NoDailyVolume,
}

/// Checks one request of `amount` against `limits`, given the `usage` of
/// the window before it and the current daily-volume figure.
pub fn check(
    limits: &Limits,
    amount: u128,
    usage: Usage,
    daily_volume: Option<u128>,
) -> Result<(), CapExceeded> {
    if let Some(cap) = limits.max_amount_per_request
        && amount > cap
    {
        return Err(CapExceeded::PerRequest { amount, cap });
    }
    let total = usage.amount.saturating_add(amount);
    let window_secs = limits.window_secs;
    if let Some(cap) = limits.max_amount_per_window
        && total > cap
    {
        return Err(CapExceeded::WindowAmount {
            amount,
            total,
            cap,
            window_secs,
        });
    }
    if let Some(cap) = limits.max_requests_per_window {
        let count = usage.requests.saturating_add(1);
        if count > cap {
            return Err(CapExceeded::WindowCount {
                count,
                cap,
                window_secs,
            });
        }
    }
    if let Some(bps) = limits.window_bps_of_daily_volume {
        let volume = daily_volume.ok_or(CapExceeded::NoDailyVolume)?;
        let cap = volume.saturating_mul(u128::from(bps)) / 10_000;
        if total > cap {
            return Err(CapExceeded::WindowVolume {
                amount,
                total,
                cap,
                percent: format!("{}.{:02}", bps / 100, bps % 100),
                volume,
                window_secs,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_amount_per_request: Some(100),
            window_secs: 3600,
            max_amount_per_window: Some(250),
            max_requests_per_window: Some(3),
            window_bps_of_daily_volume: None,
        }
    }

    #[test]
    fn within_every_cap_passes() {
        assert_eq!(
            check(
                &limits(),
                100,
                Usage {
                    amount: 150,
                    requests: 2
                },
                None
            ),
            Ok(())
        );
        assert_eq!(
            check(&Limits::default(), u128::MAX, Usage::default(), None),
            Ok(())
        );
    }

    #[test]
    fn running_totals_subtract_and_saturate() {
        let mut totals = Usage::default();
        totals.add(10);
        let earlier = totals;
        totals.add(5);
        totals.add(7);
        assert_eq!(
            totals.minus(earlier),
            Some(Usage {
                amount: 12,
                requests: 2
            })
        );
        assert_eq!(totals.minus(totals), Some(Usage::default()));
        assert_eq!(earlier.minus(totals), None, "totals never decrease");
        assert!(!totals.saturated());
        assert_eq!(Usage::from_stored("22", 3), Some(totals));
        assert_eq!(Usage::from_stored("-1", 3), None);
        assert_eq!(Usage::from_stored("22", -3), None);
        assert_eq!(Usage::from_stored("1e3", 3), None);
        totals.add(u128::MAX - 1);
        assert!(totals.saturated());
        assert_eq!(totals.requests, 4);
    }

    #[test]
    fn each_cap_is_named() {
        let e = check(&limits(), 101, Usage::default(), None).unwrap_err();
        assert_eq!(
            e,
            CapExceeded::PerRequest {
                amount: 101,
                cap: 100
            }
        );
        let e = check(
            &limits(),
            100,
            Usage {
                amount: 151,
                requests: 0,
            },
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("max_amount_per_window 250") && e.to_string().contains("3600 s"),
            "{e}"
        );
        let e = check(
            &limits(),
            1,
            Usage {
                amount: 0,
                requests: 3,
            },
            None,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            CapExceeded::WindowCount {
                count: 4,
                cap: 3,
                ..
            }
        ));
    }

    #[test]
    fn a_share_of_the_daily_volume() {
        let l = Limits {
            window_secs: 86400,
            window_bps_of_daily_volume: Some(500), // 5%
            ..Default::default()
        };
        assert_eq!(
            check(
                &l,
                50,
                Usage {
                    amount: 0,
                    requests: 0
                },
                Some(1000)
            ),
            Ok(())
        );
        let e = check(&l, 51, Usage::default(), Some(1000)).unwrap_err();
        assert!(
            e.to_string()
                .contains("5.00% of the daily volume 1000 (50)"),
            "{e}"
        );
        assert_eq!(
            check(&l, 1, Usage::default(), None),
            Err(CapExceeded::NoDailyVolume)
        );
    }
}
