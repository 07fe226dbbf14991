//! `ringi bench`: latency of one signing over the real stack, for each key
//! given (e.g. 2-of-3, 3-of-5, 7-of-10), each next to the in-process FROST
//! floor of its size measured in the same run, then where the time went.
//!
//! - floor: dealer-generated key with the same t and n, every signer's
//!   round 1, round 2 and the aggregation (which verifies) in this process;
//! - stack: the coordinator's signing engine in this process, driving the
//!   configured signer nodes over gRPC (token unseal, nonces, both rounds);
//! - phases: the coordinator's phase histograms ([`ringi::phases`]), reset
//!   at the start of each key's measured series and printed per key after
//!   the figures: the engine's own phases and those the signers report
//!   with their answers. The coordinator's evaluation of the approvals,
//!   made before the clock starts, is recorded as its approval check;
//! - with `--psbt-key-id`, for a bitcoin-taproot key: the in-process floor
//!   of its suite (BIP-340, tweaked), the derivation of a one-input PSBT
//!   (`ringi_psbt::derive`, what each signer and the coordinator run per
//!   request), and PSBT requests over the stack: every signer derives the
//!   sighash itself, signs with the tweak, and the coordinator finalizes;
//!
//! Signers release shares only for approved requests, so each signing carries
//! an approval bundle signed by the approver key files given on the command
//! line (made before the clock starts; the signers' checks of it are timed).
//!
//! Calls are sequential, so the figures are latencies, not throughput.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use frost_core as frost;
use rand::RngCore;
use rand::rngs::OsRng;
use ringi_frost::Suite;

use ringi::config::Config;
use ringi::phases::{self, Phase, PhaseSummary};

/// Summary of a series of timings.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

/// Median and 99th percentile (nearest rank) of `samples`.
pub fn summarize(mut samples: Vec<Duration>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let rank =
        |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    let total: Duration = samples.iter().sum();
    Some(Summary {
        n: samples.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        mean: total / samples.len() as u32,
    })
}

fn message() -> [u8; 32] {
    let mut m = [0u8; 32];
    OsRng.fill_bytes(&mut m);
    m
}

/// One in-process t-of-n signing, all signers in this process.
fn floor_once<C: Suite>(
    t: u16,
    key_packages: &BTreeMap<frost::Identifier<C>, frost::keys::KeyPackage<C>>,
    public: &frost::keys::PublicKeyPackage<C>,
) {
    let msg = message();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (id, kp) in key_packages.iter().take(t as usize) {
        let (n, c) = frost::round1::commit(kp.signing_share(), &mut OsRng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let package = frost::SigningPackage::new(commitments, &msg);
    let shares: BTreeMap<_, _> = nonces
        .iter()
        .map(|(id, n)| {
            (
                *id,
                C::sign(&package, n, &key_packages[id]).expect("floor sign"),
            )
        })
        .collect();
    C::aggregate(&package, &shares, public).expect("floor aggregate");
}

/// Measures the floor for a t-of-n key of today's suite.
pub fn floor(t: u16, n: u16, iterations: usize) -> Option<Summary> {
    floor_of::<ringi_frost::Secp256k1>(t, n, iterations)
}

/// Measures the floor for a t-of-n key of suite `C` (the same steps the
/// signers and the coordinator run: `Suite::sign`, `Suite::aggregate`).
pub fn floor_of<C: Suite>(t: u16, n: u16, iterations: usize) -> Option<Summary> {
    let (shares, public) = frost::keys::generate_with_dealer::<C, _>(
        n,
        t,
        frost::keys::IdentifierList::Default,
        &mut OsRng,
    )
    .ok()?;
    let key_packages: BTreeMap<_, _> = shares
        .into_iter()
        .map(|(id, s)| Ok((id, frost::keys::KeyPackage::try_from(s)?)))
        .collect::<Result<_, frost::Error<C>>>()
        .ok()?;
    for _ in 0..iterations.min(20) {
        floor_once(t, &key_packages, &public);
    }
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            floor_once(t, &key_packages, &public);
            start.elapsed()
        })
        .collect();
    summarize(samples)
}

