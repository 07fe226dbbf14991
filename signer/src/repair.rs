//! Repairing a lost share (frost `keys::repairable`, the repairable
//! threshold scheme: Laing and Stinson, "A survey and refinement of
//! repairable threshold schemes", section 4): `t` helpers that hold shares
//! of the key rebuild participant `i`'s share for a new node, and none of
//! them learns it.
//!
//! Three steps, each a gRPC call from the coordinator, which relays
//! envelopes it cannot open ([`crate::dkg_envelope`], sealed between the
//! nodes' token-held transport keys):
//! 1. [`RepairRuns::help`] (each helper): splits its share's Lagrange term
//!    for `i` into one random delta per helper (frost
//!    `repair_share_part1`); keeps its own, seals the others to their
//!    helpers;
//! 2. [`RepairRuns::combine`] (each helper): adds the deltas addressed to
//!    it into one sigma (`repair_share_part2`) and seals it to the new
//!    node;
//! 3. [`RepairRuns::receive`] (the new node): adds the sigmas into the
//!    share (`repair_share_part3`), checks it against the key's verifying
//!    share for `i`, and seals it in its token.
//!
//! A repair hands a share to a node, so every node carries it out only
//! under a repair order of the policy's admins
//! ([`ringi_policy::key_order`]) naming the key, the participant and the
//! new node's transport key; under mutual TLS every peer's transport key is
//! attested by its certificate, exactly as in a DKG. A helper's delta lives
//! in memory between steps 1 and 2 only (zeroized, dropped after
//! [`RUN_TTL`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frost_core::Identifier;
use frost_core::keys::PublicKeyPackage;
use frost_core::keys::repairable::{self, Delta, Sigma};
use ringi_frost::Suite;
use ringi_policy::key_id::KeyId;
use ringi_policy::key_order::{Action, OrderRefused, SignedOrder, check_order};
use ringi_policy::policy::Policy;
use zeroize::Zeroizing;

use crate::dkg::{DkgRuns, Participant, participant, participant_number};
use crate::dkg_envelope::{self, Binding, Contents, EnvelopeError};
use crate::dkg_peer::PeerError;
use crate::rng;
use crate::token::TokenError;
use crate::transport_key::{OwnKeys, TransportKey, one_curve};
use crate::vault::{ShareInfo, VaultError};

/// The HKDF salt of a sigma envelope: the repair session, bound to the
/// key's kind and public key package as the sealing helper holds them
/// (the package's SHA-256; a share sealed before packages were kept binds
/// the kind only). The new node opens a sigma only under the kind and
/// package the request names, so a coordinator cannot make it seal its
/// share as another kind or with another package than its helpers hold.
pub fn sigma_context(session_id: &[u8], kind: ringi_frost::KeyKind, package: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"ringi repair sigma context v1\0");
    h.update([session_id.len().min(255) as u8]);
    h.update(session_id);
    h.update([kind.code()]);
    if package.is_empty() {
        h.update([0]);
    } else {
        h.update([1]);
        h.update(Sha256::digest(package));
    }
    h.finalize().into()
}

/// How long a helper keeps its delta between steps 1 and 2.
pub const RUN_TTL: Duration = Duration::from_secs(600);
/// Length of a repair session id.
pub const SESSION_ID_LEN: usize = 16;

