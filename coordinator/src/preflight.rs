//! The coordinator's pre-flight: at start and then every interval, it asks
//! every registered signer for its health (is its token serving), its
//! pinned policy and the key shares it holds, judges the answers
//! ([`crate::readiness::assess`]), logs every new problem loudly (and its
//! end), keeps the latest picture for `ringi status`
//! (`OperationsService.GetStatus`), and sets each key's gRPC health:
//! `key/KEY_ID` is SERVING while at least the key's threshold of its
//! signers can sign it, NOT_SERVING otherwise.
//!
//! Why here and not at signing time: a signer that pins another policy or
//! holds a key under another identifier fails a signing only after the
//! departments approved it; a load balancer or an operator's dashboard
//! must see a key that cannot be signed before anyone approves for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use ringi_net::ops::HealthReporter;
use ringi_proto::signer::v1 as pb;
use ringi_proto::signer::v1::governance_client::GovernanceClient;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::coordinator::Coordinator;
use crate::readiness::{NodeReport, Readiness, Seen, assess};
use crate::registry::Signer;
use crate::signer_watch::SIGNER_SERVICE;
use crate::store::blocking;

/// How often the signers are asked, unless configured.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long one signer may take to answer all three questions.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC health service name of a key.
pub fn key_service(key_id: &str) -> String {
    format!("key/{key_id}")
}

/// The latest check, when it was made (unix seconds).
#[derive(Debug, Clone)]
pub struct Checked {
    pub at: u64,
    pub readiness: Arc<Readiness>,
}

/// The latest check, shared with the status call.
#[derive(Debug, Default)]
pub struct Latest(RwLock<Option<Checked>>);

impl Latest {
    pub fn get(&self) -> Option<Checked> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, checked: Checked) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(checked);
    }
}

/// Checks at once, then every `interval`, for the life of the process.
pub fn spawn(coordinator: Arc<Coordinator>, reporter: HealthReporter, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Arc<Readiness>> = None;
        loop {
            tick.tick().await;
            match check(&coordinator).await {
                Ok(readiness) => {
                    report_changes(previous.as_deref(), &readiness);
                    set_health(&reporter, previous.as_deref(), &readiness).await;
                    let readiness = Arc::new(readiness);
                    coordinator.readiness.set(Checked {
                        at: ringi_policy::clock::now(),
                        readiness: readiness.clone(),
                    });
                    previous = Some(readiness);
                }
                Err(e) => tracing::error!(error = %e, "pre-flight: could not read the keys"),
            }
        }
    });
}

/// One check: every signer asked at once.
pub async fn check(coordinator: &Coordinator) -> crate::error::Result<Readiness> {
    let store = coordinator.keys.clone();
    let (keys, retired) = blocking(move || Ok((store.keys()?, store.key_retirements()?))).await?;
    let retired: BTreeSet<String> = retired.iter().map(|r| r.key_id.to_string()).collect();
    let keys: Vec<_> = keys
        .into_iter()
        .map(|k| {
            let gone = retired.contains(k.key_id.as_str());
            (k, gone)
        })
        .collect();
    let signers: Vec<&Signer> = coordinator.registry.signers().collect();
    let answers = join_all(signers.iter().map(|s| ask(s))).await;
    let seen: BTreeMap<String, Seen> = signers
        .iter()
        .map(|s| s.name.clone())
        .zip(answers)
        .collect();
    let registry: Vec<(String, u16)> = signers
        .iter()
        .map(|s| (s.name.clone(), s.identifier))
        .collect();
    let ours = coordinator
        .policy()
        .map(|p| p.hash().to_vec())
        .unwrap_or_default();
    Ok(assess(&ours, &registry, &keys, &seen))
}

/// Asks one signer for its health, then its policy and shares.
async fn ask(signer: &Signer) -> Seen {
    let asked = tokio::time::timeout(ASK_TIMEOUT, async {
        let health = HealthClient::new(signer.channel.clone())
            .check(HealthCheckRequest {
                service: SIGNER_SERVICE.into(),
            })
            .await
            .map_err(|s| format!("health: {}", s.message()))?
            .into_inner();
        let token_serving = health.status == ServingStatus::Serving as i32;
        if !token_serving {
            return Ok(NodeReport {
                policy_hash: Vec::new(),
                token_serving,
                shares: Vec::new(),
            });
        }
        let policy = GovernanceClient::new(signer.channel.clone())
            .get_policy(pb::GetPolicyRequest {})
            .await
            .map_err(|s| format!("policy: {}", s.message()))?
            .into_inner();
        let info = signer
            .client
            .clone()
            .get_node_info(pb::GetNodeInfoRequest {})
            .await
            .map_err(|s| format!("node info: {}", s.message()))?
            .into_inner();
        Ok::<_, String>(NodeReport {
            policy_hash: policy.policy_hash,
            token_serving,
            shares: info.key_shares,
        })
    })
    .await;
    match asked {
        Ok(Ok(report)) => Seen::Answered(report),
        Ok(Err(why)) => Seen::Unreachable(why),
        Err(_) => Seen::Unreachable(format!("no answer within {}s", ASK_TIMEOUT.as_secs())),
    }
}

/// Logs what is new since `previous` (everything on the first check):
/// problems loudly, their end and a key serving again quietly.
fn report_changes(previous: Option<&Readiness>, now: &Readiness) {
    for signer in &now.signers {
        let before = previous
            .and_then(|p| p.signers.iter().find(|s| s.name == signer.name))
            .map(|s| s.problems.clone())
            .unwrap_or_default();
        for problem in signer.problems.iter().filter(|p| !before.contains(p)) {
            tracing::error!(signer = %signer.name, problem = %problem, "pre-flight: signer cannot sign");
        }
        if !before.is_empty() && signer.problems.is_empty() {
            tracing::info!(signer = %signer.name, "pre-flight: signer fit to sign again");
        }
    }
    for key in &now.keys {
        let before = previous.and_then(|p| p.keys.iter().find(|k| k.key_id == key.key_id));
        let old_problems = before.map(|k| k.problems.clone()).unwrap_or_default();
        for problem in key.problems.iter().filter(|p| !old_problems.contains(p)) {
            tracing::error!(key_id = %key.key_id, problem = %problem, "pre-flight: a signer of the key cannot sign it");
        }
        let was_serving = before.map(|k| k.serving());
        match (was_serving, key.serving()) {
            (Some(true) | None, false) if !key.retired => tracing::error!(
                key_id = %key.key_id,
                able = key.able.len(),
                threshold = key.threshold,
                "pre-flight: fewer signers than the key's threshold can sign it: NOT_SERVING"
            ),
            (Some(false), true) => tracing::info!(
                key_id = %key.key_id,
                able = key.able.len(),
                threshold = key.threshold,
                "pre-flight: the key can be signed again: SERVING"
            ),
            _ => {}
        }
    }
}

/// Sets each key's health where it changed (every key on the first check).
async fn set_health(reporter: &HealthReporter, previous: Option<&Readiness>, now: &Readiness) {
    for key in &now.keys {
        let before = previous
            .and_then(|p| p.keys.iter().find(|k| k.key_id == key.key_id))
            .map(|k| k.serving());
        if before == Some(key.serving()) {
            continue;
        }
        let status = if key.serving() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter
            .set_service_status(key_service(&key.key_id), status)
            .await;
    }
}
