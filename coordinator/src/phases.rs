//! Where a signing's time goes: process-global latency histograms, one per
//! [`Phase`] of a signing on the coordinator's side (queueing, approval
//! check, each round's network time, aggregation, store and audit writes)
//! and on the signers' (approval verification, token, ledger, audit), plus
//! named counters of events (signers excluded, one- or two-round signings).
//!
//! Recording runs on every signing in production, so it is cheap: a
//! [`Phase`] indexes a fixed array of histograms, each behind its own mutex
//! (held for one O(1) histogram update, so two phases never contend). The
//! histograms are HDR histograms (`hdrhistogram`, the reference port of
//! HdrHistogram): fixed memory (about 26 KiB each), percentiles within 1%
//! for any value from 1 µs to an hour, where a sorted list of samples would
//! grow with the process's life. The mean is exact (a running total).
//!
//! The signers measure their own phases and send them back with each Commit,
//! Sign and Preprocess answer (a Preprocess answer's figures are a whole
//! batch's, not one signing's), in the response metadata [`SIGNER_METADATA`]
//! (`signer/src/phases.rs` writes it); the signing engine hands that to
//! [`record_signer`]. A signer's figures are its own account, for
//! measurement only: nothing decides anything on them.
//!
//! `ringi bench` [`reset`]s before its timed series and prints
//! [`snapshot`] after it.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The gRPC response metadata in which a signer reports its phases of a
/// Commit or Sign call, e.g. `verify=123;token=456;ledger=789;audit=12`:
/// microseconds per phase, `;`-separated, ASCII (the signer's
/// `phases::METADATA_KEY`).
pub const SIGNER_METADATA: &str = "ringi-phases";

/// Longest [`SIGNER_METADATA`] value read; a longer one is ignored whole
/// (four phases take under 100 characters).
pub const MAX_SIGNER_METADATA: usize = 256;

/// Smallest and largest value a histogram tells apart, in microseconds;
/// longer phases are recorded as an hour.
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Significant figures kept: percentiles within 1%.
const SIGNIFICANT_FIGURES: u8 = 2;

/// One step of a signing whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// A signing run waiting for one of the coordinator's signing slots.
    Queue,
    /// The coordinator's policy evaluation of a request's approvals, at
    /// each Decide and before signing (each verifies every approval
    /// signature).
    ApprovalCheck,
    /// Round 1 over the network: the Commit calls, until `t` commitments.
    Round1,
    /// Round 2 over the network: the Sign calls, until every share.
    Round2,
    /// Aggregating the shares (which verifies the signature).
    Aggregate,
    /// The durable write of a round-2 plan, before round 2.
    PlanWrite,
    /// The store write that records SIGNED.
    CommitWrite,
    /// The coordinator's audit appends on a request's way to a signature
    /// (each decision, the signing's start and outcome).
    AuditWrite,
    /// A signer's check of the approval bundle (per Commit or Sign call).
    SignerVerify,
    /// A signer's token work: unsealing the share, and commit or sign.
    SignerToken,
    /// A signer's ledger and release-log writes (Sign calls).
    SignerLedger,
    /// A signer's audit appends.
    SignerAudit,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 12] = [
        Phase::Queue,
        Phase::ApprovalCheck,
        Phase::Round1,
        Phase::Round2,
        Phase::Aggregate,
        Phase::PlanWrite,
        Phase::CommitWrite,
        Phase::AuditWrite,
        Phase::SignerVerify,
        Phase::SignerToken,
        Phase::SignerLedger,
        Phase::SignerAudit,
    ];

    /// What the phase measures, for tables (at most 52 characters).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queue => "coordinator: queue (wait for a signing slot)",
            Phase::ApprovalCheck => "coordinator: approval check (policy evaluation)",
            Phase::Round1 => "coordinator: round 1 network (commit calls)",
            Phase::Round2 => "coordinator: round 2 network (sign calls)",
            Phase::Aggregate => "coordinator: aggregation (verifies)",
            Phase::PlanWrite => "coordinator: round-2 plan write",
            Phase::CommitWrite => "coordinator: SIGNED write (finish_signing)",
            Phase::AuditWrite => "coordinator: audit append",
            Phase::SignerVerify => "signer: approval verification",
            Phase::SignerToken => "signer: token (unseal + commit/sign)",
            Phase::SignerLedger => "signer: ledger and release-log writes",
            Phase::SignerAudit => "signer: audit append",
        }
    }

    /// The phase a signer reports under `name` in [`SIGNER_METADATA`].
    fn of_signer(name: &str) -> Option<Phase> {
        match name {
            "verify" => Some(Phase::SignerVerify),
            "token" => Some(Phase::SignerToken),
            "ledger" => Some(Phase::SignerLedger),
            "audit" => Some(Phase::SignerAudit),
            _ => None,
        }
    }
}

