//! Bitcoin Taproot keys end to end, on the real stack (three signer
//! processes on SoftHSM tokens, the coordinator, the CLI): a
//! `bitcoin-taproot` key made by DKG, its output key and P2TR address, a
//! PSBT spending a synthetic coin of it submitted, approved and signed one
//! FROST signing per input, and the signed transaction accepted by Bitcoin
//! Core's consensus code (libbitcoinconsensus, every flag including
//! taproot, with the spent outputs), for one and for two inputs. Then what
//! the coordinator refuses at submission — a payment over the cap, a
//! payment off the allowlist, an input that is not the key's, an excessive
//! fee, a raw message (blind) without the policy's leave — and a blind
//! request the policy allows, shown as such and signed under BIP-340.

mod support;

use ringi_frost::taproot::keys_of_group;
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::key_service_client::KeyServiceClient;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use ringi_psbt::bitcoin::base64::Engine as _;
use ringi_psbt::bitcoin::consensus::encode::deserialize;
use ringi_psbt::bitcoin::psbt::Psbt;
use ringi_psbt::bitcoin::{ScriptBuf, Transaction};
use ringi_psbt::build::{Coin, unsigned};
use ringi_psbt::{Network, OwnKey};
use support::*;

const SIGNERS: [&str; 3] = ["signer-1", "signer-2", "signer-3"];
const APPROVED: [(&str, &str); 2] = [("alice", "treasury"), ("carol", "compliance")];

/// The key's own keys on regtest, from its group key (as the signers and
/// every wallet compute them).
fn own_key(group_key: &[u8]) -> OwnKey {
    let (internal_key, output_key) = keys_of_group(group_key).unwrap();
    OwnKey {
        internal_key,
        output_key,
        network: Network::Regtest,
    }
}

/// A PSBT of `key` spending `coins` to `outputs`.
fn psbt(key: &OwnKey, coins: &[Coin], outputs: &[(ScriptBuf, u64)]) -> Psbt {
    unsigned(key, coins, outputs)
}

