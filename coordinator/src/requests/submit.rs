//! Submit: a wallet service (or the CLI) asks for a signature. The request
//! is checked ([`admit`], pure) and recorded in PENDING_APPROVAL under the
//! caller's idempotency key, with the key's spending caps counted in the
//! same store transaction ([`submit`]).
//!
//! What the caps and the allowlist judge is the request's subject
//! (`ringi_policy::subject`): the declared amount and destination of a
//! raw-message request; for a PSBT request, the payments derived from the
//! transaction (their sum, every address), after the PSBT's own rules and
//! the key's fee caps. A raw message on a bitcoin-taproot key is blind and
//! is admitted only if the key's policy allows blind signing.

use std::sync::Arc;

use rand::RngCore;
use ringi_policy::evaluate::Violation;
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_policy::request::{Metadata, NONCE_LEN, SigningRequest};
use ringi_policy::subject::{Subject, subject};

use crate::approved::check_message;
use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::request_store::{Inserted, NewRequest, RequestRecord};
use crate::signing;
use crate::store::KeyRecord;
use crate::store_writer;

/// What a wallet service (or the CLI) submits, decoded at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub key_id: KeyId,
    /// A raw-message request's message; empty for a PSBT request.
    pub message: Vec<u8>,
    pub asset: String,
    /// Decimal, in the asset's smallest unit (empty for a PSBT request).
    pub amount: String,
    pub destination: String,
    pub memo: String,
    pub requester: String,
    /// Operator routing: exactly `threshold` signer names, or none.
    pub signers: Vec<String>,
    pub idempotency_key: String,
    /// A PSBT request's unsigned PSBT (BIP-174, binary).
    pub psbt: Option<Vec<u8>>,
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// What an idempotency key must always map to: every field the caller
/// chose (times excluded, since a retry comes later; the nonce excluded,
/// since the coordinator draws a new one for every submission, a retry's
/// too).
pub fn content_hash(s: &Submission, amount: u128) -> [u8; 32] {
    let mut c = match &s.psbt {
        // Raw requests keep the encoding they had before PSBTs, so a retry
        // across an upgrade still finds its request.
        None => ringi_policy::encoding::Canonical::new("ringi submission v1"),
        Some(psbt) => {
            ringi_policy::encoding::Canonical::new("ringi psbt submission v1").bytes(psbt)
        }
    }
    .str(&s.key_id)
    .bytes(&s.message)
    .str(&s.asset)
    .u128(amount)
    .str(&s.destination)
    .str(&s.memo)
    .str(&s.requester);
    for signer in &s.signers {
        c = c.str(signer);
    }
    ringi_policy::encoding::sha256(&c.finish())
}

/// A new request's nonce: [`NONCE_LEN`] bytes from the operating system's
/// generator, so that two submissions of the same content in the same
/// second (under two idempotency keys) have two ids. Unpredictable as well
/// as unique: nobody can make a request whose id another submission will
/// have.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// A submission that passed every check, ready to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// What the store records.
    pub new: NewRequest,
    /// What the request moves, as the caps and the allowlist judged it.
    pub subject: Subject,
}