/// A phase's figures since the last [`reset`], in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseSummary {
    pub phase: Phase,
    pub count: u64,
    /// Percentiles, within 1% (the histogram's resolution).
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    /// The longest sample, within 1%.
    pub max_us: u64,
    /// Exact (a running total), rounded down.
    pub mean_us: u64,
}

/// One phase's samples.
struct Series {
    histogram: Histogram<u64>,
    total: Duration,
}

impl Series {
    fn new() -> Self {
        Series {
            histogram: Histogram::new_with_bounds(
                LOWEST_MICROS,
                HIGHEST_MICROS,
                SIGNIFICANT_FIGURES,
            )
            .expect("constant histogram bounds are valid"),
            total: Duration::ZERO,
        }
    }

    fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros);
        self.total = self.total.saturating_add(elapsed);
    }

    fn summary(&self, phase: Phase) -> Option<PhaseSummary> {
        let count = self.histogram.len();
        if count == 0 {
            return None;
        }
        let mean = self.total.as_micros() / u128::from(count);
        Some(PhaseSummary {
            phase,
            count,
            p50_us: self.histogram.value_at_quantile(0.50),
            p90_us: self.histogram.value_at_quantile(0.90),
            p99_us: self.histogram.value_at_quantile(0.99),
            max_us: self.histogram.max(),
            mean_us: u64::try_from(mean).unwrap_or(u64::MAX),
        })
    }
}

/// The histograms and counters (one global instance; tests make their own).
struct Recorder {
    phases: [Mutex<Series>; Phase::ALL.len()],
    counters: Mutex<BTreeMap<&'static str, u64>>,
}

/// A guard whatever an earlier holder did: a histogram has no invariant a
/// panic elsewhere could break.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            phases: std::array::from_fn(|_| Mutex::new(Series::new())),
            counters: Mutex::new(BTreeMap::new()),
        }
    }

    fn record(&self, phase: Phase, elapsed: Duration) {
        lock(&self.phases[phase as usize]).record(elapsed);
    }

    fn record_signer(&self, metadata: &tonic::metadata::MetadataMap) {
        let Some(value) = metadata.get(SIGNER_METADATA) else {
            return;
        };
        let Some(phases) = value.to_str().ok().and_then(parse_signer) else {
            return;
        };
        for (phase, elapsed) in phases {
            self.record(phase, elapsed);
        }
    }

    fn snapshot(&self) -> Vec<PhaseSummary> {
        Phase::ALL
            .iter()
            .filter_map(|p| lock(&self.phases[*p as usize]).summary(*p))
            .collect()
    }

    fn reset(&self) {
        for series in &self.phases {
            *lock(series) = Series::new();
        }
        lock(&self.counters).clear();
    }

    fn count(&self, counter: &'static str, by: u64) {
        let mut counters = lock(&self.counters);
        let n = counters.entry(counter).or_insert(0);
        *n = n.saturating_add(by);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        lock(&self.counters)
            .iter()
            .map(|(name, n)| (*name, *n))
            .collect()
    }
}

static RECORDER: LazyLock<Recorder> = LazyLock::new(Recorder::new);

/// Records that `phase` took `elapsed` (also in the Prometheus histogram,
/// [`crate::metrics::phase`]).
pub fn record(phase: Phase, elapsed: Duration) {
    RECORDER.record(phase, elapsed);
    crate::metrics::phase(phase, elapsed);
}

/// Runs `f`, recording its time as `phase`.
pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    record(phase, start.elapsed());
    out
}

/// Awaits `f`, recording its time as `phase` (for the steps that await:
/// the network rounds, a store write on a blocking thread).
pub async fn timed<F: std::future::Future>(phase: Phase, f: F) -> F::Output {
    let start = Instant::now();
    let out = f.await;
    record(phase, start.elapsed());
    out
}

/// Parses the signer's [`SIGNER_METADATA`] response metadata and records
/// each phase it names; ignores anything malformed (never panics).
pub fn record_signer(metadata: &tonic::metadata::MetadataMap) {
    RECORDER.record_signer(metadata);
}

