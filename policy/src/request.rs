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
    /// The exact bytes to be signed.
    pub message: Vec<u8>,
    pub metadata: Metadata,
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
}