/// Why a repair step was refused. Each variant names the rule.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Order(#[from] OrderRefused),
    #[error("the order is a {0} order, not a repair")]
    NotARepair(&'static str),
    #[error("the order is for key id {order:?}, the request for {request:?}")]
    OtherKey { order: String, request: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no key share for key id {0:?} on this node: it cannot help repair it")]
    NotHeld(String),
    #[error("a key share for key id {0:?} exists on this node already: nothing to repair here")]
    AlreadyHeld(String),
    #[error("this node holds participant {0} of the key: a helper cannot repair its own share")]
    OwnShare(u16),
    #[error(
        "the order gives participant {participant}'s share to transport key {ordered}, not to {given}"
    )]
    OtherRecipient {
        participant: u16,
        ordered: String,
        given: String,
    },
    #[error("{who} is not a trusted repair peer: {reason}")]
    UntrustedPeer { who: String, reason: PeerError },
    #[error("{first} and {second} are both {name:?}")]
    DuplicatePeer {
        first: String,
        second: String,
        name: String,
    },
    #[error(
        "the helpers are not the ones the order names ({0}): no node may take part in a repair the admins did not name it for"
    )]
    NotTheOrderedHelpers(String),
    #[error("participant {0} is no participant of the key as this node holds it")]
    NotAParticipant(u16),
    #[error("no repair run for key id {0:?} with this session id")]
    NoRun(String),
    #[error("FROST refused the repair: {0}")]
    Frost(String),
    #[error(
        "the rebuilt share does not match the key's verifying share for participant {0}: a helper sent a wrong value, or the public key package is not the key's; nothing stored"
    )]
    WrongShare(u16),
    #[error(
        "the sigma of helper {0} does not open for this key's kind and public key package as the request names them: that helper holds the key under another kind or package (the request is not the key's), or it did not seal this sigma for this node"
    )]
    Unvouched(u16),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl From<crate::dkg::DkgError> for RepairError {
    fn from(e: crate::dkg::DkgError) -> Self {
        RepairError::InvalidArgument(e.to_string())
    }
}

/// Step 1's request, decoded.
pub struct HelpRequest {
    pub order: SignedOrder,
    pub session_id: Vec<u8>,
    /// Every helper, this node included.
    pub helpers: Vec<Participant>,
    /// The node that receives the share (its identifier is the repaired
    /// participant's).
    pub recipient: Participant,
}

/// Step 3's request, decoded.
pub struct ReceiveRequest {
    pub order: SignedOrder,
    pub session_id: Vec<u8>,
    pub helpers: Vec<Participant>,
    /// The key's frost `PublicKeyPackage`, as the coordinator records it.
    pub public_key_package: Vec<u8>,
    /// Each helper's sealed sigma, by helper identifier.
    pub sealed_sigmas: BTreeMap<u32, Vec<u8>>,
}

/// What a repair order says, once checked ([`checked_order`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    pub key_id: KeyId,
    pub participant: u16,
    /// The new node's transport key, in its wire form.
    pub recipient: Vec<u8>,
    /// Exactly the helpers, by identifier: their transport keys in their
    /// wire form, on the recipient's curve (`check_order`).
    pub helpers: BTreeMap<u16, Vec<u8>>,
}

/// Checks a repair order against `policy` at `now` (pure): a valid order
/// of the admins (`check_order`), and a repair.
pub fn checked_order(
    policy: &Policy,
    order: &SignedOrder,
    now: u64,
) -> Result<Ordered, RepairError> {
    check_order(policy, order, now)?;
    match &order.order.action {
        Action::Repair {
            identifier,
            recipient,
            helpers,
        } => Ok(Ordered {
            key_id: order.order.key_id.clone(),
            participant: *identifier,
            recipient: recipient.clone(),
            helpers: helpers.clone(),
        }),
        other => Err(RepairError::NotARepair(other.name())),
    }
}

/// The helpers of a request, checked (pure): 1..=255 distinct identifiers,
/// none the repaired participant; each transport key a point on one curve;
/// `me` (if given) among them with one of its own keys. Returns the
/// transport keys by identifier.
pub fn check_helpers(
    helpers: &[Participant],
    repaired: u16,
    me: Option<(u16, &OwnKeys)>,
) -> Result<BTreeMap<u16, TransportKey>, RepairError> {
    let bad = |m: String| Err(RepairError::InvalidArgument(m));
    if helpers.is_empty() || helpers.len() > 255 {
        return bad(format!(
            "a repair needs 1..=255 helpers, got {}",
            helpers.len()
        ));
    }
    let mut keys = BTreeMap::new();
    for h in helpers {
        let id = participant_number(h.identifier)?;
        if id == repaired {
            return bad(format!("participant {id} cannot help repair its own share"));
        }
        let key = TransportKey::from_wire(&h.dkg_public_key).map_err(|e| {
            RepairError::InvalidArgument(format!("helper {id}: transport key is {e}"))
        })?;
        if keys.insert(id, key).is_some() {
            return bad(format!("helper {id} appears twice"));
        }
    }
    if let Err((a, b)) = one_curve(keys.values()) {
        return bad(format!(
            "the helpers' transport keys are on different curves ({a} and {b})"
        ));
    }
    if let Some((me, own)) = me {
        match keys.get(&me) {
            Some(k) if own.contains(k) => {}
            Some(_) => {
                return bad(format!(
                    "helper {me} is this node, with another transport key"
                ));
            }
            None => {
                return bad(format!(
                    "this node (participant {me}) is not among the helpers"
                ));
            }
        }
    }
    Ok(keys)
}

