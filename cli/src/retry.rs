//! `ringi requests retry ID`: an administrator sends a FAILED request back
//! to be signed (RetrySigningRequest), once the cause of the failure is
//! fixed. Prints the request as it then stands, like `requests show`.

use tonic::transport::Channel;

use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;

use crate::CliError;
use crate::Output;

pub async fn retry(channel: Channel, id: &str, output: Output) -> Result<(), CliError> {
    let mut client = RequestServiceClient::new(channel.clone());
    let view = client
        .retry_signing_request(pb::RetrySigningRequestRequest {
            request_id: id.to_string(),
        })
        .await?
        .into_inner();
    eprintln!("request {id} is {} again; signing started", view.state);
    crate::requests::show(channel, id, output).await
}
