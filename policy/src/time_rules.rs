//! Time rules: when an approved request may be signed, by the signers' own
//! clocks.
//!
//! ```toml
//! [keys.hot-1.time]
//! # Signing only in these hours, at this fixed UTC offset (no DST rules:
//! # a zone with daylight saving time needs the policy updated with it).
//! signing_hours = { days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "18:00", utc_offset = "+09:00" }
//! # A minimum delay between full approval and signing, for every request...
//! delay_secs = 0
//! # ...and longer for large amounts (the highest `above` below the amount wins).
//! delays = [{ above = 100000000, delay_secs = 3600 }]
//! ```
//!
//! "Full approval" is the moment the quorum was complete: per department
//! of the applicable rule, the issue time of the n-th distinct approver
//! (n its quorum), the latest over the departments
//! ([`quorum_complete_at`]). A request is signable from that moment plus
//! its delay, and then only inside the signing hours
//! ([`signable_from`]). The coordinator waits for that time before it asks
//! the signers; each signer checks it again ([`check`]) and refuses before.
//!
//! Every delay is shorter than the key's `approval_ttl_secs` (checked at
//! load), but approvals issued far apart may still expire before the
//! delay ends; their approvers renew them.

use std::collections::{BTreeMap, BTreeSet};

use crate::evaluate::quorums_for;
use crate::policy::{KeyRules, Policy, Quorums};
use crate::request::SigningRequest;
use crate::statement::{Approval, Decision};
use crate::subject::Subject;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Days of the week, Monday first (1970-01-01 was a Thursday).
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A key's time rules, validated at load (`crate::policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRules {
    pub signing_hours: Option<SigningHours>,
    /// Delay after full approval for every request.
    pub delay_secs: u64,
    /// (above, delay): longer delays above amounts, increasing.
    pub delays: Vec<(u128, u64)>,
}

/// Weekly signing hours at a fixed UTC offset: `from` inclusive, `to`
/// exclusive, both within one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningHours {
    /// Allowed days, indexes into [`DAYS`].
    pub days: BTreeSet<usize>,
    /// Seconds after local midnight.
    pub from: u64,
    pub to: u64,
    /// Seconds east of UTC.
    pub utc_offset: i64,
}

impl SigningHours {
    /// Parses the policy file's fields.
    pub fn parse(days: &[String], from: &str, to: &str, offset: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for d in days {
            let i = DAYS
                .iter()
                .position(|x| x == d)
                .ok_or_else(|| format!("day {d:?} is not one of {}", DAYS.join(", ")))?;
            set.insert(i);
        }
        if set.is_empty() {
            return Err("signing_hours names no day".into());
        }
        let from = clock_time(from)?;
        let to = clock_time(to)?;
        if from >= to {
            return Err(format!(
                "signing_hours: from must be before to on the same day (got {} to {})",
                hhmm(from),
                hhmm(to)
            ));
        }
        Ok(SigningHours {
            days: set,
            from,
            to,
            utc_offset: utc_offset(offset)?,
        })
    }

    /// The first moment at or after `t` inside the hours.
    pub fn next_open(&self, t: u64) -> u64 {
        let local = (t as i64 + self.utc_offset).max(0) as u64;
        let midnight = local - local % DAY;
        for day in 0..8 {
            let start = midnight + day * DAY;
            // 1970-01-01 (day 0) was a Thursday: index 3.
            let weekday = ((start / DAY + 3) % 7) as usize;
            if !self.days.contains(&weekday) {
                continue;
            }
            let (open, close) = (start + self.from, start + self.to);
            if local < close {
                let at = local.max(open);
                return (at as i64 - self.utc_offset).max(0) as u64;
            }
        }
        // Unreachable with at least one day: a week always has it.
        u64::MAX
    }

    /// The hours as the policy writes them, for messages.
    pub fn describe(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|i| DAYS[*i]).collect();
        let sign = if self.utc_offset < 0 { '-' } else { '+' };
        let off = self.utc_offset.unsigned_abs();
        format!(
            "{} {}-{} UTC{sign}{:02}:{:02}",
            days.join(","),
            hhmm(self.from),
            hhmm(self.to),
            off / 3600,
            off % 3600 / 60
        )
    }
}

