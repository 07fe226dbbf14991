//! `ringi audit verify` reads logs an attacker may have edited: the lines
//! of a hash-chained audit log (`ringi_policy::audit::verify`).
//!
//! Input: `flags (1) ‖ log text`.
//! - flag bit 0: the harness recomputes each parsed entry's `prev` and
//!   `hash` (as the writer would), so the fuzzer's sequence numbers,
//!   times, events and fields reach the checks after the hash link;
//! - flag bit 1: every `checkpoint` entry is signed by the harness's test
//!   audit key over the head it names (fields `key`, `signature`,
//!   `head_seq`, `head` filled in), so checkpoint verification is reached;
//! - flag bit 2: the verifier expects the harness's key (else any key).
//!
//! Reaches: JSON parsing (`deny_unknown_fields`), the sequence, the hash
//! link, the entry hash, checkpoint field decoding, the checkpoint
//! signature and the expected checkpoint key.

use p256::ecdsa::signature::Signer;
use ringi_policy::audit::{Broken, CHECKPOINT, Entry, checkpoint_statement, entry_hash, verify};

use crate::harness_keys;

crate::stages!(
    /// How far an input got.
    Reached {
        Empty,
        Malformed,
        Sequence,
        Link,
        Hash,
        CheckpointRefused,
        CheckpointKey,
        /// The whole log verified.
        Verified,
        /// The whole log verified, with at least one signed checkpoint.
        VerifiedWithCheckpoint,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let Some((&flags, text)) = data.split_first() else {
        return Reached::Empty;
    };
    let text = String::from_utf8_lossy(text);
    let (sk, audit_key) = harness_keys::approver(0);
    let mut lines: Vec<String> = Vec::new();
    let mut prev = [0u8; 32];
    for line in text.lines() {
        let parsed: Result<Entry, _> = serde_json::from_str(line);
        match parsed {
            Ok(mut e) if flags & 1 != 0 => {
                if flags & 2 != 0 && e.event == CHECKPOINT {
                    let head_seq = e.seq.saturating_sub(1);
                    let sig: p256::ecdsa::Signature =
                        sk.sign(&checkpoint_statement(head_seq, &prev));
                    e.fields.insert("key".into(), audit_key.to_text());
                    e.fields
                        .insert("signature".into(), hex::encode(sig.to_bytes()));
                    e.fields.insert("head_seq".into(), head_seq.to_string());
                    e.fields.insert("head".into(), hex::encode(prev));
                }
                e.prev = hex::encode(prev);
                let hash = entry_hash(e.seq, e.at, &e.event, &e.fields, &prev);
                e.hash = hex::encode(hash);
                prev = hash;
                match serde_json::to_string(&e) {
                    Ok(l) => lines.push(l),
                    Err(_) => lines.push(line.to_string()),
                }
            }
            _ => lines.push(line.to_string()),
        }
    }
    let expected = (flags & 4 != 0).then_some(&audit_key);
    match verify(&lines, expected) {
        Ok(v) if v.checkpoints > 0 => Reached::VerifiedWithCheckpoint,
        Ok(_) => Reached::Verified,
        Err(Broken::Malformed { .. }) => Reached::Malformed,
        Err(Broken::Sequence { .. }) => Reached::Sequence,
        Err(Broken::Link { .. }) => Reached::Link,
        Err(Broken::Hash { .. }) => Reached::Hash,
        Err(Broken::Checkpoint { .. }) => Reached::CheckpointRefused,
        Err(Broken::CheckpointKey { .. }) => Reached::CheckpointKey,
    }
}

fn line(seq: u64, event: &str, fields: &[(&str, &str)]) -> String {
    let e = Entry {
        seq,
        at: 1_800_000_000 + seq,
        event: event.into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        prev: String::new(),
        hash: String::new(),
    };
    serde_json::to_string(&e).unwrap_or_default()
}

pub fn seeds() -> Vec<Vec<u8>> {
    let log = [
        line(1, "node_started", &[("policy_sha256", "00")]),
        line(
            2,
            "share_released",
            &[("key_id", "k"), ("request_id", "ab")],
        ),
        line(3, CHECKPOINT, &[]),
        line(
            4,
            "refused",
            &[("rpc", "Sign"), ("code", "PermissionDenied")],
        ),
    ]
    .join("\n");
    let mut seeds = Vec::new();
    for flags in [0b111u8, 0b011, 0b001, 0b000] {
        let mut s = vec![flags];
        s.extend_from_slice(log.as_bytes());
        seeds.push(s);
    }
    seeds
}
