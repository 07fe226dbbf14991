//! The coordinator's Prometheus metrics: every name, and one recording
//! helper per kind of event, so that a call site is one line.
//!
//! They are served only when `metrics_listen` is set
//! (`ringi_net::metrics_endpoint`, started by [`crate::server`]);
//! otherwise each helper is a call into the `metrics` facade's no-op
//! recorder (the bench and the unit tests run that way). Label values come
//! from this code only (a state, a decision, an error variant or policy
//! rule, a phase, a registry signer name, a key operation): never a key id,
//! a request's content, an approver or a secret.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | [`TRANSITIONS`] | counter | `to` (the state entered) |
//! | [`APPROVALS`] | counter | `decision` (`approve`, `reject`, `request`) |
//! | [`REFUSALS`] | counter | `rpc`, `reason` ([`crate::error::Error::reason`]) |
//! | [`PHASE_SECONDS`] | histogram | `phase` ([`phase_label`]) |
//! | [`SIGNING_EVENTS`] | counter | `event` (`crate::phases::count`'s names) |
//! | [`SIGNER_UP`] | gauge | `signer` (its registry name) |
//! | [`KEY_OPERATIONS`] | counter | `operation`, `outcome` (`ok`, `failed`) |

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::error::Error;
use crate::phases::Phase;
use crate::request_state::State;

/// Requests entering a state (submission enters PENDING_APPROVAL).
pub const TRANSITIONS: &str = "ringi_request_transitions_total";
/// Approval statements recorded, by decision.
pub const APPROVALS: &str = "ringi_approvals_recorded_total";
/// Submissions, decisions and retries refused, by RPC and reason.
pub const REFUSALS: &str = "ringi_refusals_total";
/// The coordinator's time per signing phase.
pub const PHASE_SECONDS: &str = "ringi_signing_phase_duration_seconds";
/// Notable events of signing runs (one- or two-round signings, void
/// packages, invalid shares).
pub const SIGNING_EVENTS: &str = "ringi_signing_events_total";
/// Whether a registered signer answers its health watch as SERVING.
pub const SIGNER_UP: &str = "ringi_signer_up";
/// Key lifecycle operations run through `KeyService`, by outcome.
pub const KEY_OPERATIONS: &str = "ringi_key_operations_total";

/// A key lifecycle operation of `KeyService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOperation {
    Keygen,
    Refresh,
    Repair,
    Import,
    Retire,
}

impl KeyOperation {
    pub fn label(self) -> &'static str {
        match self {
            KeyOperation::Keygen => "keygen",
            KeyOperation::Refresh => "refresh",
            KeyOperation::Repair => "repair",
            KeyOperation::Import => "import",
            KeyOperation::Retire => "retire",
        }
    }
}

/// Registers every metric's help text with the recorder (call once, after
/// the endpoint is up).
pub fn describe() {
    describe_counter!(
        TRANSITIONS,
        "Signing requests entering a state, by state (submissions enter pending_approval)"
    );
    describe_counter!(APPROVALS, "Approval statements recorded, by decision");
    describe_counter!(
        REFUSALS,
        "Calls refused, by RPC and reason (the error variant, or the policy rule broken)"
    );
    describe_histogram!(
        PHASE_SECONDS,
        metrics::Unit::Seconds,
        "The coordinator's time per signing phase (queue, approval check, round 1, round 2, aggregation, store and audit writes)"
    );
    describe_counter!(SIGNING_EVENTS, "Notable events of signing runs, by event");
    describe_gauge!(
        SIGNER_UP,
        "1 when a registered signer answers its health watch as SERVING, else 0"
    );
    describe_counter!(
        KEY_OPERATIONS,
        "Key lifecycle operations (keygen, refresh, repair, import, retire), by outcome"
    );
}