/// Every check of a submission that needs neither the store nor the
/// network: the policy has rules for the key; the message (or PSBT),
/// amount, requester and idempotency key are well formed; the request's
/// subject derives (a PSBT's rules and the key's fee caps; blind signing
/// only where the policy allows it); no destination is refused by the
/// key's allowlist; the routing names exactly `threshold` of the key's
/// signers. Returns the request to record (created at `now`, expiring after
/// the key's `request_ttl_secs`, with `nonce`, which [`submit`] draws fresh
/// for every submission with [`fresh_nonce`]) with what the store needs to
/// record it (the idempotency key, the content hash, the amount the caps
/// count, the caps). A retry is admitted with another nonce, and
/// so another id: the store returns the request first recorded under the
/// idempotency key instead, before it looks at the id.
pub fn admit(
    policy: &Policy,
    key: &KeyRecord,
    s: Submission,
    now: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<Admitted> {
    if key.key_id != s.key_id {
        return Err(Error::InvalidInput {
            field: "key_id",
            reason: format!("{:?} does not name the key {:?}", s.key_id, key.key_id),
        });
    }
    let rules = policy
        .key(&s.key_id)
        .ok_or_else(|| Error::NoRules(s.key_id.clone()))?;
    if let Some(psbt) = &s.psbt
        && psbt.is_empty()
    {
        return Err(Error::InvalidInput {
            field: "psbt",
            reason: "is empty".into(),
        });
    }
    // A PSBT request declares no amount: empty reads as none (and any
    // other value is refused below, by the request's shape).
    let amount: u128 = if s.psbt.is_some() && s.amount.is_empty() {
        0
    } else {
        s.amount.parse().map_err(|_| Error::InvalidInput {
            field: "amount",
            reason: format!("{:?} is not a non-negative integer", s.amount),
        })?
    };
    if s.requester.is_empty() {
        return Err(Error::InvalidInput {
            field: "requester",
            reason: "is empty".into(),
        });
    }
    if s.idempotency_key.is_empty() || s.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(Error::InvalidInput {
            field: "idempotency_key",
            reason: format!("must be 1..={MAX_IDEMPOTENCY_KEY_LEN} characters"),
        });
    }
    let content_hash = content_hash(&s, amount);
    let request = SigningRequest {
        key_id: s.key_id,
        message: s.message,
        metadata: Metadata {
            asset: s.asset,
            amount,
            destination: s.destination,
            memo: s.memo,
        },
        psbt: s.psbt,
        requester: s.requester,
        created_at: now,
        expires_at: now.saturating_add(rules.request_ttl_secs),
        policy_hash: policy.hash(),
        nonce: nonce.to_vec(),
    };
    check_message(&request)?;
    request.check_shape().map_err(Violation::Shape)?;
    let subject = subject(rules, &request, &key.facts()?)?;
    match &subject {
        Subject::Blind if rules.blind_signing.is_none() => {
            return Err(Violation::BlindSigningNotAllowed(request.key_id.clone()).into());
        }
        Subject::Blind => {}
        spend => {
            rules
                .quorums_for_all(spend.amount(), &spend.destinations())
                .map_err(|destination| Error::DestinationNotAllowed {
                    key: request.key_id.clone(),
                    destination,
                })?;
        }
    }
    if !s.signers.is_empty() {
        signing::candidates(key, &s.signers)?;
    }
    Ok(Admitted {
        new: NewRequest {
            counted_amount: subject.amount(),
            request,
            signers: s.signers,
            idempotency_key: s.idempotency_key,
            content_hash,
            limits: rules.limits.clone(),
        },
        subject,
    })
}

