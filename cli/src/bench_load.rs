//! `ringi bench-load`: throughput of the whole stack through the
//! coordinator's public gRPC API, N requests with C in flight, against a
//! running coordinator and its signers (what a wallet service and its
//! approvers see, nothing in process).
//!
//! Two modes:
//! - `flow`: per request, submit (as the wallet identity), one approval by
//!   each `--approver` in turn (each statement built and signed here, as
//!   `ringi approve` does), then watch it (WatchSigningRequest) until it
//!   ends. The figures: requests per second, submit → signed and
//!   approved → signed (from the answer to the last Decide).
//! - `signing`: approved requests signed per second. Untimed, every request
//!   is submitted and given all its approvals but the last, and the last
//!   statement is signed ahead; timed, the last approvals are sent, C in
//!   flight, and each request watched until it ends. The figures:
//!   signatures per second, approval → signed (from sending the last
//!   Decide).
//!
//! Every request must end SIGNED with a signature that verifies under the
//! key's group key (checked after the clock stops, so the client's own
//! verifications take no CPU from the processes measured); anything else
//! (FAILED, REJECTED, EXPIRED, a refused call, a wait that timed out, a
//! signature that does not verify) is counted and named, and fails the run.
//!
//! With `--coordinator-pid` and `--signer-pid` (repeated) the CPU time each
//! process spent during the timed part (utime + stime from /proc/PID/stat,
//! so the processes must run on this host) is printed, in total and per
//! request, with the signers' and the server side's totals, and each one's
//! peak RSS (VmHWM from /proc/PID/status: the peak over the process's
//! life, not only the timed part). This client's own figures come last; it
//! shares the machine, so the CPU it uses is taken from the servers'.
//!
//! The machine's speed is part of every CPU figure: instances of this
//! project's 2-core machine kind differed by up to 2x between sittings
//! (`docs/bench.md`). So this client also measures the in-process FROST
//! floor of the key's size ([`crate::bench::floor`]: every participant's
//! round 1 and round 2 and the aggregation, in one process), on an idle
//! stack just before and just after the timed part, and prints each CPU
//! figure as a multiple of the lower of the two too (`floors/req`).
//! `--floor-only` measures only that floor (for a client measured from
//! outside, such as the Python one of `softhsm-setup/bench-load.sh`). And
//! it prints what does not depend on the machine's speed at all: each
//! watched process's write calls, bytes handed to them and bytes written
//! to storage per request (/proc/PID/io), where a change to the store or
//! to the transport shows in a single run.
//!
//! Approvals are signed with development key files (`ringi approver-key
//! generate`): a PKCS#11 approver token signs one statement at a time and
//! would measure the token, not the stack.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use p256::ecdsa::signature::Signer as _;
use rand::RngCore;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::{Approval, Decision, Statement};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_client::RequestServiceClient;
use tonic::transport::Channel;

use crate::CliError;
use crate::connect::{ClientTls, connect};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Submit, every approval, watch until signed: requests per second.
    Flow,
    /// Approvals but the last recorded ahead; the last ones timed:
    /// signatures per second.
    Signing,
}

/// `ringi bench-load`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value_t = Mode::Flow)]
    pub mode: Mode,
    /// A frost-secp256k1 key whose policy the approvers below satisfy.
    #[arg(long)]
    pub key_id: String,
    /// How many requests.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub requests: usize,
    /// How many requests in flight at once.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
    /// Approver key files (PKCS#8 PEM, development), as DEPARTMENT=KEYFILE,
    /// in the order they approve; the last completes the quorum.
    #[arg(long = "approver", value_name = "DEPARTMENT=KEYFILE", required = true)]
    pub approvers: Vec<String>,
    /// The coordinator's process id: its CPU time during the timed part and
    /// its peak RSS are reported (it must run on this host).
    #[arg(long, value_name = "PID")]
    pub coordinator_pid: Option<u32>,
    /// A signer's process id, as PID or NAME=PID (repeat for each signer;
    /// unnamed ones are called signer-1, signer-2... in order).
    #[arg(long = "signer-pid", value_name = "[NAME=]PID")]
    pub signer_pids: Vec<String>,
    /// Who asks (plaintext coordinators; under mutual TLS the coordinator
    /// takes the wallet certificate's identity, and this may be left out).
    #[arg(long)]
    pub requester: Option<String>,
    /// Under mutual TLS: the wallet identity's certificate, to submit with
    /// (approvals go with the CLI's own identity, which needs the approver
    /// role). Default: submit with the CLI's identity too.
    #[arg(long, requires = "wallet_tls_key")]
    pub wallet_tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "wallet_tls_cert")]
    pub wallet_tls_key: Option<PathBuf>,
    /// Longest time for one request, from its submission (flow) or its
    /// last approval (signing) to its end, seconds; counted as timed out
    /// after it.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Send no request: only measure the in-process FROST floor of the
    /// key's size here and print it.
    #[arg(long)]
    pub floor_only: bool,
}

/// Signings in each measurement of the floor (about 0.3 s each).
const FLOOR_ITERATIONS: usize = 300;

/// The in-process FROST floor (p50) of a `t`-of-`n` key, measured now.
fn floor_now(t: u32, n: usize) -> Option<Duration> {
    let t = u16::try_from(t).ok()?;
    let n = u16::try_from(n).ok()?;
    crate::bench::floor(t, n, FLOOR_ITERATIONS).map(|s| s.p50)
}

/// The floor line: both measurements, in milliseconds.
fn render_floor(t: u32, n: usize, before: Option<Duration>, after: Option<Duration>) -> String {
    let ms = |d: Option<Duration>| match d {
        Some(d) => format!("{:.3} ms", d.as_secs_f64() * 1e3),
        None => "?".to_string(),
    };
    format!(
        "in-process FROST floor {t}-of-{n} (p50, this client, stack idle): {} before, {} after\n",
        ms(before),
        ms(after)
    )
}

/// The floor the CPU figures are divided by: the lower of the measurements
/// made, `None` if there is none. Work left running on the machine (the
/// signers refilling their nonce pools after a burst) only ever slows a
/// measurement down, so the lower one is the machine's speed.
fn floor_of_run(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    match (before, after) {
        (Some(b), Some(a)) => Some(b.min(a)),
        (one, other) => one.or(other),
    }
}

