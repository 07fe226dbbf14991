//! Submit: a wallet service (or the CLI) asks for a signature. The request
//! is checked ([`admit`], pure) and recorded in PENDING_APPROVAL under the
//! caller's idempotency key, with the key's spending caps counted in the
//! same store transaction ([`submit`]).

use std::sync::Arc;

use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_policy::request::{Metadata, SigningRequest};

use crate::approved::MAX_MESSAGE_LEN;
use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::request_store::{Inserted, NewRequest, RequestRecord};
use crate::signing;
use crate::store::{KeyRecord, blocking};

/// What a wallet service (or the CLI) submits, decoded at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub key_id: KeyId,
    pub message: Vec<u8>,
    pub asset: String,
    /// Decimal, in the asset's smallest unit.
    pub amount: String,
    pub destination: String,
    pub memo: String,
    pub requester: String,
    /// Operator routing: exactly `threshold` signer names, or none.
    pub signers: Vec<String>,
    pub idempotency_key: String,
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// What an idempotency key must always map to: every field the caller
/// chose (times excluded, since a retry comes later).
pub fn content_hash(s: &Submission, amount: u128) -> [u8; 32] {
    let mut c = ringi_policy::encoding::Canonical::new("ringi submission v1")
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

/// Every check of a submission that needs neither the store nor the
/// network: the policy has rules for the key; the message, amount,
/// requester and idempotency key are well formed; the destination is not
/// refused by the key's allowlist; the routing names exactly `threshold`
/// of the key's signers. Returns the request to record (created at `now`,
/// expiring after the key's `request_ttl_secs`) with what the store needs
/// to record it (the idempotency key, the content hash, the caps).
pub fn admit(policy: &Policy, key: &KeyRecord, s: Submission, now: u64) -> Result<NewRequest> {
    if key.key_id != s.key_id {
        return Err(Error::InvalidInput {
            field: "key_id",
            reason: format!("{:?} does not name the key {:?}", s.key_id, key.key_id),
        });
    }
    let rules = policy
        .key(&s.key_id)
        .ok_or_else(|| Error::NoRules(s.key_id.clone()))?;
    if s.message.is_empty() || s.message.len() > MAX_MESSAGE_LEN {
        return Err(Error::InvalidInput {
            field: "message",
            reason: format!(
                "must be 1..={MAX_MESSAGE_LEN} bytes, got {}",
                s.message.len()
            ),
        });
    }
    let amount: u128 = s.amount.parse().map_err(|_| Error::InvalidInput {
        field: "amount",
        reason: format!("{:?} is not a non-negative integer", s.amount),
    })?;
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
    if rules.quorums_for(amount, &s.destination).is_none() {
        return Err(Error::DestinationNotAllowed {
            key: s.key_id.clone(),
            destination: s.destination.clone(),
        });
    }
    if !s.signers.is_empty() {
        signing::candidates(key, &s.signers)?;
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
        requester: s.requester,
        created_at: now,
        expires_at: now.saturating_add(rules.request_ttl_secs),
        policy_hash: policy.hash(),
    };
    Ok(NewRequest {
        request,
        signers: s.signers,
        idempotency_key: s.idempotency_key,
        content_hash,
        limits: rules.limits.clone(),
    })
}

/// Records a new request in PENDING_APPROVAL, or returns the one first
/// recorded under the same requester and idempotency key.
pub async fn submit(c: &Arc<Coordinator>, s: Submission) -> Result<RequestRecord> {
    let policy = c.policy()?.clone();
    let key = c.key(&s.key_id).await?;
    let now = super::now();
    let new = admit(&policy, &key.record, s, now)?;
    let daily_volume =
        ringi_policy::volumes::daily_volume(c.daily_volume_file.as_deref(), &new.request.key_id)?;
    let store = c.requests.clone();
    let (record, created) = blocking(move || {
        let inserted = store.insert_request(&new, daily_volume, now)?;
        let created = matches!(inserted, Inserted::Created(_));
        Ok((store.request(&inserted.id())?, created))
    })
    .await?;
    let short = hex::encode(record.id);
    if created {
        let r = &record.request;
        tracing::info!(request_id = %short, key_id = %r.key_id, requester = %r.requester, "request submitted");
        c.audit(
            "request_submitted",
            &[
                ("request_id", short.clone()),
                ("key_id", r.key_id.to_string()),
                (
                    "message_sha256",
                    hex::encode(ringi_policy::encoding::sha256(&r.message)),
                ),
                ("asset", r.metadata.asset.clone()),
                ("amount", r.metadata.amount.to_string()),
                ("destination", r.metadata.destination.clone()),
                ("requester", r.requester.clone()),
            ],
        );
        c.notify(record.id);
    } else {
        tracing::info!(request_id = %short, "request resubmitted with its idempotency key; returning it");
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::fixture::{self, NOW};
    use crate::store::contract;
    use tonic::Code;

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
        }
    }

    #[test]
    fn a_good_submission_becomes_a_request_under_the_policy() {
        let f = fixture::fixture();
        let key = contract::key_record("hot-1");
        let new = admit(&f.policy, &key, submission(), NOW).unwrap();
        let r = &new.request;
        assert_eq!(r.key_id, "hot-1");
        assert_eq!(r.metadata.amount, 1000);
        assert_eq!((r.created_at, r.expires_at), (NOW, NOW + 86400));
        assert_eq!(r.policy_hash, f.policy.hash());
        assert_eq!(new.idempotency_key, "k1");
        assert_eq!(new.content_hash, content_hash(&submission(), 1000));
        // A retry later maps to the same content.
        let later = admit(&f.policy, &key, submission(), NOW + 5).unwrap();
        assert_eq!(later.content_hash, new.content_hash);
        assert_ne!(later.request.id(), r.id());
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
            let e = admit(&f.policy, &key, s, NOW).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let cold = contract::key_record("cold-1");
        let mut s = submission();
        s.key_id = cold.key_id.clone();
        let e = admit(&f.policy, &cold, s, NOW).unwrap_err();
        assert!(matches!(e, Error::NoRules(_)), "{e}");
        assert_eq!(e.code(), Code::FailedPrecondition);
    }

    #[test]
    fn the_allowlist_refuses_unlisted_destinations() {
        let f = fixture::fixture_with(fixture::ALLOWLIST);
        let key = contract::key_record("hot-1");
        let mut s = submission();
        s.destination = "bc1qattacker".into();
        let e = admit(&f.policy, &key, s, NOW).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.to_string().contains("not on the allowlist"), "{e}");
        let mut s = submission();
        s.destination = "bc1qexchange".into();
        assert!(admit(&f.policy, &key, s, NOW).is_ok());
    }
}