/// The phases a [`SIGNER_METADATA`] value reports: `NAME=MICROS` items
/// separated by `;`, each known name at most once, microseconds in decimal
/// digits. Names this coordinator does not know are skipped (a newer signer
/// may report more). `None` if anything is malformed: the value is then
/// ignored whole rather than half believed.
pub fn parse_signer(value: &str) -> Option<Vec<(Phase, Duration)>> {
    if value.len() > MAX_SIGNER_METADATA {
        return None;
    }
    let mut phases: Vec<(Phase, Duration)> = Vec::new();
    if value.is_empty() {
        return Some(phases);
    }
    for item in value.split(';') {
        let (name, micros) = item.split_once('=')?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok || micros.is_empty() || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let micros: u64 = micros.parse().ok()?;
        let Some(phase) = Phase::of_signer(name) else {
            continue;
        };
        if phases.iter().any(|(p, _)| *p == phase) {
            return None;
        }
        phases.push((phase, Duration::from_micros(micros)));
    }
    Some(phases)
}

/// Every phase recorded since the last [`reset`] (count > 0), in
/// [`Phase`] order.
pub fn snapshot() -> Vec<PhaseSummary> {
    RECORDER.snapshot()
}

/// Forgets every sample and counter.
pub fn reset() {
    RECORDER.reset();
}

/// Adds `by` to the named counter (e.g. "signers_excluded_for_bad_shares",
/// "one_round_signings", "two_round_signings").
pub fn count(counter: &'static str, by: u64) {
    RECORDER.count(counter, by);
    crate::metrics::signing_event(counter, by);
}

