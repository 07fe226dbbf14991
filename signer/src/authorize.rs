//! The signer's own check of a request's approvals, before it touches its
//! token for that request.
//!
//! A stolen coordinator (or its credentials) must not be enough to obtain a
//! signature share, so every Commit and Sign must carry an approval bundle
//! that satisfies this node's pinned policy, evaluated here with this node's
//! clock; and the message in the signing package must be the approved one.
//!
//! Plain functions over domain types (no gRPC, no protobuf): the gRPC edge
//! decodes the wire bundle into a [`PresentedBundle`], and maps an
//! [`AuthorizationError`] to a status in `crate::error`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ringi_policy::encoding::{Canonical, sha256};
use ringi_policy::evaluate::{Outcome, Violation, describe_missing, evaluate_subject};
use ringi_policy::key_id::KeyId;
use ringi_policy::limits::CapExceeded;
use ringi_policy::policy::Policy;
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::Approval;
use ringi_policy::subject::{KeyFacts, Subject};
use ringi_proto::bundle::BundleError;

/// An approval bundle, decoded: the request and the approvals presented
/// for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalBundle {
    pub request: SigningRequest,
    pub approvals: Vec<Approval>,
}

impl ApprovalBundle {
    /// SHA-256 over an unambiguous encoding of everything [`evaluate`]
    /// reads: the request's canonical encoding and, per approval, its
    /// signed statement (which names the approver's key) and signature. Two
    /// bundles with the same digest get the same verdict at the same time.
    pub fn digest(&self) -> [u8; 32] {
        let mut encoding = Canonical::new("ringi signer remembered bundle v1")
            .bytes(&self.request.canonical())
            .u64(self.approvals.len() as u64);
        for a in &self.approvals {
            encoding = encoding
                .bytes(&a.statement.signed_bytes(&a.approver))
                .bytes(&a.signature);
        }
        sha256(&encoding.finish())
    }
}

/// The approval bundle a Commit or Sign call presented, as the gRPC edge
/// decoded it. A missing or malformed bundle is refused by [`authorize`],
/// the first check of both rounds, so the whole sequence of checks lives in
/// the rounds.
#[derive(Debug, PartialEq, Eq)]
pub enum PresentedBundle {
    /// The call carried no bundle.
    Missing,
    /// The call carried a bundle that does not decode.
    Malformed(BundleError),
    Decoded(Box<ApprovalBundle>),
}

impl From<Option<Result<(SigningRequest, Vec<Approval>), BundleError>>> for PresentedBundle {
    /// From the result of decoding the optional wire bundle
    /// (`ringi_proto::bundle::bundle_from_pb`).
    fn from(decoded: Option<Result<(SigningRequest, Vec<Approval>), BundleError>>) -> Self {
        match decoded {
            None => PresentedBundle::Missing,
            Some(Err(e)) => PresentedBundle::Malformed(e),
            Some(Ok((request, approvals))) => {
                PresentedBundle::Decoded(Box::new(ApprovalBundle { request, approvals }))
            }
        }
    }
}

/// Why this node will not sign (or commit to sign) a request. Each variant
/// names the rule; the messages are the ones the node has always returned.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("no approval bundle: this node signs only requests approved under its policy")]
    NoBundle,
    #[error(transparent)]
    MalformedBundle(BundleError),
    /// The bundle approves a request for another key than the call names.
    #[error("the approved request is for key {approved:?}, not {requested:?}")]
    WrongKey { approved: KeyId, requested: KeyId },
    /// Valid approvals, too few of them: department → (have, need).
    #[error("approval quorum not met: {}", describe_missing(.missing))]
    QuorumNotMet {
        missing: BTreeMap<String, (u32, u32)>,
    },
    /// An approver vetoed the request.
    #[error("the request was rejected by {approver} ({department}): {reason}")]
    Rejected {
        approver: String,
        department: String,
        reason: String,
    },
    /// The request was made under another policy than the one this node pins.
    #[error("request was made under policy {request}, but this node enforces policy {pinned}")]
    PolicyMismatch { pinned: String, request: String },
    #[error("request expired at {expires_at} (now {now})")]
    RequestExpired { expires_at: u64, now: u64 },
    #[error("approval #{index} by {approver}: expired at {expires_at} (now {now})")]
    ApprovalExpired {
        index: usize,
        approver: String,
        expires_at: u64,
        now: u64,
    },
    /// The signing package signs another message than the approved one
    /// (for a PSBT request: than the sighash this node computed for the
    /// input named).
    #[error("the signing package's message is not the message that was approved")]
    MessageMismatch,
    /// The key's spending caps, counted in this node's own ledger.
    #[error("spending cap: {0}")]
    CapExceeded(CapExceeded),
    /// Approved, but held at this node: a rejection sent here directly, or
    /// a freeze of its key or of every key (`crate::holds`).
    #[error(transparent)]
    Held(Box<ringi_policy::holds::Hold>),
    /// Approved, but the policy's time rules say not yet (a delay after
    /// full approval, signing hours).
    #[error(transparent)]
    NotYet(ringi_policy::time_rules::NotYet),
    /// Any other rule of the policy the request or an approval breaks
    /// (forged or foreign approvals, unknown approvers, lifetimes, ...).
    #[error(transparent)]
    Violation(Violation),
}

