//! `ringi approve` / `ringi reject`: the approver signs a statement about
//! exactly the request the coordinator shows.

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use tonic::transport::Channel;

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::requests::{fetch, parse_id};

/// `ringi approve` / `ringi reject`: signs a statement about exactly what
/// the coordinator shows, after recomputing the request id from it.
pub async fn decide(
    channel: Channel,
    id: &str,
    department: &str,
    decision: ringi_policy::statement::Decision,
    reason: &str,
    signer: ApproverSigner,
) -> Result<(), CliError> {
    let expected = parse_id(id)?;
    let view = fetch(channel.clone(), id).await?;
    let request = ringi_proto::bundle::request_from_pb(&view.request.clone().unwrap_or_default())
        .map_err(|e| {
        CliError::Usage(format!("the coordinator returned a malformed request: {e}"))
    })?;
    if request.id() != expected {
        return Err(CliError::Usage(format!(
            "the coordinator's copy of request {id} does not hash to that id; refusing to sign it"
        )));
    }
    if view.state != "PENDING_APPROVAL" {
        return Err(CliError::Status {
            code: tonic::Code::FailedPrecondition,
            message: format!(
                "request {id} is {}: already decided or expired {}",
                view.state, view.state_reason
            ),
        });
    }
    let now = ringi_policy::clock::now();
    let statement = ringi_policy::statement::Statement::for_request(
        &request,
        department,
        decision,
        reason,
        now,
        now + view.approval_ttl_secs,
    );
    let approver = signer.public_key();
    let signature = signer
        .sign(&statement.signed_bytes(&approver))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    eprintln!(
        "ringi: {} request {id} for {} {} to {} as {} ({})",
        decision.as_str(),
        request.metadata.amount,
        request.metadata.asset,
        request.metadata.destination,
        approver.to_text(),
        department
    );
    let approval = ringi_policy::statement::Approval {
        statement,
        approver,
        signature,
    };
    let view = RequestServiceClient::new(channel)
        .decide(pb::DecideRequest {
            approval: Some(ringi_proto::bundle::approval_to_pb(&approval)),
        })
        .await?
        .into_inner();
    let needed: Vec<String> = view
        .still_needed
        .iter()
        .map(|n| format!("{} {} of {}", n.department, n.have, n.need))
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
    Ok(())
}
