//! The secrets the harnesses hold on the fuzzer's behalf: test approver
//! keys (fixed scalars, so a saved crash replays against the same keys), the
//! policy that names them, and a test CA for DKG attestations.
//!
//! Test material only: every key here is public knowledge.

use std::sync::LazyLock;

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::policy::Policy;
use ringi_policy::statement::Statement;

/// (name, department, secret scalar byte) of each test approver.
pub const APPROVERS: [(&str, &str, u8); 3] = [
    ("alice", "treasury", 1),
    ("bob", "treasury", 2),
    ("carol", "compliance", 3),
];

/// The key id the fuzz policy has rules for.
pub const KEY_ID: &str = "k";
/// The destination on the key's allowlist.
pub const ALLOWED_DESTINATION: &str = "bc1qexample";
/// Amounts above this need the upper tier.
pub const TIER_ABOVE: u128 = 100_000_000;

/// Test approver `index` (0..3): its signing key and public key.
pub fn approver(index: usize) -> (SigningKey, ApproverKey) {
    let (_, _, scalar) = APPROVERS[index % APPROVERS.len()];
    let sk = SigningKey::from_slice(&[scalar; 32]).expect("a fixed valid scalar");
    let public = ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
        .expect("a valid P-256 point");
    (sk, public)
}

/// Signs `statement` as test approver `index`.
pub fn sign(index: usize, statement: &Statement) -> (ApproverKey, Vec<u8>) {
    let (sk, public) = approver(index);
    let sig: p256::ecdsa::Signature = sk.sign(&statement.signed_bytes(&public));
    (public, sig.to_bytes().to_vec())
}

/// The fuzz policy's text: two departments, a base rule, an upper tier, an
/// allowlist whose unlisted destinations need a second treasury approver,
/// and window caps.
pub fn policy_text() -> String {
    let key = |i: usize| approver(i).1.to_text();
    format!(
        r#"version = 1

[[departments]]
name = "treasury"
approvers = [{{ name = "alice", key = "{a}" }}, {{ name = "bob", key = "{b}" }}]

[[departments]]
name = "compliance"
approvers = [{{ name = "carol", key = "{c}" }}]

[keys.{KEY_ID}]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = {{ treasury = 1, compliance = 1 }}
tiers = [{{ above = {TIER_ABOVE}, require = {{ treasury = 2, compliance = 1 }} }}]

[keys.{KEY_ID}.limits]
max_amount_per_request = 1000000000
window_secs = 86400
max_amount_per_window = 5000000000
max_requests_per_window = 100

[keys.{KEY_ID}.destinations]
allowed = ["{ALLOWED_DESTINATION}"]
unlisted_require = {{ treasury = 2 }}
"#,
        a = key(0),
        b = key(1),
        c = key(2),
    )
}

/// The pinned policy every harness evaluates against.
pub static POLICY: LazyLock<Policy> =
    LazyLock::new(|| Policy::from_bytes(policy_text().as_bytes()).expect("the fuzz policy loads"));
