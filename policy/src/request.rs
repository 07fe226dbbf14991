//! A signing request: what is to be signed, what approvers are shown, who
//! asked, and under which policy. Its id is the SHA-256 of its canonical
//! encoding, so the id commits to every field: changing the message, the
//! amount or the destination after approval changes the id, and the
//! approvals no longer match.
//!
//! Every request carries a nonce, 16 random bytes the coordinator draws at
//! submission, so that two submissions of the same content by the same
//! requester in the same second (under two idempotency keys) are two
//! requests with two ids. Its id is the v2 encoding:
//!
//! ```text
//! request_id = SHA-256(Canonical("ringi signing request v2")
//!     ‖ key_id ‖ message ‖ asset ‖ amount (u128) ‖ destination ‖ memo
//!     ‖ requester ‖ created_at (u64) ‖ expires_at (u64) ‖ policy_hash
//!     ‖ nonce)
//! ```
//!
//! A request made before nonces has none (an empty nonce), and keeps the v1
//! id it was stored and approved under: the same fields without the nonce,
//! under `"ringi signing request v1"`.
//!
//! A PSBT request (a `bitcoin-taproot` key spending coins) has no declared
//! message, asset, amount or destination: what it pays is derived from the
//! transaction ([`crate::subject`]), so the id commits to the PSBT itself,
//! and through it to the unsigned transaction, every prevout and every
//! input's sighash type:
//!
//! ```text
//! request_id = SHA-256(Canonical("ringi psbt signing request v2")
//!     ‖ key_id ‖ psbt ‖ memo ‖ requester ‖ created_at (u64)
//!     ‖ expires_at (u64) ‖ policy_hash ‖ nonce)
//! ```
//!
//! (v1, without a nonce: `"ringi psbt signing request v1"`, the nonce left
//! out.) The content digest, what approvals name as the content approved,
//! has no nonce: the same content is the same content whatever its id.

use crate::encoding::{Canonical, sha256};
use crate::key_id::KeyId;

/// The length of a request's nonce.
pub const NONCE_LEN: usize = 16;

/// What approvers see about a request, besides the raw message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Asset code, e.g. "BTC".
    pub asset: String,
    /// Amount in the asset's smallest unit (satoshi, wei, ...).
    pub amount: u128,
    /// Where the funds go (an address).
    pub destination: String,
    /// Purpose, free text.
    pub memo: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningRequest {
    pub key_id: KeyId,
    /// The exact bytes to be signed (a raw-message request); empty for a
    /// PSBT request.
    pub message: Vec<u8>,
    /// What the requester declares (a raw-message request); for a PSBT
    /// request only the memo, the rest empty.
    pub metadata: Metadata,
    /// A PSBT request: the unsigned PSBT (BIP-174, binary) whose inputs the
    /// key signs.
    pub psbt: Option<Vec<u8>>,
    /// Who asked (a wallet service or a person), as the policy names them.
    pub requester: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub expires_at: u64,
    /// SHA-256 of the policy file in force when the request was made.
    pub policy_hash: [u8; 32],
    /// [`NONCE_LEN`] random bytes the coordinator chose at submission, part
    /// of the id (so that identical submissions are distinct requests);
    /// empty only for requests made before nonces, whose ids are the v1
    /// encodings.
    pub nonce: Vec<u8>,
}

impl SigningRequest {
    /// The canonical encoding the id is computed over: v2 with the nonce,
    /// or, for a request made before nonces, v1 exactly as it was.
    pub fn canonical(&self) -> Vec<u8> {
        let v2 = !self.nonce.is_empty();
        let encoding = if let Some(psbt) = &self.psbt {
            Canonical::new(if v2 {
                "ringi psbt signing request v2"
            } else {
                "ringi psbt signing request v1"
            })
            .str(&self.key_id)
            .bytes(psbt)
            .str(&self.metadata.memo)
            .str(&self.requester)
            .u64(self.created_at)
            .u64(self.expires_at)
            .bytes(&self.policy_hash)
        } else {
            Canonical::new(if v2 {
                "ringi signing request v2"
            } else {
                "ringi signing request v1"
            })
            .str(&self.key_id)
            .bytes(&self.message)
            .str(&self.metadata.asset)
            .u128(self.metadata.amount)
            .str(&self.metadata.destination)
            .str(&self.metadata.memo)
            .str(&self.requester)
            .u64(self.created_at)
            .u64(self.expires_at)
            .bytes(&self.policy_hash)
        };
        if v2 {
            encoding.bytes(&self.nonce).finish()
        } else {
            encoding.finish()
        }
    }