impl From<Violation> for AuthorizationError {
    /// Policy mismatch and expiry get variants of their own (a retry with a
    /// fresh request can pass); every other violation stays as it is.
    fn from(v: Violation) -> Self {
        match v {
            Violation::PolicyMismatch { pinned, request } => {
                AuthorizationError::PolicyMismatch { pinned, request }
            }
            Violation::RequestExpired { expires_at, now } => {
                AuthorizationError::RequestExpired { expires_at, now }
            }
            Violation::ApprovalExpired {
                index,
                approver,
                expires_at,
                now,
            } => AuthorizationError::ApprovalExpired {
                index,
                approver,
                expires_at,
                now,
            },
            other => AuthorizationError::Violation(other),
        }
    }
}

/// An approved request, and what it moves as this node derived it (for a
/// PSBT request: from the transaction, with this node's own key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub request: SigningRequest,
    pub subject: Subject,
}

impl Approved {
    /// The messages this request may sign: the approved message, or each
    /// input's BIP-341 sighash in input order.
    pub fn messages(&self) -> Vec<&[u8]> {
        match self.subject.transaction() {
            Some(t) => t.sighashes.iter().map(|h| h.as_slice()).collect(),
            None => vec![self.request.message.as_slice()],
        }
    }
}

/// Checks that `bundle` authorises signing with `key_id` (whose kind and
/// keys are `key`) under `policy` at `now`; returns the approved request
/// and its subject.
///
/// Checks, in order: a bundle was presented ([`AuthorizationError::NoBundle`]);
/// it decoded ([`AuthorizationError::MalformedBundle`]); its request is for
/// `key_id` ([`AuthorizationError::WrongKey`]); then the policy's
/// [`evaluate`]: policy hash, key rules, request lifetime and expiry,
/// destination, and every approval strictly (a bad one is a violation, not
/// skipped), then a veto, then the quorums.
pub fn authorize(
    policy: &Policy,
    key_id: &KeyId,
    key: &KeyFacts,
    bundle: &PresentedBundle,
    now: u64,
) -> Result<Approved, AuthorizationError> {
    let bundle = match bundle {
        PresentedBundle::Missing => return Err(AuthorizationError::NoBundle),
        PresentedBundle::Malformed(e) => {
            return Err(AuthorizationError::MalformedBundle(BundleError(
                e.0.clone(),
            )));
        }
        PresentedBundle::Decoded(b) => b,
    };
    if bundle.request.key_id != *key_id {
        return Err(AuthorizationError::WrongKey {
            approved: bundle.request.key_id.clone(),
            requested: key_id.clone(),
        });
    }
    let (outcome, subject) =
        evaluate_subject(policy, &bundle.request, key, &bundle.approvals, now)?;
    match outcome {
        Outcome::Approved => Ok(Approved {
            subject,
            request: bundle.request.clone(),
        }),
        Outcome::Pending { missing } => Err(AuthorizationError::QuorumNotMet { missing }),
        Outcome::Rejected {
            approver,
            department,
            reason,
        } => Err(AuthorizationError::Rejected {
            approver,
            department,
            reason,
        }),
    }
}

/// Bundles this node has already found approved, so round 2 need not verify
/// again the signatures round 1 verified. An entry is keyed by
/// [`ApprovalBundle::digest`] and is only used before the earliest expiry in
/// the bundle: `evaluate`'s verdict can only change through time, by expiry.
pub struct ApprovedBundles {
    entries: Mutex<HashMap<[u8; 32], (Approved, KeyFacts, u64)>>,
}