/// Why a run could not be made, or failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Cli(#[from] CliError),
    #[error(transparent)]
    Approver(#[from] crate::approver::ApproverError),
    #[error("{bad} of {total} requests did not end SIGNED with a valid signature")]
    Failures { bad: usize, total: usize },
}

/// Plain default requester for a coordinator without TLS, where one must
/// be named.
const PLAINTEXT_REQUESTER: &str = "wallet-service";

/// One approver: a department and its development key file.
struct LoadApprover {
    department: String,
    key: p256::ecdsa::SigningKey,
    public: ApproverKey,
}

impl LoadApprover {
    fn parse(spec: &str) -> Result<Self, LoadError> {
        let (department, file) = spec.split_once('=').ok_or_else(|| {
            LoadError::Usage(format!("--approver takes DEPARTMENT=KEYFILE, got {spec:?}"))
        })?;
        let signer = crate::approver::ApproverSigner::from_file(std::path::Path::new(file))?;
        let public = signer.public_key();
        let crate::approver::ApproverSigner::File(key) = signer else {
            return Err(LoadError::Usage(format!("{file} is not a key file")));
        };
        Ok(LoadApprover {
            department: department.to_string(),
            key,
            public,
        })
    }

    /// An approval of `request`, issued now for `ttl_secs` (the validity
    /// the coordinator proposes, bounded as `ringi approve` bounds it).
    fn approve(
        &self,
        request: &SigningRequest,
        ttl_secs: u64,
    ) -> Result<pb::DecideRequest, String> {
        let window = crate::view::approval_window(ringi_policy::clock::now(), ttl_secs)
            .map_err(|e| e.to_string())?;
        let statement = Statement::for_request(
            request,
            &self.department,
            Decision::Approve,
            "",
            window.issued_at,
            window.expires_at,
        );
        let signature: p256::ecdsa::Signature =
            self.key.sign(&statement.signed_bytes(&self.public));
        let approval = Approval {
            statement,
            approver: self.public.clone(),
            signature: signature.to_bytes().to_vec(),
        };
        Ok(pb::DecideRequest {
            approval: Some(ringi_proto::bundle::approval_to_pb(&approval)),
        })
    }
}

/// What a watched process is, for the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Signer,
}

/// A process to watch, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
    pub role: Role,
}

/// The processes `--coordinator-pid` and `--signer-pid` name: the
/// coordinator first, then the signers in the order given. A signer is
/// `PID` (named `signer-N` by its position) or `NAME=PID`.
pub fn watched_processes(
    coordinator: Option<u32>,
    signers: &[String],
) -> Result<Vec<Watched>, LoadError> {
    let mut watched: Vec<Watched> = coordinator
        .map(|pid| Watched {
            name: "coordinator".into(),
            pid,
            role: Role::Coordinator,
        })
        .into_iter()
        .collect();
    for (i, spec) in signers.iter().enumerate() {
        let (name, pid) = match spec.split_once('=') {
            Some((name, pid)) if !name.is_empty() => (name.to_string(), pid),
            Some(_) => {
                return Err(LoadError::Usage(format!(
                    "--signer-pid takes PID or NAME=PID, got {spec:?}"
                )));
            }
            None => (format!("signer-{}", i + 1), spec.as_str()),
        };
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| LoadError::Usage(format!("--signer-pid: {pid:?} is not a process id")))?;
        watched.push(Watched {
            name,
            pid,
            role: Role::Signer,
        });
    }
    Ok(watched)
}

/// Linux reports CPU times in /proc in USER_HZ ticks, 100 per second on
/// every architecture this runs on (the /proc ABI, whatever the kernel's
/// own HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system, every thread) of process `pid` so far, from
/// /proc/PID/stat; `None` if it cannot be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND))
}

/// utime + stime, fields 14 and 15 of a /proc/PID/stat line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses
/// itself: the fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Peak resident set size of process `pid` (VmHWM), bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Signed {
        /// Submit → signed (flow mode only).
        total: Option<Duration>,
        /// Last approval → signed.
        after_approval: Duration,
        message: Vec<u8>,
        signature: Vec<u8>,
    },
    /// A terminal state other than SIGNED.
    Ended {
        state: String,
        reason: String,
    },
    /// A call refused or failed.
    Error(String),
    TimedOut,
}

/// What every worker shares.
struct Ctx {
    wallet: RequestServiceClient<Channel>,
    approver: RequestServiceClient<Channel>,
    key_id: String,
    requester: String,
    /// Makes this run's idempotency keys its own.
    run_tag: String,
    approvers: Vec<LoadApprover>,
    timeout: Duration,
}

/// A submitted request, checked: the coordinator's copy decodes, hashes to
/// the id it gave, and signs the message submitted.
struct Submitted {
    id: String,
    request: SigningRequest,
    approval_ttl_secs: u64,
}