/// `ringi requests submit --psbt` with `psbt` written (base64) to a file.
fn submit_psbt(cluster: &Cluster, key_id: &str, psbt: &Psbt, name: &str) -> std::process::Output {
    let path = cluster.dir.path().join(format!("{name}.psbt"));
    std::fs::write(&path, psbt.to_string()).unwrap();
    cluster.ringi(&[
        "requests",
        "submit",
        "--key-id",
        key_id,
        "--psbt",
        path.to_str().unwrap(),
        "--memo",
        name,
        "--requester",
        "wallet-service",
    ])
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Submits, has treasury and compliance approve (each approver's CLI shows
/// the transaction it derives itself), and returns the request id.
fn submit_and_approve(cluster: &Cluster, key_id: &str, psbt: &Psbt, name: &str) -> String {
    let out = submit_psbt(cluster, key_id, psbt, name);
    assert!(out.status.success(), "submit: {}", stderr(&out));
    let id = stdout(&out);
    for (who, dept) in APPROVED {
        let out = cluster.approve(&id, who, dept);
        assert!(out.status.success(), "approve: {}", stderr(&out));
        let shown = stderr(&out);
        assert!(shown.contains("PAYS"), "{shown}");
        assert!(shown.contains(&psbt.unsigned_tx.compute_txid().to_string()));
    }
    id
}

/// Waits for SIGNED; the signed transaction (`--output tx`).
fn signed_transaction(cluster: &Cluster, id: &str) -> Vec<u8> {
    let out = cluster.ringi(&[
        "requests",
        "wait",
        id,
        "--timeout-secs",
        "60",
        "--output",
        "tx",
    ]);
    assert!(out.status.success(), "wait: {}", stderr(&out));
    hex::decode(stdout(&out)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taproot_spend_is_signed_and_valid_under_consensus() {
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen_kind("tr", "bitcoin-taproot", 2, &SIGNERS);
    let key = own_key(&group_key);
    let address = ringi_frost::taproot::address(&key.output_key, Network::Regtest);

    // The API gives the key's kind, keys and address...
    let mut keys = KeyServiceClient::connect(format!("http://{}", cluster.coordinator_address))
        .await
        .unwrap();
    let shown = keys
        .get_public_key(pb::GetPublicKeyRequest {
            key_id: "tr".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(shown.kind, "bitcoin-taproot");
    assert_eq!(shown.group_public_key, group_key);
    assert_eq!(shown.internal_key, key.internal_key);
    assert_eq!(shown.internal_key, group_key[1..33]);
    assert_eq!(shown.output_key, key.output_key);
    assert_eq!(shown.network, "regtest");
    assert_eq!(shown.address, address);
    assert!(address.starts_with("bcrt1p"), "{address}");
    // ... and so do `ringi pubkey` and `ringi keys`.
    let json: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["pubkey", "--key-id", "tr", "--output", "json"]))
            .unwrap();
    assert_eq!(json["kind"], "bitcoin-taproot");
    assert_eq!(json["output_key"], hex::encode(key.output_key));
    assert_eq!(json["address"], address);
    let text = cluster.ringi_ok(&["pubkey", "--key-id", "tr"]);
    assert!(text.starts_with(&hex::encode(&group_key)), "{text}");
    assert!(text.contains(&address), "{text}");
    let listed = cluster.ringi_ok(&["keys"]);
    assert!(
        listed.contains("bitcoin-taproot") && listed.contains(&address),
        "{listed}"
    );

    // One input: 40000 to a listed address, 59000 back to the key.
    let coin = Coin::synthetic(1, 0, 100_000);
    let one = psbt(
        &key,
        &[coin],
        &[(listed_script(1), 40_000), (key.script(), 59_000)],
    );
    let id = submit_and_approve(&cluster, "tr", &one, "one input");
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    let tx = &shown["transaction"];
    assert_eq!(tx["txid"], one.unsigned_tx.compute_txid().to_string());
    assert_eq!(tx["payments"][0]["address"], listed_address(1));
    assert_eq!(tx["payments"][0]["value_sats"], 40_000);
    assert_eq!(tx["payments"][0]["value_btc"], "0.00040000");
    assert_eq!(tx["change"][0]["address"], address);
    assert_eq!(tx["fee_sats"], 1_000);
    assert_eq!(tx["total_paid_sats"], 40_000);
    assert_eq!(tx["inputs"][0]["outpoint"], coin.outpoint.to_string());
    assert_eq!(shown["blind"], false);
    let signed = signed_transaction(&cluster, &id);
    ringi_psbt::consensus::verify(&signed, &[(key.script(), 100_000)]).expect("a valid spend");
    let decoded: Transaction = deserialize(&signed).unwrap();
    assert_eq!(decoded.compute_txid(), one.unsigned_tx.compute_txid());
    // The finalized PSBT holds the same transaction.
    let out = cluster.ringi_ok(&["requests", "wait", &id, "--output", "psbt"]);
    let finalized = Psbt::deserialize(
        &ringi_psbt::bitcoin::base64::engine::general_purpose::STANDARD
            .decode(out)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(finalized.extract_tx_unchecked_fee_rate(), decoded);
    // A corrupted copy is not valid: the check above means something.
    let mut corrupt = signed.clone();
    let at = corrupt.len() - 20;
    corrupt[at] ^= 1;
    assert!(ringi_psbt::consensus::verify(&corrupt, &[(key.script(), 100_000)]).is_err());
    let text = cluster.ringi_ok(&["requests", "show", &id]);
    assert!(
        text.contains("0.00040000 BTC (40000 sat)") && text.contains(&listed_address(1)),
        "{text}"
    );

    // Two inputs, each its own FROST signing, both in the one request.
    let coins = [Coin::synthetic(2, 0, 30_000), Coin::synthetic(2, 1, 50_000)];
    let two = psbt(
        &key,
        &coins,
        &[(listed_script(2), 70_000), (key.script(), 9_000)],
    );
    let id = submit_and_approve(&cluster, "tr", &two, "two inputs");
    let signed = signed_transaction(&cluster, &id);
    ringi_psbt::consensus::verify(&signed, &[(key.script(), 30_000), (key.script(), 50_000)])
        .expect("a valid two-input spend");
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    assert_eq!(shown["state"], "SIGNED");
    assert_eq!(shown["signature"].as_str().unwrap().len(), 2 * 64 * 2);
    assert_eq!(shown["signed_transaction"], hex::encode(&signed));

    // Watch (and Get) return the transaction and the signed result.
    let mut requests =
        RequestServiceClient::connect(format!("http://{}", cluster.coordinator_address))
            .await
            .unwrap();
    let mut events = requests
        .watch_signing_request(pb::WatchSigningRequestRequest {
            request_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(event) = events.message().await.unwrap() {
        let view = event.request.unwrap();
        let tx = view
            .transaction
            .as_ref()
            .expect("every event shows the transaction");
        assert_eq!(tx.txid, two.unsigned_tx.compute_txid().to_string());
        assert_eq!(tx.inputs.len(), 2);
        assert_eq!(tx.total_paid_sats, 70_000);
        assert_eq!(tx.fee_sats, 1_000);
        assert!(!view.blind);
        last = Some(view);
    }
    let last = last.unwrap();
    assert_eq!(last.state, "SIGNED");
    assert_eq!(last.signed_transaction, signed);
    assert_eq!(
        Psbt::deserialize(&last.signed_psbt)
            .unwrap()
            .extract_tx_unchecked_fee_rate(),
        deserialize::<Transaction>(&signed).unwrap()
    );
    assert_eq!(last.signature.len(), 128);
    let got = requests
        .get_signing_request(pb::GetSigningRequestRequest { request_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.signed_transaction, signed);
    assert_eq!(got.transaction, last.transaction);
}

#[test]
fn what_breaks_a_rule_is_refused_at_submission_and_blind_signing_needs_the_policy() {
    let cluster = Cluster::start(3);
    let key = own_key(&cluster.keygen_kind("tr", "bitcoin-taproot", 2, &SIGNERS));
    let coin = Coin::synthetic(3, 0, 200_000);
    let refused = |psbt: &Psbt, name: &str| {
        let out = submit_psbt(&cluster, "tr", psbt, name);
        assert!(!out.status.success(), "{name} was accepted");
        stderr(&out)
    };

    // Payments above the cap of 100000 a request.
    let err = refused(
        &psbt(
            &key,
            &[coin],
            &[(listed_script(1), 150_000), (key.script(), 49_000)],
        ),
        "over the cap",
    );
    assert!(
        err.contains("ResourceExhausted") && err.contains("max_amount_per_request 100000"),
        "{err}"
    );
    // Two payments under the cap together above it.
    let err = refused(
        &psbt(
            &key,
            &[coin],
            &[
                (listed_script(1), 60_000),
                (listed_script(2), 60_000),
                (key.script(), 79_000),
            ],
        ),
        "together over the cap",
    );
    assert!(err.contains("amount 120000 exceeds"), "{err}");
    // A payment off the allowlist among listed ones.
    let err = refused(
        &psbt(
            &key,
            &[coin],
            &[
                (listed_script(1), 10_000),
                (listed_script(9), 10_000),
                (listed_script(2), 10_000),
                (key.script(), 169_000),
            ],
        ),
        "unlisted",
    );
    assert!(
        err.contains("PermissionDenied") && err.contains(&listed_address(9)),
        "{err}"
    );
    // An input that is not the key's.
    let mut foreign = psbt(
        &key,
        &[coin],
        &[(listed_script(1), 10_000), (key.script(), 189_000)],
    );
    let other = own_key(&cluster.keygen_kind("tr-blind", "bitcoin-taproot", 2, &SIGNERS));
    foreign.inputs[0]
        .witness_utxo
        .as_mut()
        .unwrap()
        .script_pubkey = other.script();
    let err = refused(&foreign, "foreign input");
    assert!(
        err.contains("InvalidArgument") && err.contains("PSBT: input 0: spends"),
        "{err}"
    );
    // A fee of 50000 over the cap of 20000.
    let err = refused(
        &psbt(
            &key,
            &[coin],
            &[(listed_script(1), 50_000), (key.script(), 100_000)],
        ),
        "excessive fee",
    );
    assert!(
        err.contains("ResourceExhausted") && err.contains("max_sats of 20000"),
        "{err}"
    );
    // Not a PSBT at all.
    let out = cluster.ringi(&[
        "requests",
        "submit",
        "--key-id",
        "tr",
        "--psbt",
        "cHNidP8BAAoCAAAAAAAAAAAAAA==",
        "--requester",
        "wallet-service",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("InvalidArgument") && stderr(&out).contains("PSBT:"),
        "{}",
        stderr(&out)
    );
    // Nothing was recorded.
    assert_eq!(cluster.ringi_ok(&["requests", "list"]), "");

    // A raw message on a taproot key without blind signing in its policy.
    let message = [0x42u8; 32];
    let raw = |key_id: &str| {
        cluster.ringi(&[
            "requests",
            "submit",
            "--key-id",
            key_id,
            "--message-hex",
            &hex::encode(message),
            "--asset",
            "BTC",
            "--amount",
            "1",
            "--destination",
            "anything",
            "--requester",
            "wallet-service",
        ])
    };
    let out = raw("tr");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("PermissionDenied") && stderr(&out).contains("signed blind"),
        "{}",
        stderr(&out)
    );
    // With it: accepted, shown as blind, approved by its own quorum
    // (security) alone, and signed under BIP-340 by the output key.
    let out = raw("tr-blind");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    let text = cluster.ringi_ok(&["requests", "show", &id]);
    assert!(text.contains("*** BLIND ***"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    assert_eq!(json["blind"], true);
    assert_eq!(json["kind"], "bitcoin-taproot");
    let out = cluster.approve(&id, "erin", "security");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("BLIND"), "{}", stderr(&out));
    let out = cluster.wait(&id);
    assert!(out.status.success(), "{}", stderr(&out));
    let signature = hex::decode(stdout(&out)).unwrap();
    assert_eq!(signature.len(), 64);
    use ringi_psbt::bitcoin::secp256k1::{Message, Secp256k1, XOnlyPublicKey, schnorr};
    Secp256k1::verification_only()
        .verify_schnorr(
            &schnorr::Signature::from_slice(&signature).unwrap(),
            &Message::from_digest(message),
            &XOnlyPublicKey::from_slice(&other.output_key).unwrap(),
        )
        .expect("a BIP-340 signature under the output key");
    // A blind request has no transaction to print.
    let out = cluster.ringi(&["requests", "wait", &id, "--output", "tx"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("signs a raw message"),
        "{}",
        stderr(&out)
    );
}

/// A refresh (`ringi keys refresh`) runs in the key's own suite: a
/// refreshed Taproot key keeps its address and its spends stay valid.
#[test]
fn a_refreshed_taproot_key_still_spends() {
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen_kind("tr", "bitcoin-taproot", 2, &SIGNERS);
    let key = own_key(&group_key);
    let refreshed = cluster.ringi_ok(&["keys", "refresh", "tr"]);
    assert_eq!(hex::decode(refreshed).unwrap(), group_key);
    let coin = Coin::synthetic(7, 0, 100_000);
    let spend = psbt(
        &key,
        &[coin],
        &[(listed_script(1), 40_000), (key.script(), 59_000)],
    );
    let id = submit_and_approve(&cluster, "tr", &spend, "after a refresh");
    let signed = signed_transaction(&cluster, &id);
    ringi_psbt::consensus::verify(&signed, &[(key.script(), 100_000)]).expect("a valid spend");
}