/// Records a new request in PENDING_APPROVAL, or returns the one first
/// recorded under the same requester and idempotency key; refuses a
/// request for a retired key ([`Error::KeyRetired`]), a retry's too.
pub async fn submit(c: &Arc<Coordinator>, s: Submission) -> Result<RequestRecord> {
    let policy = c.policy()?.clone();
    let key = c.key(&s.key_id).await?;
    let now = super::now();
    let Admitted { new, subject } = admit(&policy, key.record(), s, now, fresh_nonce())?;
    let daily_volume =
        ringi_policy::volumes::daily_volume(c.daily_volume_file.as_deref(), &new.request.key_id)?;
    let store = c.requests.clone();
    let keys = c.keys.clone();
    let (record, created) = store_writer::write(&c.requests, move || {
        // A retired key takes no new request (read here, in the write, so
        // a submission costs no extra hop).
        crate::retire::refuse_if_retired(keys.key_retirement(&new.request.key_id)?)?;
        match store.insert_request(&new, daily_volume, now)? {
            // As written, without reading it back (the store's contract
            // tests hold the two equal).
            Inserted::Created(_) => Ok((RequestRecord::submitted(&new, now), true)),
            Inserted::Existing(id) => Ok((store.request(&id)?, false)),
        }
    })
    .await?;
    let short = hex::encode(record.id);
    if created {
        let r = &record.request;
        tracing::info!(request_id = %short, key_id = %r.key_id, requester = %r.requester, "request submitted");
        let mut fields = vec![
            ("request_id", short.clone()),
            ("key_id", r.key_id.to_string()),
        ];
        match (&r.psbt, subject.transaction()) {
            (Some(psbt), Some(tx)) => fields.extend([
                (
                    "psbt_sha256",
                    hex::encode(ringi_policy::encoding::sha256(psbt)),
                ),
                ("txid", tx.txid.clone()),
                ("total_paid_sats", tx.total_paid().to_string()),
                ("destinations", tx.destinations().join(",")),
                ("fee_sats", tx.fee.to_string()),
            ]),
            _ => fields.extend([
                (
                    "message_sha256",
                    hex::encode(ringi_policy::encoding::sha256(&r.message)),
                ),
                ("asset", r.metadata.asset.clone()),
                ("amount", r.metadata.amount.to_string()),
                ("destination", r.metadata.destination.clone()),
            ]),
        }
        if matches!(subject, Subject::Blind) {
            fields.push(("blind", "true".into()));
        }
        fields.push(("requester", r.requester.clone()));
        crate::fault::crash_point("after-submit");
        crate::metrics::transition(crate::request_state::State::PendingApproval);
        c.audit("request_submitted", &fields);
        c.publish(&record);
    } else {
        tracing::info!(request_id = %short, "request resubmitted with its idempotency key; returning it");
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approved::MAX_MESSAGE_LEN;
    use crate::requests::fixture::{self, HOT, NOW, taproot};
    use crate::store::contract;
    use tonic::Code;

    const NONCE: [u8; NONCE_LEN] = [0x11; NONCE_LEN];

    fn submission() -> Submission {
        Submission {
            key_id: KeyId::parse("hot-1").unwrap(),
            message: vec![0xab; 32],
            asset: "BTC".into(),
            amount: "1000".into(),
            destination: "bc1qexample".into(),
            memo: "rebalance".into(),
            requester: "wallet-service".into(),
            signers: Vec::new(),
            idempotency_key: "k1".into(),
            psbt: None,
        }
    }

    #[test]
    fn a_good_submission_becomes_a_request_under_the_policy() {
        let f = fixture::fixture();
        let key = contract::key_record("hot-1");
        let new = admit(&f.policy, &key, submission(), NOW, NONCE)
            .unwrap()
            .new;
        let r = &new.request;
        assert_eq!(r.key_id, "hot-1");
        assert_eq!(r.metadata.amount, 1000);
        assert_eq!((r.created_at, r.expires_at), (NOW, NOW + 86400));
        assert_eq!(r.policy_hash, f.policy.hash());
        assert_eq!(new.idempotency_key, "k1");
        assert_eq!(new.content_hash, content_hash(&submission(), 1000));
        assert_eq!(new.counted_amount, 1000);
        // A retry later maps to the same content.
        let later = admit(&f.policy, &key, submission(), NOW + 5, NONCE)
            .unwrap()
            .new;
        assert_eq!(later.content_hash, new.content_hash);
        assert_ne!(later.request.id(), r.id());
    }

    /// Two submissions of the same content in the same second differ by
    /// their nonces: two ids of one content, and the idempotency key's
    /// content hash does not see the nonce (a retry maps to the first
    /// request). The nonces `submit` draws are fresh every time.
    #[test]
    fn the_same_submission_twice_in_a_second_is_two_ids() {
        let f = fixture::fixture();
        let key = contract::key_record("hot-1");
        let (n1, n2) = (fresh_nonce(), fresh_nonce());
        assert_ne!(n1, n2);
        let a = admit(&f.policy, &key, submission(), NOW, n1).unwrap().new;
        let b = admit(&f.policy, &key, submission(), NOW, n2).unwrap().new;
        assert_eq!(
            (&a.request.nonce[..], &b.request.nonce[..]),
            (&n1[..], &n2[..])
        );
        assert_ne!(a.request.id(), b.request.id());
        assert_eq!(a.request.content_digest(), b.request.content_digest());
        assert_eq!(a.content_hash, b.content_hash);
        let same_but_nonce = SigningRequest {
            nonce: b.request.nonce.clone(),
            ..a.request.clone()
        };
        assert_eq!(same_but_nonce, b.request);
    }

    #[test]
    fn every_refusal_names_its_rule_and_code() {
        let f = fixture::fixture();
        let key = contract::key_record("hot-1");
        type Change = fn(&mut Submission);
        let cases: [(Change, Code, &str); 9] = [
            (
                |s| s.message.clear(),
                Code::InvalidArgument,
                "message must be 1..=",
            ),
            (
                |s| s.message = vec![0; MAX_MESSAGE_LEN + 1],
                Code::InvalidArgument,
                "message must be 1..=",
            ),
            (
                |s| s.amount = "-1".into(),
                Code::InvalidArgument,
                "amount \"-1\" is not a non-negative integer",
            ),
            (
                |s| s.requester.clear(),
                Code::InvalidArgument,
                "requester is empty",
            ),
            (
                |s| s.idempotency_key.clear(),
                Code::InvalidArgument,
                "idempotency_key must be 1..=128 characters",
            ),
            (
                |s| s.idempotency_key = "x".repeat(129),
                Code::InvalidArgument,
                "idempotency_key must be 1..=128",
            ),
            (
                |s| s.signers = vec!["a".into()],
                Code::InvalidArgument,
                "signs with exactly 2 signers",
            ),
            (
                |s| s.signers = vec!["a".into(), "z".into()],
                Code::InvalidArgument,
                "signer \"z\" holds no share of key \"hot-1\"",
            ),
            (
                |s| s.key_id = KeyId::parse("cold-1").unwrap(),
                Code::InvalidArgument,
                "key_id",
            ),
        ];
        for (change, code, needle) in cases {
            let mut s = submission();
            change(&mut s);
            let e = admit(&f.policy, &key, s, NOW, NONCE).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let cold = contract::key_record("cold-1");
        let mut s = submission();
        s.key_id = cold.key_id.clone();
        let e = admit(&f.policy, &cold, s, NOW, NONCE).unwrap_err();
        assert!(matches!(e, Error::NoRules(_)), "{e}");
        assert_eq!(e.code(), Code::FailedPrecondition);
    }

    #[test]
    fn the_allowlist_refuses_unlisted_destinations() {
        let f = fixture::fixture_with(fixture::ALLOWLIST);
        let key = contract::key_record("hot-1");
        let mut s = submission();
        s.destination = "bc1qattacker".into();
        let e = admit(&f.policy, &key, s, NOW, NONCE).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.to_string().contains("not on the allowlist"), "{e}");
        let mut s = submission();
        s.destination = "bc1qexchange".into();
        assert!(admit(&f.policy, &key, s, NOW, NONCE).is_ok());
    }

    fn psbt_submission(key_id: &str, psbt: Vec<u8>) -> Submission {
        Submission {
            key_id: KeyId::parse(key_id).unwrap(),
            message: Vec::new(),
            asset: String::new(),
            amount: String::new(),
            destination: String::new(),
            psbt: Some(psbt),
            ..submission()
        }
    }

    /// A PSBT request counts its derived payments (change and fee aside)
    /// and its id commits to the PSBT.
    #[test]
    fn a_psbt_request_counts_what_its_transaction_pays() {
        let f = fixture::fixture_with(&taproot::section(""));
        let key = taproot::key("tr-1");
        let own = taproot::own(&key);
        let psbt = taproot::psbt(
            &key,
            &[60_000, 40_000],
            &[
                (taproot::script(1), 30_000),
                (own.script(), 50_000),
                (taproot::script(2), 19_000),
            ],
        );
        let admitted = admit(
            &f.policy,
            &key,
            psbt_submission("tr-1", psbt.clone()),
            NOW,
            NONCE,
        )
        .unwrap();
        assert_eq!(admitted.new.counted_amount, 49_000);
        assert_eq!(admitted.new.request.psbt.as_ref(), Some(&psbt));
        assert_eq!(admitted.new.request.metadata.amount, 0);
        let tx = admitted.subject.transaction().expect("a transaction");
        assert_eq!(tx.fee, 1_000);
        assert_eq!(tx.change.len(), 1);
        assert_eq!(
            tx.destinations(),
            vec![taproot::listed(1), taproot::listed(2)]
        );
        // "0" is no declared amount either.
        let mut zero = psbt_submission("tr-1", psbt.clone());
        zero.amount = "0".into();
        assert!(admit(&f.policy, &key, zero, NOW, NONCE).is_ok());
        // Another PSBT is other content under the same idempotency key.
        let other = taproot::psbt(&key, &[60_000], &[(taproot::script(1), 59_000)]);
        let again = admit(&f.policy, &key, psbt_submission("tr-1", other), NOW, NONCE).unwrap();
        assert_ne!(again.new.content_hash, admitted.new.content_hash);
    }

    /// Every refusal of a PSBT request names what is wrong, with the code
    /// of its kind of rule.
    #[test]
    fn bad_psbt_requests_are_refused_with_the_rule() {
        let f = fixture::fixture_with(&taproot::section(""));
        let key = taproot::key("tr-1");
        let own = taproot::own(&key);
        let good = || taproot::psbt(&key, &[60_000], &[(taproot::script(1), 59_000)]);
        let mut foreign = ringi_psbt::bitcoin::psbt::Psbt::deserialize(&good()).unwrap();
        foreign.inputs[0]
            .witness_utxo
            .as_mut()
            .unwrap()
            .script_pubkey = taproot::script(9);
        type Change = Box<dyn Fn(&mut Submission)>;
        let cases: Vec<(Change, Code, &str)> = vec![
            (
                Box::new(|s| s.message = vec![1]),
                Code::InvalidArgument,
                "a PSBT request declares no message",
            ),
            (
                Box::new(|s| s.amount = "5".into()),
                Code::InvalidArgument,
                "declares no amount",
            ),
            (
                Box::new(|s| s.destination = "bcrt1qx".into()),
                Code::InvalidArgument,
                "declares no destination",
            ),
            (
                Box::new(|s| s.psbt = Some(Vec::new())),
                Code::InvalidArgument,
                "psbt is empty",
            ),
            (
                Box::new(|s| s.psbt = Some(b"psbt\xff garbage".to_vec())),
                Code::InvalidArgument,
                "PSBT: the PSBT does not decode",
            ),
            (
                Box::new(move |s| s.psbt = Some(foreign.serialize())),
                Code::InvalidArgument,
                "PSBT: input 0: spends",
            ),
            (
                Box::new({
                    let psbt = taproot::psbt(&key, &[60_000], &[(taproot::script(1), 50_000)]);
                    move |s| s.psbt = Some(psbt.clone())
                }),
                Code::ResourceExhausted,
                "the fee of 10000 sat exceeds the key's max_sats of 5000 sat",
            ),
            (
                Box::new({
                    let psbt = taproot::psbt(
                        &key,
                        &[60_000],
                        &[(taproot::script(1), 20_000), (taproot::script(3), 39_000)],
                    );
                    move |s| s.psbt = Some(psbt.clone())
                }),
                Code::PermissionDenied,
                "is not on the allowlist",
            ),
            (
                Box::new({
                    let psbt = taproot::psbt(&key, &[60_000], &[(own.script(), 59_000)]);
                    move |s| {
                        s.psbt = Some(psbt.clone());
                        s.signers = vec!["a".into()];
                    }
                }),
                Code::InvalidArgument,
                "signs with exactly 2 signers",
            ),
        ];
        for (change, code, needle) in cases {
            let mut s = psbt_submission("tr-1", good());
            change(&mut s);
            let e = admit(&f.policy, &key, s, NOW, NONCE).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        // The unlisted address is named.
        let psbt = taproot::psbt(&key, &[60_000], &[(taproot::script(3), 59_000)]);
        let e = admit(&f.policy, &key, psbt_submission("tr-1", psbt), NOW, NONCE).unwrap_err();
        assert!(e.to_string().contains(&taproot::listed(3)), "{e}");
    }

    /// A PSBT needs a bitcoin-taproot key with a network.
    #[test]
    fn a_psbt_needs_a_taproot_key_with_a_network() {
        let no_network = taproot::section("").replace("network = \"regtest\"\n", "");
        let f = fixture::fixture_with(&format!("{HOT}\n{no_network}"));
        let key = taproot::key("tr-1");
        let psbt = taproot::psbt(&key, &[60_000], &[(taproot::script(1), 59_000)]);
        let e = admit(
            &f.policy,
            &key,
            psbt_submission("tr-1", psbt.clone()),
            NOW,
            NONCE,
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains("sets no network"), "{e}");
        let frost = contract::key_record("hot-1");
        let e = admit(
            &f.policy,
            &frost,
            psbt_submission("hot-1", psbt),
            NOW,
            NONCE,
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains("is a frost-secp256k1 key"), "{e}");
    }

    /// A raw message on a taproot key is blind: refused unless the policy
    /// allows blind signing, and then it counts nothing (its quorum is its
    /// own).
    #[test]
    fn a_raw_message_on_a_taproot_key_needs_blind_signing() {
        let key = taproot::key("tr-1");
        let raw = Submission {
            key_id: KeyId::parse("tr-1").unwrap(),
            ..submission()
        };
        let f = fixture::fixture_with(&taproot::section(""));
        let e = admit(&f.policy, &key, raw.clone(), NOW, NONCE).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        assert!(e.to_string().contains("would be signed blind"), "{e}");
        let f = fixture::fixture_with(&taproot::section(
            "blind_signing = { require = { security = 1 } }",
        ));
        let admitted = admit(&f.policy, &key, raw, NOW, NONCE).unwrap();
        assert_eq!(admitted.subject, Subject::Blind);
        assert_eq!(admitted.new.counted_amount, 0);
    }
}