impl Ctx {
    async fn submit(&self, index: usize, message: &[u8]) -> Result<Submitted, String> {
        let view = self
            .wallet
            .clone()
            .submit_signing_request(pb::SubmitSigningRequestRequest {
                key_id: self.key_id.clone(),
                message: message.to_vec(),
                asset: "BENCH".into(),
                amount: "1".into(),
                destination: "bench-load".into(),
                memo: String::new(),
                requester: self.requester.clone(),
                signers: Vec::new(),
                idempotency_key: format!("bench-load-{}-{index}", self.run_tag),
                psbt: Vec::new(),
            })
            .await
            .map_err(|s| format!("submit: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let request = view
            .request
            .as_ref()
            .ok_or("submit: the view carries no request")
            .and_then(|r| {
                ringi_proto::bundle::request_from_pb(r).map_err(|_| "submit: a malformed request")
            })?;
        if hex::encode(request.id()) != view.request_id {
            return Err(format!(
                "submit: the request shown does not hash to its id {}",
                view.request_id
            ));
        }
        if request.message != message {
            return Err(format!(
                "submit: request {} signs another message",
                view.request_id
            ));
        }
        Ok(Submitted {
            id: view.request_id,
            request,
            approval_ttl_secs: view.approval_ttl_secs,
        })
    }

    async fn decide(&self, decision: pb::DecideRequest) -> Result<(), String> {
        self.approver
            .clone()
            .decide(decision)
            .await
            .map(|_| ())
            .map_err(|s| format!("decide: {:?}: {}", s.code(), s.message()))
    }

    /// Watches request `id` until it ends; its terminal state, reason and
    /// signature. A stream that ends early (the coordinator shutting down)
    /// is opened again; it replays the history first.
    async fn until_ended(&self, id: &str) -> Result<(String, String, Vec<u8>), String> {
        let mut client = self.wallet.clone();
        loop {
            let mut events = client
                .watch_signing_request(pb::WatchSigningRequestRequest {
                    request_id: id.to_string(),
                })
                .await
                .map_err(|s| format!("watch: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            while let Some(event) = events
                .message()
                .await
                .map_err(|s| format!("watch: {:?}: {}", s.code(), s.message()))?
            {
                let Some(t) = event.transition else { continue };
                if !matches!(
                    t.to_state.as_str(),
                    "SIGNED" | "REJECTED" | "EXPIRED" | "FAILED"
                ) {
                    continue;
                }
                let signature = event.request.map(|r| r.signature).unwrap_or_default();
                // Read to the stream's end, which follows the terminal
                // event: a stream dropped before it is reset (CANCEL), its
                // end then arrives for a stream h2 may have forgotten, and
                // h2 counts each such frame as an error it reset; after
                // 1024 on one connection it closes the connection itself
                // (ENHANCE_YOUR_CALM), failing every watch on it (seen in
                // 10,000-request runs).
                while let Ok(Some(_)) = events.message().await {}
                return Ok((t.to_state, t.reason, signature));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for `id` to end.
    async fn outcome(
        &self,
        id: &str,
        message: Vec<u8>,
        submitted: Option<Instant>,
        approved: Instant,
    ) -> Outcome {
        match self.until_ended(id).await {
            Err(e) => Outcome::Error(e),
            Ok((state, _, signature)) if state == "SIGNED" => Outcome::Signed {
                total: submitted.map(|s| s.elapsed()),
                after_approval: approved.elapsed(),
                message,
                signature,
            },
            Ok((state, reason, _)) => Outcome::Ended { state, reason },
        }
    }

    /// `job` within the time limit of one request: a call that never
    /// answers counts as timed out instead of holding the run.
    async fn in_time(&self, job: impl std::future::Future<Output = Outcome>) -> Outcome {
        tokio::time::timeout(self.timeout, job)
            .await
            .unwrap_or(Outcome::TimedOut)
    }

    /// `flow` for request `index`: submit, approve, watch.
    async fn flow(&self, index: usize) -> Outcome {
        self.in_time(self.flow_untimed(index)).await
    }

    async fn flow_untimed(&self, index: usize) -> Outcome {
        let message = random_message();
        let start = Instant::now();
        let submitted = match self.submit(index, &message).await {
            Ok(s) => s,
            Err(e) => return Outcome::Error(e),
        };
        for a in &self.approvers {
            let decided = match a.approve(&submitted.request, submitted.approval_ttl_secs) {
                Ok(d) => self.decide(d).await,
                Err(e) => Err(e),
            };
            if let Err(e) = decided {
                return Outcome::Error(e);
            }
        }
        let approved = Instant::now();
        self.outcome(&submitted.id, message, Some(start), approved)
            .await
    }
}

/// A request made ready for `signing` mode: every approval recorded but
/// the last, which is signed and waiting to be sent.
struct Prepared {
    id: String,
    message: Vec<u8>,
    last: pb::DecideRequest,
}

impl Ctx {
    async fn prepare(&self, index: usize) -> Result<Prepared, String> {
        tokio::time::timeout(self.timeout, self.prepare_untimed(index))
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {:?}", self.timeout)))
    }

    async fn prepare_untimed(&self, index: usize) -> Result<Prepared, String> {
        let message = random_message();
        let submitted = self.submit(index, &message).await?;
        let (last, first) = self
            .approvers
            .split_last()
            .ok_or("no approvers were given")?;
        for a in first {
            self.decide(a.approve(&submitted.request, submitted.approval_ttl_secs)?)
                .await?;
        }
        Ok(Prepared {
            last: last.approve(&submitted.request, submitted.approval_ttl_secs)?,
            id: submitted.id,
            message,
        })
    }

    /// `signing` for one prepared request: the last approval, then watch.
    async fn sign(&self, p: Prepared) -> Outcome {
        self.in_time(self.sign_untimed(p)).await
    }

    async fn sign_untimed(&self, p: Prepared) -> Outcome {
        let start = Instant::now();
        if let Err(e) = self.decide(p.last).await {
            return Outcome::Error(e);
        }
        self.outcome(&p.id, p.message, None, start).await
    }
}

fn random_message() -> Vec<u8> {
    let mut m = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut m);
    m
}

/// Runs `job(i)` for every i in 0..n, `concurrency` at a time, on the
/// runtime's threads; the results in index order.
async fn run_all<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let job = job.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return done;
                }
                done.push((i, job(i).await));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(done) => all.extend(done),
            // A worker only panics on a bug; its requests are then missing
            // from the count, which the caller reports.
            Err(e) => eprintln!("ringi: bench-load: a worker ended abnormally: {e}"),
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// What the watched processes had used at one moment.
struct Snapshot {
    /// CPU times of the watched processes (and of this one, last).
    cpu: Vec<Option<Duration>>,
    /// I/O counters of the watched processes.
    io: Vec<Option<IoCounters>>,
}

fn snapshot(watched: &[Watched]) -> Snapshot {
    Snapshot {
        cpu: watched
            .iter()
            .map(|w| cpu_time(w.pid))
            .chain(std::iter::once(cpu_time(std::process::id())))
            .collect(),
        io: watched.iter().map(|w| io_counters(w.pid)).collect(),
    }
}

/// Process `i`'s readings before and after the timed part, if /proc gave
/// both.
fn readings<T: Copy>(before: &[Option<T>], after: &[Option<T>], i: usize) -> Option<(T, T)> {
    Some((
        before.get(i).copied().flatten()?,
        after.get(i).copied().flatten()?,
    ))
}

/// A process's write counters so far (all its threads, live or ended),
/// from /proc/PID/io. Unlike CPU time they do not depend on the machine's
/// speed: what a change to the store or the transport does to them shows
/// in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoCounters {
    /// write-family system calls (`syscw`: write, pwrite, writev, on
    /// files and sockets; not send/sendmsg).
    pub write_calls: u64,
    /// Bytes handed to those calls (`wchar`).
    pub written: u64,
    /// Bytes the process caused to be written to storage (`write_bytes`).
    pub disk_written: u64,
}

impl IoCounters {
    fn since(self, before: IoCounters) -> IoCounters {
        IoCounters {
            write_calls: self.write_calls.saturating_sub(before.write_calls),
            written: self.written.saturating_sub(before.written),
            disk_written: self.disk_written.saturating_sub(before.disk_written),
        }
    }
}

/// [`IoCounters`] of process `pid`, if /proc/PID/io can be read (the same
/// user, or root).
pub fn io_counters(pid: u32) -> Option<IoCounters> {
    parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

fn parse_io(text: &str) -> Option<IoCounters> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some(IoCounters {
        write_calls: field("syscw")?,
        written: field("wchar")?,
        disk_written: field("write_bytes")?,
    })
}

/// The I/O table: per request timed, each watched process's write calls,
/// KiB handed to them and KiB it wrote to storage; `?` where /proc could
/// not be read.
fn render_io(
    watched: &[Watched],
    before: &[Option<IoCounters>],
    after: &[Option<IoCounters>],
    requests: usize,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let per_request = |v: u64| v as f64 / requests.max(1) as f64;
    let _ = writeln!(
        out,
        "{:<20} {:>12} {:>14} {:>14}",
        "I/O per request", "write calls", "written KiB", "to disk KiB"
    );
    for (i, w) in watched.iter().enumerate() {
        let used = readings(before, after, i).map(|(b, a)| a.since(b));
        let _ = match used {
            Some(u) => writeln!(
                out,
                "{:<20} {:>12.1} {:>14.2} {:>14.2}",
                w.name,
                per_request(u.write_calls),
                per_request(u.written) / 1024.0,
                per_request(u.disk_written) / 1024.0
            ),
            None => writeln!(out, "{:<20} {:>12} {:>14} {:>14}", w.name, "?", "?", "?"),
        };
    }
    out
}

/// `ringi bench-load`: prints the report; fails if any request did not end
/// SIGNED with a valid signature.
pub async fn run(address: &str, tls: Option<&ClientTls>, args: &LoadArgs) -> Result<(), LoadError> {
    if args.requests == 0 || args.concurrency == 0 {
        return Err(LoadError::Usage(
            "--requests and --concurrency must be at least 1".into(),
        ));
    }
    let approvers = args
        .approvers
        .iter()
        .map(|s| LoadApprover::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let watched = watched_processes(args.coordinator_pid, &args.signer_pids)?;
    let channel = connect(address, tls).await?;
    let wallet_channel = match (tls, &args.wallet_tls_cert, &args.wallet_tls_key) {
        (Some(tls), Some(cert), Some(key)) => {
            let wallet = ClientTls {
                cert: cert.clone(),
                key: key.clone(),
                ..tls.clone()
            };
            connect(address, Some(&wallet)).await?
        }
        (None, Some(_), _) => {
            return Err(LoadError::Usage(
                "--wallet-tls-cert needs the CLI's mutual TLS options (--tls-ca ...)".into(),
            ));
        }
        _ => channel.clone(),
    };
    let (key, _) = crate::keys::fetch(channel.clone(), &args.key_id).await?;
    if !matches!(key.kind.as_str(), "" | "frost-secp256k1") {
        return Err(LoadError::Usage(format!(
            "key {} is of kind {}: bench-load signs raw messages with frost-secp256k1 keys",
            args.key_id, key.kind
        )));
    }
    let verifying_key =
        frost_core::VerifyingKey::<ringi_frost::Secp256k1>::deserialize(&key.group_public_key)
            .map_err(|e| LoadError::Usage(format!("key {}: group key: {e}", args.key_id)))?;
    let (t, n_signers) = (key.threshold, key.signers.len());
    if args.floor_only {
        let floor = floor_now(t, n_signers);
        print!("{}", render_floor(t, n_signers, floor, None));
        return Ok(());
    }
    let requester = match (&args.requester, tls) {
        (Some(r), _) => r.clone(),
        (None, Some(_)) => String::new(),
        (None, None) => PLAINTEXT_REQUESTER.to_string(),
    };
    let mut tag = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut tag);
    let ctx = Arc::new(Ctx {
        wallet: RequestServiceClient::new(wallet_channel),
        approver: RequestServiceClient::new(channel),
        key_id: args.key_id.clone(),
        requester,
        run_tag: hex::encode(tag),
        approvers,
        timeout: Duration::from_secs(args.timeout_secs),
    });
    let (n, c) = (args.requests, args.concurrency);

    // Measured here, with nothing in flight, and again after the timed part.
    let floor_before = floor_now(t, n_signers);
    let (outcomes, timed, elapsed, before, after) = match args.mode {
        Mode::Flow => {
            let before = snapshot(&watched);
            let start = Instant::now();
            let job_ctx = ctx.clone();
            let outcomes = run_all(n, c, move |i| {
                let ctx = job_ctx.clone();
                async move { ctx.flow(i).await }
            })
            .await;
            let elapsed = start.elapsed();
            (outcomes, n, elapsed, before, snapshot(&watched))
        }
        Mode::Signing => {
            eprintln!(
                "ringi: bench-load: preparing {n} requests (submitted, {} of {} approvals recorded; not timed)",
                ctx.approvers.len().saturating_sub(1),
                ctx.approvers.len()
            );
            let job_ctx = ctx.clone();
            let prepared = run_all(n, c, move |i| {
                let ctx = job_ctx.clone();
                async move { ctx.prepare(i).await }
            })
            .await;
            // A request that could not be prepared is counted as an error
            // and left out of the timed part, which signs the others.
            let mut outcomes = Vec::new();
            let mut ready = Vec::new();
            for p in prepared {
                match p {
                    Ok(p) => ready.push(std::sync::Mutex::new(Some(p))),
                    Err(e) => outcomes.push(Outcome::Error(format!("preparing: {e}"))),
                }
            }
            if !outcomes.is_empty() {
                eprintln!(
                    "ringi: bench-load: {} of {n} requests could not be prepared; timing the other {}",
                    outcomes.len(),
                    ready.len()
                );
            }
            let timed = ready.len();
            let slots = Arc::new(ready);
            let before = snapshot(&watched);
            let start = Instant::now();
            let job_ctx = ctx.clone();
            let signed = run_all(timed, c, move |i| {
                let ctx = job_ctx.clone();
                let p = slots
                    .get(i)
                    .and_then(|slot| slot.lock().ok().and_then(|mut slot| slot.take()));
                async move {
                    match p {
                        Some(p) => ctx.sign(p).await,
                        None => Outcome::Error("a prepared request was taken twice".into()),
                    }
                }
            })
            .await;
            let elapsed = start.elapsed();
            outcomes.extend(signed);
            (outcomes, timed, elapsed, before, snapshot(&watched))
        }
    };

    let departments: Vec<&str> = ctx
        .approvers
        .iter()
        .map(|a| a.department.as_str())
        .collect();
    let header = format!(
        "ringi bench-load: mode {}, key {:?} ({}-of-{}), {n} requests, {c} in flight, {} approvals each ({})",
        match args.mode {
            Mode::Flow => "flow",
            Mode::Signing => "signing",
        },
        args.key_id,
        key.threshold,
        key.signers.len(),
        departments.len(),
        departments.join(", ")
    );
    let report = Report::new(args.mode, header, outcomes, elapsed, &verifying_key);
    let floor_after = floor_now(t, n_signers);
    print!("{}", report.render());
    let processes = process_figures(&watched, &before.cpu, &after.cpu);
    print!(
        "{}",
        render_processes(&processes, timed, floor_of_run(floor_before, floor_after))
    );
    print!("{}", render_floor(t, n_signers, floor_before, floor_after));
    if !watched.is_empty() {
        print!("{}", render_io(&watched, &before.io, &after.io, timed));
    }
    let missing = n.saturating_sub(report.counted);
    let bad = report.bad() + missing;
    if bad > 0 {
        return Err(LoadError::Failures { bad, total: n });
    }
    Ok(())
}

/// Nearest-rank percentiles of a set of latencies, and the slowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub n: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// `None` without samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        samples.sort_unstable();
        let max = *samples.last()?;
        let len = samples.len();
        let rank = |q: f64| samples[((q * len as f64).ceil() as usize).clamp(1, len) - 1];
        Some(Latency {
            n: len,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max,
        })
    }
}

/// Distinct error messages listed in a report.
const MAX_ERRORS_SHOWN: usize = 8;

/// A run's figures.
struct Report {
    mode: Mode,
    header: String,
    counted: usize,
    elapsed: Duration,
    signed: usize,
    verified: usize,
    /// Terminal states other than SIGNED, with one reason each.
    ended: BTreeMap<String, (usize, String)>,
    errors: BTreeMap<String, usize>,
    timed_out: usize,
    total: Option<Latency>,
    after_approval: Option<Latency>,
}

impl Report {
    /// Tallies `outcomes`, each signature checked under `verifying_key`.
    fn new(
        mode: Mode,
        header: String,
        outcomes: Vec<Outcome>,
        elapsed: Duration,
        verifying_key: &frost_core::VerifyingKey<ringi_frost::Secp256k1>,
    ) -> Report {
        let mut report = Report {
            mode,
            header,
            counted: outcomes.len(),
            elapsed,
            signed: 0,
            verified: 0,
            ended: BTreeMap::new(),
            errors: BTreeMap::new(),
            timed_out: 0,
            total: None,
            after_approval: None,
        };
        let (mut totals, mut afters) = (Vec::new(), Vec::new());
        for o in outcomes {
            match o {
                Outcome::Signed {
                    total,
                    after_approval,
                    message,
                    signature,
                } => {
                    report.signed += 1;
                    if verifies(verifying_key, &message, &signature) {
                        report.verified += 1;
                    }
                    totals.extend(total);
                    afters.push(after_approval);
                }
                Outcome::Ended { state, reason } => {
                    let entry = report.ended.entry(state).or_insert((0, reason));
                    entry.0 += 1;
                }
                Outcome::Error(e) => *report.errors.entry(e).or_insert(0) += 1,
                Outcome::TimedOut => report.timed_out += 1,
            }
        }
        report.total = Latency::of(totals);
        report.after_approval = Latency::of(afters);
        report
    }

    /// Requests that did not end SIGNED with a valid signature.
    fn bad(&self) -> usize {
        self.counted - self.verified
    }

    fn render(&self) -> String {
        use std::fmt::Write as _;
        let p = crate::view::printable;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.header);
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.verified as f64 / secs
        } else {
            0.0
        };
        let unit = match self.mode {
            Mode::Flow => "requests/s",
            Mode::Signing => "signatures/s",
        };
        let _ = writeln!(
            out,
            "signed {} of {}, signature verified {}; failed {}, rejected {}, expired {}, errors {}, timed out {}",
            self.signed,
            self.counted,
            self.verified,
            self.ended.get("FAILED").map_or(0, |e| e.0),
            self.ended.get("REJECTED").map_or(0, |e| e.0),
            self.ended.get("EXPIRED").map_or(0, |e| e.0),
            self.errors.values().sum::<usize>(),
            self.timed_out
        );
        let _ = writeln!(
            out,
            "throughput {rate:.1} {unit} ({} in {secs:.2} s)",
            self.verified
        );
        for (state, (count, reason)) in &self.ended {
            let _ = writeln!(out, "  {count} {state}, e.g.: {}", p(reason));
        }
        if self.signed > self.verified {
            let _ = writeln!(
                out,
                "  {} signatures did not verify under the key's group key",
                self.signed - self.verified
            );
        }
        // The most frequent first; a message that names its request makes
        // every error distinct, and a thousand lines would bury the figures.
        let mut errors: Vec<(&String, &usize)> = self.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (error, count) in errors.iter().take(MAX_ERRORS_SHOWN) {
            let _ = writeln!(out, "  {count} x {}", p(error));
        }
        if errors.len() > MAX_ERRORS_SHOWN {
            let _ = writeln!(
                out,
                "  ... and {} other errors ({} requests)",
                errors.len() - MAX_ERRORS_SHOWN,
                errors[MAX_ERRORS_SHOWN..]
                    .iter()
                    .map(|e| *e.1)
                    .sum::<usize>()
            );
        }
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "n", "p50", "p90", "p99", "max"
        );
        let mut row = |name: &str, l: &Option<Latency>| {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let _ = match l {
                Some(l) => writeln!(
                    out,
                    "{name:<24} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    l.n,
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.max)
                ),
                None => writeln!(out, "{name:<24} (no samples)"),
            };
        };
        match self.mode {
            Mode::Flow => {
                row("submit -> signed", &self.total);
                row("approved -> signed", &self.after_approval);
            }
            Mode::Signing => row("approved -> signed", &self.after_approval),
        }
        out
    }
}

