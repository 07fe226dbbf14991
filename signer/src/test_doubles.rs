//! Test doubles for the signing rounds, so that round 1 and round 2 run
//! without a network or a token: in unit tests, and (with the cargo feature
//! `test-doubles`) in fuzz targets.
//!
//! **Never for production.** [`MemoryVault`] holds plaintext key shares in
//! process memory, with none of the token's protection; [`MemoryAudit`]
//! keeps its entries in memory, unsigned and unchained. [`Approvers`] makes
//! a policy and approvals with throwaway keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use frost_core::SigningPackage;
use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use p256::ecdsa::signature::Signer;
use rand_core::OsRng;
use ringi_frost::Suite;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::audit::AuditError;
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::{Policy, PolicyError};
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_policy::statement::{Approval, Decision, Statement};

use crate::authorize::{ApprovalBundle, PresentedBundle};
use crate::node_audit::AuditSink;
use crate::nonces::VaultNonces;
use crate::vault::{
    Activation, ShareInfo, ShareVault, VaultError, identifier, public_facts, sign_with_nonces,
};

/// A **test double** of [`ShareVault`]: plaintext shares in memory, nonces
/// in a [`NonceStore`] like the token vault's. It computes exactly what
/// [`crate::vault::TokenVault`] computes, without the token's protection:
/// never for production.
pub struct MemoryVault<S: Suite> {
    shares: RwLock<BTreeMap<String, Held<S>>>,
    nonces: VaultNonces<S>,
}

/// One key's shares: the one in use and a refresh's waiting one.
struct Held<S: Suite> {
    info: ShareInfo,
    active: KeyPackage<S>,
    pending: Option<(ShareInfo, KeyPackage<S>)>,
}

impl<S: Suite> Default for MemoryVault<S> {
    fn default() -> Self {
        MemoryVault {
            shares: RwLock::new(BTreeMap::new()),
            nonces: VaultNonces::default(),
        }
    }
}

impl<S: Suite> MemoryVault<S> {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `min_signers`-of-`max_signers` key for `key_id` from a trusted
    /// dealer (`frost_core::keys::generate_with_dealer`): one vault per
    /// participant, in participant-number order (1..=max_signers), each
    /// holding its own share; and the public key package.
    pub fn dealer(
        key_id: &KeyId,
        min_signers: u16,
        max_signers: u16,
    ) -> Result<(Vec<Self>, PublicKeyPackage<S>), VaultError> {
        let (shares, public) = frost_core::keys::generate_with_dealer::<S, _>(
            max_signers,
            min_signers,
            IdentifierList::Default,
            &mut OsRng,
        )
        .map_err(VaultError::frost)?;
        let mut vaults = Vec::with_capacity(shares.len());
        for (id, share) in shares {
            let number = S::participant_number(&id).ok_or_else(|| {
                VaultError::Frost("the dealer made an identifier that is no number".into())
            })?;
            let key = KeyPackage::try_from(share).map_err(VaultError::frost)?;
            let vault = MemoryVault::new();
            vault.store(key_id, number, &key, &public)?;
            vaults.push(vault);
        }
        Ok((vaults, public))
    }
}

impl<S: Suite> ShareVault<S> for MemoryVault<S> {
    fn store(
        &self,
        key_id: &KeyId,
        id: u16,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<ShareInfo, VaultError> {
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        if shares.contains_key(key_id.as_str()) {
            return Err(VaultError::KeyExists(key_id.to_string()));
        }
        if *share.identifier() != identifier::<S>(id)? {
            return Err(VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "share does not match the identifier it is stored under".into(),
            });
        }
        let (group_key, public_key_package) = public_facts(key_id, share, public)?;
        let info = ShareInfo {
            key_id: key_id.to_string(),
            identifier: id,
            group_key,
            generation: 0,
            pending_generation: None,
            public_key_package,
            pending_public_key_package: Vec::new(),
        };
        shares.insert(
            key_id.to_string(),
            Held {
                info: info.clone(),
                active: share.clone(),
                pending: None,
            },
        );
        Ok(info)
    }

    fn store_next(
        &self,
        key_id: &KeyId,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<ShareInfo, VaultError> {
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        let held = shares
            .get_mut(key_id.as_str())
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        if let Some((p, _)) = &held.pending {
            return Err(VaultError::RefreshPending {
                key_id: key_id.to_string(),
                pending: p.generation,
            });
        }
        let (group_key, public_key_package) = public_facts(key_id, share, public)?;
        if group_key != held.info.group_key || share.identifier() != held.active.identifier() {
            return Err(VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "the refreshed share is for another key or identifier".into(),
            });
        }
        let info = ShareInfo {
            generation: held.info.generation + 1,
            public_key_package,
            ..held.info.clone()
        };
        held.info.pending_generation = Some(info.generation);
        held.info.pending_public_key_package = info.public_key_package.clone();
        held.pending = Some((info, share.clone()));
        Ok(held.info.clone())
    }

