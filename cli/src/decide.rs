//! `ringi approve` / `ringi reject`: the approver signs a statement about
//! exactly the request the coordinator shows, after checking that view
//! (see [`crate::view`]: it is the request asked for, by its id; checked
//! against its key, a PSBT request's transaction derived here) and the
//! approval validity the coordinator proposes. What the request does — the
//! transaction's payments, change, fee and inputs, or BLIND — is shown
//! before the statement is signed.

use ringi::request_state::State;
use ringi_policy::statement::{Approval, Decision, Statement};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use tonic::transport::Channel;

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::connect::ClientTls;
use crate::requests::examine;
use crate::signers::SignerEndpoint;
use crate::view::{self, Checked, printable};

pub async fn decide(
    channel: Channel,
    id: &str,
    department: &str,
    decision: Decision,
    reason: &str,
    signer: ApproverSigner,
    direct: (&[SignerEndpoint], Option<&ClientTls>),
) -> Result<(), CliError> {
    let examined = examine(channel.clone(), id).await?;
    let view = &examined.view;
    if view.state != State::PendingApproval {
        return Err(CliError::Status {
            code: tonic::Code::FailedPrecondition,
            message: format!(
                "request {id} is {}: already decided or expired {}",
                view.state,
                printable(&view.state_reason)
            ),
        });
    }
    let window = view::approval_window(ringi_policy::clock::now(), view.approval_ttl_secs)?;
    let request = &view.request;
    let statement = Statement::for_request(
        request,
        department,
        decision,
        reason,
        window.issued_at,
        window.expires_at,
    );
    let approver = signer.public_key();
    let signature = signer
        .sign(&statement.signed_bytes(&approver))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    match &examined.checked {
        Checked::Raw => eprintln!(
            "ringi: {} request {id} for {} {} to {} as {} ({})",
            decision.as_str(),
            request.metadata.amount,
            printable(&request.metadata.asset),
            printable(&request.metadata.destination),
            approver.to_text(),
            printable(department)
        ),
        Checked::Blind | Checked::Transaction(_) => {
            eprint!("{}", examined.subject_text());
            eprintln!(
                "ringi: {} request {id} as {} ({})",
                decision.as_str(),
                approver.to_text(),
                printable(department)
            );
        }
    }
    let approval = Approval {
        statement,
        approver,
        signature,
    };
    // A rejection goes to the signers first, directly: in force there
    // whatever the coordinator does with it (see ringi_policy::veto).
    let direct_report = match (decision, direct.0.is_empty()) {
        (Decision::Reject, false) => {
            let answers = crate::freeze::send_rejection(direct.0, direct.1, &approval).await;
            Some(crate::signers::report("rejection", &answers))
        }
        _ => None,
    };
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
