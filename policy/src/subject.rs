//! What a request would move, as the rules count it: the subject of the
//! approvals, the caps and the allowlist.
//!
//! - A raw-message request for a `frost-secp256k1` key: the amount and
//!   destination its requester declares ([`Subject::Declared`]), as
//!   before PSBTs.
//! - A PSBT request for a `bitcoin-taproot` key: the payments, change and
//!   fee derived from the transaction itself ([`Subject::Transaction`],
//!   `ringi_psbt::derive`), never what anyone declares; then the key's fee
//!   caps.
//! - A raw message for a `bitcoin-taproot` key: nothing is known of what
//!   the signature would move ([`Subject::Blind`]), so only the key's
//!   `blind_signing` quorum, if the policy sets one, may approve it.
//!
//! The coordinator and every signer call [`subject`] (through
//! [`crate::evaluate::evaluate`]) on the same request, each with the key it
//! knows, so they derive the same subject independently.

use ringi_psbt::{Derived, OwnKey};

use crate::evaluate::Violation;
use crate::policy::KeyRules;
use crate::request::SigningRequest;

/// What the evaluator must know about the key besides the policy: its
/// kind, and for a Taproot key its keys (from the key's public key package,
/// which the coordinator stores and every signer holds with its share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFacts {
    /// RFC 9591 FROST(secp256k1): signs raw messages.
    FrostSecp256k1,
    /// BIP-340 under the BIP-341 key-path output key.
    BitcoinTaproot {
        /// x-only internal key P.
        internal_key: [u8; 32],
        /// x-only output key Q.
        output_key: [u8; 32],
    },
}

/// What a request moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// As declared by the requester (raw message, frost-secp256k1 key).
    Declared { amount: u128, destination: String },
    /// A raw message for a Taproot key: unknown.
    Blind,
    /// Derived from the PSBT.
    Transaction(Box<Derived>),
}

impl Subject {
    /// The amount the caps and tiers count: the declared amount, or the
    /// sum of the payments (change and fee excluded; the fee has caps of
    /// its own). A blind request counts 0: its quorum is its own, and a
    /// per-window request count still applies.
    pub fn amount(&self) -> u128 {
        match self {
            Subject::Declared { amount, .. } => *amount,
            Subject::Blind => 0,
            Subject::Transaction(t) => u128::from(t.total_paid()),
        }
    }

    /// The destinations the allowlist judges: the declared one, or every
    /// payment's address.
    pub fn destinations(&self) -> Vec<String> {
        match self {
            Subject::Declared { destination, .. } => vec![destination.clone()],
            Subject::Blind => Vec::new(),
            Subject::Transaction(t) => t.destinations(),
        }
    }

    /// The derived transaction of a PSBT request.
    pub fn transaction(&self) -> Option<&Derived> {
        match self {
            Subject::Transaction(t) => Some(t),
            _ => None,
        }
    }
}

/// The subject of `request` for a key with `rules` and `key`: decodes and
/// derives a PSBT, and applies the key's fee caps to it.
pub fn subject(
    rules: &KeyRules,
    request: &SigningRequest,
    key: &KeyFacts,
) -> Result<Subject, Violation> {
    request.check_shape().map_err(Violation::Shape)?;
    let (psbt, key) = match (&request.psbt, key) {
        (None, KeyFacts::FrostSecp256k1) => {
            return Ok(Subject::Declared {
                amount: request.metadata.amount,
                destination: request.metadata.destination.clone(),
            });
        }
        (None, KeyFacts::BitcoinTaproot { .. }) => return Ok(Subject::Blind),
        (Some(_), KeyFacts::FrostSecp256k1) => {
            return Err(Violation::NotATaprootKey(request.key_id.clone()));
        }
        (
            Some(psbt),
            KeyFacts::BitcoinTaproot {
                internal_key,
                output_key,
            },
        ) => {
            let network = rules
                .bitcoin
                .network
                .ok_or_else(|| Violation::NoNetwork(request.key_id.clone()))?;
            (
                psbt,
                OwnKey {
                    internal_key: *internal_key,
                    output_key: *output_key,
                    network,
                },
            )
        }
    };
    let derived =
        ringi_psbt::derive(psbt, &key, rules.bitcoin.allow_sighash_all).map_err(Violation::Psbt)?;
    if let Some(cap) = rules.bitcoin.max_fee_sats
        && derived.fee > cap
    {
        return Err(Violation::FeeTooHigh {
            fee: derived.fee,
            cap,
        });
    }
    if let Some(cap) = rules.bitcoin.max_fee_rate
        && derived.fee > cap.saturating_mul(derived.vsize)
    {
        return Err(Violation::FeeRateTooHigh {
            rate: derived.fee_rate(),
            vsize: derived.vsize,
            cap,
        });
    }
    Ok(Subject::Transaction(Box::new(derived)))
}
