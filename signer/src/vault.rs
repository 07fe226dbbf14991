//! The share vault: the one interface through which the node uses its key
//! shares.
//!
//! A stock PKCS#11 token has no FROST mechanism, so [`TokenVault`] keeps each
//! share sealed by the token's AES-256 KEK and unseals it, inside the token,
//! for the one computation that needs it; the plaintext lives in a zeroizing
//! buffer and in frost's zeroize-on-drop `KeyPackage` until that computation
//! ends. An HSM that computes FROST natively would implement [`ShareVault`]
//! directly and the rest of the node would not change.
//!
//! Round-1 nonces are part of the vault for the same reason: a native FROST
//! HSM would keep them inside too.
//!
//! Everything here is generic over the ciphersuite `S` ([`ringi_frost::Suite`]):
//! round 2 signs through [`Suite::sign`], so a suite that signs differently
//! (BIP-340 Taproot) is one more instantiation, not a copy of this code. The
//! node picks its suite in one place ([`crate::server::FrostSuite`] and [`crate::server::TaprootSuite`]). A vault
//! for tests that holds plaintext shares in memory is
//! `crate::test_doubles::MemoryVault` (feature `test-doubles`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use frost_core::keys::KeyPackage;
use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, SigningPackage};
use rand_core::{OsRng, RngCore};
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;
use zeroize::Zeroizing;

use crate::nonces::{NonceError, VaultNonces};
use crate::rng;
use crate::sealed_share::{self, GROUP_KEY_LEN, SealedShare, ShareHeader};
use crate::token::{GCM_IV_LEN, Token, TokenError};

