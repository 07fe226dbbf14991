//! `ringi approve` / `ringi reject`: the approver signs a statement about
//! exactly the request the coordinator shows, after checking that view
//! (see [`crate::view`]: it is the request asked for, by its id; checked
//! against its key, a PSBT request's transaction derived here) and the
//! approval validity the coordinator proposes.
//!
//! Before anything is signed the approver is shown what a person needs to
//! decide ([`crate::requests::write_view`]): what the request does (the
//! transaction's payments, change, fee and inputs, BLIND, or the declared
//! amount with the asset's decimals), memo, requester, times in RFC 3339
//! with the time left, the rule of the approver's own policy that applies,
//! who decided when and until when, and other open requests for the same
//! message; then asked `Approve? [y/N]` on the terminal. `--yes` skips the
//! question for scripts; without it, a stdin that is not a terminal is
//! refused (nothing is ever signed silently).
//!
//! With the approver's own copy of the policy (`--policy`), its SHA-256
//! must be the request's `policy_hash`, and the validity the coordinator
//! proposes may not exceed that policy's `approval_ttl_secs` for the key:
//! a coordinator cannot get a statement valid for longer than the policy
//! allows. Without it the CLI's own cap ([`view::MAX_APPROVAL_TTL_SECS`])
//! is all that bounds it, and the CLI says so.
//!
//! An approval of one's own that expired before the quorum was met is
//! renewed by approving again (the coordinator counts only valid
//! approvals and accepts a new one from the same approver); one still
//! valid is refused here (ALREADY_EXISTS), before anything is signed.

use std::io::Write;

use ringi::request_state::State;
use ringi_policy::policy::Policy;
use ringi_policy::statement::{Approval, Decision, Statement};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use tonic::transport::Channel;

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::connect::ClientTls;
use crate::requests::{Context, examine, twins, write_view};
use crate::signers::SignerEndpoint;
use crate::view::{self, Previous, printable};

/// How the decision is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Ask on the terminal.
    Ask,
    /// `--yes`: a script confirmed it by passing the flag.
    Given,
}

/// Whether the decision can be confirmed: `--yes`, or a terminal on stdin
/// to ask on. A script that passes neither is refused before anything
/// else happens (no key opened, no PIN asked, nothing signed).
pub fn confirmation(
    decision: Decision,
    yes: bool,
    stdin_is_terminal: bool,
) -> Result<Confirm, CliError> {
    match (yes, stdin_is_terminal) {
        (true, _) => Ok(Confirm::Given),
        (false, true) => Ok(Confirm::Ask),
        (false, false) => Err(CliError::Usage(format!(
            "stdin is not a terminal, so the decision cannot be confirmed: refusing to {} (pass --yes to {} from a script)",
            decision.as_str(),
            decision.as_str()
        ))),
    }
}

/// Whether an answer to `Approve? [y/N]` is a yes: "y" or "yes", any case,
/// surrounding blanks ignored. Anything else (an empty line, end of input)
/// is a no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The approver's own copy of the policy, as given.
pub struct ApproverPolicy {
    pub path: std::path::PathBuf,
    pub policy: Policy,
}

/// What `decide` was asked to do besides the decision itself.
/// The shortest validity of a rejection sent to the signers directly.
pub const DIRECT_VETO_SECS: u64 = 600;

pub struct Options<'a> {
    pub confirm: Confirm,
    pub policy: Option<ApproverPolicy>,
    /// Signers a rejection is also sent to directly (their governance
    /// API), with the CLI's TLS identity.
    pub direct: (&'a [SignerEndpoint], Option<&'a ClientTls>),
}

