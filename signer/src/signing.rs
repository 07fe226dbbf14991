//! What round 1 ([`crate::round1`]) and round 2 ([`crate::round2`]) share:
//! their dependencies ([`SigningContext`]) and their one error type
//! ([`SignError`]). Plain Rust: no gRPC, no protobuf; the gRPC edge
//! (`crate::service`) maps a [`SignError`] to a status in `crate::error`.

use std::path::PathBuf;
use std::sync::Arc;

use ringi_frost::{KeyKind, Suite};
use ringi_policy::key_id::KeyId;
use ringi_policy::subject::KeyFacts;
use ringi_policy::volumes::VolumeError;

use crate::authorize::{Approved, ApprovedBundles, AuthorizationError};
use crate::holds::HoldStore;
use crate::node_audit::{AuditSink, AuditUnavailable};
use crate::spending::{LedgerError, SpendingLedger};
use crate::vault::{ShareVault, VaultError};
use ringi_policy::policy_store::PolicyStore;

/// Everything a signing round depends on.
#[derive(Clone)]
pub struct SigningContext<S: Suite> {
    /// The shares (and round-1 nonces) of suite `S`.
    pub vault: Arc<dyn ShareVault<S>>,
    /// The approval policy every signing request must satisfy: the pinned
    /// one, rolled forward by admin-signed updates (`crate::policy_store`).
    pub policies: Arc<PolicyStore>,
    /// Bundles already found approved (round 1), so round 2 is cheaper.
    pub approved: Arc<ApprovedBundles>,
    /// What this node has signed, for its own check of the spending caps.
    pub ledger: Arc<SpendingLedger>,
    /// Operators' daily-volume figures for percentage caps, if configured.
    pub daily_volume_file: Option<PathBuf>,
    /// The node's audit trail.
    pub audit: Arc<dyn AuditSink>,
    /// Vetoes, freezes and retirements sent to this node directly: an
    /// approved request they hold is refused in both rounds (a retired key
    /// in preprocessing too).
    pub holds: Arc<HoldStore>,
}

