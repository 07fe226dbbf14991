//! Decoding a PSBT and deriving what it pays (BIP-174, BIP-341).
//!
//! The rules, in the order [`derive`] applies them:
//! 1. at most [`crate::MAX_PSBT_BYTES`]; decodes as a version-0 PSBT whose
//!    global map has no unknown fields (proprietary ones are ignorable by
//!    definition; unknown ones might change what the PSBT means);
//! 2. 1..=[`crate::MAX_INPUTS`] inputs, no coin spent twice (no node would
//!    accept the transaction, and the coin would count twice in the fee
//!    shown), and at least one output;
//! 3. every input carries `witness_utxo`, and its script is this key's
//!    key-path P2TR script `OP_1 <Q>` (so every input is this key's; the
//!    amounts the sighash commits to are the ones shown); no script-path
//!    data, no signature or final witness yet; `tap_internal_key`, if
//!    present, is the key's internal key;
//! 4. sighash type SIGHASH_DEFAULT (absent or 0x00), or SIGHASH_ALL (0x01)
//!    when the policy allows it; NONE, SINGLE and ANYONECANPAY are refused
//!    always, because a signature under them does not commit to every
//!    output, so no derivation of "what this pays" would hold;
//! 5. every output is a standard address on the key's network, and none is
//!    dust (below its script's minimal non-dust amount);
//! 6. Σ inputs ≥ Σ outputs (the fee is the difference).
//!
//! Outputs paying the key's own script are change; every other output is a
//! payment. The sighash of input i is BIP-341's SigMsg for a key-path spend
//! (`SighashCache::taproot_key_spend_signature_hash`), over every input's
//! prevout: the 32 bytes the signers' FROST round signs.

use bitcoin::hashes::Hash;
use bitcoin::key::TweakedPublicKey;
use bitcoin::psbt::Psbt;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, ScriptBuf, TxOut, Witness, XOnlyPublicKey};

use crate::error::PsbtError;
use crate::{MAX_INPUTS, MAX_PSBT_BYTES, Network, bitcoin_network};

/// The key a PSBT must spend from: its x-only internal key P, its
/// key-path output key Q (what its P2TR outputs pay to) and its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnKey {
    pub internal_key: [u8; 32],
    pub output_key: [u8; 32],
    pub network: Network,
}

impl OwnKey {
    /// `OP_1 <Q>`: the script of this key's outputs.
    pub fn script(&self) -> ScriptBuf {
        match XOnlyPublicKey::from_slice(&self.output_key) {
            Ok(q) => ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(q)),
            // Not a point: no output can pay it, so nothing will match.
            Err(_) => ScriptBuf::new(),
        }
    }

    /// The key's P2TR address on its network.
    pub fn address(&self) -> String {
        ringi_frost::taproot::address(&self.output_key, self.network)
    }
}

/// The sighash type an input is signed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SighashChoice {
    /// SIGHASH_DEFAULT (0x00): 64-byte signatures, commits to everything.
    Default,
    /// SIGHASH_ALL (0x01): 65-byte signatures, commits to everything.
    All,
}

impl SighashChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            SighashChoice::Default => "default",
            SighashChoice::All => "all",
        }
    }

    fn tap(self) -> TapSighashType {
        match self {
            SighashChoice::Default => TapSighashType::Default,
            SighashChoice::All => TapSighashType::All,
        }
    }
}

/// One input, as an approver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputView {
    /// `txid:vout` of the spent output.
    pub outpoint: String,
    pub value: u64,
    pub sighash: SighashChoice,
}

/// One output, as an approver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputView {
    /// Its index in the transaction.
    pub index: usize,
    pub address: String,
    pub value: u64,
}