/// One figure row: name, sample count, p50, p99 and mean in milliseconds.
pub fn print_row(name: &str, s: Option<Summary>) {
    match s {
        Some(s) => println!(
            "{name:<52} {:>6} {:>10.3} {:>10.3} {:>10.3}",
            s.n,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.mean.as_secs_f64() * 1e3
        ),
        None => println!("{name:<52} (no samples)"),
    }
}

/// One approver for the bench: a development key file and its department.
pub struct BenchApprover {
    pub signer: crate::approver::ApproverSigner,
    pub department: String,
}

/// What a bench request signs: a raw message, or a PSBT.
enum Content<'a> {
    Message(&'a [u8]),
    Psbt(Vec<u8>),
}

/// A request for the raw message `message` and every bench approver's
/// approval of it (what `ringi::requests` would have recorded).
pub(crate) fn approved_message(
    policy: &ringi_policy::policy::Policy,
    key_id: &str,
    message: &[u8],
    approvers: &[BenchApprover],
) -> anyhow::Result<(
    ringi_policy::request::SigningRequest,
    Vec<ringi_policy::statement::Approval>,
)> {
    bench_request(policy, key_id, Content::Message(message), approvers)
}

/// A request for `content`, approved by every bench approver.
fn approved_bundle(
    policy: &ringi_policy::policy::Policy,
    key: &ringi_policy::subject::KeyFacts,
    key_id: &str,
    content: Content<'_>,
    approvers: &[BenchApprover],
) -> anyhow::Result<ringi::approved::ApprovedRequest> {
    let (request, approvals) = bench_request(policy, key_id, content, approvers)?;
    let now = ringi_policy::clock::now();
    // What the coordinator runs before each signing (`from_record`).
    let start = Instant::now();
    let approved = ringi::approved::ApprovedRequest::evaluate(
        policy,
        key,
        request,
        approvals,
        Vec::new(),
        now,
    );
    phases::record(Phase::ApprovalCheck, start.elapsed());
    let approved = approved?;
    Ok(approved)
}

/// A request for `content` and every bench approver's approval of it.
fn bench_request(
    policy: &ringi_policy::policy::Policy,
    key_id: &str,
    content: Content<'_>,
    approvers: &[BenchApprover],
) -> anyhow::Result<(
    ringi_policy::request::SigningRequest,
    Vec<ringi_policy::statement::Approval>,
)> {
    use ringi_policy::request::{Metadata, SigningRequest};
    use ringi_policy::statement::{Approval, Decision, Statement};
    let rules = policy
        .key(key_id)
        .ok_or_else(|| anyhow::anyhow!("the policy has no rules for key {key_id:?}"))?;
    let now = ringi_policy::clock::now();
    let (message, metadata, psbt) = match content {
        Content::Message(m) => (
            m.to_vec(),
            Metadata {
                asset: "BENCH".into(),
                amount: 1,
                destination: "bench".into(),
                memo: String::new(),
            },
            None,
        ),
        Content::Psbt(p) => (Vec::new(), Metadata::default(), Some(p)),
    };
    let request = SigningRequest {
        key_id: ringi_policy::key_id::KeyId::parse(key_id)
            .map_err(|e| anyhow::anyhow!("key id: {e}"))?,
        message,
        metadata,
        psbt,
        requester: "ringi-bench".into(),
        created_at: now,
        expires_at: now + rules.request_ttl_secs,
        policy_hash: policy.hash(),
        // As the coordinator draws it at submission.
        nonce: ringi::requests::submit::fresh_nonce().to_vec(),
    };
    let mut approvals = Vec::new();
    for a in approvers {
        let statement = Statement::for_request(
            &request,
            &a.department,
            Decision::Approve,
            "",
            now,
            now + rules.approval_ttl_secs,
        );
        let approver = a.signer.public_key();
        let signature = a.signer.sign(&statement.signed_bytes(&approver))?;
        approvals.push(Approval {
            statement,
            approver,
            signature,
        });
    }
    Ok((request, approvals))
}

