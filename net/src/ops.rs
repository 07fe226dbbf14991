//! The operational gRPC services every ringi server exposes beside its own:
//! `grpc.health.v1.Health` (each of the server's services reports SERVING
//! once it is ready, as does the empty name for the server as a whole) and
//! `grpc.reflection.v1.ServerReflection` over ringi's proto files, so
//! `grpcurl`-style tools can list, describe and call the API.
//!
//! The [`HealthReporter`] comes back with them: a server turns a status
//! NOT_SERVING when what it depends on is gone (a signer's token, a key's
//! signers) and back when it returns.

pub use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
pub use tonic_health::server::HealthReporter;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};

/// Health (reporting every name in `services` and "" as SERVING, with its
/// reporter) and reflection services.
pub async fn health_and_reflection(
    services: &[&str],
) -> Result<
    (
        HealthReporter,
        HealthServer<impl Health>,
        ServerReflectionServer<impl ServerReflection>,
    ),
    tonic_reflection::server::Error,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in services.iter().chain(&[""]) {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ringi_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    Ok((reporter, health, reflection))
}