/// Everything derived from one PSBT for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The transaction id (display order hex), fixed before signing since
    /// every input is segwit.
    pub txid: String,
    pub inputs: Vec<InputView>,
    /// Outputs to anyone but the key itself.
    pub payments: Vec<OutputView>,
    /// Outputs back to the key's own address.
    pub change: Vec<OutputView>,
    /// Σ inputs − Σ outputs, in satoshis.
    pub fee: u64,
    /// The signed transaction's virtual size (BIP-141), computed with a
    /// signature of the input's sighash type in every witness.
    pub vsize: u64,
    /// Input i's BIP-341 key-path sighash: the message its FROST signing signs.
    pub sighashes: Vec<[u8; 32]>,
}

impl Derived {
    /// Σ payments, in satoshis: what the caps and tiers count.
    pub fn total_paid(&self) -> u64 {
        // Each output is at most 21e14 sat and a PSBT at most 800 kB, so
        // the sum cannot overflow a u64; saturate rather than trust that.
        self.payments
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.value))
    }

    /// Every payment's address, in output order (repeats kept).
    pub fn destinations(&self) -> Vec<String> {
        self.payments.iter().map(|p| p.address.clone()).collect()
    }

    /// The fee rate in sat/vB, rounded up.
    pub fn fee_rate(&self) -> u64 {
        self.fee.div_ceil(self.vsize.max(1))
    }
}

/// Decodes `psbt` (BIP-174 binary) and derives what it pays for `key`,
/// allowing SIGHASH_ALL besides SIGHASH_DEFAULT when `allow_sighash_all`.
pub fn derive(psbt: &[u8], key: &OwnKey, allow_sighash_all: bool) -> Result<Derived, PsbtError> {
    if psbt.len() > MAX_PSBT_BYTES {
        return Err(PsbtError::TooLarge {
            size: psbt.len(),
            max: MAX_PSBT_BYTES,
        });
    }
    let psbt = Psbt::deserialize(psbt).map_err(|e| PsbtError::Decode(e.to_string()))?;
    check_globals(&psbt)?;
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(PsbtError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(PsbtError::NoOutputs);
    }
    if tx.input.len() > MAX_INPUTS {
        return Err(PsbtError::TooManyInputs {
            count: tx.input.len(),
            max: MAX_INPUTS,
        });
    }
    let mut spent = std::collections::HashMap::with_capacity(tx.input.len());
    for (index, txin) in tx.input.iter().enumerate() {
        if let Some(first) = spent.insert(txin.previous_output, index) {
            return Err(PsbtError::DuplicateInput {
                input: index,
                first,
                outpoint: txin.previous_output.to_string(),
            });
        }
    }
    let own_script = key.script();
    let mut prevouts: Vec<TxOut> = Vec::with_capacity(tx.input.len());
    let mut inputs = Vec::with_capacity(tx.input.len());
    let mut choices = Vec::with_capacity(tx.input.len());
    for (index, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let utxo = input
            .witness_utxo
            .as_ref()
            .ok_or(PsbtError::MissingWitnessUtxo { input: index })?;
        if utxo.script_pubkey != own_script {
            return Err(PsbtError::ForeignInput {
                input: index,
                script: hex::encode(utxo.script_pubkey.as_bytes()),
                own: hex::encode(own_script.as_bytes()),
            });
        }
        check_key_path(index, input, key)?;
        let choice = sighash_choice(index, input, allow_sighash_all)?;
        inputs.push(InputView {
            outpoint: txin.previous_output.to_string(),
            value: utxo.value.to_sat(),
            sighash: choice,
        });
        choices.push(choice);
        prevouts.push(utxo.clone());
    }
    let network = bitcoin_network(key.network);
    let mut payments = Vec::new();
    let mut change = Vec::new();
    for (index, out) in tx.output.iter().enumerate() {
        let address = Address::from_script(&out.script_pubkey, network).map_err(|_| {
            PsbtError::NonStandardOutput {
                output: index,
                script: hex::encode(out.script_pubkey.as_bytes()),
                network: key.network.as_str(),
            }
        })?;
        let min = out.script_pubkey.minimal_non_dust().to_sat();
        let value = out.value.to_sat();
        if value < min {
            return Err(PsbtError::Dust {
                output: index,
                value,
                min,
            });
        }
        let view = OutputView {
            index,
            address: address.to_string(),
            value,
        };
        if out.script_pubkey == own_script {
            change.push(view);
        } else {
            payments.push(view);
        }
    }
    let total_in = sum(prevouts.iter().map(|o| o.value.to_sat()))?;
    let total_out = sum(tx.output.iter().map(|o| o.value.to_sat()))?;
    let fee = total_in
        .checked_sub(total_out)
        .ok_or(PsbtError::NegativeFee {
            inputs: total_in,
            outputs: total_out,
        })?;
    let sighashes = sighashes(tx, &prevouts, &choices)?;
    Ok(Derived {
        txid: tx.compute_txid().to_string(),
        inputs,
        payments,
        change,
        fee,
        vsize: signed_vsize(tx, &choices),
        sighashes,
    })
}

