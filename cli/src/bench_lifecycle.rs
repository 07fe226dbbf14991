//! `ringi bench-lifecycle`: how long a key's lifecycle operations take over
//! the real stack (issue 15): a refresh of every share (the refresh DKG,
//! [`ringi::refresh`]) and the repair of a lost share onto a spare node
//! ([`ringi::repair`]), for each size asked (e.g. 2-of-3, 3-of-5), each
//! next to the in-process FROST floor of the same protocol and size.
//!
//! - floor: frost-core alone, every participant in this process, no token,
//!   no network: `refresh_dkg_part1/part2/shares` for the `n` participants
//!   of a dealer-generated key; `repair_share_part1/2/3` with `t` helpers
//!   rebuilding participant 1;
//! - stack: the coordinator's own lifecycle code in this process, driving
//!   the configured signer nodes over gRPC (their tokens do every ECDH of
//!   the sealed envelopes), with a temporary SQLite store of its own (not
//!   the running coordinator's database: the keys it makes are the
//!   bench's);
//! - refresh, per size: one key made by DKG over the first `n` registry
//!   signers other than the spare, then `iterations` refreshes of it after
//!   one warm-up; each step's time comes from the refresh's own progress
//!   reports, so the figures say where a refresh spends it;
//! - repair, per size: each iteration makes a fresh key (not timed) and
//!   times the repair of its first participant onto the spare, reached
//!   through a second registry in which the spare takes that identifier
//!   and the node it replaces is absent. The repair order is signed by the
//!   admin key files given (before the clock starts); every node checks it
//!   against its own policy. The spare keeps a share of every repaired key.
//!
//! Key ids carry a random suffix, so the bench runs again on the same
//! tokens. Calls are sequential: the figures are latencies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use frost_core as frost;
use rand::RngCore;
use rand::rngs::OsRng;
use ringi::config::{Config, SignerEntry};
use ringi::keygen::Progress;
use ringi::registry::Registry;
use ringi::store::KeyStore;
use ringi_frost::{KeyKind, Secp256k1};
use ringi_policy::key_id::KeyId;
use ringi_policy::key_order::{Action, KeyOrder, SignedOrder};

use crate::approver::ApproverSigner;
use crate::bench::{Summary, print_row, summarize};

/// How long a bench repair order stays valid.
const ORDER_VALIDITY_SECS: u64 = 600;
/// Signer calls timed for the network round's floor.
const CALLS: usize = 200;

/// One key size, `t`-of-`n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub t: u16,
    pub n: u16,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-of-{}", self.t, self.n)
    }
}

/// Parses a size written `TofN` or `T-of-N` (e.g. `2of3`): a threshold of
/// at least 2 and at most the number of signers, at most
/// [`ringi::keygen::MAX_SIGNERS`] signers.
pub fn parse_size(text: &str) -> Result<Size, String> {
    let bad = || format!("size {text:?}: write it TofN, e.g. 2of3 or 3of5");
    let lower = text.trim().to_ascii_lowercase();
    let (t, n) = lower
        .split_once("-of-")
        .or_else(|| lower.split_once("of"))
        .ok_or_else(bad)?;
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u16>().ok()
    };
    let (t, n) = (number(t).ok_or_else(bad)?, number(n).ok_or_else(bad)?);
    if usize::from(n) > ringi::keygen::MAX_SIGNERS {
        return Err(format!(
            "size {text:?}: at most {} signers",
            ringi::keygen::MAX_SIGNERS
        ));
    }
    if t < 2 || t > n {
        return Err(format!(
            "size {text:?}: the threshold must be at least 2 and at most the {n} signers"
        ));
    }
    Ok(Size { t, n })
}

/// What the bench is asked to do.
pub struct LifecycleArgs {
    pub sizes: Vec<Size>,
    pub iterations: usize,
    /// The admins' approver key files (they sign every repair order).
    pub admins: Vec<PathBuf>,
    /// A registry signer used by no key, which receives the repaired shares.
    pub spare: String,
}

