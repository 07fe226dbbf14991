//! ringi's gRPC contracts. The `.proto` files beside this crate are the
//! source of truth and document every message; this crate compiles them and
//! converts approval bundles to and from the `ringi-policy` types
//! ([`bundle`]). How the messages travel (TLS, serve loop, health) is
//! `ringi-net`'s.

/// `ringi.approval.v1`: signing requests and signed approvals, shared by the
/// signer and coordinator APIs.
pub mod approval {
    pub mod v1 {
        tonic::include_proto!("ringi.approval.v1");
    }
}

/// `ringi.signer.v1`: the API of a signer node, called by the coordinator
/// (`Signer`), and its governance API, called by approvers and officers
/// directly (`Governance`).
pub mod signer {
    pub mod v1 {
        tonic::include_proto!("ringi.signer.v1");
    }
}

/// `ringi.coordinator.v1`: the API of the coordinator, called by wallet
/// services and the `ringi` CLI.
pub mod coordinator {
    pub mod v1 {
        // `CreateKeyEvent.created` carries a whole `PublicKey` (with its
        // retirement fields) beside small progress events: a handful of
        // events per key operation, not worth boxing the generated API.
        #![allow(clippy::large_enum_variant)]
        tonic::include_proto!("ringi.coordinator.v1");
    }
}

pub mod bundle;
pub mod freeze;
pub mod key_order;
pub mod policy_update;
/// Every ringi proto file, encoded as a `FileDescriptorSet`, for gRPC server
/// reflection (so `grpcurl` and similar tools can list and call the API).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ringi_descriptor.bin"));