/// Public facts about a share the vault holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    pub key_id: String,
    pub identifier: u16,
    pub group_key: [u8; GROUP_KEY_LEN],
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no key share for key id {0:?} on this node")]
    UnknownKey(String),
    #[error("a key share for key id {0:?} exists on this node already")]
    KeyExists(String),
    #[error("the signing package has no commitments from this node (identifier {0}) for this key")]
    NotAParticipant(u16),
    #[error(
        "no unused round-1 nonces match this node's commitments in the signing package: they were used already, have expired, or were never issued by this node (a nonce is used at most once)"
    )]
    NonceUnavailable,
    #[error(transparent)]
    NonceStore(#[from] NonceError),
    /// FROST's own refusal, as its message (frost's error type is generic
    /// over the ciphersuite; this one is not).
    #[error("FROST refused the operation: {0}")]
    Frost(String),
    #[error("participant number {0} is not a FROST identifier (1..=65535)")]
    BadIdentifier(u16),
    #[error("sealed share for key id {key_id:?} is corrupt: {reason}")]
    Corrupt { key_id: String, reason: String },
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl VaultError {
    /// Wraps FROST's refusal.
    pub fn frost<S: Suite>(e: frost_core::Error<S>) -> Self {
        VaultError::Frost(e.to_string())
    }
}

/// The FROST identifier of participant number `n`, or the precise refusal.
pub fn identifier<S: Suite>(n: u16) -> Result<Identifier<S>, VaultError> {
    ringi_frost::identifier(n).ok_or(VaultError::BadIdentifier(n))
}

/// Store, sign round 1, sign round 2: everything the node does with the
/// shares of one ciphersuite `S`.
pub trait ShareVault<S: Suite>: Send + Sync {
    /// Seals and stores a new share. Refuses a key id that exists.
    fn store(
        &self,
        key_id: &KeyId,
        identifier: u16,
        share: &KeyPackage<S>,
    ) -> Result<ShareInfo, VaultError>;

    /// Round 1 (RFC 9591 section 5.1): draws a fresh nonce pair for
    /// `key_id`, keeps it, and returns the node's identifier and the pair's
    /// commitments.
    fn commit(&self, key_id: &KeyId) -> Result<(u16, SigningCommitments<S>), VaultError>;

    /// Preprocessing (RFC 9591 section 5.1 ahead of time): draws `count`
    /// fresh nonce pairs for `key_id` at once, keeps them (in memory, for
    /// one round 2 each) and returns the node's identifier and their
    /// commitments.
    fn preprocess(
        &self,
        key_id: &KeyId,
        count: usize,
    ) -> Result<(u16, Vec<SigningCommitments<S>>), VaultError>;

    /// Round 2 (RFC 9591 section 5.2): consumes the nonces behind this
    /// node's commitments in `package` and returns the signature share,
    /// computed by the suite's [`Suite::sign`].
    fn sign(
        &self,
        key_id: &KeyId,
        package: &SigningPackage<S>,
    ) -> Result<SignatureShare<S>, VaultError>;

    /// The shares held, ordered by key id.
    fn shares(&self) -> Vec<ShareInfo>;

    /// Whether a share for `key_id` exists.
    fn contains(&self, key_id: &str) -> bool;
}

/// Round 2 with the share in hand, for vaults that hold the share as a
/// scalar (the token envelope, the memory test double): finds this node's
/// commitments in `package`, takes their nonces out of `nonces` **before
/// anything else can fail** (from then on they are gone, whatever happens),
/// then unseals the share with `unseal` and signs with [`Suite::sign`].
pub(crate) fn sign_with_nonces<S: Suite>(
    nonces: &VaultNonces<S>,
    key_id: &KeyId,
    id: u16,
    package: &SigningPackage<S>,
    unseal: impl FnOnce() -> Result<KeyPackage<S>, VaultError>,
) -> Result<SignatureShare<S>, VaultError> {
    let own = package
        .signing_commitments()
        .get(&identifier::<S>(id)?)
        .ok_or(VaultError::NotAParticipant(id))?;
    let nonces = nonces
        .take(key_id, own)
        .ok_or(VaultError::NonceUnavailable)?;
    let share = unseal()?;
    S::sign(package, &nonces, &share).map_err(VaultError::frost)
}

/// A vault whose shares are sealed by a PKCS#11 token's AES-256 KEK.
pub struct TokenVault<S: Suite> {
    token: Arc<Token>,
    kek_id: Vec<u8>,
    /// Sealed shares by key id. The ciphertext is safe in memory; caching it
    /// saves a C_FindObjects (~110 µs) per use.
    shares: RwLock<HashMap<String, SealedShare>>,
    /// Serializes `store` so two DKG runs cannot both create one key id.
    store_lock: Mutex<()>,
    nonces: VaultNonces<S>,
}

impl<S: Suite> TokenVault<S> {
    /// Opens the vault: checks the token's keys and loads the sealed shares
    /// of suite `S`'s key kind (a share of another kind belongs to another
    /// suite's vault over the same token, and is left alone).
    pub fn open(token: Arc<Token>) -> Result<Self, VaultError> {
        token.require_keys()?;
        let kek_id = token.kek_id()?;
        let mut shares = HashMap::new();
        for stored in token.load_shares()? {
            let sealed = SealedShare::decode(&stored.sealed).map_err(|e| VaultError::Corrupt {
                key_id: stored.key_id.clone(),
                reason: e.to_string(),
            })?;
            if sealed.header.kind() != S::KIND {
                tracing::info!(key_id = %stored.key_id, kind = %sealed.header.kind(), "share of another key kind; not served by this vault");
                continue;
            }
            shares.insert(stored.key_id, sealed);
        }
        Ok(TokenVault {
            token,
            kek_id,
            shares: RwLock::new(shares),
            store_lock: Mutex::new(()),
            nonces: VaultNonces::default(),
        })
    }

    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// Deletes expired round-1 nonces; the server calls this periodically.
    pub fn sweep_expired_nonces(&self) -> usize {
        self.nonces.sweep_expired()
    }

    /// Unseals `key_id`'s share inside the token and checks it matches its
    /// public header. The result zeroizes itself when dropped.
    fn unseal(&self, key_id: &str) -> Result<KeyPackage<S>, VaultError> {
        let sealed = self
            .shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        let aad = sealed_share::aad(key_id, &sealed.header, &self.kek_id);
        let plaintext: Zeroizing<Vec<u8>> =
            self.token.unseal(&sealed.iv, &aad, &sealed.ciphertext)?;
        let corrupt = |reason: String| VaultError::Corrupt {
            key_id: key_id.to_string(),
            reason,
        };
        let package = KeyPackage::deserialize(&plaintext).map_err(|e| corrupt(e.to_string()))?;
        let expected =
            identifier::<S>(sealed.header.identifier).map_err(|e| corrupt(e.to_string()))?;
        if *package.identifier() != expected
            || package.verifying_key().serialize().ok().as_deref()
                != Some(&sealed.header.group_key[..])
        {
            return Err(corrupt("share does not match its header".into()));
        }
        Ok(package)
    }

    fn identifier_of(&self, key_id: &str) -> Result<u16, VaultError> {
        self.shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .map(|s| s.header.identifier)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))
    }
}