/// The registry signers a key of `size` uses: the first `size.n` of
/// `entries` (in the config's order) other than `spare`.
pub fn key_signers<'a>(
    entries: &'a [SignerEntry],
    spare: &str,
    size: Size,
) -> Result<Vec<&'a SignerEntry>, String> {
    let others: Vec<&SignerEntry> = entries.iter().filter(|e| e.name != spare).collect();
    if others.len() < usize::from(size.n) {
        return Err(format!(
            "a {size} key needs {} signers besides the spare {spare:?}; the config registers {}",
            size.n,
            others.len()
        ));
    }
    Ok(others[..usize::from(size.n)].to_vec())
}

/// The registry entries of the repair: without `replaced` (the node whose
/// share is lost), with `spare` registered under `identifier` (the one it
/// takes over).
pub fn repair_entries(
    entries: &[SignerEntry],
    replaced: &str,
    spare: &str,
    identifier: u16,
) -> Vec<SignerEntry> {
    entries
        .iter()
        .filter(|e| e.name != replaced)
        .map(|e| {
            let mut e = e.clone();
            if e.name == spare {
                e.identifier = u32::from(identifier);
            }
            e
        })
        .collect()
}

fn registry(config: &Config, entries: &[SignerEntry]) -> anyhow::Result<Registry> {
    Ok(match ringi::server::client_tls(config)? {
        Some(tls) => Registry::with_tls(entries, Arc::new(tls))?,
        None => Registry::new(entries)?,
    })
}

/// A fresh key id with a random suffix.
fn fresh_key_id(prefix: &str) -> anyhow::Result<KeyId> {
    let mut suffix = [0u8; 4];
    OsRng.fill_bytes(&mut suffix);
    KeyId::parse(&format!("{prefix}-{}", hex::encode(suffix))).map_err(|e| anyhow!("key id: {e}"))
}

