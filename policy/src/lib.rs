//! What the coordinator and every signer must agree on before a signature
//! share is released:
//!
//! - [`policy`]: departments, approvers, per-key quorums and amount tiers,
//!   validated at load and identified by the file's SHA-256;
//! - [`request`]: a signing request and its id (a hash over every field);
//! - [`statement`]: what an approver signs to approve or reject;
//! - [`approver_key`]: approver keys (ECDSA P-256) and signature checks,
//!   and the count of checks made ([`approver_key::verifications`]);
//! - [`verified_signatures`]: the bounded memory of approval signatures
//!   already verified, so each costs one P-256 verification per process;
//! - [`subject`]: what a request moves — declared, derived from its PSBT
//!   (`ringi_psbt`), or blind — which the tiers, caps and allowlist judge;
//! - [`limits`]: spending caps, checked by coordinator and signers alike;
//! - [`evaluate`]: the decision — approved, pending, rejected, or which rule
//!   an approval breaks;
//! - [`veto`]: a rejection sent to the signers directly, so a coordinator
//!   cannot drop it;
//! - [`freeze`]: one officer freezes a key (or all), a quorum lifts it;
//! - [`holds`]: the vetoes, freezes and retirements a signer keeps, and
//!   what they stop;
//! - [`key_order`]: key lifecycle orders (retire, repair) under the
//!   admins' quorum; [`retirement`]: a key retired for good;
//! - [`policy_update`]: a new policy version under the admins' quorum,
//!   with a delay for loosenings; no rollback, no fork;
//! - `policy_store` (feature `sqlite`): the policy a node enforces, rolled
//!   forward by updates and kept durably;
//! - [`time_rules`]: signing hours and delays after full approval;
//! - [`transport_key`]: the curves of the signers' DKG transport keys and
//!   their wire forms;
//! - [`audit`]: the hash-chained audit log both sides append to, and its
//!   offline verification;
//! - [`audit_repair`]: setting a broken log's tail aside and recording the
//!   gap, so its node can start again;
//! - [`group_commit`]: many writers sharing one durable commit (the
//!   coordinator's store and the signers' ledgers);
//! - [`encoding`]: the canonical encoding the hashes and signatures cover;
//! - [`key_id`]: the checked key id both sides name keys by;
//! - [`clock`]: the one wall clock both binaries read (the rules here never
//!   call it: they take `now`).
//!
//! Everything here but the audit log's file handling is pure: no I/O, no
//! clock (callers pass `now`), so the coordinator and the signers run
//! exactly the same checks. The one state kept across calls, the verified
//! signatures, changes how often a signature is verified, never a verdict.

pub mod approver_key;
pub mod audit;
pub mod audit_repair;
pub mod clock;
pub mod encoding;
pub mod evaluate;
pub mod freeze;
pub mod group_commit;
pub mod holds;
pub mod key_id;
pub mod key_order;
pub mod limits;
pub mod policy;
#[cfg(feature = "sqlite")]
pub mod policy_store;
pub mod policy_update;
pub mod request;
pub mod retirement;
pub mod running_totals;
pub mod statement;
pub mod subject;
pub mod time_rules;
pub mod transport_key;
pub mod verified_signatures;
pub mod veto;
pub mod volumes;
