//! A refresh's votes: the signers switch to refreshed shares all together
//! or not at all, on each other's word, never on the coordinator's alone
//! (a two-phase commit whose votes the coordinator relays but cannot make).
//!
//! A refresh stores every participant's new share **next to** the one in
//! use; activating it destroys the old one. Were one signer to activate
//! while another never stored (or discarded) its new share, the key would
//! be split into generations that no longer reach the threshold together:
//! a compromised coordinator could make a key unusable without learning
//! anything. So, for a refreshed public key package P:
//!
//! - a node votes [`Vote::Stored`] only while it holds a share of P (waiting
//!   or in use): `DkgCommit` of the refresh returns the vote, `RefreshVote`
//!   gives it again;
//! - it votes [`Vote::Aborted`] only when it holds no share of P, after
//!   dropping any unfinished DKG run of the key, so it can never store one
//!   later (the vote and a run's commit take one lock,
//!   `DkgRuns::decisions`);
//! - it **activates** its share of P only with a `Stored` vote from every
//!   other participant of P ([`Tally::require_all`]): then every
//!   participant holds P and can be switched later, whatever the
//!   coordinator does now;
//! - it **discards** its waiting share of P only with an `Aborted` vote of
//!   another participant ([`Tally::require_one`]): that participant will
//!   never vote `Stored`, so no participant can have activated P.
//!
//! No node gives both votes for one P, so activation and discarding of P
//! exclude each other across the whole key.
//!
//! A vote is sealed from its sender to one recipient like a DKG round-2
//! package ([`crate::dkg_envelope`], its own domain per vote): AES-GCM under
//! a key derived from the two nodes' token-held transport keys, with P's
//! SHA-256 digest as the HKDF salt and as the plaintext. Only the two
//! tokens can make or open it; which transport key belongs to which
//! participant is attested under mutual TLS as in a DKG.
//!
//! Everything here is pure but for the ECDH, passed in as a function (the
//! token's in production), so unit tests and fuzz targets need no token.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::PublicKeyPackage;
use ringi_frost::Suite;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::dkg::Participant;
use crate::dkg_envelope::{self, Binding, Contents};
use crate::transport_key::{OwnKeys, TransportKey, one_curve};

/// How a node stands on a refresh to a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// It holds a share of the refreshed package (waiting or in use).
    Stored,
    /// It holds none and never will.
    Aborted,
}

impl Vote {
    fn contents(self) -> Contents {
        match self {
            Vote::Stored => Contents::RefreshStored,
            Vote::Aborted => Contents::RefreshAborted,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Vote::Stored => "stored",
            Vote::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VoteError {
    #[error("refresh votes: {0}")]
    InvalidArgument(String),
    #[error(
        "the refreshed public key package does not include this node's identifier {0}: not a refresh of this node's share"
    )]
    NotAParticipant(u16),
    #[error(
        "the {vote} vote from participant {sender} does not open: it was not sealed by that participant for this node and this refreshed package, or it was altered"
    )]
    Forged { vote: &'static str, sender: u16 },
    #[error(
        "not every participant has stored its refreshed share: no stored vote from participants {missing:?}; nothing activated"
    )]
    Missing { missing: Vec<u16> },
    #[error(
        "no participant has voted that it aborted the refresh to this package: the waiting share may be in use elsewhere; nothing discarded"
    )]
    NoAbort,
    #[error("the ECDH with participant {participant}'s transport key failed: {reason}")]
    Ecdh { participant: u16, reason: String },
}

/// SHA-256 of a serialized public key package: what a vote names.
pub fn digest(package: &[u8]) -> [u8; 32] {
    Sha256::digest(package).into()
}

/// The participants of a refreshed package who vote to (and for) this
/// node: checked by [`Electorate::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Electorate {
    key_id: String,
    digest: [u8; 32],
    me: u16,
    /// The other participants' transport keys.
    peers: BTreeMap<u16, TransportKey>,
}