/// A one-input PSBT spending a coin of the taproot key `own` back to its
/// own address (no payment: any allowlist passes), a 1000 sat fee; `tag`
/// makes each coin, hence each request, distinct.
fn self_spend(own: &ringi_psbt::OwnKey, tag: u64) -> Vec<u8> {
    use ringi_psbt::bitcoin::hashes::Hash;
    let mut txid = [0u8; 32];
    txid[..8].copy_from_slice(&tag.to_be_bytes());
    OsRng.fill_bytes(&mut txid[8..]);
    let coin = ringi_psbt::build::Coin {
        outpoint: ringi_psbt::bitcoin::OutPoint {
            txid: ringi_psbt::bitcoin::Txid::from_byte_array(txid),
            vout: 0,
        },
        value: 100_000,
    };
    ringi_psbt::build::unsigned(own, &[coin], &[(own.script(), 99_000)]).serialize()
}

/// The derivation of a one-input PSBT, in process: what each signer adds
/// per request.
fn derive_cost(own: &ringi_psbt::OwnKey, iterations: usize) -> Option<Summary> {
    let psbt = self_spend(own, 0);
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let _ = std::hint::black_box(ringi_psbt::derive(&psbt, own, false));
            start.elapsed()
        })
        .collect();
    summarize(samples)
}

/// PSBT requests on `key_id` over the stack, and the Taproot floor.
/// Figure rows, and the phases of the measured series.
async fn psbt_rows(
    coordinator: &ringi::coordinator::Coordinator,
    policy: &ringi_policy::policy::Policy,
    key_id: &str,
    iterations: usize,
    approvers: &[BenchApprover],
) -> anyhow::Result<(Vec<(String, Option<Summary>)>, Breakdown)> {
    let key = coordinator
        .key(&ringi_policy::key_id::KeyId::parse(key_id)?)
        .await?;
    let ringi_policy::subject::KeyFacts::BitcoinTaproot {
        internal_key,
        output_key,
    } = key.facts()
    else {
        anyhow::bail!("--psbt-key-id {key_id:?} is not a bitcoin-taproot key");
    };
    let network = policy
        .key(key_id)
        .and_then(|r| r.bitcoin.network)
        .ok_or_else(|| anyhow::anyhow!("the policy sets no network for {key_id:?}"))?;
    let own = ringi_psbt::OwnKey {
        internal_key,
        output_key,
        network,
    };
    let t = key.record().threshold;
    let n = key.record().signers.len() as u16;
    let floor = tokio::task::spawn_blocking(move || {
        floor_of::<ringi_frost::taproot::Secp256k1Tr>(t, n, iterations)
    })
    .await?;
    let derive = derive_cost(&own, iterations);
    let facts = key.facts();
    let warmup = iterations.min(20);
    let mut stack = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        if i == warmup {
            phases::reset();
        }
        let psbt = self_spend(&own, i as u64);
        let approved = approved_bundle(
            policy,
            &facts,
            key_id,
            Content::Psbt(psbt.clone()),
            approvers,
        )?;
        let start = Instant::now();
        let signed = key
            .sign(
                &coordinator.registry,
                &approved,
                &ringi::signing::PlanLog::unrecorded(),
            )
            .await?;
        let signatures: Vec<[u8; 64]> = signed
            .iter()
            .map(|s| <[u8; 64]>::try_from(s.signature.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("a Taproot signature is not 64 bytes"))?;
        ringi_psbt::finalize(&psbt, &own, false, &signatures)
            .map_err(|e| anyhow::anyhow!("finalize: {e}"))?;
        if i >= warmup {
            stack.push(start.elapsed());
        }
    }
    let breakdown = Breakdown::taken(format!("PSBT key {key_id:?}, {t}-of-{n}"));
    let rows = vec![
        (
            format!("in-process floor, bitcoin-taproot {t}-of-{n} (BIP-340)"),
            floor,
        ),
        (
            "PSBT derivation, 1 input (ringi_psbt::derive)".into(),
            derive,
        ),
        (
            format!("stack: PSBT request {key_id:?}, 1 input, + finalize"),
            summarize(stack),
        ),
    ];
    Ok((rows, breakdown))
}