fn verifies(
    key: &frost_core::VerifyingKey<ringi_frost::Secp256k1>,
    message: &[u8],
    signature: &[u8],
) -> bool {
    frost_core::Signature::<ringi_frost::Secp256k1>::deserialize(signature)
        .is_ok_and(|sig| key.verify(message, &sig).is_ok())
}

/// What one process used: CPU during the timed part (`None` if /proc could
/// not be read before and after), peak RSS over its life.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessFigures {
    name: String,
    pid: u32,
    /// `None` for this client.
    role: Option<Role>,
    cpu: Option<Duration>,
    peak_rss: Option<u64>,
}

/// The watched processes' figures, then this client's.
fn process_figures(
    watched: &[Watched],
    before: &[Option<Duration>],
    after: &[Option<Duration>],
) -> Vec<ProcessFigures> {
    watched
        .iter()
        .map(|w| (w.name.clone(), w.pid, Some(w.role)))
        .chain(std::iter::once((
            "bench-load client".to_string(),
            std::process::id(),
            None,
        )))
        .enumerate()
        .map(|(i, (name, pid, role))| ProcessFigures {
            name,
            pid,
            role,
            cpu: readings(before, after, i).map(|(b, a)| a.saturating_sub(b)),
            peak_rss: peak_rss(pid),
        })
        .collect()
}