/// The `phase` label of a coordinator phase; `None` for the phases the
/// signers report about themselves (each signer exports its own).
pub fn phase_label(phase: Phase) -> Option<&'static str> {
    Some(match phase {
        Phase::Queue => "queue",
        Phase::ApprovalCheck => "approval_check",
        Phase::Round1 => "round1",
        Phase::Round2 => "round2",
        Phase::Aggregate => "aggregate",
        Phase::PlanWrite => "plan_write",
        Phase::CommitWrite => "commit_write",
        Phase::AuditWrite => "audit_write",
        Phase::SignerVerify | Phase::SignerToken | Phase::SignerLedger | Phase::SignerAudit => {
            return None;
        }
    })
}

/// The `to` label of a state.
fn state_label(state: State) -> &'static str {
    match state {
        State::PendingApproval => "pending_approval",
        State::Approved => "approved",
        State::Signing => "signing",
        State::Signed => "signed",
        State::Rejected => "rejected",
        State::Expired => "expired",
        State::Failed => "failed",
    }
}

/// A request entered `state` (once committed to the store).
pub fn transition(state: State) {
    counter!(TRANSITIONS, "to" => state_label(state)).increment(1);
}

/// An approval statement with `decision` was recorded.
pub fn approval(decision: ringi_policy::statement::Decision) {
    counter!(APPROVALS, "decision" => decision.as_str()).increment(1);
}

/// `rpc` was refused with `error`.
pub fn refused(rpc: &'static str, error: &Error) {
    counter!(REFUSALS, "rpc" => rpc, "reason" => error.reason()).increment(1);
}

/// `phase` of a signing took `elapsed` (signer-reported phases are not
/// exported here).
pub fn phase(phase: Phase, elapsed: Duration) {
    if let Some(label) = phase_label(phase) {
        histogram!(PHASE_SECONDS, "phase" => label).record(elapsed.as_secs_f64());
    }
}

/// `by` more of a signing run's `event`.
pub fn signing_event(event: &'static str, by: u64) {
    counter!(SIGNING_EVENTS, "event" => event).increment(by);
}

/// Whether the registered signer `name` is reachable.
pub fn signer_up(name: &str, up: bool) {
    gauge!(SIGNER_UP, "signer" => name.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// A key lifecycle operation ended, well or not.
pub fn key_operation(operation: KeyOperation, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!(KEY_OPERATIONS, "operation" => operation.label(), "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn coordinator_phases_are_exported_and_signer_phases_are_not() {
        let exported: Vec<&str> = Phase::ALL.iter().filter_map(|p| phase_label(*p)).collect();
        assert_eq!(
            exported,
            [
                "queue",
                "approval_check",
                "round1",
                "round2",
                "aggregate",
                "plan_write",
                "commit_write",
                "audit_write"
            ]
        );
    }

    /// (name, labels, value) of a recorded series.
    type Series = (String, Vec<String>, String);

    fn series(name: &str, labels: &[&str], value: &str) -> Series {
        (
            name.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
            value.to_string(),
        )
    }

    #[test]
    fn helpers_record_under_their_names_and_labels() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            transition(State::PendingApproval);
            transition(State::Signed);
            transition(State::Signed);
            refused("Decide", &Error::NoPolicy);
            phase(Phase::Round2, Duration::from_millis(3));
            phase(Phase::SignerToken, Duration::from_millis(3));
            signer_up("signer-1", false);
            key_operation(KeyOperation::Refresh, true);
        });
        let mut seen: Vec<Series> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let value = match value {
                    DebugValue::Counter(n) => n.to_string(),
                    DebugValue::Gauge(g) => g.into_inner().to_string(),
                    DebugValue::Histogram(h) => format!("{} samples", h.len()),
                };
                (key.key().name().to_string(), labels, value)
            })
            .collect();
        seen.sort();
        let mut expected = vec![
            series(REFUSALS, &["rpc=Decide", "reason=no_policy"], "1"),
            series(KEY_OPERATIONS, &["operation=refresh", "outcome=ok"], "1"),
            series(TRANSITIONS, &["to=pending_approval"], "1"),
            series(TRANSITIONS, &["to=signed"], "2"),
            series(PHASE_SECONDS, &["phase=round2"], "1 samples"),
            series(SIGNER_UP, &["signer=signer-1"], "0"),
        ];
        expected.sort();
        assert_eq!(seen, expected);
    }
}