impl<S: Suite> SigningContext<S> {
    /// What the policy's rules must know about `key_id` beyond the policy:
    /// its kind (this context's suite) and, for a Taproot key, its internal
    /// and output keys, from the group key stored with this node's share.
    pub fn key_facts(&self, key_id: &KeyId) -> Result<KeyFacts, VaultError> {
        match S::KIND {
            KeyKind::FrostSecp256k1 => Ok(KeyFacts::FrostSecp256k1),
            KeyKind::BitcoinTaproot => {
                let share = self
                    .vault
                    .shares()
                    .into_iter()
                    .find(|s| s.key_id == key_id.as_str())
                    .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
                let (internal_key, output_key) =
                    ringi_frost::taproot::keys_of_group(&share.group_key).map_err(|e| {
                        VaultError::Corrupt {
                            key_id: key_id.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                Ok(KeyFacts::BitcoinTaproot {
                    internal_key,
                    output_key,
                })
            }
        }
    }

    /// The first check of every round and of preprocessing: `key_id` is
    /// not retired ([`crate::holds::HoldStore::retired`]). Before anything
    /// else, the share's presence included, so a key whose shares were
    /// destroyed is still refused as retired, not as unknown.
    pub fn not_retired(&self, key_id: &KeyId) -> Result<(), AuthorizationError> {
        match self.holds.retired(key_id) {
            Some(hold) => Err(AuthorizationError::Held(Box::new(hold))),
            None => Ok(()),
        }
    }

    /// A context with an empty remembered-approvals cache.
    pub fn new(
        vault: Arc<dyn ShareVault<S>>,
        policies: Arc<PolicyStore>,
        ledger: Arc<SpendingLedger>,
        daily_volume_file: Option<PathBuf>,
        audit: Arc<dyn AuditSink>,
        holds: Arc<HoldStore>,
    ) -> Self {
        SigningContext {
            vault,
            policies,
            approved: Arc::new(ApprovedBundles::default()),
            ledger,
            daily_volume_file,
            audit,
            holds,
        }
    }

    /// The rounds' first check: the bundle authorises signing `key_id`
    /// under the pinned policy ([`ApprovedBundles::authorize`]), nothing
    /// this node holds stops the request (a direct veto, a freeze), and the
    /// policy's time rules let it be signed now.
    /// The holds are read on every call, never remembered with the bundle.
    pub fn authorize(
        &self,
        key_id: &KeyId,
        facts: &KeyFacts,
        bundle: &crate::authorize::PresentedBundle,
        now: u64,
    ) -> Result<Approved, AuthorizationError> {
        // The policy the request is judged by: the one in force, or the one
        // it was made under where the policy in force keeps such requests.
        let policy = match bundle {
            crate::authorize::PresentedBundle::Decoded(b) => {
                self.policies.for_request(&b.request, now)
            }
            _ => self.policies.current(now),
        };
        let approved = self
            .approved
            .authorize(&policy, key_id, facts, bundle, now)?;
        if let Some(hold) = self.holds.hold_on_request(&approved.request) {
            return Err(AuthorizationError::Held(Box::new(hold)));
        }
        // The time rules, by this node's clock (never remembered: time moves).
        if let crate::authorize::PresentedBundle::Decoded(b) = bundle {
            ringi_policy::time_rules::check_request(
                &policy,
                &approved.request,
                &approved.subject,
                &b.approvals,
                now,
            )
            .map_err(AuthorizationError::NotYet)?;
        }
        Ok(approved)
    }
}

/// Why a signing round refused. Secret-free: no variant holds share,
/// nonce or PIN material.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The request is not approved under the pinned policy, signs another
    /// message, or exceeds a spending cap.
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
    #[error("signing_package is malformed: {0}")]
    MalformedSigningPackage(String),
    /// The vault's refusal: unknown key, not a participant, nonces used
    /// already, the token, ...
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The spending ledger could not be read or written (not a cap).
    #[error("spending ledger: {0}")]
    LedgerStore(String),
    /// The audit entry could not be written, so nothing is released.
    #[error(transparent)]
    AuditUnavailable(#[from] AuditUnavailable),
    /// The daily-volume file that percentage caps refer to is unreadable.
    #[error(transparent)]
    DailyVolume(#[from] VolumeError),
    /// This node released a share for the input already, under another
    /// signing package (or is signing it right now), or its release log
    /// failed.
    #[error(transparent)]
    Release(#[from] crate::releases::ReleaseError),
    /// A preprocessing batch of no pairs, or of more than
    /// [`crate::preprocess::MAX_BATCH`].
    #[error("count must be 1..={max}, not {0}", max = crate::preprocess::MAX_BATCH)]
    BatchSize(u32),
    /// `excluded_identifiers` names something other than FROST identifiers
    /// outside the signing package.
    #[error("excluded_identifiers: {0}")]
    BadExclusion(String),
}

impl From<LedgerError> for SignError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Cap(cap) => AuthorizationError::CapExceeded(cap).into(),
            LedgerError::Store(reason) => SignError::LedgerStore(reason),
            LedgerError::Release(e) => SignError::Release(e),
        }
    }
}

/// A 2-of-3 key dealt into three memory vaults, each node with its own
/// ledger (SQLite in a temp dir) and memory audit, under one policy: the
/// rounds' unit tests run on it, with no network and no token.
#[cfg(test)]
pub(crate) mod testkit {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use frost_core::SigningPackage;
    use frost_core::keys::PublicKeyPackage;
    use frost_core::round1::SigningCommitments;
    use ringi_frost::taproot::Secp256k1Tr;
    use ringi_frost::{Secp256k1, Suite};
    use ringi_policy::key_id::KeyId;
    use ringi_policy::request::SigningRequest;
    use ringi_policy::statement::{Approval, Decision};

    use super::SigningContext;
    use crate::authorize::PresentedBundle;
    use crate::spending::SpendingLedger;
    use crate::test_doubles::{Approvers, MemoryAudit, MemoryVault};

    pub type S = Secp256k1;

    /// Now, for the tests that choose the time.
    pub const NOW: u64 = 1_800_000_000;

    /// Key `k`: treasury 1 and compliance 1, at most 2500 per 600 s.
    /// Key `cold`: in the policy, on no node.
    pub const KEYS: &str = r#"[keys.k]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }

[keys.k.limits]
window_secs = 600
max_amount_per_window = 2500

[keys.cold]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
"#;

    /// Key `k` as a bitcoin-taproot key on regtest: at most 100,000 sat a
    /// request, fees at most 5,000 sat and 50 sat/vB, payments only to
    /// [`PAYEE`] and [`PAYEE_2`].
    pub const TAPROOT_KEYS: &str = r#"[keys.k]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
network = "regtest"
fees = { max_sats = 5000, max_sat_per_vbyte = 50 }

[keys.k.limits]
max_amount_per_request = 100000

[keys.k.destinations]
allowed = ["bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"]
"#;

    /// Allowlisted payees of [`TAPROOT_KEYS`] (a P2TR and a P2WPKH address).
    pub const PAYEE: &str = "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6";
    pub const PAYEE_2: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

    pub struct Node<S: Suite = Secp256k1> {
        pub ctx: SigningContext<S>,
        pub vault: Arc<MemoryVault<S>>,
        pub audit: Arc<MemoryAudit>,
        _dir: tempfile::TempDir,
    }

    pub struct Cluster<S: Suite = Secp256k1> {
        /// The time requests and approvals are made relative to.
        pub now: u64,
        pub approvers: Approvers,
        pub nodes: Vec<Node<S>>,
        pub public: PublicKeyPackage<S>,
    }

    pub fn k() -> KeyId {
        KeyId::parse("k").unwrap()
    }

    impl Cluster {
        /// At [`NOW`].
        pub fn new() -> Self {
            Self::build(NOW, None, KEYS)
        }

        /// At the wall clock's now (for calls that read it).
        pub fn now() -> Self {
            Self::build(ringi_policy::clock::now(), None, KEYS)
        }

        pub fn with_volume_file(file: Option<std::path::PathBuf>) -> Self {
            Self::build(NOW, file, KEYS)
        }
    }

    impl Cluster<Secp256k1Tr> {
        /// Key `k` as a bitcoin-taproot key under [`TAPROOT_KEYS`], at [`NOW`].
        pub fn taproot() -> Self {
            Self::build(NOW, None, TAPROOT_KEYS)
        }

        /// The key's Taproot keys, on regtest.
        pub fn own_key(&self) -> ringi_psbt::OwnKey {
            let group = self.public.verifying_key().serialize().unwrap();
            let (internal_key, output_key) = ringi_frost::taproot::keys_of_group(&group).unwrap();
            ringi_psbt::OwnKey {
                internal_key,
                output_key,
                network: ringi_psbt::Network::Regtest,
            }
        }

        /// A PSBT request for key `k`, made a minute ago, valid an hour.
        pub fn psbt_request(&self, psbt: Vec<u8>) -> SigningRequest {
            let mut request = self.request(&k(), b"", 0);
            request.metadata = ringi_policy::request::Metadata::default();
            request.psbt = Some(psbt);
            request
        }
    }

    impl<S: Suite> Cluster<S> {
        fn build(now: u64, file: Option<std::path::PathBuf>, keys: &str) -> Self {
            let approvers = Approvers::new(keys).unwrap();
            let policy = Arc::new(ringi_policy::policy_store::PolicyStore::fixed(
                approvers.policy.clone(),
            ));
            let (vaults, public) = MemoryVault::<S>::dealer(&k(), 2, 3).unwrap();
            let nodes = vaults
                .into_iter()
                .map(|vault| {
                    let dir = tempfile::tempdir().unwrap();
                    let ledger =
                        Arc::new(SpendingLedger::open(&dir.path().join("ledger.sqlite3")).unwrap());
                    let audit = Arc::new(MemoryAudit::new());
                    let vault = Arc::new(vault);
                    Node {
                        ctx: SigningContext::new(
                            vault.clone(),
                            policy.clone(),
                            ledger,
                            file.clone(),
                            audit.clone(),
                            Arc::new(
                                crate::holds::HoldStore::open(&dir.path().join("holds.sqlite3"))
                                    .unwrap(),
                            ),
                        ),
                        vault,
                        audit,
                        _dir: dir,
                    }
                })
                .collect();
            Cluster {
                now,
                approvers,
                nodes,
                public,
            }
        }

        /// A request for `key_id` of `amount`, made a minute ago, valid an hour.
        pub fn request(&self, key_id: &KeyId, message: &[u8], amount: u128) -> SigningRequest {
            self.approvers
                .request(key_id, message, amount, self.now - 60, self.now + 3540)
        }

        /// `who`'s decision on `request`, valid from a minute ago for five.
        pub fn decision(
            &self,
            request: &SigningRequest,
            who: &str,
            department: &str,
            decision: Decision,
        ) -> Approval {
            self.approvers.approval(
                request,
                who,
                department,
                decision,
                "",
                self.now - 60,
                self.now + 240,
            )
        }

        /// alice (treasury) and carol (compliance) approve `request`.
        pub fn approve(&self, request: &SigningRequest) -> PresentedBundle {
            Approvers::bundle(
                request,
                vec![
                    self.decision(request, "alice", "treasury", Decision::Approve),
                    self.decision(request, "carol", "compliance", Decision::Approve),
                ],
            )
        }

        /// An approved request for key `k` and its bundle.
        pub fn approved(&self, message: &[u8], amount: u128) -> (SigningRequest, PresentedBundle) {
            let request = self.request(&k(), message, amount);
            let bundle = self.approve(&request);
            (request, bundle)
        }

        /// Round 1 on the nodes at `indexes`; the signing package over
        /// their commitments and `message`.
        pub fn package(
            &self,
            indexes: &[usize],
            bundle: &PresentedBundle,
            message: &[u8],
        ) -> SigningPackage<S> {
            self.package_for(indexes, bundle, message).unwrap()
        }

        /// Round 1 on the nodes at `indexes`, or the first refusal.
        pub fn package_for(
            &self,
            indexes: &[usize],
            bundle: &PresentedBundle,
            message: &[u8],
        ) -> Result<SigningPackage<S>, super::SignError> {
            let commitments: BTreeMap<_, SigningCommitments<S>> = indexes
                .iter()
                .map(|i| {
                    let out = crate::round1::commit(&self.nodes[*i].ctx, &k(), bundle, self.now)?;
                    Ok((
                        ringi_frost::identifier::<S>(out.identifier).unwrap(),
                        out.commitments,
                    ))
                })
                .collect::<Result<_, super::SignError>>()?;
            Ok(SigningPackage::new(commitments, message))
        }
    }
}

#[cfg(test)]
mod retired_tests {
    use super::testkit::{Cluster, NOW, k};
    use crate::holds::retire_for_test;
    use tonic::Code;

    /// From the retirement on, the key signs nothing: round 1, round 2 (of
    /// a package committed before) and preprocessing refuse with
    /// FAILED_PRECONDITION naming the retirement, before the vault.
    #[test]
    fn a_retired_key_signs_nothing() {
        let cluster = Cluster::new();
        let (_, bundle) = cluster.approved(b"pay 10", 10);
        let package = cluster.package(&[0, 1], &bundle, b"pay 10");
        let bytes = package.serialize().unwrap();
        for node in &cluster.nodes {
            retire_for_test(&node.ctx.holds, &k(), NOW + 3600);
        }
        let node = &cluster.nodes[0];
        let nonces = node.vault.nonces_waiting();
        let refusals = [
            crate::round2::sign(&node.ctx, &k(), &bundle, &bytes, &[], NOW).map(|_| ()),
            crate::round1::commit(&node.ctx, &k(), &bundle, NOW).map(|_| ()),
            crate::preprocess::preprocess(&node.ctx, &k(), 4).map(|_| ()),
        ];
        for refusal in refusals {
            let status = tonic::Status::from(refusal.unwrap_err());
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            assert!(
                status.message().contains("key k is retired"),
                "{}",
                status.message()
            );
        }
        assert_eq!(
            node.vault.nonces_waiting(),
            nonces,
            "no nonce drawn or used"
        );
        assert!(
            !node
                .audit
                .events()
                .iter()
                .any(|e| e == "share_released" || e == "commitments_preprocessed")
        );
    }
}