/// Input i's BIP-341 key-path sighash under `choices[i]`, over every
/// input's prevout (`prevouts[i]` is input i's).
fn sighashes(
    tx: &bitcoin::Transaction,
    prevouts: &[TxOut],
    choices: &[SighashChoice],
) -> Result<Vec<[u8; 32]>, PsbtError> {
    let mut cache = SighashCache::new(tx);
    choices
        .iter()
        .enumerate()
        .map(|(index, choice)| {
            cache
                .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), choice.tap())
                .map(|sighash| sighash.to_byte_array())
                .map_err(|e| PsbtError::Sighash {
                    input: index,
                    reason: e.to_string(),
                })
        })
        .collect()
}

fn check_globals(psbt: &Psbt) -> Result<(), PsbtError> {
    if psbt.version != 0 {
        return Err(PsbtError::Version(psbt.version));
    }
    if !psbt.unknown.is_empty() {
        return Err(PsbtError::UnknownGlobalFields(psbt.unknown.len()));
    }
    Ok(())
}

/// Rule 3's key-path checks on one input.
fn check_key_path(
    index: usize,
    input: &bitcoin::psbt::Input,
    key: &OwnKey,
) -> Result<(), PsbtError> {
    let not_key_path = |what| Err(PsbtError::NotKeyPath { input: index, what });
    if input.tap_merkle_root.is_some() {
        return not_key_path("tap_merkle_root");
    }
    if !input.tap_scripts.is_empty() {
        return not_key_path("tap_leaf_script");
    }
    if input.redeem_script.is_some() || input.witness_script.is_some() {
        return not_key_path("a redeem or witness script");
    }
    let signed = |what| Err(PsbtError::AlreadySigned { input: index, what });
    if input.final_script_witness.is_some() || input.final_script_sig.is_some() {
        return signed("finalized");
    }
    if input.tap_key_sig.is_some() || !input.tap_script_sigs.is_empty() {
        return signed("signed");
    }
    if !input.partial_sigs.is_empty() {
        return signed("carrying partial signatures");
    }
    if let Some(found) = input.tap_internal_key
        && found.serialize() != key.internal_key
    {
        return Err(PsbtError::WrongInternalKey {
            input: index,
            found: hex::encode(found.serialize()),
            own: hex::encode(key.internal_key),
        });
    }
    Ok(())
}

/// Rule 4: the input's sighash type.
fn sighash_choice(
    index: usize,
    input: &bitcoin::psbt::Input,
    allow_all: bool,
) -> Result<SighashChoice, PsbtError> {
    let Some(requested) = input.sighash_type else {
        return Ok(SighashChoice::Default);
    };
    let unsupported = || PsbtError::UnsupportedSighash {
        input: index,
        sighash: requested.to_string(),
    };
    match requested.taproot_hash_ty().map_err(|_| unsupported())? {
        TapSighashType::Default => Ok(SighashChoice::Default),
        TapSighashType::All if allow_all => Ok(SighashChoice::All),
        TapSighashType::All => Err(PsbtError::SighashNotAllowed {
            input: index,
            sighash: requested.to_string(),
        }),
        _ => Err(unsupported()),
    }
}

