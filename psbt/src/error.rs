//! Why a PSBT is refused. Each variant names the rule it breaks and, where
//! there is one, the input or output at fault (0-based, as in the PSBT).

/// A PSBT that ringi will not sign, or cannot finalize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsbtError {
    #[error("the PSBT is {size} bytes, more than the {max} accepted")]
    TooLarge { size: usize, max: usize },
    #[error("the PSBT does not decode (BIP-174): {0}")]
    Decode(String),
    #[error("PSBT version {0} is not supported (only version 0)")]
    Version(u32),
    #[error(
        "the PSBT has {0} unknown global field(s): ringi does not sign what it cannot interpret"
    )]
    UnknownGlobalFields(usize),
    #[error("the transaction has no inputs")]
    NoInputs,
    #[error("the transaction has no outputs")]
    NoOutputs,
    #[error("the transaction has {count} inputs, more than the {max} one request may sign")]
    TooManyInputs { count: usize, max: usize },
    #[error("input {input}: spends {outpoint}, which input {first} already spends")]
    DuplicateInput {
        input: usize,
        first: usize,
        outpoint: String,
    },
    #[error("input {input}: no witness_utxo (the spent output's amount and script are required)")]
    MissingWitnessUtxo { input: usize },
    #[error("input {input}: spends {script}, not this key's P2TR output {own}")]
    ForeignInput {
        input: usize,
        script: String,
        own: String,
    },
    #[error("input {input}: tap_internal_key {found} is not this key's internal key {own}")]
    WrongInternalKey {
        input: usize,
        found: String,
        own: String,
    },
    #[error("input {input}: {what} present; ringi signs Taproot key-path spends only")]
    NotKeyPath { input: usize, what: &'static str },
    #[error("input {input}: already {what}")]
    AlreadySigned { input: usize, what: &'static str },
    #[error(
        "input {input}: sighash type {sighash} does not commit to every input and output; ringi could not tell what the signature pays"
    )]
    UnsupportedSighash { input: usize, sighash: String },
    #[error("input {input}: sighash type {sighash} is not allowed by the key's policy")]
    SighashNotAllowed { input: usize, sighash: String },
    #[error("input {input}: the BIP-341 sighash cannot be computed: {reason}")]
    Sighash { input: usize, reason: String },
    #[error("output {output}: script {script} is not a standard address on {network}")]
    NonStandardOutput {
        output: usize,
        script: String,
        network: &'static str,
    },
    #[error("output {output}: {value} sat is below the dust limit of {min} sat for its script")]
    Dust { output: usize, value: u64, min: u64 },
    #[error("the outputs ({outputs} sat) exceed the inputs ({inputs} sat)")]
    NegativeFee { inputs: u64, outputs: u64 },
    #[error("the amounts overflow (more than 21 million BTC)")]
    ValueOverflow,
    #[error("{given} signatures given for {inputs} inputs")]
    SignatureCount { given: usize, inputs: usize },
    #[error("input {input}: the signature does not verify under the key's output key")]
    BadSignature { input: usize },
    #[error(
        "input {input}: Bitcoin Core's consensus code rejects the signed transaction: {reason}"
    )]
    Consensus { input: usize, reason: String },
}