fn hhmm(secs: u64) -> String {
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

fn clock_time(text: &str) -> Result<u64, String> {
    let bad = || format!("time {text:?} is not HH:MM (00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60)
}

fn utc_offset(text: &str) -> Result<i64, String> {
    let bad = || format!("utc_offset {text:?} is not +HH:MM or -HH:MM (at most 14:00)");
    let sign = match text.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let secs = clock_time(&text[1..]).map_err(|_| bad())? as i64;
    if secs > 14 * 3600 {
        return Err(bad());
    }
    Ok(sign * secs)
}

impl TimeRules {
    /// The delay after full approval for a request moving `amount`.
    pub fn delay_for(&self, amount: u128) -> u64 {
        self.delays
            .iter()
            .rev()
            .find(|(above, _)| amount > *above)
            .map_or(self.delay_secs, |(_, d)| *d)
    }

    /// Whether any rule applies at all.
    pub fn is_empty(&self) -> bool {
        self.signing_hours.is_none() && self.delay_secs == 0 && self.delays.is_empty()
    }
}

/// When the quorum `quorums` was complete among `approvals` (approvals,
/// not rejections; distinct keys per department, as `evaluate` counts
/// them; each approver's department as the statement names it, already
/// checked by `evaluate`). `None` if it is not complete.
pub fn quorum_complete_at(quorums: &Quorums, approvals: &[Approval]) -> Option<u64> {
    let mut times: BTreeMap<&str, BTreeMap<Vec<u8>, u64>> = BTreeMap::new();
    for a in approvals {
        if a.statement.decision != Decision::Approve {
            continue;
        }
        let first = times
            .entry(a.statement.department.as_str())
            .or_default()
            .entry(a.approver.to_sec1())
            .or_insert(a.statement.issued_at);
        *first = (*first).min(a.statement.issued_at);
    }
    let mut complete = 0;
    for (department, need) in quorums {
        let mut issued: Vec<u64> = times
            .get(department.as_str())
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        issued.sort_unstable();
        let nth = *issued.get((*need as usize).checked_sub(1)?)?;
        complete = complete.max(nth);
    }
    Some(complete)
}

/// The earliest moment at or after `now` at which a request approved under
/// `quorums`, moving `amount`, may be signed under `rules`; `None` if its
/// quorum is not complete.
pub fn signable_from(
    rules: &KeyRules,
    quorums: &Quorums,
    amount: u128,
    approvals: &[Approval],
    now: u64,
) -> Option<u64> {
    let complete = quorum_complete_at(quorums, approvals)?;
    let after_delay = complete
        .saturating_add(rules.time.delay_for(amount))
        .max(now);
    Some(match &rules.time.signing_hours {
        Some(hours) => hours.next_open(after_delay),
        None => after_delay,
    })
}

/// [`signable_from`] for `request` under `policy` (its key's rules and the
/// quorums its subject needs); `None` if the key has no rules or the
/// quorum is not complete.
pub fn request_signable_from(
    policy: &Policy,
    request: &SigningRequest,
    what: &Subject,
    approvals: &[Approval],
    now: u64,
) -> Option<u64> {
    let rules = policy.key(&request.key_id)?;
    let quorums = quorums_for(rules, request, what).ok()?;
    signable_from(rules, &quorums, what.amount(), approvals, now)
}

/// [`check`] for `request` under `policy`: what a signer runs after
/// `evaluate` found it approved.
pub fn check_request(
    policy: &Policy,
    request: &SigningRequest,
    what: &Subject,
    approvals: &[Approval],
    now: u64,
) -> Result<(), NotYet> {
    let Some(rules) = policy.key(&request.key_id) else {
        return Ok(());
    };
    if rules.time.is_empty() {
        return Ok(());
    }
    match quorums_for(rules, request, what) {
        Ok(quorums) => check(rules, &quorums, what.amount(), approvals, now),
        // evaluate refused it already; nothing to time.
        Err(_) => Ok(()),
    }
}

/// Why an approved request may not be signed yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotYet {
    #[error(
        "the policy requires {delay_secs} s between full approval (at {complete_at}) and signing: not before {until} (now {now})"
    )]
    Delay {
        delay_secs: u64,
        complete_at: u64,
        until: u64,
        now: u64,
    },
    #[error("outside the key's signing hours ({hours}): they open at {opens_at} (now {now})")]
    OutsideHours {
        hours: String,
        opens_at: u64,
        now: u64,
    },
}