    /// The request id.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.canonical())
    }

    /// SHA-256 of the message and the metadata: what an approval statement
    /// names as "the content approved". Not the nonce: it tells requests
    /// apart, it is no content.
    pub fn content_digest(&self) -> [u8; 32] {
        if let Some(psbt) = &self.psbt {
            return sha256(
                &Canonical::new("ringi psbt request content v1")
                    .bytes(psbt)
                    .str(&self.metadata.memo)
                    .finish(),
            );
        }
        sha256(
            &Canonical::new("ringi request content v1")
                .bytes(&self.message)
                .str(&self.metadata.asset)
                .u128(self.metadata.amount)
                .str(&self.metadata.destination)
                .str(&self.metadata.memo)
                .finish(),
        )
    }
}

/// Why a request's fields do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("a PSBT request declares no {0}: what it pays is derived from the transaction")]
    DeclaredOnPsbt(&'static str),
    #[error("a request needs a message to sign or a PSBT")]
    Empty,
    #[error(
        "nonce must be {NONCE_LEN} bytes (or empty, for a request made before nonces), got {0}"
    )]
    NonceLength(usize),
}

impl SigningRequest {
    /// A PSBT request carries nothing its id does not commit to: no
    /// message, asset, amount or destination (they would be shown to
    /// approvers without being approved). A raw request has a message.
    /// The nonce is [`NONCE_LEN`] bytes, or empty (a request made before
    /// nonces).
    pub fn check_shape(&self) -> Result<(), ShapeError> {
        if !self.nonce.is_empty() && self.nonce.len() != NONCE_LEN {
            return Err(ShapeError::NonceLength(self.nonce.len()));
        }
        if self.psbt.is_none() {
            return if self.message.is_empty() {
                Err(ShapeError::Empty)
            } else {
                Ok(())
            };
        }
        let declared = [
            ("message", !self.message.is_empty()),
            ("asset", !self.metadata.asset.is_empty()),
            ("amount", self.metadata.amount != 0),
            ("destination", !self.metadata.destination.is_empty()),
        ];
        match declared.into_iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(ShapeError::DeclaredOnPsbt(field)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> SigningRequest {
        SigningRequest {
            key_id: KeyId::parse("hot-1").unwrap(),
            message: vec![0xab; 32],
            metadata: Metadata {
                asset: "BTC".into(),
                amount: 150_000_000,
                destination: "bc1qexample".into(),
                memo: "exchange rebalance".into(),
            },
            psbt: None,
            requester: "wallet-service".into(),
            created_at: 1_800_000_000,
            expires_at: 1_800_003_600,
            policy_hash: [7; 32],
            nonce: Vec::new(),
        }
    }

    /// A request made with a nonce (the v2 id).
    pub fn with_nonce(nonce: u8) -> SigningRequest {
        SigningRequest {
            nonce: vec![nonce; NONCE_LEN],
            ..sample()
        }
    }

    #[test]
    fn id_commits_to_every_field() {
        let variants: [fn(&mut SigningRequest); 10] = [
            |r| r.key_id = KeyId::parse("hot-1x").unwrap(),
            |r| r.message[0] ^= 1,
            |r| r.metadata.asset = "ETH".into(),
            |r| r.metadata.amount += 1,
            |r| r.metadata.destination.push('x'),
            |r| r.metadata.memo.push('x'),
            |r| r.requester.push('x'),
            |r| r.created_at += 1,
            |r| r.expires_at += 1,
            |r| r.policy_hash[0] ^= 1,
        ];
        for base in [sample(), with_nonce(1)] {
            for change in variants {
                let mut r = base.clone();
                change(&mut r);
                assert_ne!(r.id(), base.id());
            }
        }
    }

    /// Two submissions of the same content at the same second differ by
    /// their nonces alone: two ids, one content digest (what approvals
    /// name). A nonce makes a v2 id, never the v1 one.
    #[test]
    fn two_nonces_make_two_ids_of_one_content() {
        let (v1, a, b) = (sample(), with_nonce(1), with_nonce(2));
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), v1.id());
        assert_ne!(b.id(), v1.id());
        let mut last_byte = with_nonce(1);
        last_byte.nonce[NONCE_LEN - 1] ^= 1;
        assert_ne!(last_byte.id(), a.id());
        assert_eq!(a.content_digest(), v1.content_digest());
        assert_eq!(b.content_digest(), v1.content_digest());
        let (psbt_a, psbt_b) = (
            SigningRequest {
                nonce: vec![1; NONCE_LEN],
                ..psbt_sample()
            },
            SigningRequest {
                nonce: vec![2; NONCE_LEN],
                ..psbt_sample()
            },
        );
        assert_ne!(psbt_a.id(), psbt_b.id());
        assert_ne!(psbt_a.id(), psbt_sample().id());
        assert_eq!(psbt_a.content_digest(), psbt_sample().content_digest());
    }

