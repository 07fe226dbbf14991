//! Sign: the signing round of an APPROVED request (or of a SIGNING one a
//! restart interrupted), and its outcome recorded through the state
//! machine: APPROVED → SIGNING → SIGNED (with the signature) or FAILED
//! (with the reason).
//!
//! A PSBT request is one FROST signing per input, all within the one
//! approved request and all or nothing: only when every input is signed is
//! the PSBT finalized (`ringi_psbt::finalize`, which verifies every
//! signature again under the key's output key) and recorded, with the
//! signed transaction, in the same change to SIGNED.

use std::sync::Arc;

use ringi_psbt::OwnKey;

use crate::approved::ApprovedRequest;
use crate::coordinator::Coordinator;
use crate::error::{Error, RequestId, Result, SigningError};
use crate::request_state::{Event, SignedTransaction, State, next};
use crate::request_store::RequestRecord;
use crate::signing::{Key, Signed};
use crate::store::blocking;

/// Runs the signing round of an APPROVED (or interrupted SIGNING) request
/// and records the outcome. Errors are logged: nothing waits for them.
pub async fn run_signing(c: &Arc<Coordinator>, id: RequestId) {
    // One run per request in this process (crate::signing_runs).
    let Some(_claim) = c.signing_runs.claim(id) else {
        tracing::info!(request_id = %hex::encode(id), "a signing run for this request is in progress already");
        return;
    };
    let result = sign_and_record(c, id).await;
    c.notify(id);
    if let Err(e) = result {
        tracing::warn!(request_id = %hex::encode(id), error = %e, "signing round could not be recorded");
    }
}

async fn sign_and_record(c: &Arc<Coordinator>, id: RequestId) -> Result<()> {
    let store = c.requests.clone();
    let record = blocking(move || store.request(&id)).await?;
    let short = hex::encode(id);
    match record.state {
        State::Approved => {
            let started = next(State::Approved, Event::SigningStarted)?;
            let store = c.requests.clone();
            match blocking(move || store.transition(&id, &started, super::now())).await {
                Ok(()) => {}
                Err(Error::StateConflict { actual, .. }) => {
                    // Another round started first (or the request expired):
                    // never sign twice.
                    tracing::info!(request_id = %short, state = %actual, "signing round not started: the request moved on");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        State::Signing => {} // resumed after a restart
        _ => return Ok(()),
    }
    c.notify(id);
    c.audit(
        "signing_started",
        &[
            ("request_id", short.clone()),
            ("approvals", record.approvals.len().to_string()),
        ],
    );
    let event = match sign(c, &record).await {
        Ok(done) => {
            tracing::info!(request_id = %short, signers = ?done.signers, txid = done.txid.as_deref().unwrap_or(""), "request signed");
            let mut fields = vec![
                ("request_id", short.clone()),
                ("signers", done.signers.join(",")),
                ("signature", hex::encode(&done.signature)),
            ];
            if let Some(txid) = &done.txid {
                fields.push(("txid", txid.clone()));
            }
            c.audit("signature_produced", &fields);
            Event::Signed {
                signature: done.signature,
                signers: done.signers,
                transaction: done.transaction,
            }
        }
        Err(e) => {
            tracing::warn!(request_id = %short, error = %e, code = ?e.code(), "signing failed");
            c.audit(
                "signing_failed",
                &[("request_id", short.clone()), ("reason", e.to_string())],
            );
            Event::SigningFailed {
                reason: e.to_string(),
            }
        }
    };
    let outcome = next(State::Signing, event)?;
    let store = c.requests.clone();
    blocking(move || store.transition(&id, &outcome, super::now())).await
}

/// A request's signings, assembled.
struct Done {
    /// The signature, or every input's (64 bytes each, in input order).
    signature: Vec<u8>,
    /// Every signer that contributed a share, in the order they first did.
    signers: Vec<String>,
    transaction: Option<SignedTransaction>,
    txid: Option<String>,
}

/// The round itself: the record's approvals must still meet the quorum.
async fn sign(c: &Coordinator, record: &RequestRecord) -> Result<Done> {
    let policy = c.policy()?;
    let key = c.key(&record.request.key_id).await?;
    let approved = ApprovedRequest::from_record(policy, &key.facts(), record, super::now())?;
    let signed = key.sign(&c.registry, &approved).await?;
    let rules = policy
        .key(&record.request.key_id)
        .ok_or_else(|| Error::NoRules(record.request.key_id.clone()))?;
    Ok(assemble(
        &key,
        &approved,
        rules.bitcoin.network,
        rules.bitcoin.allow_sighash_all,
        signed,
    )?)
}

/// The request's result from its signings: the one signature of a raw
/// request; for a PSBT request, the finalized PSBT and transaction. Pure.
fn assemble(
    key: &Key,
    approved: &ApprovedRequest,
    network: Option<ringi_psbt::Network>,
    allow_sighash_all: bool,
    signed: Vec<Signed>,
) -> std::result::Result<Done, SigningError> {
    let mut signers: Vec<String> = Vec::new();
    for name in signed.iter().flat_map(|s| &s.signers) {
        if !signers.contains(name) {
            signers.push(name.clone());
        }
    }
    let signature: Vec<u8> = signed.iter().flat_map(|s| s.signature.clone()).collect();
    let (Some(psbt), Some(_)) = (&approved.request().psbt, approved.subject().transaction()) else {
        return Ok(Done {
            signature,
            signers,
            transaction: None,
            txid: None,
        });
    };
    let (
        Key::BitcoinTaproot {
            internal_key,
            output_key,
            ..
        },
        Some(network),
    ) = (key, network)
    else {
        // The approval derived the transaction with a taproot key and a
        // network, and the key and policy are the same objects.
        return Err(SigningError::Encoding(
            "a PSBT request signed by a key that is not bitcoin-taproot, or without a network"
                .into(),
        ));
    };
    let own = OwnKey {
        internal_key: *internal_key,
        output_key: *output_key,
        network,
    };
    let signatures = signed
        .iter()
        .map(|s| <[u8; 64]>::try_from(s.signature.as_slice()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| SigningError::Encoding("a BIP-340 signature is not 64 bytes".into()))?;
    let finalized = ringi_psbt::finalize(psbt, &own, allow_sighash_all, &signatures)
        .map_err(SigningError::Finalize)?;
    Ok(Done {
        signature,
        signers,
        transaction: Some(SignedTransaction {
            psbt: finalized.psbt,
            tx: finalized.tx,
        }),
        txid: Some(finalized.txid),
    })
}