    fn activate(&self, key_id: &KeyId, generation: u32) -> Result<Activation, VaultError> {
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        let held = shares
            .get_mut(key_id.as_str())
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        if held.info.generation == generation {
            return Ok(Activation::AlreadyActive);
        }
        match held.pending.take() {
            Some((info, share)) if info.generation == generation => {
                let retired = held.info.generation;
                held.info = ShareInfo {
                    pending_generation: None,
                    pending_public_key_package: Vec::new(),
                    ..info
                };
                held.active = share;
                Ok(Activation::Activated { retired })
            }
            other => {
                let pending = other.as_ref().map(|(i, _)| i.generation);
                held.pending = other;
                Err(VaultError::NoSuchGeneration {
                    key_id: key_id.to_string(),
                    asked: generation,
                    active: held.info.generation,
                    pending,
                })
            }
        }
    }

    fn discard(&self, key_id: &KeyId, generation: u32) -> Result<bool, VaultError> {
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        let held = shares
            .get_mut(key_id.as_str())
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        if held.info.generation == generation {
            return Err(VaultError::DiscardInUse {
                key_id: key_id.to_string(),
                generation,
            });
        }
        if held.pending.as_ref().map(|(i, _)| i.generation) == Some(generation) {
            held.pending = None;
            held.info.pending_generation = None;
            held.info.pending_public_key_package.clear();
            return Ok(true);
        }
        Ok(false)
    }

    fn destroy(&self, key_id: &KeyId) -> Result<Vec<u32>, VaultError> {
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        self.nonces.reserve.forget(key_id);
        Ok(match shares.remove(key_id.as_str()) {
            None => Vec::new(),
            Some(held) => held
                .pending
                .iter()
                .map(|(i, _)| i.generation)
                .chain([held.info.generation])
                .collect(),
        })
    }

    fn unseal_share(&self, key_id: &KeyId) -> Result<KeyPackage<S>, VaultError> {
        self.share(key_id).map(|s| s.1)
    }

    fn commit(&self, key_id: &KeyId) -> Result<(u16, SigningCommitments<S>), VaultError> {
        let (id, share) = self.share(key_id)?;
        let commitments = self.nonces.issue(key_id, |n| {
            Ok::<_, VaultError>(crate::nonces::draw(share.signing_share(), n, &mut OsRng))
        })?;
        Ok((id, commitments))
    }

    fn preprocess(
        &self,
        key_id: &KeyId,
        count: usize,
    ) -> Result<(u16, Vec<SigningCommitments<S>>), VaultError> {
        let (id, share) = self.share(key_id)?;
        let commitments = self.nonces.preprocessed.commit_batch(
            key_id,
            share.signing_share(),
            count,
            &mut OsRng,
        )?;
        Ok((id, commitments))
    }

    fn sign_each(
        &self,
        key_id: &KeyId,
        packages: &[&SigningPackage<S>],
    ) -> Vec<Result<SignatureShare<S>, VaultError>> {
        match self.share(key_id) {
            Ok((id, _)) => sign_with_nonces(&self.nonces, key_id, id, packages, || {
                self.share(key_id).map(|s| s.1)
            }),
            Err(_) => crate::vault::unknown_key_each(key_id, packages.len()),
        }
    }

    fn shares(&self) -> Vec<ShareInfo> {
        self.shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|held| held.info.clone())
            .collect()
    }

    fn contains(&self, key_id: &str) -> bool {
        self.shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key_id)
    }
}

impl<S: Suite> MemoryVault<S> {
    /// Round-1 nonce pairs waiting for their round 2.
    pub fn nonces_waiting(&self) -> usize {
        self.nonces.len()
    }

    fn share(&self, key_id: &KeyId) -> Result<(u16, KeyPackage<S>), VaultError> {
        self.shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id.as_str())
            .map(|held| (held.info.identifier, held.active.clone()))
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))
    }
}

/// One entry a [`MemoryAudit`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub event: String,
    pub fields: BTreeMap<String, String>,
    /// Written through [`AuditSink::record_durable`] (synced before its
    /// caller acts), not [`AuditSink::record`].
    pub durable: bool,
}

/// A **test double** of [`AuditSink`]: entries in memory, unsigned and
/// unchained; can be told to fail every write. Never for production.
#[derive(Default)]
pub struct MemoryAudit {
    entries: Mutex<Vec<AuditEntry>>,
    failing: AtomicBool,
}

impl MemoryAudit {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, every write fails (`true`) or succeeds (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The entries written so far, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The events written so far, oldest first.
    pub fn events(&self) -> Vec<String> {
        self.entries().into_iter().map(|e| e.event).collect()
    }
}

impl MemoryAudit {
    fn push(
        &self,
        event: &str,
        fields: &[(&str, String)],
        durable: bool,
    ) -> Result<(), AuditError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuditError::Io {
                path: PathBuf::from("memory"),
                reason: "the test double was told to fail".into(),
            });
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(AuditEntry {
                event: event.to_string(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                durable,
            });
        Ok(())
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        self.push(event, fields, false)
    }

