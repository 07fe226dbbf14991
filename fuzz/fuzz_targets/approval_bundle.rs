//! What a signer receives from the coordinator: a protobuf approval bundle,
//! decoded and evaluated against a pinned policy. Any bytes give a verdict
//! or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::sync::LazyLock;

const POLICY: &str = r#"
version = 1

[[departments]]
name = "treasury"
approvers = [{ name = "alice", key = "p256:02cf71aa96c2ca741e5594941515844381a96de23afdf40ec4434528e64bba32a6" }]

[[departments]]
name = "compliance"
approvers = [{ name = "carol", key = "p256:0394495cf9660aee3c97c8cf6525e827dc1637d5476302bacd2d701b87efe34f6a" }]

[keys.k]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
tiers = [{ above = 100000000, require = { treasury = 2, compliance = 1 } }]

[keys.k.destinations]
allow = ["bc1qexample"]
unlisted_require = { treasury = 2 }
"#;

static PINNED: LazyLock<ringi_policy::policy::Policy> = LazyLock::new(|| {
    ringi_policy::policy::Policy::from_bytes(POLICY.as_bytes()).expect("the fuzz policy loads")
});

fuzz_target!(|data: &[u8]| {
    let Some((&now, bytes)) = data.split_first() else {
        return;
    };
    let Ok(bundle) = ringi_proto::approval::v1::ApprovalBundle::decode(bytes) else {
        return;
    };
    let Ok((mut request, approvals)) = ringi_proto::bundle::bundle_from_pb(&bundle) else {
        return;
    };
    // Reach past the policy-hash check half of the time.
    if now & 1 == 0 {
        request.policy_hash = PINNED.hash();
    }
    let now = request.created_at.saturating_add(u64::from(now));
    let _ = ringi_policy::evaluate::evaluate(&PINNED, &request, &approvals, now);
    let _ = request.id();
});
