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

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, SigningPackage};
use rand_core::{OsRng, RngCore};
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;
use zeroize::Zeroizing;

use crate::nonces::{self, NonceError, VaultNonces};
use crate::rng;
use crate::sealed_share::{self, GROUP_KEY_LEN, SealedShare, ShareHeader};
use crate::token::{GCM_IV_LEN, Token, TokenError};

/// Public facts about a share the vault holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    pub key_id: String,
    pub identifier: u16,
    pub group_key: [u8; GROUP_KEY_LEN],
    /// The generation of the share in use: 0 from the DKG, one more per
    /// refresh.
    pub generation: u32,
    /// A refresh's next share, stored and waiting for
    /// [`ShareVault::activate`] or [`ShareVault::discard`].
    pub pending_generation: Option<u32>,
    /// The key's frost `PublicKeyPackage` for the share in use, as sealed
    /// with it; empty for a share sealed before version 3.
    pub public_key_package: Vec<u8>,
    /// The refreshed `PublicKeyPackage` sealed with the waiting share;
    /// empty when none waits.
    pub pending_public_key_package: Vec<u8>,
}

/// What [`ShareVault::activate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The pending share is now in use; the share of `retired` generation
    /// was destroyed in the token.
    Activated { retired: u32 },
    /// The generation asked for was in use already (a retried activation).
    AlreadyActive,
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
    #[error(
        "key id {key_id:?} has a refreshed share of generation {pending} waiting for activation; activate or discard it first"
    )]
    RefreshPending { key_id: String, pending: u32 },
    #[error(
        "key id {key_id:?} has no share of generation {asked} on this node (in use: {active}, waiting: {pending:?})"
    )]
    NoSuchGeneration {
        key_id: String,
        asked: u32,
        active: u32,
        pending: Option<u32>,
    },
    #[error(
        "the share of generation {generation} of key id {key_id:?} is the one in use; only a waiting refreshed share can be discarded"
    )]
    DiscardInUse { key_id: String, generation: u32 },
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
    /// Seals and stores a new share (generation 0) with the key's public
    /// package. Refuses a key id that exists.
    fn store(
        &self,
        key_id: &KeyId,
        identifier: u16,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<ShareInfo, VaultError>;

    /// Seals and stores a refreshed share of `key_id` as the next
    /// generation, **next to** the share in use, which keeps signing until
    /// [`Self::activate`]. Refuses when a refreshed share waits already, or
    /// when `share` is not for the same identifier and group key.
    fn store_next(
        &self,
        key_id: &KeyId,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<ShareInfo, VaultError>;

    /// Puts the waiting share of `generation` in use and destroys the old
    /// one in the token. Idempotent: asking for the generation in use
    /// answers [`Activation::AlreadyActive`].
    fn activate(&self, key_id: &KeyId, generation: u32) -> Result<Activation, VaultError>;

    /// Destroys the waiting share of `generation` (a refresh that did not
    /// complete everywhere); the share in use stays. Says whether there was
    /// one to destroy.
    fn discard(&self, key_id: &KeyId, generation: u32) -> Result<bool, VaultError>;

    /// Destroys every share of `key_id` (in use and waiting) in the token:
    /// the end of a retired key. Returns the generations destroyed; none if
    /// the vault holds no share of it (a retried destruction).
    fn destroy(&self, key_id: &KeyId) -> Result<Vec<u32>, VaultError>;

    /// The share in use, unsealed, for a key lifecycle computation that
    /// needs it (a refresh's last step, a repair helper's step). Zeroized
    /// when dropped.
    fn unseal_share(&self, key_id: &KeyId) -> Result<KeyPackage<S>, VaultError>;

    /// Round 1 (RFC 9591 section 5.1): issues a fresh nonce pair for
    /// `key_id`, keeps it for round 2, and returns the node's identifier and
    /// the pair's commitments. The pair was drawn with the share, in memory,
    /// at most [`crate::nonces::RESERVE_TTL`] ago: a vault draws
    /// [`crate::nonces::RESERVE_BATCH`] at a time, one unseal for all
    /// ([`VaultNonces::issue`]).
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
    ) -> Result<SignatureShare<S>, VaultError> {
        self.sign_each(key_id, &[package])
            .pop()
            .unwrap_or(Err(VaultError::NotAParticipant(0)))
    }

    /// Round 2 of several packages of `key_id` at once (a batch of Signs):
    /// [`ShareVault::sign`] for each, in order, with the share unsealed
    /// once for all of them. Each package's nonces are taken out before
    /// the share is unsealed; each result is its package's own.
    fn sign_each(
        &self,
        key_id: &KeyId,
        packages: &[&SigningPackage<S>],
    ) -> Vec<Result<SignatureShare<S>, VaultError>>;

    /// The shares held, ordered by key id.
    fn shares(&self) -> Vec<ShareInfo>;

    /// The facts of `key_id`'s share, if held.
    fn info(&self, key_id: &str) -> Option<ShareInfo> {
        self.shares().into_iter().find(|s| s.key_id == key_id)
    }

    /// Whether a share for `key_id` exists.
    fn contains(&self, key_id: &str) -> bool;
}