impl Electorate {
    /// The electorate of `package` (serialized, as the node holds it or as
    /// the coordinator names it) for node `me` with transport keys `own`. Checks, in order: the package
    /// decodes; its group key is `group_key` (SEC1 compressed, the key the
    /// node holds); it includes `me`; `participants` are exactly the package's
    /// participants, each once, with a transport key, all on one curve,
    /// this node with its own on that curve. The participants' attestations are the caller's to
    /// check (they need the node's peer check).
    pub fn new<S: Suite>(
        key_id: &str,
        package: &[u8],
        group_key: &[u8],
        me: u16,
        own: &OwnKeys,
        participants: &[Participant],
    ) -> Result<Self, VoteError> {
        let bad = |m: String| Err(VoteError::InvalidArgument(m));
        let public = PublicKeyPackage::<S>::deserialize(package).map_err(|e| {
            VoteError::InvalidArgument(format!(
                "the refreshed public key package is malformed: {e}"
            ))
        })?;
        if public.verifying_key().serialize().ok().as_deref() != Some(group_key) {
            return bad("the refreshed public key package names another group key".into());
        }
        let members: BTreeSet<u16> = public
            .verifying_shares()
            .keys()
            .filter_map(S::participant_number)
            .collect();
        if !members.contains(&me) {
            return Err(VoteError::NotAParticipant(me));
        }
        let mut peers = BTreeMap::new();
        let mut keys = Vec::with_capacity(participants.len());
        let mut seen_me = false;
        for p in participants {
            let Some(id) = u16::try_from(p.identifier).ok().filter(|&n| n != 0) else {
                return bad(format!("identifier {} is outside 1..=65535", p.identifier));
            };
            let key = match TransportKey::from_wire(&p.dkg_public_key) {
                Ok(key) => key,
                Err(e) => return bad(format!("participant {id}: transport key is {e}")),
            };
            keys.push(key.clone());
            if id == me {
                if seen_me || !own.contains(&key) {
                    return bad(format!(
                        "participant {id} (this node) must appear once, with this node's transport key"
                    ));
                }
                seen_me = true;
            } else if peers.insert(id, key).is_some() {
                return bad(format!("participant {id} appears twice"));
            }
        }
        if let Err((a, b)) = one_curve(&keys) {
            return bad(format!(
                "the participants' transport keys are on different curves ({a} and {b})"
            ));
        }
        let named: BTreeSet<u16> = peers.keys().copied().chain(seen_me.then_some(me)).collect();
        if named != members {
            return bad(format!(
                "the participants must be exactly the package's {members:?}, got {named:?}"
            ));
        }
        Ok(Electorate {
            key_id: key_id.to_string(),
            digest: digest(package),
            me,
            peers,
        })
    }

    /// The other participants' transport keys, by identifier.
    pub fn peers(&self) -> &BTreeMap<u16, TransportKey> {
        &self.peers
    }

    /// This node's `vote`, sealed to every other participant (by
    /// identifier). `shared` is the ECDH of this node's transport key with
    /// a peer's.
    pub fn cast<E: std::fmt::Display>(
        &self,
        vote: Vote,
        mut shared: impl FnMut(&TransportKey) -> Result<Zeroizing<Vec<u8>>, E>,
    ) -> Result<BTreeMap<u32, Vec<u8>>, VoteError> {
        let mut sealed = BTreeMap::new();
        for (&peer, key) in &self.peers {
            let secret = shared(key).map_err(|e| VoteError::Ecdh {
                participant: peer,
                reason: e.to_string(),
            })?;
            let envelope =
                dkg_envelope::seal(&self.binding(vote, self.me, peer), &secret, &self.digest)
                    .map_err(|e| VoteError::InvalidArgument(e.to_string()))?;
            sealed.insert(u32::from(peer), envelope);
        }
        Ok(sealed)
    }

    /// Opens the `vote`s sealed to this node, by sender. Every one given
    /// must come from another participant and open.
    pub fn open<E: std::fmt::Display>(
        &self,
        vote: Vote,
        ballots: &BTreeMap<u32, Vec<u8>>,
        mut shared: impl FnMut(&TransportKey) -> Result<Zeroizing<Vec<u8>>, E>,
    ) -> Result<Tally, VoteError> {
        let mut senders = BTreeSet::new();
        for (&sender, sealed) in ballots {
            let Some((sender, key)) = u16::try_from(sender)
                .ok()
                .and_then(|s| self.peers.get_key_value(&s))
            else {
                return Err(VoteError::InvalidArgument(format!(
                    "a vote from {sender}, who is no other participant of the refreshed package"
                )));
            };
            let secret = shared(key).map_err(|e| VoteError::Ecdh {
                participant: *sender,
                reason: e.to_string(),
            })?;
            let forged = VoteError::Forged {
                vote: vote.as_str(),
                sender: *sender,
            };
            let plaintext =
                dkg_envelope::open(&self.binding(vote, *sender, self.me), &secret, sealed)
                    .map_err(|_| forged.clone())?;
            if plaintext.as_slice() != self.digest {
                return Err(forged);
            }
            senders.insert(*sender);
        }
        Ok(Tally {
            senders,
            peers: self.peers.keys().copied().collect(),
        })
    }

    fn binding(&self, vote: Vote, sender: u16, recipient: u16) -> Binding<'_> {
        Binding {
            contents: vote.contents(),
            key_id: &self.key_id,
            session_id: &self.digest,
            sender,
            recipient,
        }
    }
}

/// Who voted, once every vote given has opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    senders: BTreeSet<u16>,
    peers: BTreeSet<u16>,
}