/// Most remembered bundles; beyond, expired ones are dropped, then all.
const MAX_REMEMBERED: usize = 4096;

impl Default for ApprovedBundles {
    fn default() -> Self {
        ApprovedBundles {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl ApprovedBundles {
    /// [`authorize`], remembering approved bundles until their earliest
    /// expiry. A remembered bundle is served only for its own key id.
    pub fn authorize(
        &self,
        policy: &Policy,
        key_id: &KeyId,
        key: &KeyFacts,
        bundle: &PresentedBundle,
        now: u64,
    ) -> Result<Approved, AuthorizationError> {
        let PresentedBundle::Decoded(decoded) = bundle else {
            return authorize(policy, key_id, key, bundle, now);
        };
        // Remembered per policy: a verdict under one policy says nothing
        // under its successor.
        let digest = sha256(
            &Canonical::new("ringi signer remembered verdict v1")
                .bytes(&decoded.digest())
                .bytes(&policy.hash())
                .finish(),
        );
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((approved, facts, valid_until)) = entries.get(&digest)
                && now < *valid_until
                && approved.request.key_id == *key_id
                && facts == key
            {
                return Ok(approved.clone());
            }
        }
        let approved = authorize(policy, key_id, key, bundle, now)?;
        let valid_until = decoded
            .approvals
            .iter()
            .map(|a| a.statement.expires_at)
            .chain([approved.request.expires_at])
            .min()
            .unwrap_or(0);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_REMEMBERED {
            entries.retain(|_, (_, _, until)| now < *until);
            if entries.len() >= MAX_REMEMBERED {
                entries.clear();
            }
        }
        entries.insert(digest, (approved.clone(), *key, valid_until));
        Ok(approved)
    }
}

/// Checks that the signing package signs exactly an approved message: the
/// request's message, or for a PSBT request one of the sighashes this node
/// computed itself from the transaction. Returns which (the input index; 0
/// for a raw message).
pub fn check_message(
    approved: &Approved,
    package_message: &[u8],
) -> Result<usize, AuthorizationError> {
    approved
        .messages()
        .iter()
        .position(|m| *m == package_message)
        .ok_or(AuthorizationError::MessageMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringi_proto::approval::v1 as pb;

    const FROST: KeyFacts = KeyFacts::FrostSecp256k1;

    fn key(k: &str) -> KeyId {
        KeyId::parse(k).unwrap()
    }

    fn decoded(bundle: &pb::ApprovalBundle) -> PresentedBundle {
        PresentedBundle::from(Some(ringi_proto::bundle::bundle_from_pb(bundle)))
    }

    #[test]
    fn no_bundle_is_permission_denied() {
        let policy = Policy::from_bytes(
            b"version = 1\n[[departments]]\nname = \"t\"\napprovers = [{ name = \"a\", key = \"p256:036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\" }]\n[keys.k]\nrequest_ttl_secs = 10\napproval_ttl_secs = 10\nrequire = { t = 1 }\n",
        )
        .unwrap();
        let err =
            authorize(&policy, &key("k"), &FROST, &PresentedBundle::from(None), 0).unwrap_err();
        assert_eq!(err, AuthorizationError::NoBundle);
        let err = authorize(
            &policy,
            &key("k"),
            &FROST,
            &decoded(&pb::ApprovalBundle::default()),
            0,
        )
        .unwrap_err();
        assert!(
            matches!(&err, AuthorizationError::MalformedBundle(e) if e.0 == "no request"),
            "{err:?}"
        );
    }

    /// A policy with one approver, and a bundle that approver approved,
    /// valid from 1000 until 1060.
    fn approved_bundle() -> (Policy, pb::ApprovalBundle) {
        use p256::ecdsa::signature::Signer;
        use ringi_policy::approver_key::ApproverKey;
        use ringi_policy::statement::{Decision, Statement};
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let key =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let text = format!(
            "version = 1\n[[departments]]\nname = \"t\"\napprovers = [{{ name = \"a\", key = \"{}\" }}]\n[keys.k]\nrequest_ttl_secs = 100\napproval_ttl_secs = 60\nrequire = {{ t = 1 }}\n",
            key.to_text()
        );
        let policy = Policy::from_bytes(text.as_bytes()).unwrap();
        let request = SigningRequest {
            psbt: None,
            key_id: "k".parse().unwrap(),
            message: b"m".to_vec(),
            metadata: Default::default(),
            requester: "r".into(),
            created_at: 1000,
            expires_at: 1100,
            policy_hash: policy.hash(),
            nonce: vec![1; ringi_policy::request::NONCE_LEN],
        };
        let statement = Statement::for_request(&request, "t", Decision::Approve, "", 1000, 1060);
        let sig: p256::ecdsa::Signature = sk.sign(&statement.signed_bytes(&key));
        let approval = Approval {
            statement,
            approver: key,
            signature: sig.to_bytes().to_vec(),
        };
        let bundle = pb::ApprovalBundle {
            request: Some(ringi_proto::bundle::request_to_pb(&request)),
            approvals: vec![ringi_proto::bundle::approval_to_pb(&approval)],
        };
        (policy, bundle)
    }

    #[test]
    fn remembered_bundles_are_reused_only_until_their_earliest_expiry() {
        let (policy, wire) = approved_bundle();
        let bundle = decoded(&wire);
        let remembered = ApprovedBundles::default();
        assert!(
            remembered
                .authorize(&policy, &key("k"), &FROST, &bundle, 1001)
                .is_ok()
        );
        assert!(
            remembered
                .authorize(&policy, &key("k"), &FROST, &bundle, 1059)
                .is_ok()
        );
        // The approval expires at 1060: evaluated again, and refused.
        let err = remembered
            .authorize(&policy, &key("k"), &FROST, &bundle, 1060)
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuthorizationError::ApprovalExpired {
                    index: 0,
                    expires_at: 1060,
                    now: 1060,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("expired"), "{err}");
        // Another key id with the same bundle is not served from memory.
        let err = remembered
            .authorize(&policy, &key("other"), &FROST, &bundle, 1001)
            .unwrap_err();
        assert_eq!(
            err,
            AuthorizationError::WrongKey {
                approved: key("k"),
                requested: key("other")
            }
        );
        // A changed bundle is a different entry, evaluated on its own.
        let mut tampered = wire.clone();
        tampered.approvals[0].signature[0] ^= 1;
        let err = remembered
            .authorize(&policy, &key("k"), &FROST, &decoded(&tampered), 1001)
            .unwrap_err();
        assert_eq!(
            err,
            AuthorizationError::Violation(Violation::BadSignature { index: 0 })
        );
    }

    #[test]
    fn the_digest_covers_every_field_evaluate_reads() {
        let (_, wire) = approved_bundle();
        let PresentedBundle::Decoded(bundle) = decoded(&wire) else {
            panic!("decodes")
        };
        let base = bundle.digest();
        let mut changed = bundle.clone();
        changed.request.metadata.amount += 1;
        assert_ne!(changed.digest(), base);
        let mut changed = bundle.clone();
        changed.approvals[0].statement.expires_at += 1;
        assert_ne!(changed.digest(), base);
        let mut changed = bundle.clone();
        changed.approvals[0].signature[0] ^= 1;
        assert_ne!(changed.digest(), base);
        let mut changed = bundle.clone();
        changed.approvals.push(changed.approvals[0].clone());
        assert_ne!(changed.digest(), base);
        assert_eq!(bundle.clone().digest(), base);
    }

    #[test]
    fn own_variants_read_as_the_policy_rule_they_replace() {
        for v in [
            Violation::PolicyMismatch {
                pinned: "aa".into(),
                request: "bb".into(),
            },
            Violation::RequestExpired {
                expires_at: 5,
                now: 6,
            },
            Violation::ApprovalExpired {
                index: 1,
                approver: "alice".into(),
                expires_at: 5,
                now: 6,
            },
            Violation::BadSignature { index: 2 },
        ] {
            assert_eq!(
                AuthorizationError::from(v.clone()).to_string(),
                v.to_string()
            );
        }
    }

    #[test]
    fn another_message_is_refused() {
        let request = SigningRequest {
            psbt: None,
            key_id: "k".parse().unwrap(),
            message: b"approved".to_vec(),
            metadata: Default::default(),
            requester: "r".into(),
            created_at: 0,
            expires_at: 1,
            policy_hash: [0; 32],
            nonce: Vec::new(),
        };
        let approved = Approved {
            subject: Subject::Declared {
                amount: request.metadata.amount,
                destination: request.metadata.destination.clone(),
            },
            request,
        };
        assert_eq!(check_message(&approved, b"approved"), Ok(0));
        let err = check_message(&approved, b"other").unwrap_err();
        assert_eq!(err, AuthorizationError::MessageMismatch);
    }
}