/// The group key of `share`, checked to be SEC1 compressed, and the public
/// package's bytes, checked to name the same group key and to give this
/// share's identifier its verifying share: what a vault seals with a share.
pub(crate) fn public_facts<S: Suite>(
    key_id: &KeyId,
    share: &KeyPackage<S>,
    public: &PublicKeyPackage<S>,
) -> Result<([u8; GROUP_KEY_LEN], Vec<u8>), VaultError> {
    let corrupt = |reason: &str| VaultError::Corrupt {
        key_id: key_id.to_string(),
        reason: reason.into(),
    };
    let vk = share
        .verifying_key()
        .serialize()
        .map_err(VaultError::frost)?;
    let group_key: [u8; GROUP_KEY_LEN] = vk
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("the group key is not 33 bytes"))?;
    if public.verifying_key() != share.verifying_key() {
        return Err(corrupt(
            "the public key package names another group key than the share",
        ));
    }
    if public.verifying_shares().get(share.identifier()) != Some(share.verifying_share()) {
        return Err(corrupt(
            "the public key package gives this share's identifier another verifying share",
        ));
    }
    Ok((group_key, public.serialize().map_err(VaultError::frost)?))
}

/// Round 2 of `packages` with the share in hand, for vaults that hold the
/// share as a scalar (the token envelope, the memory test double): for
/// each package, finds this node's commitments and takes their nonces out
/// of `nonces` **before anything else can fail** (from then on they are
/// gone, whatever happens); then unseals the share with `unseal`, once for
/// all the packages that have nonces (again for the next one if it
/// failed), and signs each with [`Suite::sign`]. One result per package,
/// in order.
pub(crate) fn sign_with_nonces<S: Suite>(
    nonces: &VaultNonces<S>,
    key_id: &KeyId,
    id: u16,
    packages: &[&SigningPackage<S>],
    unseal: impl Fn() -> Result<KeyPackage<S>, VaultError>,
) -> Vec<Result<SignatureShare<S>, VaultError>> {
    let own_id = identifier::<S>(id);
    let taken: Vec<Result<_, VaultError>> = packages
        .iter()
        .map(|package| {
            let own = package
                .signing_commitments()
                .get(own_id.as_ref().map_err(|_| VaultError::BadIdentifier(id))?)
                .ok_or(VaultError::NotAParticipant(id))?;
            nonces.take(key_id, own).ok_or(VaultError::NonceUnavailable)
        })
        .collect();
    let mut share: Option<KeyPackage<S>> = None;
    packages
        .iter()
        .zip(taken)
        .map(|(package, nonces)| {
            let nonces = nonces?;
            let share = match &mut share {
                Some(share) => share,
                empty => empty.insert(unseal()?),
            };
            S::sign(package, &nonces, share).map_err(VaultError::frost)
        })
        .collect()
}

/// [`VaultError::UnknownKey`] for each of `n` packages: a batch for a key
/// this vault holds no share of.
pub(crate) fn unknown_key_each<T>(key_id: &KeyId, n: usize) -> Vec<Result<T, VaultError>> {
    (0..n)
        .map(|_| Err(VaultError::UnknownKey(key_id.to_string())))
        .collect()
}