impl Tally {
    /// Every other participant voted (activation: all hold the package).
    pub fn require_all(&self) -> Result<(), VoteError> {
        let missing: Vec<u16> = self.peers.difference(&self.senders).copied().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(VoteError::Missing { missing })
        }
    }

    /// At least one other participant voted (discarding: one will never
    /// hold the package).
    pub fn require_one(&self) -> Result<(), VoteError> {
        if self.senders.is_empty() {
            Err(VoteError::NoAbort)
        } else {
            Ok(())
        }
    }

    pub fn senders(&self) -> impl Iterator<Item = u16> + '_ {
        self.senders.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::keys::{IdentifierList, generate_with_dealer};
    use k256::SecretKey;
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    use ringi_frost::Secp256k1;

    /// Three nodes with transport keys, and a package of a 2-of-3 key.
    /// The ECDH is computed in memory (a unit-level stand-in for the token).
    struct Nodes {
        secrets: Vec<SecretKey>,
        package: Vec<u8>,
        group_key: Vec<u8>,
    }

    impl Nodes {
        fn new() -> Self {
            let mut rng = rand::thread_rng();
            let (_, public) =
                generate_with_dealer::<Secp256k1, _>(3, 2, IdentifierList::Default, &mut rng)
                    .unwrap();
            Nodes {
                secrets: (0..3).map(|_| SecretKey::random(&mut rng)).collect(),
                package: public.serialize().unwrap(),
                group_key: public.verifying_key().serialize().unwrap(),
            }
        }

        fn key(&self, i: usize) -> Vec<u8> {
            self.secrets[i]
                .public_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec()
        }

        fn own(&self, i: usize) -> OwnKeys {
            OwnKeys::new(vec![TransportKey::from_wire(&self.key(i)).unwrap()]).unwrap()
        }

        fn participants(&self) -> Vec<Participant> {
            (0..3)
                .map(|i| Participant {
                    identifier: i as u32 + 1,
                    dkg_public_key: self.key(i),
                    attestation: None,
                })
                .collect()
        }

        fn electorate(&self, i: usize) -> Electorate {
            Electorate::new::<Secp256k1>(
                "k",
                &self.package,
                &self.group_key,
                i as u16 + 1,
                &self.own(i),
                &self.participants(),
            )
            .unwrap()
        }

        /// Node `i`'s ECDH with a peer's transport key.
        fn ecdh(
            &self,
            i: usize,
        ) -> impl FnMut(&TransportKey) -> Result<Zeroizing<Vec<u8>>, String> + '_ {
            move |peer| {
                let point =
                    k256::PublicKey::from_sec1_bytes(peer.point()).map_err(|e| e.to_string())?;
                let shared = (point.to_projective() * *self.secrets[i].to_nonzero_scalar())
                    .to_affine()
                    .to_encoded_point(false);
                Ok(Zeroizing::new(shared.x().ok_or("identity")?.to_vec()))
            }
        }

        /// Node `from`'s vote sealed to node `to`.
        fn vote(&self, vote: Vote, from: usize, to: usize) -> (u32, Vec<u8>) {
            let mut cast = self.electorate(from).cast(vote, self.ecdh(from)).unwrap();
            let id = to as u32 + 1;
            (from as u32 + 1, cast.remove(&id).unwrap())
        }
    }

    #[test]
    fn activation_needs_every_other_participants_stored_vote() {
        let nodes = Nodes::new();
        let me = nodes.electorate(0);
        let all: BTreeMap<_, _> = [
            nodes.vote(Vote::Stored, 1, 0),
            nodes.vote(Vote::Stored, 2, 0),
        ]
        .into();
        let tally = me.open(Vote::Stored, &all, nodes.ecdh(0)).unwrap();
        assert_eq!(tally.require_all(), Ok(()));
        let one: BTreeMap<_, _> = [nodes.vote(Vote::Stored, 1, 0)].into();
        let tally = me.open(Vote::Stored, &one, nodes.ecdh(0)).unwrap();
        assert_eq!(
            tally.require_all(),
            Err(VoteError::Missing { missing: vec![3] })
        );
        let none = me
            .open(Vote::Stored, &BTreeMap::new(), nodes.ecdh(0))
            .unwrap();
        assert_eq!(
            none.require_all(),
            Err(VoteError::Missing {
                missing: vec![2, 3]
            })
        );
    }

    #[test]
    fn a_vote_is_neither_the_other_vote_nor_for_another_node_package_or_key() {
        let nodes = Nodes::new();
        let me = nodes.electorate(0);
        let forged = |sender| {
            Err(VoteError::Forged {
                vote: "stored",
                sender,
            })
        };
        // An aborted vote does not count as stored (nor the reverse).
        let aborted: BTreeMap<_, _> = [nodes.vote(Vote::Aborted, 1, 0)].into();
        assert_eq!(me.open(Vote::Stored, &aborted, nodes.ecdh(0)), forged(2));
        assert!(me.open(Vote::Aborted, &aborted, nodes.ecdh(0)).is_ok());
        // A vote sealed to node 3 does not open at node 1.
        let (_, to_three) = nodes.vote(Vote::Stored, 1, 2);
        let misrouted: BTreeMap<_, _> = [(2, to_three)].into();
        assert_eq!(me.open(Vote::Stored, &misrouted, nodes.ecdh(0)), forged(2));
        // A vote for another package does not open.
        let other = Nodes::new();
        let elsewhere = Electorate {
            digest: digest(&other.package),
            ..nodes.electorate(1)
        };
        let mut sealed = elsewhere.cast(Vote::Stored, nodes.ecdh(1)).unwrap();
        let wrong_package: BTreeMap<_, _> = [(2, sealed.remove(&1).unwrap())].into();
        assert_eq!(
            me.open(Vote::Stored, &wrong_package, nodes.ecdh(0)),
            forged(2)
        );
        // Nor one for another key id.
        let other_key = Electorate {
            key_id: "k2".into(),
            ..nodes.electorate(1)
        };
        let mut sealed = other_key.cast(Vote::Stored, nodes.ecdh(1)).unwrap();
        let wrong_key: BTreeMap<_, _> = [(2, sealed.remove(&1).unwrap())].into();
        assert_eq!(me.open(Vote::Stored, &wrong_key, nodes.ecdh(0)), forged(2));
        // A vote under the wrong sender's number does not open either.
        let (_, from_two) = nodes.vote(Vote::Stored, 1, 0);
        let renamed: BTreeMap<_, _> = [(3, from_two)].into();
        assert_eq!(me.open(Vote::Stored, &renamed, nodes.ecdh(0)), forged(3));
        // A vote "from" this node itself, or from no participant.
        let (_, v) = nodes.vote(Vote::Stored, 1, 0);
        for sender in [1, 4, 70_000] {
            let ballots: BTreeMap<_, _> = [(sender, v.clone())].into();
            assert!(matches!(
                me.open(Vote::Stored, &ballots, nodes.ecdh(0)),
                Err(VoteError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn discarding_needs_one_aborted_vote() {
        let nodes = Nodes::new();
        let me = nodes.electorate(1);
        let none = me
            .open(Vote::Aborted, &BTreeMap::new(), nodes.ecdh(1))
            .unwrap();
        assert_eq!(none.require_one(), Err(VoteError::NoAbort));
        let one: BTreeMap<_, _> = [nodes.vote(Vote::Aborted, 2, 1)].into();
        let tally = me.open(Vote::Aborted, &one, nodes.ecdh(1)).unwrap();
        assert_eq!(tally.require_one(), Ok(()));
        assert_eq!(tally.senders().collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn the_electorate_is_exactly_the_packages_participants() {
        let nodes = Nodes::new();
        let new = |me: u16, own: &OwnKeys, participants: &[Participant]| {
            Electorate::new::<Secp256k1>(
                "k",
                &nodes.package,
                &nodes.group_key,
                me,
                own,
                participants,
            )
        };
        let all = nodes.participants();
        assert!(new(1, &nodes.own(0), &all).is_ok());
        // A node outside the package.
        assert_eq!(
            new(4, &nodes.own(0), &all),
            Err(VoteError::NotAParticipant(4))
        );
        let refused = |r: Result<Electorate, VoteError>| {
            assert!(matches!(r, Err(VoteError::InvalidArgument(_))), "{r:?}")
        };
        // One participant left out, one added, one twice, this node under
        // another transport key, a key that is no point, number 0.
        refused(new(1, &nodes.own(0), &all[..2]));
        let mut extra = all.clone();
        extra.push(Participant {
            identifier: 4,
            ..all[1].clone()
        });
        refused(new(1, &nodes.own(0), &extra));
        let mut twice = all.clone();
        twice.push(all[2].clone());
        refused(new(1, &nodes.own(0), &twice));
        refused(new(1, &nodes.own(1), &all));
        let mut not_a_point = all.clone();
        not_a_point[2].dkg_public_key = vec![5; 33];
        refused(new(1, &nodes.own(0), &not_a_point));
        let mut zero = all.clone();
        zero[2].identifier = 0;
        refused(new(1, &nodes.own(0), &zero));
        refused(Electorate::new::<Secp256k1>(
            "k",
            b"not a package",
            &nodes.group_key,
            1,
            &nodes.own(0),
            &all,
        ));
        // A package of another group key.
        refused(Electorate::new::<Secp256k1>(
            "k",
            &Nodes::new().package,
            &nodes.group_key,
            1,
            &nodes.own(0),
            &all,
        ));
    }
}