/// The phase histograms and counters of one measured series.
pub(crate) struct Breakdown {
    series: String,
    phases: Vec<PhaseSummary>,
    counters: Vec<(&'static str, u64)>,
}

impl Breakdown {
    /// What the histograms hold now, for the series `series`.
    pub(crate) fn taken(series: String) -> Self {
        Breakdown {
            series,
            phases: phases::snapshot(),
            counters: phases::counters(),
        }
    }
}

/// The phase table of one series: every phase recorded, its count and
/// percentiles in microseconds (the signers' phases are per call: one
/// signing makes a Commit and a Sign call, or one Sign call, per signer).
fn phase_table(b: &Breakdown) -> String {
    let mut out = format!(
        "phases, {} (since the start of its measured series)\n{:<52} {:>6} {:>10} {:>10} {:>10}\n",
        b.series, "phase", "count", "p50 µs", "p99 µs", "mean µs"
    );
    if b.phases.is_empty() {
        out.push_str("(no phase recorded)\n");
    }
    for p in &b.phases {
        out.push_str(&format!(
            "{:<52} {:>6} {:>10} {:>10} {:>10}\n",
            p.phase.name(),
            p.count,
            p.p50_us,
            p.p99_us,
            p.mean_us
        ));
    }
    if !b.counters.is_empty() {
        let counters: Vec<String> = b.counters.iter().map(|(n, c)| format!("{n}={c}")).collect();
        out.push_str(&format!("counters: {}\n", counters.join(" ")));
    }
    out
}

/// One key's figures: the floor of its size and the stack.
struct KeyFigures {
    key_id: String,
    t: u16,
    n: u16,
    floor: Option<Summary>,
    stack: Option<Summary>,
    breakdown: Breakdown,
}

/// The floor of `key_id`'s size, then `iterations` signings over the
/// stack after a warm-up; the phase histograms are reset where the
/// measured signings start.
async fn key_figures(
    coordinator: &ringi::coordinator::Coordinator,
    policy: &ringi_policy::policy::Policy,
    key_id: &str,
    iterations: usize,
    approvers: &[BenchApprover],
) -> anyhow::Result<KeyFigures> {
    let key = coordinator
        .key(&ringi_policy::key_id::KeyId::parse(key_id)?)
        .await?;
    let t = key.record().threshold;
    let n = key.record().signers.len() as u16;

    let floor = tokio::task::spawn_blocking(move || floor(t, n, iterations)).await?;

    let stack = stack_series(
        &coordinator.registry,
        &key,
        policy,
        key_id,
        iterations,
        approvers,
    )
    .await?;
    Ok(KeyFigures {
        key_id: key_id.to_string(),
        t,
        n,
        floor,
        stack: summarize(stack),
        breakdown: Breakdown::taken(format!("key {key_id:?}, {t}-of-{n}")),
    })
}

/// `iterations` signings of `key` over the stack through `registry`, after
/// a warm-up (which also fills the pools of preprocessed commitments); the
/// phase histograms are reset where the measured signings start. Approvals
/// are made before the clock starts: the figure is the signing, including
/// every signer's check of the approvals.
async fn stack_series(
    registry: &ringi::registry::Registry,
    key: &ringi::signing::Key,
    policy: &ringi_policy::policy::Policy,
    key_id: &str,
    iterations: usize,
    approvers: &[BenchApprover],
) -> anyhow::Result<Vec<Duration>> {
    let facts = key.facts();
    let warmup = iterations.min(20);
    let mut stack = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        if i == warmup {
            phases::reset();
        }
        let msg = message();
        let approved = approved_bundle(policy, &facts, key_id, Content::Message(&msg), approvers)?;
        let start = Instant::now();
        key.sign(registry, &approved, &ringi::signing::PlanLog::unrecorded())
            .await?;
        if i >= warmup {
            stack.push(start.elapsed());
        }
    }
    Ok(stack)
}