impl<S: Suite> ShareVault<S> for TokenVault<S> {
    fn store(
        &self,
        key_id: &KeyId,
        id: u16,
        share: &KeyPackage<S>,
    ) -> Result<ShareInfo, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.contains(key_id) {
            return Err(VaultError::KeyExists(key_id.to_string()));
        }
        let mut group_key = [0u8; GROUP_KEY_LEN];
        let vk = share
            .verifying_key()
            .serialize()
            .map_err(VaultError::frost)?;
        if vk.len() != GROUP_KEY_LEN || *share.identifier() != identifier::<S>(id)? {
            return Err(VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "share does not match the identifier it is stored under".into(),
            });
        }
        group_key.copy_from_slice(&vk);
        let header = ShareHeader::new(S::KIND, id, group_key);
        let plaintext = Zeroizing::new(share.serialize().map_err(VaultError::frost)?);
        let mut iv = [0u8; GCM_IV_LEN];
        OsRng.fill_bytes(&mut iv);
        let aad = sealed_share::aad(key_id, &header, &self.kek_id);
        let ciphertext = self.token.seal(&iv, &aad, &plaintext)?;
        let sealed = SealedShare {
            header,
            iv,
            ciphertext,
        };
        self.token
            .store_share(key_id, &sealed.encode())
            .map_err(|e| match e {
                TokenError::ShareExists(k) => VaultError::KeyExists(k),
                other => other.into(),
            })?;
        self.shares
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id.to_string(), sealed);
        Ok(ShareInfo {
            key_id: key_id.to_string(),
            identifier: id,
            group_key,
        })
    }

    fn commit(&self, key_id: &KeyId) -> Result<(u16, SigningCommitments<S>), VaultError> {
        let id = self.identifier_of(key_id)?;
        let share = self.unseal(key_id)?;
        let mut rng = rng::hedged(&self.token)?;
        let commitments = self
            .nonces
            .round1
            .commit(key_id, share.signing_share(), &mut rng)?;
        Ok((id, commitments))
    }

    fn preprocess(
        &self,
        key_id: &KeyId,
        count: usize,
    ) -> Result<(u16, Vec<SigningCommitments<S>>), VaultError> {
        let id = self.identifier_of(key_id)?;
        let share = self.unseal(key_id)?;
        let mut rng = rng::hedged(&self.token)?;
        let commitments = self.nonces.preprocessed.commit_batch(
            key_id,
            share.signing_share(),
            count,
            &mut rng,
        )?;
        Ok((id, commitments))
    }

    fn sign(
        &self,
        key_id: &KeyId,
        package: &SigningPackage<S>,
    ) -> Result<SignatureShare<S>, VaultError> {
        let id = self.identifier_of(key_id)?;
        sign_with_nonces(&self.nonces, key_id, id, package, || self.unseal(key_id))
    }

    fn shares(&self) -> Vec<ShareInfo> {
        let mut out: Vec<ShareInfo> = self
            .shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key_id, s)| ShareInfo {
                key_id: key_id.clone(),
                identifier: s.header.identifier,
                group_key: s.header.group_key,
            })
            .collect();
        out.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        out
    }

    fn contains(&self, key_id: &str) -> bool {
        self.shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key_id)
    }
}