    fn record_durable(&self, event: &str, fields: &[(&str, String)]) -> Result<(), AuditError> {
        self.push(event, fields, true)
    }
}

/// Approvers with throwaway P-256 keys and a policy naming them: department
/// `treasury` (alice, bob) and `compliance` (carol, dave). `mallory` has a
/// key but is not in the policy's roster.
pub struct Approvers {
    keys: Vec<(String, p256::ecdsa::SigningKey)>,
    pub policy: Policy,
}

impl Approvers {
    /// The policy is the two departments followed by `keys_section` (the
    /// `[keys.*]` tables).
    pub fn new(keys_section: &str) -> Result<Self, PolicyError> {
        let keys: Vec<(String, p256::ecdsa::SigningKey)> =
            ["alice", "bob", "carol", "dave", "mallory"]
                .into_iter()
                .map(|n| (n.to_string(), p256::ecdsa::SigningKey::random(&mut OsRng)))
                .collect();
        let text = |name: &str| -> String {
            keys.iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| Self::public(k).to_text())
                .unwrap_or_default()
        };
        let policy = format!(
            "version = 1\n\n[[departments]]\nname = \"treasury\"\napprovers = [{{ name = \"alice\", key = \"{}\" }}, {{ name = \"bob\", key = \"{}\" }}]\n\n[[departments]]\nname = \"compliance\"\napprovers = [{{ name = \"carol\", key = \"{}\" }}, {{ name = \"dave\", key = \"{}\" }}]\n\n{keys_section}\n",
            text("alice"),
            text("bob"),
            text("carol"),
            text("dave"),
        );
        Ok(Approvers {
            policy: Policy::from_bytes(policy.as_bytes())?,
            keys,
        })
    }

    fn public(key: &p256::ecdsa::SigningKey) -> ApproverKey {
        ApproverKey::from_sec1(key.verifying_key().to_encoded_point(true).as_bytes())
            .unwrap_or_else(|_| unreachable!("a P-256 public key is a valid approver key"))
    }

    /// A request under this policy, made by "requester", valid from
    /// `created_at` until `expires_at`.
    pub fn request(
        &self,
        key_id: &KeyId,
        message: &[u8],
        amount: u128,
        created_at: u64,
        expires_at: u64,
    ) -> SigningRequest {
        SigningRequest {
            key_id: key_id.clone(),
            message: message.to_vec(),
            metadata: Metadata {
                asset: "BTC".into(),
                amount,
                destination: "bc1qdestination".into(),
                memo: String::new(),
            },
            psbt: None,
            requester: "requester".into(),
            created_at,
            expires_at,
            policy_hash: self.policy.hash(),
            // As a coordinator draws it: the signer computes v2 ids.
            nonce: vec![0x5a; ringi_policy::request::NONCE_LEN],
        }
    }

    /// `who`'s signed decision on `request` for `department`, valid from
    /// `issued_at` until `expires_at`. An unknown `who` signs as mallory.
    #[allow(clippy::too_many_arguments)]
    pub fn approval(
        &self,
        request: &SigningRequest,
        who: &str,
        department: &str,
        decision: Decision,
        reason: &str,
        issued_at: u64,
        expires_at: u64,
    ) -> Approval {
        let (_, key) = self
            .keys
            .iter()
            .find(|(n, _)| n == who)
            .or_else(|| self.keys.iter().find(|(n, _)| n == "mallory"))
            .unwrap_or_else(|| unreachable!("mallory is always there"));
        let approver = Self::public(key);
        let statement =
            Statement::for_request(request, department, decision, reason, issued_at, expires_at);
        let signature: p256::ecdsa::Signature = key.sign(&statement.signed_bytes(&approver));
        Approval {
            statement,
            approver,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// `who`'s admin signature of a key order, issued at `issued_at`. An
    /// unknown `who` signs as mallory.
    pub fn order_signature(
        &self,
        who: &str,
        order: &ringi_policy::key_order::KeyOrder,
        issued_at: u64,
    ) -> ringi_policy::policy_update::AdminSignature {
        let (_, key) = self
            .keys
            .iter()
            .find(|(n, _)| n == who)
            .or_else(|| self.keys.iter().find(|(n, _)| n == "mallory"))
            .unwrap_or_else(|| unreachable!("mallory is always there"));
        let admin = Self::public(key);
        let signature: p256::ecdsa::Signature = key.sign(&order.signed_bytes(issued_at, &admin));
        ringi_policy::policy_update::AdminSignature {
            admin,
            issued_at,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// The bundle a call would present with `request` and `approvals`.
    pub fn bundle(request: &SigningRequest, approvals: Vec<Approval>) -> PresentedBundle {
        PresentedBundle::Decoded(Box::new(ApprovalBundle {
            request: request.clone(),
            approvals,
        }))
    }
}