fn sum(mut values: impl Iterator<Item = u64>) -> Result<u64, PsbtError> {
    values
        .try_fold(0u64, |acc, v| acc.checked_add(v))
        .filter(|total| *total <= bitcoin::Amount::MAX_MONEY.to_sat())
        .ok_or(PsbtError::ValueOverflow)
}

/// The virtual size once signed: a key-path witness is one stack item of
/// 64 bytes (65 with an explicit sighash type).
fn signed_vsize(tx: &bitcoin::Transaction, choices: &[SighashChoice]) -> u64 {
    let mut signed = tx.clone();
    for (txin, choice) in signed.input.iter_mut().zip(choices) {
        let len = match choice {
            SighashChoice::Default => 64,
            SighashChoice::All => 65,
        };
        txin.witness = Witness::from_slice(&[vec![0u8; len]]);
    }
    signed.vsize() as u64
}

#[cfg(test)]
mod tests {
    use bitcoin::consensus::encode::deserialize;
    use bitcoin::{Amount, ScriptBuf, Transaction, TxOut};

    use super::{SighashChoice, sighashes};

    /// BIP-341's wallet-test-vectors.json, keyPathSpending[0]: the sighashes
    /// derive computes for SIGHASH_DEFAULT (input 4) and SIGHASH_ALL
    /// (input 3), the two types it signs under, over the vector's
    /// transaction and all nine prevouts. (derive itself refuses this
    /// transaction: its inputs belong to seven keys and one output is a bare
    /// script; tests/refusals.rs checks that.)
    #[test]
    fn sighashes_match_bip341_key_path_vector() {
        let raw = "02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28eac13366be082dc57441760d957275419a418420000000000fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065cd1d";
        let utxos_spent: [(u64, &str); 9] = [
            (
                420000000,
                "512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343",
            ),
            (
                462000000,
                "5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3",
            ),
            (
                294000000,
                "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac",
            ),
            (
                504000000,
                "5120e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e",
            ),
            (
                630000000,
                "512091b64d5324723a985170e4dc5a0f84c041804f2cd12660fa5dec09fc21783605",
            ),
            (378000000, "00147dd65592d0ab2fe0d0257d571abf032cd9db93dc"),
            (
                672000000,
                "512075169f4001aa68f15bbed28b218df1d0a62cbbcf1188c6665110c293c907b831",
            ),
            (
                546000000,
                "5120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5",
            ),
            (
                588000000,
                "512077e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220",
            ),
        ];
        let tx: Transaction = deserialize(&hex::decode(raw).unwrap()).unwrap();
        let prevouts: Vec<TxOut> = utxos_spent
            .iter()
            .map(|(sats, script)| TxOut {
                value: Amount::from_sat(*sats),
                script_pubkey: ScriptBuf::from_bytes(hex::decode(script).unwrap()),
            })
            .collect();
        // Inputs 3 and 4 under the types the vector gives them (hashType 1
        // and 0); the others' types (NONE, SINGLE, ANYONECANPAY) are ones
        // derive refuses, so they are computed as DEFAULT here and not
        // compared.
        let mut choices = [SighashChoice::Default; 9];
        choices[3] = SighashChoice::All;
        let got = sighashes(&tx, &prevouts, &choices).unwrap();
        assert_eq!(
            hex::encode(got[3]),
            "bf013ea93474aa67815b1b6cc441d23b64fa310911d991e713cd34c7f5d46669"
        );
        assert_eq!(
            hex::encode(got[4]),
            "4f900a0bae3f1446fd48490c2958b5a023228f01661cda3496a11da502a7f7ef"
        );
        // A wrong amount anywhere changes every SIGHASH_DEFAULT sighash:
        // the amounts shown are the amounts signed.
        let mut lied = prevouts.clone();
        lied[0].value = Amount::from_sat(420000001);
        let other = sighashes(&tx, &lied, &choices).unwrap();
        assert_ne!(other[4], got[4]);
    }
}