/// The first key again, two ways: with one-round signing off (every
/// signing runs round 1 live), and with its last signer reached through a
/// relay that answers `slow` late ([`crate::delay_proxy`]).
async fn variant_rows(
    config: &Config,
    coordinator: &ringi::coordinator::Coordinator,
    policy: &ringi_policy::policy::Policy,
    key_id: &str,
    iterations: usize,
    approvers: &[BenchApprover],
    slow: Duration,
) -> anyhow::Result<Vec<(String, Option<Summary>, Breakdown)>> {
    let key = coordinator
        .key(&ringi_policy::key_id::KeyId::parse(key_id)?)
        .await?;
    let size = format!(
        "{}-of-{}",
        key.record().threshold,
        key.record().signers.len()
    );
    let mut rows = Vec::new();

    coordinator.registry.pools().set_enabled(false);
    let two_round = stack_series(
        &coordinator.registry,
        &key,
        policy,
        key_id,
        iterations,
        approvers,
    )
    .await;
    coordinator.registry.pools().set_enabled(true);
    rows.push((
        format!("stack {key_id:?} {size}: two rounds (no preprocessing)"),
        summarize(two_round?),
        Breakdown::taken(format!("key {key_id:?}, {size}, two rounds")),
    ));

    if !slow.is_zero() {
        let (late, _) = key
            .record()
            .signers
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("key {key_id:?} has no signers"))?;
        let mut entries = config.signers.clone();
        for entry in entries.iter_mut().filter(|e| e.name == late) {
            let relay = crate::delay_proxy::start(entry.address.clone(), slow).await?;
            entry.address = relay.to_string();
        }
        let registry = match ringi::server::client_tls(config)? {
            Some(tls) => ringi::registry::Registry::with_tls(&entries, std::sync::Arc::new(tls))?,
            None => ringi::registry::Registry::new(&entries)?,
        };
        ringi::signer_watch::spawn(&registry);
        let series = stack_series(&registry, &key, policy, key_id, iterations, approvers).await?;
        rows.push((
            format!(
                "stack {key_id:?} {size}: {late} {} ms late",
                slow.as_millis()
            ),
            summarize(series),
            Breakdown::taken(format!(
                "key {key_id:?}, {size}, {late} answering {} ms late",
                slow.as_millis()
            )),
        ));
    }
    Ok(rows)
}