/// One key's sealed shares on the token: the one in use, and a refresh's
/// next one while it waits for activation.
///
/// Which is which needs no marker that could be lost in a crash: the token
/// holds at most two generations of a key, the lower is in use. A refresh
/// stores the higher ([`ShareVault::store_next`]); activation destroys the
/// lower, one token operation, after which the higher is the only one.
#[derive(Clone)]
struct Held {
    active: SealedShare,
    pending: Option<SealedShare>,
}

/// A vault whose shares are sealed by a PKCS#11 token's AES-256 KEK.
pub struct TokenVault<S: Suite> {
    token: Arc<Token>,
    kek_id: Vec<u8>,
    /// Sealed shares by key id. The ciphertext is safe in memory; caching it
    /// saves a C_FindObjects (~110 µs) per use.
    shares: RwLock<HashMap<String, Held>>,
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
        let mut by_key: HashMap<String, Vec<SealedShare>> = HashMap::new();
        for stored in token.load_shares()? {
            let sealed = SealedShare::decode(&stored.sealed).map_err(|e| VaultError::Corrupt {
                key_id: stored.key_id.clone(),
                reason: e.to_string(),
            })?;
            if sealed.header.kind() != S::KIND {
                tracing::info!(key_id = %stored.key_id, kind = %sealed.header.kind(), "share of another key kind; not served by this vault");
                continue;
            }
            by_key.entry(stored.key_id).or_default().push(sealed);
        }
        let mut shares = HashMap::new();
        for (key_id, mut generations) in by_key {
            generations.sort_by_key(|s| s.header.generation);
            let corrupt = |reason: String| VaultError::Corrupt {
                key_id: key_id.clone(),
                reason,
            };
            let mut generations = generations.into_iter();
            let active = generations
                .next()
                .ok_or_else(|| corrupt("no share".into()))?;
            let pending = generations.next();
            if let Some(next) = &pending {
                if next.header.generation == active.header.generation
                    || next.header.identifier != active.header.identifier
                    || next.header.group_key != active.header.group_key
                {
                    return Err(corrupt(format!(
                        "two shares of generations {} and {} that do not belong together",
                        active.header.generation, next.header.generation
                    )));
                }
                tracing::warn!(key_id = %key_id, generation = next.header.generation, "a refreshed share waits for activation (an interrupted refresh: run `ringi keys refresh` again)");
            }
            if generations.next().is_some() {
                return Err(corrupt("more than two generations of the share".into()));
            }
            shares.insert(key_id, Held { active, pending });
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
            .map(|h| h.active.clone())
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
            .map(|h| h.active.header.identifier)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))
    }

    /// Seals `share` with its public facts as `generation` and stores it
    /// in the token (refusing an existing object).
    fn seal_and_store(
        &self,
        key_id: &KeyId,
        id: u16,
        generation: u32,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<SealedShare, VaultError> {
        if *share.identifier() != identifier::<S>(id)? {
            return Err(VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "share does not match the identifier it is stored under".into(),
            });
        }
        let (group_key, public_bytes) = public_facts(key_id, share, public)?;
        let header = ShareHeader::new(S::KIND, id, group_key, generation, public_bytes);
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
        let bytes = sealed.encode().map_err(|e| VaultError::Corrupt {
            key_id: key_id.to_string(),
            reason: e.to_string(),
        })?;
        self.token
            .store_share(key_id, generation, &bytes)
            .map_err(|e| match e {
                TokenError::ShareExists(k) => VaultError::KeyExists(k),
                other => other.into(),
            })?;
        Ok(sealed)
    }

    fn held(&self, key_id: &str) -> Result<Held, VaultError> {
        self.shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))
    }
}

fn info_of(key_id: &str, held: &Held) -> ShareInfo {
    let h = &held.active.header;
    ShareInfo {
        key_id: key_id.to_string(),
        identifier: h.identifier,
        group_key: h.group_key,
        generation: h.generation,
        pending_generation: held.pending.as_ref().map(|p| p.header.generation),
        public_key_package: h.public_key_package.clone(),
        pending_public_key_package: held
            .pending
            .as_ref()
            .map(|p| p.header.public_key_package.clone())
            .unwrap_or_default(),
    }
}