/// Checks, when the config names the policy file, that the admin key files
/// are admins of it and reach its quorum, so a bad command line fails
/// before any DKG (the nodes check the orders against their own policy in
/// any case).
fn check_admins(config: &Config, admins: &[ApproverSigner]) -> anyhow::Result<()> {
    let Some(path) = &config.policy_file else {
        return Ok(());
    };
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read policy {}", path.display()))?;
    let policy = ringi_policy::policy::Policy::from_bytes(&bytes)
        .map_err(|e| anyhow!("policy {} refused: {e}", path.display()))?;
    let governance = policy.governance();
    if governance.admins.is_empty() {
        bail!(
            "the policy {} names no admins ([governance] admins): no repair order can be signed",
            path.display()
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for admin in admins {
        let key = admin.public_key();
        let name = policy
            .approver(&key)
            .map(|a| a.name.clone())
            .filter(|name| governance.admins.contains(name))
            .ok_or_else(|| {
                anyhow!(
                    "--admin key {} is not an admin of the policy (admins: {})",
                    key.to_text(),
                    governance.admins.join(", ")
                )
            })?;
        names.insert(name);
    }
    if names.len() < governance.admin_quorum as usize {
        bail!(
            "a repair order needs {} distinct admins of the policy; --admin gives {}",
            governance.admin_quorum,
            names.len()
        );
    }
    Ok(())
}

/// The repair order of participant `identifier` of `key_id` to the node
/// whose transport key is `recipient`, signed by every admin.
fn signed_order(
    key_id: &KeyId,
    identifier: u16,
    recipient: &[u8],
    helpers: &std::collections::BTreeMap<u16, Vec<u8>>,
    admins: &[ApproverSigner],
) -> anyhow::Result<SignedOrder> {
    let now = ringi_policy::clock::now();
    let order = KeyOrder {
        key_id: key_id.clone(),
        action: Action::Repair {
            identifier,
            recipient: recipient.to_vec(),
            helpers: helpers.clone(),
        },
        expires_at: now + ORDER_VALIDITY_SECS,
    };
    let signatures = admins
        .iter()
        .map(|signer| {
            let admin = signer.public_key();
            let signature = signer.sign(&order.signed_bytes(now, &admin))?;
            Ok(ringi_policy::policy_update::AdminSignature {
                admin,
                issued_at: now,
                signature,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(SignedOrder { order, signatures })
}

/// A DKG over `signers` for a new key `key_id` of `size`.
async fn keygen(
    registry: &Registry,
    store: &Arc<dyn KeyStore>,
    key_id: &KeyId,
    size: Size,
    signers: &[&SignerEntry],
) -> anyhow::Result<ringi::store::KeyRecord> {
    ringi::keygen::run(
        registry,
        store,
        ringi::keygen::KeygenRequest {
            key_id: key_id.clone(),
            kind: KeyKind::FrostSecp256k1,
            threshold: u32::from(size.t),
            signers: signers.iter().map(|e| e.name.clone()).collect(),
        },
        |_| {},
    )
    .await
    .with_context(|| format!("keygen of {key_id} ({size})"))
}

/// Each step's durations, from an operation's progress reports.
#[derive(Default)]
struct Steps {
    started: BTreeMap<u32, (&'static str, Instant)>,
    taken: BTreeMap<u32, (&'static str, Vec<Duration>)>,
}

impl Steps {
    fn record(&mut self, progress: Progress) {
        match progress {
            Progress::Started { step, description } => {
                self.started.insert(step, (description, Instant::now()));
            }
            Progress::Finished { step, .. } => {
                if let Some((description, start)) = self.started.remove(&step) {
                    self.taken
                        .entry(step)
                        .or_insert_with(|| (description, Vec::new()))
                        .1
                        .push(start.elapsed());
                }
            }
        }
    }
}

/// The figures of one size.
struct SizeFigures {
    size: Size,
    refresh_floor: Option<Summary>,
    refresh: Option<Summary>,
    refresh_steps: Vec<(u32, &'static str, Option<Summary>)>,
    repair_floor: Option<Summary>,
    repair: Option<Summary>,
    /// The signer whose participant the repairs rebuild on the spare.
    replaced: String,
    keygen: Option<Summary>,
}

/// What every series runs on.
struct Bench<'a> {
    config: &'a Config,
    /// The config's registry: keygens and refreshes.
    registry: Registry,
    store: Arc<dyn KeyStore>,
    admins: Vec<ApproverSigner>,
    spare: &'a str,
    iterations: usize,
}

impl Bench<'_> {
    /// One key of `size`, refreshed `iterations` times after a warm-up;
    /// each refresh's time, and each step's.
    async fn refresh_series(
        &self,
        size: Size,
        signers: &[&SignerEntry],
    ) -> anyhow::Result<(Vec<Duration>, Steps)> {
        let key_id = fresh_key_id(&format!("bench-refresh-{}of{}", size.t, size.n))?;
        keygen(&self.registry, &self.store, &key_id, size, signers).await?;
        let steps = Mutex::new(Steps::default());
        let mut samples = Vec::with_capacity(self.iterations);
        for i in 0..=self.iterations {
            if i == 1 {
                *steps.lock().unwrap_or_else(|p| p.into_inner()) = Steps::default();
            }
            let start = Instant::now();
            let refreshed = ringi::refresh::run(&self.registry, &self.store, &key_id, None, |p| {
                steps.lock().unwrap_or_else(|p| p.into_inner()).record(p)
            })
            .await
            .with_context(|| format!("refresh of {key_id} ({size})"))?;
            let elapsed = start.elapsed();
            if refreshed.resumed {
                bail!("refresh of {key_id} finished an earlier refresh instead of running one");
            }
            if i > 0 {
                samples.push(elapsed);
            }
        }
        Ok((
            samples,
            steps.into_inner().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// `iterations` repairs (after a warm-up), each of a fresh key of
    /// `size`: its first participant onto the spare. Also the durations of
    /// those keygens (not part of the repair figures).
    async fn repair_series(
        &self,
        size: Size,
        signers: &[&SignerEntry],
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let spare = self.spare;
        let replaced = signers
            .first()
            .ok_or_else(|| anyhow!("a {size} key has no signers"))?;
        let identifier = u16::try_from(replaced.identifier).map_err(|_| {
            anyhow!(
                "signer {} has identifier {}",
                replaced.name,
                replaced.identifier
            )
        })?;
        let repair_registry = registry_for_repair(self.config, &replaced.name, spare, identifier)?;
        let recipient = repair_registry
            .get(spare)
            .ok_or_else(|| anyhow!("the spare {spare:?} is not in the registry"))?
            .client
            .clone()
            .get_node_info(ringi_proto::signer::v1::GetNodeInfoRequest {})
            .await
            .with_context(|| format!("node info of the spare {spare}"))?
            .into_inner()
            .dkg_public_key;
        // The helpers the orders name: the first `t` other signers, with
        // their transport keys.
        let mut helpers = std::collections::BTreeMap::new();
        for entry in signers.iter().skip(1).take(usize::from(size.t)) {
            let id = u16::try_from(entry.identifier).map_err(|_| {
                anyhow!("signer {} has identifier {}", entry.name, entry.identifier)
            })?;
            let key = repair_registry
                .get(&entry.name)
                .ok_or_else(|| anyhow!("helper {} is not in the registry", entry.name))?
                .client
                .clone()
                .get_node_info(ringi_proto::signer::v1::GetNodeInfoRequest {})
                .await
                .with_context(|| format!("node info of helper {}", entry.name))?
                .into_inner()
                .dkg_public_key;
            helpers.insert(id, key);
        }
        let mut samples = Vec::with_capacity(self.iterations);
        let mut keygens = Vec::with_capacity(self.iterations);
        for i in 0..=self.iterations {
            let key_id = fresh_key_id(&format!("bench-repair-{}of{}", size.t, size.n))?;
            let start = Instant::now();
            keygen(&self.registry, &self.store, &key_id, size, signers).await?;
            let keygen_took = start.elapsed();
            let order = signed_order(&key_id, identifier, &recipient, &helpers, &self.admins)?;
            let request = ringi::repair::RepairRequest {
                order,
                signer: spare.to_string(),
            };
            let start = Instant::now();
            let repaired = ringi::repair::run(&repair_registry, &self.store, request)
                .await
                .with_context(|| {
                    format!("repair of participant {identifier} of {key_id} ({size}) onto {spare}")
                })?;
            let elapsed = start.elapsed();
            if repaired.identifier != identifier || repaired.replaced != replaced.name {
                bail!(
                    "the repair of {key_id} replaced participant {} ({}), not {identifier} ({})",
                    repaired.identifier,
                    repaired.replaced,
                    replaced.name
                );
            }
            if i > 0 {
                samples.push(elapsed);
                keygens.push(keygen_took);
            }
        }
        Ok((samples, keygens))
    }
}

fn registry_for_repair(
    config: &Config,
    replaced: &str,
    spare: &str,
    identifier: u16,
) -> anyhow::Result<Registry> {
    registry(
        config,
        &repair_entries(&config.signers, replaced, spare, identifier),
    )
    .context("the repair's registry (the spare under the replaced identifier)")
}

/// A dealer-generated `size` key of the bench's suite: every key package,
/// and the public key package.
type DealerKey<C> = (
    BTreeMap<frost::Identifier<C>, frost::keys::KeyPackage<C>>,
    frost::keys::PublicKeyPackage<C>,
);

fn dealer_key(size: Size) -> Result<DealerKey<Secp256k1>, frost::Error<Secp256k1>> {
    let (shares, public) = frost::keys::generate_with_dealer::<Secp256k1, _>(
        size.n,
        size.t,
        frost::keys::IdentifierList::Default,
        &mut OsRng,
    )?;
    let packages = shares
        .into_iter()
        .map(|(id, s)| Ok((id, frost::keys::KeyPackage::try_from(s)?)))
        .collect::<Result<_, frost::Error<Secp256k1>>>()?;
    Ok((packages, public))
}

/// One refresh DKG of `key` in this process: every participant's part 1,
/// part 2 and shares; checks the group key stays.
fn refresh_floor_once(key: &DealerKey<Secp256k1>) -> Result<(), frost::Error<Secp256k1>> {
    use frost::keys::refresh::{refresh_dkg_part1, refresh_dkg_part2, refresh_dkg_shares};
    let (packages, public) = key;
    let n = packages.len() as u16;
    let t = packages
        .values()
        .next()
        .map(|p| *p.min_signers())
        .ok_or(frost::Error::IncorrectNumberOfIdentifiers)?;
    let mut secrets1 = BTreeMap::new();
    let mut round1 = BTreeMap::new();
    for id in packages.keys() {
        let (secret, package) = refresh_dkg_part1(*id, n, t, OsRng)?;
        secrets1.insert(*id, secret);
        round1.insert(*id, package);
    }
    let others = |me: &frost::Identifier<Secp256k1>| {
        round1
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, p)| (*id, p.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut secrets2 = BTreeMap::new();
    let mut inbox: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    for (id, secret) in secrets1 {
        let (secret, sent) = refresh_dkg_part2(secret, &others(&id))?;
        secrets2.insert(id, secret);
        for (to, package) in sent {
            inbox.entry(to).or_default().insert(id, package);
        }
    }
    for (id, secret) in &secrets2 {
        let (_, refreshed) = refresh_dkg_shares(
            secret,
            &others(id),
            inbox.get(id).ok_or(frost::Error::PackageNotFound)?,
            public.clone(),
            packages[id].clone(),
        )?;
        if refreshed.verifying_key() != public.verifying_key() {
            return Err(frost::Error::InvalidSecretShare { culprit: None });
        }
    }
    Ok(())
}

/// One repair in this process: `t` helpers (participants 2..=t+1) rebuild
/// participant 1's key package; checks it is participant 1's.
fn repair_floor_once(key: &DealerKey<Secp256k1>) -> Result<(), frost::Error<Secp256k1>> {
    use frost::keys::repairable::{repair_share_part1, repair_share_part2, repair_share_part3};
    let (packages, public) = key;
    let mut ids = packages.keys().copied();
    let lost = ids
        .next()
        .ok_or(frost::Error::IncorrectNumberOfIdentifiers)?;
    let t = usize::from(*packages[&lost].min_signers());
    let helpers: Vec<_> = ids.take(t).collect();
    let mut inbox: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for helper in &helpers {
        for (to, delta) in repair_share_part1(&helpers, &packages[helper], &mut OsRng, lost)? {
            inbox.entry(to).or_default().push(delta);
        }
    }
    let sigmas: Vec<_> = helpers
        .iter()
        .map(|h| repair_share_part2(inbox.get(h).map(Vec::as_slice).unwrap_or_default()))
        .collect();
    let rebuilt = repair_share_part3(&sigmas, lost, public)?;
    if public.verifying_shares().get(&lost) != Some(rebuilt.verifying_share()) {
        return Err(frost::Error::InvalidSecretShare {
            culprit: Some(lost),
        });
    }
    Ok(())
}

/// `iterations` runs of `once` on a dealer key of `size` after a warm-up.
fn floor(
    size: Size,
    iterations: usize,
    once: fn(&DealerKey<Secp256k1>) -> Result<(), frost::Error<Secp256k1>>,
) -> anyhow::Result<Option<Summary>> {
    let key = dealer_key(size).map_err(|e| anyhow!("dealer key {size}: {e}"))?;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations.min(20) + iterations {
        let start = Instant::now();
        once(&key).map_err(|e| anyhow!("in-process floor {size}: {e}"))?;
        if i >= iterations.min(20) {
            samples.push(start.elapsed());
        }
    }
    Ok(summarize(samples))
}

/// The bench: per size, refreshes and repairs over the stack, each next to
/// its in-process floor; then each refresh step's figures.
pub async fn run(config: &Config, args: &LifecycleArgs) -> anyhow::Result<()> {
    if args.sizes.is_empty() {
        bail!("--sizes names no size (e.g. --sizes 2of3,3of5)");
    }
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    if args.admins.is_empty() {
        bail!("--admin: give the admins' key files that sign the repair orders");
    }
    let spare = config
        .signers
        .iter()
        .find(|e| e.name == args.spare)
        .ok_or_else(|| {
            anyhow!(
                "--spare {:?} is not a signer of the config (signers: {})",
                args.spare,
                config
                    .signers
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let mut plan = Vec::with_capacity(args.sizes.len());
    for size in &args.sizes {
        plan.push((
            *size,
            key_signers(&config.signers, &spare.name, *size).map_err(|e| anyhow!(e))?,
        ));
    }
    let admins = args
        .admins
        .iter()
        .map(|path| {
            ApproverSigner::from_file(path).with_context(|| format!("--admin {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_admins(config, &admins)?;

    let dir = tempfile::Builder::new()
        .prefix("ringi-bench-lifecycle.")
        .tempdir()
        .context("a temporary directory for the bench's store")?;
    let bench = Bench {
        config,
        registry: registry(config, &config.signers)?,
        store: Arc::new(
            ringi::sqlite::SqliteStore::open(&dir.path().join("keys.db"))
                .context("the bench's SQLite store")?,
        ),
        admins,
        spare: &spare.name,
        iterations: args.iterations,
    };
    let transport = if config.tls.is_some() {
        "mutual TLS"
    } else {
        "plaintext"
    };

    let mut figures = Vec::with_capacity(plan.len());
    for (size, signers) in &plan {
        let size = *size;
        let n = args.iterations;
        let refresh_floor =
            tokio::task::spawn_blocking(move || floor(size, n, refresh_floor_once)).await??;
        let repair_floor =
            tokio::task::spawn_blocking(move || floor(size, n, repair_floor_once)).await??;
        let (refresh, steps) = bench.refresh_series(size, signers).await?;
        let (repair, keygens) = bench.repair_series(size, signers).await?;
        figures.push(SizeFigures {
            size,
            refresh_floor,
            refresh: summarize(refresh),
            refresh_steps: steps
                .taken
                .into_iter()
                .map(|(step, (description, samples))| (step, description, summarize(samples)))
                .collect(),
            repair_floor,
            repair: summarize(repair),
            replaced: signers.first().map(|e| e.name.clone()).unwrap_or_default(),
            keygen: summarize(keygens),
        });
    }

    // One network round's floor: a call the signer answers from memory
    // (GetNodeInfo, as the first step of each operation), on a reused
    // connection to the first key signer.
    let first = plan
        .first()
        .and_then(|(_, signers)| signers.first())
        .and_then(|e| bench.registry.get(&e.name))
        .ok_or_else(|| anyhow!("no key signer in the registry"))?;
    let mut client = first.client.clone();
    let mut calls = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        client
            .get_node_info(ringi_proto::signer::v1::GetNodeInfoRequest {})
            .await
            .with_context(|| format!("node info of {}", first.name))?;
        calls.push(start.elapsed());
    }

    println!(
        "ringi bench-lifecycle: {} sequential refreshes and repairs per size, {transport}, spare {}, {} admin signatures per repair order",
        args.iterations,
        spare.name,
        bench.admins.len()
    );
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10}",
        "path", "n", "p50 ms", "p99 ms", "mean ms"
    );
    for f in &figures {
        let size = f.size;
        print_row(
            &format!("in-process floor: refresh DKG {size}"),
            f.refresh_floor,
        );
        print_row(&format!("stack: refresh {size} (7 steps)"), f.refresh);
        print_row(
            &format!("in-process floor: repair {size} ({} helpers)", size.t),
            f.repair_floor,
        );
        print_row(
            &format!("stack: repair {size}, {} -> {}", f.replaced, spare.name),
            f.repair,
        );
        print_row(
            &format!("stack: keygen {size} (not in the above)"),
            f.keygen,
        );
    }
    print_row(
        &format!("signer call: GetNodeInfo to {}, reused", first.name),
        summarize(calls),
    );
    for f in &figures {
        println!();
        println!("refresh {} by step (its own progress reports)", f.size);
        for (step, description, summary) in &f.refresh_steps {
            let name: String = format!("{step}. {description}").chars().take(52).collect();
            print_row(&name, *summary);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_t_of_n() {
        assert_eq!(parse_size("2of3"), Ok(Size { t: 2, n: 3 }));
        assert_eq!(parse_size("3-of-5"), Ok(Size { t: 3, n: 5 }));
        assert_eq!(parse_size(" 7OF10 "), Ok(Size { t: 7, n: 10 }));
        assert_eq!(Size { t: 3, n: 5 }.to_string(), "3-of-5");
        for bad in [
            "", "2", "of3", "2of", "2x3", "-2of3", "2of3of4", "2 of 3", "99999of3",
        ] {
            assert!(
                parse_size(bad).unwrap_err().contains("write it TofN"),
                "{bad:?}"
            );
        }
        assert!(parse_size("1of3").unwrap_err().contains("at least 2"));
        assert!(parse_size("4of3").unwrap_err().contains("at most the 3"));
        assert!(parse_size("2of300").unwrap_err().contains("at most 255"));
    }

    fn entries(n: u32) -> Vec<SignerEntry> {
        (1..=n)
            .map(|i| SignerEntry {
                name: format!("signer-{i}"),
                address: format!("127.0.0.1:{}", 7000 + i),
                identifier: i,
            })
            .collect()
    }

    #[test]
    fn keys_use_the_first_signers_other_than_the_spare() {
        let all = entries(6);
        let names = |size| {
            key_signers(&all, "signer-2", size)
                .unwrap()
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Size { t: 2, n: 3 }),
            ["signer-1", "signer-3", "signer-4"]
        );
        assert_eq!(names(Size { t: 3, n: 5 }).len(), 5);
        let err = key_signers(&all, "signer-6", Size { t: 3, n: 6 }).unwrap_err();
        assert!(err.contains("needs 6 signers besides the spare"), "{err}");
    }

    #[test]
    fn the_repair_registry_gives_the_spare_the_lost_identifier() {
        let repaired = repair_entries(&entries(6), "signer-1", "signer-6", 1);
        let ids: Vec<(&str, u32)> = repaired
            .iter()
            .map(|e| (e.name.as_str(), e.identifier))
            .collect();
        assert_eq!(
            ids,
            [
                ("signer-2", 2),
                ("signer-3", 3),
                ("signer-4", 4),
                ("signer-5", 5),
                ("signer-6", 1)
            ]
        );
        let unique: std::collections::BTreeSet<u32> =
            repaired.iter().map(|e| e.identifier).collect();
        assert_eq!(unique.len(), repaired.len(), "identifiers stay unique");
    }

    #[test]
    fn the_floors_refresh_and_repair_dealer_keys() {
        for size in [Size { t: 2, n: 3 }, Size { t: 3, n: 5 }] {
            let key = dealer_key(size).unwrap();
            refresh_floor_once(&key).unwrap();
            repair_floor_once(&key).unwrap();
            assert_eq!(floor(size, 2, repair_floor_once).unwrap().unwrap().n, 2);
        }
    }
}