/// Checks that a request approved under `quorums`, moving `amount`, may be
/// signed at `now` (the quorum is complete: `evaluate` said Approved).
pub fn check(
    rules: &KeyRules,
    quorums: &Quorums,
    amount: u128,
    approvals: &[Approval],
    now: u64,
) -> Result<(), NotYet> {
    let Some(complete_at) = quorum_complete_at(quorums, approvals) else {
        return Ok(());
    };
    let delay_secs = rules.time.delay_for(amount);
    let until = complete_at.saturating_add(delay_secs);
    if now < until {
        return Err(NotYet::Delay {
            delay_secs,
            complete_at,
            until,
            now,
        });
    }
    if let Some(hours) = &rules.time.signing_hours {
        let opens_at = hours.next_open(now);
        if opens_at > now {
            return Err(NotYet::OutsideHours {
                hours: hours.describe(),
                opens_at,
                now,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 00:00:00 UTC, a Monday.
    const MONDAY: u64 = 1_796_601_600;

    fn tokyo_office() -> SigningHours {
        let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        SigningHours::parse(&days, "09:00", "18:00", "+09:00").unwrap()
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        // 1970-01-01 was a Thursday; 2026-12-07 is 20429 days later.
        assert_eq!(MONDAY % DAY, 0);
        assert_eq!(((MONDAY / DAY + 3) % 7) as usize, 0);
    }

    #[test]
    fn hours_open_on_the_next_allowed_day() {
        let h = tokyo_office();
        // Monday 00:00 UTC is 09:00 in Tokyo: open.
        assert_eq!(h.next_open(MONDAY), MONDAY);
        // Monday 09:00 UTC is 18:00 in Tokyo: closed until Tuesday 09:00
        // Tokyo, i.e. Tuesday 00:00 UTC.
        assert_eq!(h.next_open(MONDAY + 9 * 3600), MONDAY + DAY);
        // Friday 10:00 UTC (19:00 Tokyo): next Monday 00:00 UTC.
        assert_eq!(h.next_open(MONDAY + 4 * DAY + 10 * 3600), MONDAY + 7 * DAY);
        // Sunday 23:00 UTC is Monday 08:00 Tokyo: opens an hour later.
        assert_eq!(h.next_open(MONDAY - 3600), MONDAY);
        assert_eq!(h.describe(), "mon,tue,wed,thu,fri 09:00-18:00 UTC+09:00");
    }

    #[test]
    fn bad_hours_are_refused_with_their_reason() {
        let days = vec!["mon".to_string()];
        assert!(SigningHours::parse(&["funday".into()], "09:00", "18:00", "+00:00").is_err());
        assert!(SigningHours::parse(&[], "09:00", "18:00", "+00:00").is_err());
        assert!(SigningHours::parse(&days, "18:00", "09:00", "+00:00").is_err());
        assert!(SigningHours::parse(&days, "9:00", "18:00", "+00:00").is_err());
        assert!(SigningHours::parse(&days, "09:00", "24:01", "+00:00").is_err());
        assert!(SigningHours::parse(&days, "09:00", "18:00", "09:00").is_err());
        assert!(SigningHours::parse(&days, "09:00", "18:00", "+15:00").is_err());
        let west = SigningHours::parse(&days, "00:00", "24:00", "-05:00").unwrap();
        assert_eq!(west.utc_offset, -5 * 3600);
    }

    #[test]
    fn larger_amounts_wait_longer() {
        let rules = TimeRules {
            signing_hours: None,
            delay_secs: 10,
            delays: vec![(1_000, 600), (1_000_000, 3600)],
        };
        assert_eq!(rules.delay_for(1_000), 10);
        assert_eq!(rules.delay_for(1_001), 600);
        assert_eq!(rules.delay_for(5_000_000), 3600);
    }

    mod on_requests {
        use super::*;
        use crate::approver_key::ApproverKey;
        use crate::policy::tests::{Keys, keys, policy_text};
        use crate::request::tests::sample;
        use crate::statement::Statement;
        use p256::ecdsa::Signature;
        use p256::ecdsa::signature::Signer;

        const KEY: &str = r#"[keys.hot-1]
request_ttl_secs = 86400
approval_ttl_secs = 7200
require = { treasury = 1, compliance = 1 }
tiers = [{ above = 100000000, require = { treasury = 2, compliance = 1 } }]
[keys.hot-1.time]
delay_secs = 60
delays = [{ above = 100000000, delay_secs = 3600 }]
signing_hours = { days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "18:00", utc_offset = "+09:00" }
"#;

        fn approval(
            keys: &Keys,
            request: &SigningRequest,
            who: &str,
            dept: &str,
            at: u64,
        ) -> Approval {
            let approver = ApproverKey::parse(&keys.public(who)).unwrap();
            let statement =
                Statement::for_request(request, dept, Decision::Approve, "", at, at + 3600);
            let sig: Signature = keys.secret(who).sign(&statement.signed_bytes(&approver));
            Approval {
                statement,
                approver,
                signature: sig.to_bytes().to_vec(),
            }
        }

        #[test]
        fn signing_waits_for_the_delay_of_the_tier_then_for_the_hours() {
            let keys = keys();
            let policy = Policy::from_bytes(policy_text(&keys, KEY).as_bytes()).unwrap();
            let mut request = sample();
            request.policy_hash = policy.hash();
            request.metadata.amount = 200_000_000;
            let what = Subject::Declared {
                amount: request.metadata.amount,
                destination: request.metadata.destination.clone(),
            };
            // Monday 01:00 UTC (10:00 Tokyo): alice, then carol, then bob
            // completes the large tier's quorum (treasury 2) at 01:20.
            let t = MONDAY + 3600;
            let approvals = vec![
                approval(&keys, &request, "alice", "treasury", t),
                approval(&keys, &request, "carol", "compliance", t + 600),
                approval(&keys, &request, "bob", "treasury", t + 1200),
            ];
            let complete = t + 1200;
            let rules = policy.key("hot-1").unwrap();
            let quorums = quorums_for(rules, &request, &what).unwrap();
            assert_eq!(quorum_complete_at(&quorums, &approvals), Some(complete));
            // Two of them are not a complete quorum.
            assert_eq!(quorum_complete_at(&quorums, &approvals[..2]), None);
            let err =
                check_request(&policy, &request, &what, &approvals, complete + 10).unwrap_err();
            assert_eq!(
                err,
                NotYet::Delay {
                    delay_secs: 3600,
                    complete_at: complete,
                    until: complete + 3600,
                    now: complete + 10
                }
            );
            assert_eq!(
                request_signable_from(&policy, &request, &what, &approvals, complete),
                Some(complete + 3600)
            );
            assert_eq!(
                check_request(&policy, &request, &what, &approvals, complete + 3600),
                Ok(())
            );
            // Completed at 08:50 UTC Monday (17:50 Tokyo): the hour's delay
            // ends after closing; signable Tuesday 09:00 Tokyo.
            let late = MONDAY + 8 * 3600 + 3000;
            let approvals = vec![
                approval(&keys, &request, "alice", "treasury", late - 100),
                approval(&keys, &request, "carol", "compliance", late - 50),
                approval(&keys, &request, "bob", "treasury", late),
            ];
            assert_eq!(
                request_signable_from(&policy, &request, &what, &approvals, late),
                Some(MONDAY + DAY)
            );
            let err = check_request(&policy, &request, &what, &approvals, late + 3600).unwrap_err();
            assert!(
                matches!(err, NotYet::OutsideHours { opens_at, .. } if opens_at == MONDAY + DAY),
                "{err:?}"
            );
            // A small amount waits the base delay only.
            request.metadata.amount = 1_000;
            let small = Subject::Declared {
                amount: 1_000,
                destination: request.metadata.destination.clone(),
            };
            let approvals = vec![
                approval(&keys, &request, "alice", "treasury", t),
                approval(&keys, &request, "carol", "compliance", t + 5),
            ];
            assert_eq!(
                request_signable_from(&policy, &request, &small, &approvals, t + 5),
                Some(t + 65)
            );
        }

        #[test]
        fn a_delay_as_long_as_the_approvals_is_refused_at_load() {
            let keys = keys();
            let text = KEY.replace("delay_secs = 3600", "delay_secs = 7200");
            let err = Policy::from_bytes(policy_text(&keys, &text).as_bytes()).unwrap_err();
            assert!(
                err.to_string()
                    .contains("not shorter than approval_ttl_secs"),
                "{err}"
            );
            let text = KEY.replace("delay_secs = 3600", "delay_secs = 30");
            let err = Policy::from_bytes(policy_text(&keys, &text).as_bytes()).unwrap_err();
            assert!(
                err.to_string()
                    .contains("may not be shorter than delay_secs"),
                "{err}"
            );
        }
    }
}