/// The bench: every key of `key_ids` in turn (each with the floor of its
/// size), the connection costs to the first key's first signer, and with
/// `psbt_key_id` PSBT requests; the figures, then each series' phases.
pub async fn run(
    config: &Config,
    key_ids: &[String],
    psbt_key_id: Option<&str>,
    iterations: usize,
    approvers: &[BenchApprover],
    slow: Duration,
    store_url: Option<&str>,
) -> anyhow::Result<()> {
    let first_key = key_ids
        .first()
        .ok_or_else(|| anyhow::anyhow!("the bench needs at least one key (--keys)"))?;
    // Opening the store may block on the network (PostgreSQL).
    let coordinator = tokio::task::block_in_place(|| ringi::server::coordinator(config, false))?;
    let policy = coordinator.policy().ok().ok_or_else(|| {
        anyhow::anyhow!(
            "the bench needs the coordinator's policy_file: signers sign only approved requests"
        )
    })?;
    let mut keys = Vec::with_capacity(key_ids.len());
    for key_id in key_ids {
        keys.push(key_figures(&coordinator, &policy, key_id, iterations, approvers).await?);
    }
    let variants = variant_rows(
        config,
        &coordinator,
        &policy,
        first_key,
        iterations,
        approvers,
        slow,
    )
    .await?;

    // Connection costs to one signer: a new connection (TCP, and the TLS
    // handshake with the signer's key in its token, when TLS is on) plus its
    // first call, and a call on a reused connection.
    let key = coordinator
        .key(&ringi_policy::key_id::KeyId::parse(first_key)?)
        .await?;
    let signer = key
        .record()
        .signers
        .first()
        .and_then(|(name, _)| coordinator.registry.get(name))
        .ok_or_else(|| anyhow::anyhow!("the key's first signer is not in the registry"))?
        .clone();
    let tls = ringi::server::client_tls(config)?.map(std::sync::Arc::new);
    let connection_rounds = iterations.min(200);
    let mut fresh = Vec::with_capacity(connection_rounds);
    for _ in 0..connection_rounds {
        let start = Instant::now();
        let channel = match &tls {
            Some(config) => {
                ringi_net::tls::connect(&signer.address, &signer.name, config.clone()).await?
            }
            None => {
                tonic::transport::Endpoint::from_shared(format!("http://{}", signer.address))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?
            }
        };
        ringi_proto::signer::v1::signer_client::SignerClient::new(channel)
            .get_node_info(ringi_proto::signer::v1::GetNodeInfoRequest {})
            .await?;
        fresh.push(start.elapsed());
    }
    let mut reused = Vec::with_capacity(connection_rounds);
    let mut client = signer.client.clone();
    for _ in 0..connection_rounds {
        let start = Instant::now();
        client
            .get_node_info(ringi_proto::signer::v1::GetNodeInfoRequest {})
            .await?;
        reused.push(start.elapsed());
    }
    let transport = if tls.is_some() {
        "mutual TLS 1.3"
    } else {
        "plaintext"
    };
    let psbt = match psbt_key_id {
        Some(psbt_key) => {
            Some(psbt_rows(&coordinator, &policy, psbt_key, iterations, approvers).await?)
        }
        None => None,
    };
    let stores = match store_url {
        Some(url) => {
            crate::bench_store::rows(
                config,
                &coordinator,
                &policy,
                first_key,
                url,
                iterations,
                approvers,
            )
            .await?
        }
        None => Vec::new(),
    };

    println!(
        "ringi bench: {} key(s), {iterations} sequential signings of 32-byte messages each, {} approvals each, {transport}",
        keys.len(),
        approvers.len()
    );
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10}",
        "path", "n", "p50 ms", "p99 ms", "mean ms"
    );
    for k in &keys {
        let size = format!("{}-of-{}", k.t, k.n);
        print_row(
            &format!("in-process FROST floor {size} (no network/HSM)"),
            k.floor,
        );
        print_row(
            &format!("stack {:?} {size}: engine -> signers", k.key_id),
            k.stack,
        );
    }
    for (name, summary, _) in &variants {
        print_row(name, *summary);
    }
    print_row("signer call: new connection + first call", summarize(fresh));
    print_row("signer call: reused connection", summarize(reused));
    if let Some((rows, _)) = &psbt {
        for (name, summary) in rows {
            print_row(name, *summary);
        }
    }
    for (name, summary, _) in &stores {
        print_row(name, *summary);
    }
    for k in &keys {
        println!();
        print!("{}", phase_table(&k.breakdown));
    }
    for (_, _, breakdown) in &variants {
        println!();
        print!("{}", phase_table(breakdown));
    }
    if let Some((_, breakdown)) = &psbt {
        println!();
        print!("{}", phase_table(breakdown));
    }
    for (_, _, breakdown) in &stores {
        println!();
        print!("{}", phase_table(breakdown));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(samples).unwrap();
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.n, 100);
        let one = summarize(vec![Duration::from_millis(7)]).unwrap();
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        assert!(summarize(vec![]).is_none());
    }

    #[test]
    fn floor_signs_with_a_dealer_key_of_any_size() {
        for (t, n) in [(2, 3), (3, 5), (7, 10)] {
            let s = floor(t, n, 3).unwrap();
            assert_eq!(s.n, 3);
        }
        assert!(floor(4, 3, 1).is_none(), "a threshold above n is no key");
    }

    #[test]
    fn the_phase_table_lists_each_phase_with_its_figures() {
        let b = Breakdown {
            series: "key \"bench\", 2-of-3".into(),
            phases: vec![PhaseSummary {
                phase: Phase::Round2,
                count: 300,
                p50_us: 1234,
                p90_us: 1500,
                p99_us: 4321,
                max_us: 9000,
                mean_us: 1300,
            }],
            counters: vec![("one_round_signings", 300)],
        };
        let table = phase_table(&b);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].starts_with("phases, key \"bench\", 2-of-3"),
            "{table}"
        );
        let cells: Vec<&str> = lines[2].split_whitespace().rev().take(4).collect();
        assert_eq!(cells[..4], ["1300", "4321", "1234", "300"], "{table}");
        assert!(lines[2].starts_with(Phase::Round2.name()), "{table}");
        assert_eq!(lines[3], "counters: one_round_signings=300");
        let empty = Breakdown {
            series: "x".into(),
            phases: vec![],
            counters: vec![],
        };
        assert!(phase_table(&empty).ends_with("(no phase recorded)\n"));
    }
}