/// The CPU table: each process's CPU seconds during the timed part, CPU
/// milliseconds per request timed, peak RSS; then the signers' and the
/// server side's (coordinator + signers) totals. A figure that could not be
/// read is `?`, and a total that would need it is left out. With a
/// `floor`, each CPU figure per request also as a multiple of it, last.
fn render_processes(
    processes: &[ProcessFigures],
    requests: usize,
    floor: Option<Duration>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let per_request = |d: Duration| d.as_secs_f64() * 1e3 / requests.max(1) as f64;
    let floors = |d: Duration| match floor {
        Some(f) if !f.is_zero() => format!(" {:>10.2}", per_request(d) / (f.as_secs_f64() * 1e3)),
        Some(_) => format!(" {:>10}", "?"),
        None => String::new(),
    };
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let _ = writeln!(
        out,
        "{:<20} {:>8} {:>10} {:>12} {:>14}{}",
        "process",
        "pid",
        "cpu s",
        "cpu ms/req",
        "peak RSS MiB",
        if floor.is_some() {
            format!(" {:>10}", "floors/req")
        } else {
            String::new()
        }
    );
    // Cells of the floors column where there is no figure; and the totals'
    // empty RSS cell, which keeps their floors in that column.
    let (unknown_floors, no_rss) = if floor.is_some() {
        (format!(" {:>10}", "?"), format!(" {:>14}", ""))
    } else {
        (String::new(), String::new())
    };
    for p in processes {
        let rss = p.peak_rss.map(mib).unwrap_or_else(|| "?".into());
        let _ = match p.cpu {
            Some(cpu) => writeln!(
                out,
                "{:<20} {:>8} {:>10.2} {:>12.2} {rss:>14}{}",
                p.name,
                p.pid,
                cpu.as_secs_f64(),
                per_request(cpu),
                floors(cpu)
            ),
            None => writeln!(
                out,
                "{:<20} {:>8} {:>10} {:>12} {rss:>14}{unknown_floors}",
                p.name, p.pid, "?", "?"
            ),
        };
    }
    // None: no such process watched; Some(None): one's CPU time unknown.
    let total = |roles: &[Role]| -> Option<Option<Duration>> {
        let members: Vec<&ProcessFigures> = processes
            .iter()
            .filter(|p| p.role.is_some_and(|r| roles.contains(&r)))
            .collect();
        (!members.is_empty()).then(|| members.iter().map(|p| p.cpu).sum())
    };
    for (name, roles) in [
        ("signers total", &[Role::Signer][..]),
        ("server total", &[Role::Coordinator, Role::Signer][..]),
    ] {
        match total(roles) {
            Some(Some(cpu)) => {
                let _ = writeln!(
                    out,
                    "{name:<20} {:>8} {:>10.2} {:>12.2}{no_rss}{}",
                    "",
                    cpu.as_secs_f64(),
                    per_request(cpu),
                    floors(cpu)
                );
            }
            Some(None) => {
                let _ = writeln!(
                    out,
                    "{name:<20} {:>8} {:>10} {:>12}{no_rss}{unknown_floors}",
                    "", "?", "?"
                );
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis: fields are counted
        // after the last ')'. utime 1234, stime 56.
        let stat =
            "4242 (ringi (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(1290));
        assert_eq!(parse_cpu_ticks("4242 (truncated) S 1"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        let me = std::process::id();
        // Spin a little so the count is not zero.
        let start = Instant::now();
        while cpu_time(me).unwrap() < Duration::from_millis(20)
            && start.elapsed() < Duration::from_secs(5)
        {
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        assert!(cpu_time(me).unwrap() >= Duration::from_millis(10));
        assert!(peak_rss(me).unwrap() > 1024 * 1024);
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[test]
    fn vm_hwm_is_read_in_kib() {
        assert_eq!(
            parse_vm_hwm("Name:\tringi\nVmPeak:\t 9000 kB\nVmHWM:\t    2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_hwm("Name:\tringi\n"), None);
    }

    #[test]
    fn watched_processes_are_the_coordinator_then_the_signers() {
        let w = watched_processes(Some(12), &["13".into(), "hsm-b=14".into()]).unwrap();
        let got: Vec<(&str, u32, Role)> =
            w.iter().map(|w| (w.name.as_str(), w.pid, w.role)).collect();
        assert_eq!(
            got,
            vec![
                ("coordinator", 12, Role::Coordinator),
                ("signer-1", 13, Role::Signer),
                ("hsm-b", 14, Role::Signer)
            ]
        );
        assert!(watched_processes(None, &[]).unwrap().is_empty());
        for bad in ["x", "=13", "s=", "s=-1"] {
            assert!(
                matches!(
                    watched_processes(None, &[bad.into()]),
                    Err(LoadError::Usage(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn latency_percentiles_are_nearest_rank_and_max_is_the_slowest() {
        let ms = Duration::from_millis;
        // 1..=100 ms, shuffled: rank q·100.
        let mut samples: Vec<Duration> = (1..=100).map(ms).collect();
        samples.reverse();
        samples.swap(3, 71);
        assert_eq!(
            Latency::of(samples),
            Some(Latency {
                n: 100,
                p50: ms(50),
                p90: ms(90),
                p99: ms(99),
                max: ms(100)
            })
        );
        let one = Latency::of(vec![ms(7)]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
        assert_eq!(Latency::of(Vec::new()), None);
    }

    /// A 2-of-3 key, one signature by it over `message`.
    fn signed(
        message: &[u8],
    ) -> (
        frost_core::keys::PublicKeyPackage<ringi_frost::Secp256k1>,
        Vec<u8>,
    ) {
        use frost_core as frost;
        use ringi_frost::Secp256k1;
        let (shares, public) = frost::keys::generate_with_dealer::<Secp256k1, _>(
            3,
            2,
            frost::keys::IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let packages: BTreeMap<_, _> = shares
            .into_iter()
            .map(|(id, s)| (id, frost::keys::KeyPackage::try_from(s).unwrap()))
            .take(2)
            .collect();
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for (id, kp) in &packages {
            let (n, c) = frost::round1::commit(kp.signing_share(), &mut rand::rngs::OsRng);
            nonces.insert(*id, n);
            commitments.insert(*id, c);
        }
        let package = frost::SigningPackage::new(commitments, message);
        let shares: BTreeMap<_, _> = nonces
            .iter()
            .map(|(id, n)| {
                (
                    *id,
                    frost::round2::sign(&package, n, &packages[id]).unwrap(),
                )
            })
            .collect();
        let sig = frost::aggregate(&package, &shares, &public).unwrap();
        (public, sig.serialize().unwrap())
    }

    #[test]
    fn the_report_counts_every_way_a_request_can_end() {
        let (public, sig) = signed(b"load");
        let ok = |ms| Outcome::Signed {
            total: Some(Duration::from_millis(ms * 3)),
            after_approval: Duration::from_millis(ms),
            message: b"load".to_vec(),
            signature: sig.clone(),
        };
        let outcomes = vec![
            ok(10),
            ok(20),
            // Signed, but not this message: counted signed, not verified.
            Outcome::Signed {
                total: Some(Duration::from_millis(5)),
                after_approval: Duration::from_millis(5),
                message: b"other".to_vec(),
                signature: sig.clone(),
            },
            Outcome::Ended {
                state: "FAILED".into(),
                reason: "signer-2 down".into(),
            },
            Outcome::Error("decide: PermissionDenied: no".into()),
            Outcome::Error("decide: PermissionDenied: no".into()),
            Outcome::TimedOut,
        ];
        let report = Report::new(
            Mode::Flow,
            "header".into(),
            outcomes,
            Duration::from_secs(2),
            public.verifying_key(),
        );
        assert_eq!(report.bad(), 5);
        let text = report.render();
        assert!(
            text.contains("signed 3 of 7, signature verified 2; failed 1, rejected 0, expired 0, errors 2, timed out 1"),
            "{text}"
        );
        assert!(
            text.contains("throughput 1.0 requests/s (2 in 2.00 s)"),
            "{text}"
        );
        assert!(text.contains("1 FAILED, e.g.: signer-2 down"), "{text}");
        assert!(text.contains("1 signatures did not verify"), "{text}");
        assert!(text.contains("2 x decide: PermissionDenied: no"), "{text}");
        // Latencies over the three signed: 5, 10, 20 ms after approval.
        let row = text
            .lines()
            .find(|l| l.starts_with("approved -> signed"))
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().skip(3).collect();
        assert_eq!(cells, ["3", "10.0", "20.0", "20.0", "20.0"], "{row}");
        assert!(text.contains("submit -> signed"), "{text}");
    }

    #[test]
    fn errors_are_listed_most_frequent_first_and_capped() {
        let mut outcomes: Vec<Outcome> = (0..20)
            .map(|i| Outcome::Error(format!("submit: Unavailable: request {i}")))
            .collect();
        outcomes.extend((0..3).map(|_| Outcome::Error("decide: Internal: x".into())));
        let (public, _) = signed(b"load");
        let text = Report::new(
            Mode::Signing,
            "header".into(),
            outcomes,
            Duration::from_secs(1),
            public.verifying_key(),
        )
        .render();
        let listed: Vec<&str> = text.lines().filter(|l| l.contains(" x ")).collect();
        assert_eq!(listed.len(), MAX_ERRORS_SHOWN, "{text}");
        assert_eq!(listed[0], "  3 x decide: Internal: x");
        assert!(
            text.contains(&format!(
                "  ... and {} other errors ({} requests)",
                21 - MAX_ERRORS_SHOWN,
                21 - MAX_ERRORS_SHOWN
            )),
            "{text}"
        );
        assert!(text.contains("errors 23, timed out 0"), "{text}");
        assert!(text.contains("throughput 0.0 signatures/s"), "{text}");
    }

    /// A process's figures: `cpu_ms` of CPU (`None`: unreadable), 3 MiB.
    fn figure(name: &str, role: Option<Role>, cpu_ms: Option<u64>) -> ProcessFigures {
        ProcessFigures {
            name: name.into(),
            pid: 1,
            role,
            cpu: cpu_ms.map(Duration::from_millis),
            peak_rss: Some(3 * 1024 * 1024),
        }
    }

    /// The cells after the name on `text`'s row starting with `name`.
    fn cells(text: &str, name: &str) -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    #[test]
    fn process_table_totals_signers_and_server_side() {
        let text = render_processes(
            &[
                figure("coordinator", Some(Role::Coordinator), Some(1000)),
                figure("signer-1", Some(Role::Signer), Some(300)),
                figure("signer-2", Some(Role::Signer), Some(200)),
                figure("bench-load client", None, Some(4000)),
            ],
            100,
            None,
        );
        assert_eq!(cells(&text, "coordinator"), ["1", "1.00", "10.00", "3.0"]);
        // The client is not part of any total.
        assert_eq!(cells(&text, "signers total"), ["0.50", "5.00"]);
        assert_eq!(cells(&text, "server total"), ["1.50", "15.00"]);
        // One signer unreadable: its row and the totals say so.
        let text = render_processes(
            &[
                figure("coordinator", Some(Role::Coordinator), Some(1000)),
                figure("signer-1", Some(Role::Signer), None),
            ],
            10,
            None,
        );
        assert!(text.contains("signers total"), "{text}");
        let unknown = text.lines().filter(|l| l.contains('?')).count();
        assert_eq!(unknown, 3, "{text}");
    }

    #[test]
    fn cpu_figures_are_also_given_in_floors() {
        // 100 requests, a floor of 0.5 ms: 10 ms per request is 20 floors.
        let text = render_processes(
            &[
                figure("coordinator", Some(Role::Coordinator), Some(1000)),
                figure("signer-1", Some(Role::Signer), Some(300)),
                figure("signer-2", Some(Role::Signer), None),
            ],
            100,
            Some(Duration::from_micros(500)),
        );
        assert!(
            text.lines().next().unwrap().ends_with("floors/req"),
            "{text}"
        );
        assert_eq!(
            cells(&text, "coordinator"),
            ["1", "1.00", "10.00", "3.0", "20.00"]
        );
        assert_eq!(
            cells(&text, "signer-1"),
            ["1", "0.30", "3.00", "3.0", "6.00"]
        );
        assert_eq!(cells(&text, "signer-2"), ["1", "?", "?", "3.0", "?"]);
        // A total that needs an unreadable figure is unknown in floors too;
        // the floors of the others line up under the header's column.
        assert_eq!(cells(&text, "signers total"), ["?", "?", "?"]);
        assert_eq!(cells(&text, "server total"), ["?", "?", "?"]);
        let header_end = text.lines().next().unwrap().len();
        for line in text.lines() {
            assert_eq!(line.len(), header_end, "{text}");
        }
        let text = render_processes(
            &[figure("coordinator", Some(Role::Coordinator), Some(1000))],
            100,
            Some(Duration::from_micros(250)),
        );
        let server = text
            .lines()
            .find(|l| l.starts_with("server total"))
            .unwrap();
        assert!(server.ends_with(" 40.00"), "{text}");
    }

    #[test]
    fn io_counters_are_read_from_proc_and_counted_per_request() {
        let text = "rchar: 9\nwchar: 4096\nsyscr: 3\nsyscw: 7\nread_bytes: 0\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(text),
            Some(IoCounters {
                write_calls: 7,
                written: 4096,
                disk_written: 8192
            })
        );
        // A field missing or unreadable: nothing is guessed.
        assert_eq!(parse_io("wchar: 1\nsyscw: 2\n"), None);
        assert_eq!(parse_io("wchar: x\nsyscw: 2\nwrite_bytes: 3\n"), None);
        // This process writes: its counters move.
        let me = std::process::id();
        let before = io_counters(me).expect("own /proc/PID/io");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), [0u8; 10_000]).unwrap();
        let after = io_counters(me).unwrap();
        let used = after.since(before);
        assert!(used.write_calls >= 1, "{used:?}");
        assert!(used.written >= 10_000, "{used:?}");

        let watched = [
            Watched {
                name: "coordinator".into(),
                pid: 1,
                role: Role::Coordinator,
            },
            Watched {
                name: "signer-1".into(),
                pid: 2,
                role: Role::Signer,
            },
        ];
        let at = |calls, written, disk| {
            Some(IoCounters {
                write_calls: calls,
                written,
                disk_written: disk,
            })
        };
        let text = render_io(
            &watched,
            &[at(100, 1024, 0), at(5, 0, 0)],
            &[at(300, 1024 + 20 * 1024, 40 * 1024), None],
            10,
        );
        assert_eq!(cells(&text, "coordinator"), ["20.0", "2.00", "4.00"]);
        assert_eq!(cells(&text, "signer-1"), ["?", "?", "?"]);
    }

    #[test]
    fn the_floor_is_the_lower_of_what_was_measured() {
        let ms = Duration::from_millis;
        assert_eq!(floor_of_run(Some(ms(1)), Some(ms(3))), Some(ms(1)));
        assert_eq!(floor_of_run(Some(ms(3)), Some(ms(2))), Some(ms(2)));
        assert_eq!(floor_of_run(None, Some(ms(3))), Some(ms(3)));
        assert_eq!(floor_of_run(Some(ms(1)), None), Some(ms(1)));
        assert_eq!(floor_of_run(None, None), None);
        assert_eq!(
            render_floor(2, 3, Some(Duration::from_micros(9_876)), None),
            "in-process FROST floor 2-of-3 (p50, this client, stack idle): 9.876 ms before, ? after\n"
        );
    }

    #[test]
    fn a_floor_is_measured_for_a_real_key_size_only() {
        let floor = floor_now(2, 3).expect("a 2-of-3 floor");
        assert!(floor > Duration::ZERO);
        // Sizes frost refuses, or that do not fit its u16 counts.
        assert_eq!(floor_now(0, 3), None);
        assert_eq!(floor_now(4, 3), None);
        assert_eq!(floor_now(70_000, 3), None);
    }

    #[tokio::test]
    async fn run_all_runs_each_index_once_with_at_most_c_in_flight() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, pk) = (running.clone(), peak.clone());
        let out = run_all(50, 4, move |i| {
            let (running, peak) = (r.clone(), pk.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn a_signature_verifies_only_under_its_key_and_message() {
        let (public, bytes) = signed(b"load");
        let (other, _) = signed(b"load");
        assert!(verifies(public.verifying_key(), b"load", &bytes));
        assert!(!verifies(public.verifying_key(), b"other", &bytes));
        assert!(!verifies(other.verifying_key(), b"load", &bytes));
        assert!(!verifies(public.verifying_key(), b"load", &bytes[..64]));
    }
}
