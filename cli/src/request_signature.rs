//! `ringi requests submit --requester-key-file`: the wallet signs the
//! request it made (a `request` statement, `ringi_policy::evaluate`), for
//! keys whose policy sets `signed_requests`. The signers then know who
//! asked from that signature, not from the coordinator's record: an
//! insider who writes a request in a wallet's name cannot sign it.
//!
//! The statement is signed over the request id the coordinator answered
//! with, so the wallet first checks that the request is the one it
//! submitted (every content field, and its own name as requester).

use ringi_policy::statement::{Approval, Decision, Statement};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use tonic::transport::Channel;

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::view::RequestView;

/// Where the request the coordinator recorded differs from what was
/// submitted; `None` if it is the same request. (A requester that is empty
/// in the submission is the caller's certified name: any non-empty name.)
pub fn differs(
    submitted: &pb::SubmitSigningRequestRequest,
    recorded: &RequestView,
) -> Option<String> {
    let r = &recorded.request;
    let mut psbt_recorded = Vec::new();
    if let Some(p) = &r.psbt {
        psbt_recorded = p.clone();
    }
    let amount = r.metadata.amount.to_string();
    let submitted_amount = if submitted.amount.is_empty() {
        "0"
    } else {
        submitted.amount.as_str()
    };
    let fields: [(&str, bool); 8] = [
        ("key_id", r.key_id.as_str() == submitted.key_id),
        ("message", r.message == submitted.message),
        ("psbt", psbt_recorded == submitted.psbt),
        ("asset", r.metadata.asset == submitted.asset),
        ("amount", amount == submitted_amount),
        (
            "destination",
            r.metadata.destination == submitted.destination,
        ),
        ("memo", r.metadata.memo == submitted.memo),
        (
            "requester",
            if submitted.requester.is_empty() {
                !r.requester.is_empty()
            } else {
                r.requester == submitted.requester
            },
        ),
    ];
    fields
        .iter()
        .find(|(_, same)| !same)
        .map(|(field, _)| field.to_string())
}

/// Signs the recorded request as its requester and sends the statement.
pub async fn sign_request(
    channel: Channel,
    submitted: &pb::SubmitSigningRequestRequest,
    recorded: &RequestView,
    signer: &ApproverSigner,
) -> Result<(), CliError> {
    if let Some(field) = differs(submitted, recorded) {
        return Err(CliError::Usage(format!(
            "the coordinator recorded request {} with another {field} than submitted: not signing it",
            recorded.id_hex()
        )));
    }
    let request = &recorded.request;
    let now = ringi_policy::clock::now();
    // Valid as long as the request: it proves who asked for its lifetime.
    let statement =
        Statement::for_request(request, "", Decision::Request, "", now, request.expires_at);
    let key = signer.public_key();
    let signature = signer
        .sign(&statement.signed_bytes(&key))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let approval = Approval {
        statement,
        approver: key,
        signature,
    };
    RequestServiceClient::new(channel)
        .decide(pb::DecideRequest {
            approval: Some(ringi_proto::bundle::approval_to_pb(&approval)),
        })
        .await?;
    eprintln!(
        "ringi: request signed as its requester ({})",
        crate::view::printable(&request.requester)
    );
    Ok(())
}
