//! A signing request: what is to be signed, what approvers are shown, who
//! asked, and under which policy. Its id is the SHA-256 of its canonical
//! encoding, so the id commits to every field: changing the message, the
//! amount or the destination after approval changes the id, and the
//! approvals no longer match.
//!
//! ```text
//! request_id = SHA-256(Canonical("ringi signing request v1")
//!     ‖ key_id ‖ message ‖ asset ‖ amount (u128) ‖ destination ‖ memo
//!     ‖ requester ‖ created_at (u64) ‖ expires_at (u64) ‖ policy_hash)
//! ```
//!
//! A PSBT request (a `bitcoin-taproot` key spending coins) has no declared
//! message, asset, amount or destination: what it pays is derived from the
//! transaction ([`crate::subject`]), so the id commits to the PSBT itself,
//! and through it to the unsigned transaction, every prevout and every
//! input's sighash type:
//!
//! ```text
//! request_id = SHA-256(Canonical("ringi psbt signing request v1")
//!     ‖ key_id ‖ psbt ‖ memo ‖ requester ‖ created_at (u64)
//!     ‖ expires_at (u64) ‖ policy_hash)
//! ```

use crate::encoding::{Canonical, sha256};
use crate::key_id::KeyId;

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
}

impl SigningRequest {
    /// The canonical encoding the id is computed over.
    pub fn canonical(&self) -> Vec<u8> {
        if let Some(psbt) = &self.psbt {
            return Canonical::new("ringi psbt signing request v1")
                .str(&self.key_id)
                .bytes(psbt)
                .str(&self.metadata.memo)
                .str(&self.requester)
                .u64(self.created_at)
                .u64(self.expires_at)
                .bytes(&self.policy_hash)
                .finish();
        }
        Canonical::new("ringi signing request v1")
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
            .finish()
    }

    /// The request id.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.canonical())
    }

    /// SHA-256 of the message and the metadata: what an approval statement
    /// names as "the content approved".
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
}

impl SigningRequest {
    /// A PSBT request carries nothing its id does not commit to: no
    /// message, asset, amount or destination (they would be shown to
    /// approvers without being approved). A raw request has a message.
    pub fn check_shape(&self) -> Result<(), ShapeError> {
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
        }
    }

    #[test]
    fn id_commits_to_every_field() {
        let base = sample().id();
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
        for change in variants {
            let mut r = sample();
            change(&mut r);
            assert_ne!(r.id(), base);
        }
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