    /// The v2 encodings as docs/approvals.md gives them (the v1 fields,
    /// then the nonce, under the v2 domains), pinned as computed
    /// independently from the document.
    #[test]
    fn a_request_with_a_nonce_has_the_documented_v2_id() {
        assert_eq!(
            hex::encode(with_nonce(1).id()),
            "28979093833bce80cd86b9d53de06bf841b1ab2b826c08e0522e59b260a5066b"
        );
        let psbt = SigningRequest {
            nonce: vec![1; NONCE_LEN],
            ..psbt_sample()
        };
        assert_eq!(
            hex::encode(psbt.id()),
            "dd1524418f1e7335d074a825d52b5cdb8ecaca2140a06a498ad9bb31ad40c0ab"
        );
    }

    #[test]
    fn a_nonce_of_another_length_is_refused() {
        for len in [1, NONCE_LEN - 1, NONCE_LEN + 1, 32] {
            let mut r = sample();
            r.nonce = vec![9; len];
            assert_eq!(r.check_shape(), Err(ShapeError::NonceLength(len)));
            let mut p = psbt_sample();
            p.nonce = vec![9; len];
            assert_eq!(p.check_shape(), Err(ShapeError::NonceLength(len)));
        }
        assert_eq!(
            ShapeError::NonceLength(3).to_string(),
            "nonce must be 16 bytes (or empty, for a request made before nonces), got 3"
        );
        assert_eq!(sample().check_shape(), Ok(()));
        assert_eq!(with_nonce(1).check_shape(), Ok(()));
    }

    /// The ids of requests made before nonces, pinned as computed before
    /// nonces existed: stored requests and the approvals naming them must
    /// keep their ids.
    #[test]
    fn a_request_without_a_nonce_keeps_its_v1_id() {
        assert_eq!(
            hex::encode(sample().id()),
            "37d514fff867d8f2a95f062811d99149ad9aefd19b90e2e10d134b5b25b1ac0c"
        );
        assert_eq!(
            hex::encode(psbt_sample().id()),
            "e6b9109cbbed596cdfa8f0615392cb81418306fc9f27c6986ff01ee7c7b63619"
        );
    }

    fn psbt_sample() -> SigningRequest {
        let mut r = sample();
        r.message.clear();
        r.metadata = Metadata {
            memo: "sweep".into(),
            ..Metadata::default()
        };
        r.psbt = Some(vec![0x70, 0x73, 0x62, 0x74, 0xff, 1, 2, 3]);
        r
    }

    #[test]
    fn a_psbt_request_id_commits_to_the_psbt_and_every_other_field() {
        let base = psbt_sample();
        assert_eq!(base.check_shape(), Ok(()));
        let variants: [fn(&mut SigningRequest); 7] = [
            |r| r.key_id = KeyId::parse("hot-1x").unwrap(),
            |r| r.psbt.as_mut().unwrap()[5] ^= 1,
            |r| r.metadata.memo.push('x'),
            |r| r.requester.push('x'),
            |r| r.created_at += 1,
            |r| r.expires_at += 1,
            |r| r.policy_hash[0] ^= 1,
        ];
        for change in variants {
            let mut r = psbt_sample();
            change(&mut r);
            assert_ne!(r.id(), base.id());
        }
        // What approvers approve: the PSBT and the memo.
        let mut other = psbt_sample();
        other.psbt.as_mut().unwrap()[6] ^= 1;
        assert_ne!(other.content_digest(), base.content_digest());
        let mut other = psbt_sample();
        other.metadata.memo.push('!');
        assert_ne!(other.content_digest(), base.content_digest());
        // A raw request over the same bytes is another request.
        let mut raw = base.clone();
        raw.message = raw.psbt.take().unwrap();
        assert_ne!(raw.id(), base.id());
    }

    #[test]
    fn a_psbt_request_declares_nothing() {
        type Change = fn(&mut SigningRequest);
        let set: [(Change, &str); 4] = [
            (|r| r.message = vec![1], "message"),
            (|r| r.metadata.asset = "BTC".into(), "asset"),
            (|r| r.metadata.amount = 1, "amount"),
            (|r| r.metadata.destination = "bc1q".into(), "destination"),
        ];
        for (change, field) in set {
            let mut r = psbt_sample();
            change(&mut r);
            assert_eq!(r.check_shape(), Err(ShapeError::DeclaredOnPsbt(field)));
        }
        let mut empty = sample();
        empty.message.clear();
        assert_eq!(empty.check_shape(), Err(ShapeError::Empty));
    }
}
