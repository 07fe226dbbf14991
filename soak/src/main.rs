//! `ringi-soak`: the load and fault suite's driver (run by
//! `softhsm-setup/soak.sh`, which starts the stack and writes each
//! process's start script).
//!
//! It makes `--requests` signing requests on a frost-secp256k1 key,
//! `--concurrency` at a time, each with every department's approval sent
//! at once ([`flow`]); meanwhile it kills `-9` each `--kill` process
//! `--kills` times at random points and restarts it ([`faults`]), and
//! samples every process's peak memory ([`rss`]). Then it checks that every
//! request ended SIGNED exactly once, as the driver, the API, the store and
//! the audit logs all tell it ([`checks`]); it exits 1 if any check fails,
//! naming the requests at fault.

mod checks;
mod faults;
mod flow;
mod rss;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use rand::RngCore;

use crate::faults::Process;
use crate::flow::{Approver, Ctx, Outcome, Record};

/// Failures listed per check; the rest are counted.
const SHOWN_FAILURES: usize = 20;

#[derive(Parser)]
#[command(name = "ringi-soak", about = "Load and fault driver of a ringi stack")]
struct Args {
    /// The coordinator's address, host:port.
    #[arg(long, env = "RINGI_COORDINATOR")]
    coordinator: String,
    /// The client certificate (mutual TLS), its key, and the CA.
    #[arg(long, env = "RINGI_TLS_CLIENT_CERT")]
    tls_cert: PathBuf,
    #[arg(long, env = "RINGI_TLS_CLIENT_KEY")]
    tls_key: PathBuf,
    #[arg(long, env = "RINGI_TLS_CA")]
    tls_ca: PathBuf,
    /// The name in the coordinator's certificate.
    #[arg(long, default_value = "coordinator")]
    server_name: String,
    /// A frost-secp256k1 key whose policy the approvers below satisfy.
    #[arg(long)]
    key_id: String,
    /// Requests in all.
    #[arg(long)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long)]
    concurrency: usize,
    /// DEPARTMENT=KEY_FILE: an approver's development key file, one per
    /// department the key's policy requires.
    #[arg(long = "approver", required = true)]
    approvers: Vec<String>,
    /// The directory holding each process's start-NAME.sh and NAME.pid.
    #[arg(long)]
    work: PathBuf,
    /// Every process of the stack (its peak memory is reported).
    #[arg(long = "process", value_delimiter = ',', required = true)]
    processes: Vec<String>,
    /// Processes to kill -9 and restart, `--kills` times each.
    #[arg(long = "kill", value_delimiter = ',')]
    kill: Vec<String>,
    #[arg(long, default_value_t = 2)]
    kills: usize,
    /// Between a kill and the restart.
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// From a request's submission to its terminal state, at most.
    #[arg(long, default_value_t = 60)]
    request_timeout_secs: u64,
    /// The coordinator's audit log.
    #[arg(long)]
    coordinator_audit: PathBuf,
    /// NAME=PATH: a signer's audit log.
    #[arg(long = "signer-audit")]
    signer_audits: Vec<String>,
    /// Where to write one JSON line per request (id, approvals, state,
    /// signature, timings).
    #[arg(long)]
    records: Option<PathBuf>,
}