pub async fn decide(
    channel: Channel,
    id: &str,
    department: &str,
    (decision, reason): (Decision, &str),
    signer: ApproverSigner,
    options: Options<'_>,
) -> Result<(), CliError> {
    let examined = examine(channel.clone(), id).await?;
    let view = &examined.view;
    // A rejection with --signer goes to the signers whatever state the
    // coordinator shows: a coordinator that says "approved" or "signed"
    // must not be able to keep a veto from the signers (nor one during a
    // time rule's delay, while the request is APPROVED).
    let direct_veto = decision == Decision::Reject && !options.direct.0.is_empty();
    let to_coordinator = view.state == State::PendingApproval;
    if !to_coordinator && direct_veto {
        eprintln!(
            "ringi: the coordinator shows request {id} as {} {}; the rejection goes to the signers only",
            view.state,
            printable(&view.state_reason)
        );
    } else if !to_coordinator {
        return Err(CliError::Status {
            code: tonic::Code::FailedPrecondition,
            message: format!(
                "request {id} is {}: already decided or expired {}",
                view.state,
                printable(&view.state_reason)
            ),
        });
    }
    let request = &view.request;
    let key_id = request.key_id.as_str();
    let policy = options.policy.as_ref().map(|p| &p.policy);
    let policy_max = match policy {
        Some(policy) => Some(view::check_policy(policy, request)?.approval_ttl_secs),
        None => None,
    };
    let now = ringi_policy::clock::now();
    // A rejection sent to the signers is checked there when it arrives: it
    // is valid for at least DIRECT_VETO_SECS (within the approver's own
    // policy when given), so a coordinator proposing a tiny validity cannot
    // make it expire on the way.
    let ttl = if direct_veto {
        view.approval_ttl_secs
            .max(DIRECT_VETO_SECS)
            .min(policy_max.unwrap_or(u64::MAX))
    } else {
        view.approval_ttl_secs
    };
    // Checked before the approver is asked anything.
    view::approval_window_under(now, ttl, key_id, policy_max)?;
    let approver = signer.public_key();
    let previous = view::previous_decision(view, &approver, now);
    if let Previous::Valid {
        decision: earlier,
        expires_at,
    } = previous
    {
        return Err(CliError::Status {
            code: tonic::Code::AlreadyExists,
            message: format!(
                "approver key {} has already decided on request {id}: {}, valid until {}; nothing signed",
                approver.to_text(),
                earlier.as_str(),
                view::when(now, expires_at)
            ),
        });
    }

    let twins = twins(channel.clone(), &examined)
        .await
        .map_err(|e| e.to_string());
    let mut shown = Vec::new();
    let _ = write_view(&mut shown, &examined, &Context { now, policy, twins });
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&shown);
    if let Previous::Expired { expires_at } = previous {
        let _ = match decision {
            Decision::Approve => writeln!(
                err,
                "ringi: renewing your approval that expired at {}",
                view::when(now, expires_at)
            ),
            Decision::Reject | Decision::Request => writeln!(
                err,
                "ringi: your approval expired at {}; this {} replaces it",
                view::when(now, expires_at),
                decision.as_str()
            ),
        };
    }
    let _ = match (&options.policy, policy_max) {
        (Some(p), Some(max)) => writeln!(
            err,
            "ringi: the statement will be valid for {ttl} s ({}), within the approval_ttl_secs of {max} s of your policy {}",
            view::duration_text(ttl),
            p.path.display()
        ),
        _ => writeln!(
            err,
            "ringi: the statement will be valid for {ttl} s ({}); not checked against a policy (no --policy): only the CLI's cap of {} s applies",
            view::duration_text(ttl),
            view::MAX_APPROVAL_TTL_SECS
        ),
    };
    // The approver's name as their own policy knows the key, if given.
    let name = policy
        .and_then(|p| p.approver(&approver))
        .map(|a| format!("{} ", printable(&a.name)))
        .unwrap_or_default();
    let _ = writeln!(
        err,
        "ringi: {} request {id} as {name}{} ({})",
        decision.as_str(),
        approver.to_text(),
        printable(department)
    );
    drop(err);
    if options.confirm == Confirm::Ask && !ask(decision).await? {
        return Err(CliError::Usage(format!(
            "not confirmed: nothing signed, request {id} left as it was"
        )));
    }

    // Issued now, after the approver's answer (which may have taken a
    // while), under the same bounds.
    let window = view::approval_window_under(ringi_policy::clock::now(), ttl, key_id, policy_max)?;
    let statement = Statement::for_request(
        request,
        department,
        decision,
        reason,
        window.issued_at,
        window.expires_at,
    );
    let signature = signer
        .sign(&statement.signed_bytes(&approver))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let approval = Approval {
        statement,
        approver,
        signature,
    };
    // A rejection goes to the signers first, directly: in force there
    // whatever the coordinator does with it (see ringi_policy::veto).
    let direct = options.direct;
    let direct_report = match (decision, direct.0.is_empty()) {
        (Decision::Reject, false) => {
            let answers = crate::freeze::send_rejection(direct.0, direct.1, &approval).await;
            Some(crate::signers::report("rejection", &answers))
        }
        _ => None,
    };
    if !to_coordinator {
        // Only a direct veto gets here (see above).
        return direct_report.unwrap_or(Ok(()));
    }
    let view = view::from_pb(
        &RequestServiceClient::new(channel)
            .decide(pb::DecideRequest {
                approval: Some(ringi_proto::bundle::approval_to_pb(&approval)),
            })
            .await?
            .into_inner(),
    )?;
    if view.id != approval.statement.request_id {
        return Err(CliError::Usage(format!(
            "decided on request {id}, the coordinator answered about request {}",
            view.id_hex()
        )));
    }
    let needed: Vec<String> = view
        .still_needed
        .iter()
        .map(|n| format!("{} {} of {}", printable(&n.department), n.have, n.need))
        .collect();
    if needed.is_empty() {
        eprintln!("ringi: request is now {}", view.state);
    } else {
        eprintln!(
            "ringi: request is now {}; still needed: {}",
            view.state,
            needed.join(", ")
        );
    }
    println!("{}", view.state);
    direct_report.unwrap_or(Ok(()))
}

/// Asks `Approve? [y/N]` (or `Reject? [y/N]`) on stderr and reads the
/// answer from the terminal.
async fn ask(decision: Decision) -> Result<bool, CliError> {
    let question = match decision {
        Decision::Approve => "Approve? [y/N] ",
        Decision::Reject => "Reject? [y/N] ",
        Decision::Request => "Sign this request? [y/N] ",
    };
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| CliError::Usage(format!("cannot read the answer: {e}")))?
    .map_err(|e| CliError::Usage(format!("cannot read the answer: {e}")))?;
    Ok(is_yes(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_must_say_yes_and_a_terminal_is_asked() {
        assert_eq!(
            confirmation(Decision::Approve, true, false).unwrap(),
            Confirm::Given
        );
        assert_eq!(
            confirmation(Decision::Approve, true, true).unwrap(),
            Confirm::Given
        );
        assert_eq!(
            confirmation(Decision::Approve, false, true).unwrap(),
            Confirm::Ask
        );
        let refused = confirmation(Decision::Reject, false, false).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "stdin is not a terminal, so the decision cannot be confirmed: refusing to reject (pass --yes to reject from a script)"
        );
    }

    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y", "Y", "yes", "YES", " y\n", "Yes\r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y es", "oui", "ok"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