impl<S: Suite> ShareVault<S> for TokenVault<S> {
    fn store(
        &self,
        key_id: &KeyId,
        id: u16,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<ShareInfo, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.contains(key_id) {
            return Err(VaultError::KeyExists(key_id.to_string()));
        }
        let sealed = self.seal_and_store(key_id, id, 0, share, public)?;
        let held = Held {
            active: sealed,
            pending: None,
        };
        let info = info_of(key_id, &held);
        self.shares
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id.to_string(), held);
        Ok(info)
    }

    fn store_next(
        &self,
        key_id: &KeyId,
        share: &KeyPackage<S>,
        public: &PublicKeyPackage<S>,
    ) -> Result<ShareInfo, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.held(key_id)?;
        if let Some(p) = &held.pending {
            return Err(VaultError::RefreshPending {
                key_id: key_id.to_string(),
                pending: p.header.generation,
            });
        }
        let current = &held.active.header;
        let generation = current
            .generation
            .checked_add(1)
            .ok_or_else(|| VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "the share's generation cannot grow further".into(),
            })?;
        let (group_key, _) = public_facts(key_id, share, public)?;
        if group_key != current.group_key {
            return Err(VaultError::Corrupt {
                key_id: key_id.to_string(),
                reason: "the refreshed share is for another group key".into(),
            });
        }
        let sealed = self.seal_and_store(key_id, current.identifier, generation, share, public)?;
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        let entry = shares
            .get_mut(key_id.as_str())
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        entry.pending = Some(sealed);
        Ok(info_of(key_id, entry))
    }

    fn activate(&self, key_id: &KeyId, generation: u32) -> Result<Activation, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.held(key_id)?;
        let active = held.active.header.generation;
        if active == generation {
            return Ok(Activation::AlreadyActive);
        }
        match &held.pending {
            Some(p) if p.header.generation == generation => {}
            _ => {
                return Err(VaultError::NoSuchGeneration {
                    key_id: key_id.to_string(),
                    asked: generation,
                    active,
                    pending: held.pending.as_ref().map(|p| p.header.generation),
                });
            }
        }
        // The one step that switches: once the old object is gone, the
        // refreshed share is the lowest (and only) generation on the token,
        // so a restart at any point agrees with memory.
        self.token.destroy_share(key_id, active)?;
        let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = shares.get_mut(key_id.as_str())
            && let Some(next) = entry.pending.take()
        {
            entry.active = next;
        }
        Ok(Activation::Activated { retired: active })
    }

    fn discard(&self, key_id: &KeyId, generation: u32) -> Result<bool, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.held(key_id)?;
        match &held.pending {
            Some(p) if p.header.generation == generation => {
                self.token.destroy_share(key_id, generation)?;
                let mut shares = self.shares.write().unwrap_or_else(|p| p.into_inner());
                if let Some(entry) = shares.get_mut(key_id.as_str()) {
                    entry.pending = None;
                }
                Ok(true)
            }
            _ if held.active.header.generation == generation => Err(VaultError::DiscardInUse {
                key_id: key_id.to_string(),
                generation,
            }),
            _ => Ok(false),
        }
    }

    fn destroy(&self, key_id: &KeyId) -> Result<Vec<u32>, VaultError> {
        let _guard = self.store_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(held) = self.held(key_id) else {
            return Ok(Vec::new());
        };
        let mut destroyed = Vec::new();
        // The waiting share first: should this stop midway, what is left is
        // the share in use, as at any other time.
        for sealed in held.pending.iter().chain([&held.active]) {
            self.token.destroy_share(key_id, sealed.header.generation)?;
            destroyed.push(sealed.header.generation);
        }
        self.shares
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_id.as_str());
        // Pairs drawn with the destroyed share, never issued.
        self.nonces.reserve.forget(key_id);
        Ok(destroyed)
    }

    fn unseal_share(&self, key_id: &KeyId) -> Result<KeyPackage<S>, VaultError> {
        self.unseal(key_id)
    }

    fn commit(&self, key_id: &KeyId) -> Result<(u16, SigningCommitments<S>), VaultError> {
        let id = self.identifier_of(key_id)?;
        let commitments = self.nonces.issue(key_id, |n| {
            let share = self.unseal(key_id)?;
            let mut rng = rng::hedged(&self.token)?;
            Ok::<_, VaultError>(nonces::draw(share.signing_share(), n, &mut rng))
        })?;
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

    fn sign_each(
        &self,
        key_id: &KeyId,
        packages: &[&SigningPackage<S>],
    ) -> Vec<Result<SignatureShare<S>, VaultError>> {
        match self.identifier_of(key_id) {
            Ok(id) => sign_with_nonces(&self.nonces, key_id, id, packages, || self.unseal(key_id)),
            Err(_) => unknown_key_each(key_id, packages.len()),
        }
    }

    fn shares(&self) -> Vec<ShareInfo> {
        let mut out: Vec<ShareInfo> = self
            .shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key_id, held)| info_of(key_id, held))
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use frost_core::keys::IdentifierList;
    use rand_core::OsRng;
    use ringi_frost::Secp256k1;

    use super::*;

    type S = Secp256k1;

    /// Packages of participants 1 and 2 over `messages`, 1's nonces kept in
    /// `nonces`; and the share of participant 1.
    fn batch(
        nonces: &VaultNonces<S>,
        key_id: &KeyId,
        messages: &[&[u8]],
    ) -> (Vec<SigningPackage<S>>, KeyPackage<S>) {
        let (shares, _) = frost_core::keys::generate_with_dealer::<S, _>(
            3,
            2,
            IdentifierList::Default,
            &mut OsRng,
        )
        .unwrap();
        let id = |n: u16| identifier::<S>(n).unwrap();
        let key = |n: u16| KeyPackage::<S>::try_from(shares[&id(n)].clone()).unwrap();
        let (own, other) = (key(1), key(2));
        let packages = messages
            .iter()
            .map(|m| {
                let mine = nonces
                    .round1
                    .commit(key_id.as_str(), own.signing_share(), &mut OsRng)
                    .unwrap();
                let (_, theirs) = frost_core::round1::commit(other.signing_share(), &mut OsRng);
                SigningPackage::new(BTreeMap::from([(id(1), mine), (id(2), theirs)]), m)
            })
            .collect();
        (packages, own)
    }

    /// A batch's share is unsealed once; each package's nonces are taken
    /// out whatever happens next, and a package without nonces fails alone.
    #[test]
    fn a_batch_unseals_once_and_takes_every_nonce_first() {
        let nonces = VaultNonces::<S>::default();
        let key_id = KeyId::parse("k").unwrap();
        let (packages, own) = batch(&nonces, &key_id, &[b"a", b"b", b"c"]);
        // b's nonces are gone already (used by an earlier Sign).
        let b_own = packages[1].signing_commitments()[&identifier::<S>(1).unwrap()];
        assert!(nonces.take("k", &b_own).is_some());
        let unseals = Cell::new(0);
        let refs: Vec<&SigningPackage<S>> = packages.iter().collect();
        let out = sign_with_nonces(&nonces, &key_id, 1, &refs, || {
            unseals.set(unseals.get() + 1);
            Ok(own.clone())
        });
        assert_eq!(unseals.get(), 1);
        assert!(out[0].is_ok() && out[2].is_ok());
        assert!(
            matches!(out[1], Err(VaultError::NonceUnavailable)),
            "{:?}",
            out[1]
        );
        assert!(nonces.is_empty());

        // An unseal that fails: every package fails, no nonce survives.
        let (packages, _) = batch(&nonces, &key_id, &[b"d", b"e"]);
        let refs: Vec<&SigningPackage<S>> = packages.iter().collect();
        let out = sign_with_nonces(&nonces, &key_id, 1, &refs, || {
            Err(VaultError::Corrupt {
                key_id: "k".into(),
                reason: "test".into(),
            })
        });
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(VaultError::Corrupt { .. })))
        );
        assert!(nonces.is_empty());
    }
}