fn pair(text: &str, what: &str) -> anyhow::Result<(String, PathBuf)> {
    let (name, path) = text
        .split_once('=')
        .with_context(|| format!("{what} {text:?}: expected NAME=PATH"))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ringi-soak: error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the soak; `Ok(false)` when a check failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.requests > 0 && args.concurrency > 0,
        "--requests and --concurrency must be at least 1"
    );
    for name in &args.kill {
        anyhow::ensure!(
            args.processes.contains(name),
            "--kill {name}: not one of the --process names"
        );
    }
    let ctx = Arc::new(context(&args).await?);
    let group_key = {
        let (_, key) = ringi_cli::keys::fetch(ctx.channel.clone(), &args.key_id)
            .await
            .map_err(|e| anyhow::anyhow!("key {}: {e}", args.key_id))?;
        anyhow::ensure!(
            key.kind == ringi_frost::KeyKind::FrostSecp256k1,
            "key {} is {}, the soak signs with frost-secp256k1 keys",
            args.key_id,
            key.kind
        );
        key.group_public_key
    };
    let processes: Vec<Process> = args
        .processes
        .iter()
        .map(|name| Process::new(&args.work, name))
        .collect();
    for p in &processes {
        anyhow::ensure!(
            p.start.is_file() && p.pid().is_some(),
            "{}: expected {} and a pid in {}",
            p.name,
            p.start.display(),
            p.pidfile.display()
        );
    }
    println!(
        "soak: {} requests, {} in flight, key {}; kill -9 and restart {} {} times each",
        args.requests,
        args.concurrency,
        args.key_id,
        if args.kill.is_empty() {
            "nothing".to_string()
        } else {
            args.kill.join(" and ")
        },
        args.kills
    );

    let peaks = rss::Peaks::default();
    let sampler = tokio::spawn(rss::sample_every_second(processes.clone(), peaks.clone()));
    let (finished_tx, finished_rx) = tokio::sync::watch::channel(0usize);
    let mut injectors = Vec::new();
    for p in processes.iter().filter(|p| args.kill.contains(&p.name)) {
        let points = faults::schedule(args.requests, args.kills, &mut rand::thread_rng());
        println!(
            "soak: {} will be killed after {points:?} requests finished",
            p.name
        );
        injectors.push(tokio::spawn(faults::inject(
            p.clone(),
            points,
            finished_rx.clone(),
            Duration::from_millis(args.pause_ms),
        )));
    }

    let started = Instant::now();
    let records = run_requests(
        &ctx,
        args.requests,
        args.concurrency,
        &finished_tx,
        &processes,
    )
    .await;
    let elapsed = started.elapsed();
    drop(finished_tx);
    let mut fault_log = Vec::new();
    for injector in injectors {
        fault_log.extend(injector.await.context("a fault injector panicked")?);
    }
    rss::sample(&processes, &peaks);
    sampler.abort();

    // What the coordinator shows now that every process is back.
    let ids: Vec<[u8; 32]> = records.iter().filter_map(|r| r.id).collect();
    let api: BTreeMap<[u8; 32], Result<_, String>> = futures::stream::iter(ids)
        .map(|id| {
            let ctx = ctx.clone();
            async move { (id, flow::fetch(&ctx, &id).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let listing = flow::listing(&ctx)
        .await
        .map_err(|e| anyhow::anyhow!("listing the key's requests: {e}"))?;
    let coordinator_audit = read_lines(&args.coordinator_audit)?;
    let mut signer_audits = Vec::new();
    for text in &args.signer_audits {
        let (name, path) = pair(text, "--signer-audit")?;
        signer_audits.push((name, read_lines(&path)?));
    }
    let kills_expected: Vec<(String, usize)> =
        args.kill.iter().map(|k| (k.clone(), args.kills)).collect();
    let checks = checks::all(&checks::Evidence {
        records: &records,
        group_key: &group_key,
        api: &api,
        listing: &listing,
        coordinator_audit: &coordinator_audit,
        signer_audits: &signer_audits,
        faults: &fault_log,
        kills_expected: &kills_expected,
    });

    if let Some(path) = &args.records {
        write_records(path, &records, &api)?;
    }
    report(&records, elapsed, &fault_log, &peaks, &processes);
    let failed: Vec<&checks::Check> = checks.iter().filter(|c| !c.passed()).collect();
    for check in &checks {
        print_check(check);
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed
            .iter()
            .map(|c| format!("({}) {}", c.label, c.title))
            .collect();
        println!("soak: FAILED: {}", names.join("; "));
    }
    // The closing line softhsm-setup/run-tests.sh adds to its total.
    println!(
        "soak: {} checks: {} passed, {} failed",
        checks.len(),
        checks.len() - failed.len(),
        failed.len()
    );
    Ok(failed.is_empty())
}

async fn context(args: &Args) -> anyhow::Result<Ctx> {
    use ringi_net::tls;
    let config = tls::client_config(
        tls::load_certs(&args.tls_cert)?,
        tls::load_key(&args.tls_key)?,
        &tls::load_certs(&args.tls_ca)?,
    )?;
    // Lazy: the channel dials again whenever the coordinator comes back.
    let channel = tls::connect_lazy(
        &args.coordinator,
        &args.server_name,
        tls::Reloadable::new(Arc::new(config)),
    )?;
    let mut approvers = Vec::new();
    for text in &args.approvers {
        let (department, path) = pair(text, "--approver")?;
        let signer = ringi_cli::approver::ApproverSigner::from_file(&path)?;
        approvers.push(Approver {
            department,
            signer: Mutex::new(signer),
        });
    }
    let mut tag = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut tag);
    Ok(Ctx {
        channel,
        key_id: args.key_id.clone(),
        approvers,
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        run_tag: format!("soak-{}", hex::encode(tag)),
    })
}

/// Runs `n` requests, `concurrency` at a time, counting the finished ones
/// into `finished` (the fault injectors strike on that count).
async fn run_requests(
    ctx: &Arc<Ctx>,
    n: usize,
    concurrency: usize,
    finished: &tokio::sync::watch::Sender<usize>,
    processes: &[Process],
) -> Vec<Record> {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    for index in 0..n {
        let (ctx, slots) = (ctx.clone(), slots.clone());
        running.spawn(async move {
            let _slot = slots.acquire_owned().await;
            flow::run(ctx, index).await
        });
    }
    let mut records = Vec::with_capacity(n);
    let step = (n / 10).max(1);
    while let Some(done) = running.join_next().await {
        match done {
            Ok(record) => records.push(record),
            Err(e) => eprintln!("soak: a request task failed: {e}"),
        }
        finished.send_replace(records.len());
        if records.len() % step == 0 {
            // The resident set now, per process: flat memory over a long
            // run shows as these staying put from one tenth to the next.
            eprintln!(
                "soak: {}/{n} requests finished; RSS now: {}",
                records.len(),
                rss::now_mib(processes)
            );
        }
    }
    records.sort_by_key(|r| r.index);
    records
}

fn read_lines(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(String::from).collect())
}

fn write_records(
    path: &std::path::Path,
    records: &[Record],
    api: &BTreeMap<[u8; 32], Result<ringi_cli::view::RequestView, String>>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for r in records {
        let final_view = r.id.and_then(|id| api.get(&id));
        let line = serde_json::json!({
            "index": r.index,
            "request_id": r.id.map(hex::encode),
            "message": hex::encode(r.message),
            "watched": outcome_text(&r.outcome),
            "state": final_view.map(|v| match v {
                Ok(v) => v.state.to_string(),
                Err(e) => format!("error: {e}"),
            }),
            "signature": final_view
                .and_then(|v| v.as_ref().ok())
                .and_then(|v| v.signature.as_deref())
                .map(hex::encode),
            "approvals": r.approvals.iter().map(|a| serde_json::json!({
                "department": a.approval.statement.department,
                "acknowledged": a.answer.is_ok(),
                "error": a.answer.as_ref().err(),
                "retried_after": a.retried_after,
            })).collect::<Vec<_>>(),
            "latency_ms": r.latency.as_millis() as u64,
            "retried_after": r.retried_after,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Terminal(v) => v.state.to_string(),
        Outcome::NotSubmitted(why) => format!("not submitted: {why}"),
        Outcome::TimedOut(last) => format!(
            "timed out in {}",
            last.map_or("nothing".into(), |s| s.to_string())
        ),
        Outcome::Lost => "lost".into(),
        Outcome::Error(why) => format!("error: {why}"),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Throughput, latency, faults and peak memory.
fn report(
    records: &[Record],
    elapsed: Duration,
    faults: &[faults::Fault],
    peaks: &rss::Peaks,
    processes: &[Process],
) {
    let signed: Vec<Duration> = records
        .iter()
        .filter(|r| r.signed_view().is_some())
        .map(|r| r.latency)
        .collect();
    let count = signed.len();
    println!(
        "soak: {count} of {} requests seen SIGNED in {:.1} s: {:.1} signed/s",
        records.len(),
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    if let Some(s) = ringi_cli::bench::summarize(signed) {
        println!(
            "soak: submit -> SIGNED latency: median {}, p99 {}, mean {}",
            ms(s.p50),
            ms(s.p99),
            ms(s.mean)
        );
    }
    let retried: usize = records.iter().map(|r| r.retried_after.len()).sum();
    println!("soak: calls made again after a transport failure: {retried}");
    for f in faults {
        println!(
            "soak: fault: {} killed after {} requests (pid {}), back as pid {} after {:.1} s{}",
            f.process,
            f.at,
            f.killed.map_or("-".into(), |p| p.to_string()),
            f.restarted.map_or("-".into(), |p| p.to_string()),
            f.downtime.as_secs_f64(),
            f.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    let peaks = peaks.lock().unwrap_or_else(|e| e.into_inner());
    for p in processes {
        match peaks.get(&p.name) {
            Some(peak) => println!(
                "soak: peak RSS {:<12} {:>7.1} MiB (VmHWM, max over {} process{})",
                p.name,
                peak.kib as f64 / 1024.0,
                peak.pids.len(),
                if peak.pids.len() == 1 { "" } else { "es" }
            ),
            None => println!("soak: peak RSS {:<12} not sampled", p.name),
        }
    }
}

fn print_check(check: &checks::Check) {
    println!(
        "{} ({}) {}: {}",
        if check.passed() { "PASS" } else { "FAIL" },
        check.label,
        check.title,
        check.summary
    );
    for failure in check.failures.iter().take(SHOWN_FAILURES) {
        println!("       {failure}");
    }
    if check.failures.len() > SHOWN_FAILURES {
        println!(
            "       ... and {} more",
            check.failures.len() - SHOWN_FAILURES
        );
    }
}
