//! This node's side of distributed key generation (frost `keys::dkg`, the
//! Pedersen DKG with proofs of knowledge of Komlo and Goldberg, as in the
//! FROST paper, section 5.1).
//!
//! A run has three steps, each a gRPC call from the coordinator:
//! 1. [`DkgRuns::round1`]: draw a secret polynomial, return its public
//!    commitments (broadcast by the coordinator).
//! 2. [`DkgRuns::round2`]: given every peer's commitments, compute one secret
//!    share per peer and seal each to its recipient ([`crate::dkg_envelope`]).
//! 3. [`DkgRuns::finish`]: open the shares addressed to this node, verify
//!    them and derive the key share, held in memory until step 4.
//! 4. [`DkgRuns::commit`]: once the coordinator has seen every participant
//!    finish with the same group key, seal the share into the vault. Storing
//!    only now means a run that fails on any node leaves no share anywhere.
//!
//! The secret polynomial lives in this process's memory between steps (a
//! stock token cannot compute it) and is zeroized when the run ends or is
//! abandoned. Runs are keyed by key id; a new round 1 for a key id replaces
//! an unfinished run, and runs older than [`RUN_TTL`] are dropped.
//!
//! A **refresh** (frost `keys::refresh`, the refresh DKG) runs the same
//! four steps over an existing key: each polynomial has a zero constant
//! term, so the group key stays and every share changes. Round 1 names the
//! key's current public package; step 3 adds the refreshing shares to the
//! node's current share; step 4 stores the result as the share's next
//! generation **next to** the current one ([`ShareVault::store_next`]);
//! a node switches over ([`DkgRuns::activate`]) only with every other
//! participant's vote that it stored its refreshed share, and drops a
//! waiting share ([`DkgRuns::discard`]) only with one participant's vote
//! that it never will ([`crate::refresh_vote`]): a refresh that stops
//! anywhere before leaves the old shares signing, and no coordinator can
//! switch some nodes and not the others.
//!
//! The FROST side is generic over the ciphersuite `S` ([`ringi_frost::Suite`],
//! frost-core's `keys::dkg`); the transport keys and envelopes are the
//! node's token-held ECDH keys whatever the suite, all of a run's on one
//! curve ([`crate::transport_key`]). The checks of a step's
//! input that need no token or run state are pure public functions
//! ([`check_round1`], [`decode_round1`]), for tests and fuzz targets.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frost_core::Identifier;
use frost_core::keys::dkg::{self, round1, round2};
use frost_core::keys::refresh;
use frost_core::keys::{KeyPackage, PublicKeyPackage};
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;

use crate::dkg_envelope::{self, Binding, Contents, EnvelopeError};
use crate::dkg_peer::{Attestation, OwnAttestations, PeerCheck};
use crate::refresh_vote::{Electorate, Vote, VoteError};
use crate::rng;
use crate::token::{Token, TokenError};
use crate::transport_key::{OwnKeys, TransportKey, one_curve};
use crate::vault::{ShareInfo, ShareVault, VaultError};