/// The request's helpers (checked by [`check_helpers`]) are exactly the
/// ones the order names (pure).
pub fn check_ordered_helpers(
    ordered: &Ordered,
    helpers: &BTreeMap<u16, TransportKey>,
) -> Result<(), RepairError> {
    let given: BTreeMap<u16, Vec<u8>> = helpers.iter().map(|(id, key)| (*id, key.wire())).collect();
    if given != ordered.helpers {
        let ids = |m: &BTreeMap<u16, Vec<u8>>| {
            m.keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(RepairError::NotTheOrderedHelpers(format!(
            "ordered: {}; in the request: {}{}",
            ids(&ordered.helpers),
            ids(&given),
            if ids(&given) == ids(&ordered.helpers) {
                " (with other transport keys)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// Every helper and the repaired participant are participants of the
/// key's public package `public` (pure).
fn check_participants<S: Suite>(
    public: &PublicKeyPackage<S>,
    repaired: u16,
    helpers: &BTreeMap<u16, TransportKey>,
) -> Result<(), RepairError> {
    for id in helpers.keys().copied().chain([repaired]) {
        if !public
            .verifying_shares()
            .contains_key(&participant::<S>(id)?)
        {
            return Err(RepairError::NotAParticipant(id));
        }
    }
    Ok(())
}

struct HelperRun {
    session_id: Vec<u8>,
    me: u16,
    participant: u16,
    /// The other helpers' transport keys, by identifier.
    others: BTreeMap<u16, TransportKey>,
    /// The new node's transport key.
    recipient: TransportKey,
    /// This helper's own delta, serialized.
    own_delta: Zeroizing<Vec<u8>>,
    started: Instant,
}

/// The repairs this node helps with, for keys of suite `S`, and the steps
/// of the node that receives a repaired share.
pub struct RepairRuns<S: Suite> {
    dkg: Arc<DkgRuns<S>>,
    runs: Mutex<HashMap<KeyId, HelperRun>>,
}

impl<S: Suite> RepairRuns<S> {
    /// Shares the DKG's vault, token, transport key and peer check.
    pub fn new(dkg: Arc<DkgRuns<S>>) -> Self {
        RepairRuns {
            dkg,
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// Under mutual TLS, checks each peer's attestation (and that no two
    /// share a name); returns the names by who they are.
    fn attested(&self, peers: &[(String, &Participant)]) -> Result<Vec<String>, RepairError> {
        let Some(check) = self.dkg.peer_check() else {
            return Ok(Vec::new());
        };
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (who, p) in peers {
            let name = check
                .0
                .verify(&p.dkg_public_key, p.attestation.as_ref())
                .map_err(|reason| RepairError::UntrustedPeer {
                    who: who.clone(),
                    reason,
                })?;
            if let Some(first) = names.insert(name.clone(), who.clone()) {
                return Err(RepairError::DuplicatePeer {
                    first,
                    second: who.clone(),
                    name,
                });
            }
            out.push(name);
        }
        Ok(out)
    }

    /// Step 1 (a helper): returns this helper's delta for each other
    /// helper, sealed to it.
    ///
    /// Checks, in order: the order (admins' quorum under `policy` at
    /// `now`, a repair, of this request's key); the session id; this node
    /// holds the key and is not the repaired participant; the helpers
    /// ([`check_helpers`], this node among them); the recipient is the
    /// order's transport key, under the repaired identifier; under mutual
    /// TLS, every other helper's and the recipient's attestation. Then FROST
    /// (which also requires at least the key's threshold of helpers).
    pub fn help(
        &self,
        req: HelpRequest,
        policy: &Policy,
        now: u64,
    ) -> Result<BTreeMap<u32, Vec<u8>>, RepairError> {
        let ordered = checked_order(policy, &req.order, now)?;
        let key_id = ordered.key_id.clone();
        if req.session_id.len() != SESSION_ID_LEN {
            return Err(RepairError::InvalidArgument(format!(
                "session id must be {SESSION_ID_LEN} bytes, got {}",
                req.session_id.len()
            )));
        }
        let info = self
            .dkg
            .vault()
            .info(&key_id)
            .ok_or_else(|| RepairError::NotHeld(key_id.to_string()))?;
        let me = info.identifier;
        if me == ordered.participant {
            return Err(RepairError::OwnShare(me));
        }
        let helpers = check_helpers(
            &req.helpers,
            ordered.participant,
            Some((me, self.dkg.own_keys())),
        )?;
        check_ordered_helpers(&ordered, &helpers)?;
        if !info.public_key_package.is_empty() {
            let public =
                PublicKeyPackage::<S>::deserialize(&info.public_key_package).map_err(|e| {
                    RepairError::InvalidArgument(format!("the sealed public key package: {e}"))
                })?;
            check_participants(&public, ordered.participant, &helpers)?;
        }
        let recipient = self.check_recipient(&ordered, &req.recipient)?;
        let mut peers: Vec<(String, &Participant)> = req
            .helpers
            .iter()
            .filter(|h| h.identifier != u32::from(me))
            .map(|h| (format!("helper {}", h.identifier), h))
            .collect();
        peers.push(("the recipient".to_string(), &req.recipient));
        self.attested(&peers)?;

        let share = self.dkg.vault().unseal_share(&key_id)?;
        let ids: Vec<Identifier<S>> = helpers
            .keys()
            .map(|h| participant::<S>(*h))
            .collect::<Result<_, _>>()?;
        let mut rng = rng::hedged(self.dkg.token())?;
        let deltas = repairable::repair_share_part1(
            &ids,
            &share,
            &mut rng,
            participant::<S>(ordered.participant)?,
        )
        .map_err(|e| RepairError::Frost(e.to_string()))?;
        drop(share);
        let mut own_delta = None;
        let mut sealed = BTreeMap::new();
        for (helper, key) in &helpers {
            let delta = deltas
                .get(&participant::<S>(*helper)?)
                .ok_or_else(|| RepairError::Frost(format!("no delta for helper {helper}")))?;
            let bytes = Zeroizing::new(delta.serialize());
            if *helper == me {
                own_delta = Some(bytes);
                continue;
            }
            let shared = self.dkg.token().dkg_shared_secret(key)?;
            let binding = Binding {
                contents: Contents::RepairDelta,
                key_id: &key_id,
                session_id: &req.session_id,
                sender: me,
                recipient: *helper,
            };
            sealed.insert(
                u32::from(*helper),
                dkg_envelope::seal(&binding, &shared, &bytes)?,
            );
        }
        let own_delta =
            own_delta.ok_or_else(|| RepairError::Frost("no delta for this helper".into()))?;
        let mut others = helpers;
        others.remove(&me);
        let mut runs = self.lock();
        runs.retain(|_, run| run.started.elapsed() < RUN_TTL);
        runs.insert(
            key_id,
            HelperRun {
                session_id: req.session_id,
                me,
                participant: ordered.participant,
                others,
                recipient,
                own_delta,
                started: Instant::now(),
            },
        );
        Ok(sealed)
    }

    /// The recipient of a repair: the order's transport key, under the
    /// repaired identifier. Returns its key.
    fn check_recipient(
        &self,
        ordered: &Ordered,
        recipient: &Participant,
    ) -> Result<TransportKey, RepairError> {
        if recipient.identifier != u32::from(ordered.participant) {
            return Err(RepairError::InvalidArgument(format!(
                "the recipient is named participant {}, the order repairs {}",
                recipient.identifier, ordered.participant
            )));
        }
        let given = TransportKey::from_wire(&recipient.dkg_public_key).map_err(|e| {
            RepairError::InvalidArgument(format!("the recipient's transport key is {e}"))
        })?;
        if given.wire() != ordered.recipient {
            return Err(RepairError::OtherRecipient {
                participant: ordered.participant,
                ordered: hex::encode(&ordered.recipient),
                given: hex::encode(given.wire()),
            });
        }
        Ok(given)
    }

    /// Step 2 (a helper): adds the deltas sealed to this helper by every
    /// other helper to its own, and returns the sum (sigma) sealed to the
    /// new node. Ends the run either way.
    ///
    /// Checks, in order: a run for `key_id` with this session id, younger
    /// than [`RUN_TTL`]; sealed deltas from exactly the other helpers; each
    /// opens for this run, sender and recipient, and decodes.
    pub fn combine(
        &self,
        key_id: &KeyId,
        session_id: &[u8],
        sealed_deltas: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<Vec<u8>, RepairError> {
        let run = {
            let mut runs = self.lock();
            match runs.remove(key_id) {
                Some(run) if run.session_id == session_id && run.started.elapsed() < RUN_TTL => run,
                Some(other) => {
                    // Another session's run stays.
                    runs.insert(key_id.clone(), other);
                    return Err(RepairError::NoRun(key_id.to_string()));
                }
                None => return Err(RepairError::NoRun(key_id.to_string())),
            }
        };
        let want: Vec<u32> = run.others.keys().map(|h| u32::from(*h)).collect();
        let got: Vec<u32> = sealed_deltas.keys().copied().collect();
        if want != got {
            return Err(RepairError::InvalidArgument(format!(
                "sealed deltas must come from exactly the other helpers {want:?}, got {got:?}"
            )));
        }
        let mut deltas = Vec::with_capacity(run.others.len() + 1);
        deltas.push(
            Delta::<S>::deserialize(&run.own_delta)
                .map_err(|e| RepairError::Frost(e.to_string()))?,
        );
        for (sender, key) in &run.others {
            let shared = self.dkg.token().dkg_shared_secret(key)?;
            let binding = Binding {
                contents: Contents::RepairDelta,
                key_id,
                session_id,
                sender: *sender,
                recipient: run.me,
            };
            let sealed = sealed_deltas
                .get(&u32::from(*sender))
                .ok_or_else(|| RepairError::InvalidArgument(format!("no delta from {sender}")))?;
            let plaintext = dkg_envelope::open(&binding, &shared, sealed)?;
            deltas.push(Delta::<S>::deserialize(&plaintext).map_err(|e| {
                RepairError::InvalidArgument(format!("delta from helper {sender}: {e}"))
            })?);
        }
        let sigma = repairable::repair_share_part2(&deltas);
        let plaintext = Zeroizing::new(sigma.serialize());
        let shared = self.dkg.token().dkg_shared_secret(&run.recipient)?;
        // The helper vouches for the key's kind and package as it holds
        // them: the new node opens the sigma only under the same.
        let held = self
            .dkg
            .vault()
            .info(key_id)
            .ok_or_else(|| RepairError::NotHeld(key_id.to_string()))?;
        let context = sigma_context(session_id, S::KIND, &held.public_key_package);
        let binding = Binding {
            contents: Contents::RepairSigma,
            key_id,
            session_id: &context,
            sender: run.me,
            recipient: run.participant,
        };
        Ok(dkg_envelope::seal(&binding, &shared, &plaintext)?)
    }

    /// Step 3 (the new node): rebuilds the share from the helpers' sigmas,
    /// checks it and seals it in the token (generation 0, with the key's
    /// public package).
    ///
    /// Checks, in order: the order (as in step 1) names this node's
    /// transport key; this node holds no share of the key; the helpers
    /// ([`check_helpers`]) and, under mutual TLS, their attestations; the
    /// public package decodes and has the repaired participant and every
    /// helper; sealed sigmas from exactly the helpers, each opening for
    /// this run and the request's kind and package ([`sigma_context`]: the
    /// helpers vouch for both); the rebuilt share's verifying share is the
    /// package's.
    pub fn receive(
        &self,
        req: ReceiveRequest,
        policy: &Policy,
        now: u64,
    ) -> Result<ShareInfo, RepairError> {
        let ordered = checked_order(policy, &req.order, now)?;
        let key_id = ordered.key_id.clone();
        // The order names one of this node's keys (on the repair's curve).
        let own_keys = self.dkg.own_keys();
        if !own_keys.all().iter().any(|k| k.wire() == ordered.recipient) {
            return Err(RepairError::OtherRecipient {
                participant: ordered.participant,
                ordered: hex::encode(&ordered.recipient),
                given: hex::encode(own_keys.primary().wire()),
            });
        }
        if self.dkg.vault().contains(&key_id) {
            return Err(RepairError::AlreadyHeld(key_id.to_string()));
        }
        let helpers = check_helpers(&req.helpers, ordered.participant, None)?;
        check_ordered_helpers(&ordered, &helpers)?;
        if helpers.values().any(|k| own_keys.contains(k)) {
            return Err(RepairError::InvalidArgument(
                "a helper has this node's transport key".into(),
            ));
        }
        let peers: Vec<(String, &Participant)> = req
            .helpers
            .iter()
            .map(|h| (format!("helper {}", h.identifier), h))
            .collect();
        self.attested(&peers)?;
        let public = PublicKeyPackage::<S>::deserialize(&req.public_key_package).map_err(|e| {
            RepairError::InvalidArgument(format!("the public key package is malformed: {e}"))
        })?;
        let me = participant::<S>(ordered.participant)?;
        let expected = *public.verifying_shares().get(&me).ok_or_else(|| {
            RepairError::InvalidArgument(format!(
                "the public key package has no participant {}",
                ordered.participant
            ))
        })?;
        for h in helpers.keys() {
            if !public
                .verifying_shares()
                .contains_key(&participant::<S>(*h)?)
            {
                return Err(RepairError::InvalidArgument(format!(
                    "helper {h} is no participant of the key"
                )));
            }
        }
        let want: Vec<u32> = helpers.keys().map(|h| u32::from(*h)).collect();
        let got: Vec<u32> = req.sealed_sigmas.keys().copied().collect();
        if want != got {
            return Err(RepairError::InvalidArgument(format!(
                "sealed sigmas must come from exactly the helpers {want:?}, got {got:?}"
            )));
        }
        // Each helper sealed its sigma under the kind and package it holds
        // (nothing but the kind for a share sealed before packages were
        // kept): the request's must be the same.
        let vouched = sigma_context(&req.session_id, S::KIND, &req.public_key_package);
        let legacy = sigma_context(&req.session_id, S::KIND, &[]);
        let mut sigmas = Vec::with_capacity(helpers.len());
        for (sender, key) in &helpers {
            let shared = self.dkg.token().dkg_shared_secret(key)?;
            let binding = |context| Binding {
                contents: Contents::RepairSigma,
                key_id: &key_id,
                session_id: context,
                sender: *sender,
                recipient: ordered.participant,
            };
            let sealed = req
                .sealed_sigmas
                .get(&u32::from(*sender))
                .ok_or_else(|| RepairError::InvalidArgument(format!("no sigma from {sender}")))?;
            let plaintext = match dkg_envelope::open(&binding(&vouched), &shared, sealed) {
                Ok(p) => p,
                Err(EnvelopeError::Open { .. }) => {
                    dkg_envelope::open(&binding(&legacy), &shared, sealed).map_err(|e| match e {
                        EnvelopeError::Open { .. } => RepairError::Unvouched(*sender),
                        other => other.into(),
                    })?
                }
                Err(e) => return Err(e.into()),
            };
            sigmas.push(Sigma::<S>::deserialize(&plaintext).map_err(|e| {
                RepairError::InvalidArgument(format!("sigma from helper {sender}: {e}"))
            })?);
        }
        let share = repairable::repair_share_part3(&sigmas, me, &public)
            .map_err(|e| RepairError::Frost(e.to_string()))?;
        if *share.verifying_share() != expected {
            return Err(RepairError::WrongShare(ordered.participant));
        }
        Ok(self
            .dkg
            .vault()
            .store(&key_id, ordered.participant, &share, &public)?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, HelperRun>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> Vec<u8> {
        let secret = k256::SecretKey::from_slice(&[seed; 32]).unwrap();
        secret.public_key().to_sec1_bytes().to_vec()
    }

    fn helper(id: u32, seed: u8) -> Participant {
        Participant {
            identifier: id,
            dkg_public_key: key(seed),
            attestation: None,
        }
    }

    #[test]
    fn a_sigma_is_bound_to_the_session_kind_and_package() {
        use ringi_frost::KeyKind::{BitcoinTaproot, FrostSecp256k1};
        let base = sigma_context(&[1; 16], FrostSecp256k1, b"package");
        assert_eq!(base, sigma_context(&[1; 16], FrostSecp256k1, b"package"));
        for other in [
            sigma_context(&[2; 16], FrostSecp256k1, b"package"),
            sigma_context(&[1; 16], BitcoinTaproot, b"package"),
            sigma_context(&[1; 16], FrostSecp256k1, b"another package"),
            sigma_context(&[1; 16], FrostSecp256k1, b""),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn only_the_ordered_helpers_may_take_part() {
        let ordered = Ordered {
            key_id: KeyId::parse("k").unwrap(),
            participant: 1,
            recipient: key(9),
            helpers: [(2, key(2)), (3, key(3))].into_iter().collect(),
        };
        let given = |pairs: &[(u16, u8)]| -> BTreeMap<u16, TransportKey> {
            pairs
                .iter()
                .map(|(id, seed)| (*id, TransportKey::from_wire(&key(*seed)).unwrap()))
                .collect()
        };
        assert!(check_ordered_helpers(&ordered, &given(&[(2, 2), (3, 3)])).is_ok());
        // An impostor under a real identifier (another transport key).
        let err = check_ordered_helpers(&ordered, &given(&[(2, 2), (3, 7)])).unwrap_err();
        assert!(err.to_string().contains("other transport keys"), "{err}");
        // Another helper set.
        assert!(check_ordered_helpers(&ordered, &given(&[(2, 2)])).is_err());
        assert!(check_ordered_helpers(&ordered, &given(&[(2, 2), (3, 3), (4, 4)])).is_err());
    }

    #[test]
    fn helpers_are_checked() {
        let own = OwnKeys::new(vec![TransportKey::from_wire(&key(1)).unwrap()]).unwrap();
        let ok = check_helpers(&[helper(1, 1), helper(2, 2)], 3, Some((1, &own))).unwrap();
        assert_eq!(ok.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        let err = |h: &[Participant], me: Option<(u16, &OwnKeys)>| {
            check_helpers(h, 3, me).unwrap_err().to_string()
        };
        assert!(err(&[], None).contains("1..=255 helpers"));
        assert!(err(&[helper(3, 3)], None).contains("its own share"));
        assert!(err(&[helper(1, 1), helper(1, 2)], None).contains("appears twice"));
        assert!(err(&[helper(0, 1)], None).contains("outside 1..=65535"));
        let mut bad = helper(2, 2);
        bad.dkg_public_key = vec![9; 33];
        assert!(err(&[bad], None).contains("not a DKG transport key"));
        let mut p256 = helper(2, 2);
        p256.dkg_public_key = TransportKey::from_point(
            crate::transport_key::TransportCurve::P256,
            &p256::SecretKey::from_slice(&[2; 32])
                .unwrap()
                .public_key()
                .to_sec1_bytes(),
        )
        .unwrap()
        .wire();
        assert!(err(&[helper(1, 1), p256], None).contains("different curves"));
        assert!(err(&[helper(2, 2)], Some((1, &own))).contains("not among the helpers"));
        assert!(err(&[helper(1, 5)], Some((1, &own))).contains("another transport key"));
    }
}
