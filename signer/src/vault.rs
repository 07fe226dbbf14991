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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use frost_secp256k1::keys::KeyPackage;
use frost_secp256k1::round1::SigningCommitments;
use frost_secp256k1::round2::SignatureShare;
use frost_secp256k1::{Identifier, SigningPackage};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::nonces::{NonceError, NonceStore};
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
    #[error("FROST refused the operation: {0}")]
    Frost(frost_secp256k1::Error),
    #[error("sealed share for key id {key_id:?} is corrupt: {reason}")]
    Corrupt { key_id: String, reason: String },
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Store, sign round 1, sign round 2: everything the node does with shares.
pub trait ShareVault: Send + Sync {
    /// Seals and stores a new share. Refuses a key id that exists.
    fn store(
        &self,
        key_id: &str,
        identifier: u16,
        share: &KeyPackage,
    ) -> Result<ShareInfo, VaultError>;

    /// Round 1: draws a fresh nonce pair for `key_id`, keeps it, and returns
    /// the node's identifier and the pair's commitments.
    fn commit(&self, key_id: &str) -> Result<(u16, SigningCommitments), VaultError>;

    /// Round 2: consumes the nonces behind this node's commitments in
    /// `package` and returns the signature share.
    fn sign(&self, key_id: &str, package: &SigningPackage) -> Result<SignatureShare, VaultError>;

    /// The shares held, ordered by key id.
    fn shares(&self) -> Vec<ShareInfo>;

    /// Whether a share for `key_id` exists.
    fn contains(&self, key_id: &str) -> bool;
}

/// A vault whose shares are sealed by a PKCS#11 token's AES-256 KEK.
pub struct TokenVault {
    token: Arc<Token>,
    kek_id: Vec<u8>,
    /// Sealed shares by key id. The ciphertext is safe in memory; caching it
    /// saves a C_FindObjects (~110 µs) per use.
    shares: RwLock<HashMap<String, SealedShare>>,
    /// Serializes `store` so two DKG runs cannot both create one key id.
    store_lock: Mutex<()>,
    nonces: NonceStore,
}

impl TokenVault {
    /// Opens the vault: checks the token's keys and loads the sealed shares.
    pub fn open(token: Arc<Token>) -> Result<Self, VaultError> {
        token.require_keys()?;
        let kek_id = token.kek_id()?;
        let mut shares = HashMap::new();
        for stored in token.load_shares()? {
            let sealed = SealedShare::decode(&stored.sealed).map_err(|e| VaultError::Corrupt {
                key_id: stored.key_id.clone(),
                reason: e.to_string(),
            })?;
            shares.insert(stored.key_id, sealed);
        }
        Ok(TokenVault {
            token,
            kek_id,
            shares: RwLock::new(shares),
            store_lock: Mutex::new(()),
            nonces: NonceStore::default(),
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
    fn unseal(&self, key_id: &str) -> Result<KeyPackage, VaultError> {
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
        if *package.identifier() != identifier(sealed.header.identifier)
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

/// The FROST identifier for a participant number. Callers pass 1..=65535.
pub fn identifier(n: u16) -> Identifier {
    Identifier::try_from(n).expect("identifier 0 is rejected before this point")
}

impl ShareVault for TokenVault {
    fn store(&self, key_id: &str, id: u16, share: &KeyPackage) -> Result<ShareInfo, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.contains(key_id) {
            return Err(VaultError::KeyExists(key_id.to_string()));
        }
        let mut group_key = [0u8; GROUP_KEY_LEN];
        let vk = share
            .verifying_key()
            .serialize()
            .map_err(VaultError::Frost)?;
        if vk.len() != GROUP_KEY_LEN || *share.identifier() != identifier(id) {
            return Err(VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "share does not match the identifier it is stored under".into(),
            });
        }
        group_key.copy_from_slice(&vk);
        let header = ShareHeader {
            identifier: id,
            group_key,
        };
        let plaintext = Zeroizing::new(share.serialize().map_err(VaultError::Frost)?);
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

    fn commit(&self, key_id: &str) -> Result<(u16, SigningCommitments), VaultError> {
        let id = self.identifier_of(key_id)?;
        let share = self.unseal(key_id)?;
        let mut rng = rng::hedged(&self.token)?;
        let (nonces, commitments) =
            frost_secp256k1::round1::commit(share.signing_share(), &mut rng);
        self.nonces.insert(key_id, &commitments, nonces)?;
        Ok((id, commitments))
    }

    fn sign(&self, key_id: &str, package: &SigningPackage) -> Result<SignatureShare, VaultError> {
        let id = self.identifier_of(key_id)?;
        let own = package
            .signing_commitments()
            .get(&identifier(id))
            .ok_or(VaultError::NotAParticipant(id))?;
        // Take the nonces out before anything else can fail: from here on
        // they are gone, whatever happens.
        let nonces = self
            .nonces
            .take(key_id, own)
            .ok_or(VaultError::NonceUnavailable)?;
        let share = self.unseal(key_id)?;
        frost_secp256k1::round2::sign(package, &nonces, &share).map_err(VaultError::Frost)
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