/// How long an unfinished run is kept.
pub const RUN_TTL: Duration = Duration::from_secs(600);
/// Most participants in one run.
pub const MAX_PARTICIPANTS: usize = 255;
/// Length of a DKG session id.
pub const SESSION_ID_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DkgError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("a key share for key id {0:?} exists on this node already")]
    KeyExists(String),
    #[error("no DKG run in progress for key id {0:?} with this session id")]
    NoRun(String),
    #[error("DKG run for key id {key_id:?} is not at this step (it expects {expected})")]
    OutOfOrder {
        key_id: String,
        expected: &'static str,
    },
    #[error("the group key {given} is not the one this node computed ({computed}); nothing stored")]
    GroupKeyMismatch { given: String, computed: String },
    #[error("DKG package from participant {culprit} failed verification: {reason}")]
    PeerInvalid { culprit: String, reason: String },
    #[error("participant {participant} is not a trusted DKG peer: {reason}")]
    UntrustedPeer {
        participant: u16,
        reason: crate::dkg_peer::PeerError,
    },
    #[error("participants {first} and {second} are both {name:?}")]
    DuplicatePeer {
        first: u16,
        second: u16,
        name: String,
    },
    #[error("no key share for key id {0:?} on this node: nothing to refresh")]
    NothingToRefresh(String),
    #[error("refresh of key id {key_id:?} refused: {reason}")]
    RefreshMismatch { key_id: String, reason: String },
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Vote(#[from] VoteError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// One participant as the coordinator describes it.
#[derive(Debug, Clone)]
pub struct Participant {
    pub identifier: u32,
    /// DKG transport public key in its wire form
    /// ([`crate::transport_key`]; a secp256k1 one also as any SEC1 point).
    pub dkg_public_key: Vec<u8>,
    /// Its certified identity's signature over it (under mutual TLS).
    pub attestation: Option<Attestation>,
}

/// The request of step 1.
#[derive(Debug, Clone)]
pub struct Round1Request {
    pub key_id: KeyId,
    pub session_id: Vec<u8>,
    pub me: u32,
    pub min_signers: u32,
    pub participants: Vec<Participant>,
}

/// What a run makes.
pub enum Purpose {
    /// A new key (frost `keys::dkg`).
    Create,
    /// New shares of an existing key (frost `keys::refresh`): the key's
    /// public package as the coordinator sends it (checked against the
    /// node's own in [`DkgRuns::round1`]; needed for a share sealed before
    /// version 3, which has none).
    Refresh { current_public: Option<Vec<u8>> },
}

/// A run's purpose once checked: for a refresh, the public package the
/// run refreshes.
enum Mode<S: Suite> {
    Create,
    Refresh {
        old_public: Box<PublicKeyPackage<S>>,
    },
}

/// What [`DkgRuns::commit`] stored.
#[derive(Debug, Clone)]
pub struct Committed {
    pub info: ShareInfo,
    /// The generation stored: 0 for a new key; for a refresh, the waiting
    /// generation to activate.
    pub generation: u32,
    pub refresh: bool,
    /// A refresh's `stored` vote sealed to each other participant, by
    /// identifier ([`crate::refresh_vote`]); empty for a new key.
    pub stored_votes: BTreeMap<u32, Vec<u8>>,
}

/// Round-1 packages by sender, decoded.
pub type Round1Packages<S> = BTreeMap<Identifier<S>, round1::Package<S>>;

/// Round 2's secret, the decoded round-1 packages, and the sealed packages
/// by recipient.
type Round2Output<S> = (
    round2::SecretPackage<S>,
    Round1Packages<S>,
    BTreeMap<u32, Vec<u8>>,
);

enum Step<S: Suite> {
    Round1(round1::SecretPackage<S>),
    Round2 {
        secret: round2::SecretPackage<S>,
        round1_packages: Round1Packages<S>,
    },
    Finished {
        key: Box<KeyPackage<S>>,
        public: Box<PublicKeyPackage<S>>,
    },
}

struct Run<S: Suite> {
    session_id: Vec<u8>,
    me: u16,
    /// Peers' transport keys, by identifier; self excluded.
    peers: BTreeMap<u16, TransportKey>,
    step: Option<Step<S>>,
    mode: Mode<S>,
    started: Instant,
}

/// The DKG runs in progress on this node, for keys of ciphersuite `S`.
pub struct DkgRuns<S: Suite> {
    vault: Arc<dyn ShareVault<S>>,
    token: Arc<Token>,
    /// This node's transport keys, one per curve its token has.
    own_keys: OwnKeys,
    /// Under mutual TLS: which peers this node accepts, and its own
    /// attestation to hand out (see `dkg_peer.rs`).
    /// Replaced when the node reloads its certificates.
    peers: std::sync::RwLock<Option<Arc<(PeerCheck, OwnAttestations)>>>,
    runs: Mutex<HashMap<KeyId, Run<S>>>,
    /// Held while a refresh's share is stored, while the node votes on a
    /// refresh, and while it activates or discards a waiting share: a
    /// node must never vote `aborted` for a package it is storing.
    decisions: Mutex<()>,
}

impl<S: Suite> DkgRuns<S> {
    pub fn new(vault: Arc<dyn ShareVault<S>>, token: Arc<Token>) -> Result<Self, TokenError> {
        let own_keys = OwnKeys::new(token.dkg_public_keys()?)
            .ok_or(TokenError::NotInitialized(crate::token::DKG_P256_KEY_LABEL))?;
        Ok(DkgRuns {
            vault,
            token,
            own_keys,
            peers: std::sync::RwLock::new(None),
            runs: Mutex::new(HashMap::new()),
            decisions: Mutex::new(()),
        })
    }

    /// From now on, requires every other participant of a run to pass
    /// `check`, and hands out `own` with this node's transport keys (at
    /// start, and again when the node reloads its certificates).
    pub fn set_peer_check(&self, check: PeerCheck, own: OwnAttestations) {
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new((check, own)));
    }

    pub(crate) fn peer_check(&self) -> Option<Arc<(PeerCheck, OwnAttestations)>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The vault of this suite's shares.
    pub(crate) fn vault(&self) -> &Arc<dyn ShareVault<S>> {
        &self.vault
    }

    /// The node's token (for ECDH and randomness).
    pub(crate) fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// This node's transport keys.
    pub fn own_keys(&self) -> &OwnKeys {
        &self.own_keys
    }

    /// This node's attestation of its preferred transport key, under
    /// mutual TLS.
    pub fn attestation(&self) -> Option<Attestation> {
        self.attestation_of(&self.public_key())
    }

    /// This node's attestation of its transport key `wire`, under mutual
    /// TLS.
    pub fn attestation_of(&self, wire: &[u8]) -> Option<Attestation> {
        self.peer_check()
            .and_then(|p| p.1.iter().find(|(k, _)| k == wire).map(|(_, a)| a.clone()))
    }

    /// This node's preferred DKG transport public key, in its wire form.
    pub fn public_key(&self) -> Vec<u8> {
        self.own_keys.primary().wire()
    }

    /// Step 1: returns this node's serialized round-1 package.
    ///
    /// Checks, in order: the request's own consistency ([`check_round1`]);
    /// under mutual TLS, every peer's attestation; that no share for the key
    /// id exists. Only then does it use the token (for randomness).
    ///
    /// For a refresh, also: the node holds the key, with no refreshed
    /// share waiting; the run refreshes exactly the key's participants,
    /// under this node's identifier and the key's threshold
    /// ([`check_refresh`]).
    pub fn round1(&self, req: Round1Request, purpose: Purpose) -> Result<Vec<u8>, DkgError> {
        let checked = check_round1(&req, &self.own_keys)?;
        if let Some(peers) = self.peer_check() {
            check_peers(&req.participants, req.me, &peers.0)?;
        }
        let mode = match purpose {
            Purpose::Create => {
                if self.vault.contains(&req.key_id) {
                    return Err(DkgError::KeyExists(req.key_id.into()));
                }
                Mode::Create
            }
            Purpose::Refresh { current_public } => {
                let info = self
                    .vault
                    .info(&req.key_id)
                    .ok_or_else(|| DkgError::NothingToRefresh(req.key_id.to_string()))?;
                if let Some(pending) = info.pending_generation {
                    return Err(VaultError::RefreshPending {
                        key_id: req.key_id.to_string(),
                        pending,
                    }
                    .into());
                }
                Mode::Refresh {
                    old_public: Box::new(check_refresh::<S>(
                        &checked,
                        &info,
                        current_public.as_deref(),
                    )?),
                }
            }
        };
        let mut rng = rng::hedged(&self.token)?;
        let me = participant(checked.me)?;
        let (secret, package) = match mode {
            Mode::Create => {
                dkg::part1::<S, _>(me, checked.max_signers, checked.min_signers, &mut rng)
            }
            Mode::Refresh { .. } => refresh::refresh_dkg_part1::<S, _>(
                me,
                checked.max_signers,
                checked.min_signers,
                &mut rng,
            ),
        }
        .map_err(|e| DkgError::InvalidArgument(format!("FROST refused the parameters: {e}")))?;
        let bytes = package
            .serialize()
            .map_err(|e| DkgError::InvalidArgument(e.to_string()))?;
        let mut runs = self.lock();
        runs.retain(|_, run| run.started.elapsed() < RUN_TTL);
        runs.insert(
            req.key_id,
            Run {
                session_id: req.session_id,
                me: checked.me,
                peers: checked.peers,
                step: Some(Step::Round1(secret)),
                mode,
                started: Instant::now(),
            },
        );
        Ok(bytes)
    }

    /// Step 2: given each peer's round-1 package, returns this node's round-2
    /// package for each peer, sealed to it.
    ///
    /// Checks, in order: a run for `key_id` with this session id, younger
    /// than [`RUN_TTL`]; packages from exactly the other participants; the
    /// run is at this step; the packages decode ([`decode_round1`]) and
    /// their proofs verify (FROST `part2`, naming the culprit). A run whose
    /// round 2 fails is dropped.
    pub fn round2(
        &self,
        key_id: &KeyId,
        session_id: &[u8],
        round1_packages: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<BTreeMap<u32, Vec<u8>>, DkgError> {
        let (me, peers, secret, refreshing) = {
            let mut runs = self.lock();
            let run = find_run(&mut runs, key_id, session_id)?;
            check_peer_set(&run.peers, round1_packages.keys(), "round-1 packages")?;
            let refreshing = matches!(run.mode, Mode::Refresh { .. });
            match run.step.take() {
                Some(Step::Round1(secret)) => (run.me, run.peers.clone(), secret, refreshing),
                other => {
                    run.step = other;
                    return Err(DkgError::OutOfOrder {
                        key_id: key_id.to_string(),
                        expected: "DkgFinish",
                    });
                }
            }
        };
        let result = self.compute_round2(
            key_id,
            session_id,
            me,
            &peers,
            secret,
            round1_packages,
            refreshing,
        );
        let mut runs = self.lock();
        match result {
            Ok((secret2, decoded, sealed)) => {
                let run = find_run(&mut runs, key_id, session_id)?;
                run.step = Some(Step::Round2 {
                    secret: secret2,
                    round1_packages: decoded,
                });
                Ok(sealed)
            }
            Err(e) => {
                // A run whose round 2 failed cannot be resumed.
                runs.remove(key_id);
                Err(e)
            }
        }
    }

    /// part2 (of the DKG or the refresh) and the sealing of each package to
    /// its recipient.
    #[allow(clippy::too_many_arguments)]
    fn compute_round2(
        &self,
        key_id: &KeyId,
        session_id: &[u8],
        me: u16,
        peers: &BTreeMap<u16, TransportKey>,
        secret: round1::SecretPackage<S>,
        round1_packages: &BTreeMap<u32, Vec<u8>>,
        refreshing: bool,
    ) -> Result<Round2Output<S>, DkgError> {
        let decoded = decode_round1::<S>(round1_packages)?;
        let (secret2, packages) = if refreshing {
            refresh::refresh_dkg_part2(secret, &decoded)
        } else {
            dkg::part2(secret, &decoded)
        }
        .map_err(peer_error::<S>)?;
        let mut sealed = BTreeMap::new();
        for (peer, peer_key) in peers {
            let package =
                packages
                    .get(&participant::<S>(*peer)?)
                    .ok_or_else(|| DkgError::PeerInvalid {
                        culprit: peer.to_string(),
                        reason: "FROST produced no round-2 package for it".into(),
                    })?;
            let plaintext = zeroize::Zeroizing::new(
                package
                    .serialize()
                    .map_err(|e| DkgError::InvalidArgument(e.to_string()))?,
            );
            let shared = self.token.dkg_shared_secret(peer_key)?;
            let binding = Binding {
                contents: Contents::DkgRound2,
                key_id,
                session_id,
                sender: me,
                recipient: *peer,
            };
            sealed.insert(
                u32::from(*peer),
                dkg_envelope::seal(&binding, &shared, &plaintext)?,
            );
        }
        Ok((secret2, decoded, sealed))
    }

    /// Step 3: opens and verifies the round-2 packages addressed to this
    /// node, derives the key share and keeps it for [`Self::commit`].
    /// Returns the public key package.
    ///
    /// Checks, in order: the run (as in step 2); sealed packages from
    /// exactly the other participants; the run is at this step; each
    /// envelope opens for this run, sender and recipient; each package
    /// decodes; FROST `part3` verifies every share against its sender's
    /// commitments (naming the culprit). A run that fails here is dropped.
    pub fn finish(
        &self,
        key_id: &KeyId,
        session_id: &[u8],
        sealed_packages: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<PublicKeyPackage<S>, DkgError> {
        let (me, peers, secret, round1_packages) = {
            let mut runs = self.lock();
            let run = find_run(&mut runs, key_id, session_id)?;
            check_peer_set(
                &run.peers,
                sealed_packages.keys(),
                "sealed round-2 packages",
            )?;
            match run.step.take() {
                Some(Step::Round2 {
                    secret,
                    round1_packages,
                }) => (run.me, run.peers.clone(), secret, round1_packages),
                other => {
                    run.step = other;
                    return Err(DkgError::OutOfOrder {
                        key_id: key_id.to_string(),
                        expected: "DkgRound2",
                    });
                }
            }
        };
        let old_public = {
            let mut runs = self.lock();
            match &find_run(&mut runs, key_id, session_id)?.mode {
                Mode::Create => None,
                Mode::Refresh { old_public } => Some(old_public.as_ref().clone()),
            }
        };
        let result = self.open_and_verify(
            key_id,
            session_id,
            me,
            &peers,
            &secret,
            &round1_packages,
            sealed_packages,
            old_public,
        );
        let mut runs = self.lock();
        match result {
            Ok((key_package, public_package)) => {
                if let Ok(run) = find_run(&mut runs, key_id, session_id) {
                    run.step = Some(Step::Finished {
                        key: Box::new(key_package),
                        public: Box::new(public_package.clone()),
                    });
                }
                Ok(public_package)
            }
            Err(e) => {
                // A run whose packages fail verification cannot be resumed.
                runs.remove(key_id);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open_and_verify(
        &self,
        key_id: &KeyId,
        session_id: &[u8],
        me: u16,
        peers: &BTreeMap<u16, TransportKey>,
        secret: &round2::SecretPackage<S>,
        round1_packages: &Round1Packages<S>,
        sealed_packages: &BTreeMap<u32, Vec<u8>>,
        old_public: Option<PublicKeyPackage<S>>,
    ) -> Result<(KeyPackage<S>, PublicKeyPackage<S>), DkgError> {
        let mut round2_packages = BTreeMap::new();
        for (sender, peer_key) in peers {
            let sealed = sealed_packages.get(&u32::from(*sender)).ok_or_else(|| {
                DkgError::InvalidArgument(format!("no sealed round-2 package from {sender}"))
            })?;
            let shared = self.token.dkg_shared_secret(peer_key)?;
            let binding = Binding {
                contents: Contents::DkgRound2,
                key_id,
                session_id,
                sender: *sender,
                recipient: me,
            };
            let plaintext = dkg_envelope::open(&binding, &shared, sealed)?;
            let package =
                round2::Package::deserialize(&plaintext).map_err(|e| DkgError::PeerInvalid {
                    culprit: sender.to_string(),
                    reason: e.to_string(),
                })?;
            round2_packages.insert(participant::<S>(*sender)?, package);
        }
        let Some(old_public) = old_public else {
            return dkg::part3(secret, round1_packages, &round2_packages).map_err(peer_error::<S>);
        };
        // The one place a refresh holds the current share in memory: FROST
        // adds the refreshing shares to it. Zeroized on drop.
        let old_share = self.vault.unseal_share(key_id)?;
        let group_key = *old_share.verifying_key();
        let (share, public) = refresh::refresh_dkg_shares(
            secret,
            round1_packages,
            &round2_packages,
            old_public,
            old_share,
        )
        .map_err(peer_error::<S>)?;
        if *share.verifying_key() != group_key || *public.verifying_key() != group_key {
            return Err(DkgError::RefreshMismatch {
                key_id: key_id.to_string(),
                reason: "the refreshed share is for another group key".into(),
            });
        }
        Ok((share, public))
    }

    /// Step 4: stores the share from step 3 if `group_key` is the group key
    /// this node computed. Ends the run either way.
    ///
    /// Checks, in order: the run (as in step 2) is finished; `group_key` is
    /// the computed group key; the vault holds no share for `key_id` yet.
    ///
    /// A refresh's share is stored as the next generation, next to the
    /// share in use ([`ShareVault::store_next`]), and the node's `stored`
    /// vote for the new package is sealed to every other participant.
    pub fn commit(
        &self,
        key_id: &KeyId,
        session_id: &[u8],
        group_key: &[u8],
    ) -> Result<Committed, DkgError> {
        // Taken before the run: a vote on the package waits for the store.
        let _decisions = self.decide();
        let (me, peers, key_package, public, refreshing) = {
            let mut runs = self.lock();
            let run = find_run(&mut runs, key_id, session_id)?;
            match run.step.take() {
                Some(Step::Finished { key, public }) => {
                    let me = run.me;
                    let peers = std::mem::take(&mut run.peers);
                    let refreshing = matches!(run.mode, Mode::Refresh { .. });
                    runs.remove(key_id);
                    (me, peers, key, public, refreshing)
                }
                other => {
                    run.step = other;
                    return Err(DkgError::OutOfOrder {
                        key_id: key_id.to_string(),
                        expected: "an earlier step",
                    });
                }
            }
        };
        let computed = key_package
            .verifying_key()
            .serialize()
            .map_err(|e| DkgError::InvalidArgument(e.to_string()))?;
        if computed != group_key {
            return Err(DkgError::GroupKeyMismatch {
                given: hex::encode(group_key),
                computed: hex::encode(computed),
            });
        }
        if refreshing {
            let info = self.vault.store_next(key_id, &key_package, &public)?;
            let generation = info.pending_generation.unwrap_or(info.generation);
            // The run's curve: this node's key is the one on its peers'.
            let own = peers
                .values()
                .next()
                .and_then(|peer| self.own_keys.on(peer.curve()))
                .unwrap_or(self.own_keys.primary())
                .clone();
            let participants: Vec<Participant> = peers
                .into_iter()
                .chain([(me, own)])
                .map(|(identifier, key)| Participant {
                    identifier: u32::from(identifier),
                    dkg_public_key: key.wire(),
                    attestation: None,
                })
                .collect();
            let electorate = Electorate::new::<S>(
                key_id,
                &info.pending_public_key_package,
                &info.group_key,
                me,
                &self.own_keys,
                &participants,
            )?;
            let stored_votes =
                electorate.cast(Vote::Stored, |peer| self.token.dkg_shared_secret(peer))?;
            Ok(Committed {
                info,
                generation,
                refresh: true,
                stored_votes,
            })
        } else {
            let info = self.vault.store(key_id, me, &key_package, &public)?;
            Ok(Committed {
                generation: info.generation,
                info,
                refresh: false,
                stored_votes: BTreeMap::new(),
            })
        }
    }

    /// How this node stands on a refresh of `key_id` to `package` (a
    /// serialized public key package), its vote sealed to every other
    /// participant ([`crate::refresh_vote`]): `Stored` when it holds a share
    /// of the package, waiting or in use; otherwise `Aborted`, after
    /// dropping any unfinished run of the key, so that it never stores one.
    ///
    /// Checks, in order: the node holds the key; the participants are
    /// exactly the package's, for the key's group key, this node under
    /// its identifier ([`Electorate::new`]); under mutual TLS, every other
    /// participant's attestation.
    pub fn vote(
        &self,
        key_id: &KeyId,
        package: &[u8],
        participants: &[Participant],
    ) -> Result<(Vote, BTreeMap<u32, Vec<u8>>), DkgError> {
        let _decisions = self.decide();
        let info = self
            .vault
            .info(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        let electorate = self.electorate(key_id, &info, package, participants)?;
        let vote =
            if info.public_key_package == package || info.pending_public_key_package == package {
                Vote::Stored
            } else {
                // No run of this key may store a share from now on.
                self.forget(key_id);
                Vote::Aborted
            };
        let votes = electorate.cast(vote, |peer| self.token.dkg_shared_secret(peer))?;
        Ok((vote, votes))
    }

    /// Puts the waiting share of `generation` in use (the old share is
    /// destroyed) once every other participant of its package has voted
    /// `stored`. Idempotent: the generation in use answers
    /// [`crate::vault::Activation::AlreadyActive`] without votes.
    ///
    /// Checks, in order: the node holds the key and a waiting share of
    /// `generation`; the electorate of the waiting share's package (as in
    /// [`Self::vote`]); every vote opens; one from every other
    /// participant.
    pub fn activate(
        &self,
        key_id: &KeyId,
        generation: u32,
        participants: &[Participant],
        stored_votes: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<(crate::vault::Activation, Vec<u16>), DkgError> {
        let _decisions = self.decide();
        let info = self.waiting(key_id, generation)?;
        if info.generation == generation {
            return Ok((crate::vault::Activation::AlreadyActive, Vec::new()));
        }
        let tally = self.open_votes(key_id, &info, participants, Vote::Stored, stored_votes)?;
        tally.require_all()?;
        let activation = self.vault.activate(key_id, generation)?;
        Ok((activation, tally.senders().collect()))
    }

    /// Destroys the waiting share of `generation` (the share in use stays)
    /// once another participant of its package has voted `aborted`. Says
    /// whether there was one to destroy, and whose votes allowed it.
    ///
    /// Checks, in order: the node holds the key; `generation` is not the
    /// share in use; no share of it waits (`false`, nothing to check);
    /// the electorate (as in [`Self::vote`]); every vote opens; at least
    /// one.
    pub fn discard(
        &self,
        key_id: &KeyId,
        generation: u32,
        participants: &[Participant],
        aborted_votes: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<(bool, Vec<u16>), DkgError> {
        let _decisions = self.decide();
        let info = self
            .vault
            .info(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        if info.generation == generation {
            return Err(VaultError::DiscardInUse {
                key_id: key_id.to_string(),
                generation,
            }
            .into());
        }
        if info.pending_generation != Some(generation) {
            return Ok((false, Vec::new()));
        }
        let tally = self.open_votes(key_id, &info, participants, Vote::Aborted, aborted_votes)?;
        tally.require_one()?;
        let discarded = self.vault.discard(key_id, generation)?;
        Ok((discarded, tally.senders().collect()))
    }

    /// Opens the `vote`s sealed to this node about the waiting share's
    /// package (its electorate checked as in [`Self::vote`]).
    fn open_votes(
        &self,
        key_id: &KeyId,
        info: &ShareInfo,
        participants: &[Participant],
        vote: Vote,
        ballots: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<crate::refresh_vote::Tally, DkgError> {
        let electorate =
            self.electorate(key_id, info, &info.pending_public_key_package, participants)?;
        Ok(electorate.open(vote, ballots, |peer| self.token.dkg_shared_secret(peer))?)
    }

    /// The key's share info, if `generation` is in use or waits.
    fn waiting(&self, key_id: &KeyId, generation: u32) -> Result<ShareInfo, DkgError> {
        let info = self
            .vault
            .info(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        if info.generation != generation && info.pending_generation != Some(generation) {
            return Err(VaultError::NoSuchGeneration {
                key_id: key_id.to_string(),
                asked: generation,
                active: info.generation,
                pending: info.pending_generation,
            }
            .into());
        }
        Ok(info)
    }

    /// The electorate of a refreshed `package` of the key `info`
    /// describes, with every other participant's attestation checked
    /// under mutual TLS.
    fn electorate(
        &self,
        key_id: &KeyId,
        info: &ShareInfo,
        package: &[u8],
        participants: &[Participant],
    ) -> Result<Electorate, DkgError> {
        let electorate = Electorate::new::<S>(
            key_id,
            package,
            &info.group_key,
            info.identifier,
            &self.own_keys,
            participants,
        )?;
        if let Some(peers) = self.peer_check() {
            check_peers(participants, u32::from(info.identifier), &peers.0)?;
        }
        Ok(electorate)
    }

    fn decide(&self) -> std::sync::MutexGuard<'_, ()> {
        self.decisions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Abandons the run for `key_id` if its session id matches.
    /// Whether a run for `key_id` is in progress (of this suite).
    pub fn has_run(&self, key_id: &KeyId) -> bool {
        self.lock().contains_key(key_id)
    }

    /// Drops any run for `key_id`, whatever its session (a round 1 of
    /// another kind for the same key id replaces it).
    pub fn forget(&self, key_id: &KeyId) {
        self.lock().remove(key_id);
    }

    pub fn abort(&self, key_id: &KeyId, session_id: &[u8]) {
        let mut runs = self.lock();
        if runs.get(key_id).is_some_and(|r| r.session_id == session_id) {
            runs.remove(key_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Run<S>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A round-1 request that passed [`check_round1`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRound1 {
    /// This node's participant number.
    pub me: u16,
    pub min_signers: u16,
    /// The number of participants.
    pub max_signers: u16,
    /// The other participants' transport keys, by number, all on the
    /// curve of this node's key in the run.
    pub peers: BTreeMap<u16, TransportKey>,
}

/// Validates a round-1 request without touching the token (pure; the key
/// id was checked when the [`KeyId`] was made). Checks, in order: the
/// session id's length; 2..=[`MAX_PARTICIPANTS`] participants; a threshold
/// of 2..=n; this node's number in 1..=65535; per participant, its number
/// and that its transport key is a point on secp256k1 or P-256; that every
/// key is on one curve; that this node appears once with one of `own`
/// and no other participant has one of them; no number twice.
pub fn check_round1(req: &Round1Request, own: &OwnKeys) -> Result<CheckedRound1, DkgError> {
    let bad = |m: String| Err(DkgError::InvalidArgument(m));
    if req.session_id.len() != SESSION_ID_LEN {
        return bad(format!(
            "session id must be {SESSION_ID_LEN} bytes, got {}",
            req.session_id.len()
        ));
    }
    let n = req.participants.len();
    if !(2..=MAX_PARTICIPANTS).contains(&n) {
        return bad(format!(
            "a DKG needs 2..={MAX_PARTICIPANTS} participants, got {n}"
        ));
    }
    let min = req.min_signers as usize;
    if !(2..=n).contains(&min) {
        return bad(format!(
            "threshold must be 2..={n} (the number of participants), got {min}"
        ));
    }
    let me = participant_number(req.me)?;
    let mut peers = BTreeMap::new();
    let mut keys = Vec::with_capacity(n);
    let mut seen_self = false;
    for p in &req.participants {
        let id = participant_number(p.identifier)?;
        let key = TransportKey::from_wire(&p.dkg_public_key).map_err(|e| {
            DkgError::InvalidArgument(format!("participant {id}: DKG public key is {e}"))
        })?;
        keys.push(key.clone());
        if id == me {
            if seen_self {
                return bad(format!("identifier {id} appears twice"));
            }
            seen_self = true;
            if !own.contains(&key) {
                return bad(format!(
                    "participant {id} is this node, but its DKG public key is not this node's"
                ));
            }
        } else {
            if own.contains(&key) {
                return bad(format!("participant {id} has this node's DKG public key"));
            }
            if peers.insert(id, key).is_some() {
                return bad(format!("identifier {id} appears twice"));
            }
        }
    }
    if let Err((a, b)) = one_curve(&keys) {
        return bad(format!(
            "the participants' DKG public keys are on different curves ({a} and {b}): a run needs one"
        ));
    }
    if !seen_self {
        return bad(format!(
            "this node's identifier {me} is not among the participants"
        ));
    }
    Ok(CheckedRound1 {
        me,
        min_signers: min as u16,
        max_signers: n as u16,
        peers,
    })
}

/// Checks a refresh's round 1 against the share this node holds (pure):
/// the public package it refreshes is the node's own sealed one (or, for a
/// share sealed without one, the coordinator's, which must name the node's
/// group key); this node keeps its identifier; the participants are
/// exactly the key's (a participant left out would keep a share that no
/// longer combines); the threshold is the key's. Returns the package.
pub fn check_refresh<S: Suite>(
    checked: &CheckedRound1,
    held: &ShareInfo,
    coordinators: Option<&[u8]>,
) -> Result<PublicKeyPackage<S>, DkgError> {
    let refuse = |reason: String| {
        Err(DkgError::RefreshMismatch {
            key_id: held.key_id.clone(),
            reason,
        })
    };
    let bytes = match (held.public_key_package.is_empty(), coordinators) {
        (false, Some(theirs)) if theirs != held.public_key_package.as_slice() => {
            return refuse(
                "the coordinator's public key package is not the one sealed with this node's share"
                    .into(),
            );
        }
        (false, _) => held.public_key_package.as_slice(),
        (true, Some(theirs)) => theirs,
        (true, None) => {
            return refuse(
                "the share was sealed without its public key package and the request carries none"
                    .into(),
            );
        }
    };
    let public = PublicKeyPackage::<S>::deserialize(bytes).map_err(|e| {
        DkgError::InvalidArgument(format!("the key's public key package is malformed: {e}"))
    })?;
    if public.verifying_key().serialize().ok().as_deref() != Some(&held.group_key[..]) {
        return refuse("the public key package names another group key".into());
    }
    if checked.me != held.identifier {
        return refuse(format!(
            "this node holds identifier {} of the key, not {}",
            held.identifier, checked.me
        ));
    }
    let mut key_participants: Vec<u16> = public
        .verifying_shares()
        .keys()
        .filter_map(S::participant_number)
        .collect();
    key_participants.sort_unstable();
    let mut run_participants: Vec<u16> =
        checked.peers.keys().copied().chain([checked.me]).collect();
    run_participants.sort_unstable();
    if key_participants != run_participants {
        return refuse(format!(
            "a refresh needs exactly the key's participants {key_participants:?}, got {run_participants:?}"
        ));
    }
    if let Some(min) = public.min_signers()
        && min != checked.min_signers
    {
        return refuse(format!(
            "the key's threshold is {min}, the run asks for {}",
            checked.min_signers
        ));
    }
    Ok(public)
}

/// Checks every other participant's attestation (`dkg_peer.rs`): each a
/// trusted, allowed, distinct identity vouching for its own transport key.
fn check_peers(participants: &[Participant], me: u32, check: &PeerCheck) -> Result<(), DkgError> {
    let mut names: BTreeMap<String, u16> = BTreeMap::new();
    for p in participants.iter().filter(|p| p.identifier != me) {
        let id = participant_number(p.identifier)?;
        let name = check
            .verify(&p.dkg_public_key, p.attestation.as_ref())
            .map_err(|reason| DkgError::UntrustedPeer {
                participant: id,
                reason,
            })?;
        if let Some(first) = names.insert(name.clone(), id) {
            return Err(DkgError::DuplicatePeer {
                first,
                second: id,
                name,
            });
        }
    }
    Ok(())
}

pub(crate) fn participant_number(n: u32) -> Result<u16, DkgError> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| DkgError::InvalidArgument(format!("identifier {n} is outside 1..=65535")))
}

/// The FROST identifier of a participant number checked earlier; a precise
/// refusal rather than a panic if it is not one.
pub(crate) fn participant<S: Suite>(n: u16) -> Result<Identifier<S>, DkgError> {
    ringi_frost::identifier(n)
        .ok_or_else(|| DkgError::InvalidArgument(format!("identifier {n} is outside 1..=65535")))
}

fn find_run<'a, S: Suite>(
    runs: &'a mut HashMap<KeyId, Run<S>>,
    key_id: &KeyId,
    session_id: &[u8],
) -> Result<&'a mut Run<S>, DkgError> {
    match runs.get_mut(key_id) {
        Some(run) if run.session_id == session_id && run.started.elapsed() < RUN_TTL => Ok(run),
        _ => Err(DkgError::NoRun(key_id.to_string())),
    }
}

fn check_peer_set<'a>(
    peers: &BTreeMap<u16, TransportKey>,
    got: impl Iterator<Item = &'a u32>,
    what: &str,
) -> Result<(), DkgError> {
    let got: Vec<u32> = got.copied().collect();
    let want: Vec<u32> = peers.keys().map(|p| u32::from(*p)).collect();
    if got != want {
        return Err(DkgError::InvalidArgument(format!(
            "{what} must come from exactly the other participants {want:?}, got {got:?}"
        )));
    }
    Ok(())
}

/// Decodes the round-1 packages the coordinator relays, by participant
/// number (pure). Checks, per package in number order: the number is
/// 1..=65535; the bytes decode as a round-1 package of suite `S`. (Whether
/// the senders are exactly this run's peers is checked before, and the
/// packages' proofs by FROST's `part2` after.)
pub fn decode_round1<S: Suite>(
    packages: &BTreeMap<u32, Vec<u8>>,
) -> Result<Round1Packages<S>, DkgError> {
    packages
        .iter()
        .map(|(id, bytes)| {
            let number = participant_number(*id)?;
            let package = round1::Package::deserialize(bytes).map_err(|e| {
                DkgError::InvalidArgument(format!(
                    "round-1 package of participant {id} is malformed: {e}"
                ))
            })?;
            Ok((participant::<S>(number)?, package))
        })
        .collect()
}

fn peer_error<S: Suite>(e: frost_core::Error<S>) -> DkgError {
    let culprit = e
        .culprits()
        .iter()
        .map(|c| S::participant_number(c).map_or_else(|| format!("{c:?}"), |n| n.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    if culprit.is_empty() {
        DkgError::InvalidArgument(format!("FROST refused the packages: {e}"))
    } else {
        DkgError::PeerInvalid {
            culprit,
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::transport_key::TransportCurve;

    fn key(seed: u8) -> Vec<u8> {
        let secret = k256::SecretKey::from_slice(&[seed; 32]).unwrap();
        secret.public_key().to_sec1_bytes().to_vec()
    }

    fn p256_key(seed: u8) -> Vec<u8> {
        let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
        TransportKey::from_point(TransportCurve::P256, &secret.public_key().to_sec1_bytes())
            .unwrap()
            .wire()
    }

    /// Node 1's keys: secp256k1 from seed 1, P-256 from seed 1.
    fn own() -> OwnKeys {
        OwnKeys::new(vec![
            TransportKey::from_wire(&key(1)).unwrap(),
            TransportKey::from_wire(&p256_key(1)).unwrap(),
        ])
        .unwrap()
    }

    fn request(participants: &[(u32, u8)], me: u32, min: u32) -> Round1Request {
        Round1Request {
            key_id: "k".parse().unwrap(),
            session_id: vec![1; SESSION_ID_LEN],
            me,
            min_signers: min,
            participants: participants
                .iter()
                .map(|(id, seed)| Participant {
                    identifier: *id,
                    dkg_public_key: key(*seed),
                    attestation: None,
                })
                .collect(),
        }
    }

    fn refusal(req: &Round1Request) -> String {
        match check_round1(req, &own()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {req:?}"),
        }
    }

    #[test]
    fn accepts_a_well_formed_request() {
        let checked = check_round1(&request(&[(1, 1), (2, 2), (3, 3)], 1, 2), &own()).unwrap();
        assert_eq!(checked.me, 1);
        assert_eq!((checked.min_signers, checked.max_signers), (2, 3));
        assert_eq!(
            checked.peers.keys().copied().collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn refuses_bad_thresholds_and_sets() {
        assert!(refusal(&request(&[(1, 1), (2, 2)], 1, 0)).contains("threshold must be 2..=2"));
        assert!(refusal(&request(&[(1, 1), (2, 2)], 1, 3)).contains("threshold must be 2..=2"));
        assert!(refusal(&request(&[(1, 1)], 1, 1)).contains("needs 2..="));
        assert!(refusal(&request(&[(1, 1), (2, 2), (2, 3)], 1, 2)).contains("appears twice"));
        assert!(
            refusal(&request(&[(1, 1), (2, 2)], 3, 2)).contains("has this node's DKG public key")
        );
        assert!(refusal(&request(&[(2, 2), (3, 3)], 1, 2)).contains("not among"));
        assert!(refusal(&request(&[(1, 2), (2, 3)], 1, 2)).contains("not this node's"));
        assert!(refusal(&request(&[(0, 1), (2, 2)], 1, 2)).contains("outside 1..=65535"));
        let mut short_session = request(&[(1, 1), (2, 2)], 1, 2);
        short_session.session_id = vec![1; 4];
        assert!(refusal(&short_session).contains("session id"));
        let mut bad_key = request(&[(1, 1), (2, 2)], 1, 2);
        bad_key.participants[1].dkg_public_key = vec![9; 33];
        assert!(refusal(&bad_key).contains("not a DKG transport key"));
    }

    #[test]
    fn a_run_is_on_one_curve_and_uses_this_nodes_key_on_it() {
        let mut p256_run = request(&[(1, 1), (2, 2), (3, 3)], 1, 2);
        for (p, seed) in p256_run.participants.iter_mut().zip([1, 2, 3]) {
            p.dkg_public_key = p256_key(seed);
        }
        let checked = check_round1(&p256_run, &own()).unwrap();
        assert!(
            checked
                .peers
                .values()
                .all(|k| k.curve() == TransportCurve::P256)
        );
        let mut mixed = p256_run.clone();
        mixed.participants[2].dkg_public_key = key(3);
        assert!(refusal(&mixed).contains("different curves"));
        // This node on P-256 with a key that is not its own.
        let mut not_mine = p256_run;
        not_mine.participants[0].dkg_public_key = p256_key(9);
        assert!(refusal(&not_mine).contains("not this node's"));
    }

    #[test]
    fn round1_packages_decode_or_name_the_sender() {
        use ringi_frost::Secp256k1;
        let (_, package) =
            dkg::part1::<Secp256k1, _>(participant(2).unwrap(), 3, 2, &mut rand::rngs::OsRng)
                .unwrap();
        let good = package.serialize().unwrap();
        let decoded = decode_round1::<Secp256k1>(&BTreeMap::from([(2, good.clone())])).unwrap();
        assert_eq!(
            decoded
                .keys()
                .map(Secp256k1::participant_number)
                .collect::<Vec<_>>(),
            vec![Some(2)]
        );
        let err = decode_round1::<Secp256k1>(&BTreeMap::from([(3, vec![1, 2, 3])])).unwrap_err();
        assert!(
            err.to_string().contains("participant 3 is malformed"),
            "{err}"
        );
        let err = decode_round1::<Secp256k1>(&BTreeMap::from([(0, good.clone())])).unwrap_err();
        assert!(err.to_string().contains("outside 1..=65535"), "{err}");
        let err = decode_round1::<Secp256k1>(&BTreeMap::from([(70_000, good)])).unwrap_err();
        assert!(err.to_string().contains("outside 1..=65535"), "{err}");
    }
}