/// Every counter since the last [`reset`], by name.
pub fn counters() -> Vec<(&'static str, u64)> {
    RECORDER.counters()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::{MetadataMap, MetadataValue};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `got` is within 1% of `want`.
    fn near(got: u64, want: u64) -> bool {
        got.abs_diff(want) <= want / 100
    }

    #[test]
    fn names_fit_the_bench_table_and_the_order_is_the_enums() {
        for p in Phase::ALL {
            assert!(p.name().len() <= 52, "{:?}: {}", p, p.name());
        }
        let mut sorted = Phase::ALL;
        sorted.sort();
        assert_eq!(sorted, Phase::ALL);
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
    }

    #[test]
    fn records_and_summarizes_a_phase() {
        let r = Recorder::new();
        for n in 1..=100 {
            r.record(Phase::Round1, ms(n));
        }
        r.record(Phase::Aggregate, Duration::from_micros(700));
        let s = r.snapshot();
        assert_eq!(s.len(), 2);
        let round1 = s[0];
        assert_eq!((round1.phase, round1.count), (Phase::Round1, 100));
        assert!(near(round1.p50_us, 50_000), "{round1:?}");
        assert!(near(round1.p90_us, 90_000), "{round1:?}");
        assert!(near(round1.p99_us, 99_000), "{round1:?}");
        assert!(near(round1.max_us, 100_000), "{round1:?}");
        assert_eq!(round1.mean_us, 50_500);
        assert_eq!(s[1].phase, Phase::Aggregate);
        assert_eq!(s[1].count, 1);
        let one = s[1];
        for v in [one.p50_us, one.p90_us, one.p99_us, one.max_us] {
            assert!(near(v, 700), "{one:?}");
        }
        assert_eq!(one.mean_us, 700);
    }

    #[test]
    fn snapshot_lists_recorded_phases_in_enum_order() {
        let r = Recorder::new();
        assert!(r.snapshot().is_empty());
        for p in [Phase::SignerAudit, Phase::Queue, Phase::PlanWrite] {
            r.record(p, ms(1));
        }
        let phases: Vec<Phase> = r.snapshot().iter().map(|s| s.phase).collect();
        assert_eq!(phases, [Phase::Queue, Phase::PlanWrite, Phase::SignerAudit]);
    }

    #[test]
    fn a_phase_beyond_the_histogram_saturates() {
        let r = Recorder::new();
        r.record(Phase::Queue, Duration::from_secs(10 * 3600));
        r.record(Phase::Queue, Duration::ZERO);
        let s = r.snapshot()[0];
        assert_eq!(s.count, 2);
        assert!(near(s.p99_us, HIGHEST_MICROS), "{s:?}");
        assert!(near(s.max_us, HIGHEST_MICROS), "{s:?}");
        // The mean is exact: it does not saturate with the histogram.
        assert_eq!(s.mean_us, 5 * 3600 * 1_000_000);
    }

    #[test]
    fn reset_forgets_samples_and_counters() {
        let r = Recorder::new();
        r.record(Phase::Round2, ms(3));
        r.count("two_round_signings", 1);
        r.reset();
        assert!(r.snapshot().is_empty());
        assert!(r.counters().is_empty());
        r.record(Phase::Round2, ms(5));
        let s = r.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].count, s[0].mean_us), (1, 5_000));
    }

    #[test]
    fn counters_add_up_by_name() {
        let r = Recorder::new();
        r.count("two_round_signings", 2);
        r.count("one_round_signings", 1);
        r.count("two_round_signings", 3);
        assert_eq!(
            r.counters(),
            [("one_round_signings", 1), ("two_round_signings", 5)]
        );
        r.count("one_round_signings", u64::MAX);
        assert_eq!(r.counters()[0], ("one_round_signings", u64::MAX));
    }

    #[test]
    fn parses_a_signers_phases() {
        assert_eq!(
            parse_signer("verify=123;token=456;ledger=789;audit=12"),
            Some(vec![
                (Phase::SignerVerify, Duration::from_micros(123)),
                (Phase::SignerToken, Duration::from_micros(456)),
                (Phase::SignerLedger, Duration::from_micros(789)),
                (Phase::SignerAudit, Duration::from_micros(12)),
            ])
        );
        // Round 1 has no ledger; names in any order; unknown names skipped.
        assert_eq!(
            parse_signer("audit=0;verify=7;queue_9=5;token=18446744073709551615"),
            Some(vec![
                (Phase::SignerAudit, Duration::ZERO),
                (Phase::SignerVerify, Duration::from_micros(7)),
                (Phase::SignerToken, Duration::from_micros(u64::MAX)),
            ])
        );
        assert_eq!(parse_signer(""), Some(vec![]));
    }

    #[test]
    fn malformed_signer_phases_are_ignored_whole() {
        for bad in [
            "verify",
            "verify=",
            "=12",
            "verify=12;",
            ";verify=12",
            "verify=12;;token=3",
            "verify=+12",
            "verify=-1",
            "verify=1.5",
            "verify=12 ",
            " verify=12",
            "verify=0x10",
            "verify=18446744073709551616",
            "verify=1;verify=2",
            "verify=1=2",
            "Verify=1",
            "vérify=1",
            "verify=1,token=2",
        ] {
            assert_eq!(parse_signer(bad), None, "{bad:?}");
        }
        let long = format!("verify=1;x={}", "9".repeat(MAX_SIGNER_METADATA));
        assert_eq!(parse_signer(&long), None);
    }

    #[test]
    fn record_signer_reads_the_metadata_and_ignores_garbage() {
        let r = Recorder::new();
        let mut good = MetadataMap::new();
        good.insert(
            SIGNER_METADATA,
            MetadataValue::from_static("verify=2000;token=3000"),
        );
        r.record_signer(&good);
        r.record_signer(&MetadataMap::new());
        let mut bad = MetadataMap::new();
        bad.insert(SIGNER_METADATA, MetadataValue::from_static("verify=x"));
        r.record_signer(&bad);
        // Not visible ASCII: `to_str` refuses it.
        let mut binary = MetadataMap::new();
        binary.insert(
            SIGNER_METADATA,
            MetadataValue::try_from(&b"verify=1\xff"[..]).unwrap(),
        );
        r.record_signer(&binary);
        let s = r.snapshot();
        let got: Vec<(Phase, u64, u64)> = s.iter().map(|s| (s.phase, s.count, s.mean_us)).collect();
        assert_eq!(
            got,
            [
                (Phase::SignerVerify, 1, 2_000),
                (Phase::SignerToken, 1, 3_000)
            ]
        );
    }

    #[test]
    fn the_signers_encoding_is_what_the_coordinator_parses() {
        let mut t = ringi_signer::phases::Timings::default();
        t.add(ringi_signer::phases::SignerPhase::Verify, ms(1));
        t.add(ringi_signer::phases::SignerPhase::Ledger, ms(4));
        t.add(ringi_signer::phases::SignerPhase::Ledger, ms(2));
        assert_eq!(ringi_signer::phases::METADATA_KEY, SIGNER_METADATA);
        assert_eq!(
            parse_signer(&t.encode()),
            Some(vec![
                (Phase::SignerVerify, ms(1)),
                (Phase::SignerLedger, ms(6))
            ])
        );
    }

    /// The process-wide functions reach the one recorder (other tests may
    /// record meanwhile: only growth is checked, and nothing here resets).
    #[test]
    fn the_global_recorder_counts() {
        let count_of = |p: Phase| {
            snapshot()
                .into_iter()
                .find(|s| s.phase == p)
                .map_or(0, |s| s.count)
        };
        let before = count_of(Phase::CommitWrite);
        record(Phase::CommitWrite, ms(1));
        assert_eq!(time(Phase::CommitWrite, || 7), 7);
        assert!(count_of(Phase::CommitWrite) >= before + 2);
        let before = count_of(Phase::PlanWrite);
        let out = futures::executor::block_on(timed(Phase::PlanWrite, async { 8 }));
        assert_eq!(out, 8);
        assert!(count_of(Phase::PlanWrite) > before);
        count("phases_test_counter", 2);
        assert!(
            counters()
                .iter()
                .any(|(n, c)| *n == "phases_test_counter" && *c >= 2)
        );
    }
}
