//! `ringi health`: grpc.health.v1 over the same transport as every other call.

use tonic::transport::Channel;

use crate::CliError;

/// Prints the server's serving status; an error unless it is SERVING (so a
/// container health check can run it as is).
pub async fn health(channel: Channel, service: String) -> Result<(), CliError> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.clone(),
        })
        .await?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "service {service:?} is {}",
            status.as_str_name()
        )))
    }
}
