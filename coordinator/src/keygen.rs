//! The coordinator's side of distributed key generation: it relays packages
//! between the signers and never sees a share (round-2 packages are sealed
//! end to end between signer tokens; see the signer's `dkg_envelope`).
//!
//! Steps, each run on every signer at once:
//! 1. node info: each signer's DKG transport key; refuse if any already holds
//!    the key id;
//! 2. round 1: commitments, broadcast to all;
//! 3. round 2: sealed shares, routed to their recipients;
//! 4. finish: each signer verifies and derives its share, and returns the
//!    public key package; all must be byte-identical;
//! 5. commit: each signer stores its share; then the coordinator stores the
//!    public key package.
//!
//! A failure before step 5 aborts the run on every signer: no share and no
//! record is left anywhere.

use std::collections::{BTreeMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rand::RngCore;
use ringi_proto::signer::v1 as pb;

use crate::error::{Error, Result, signer_failure};
use crate::registry::{Registry, Signer};
use crate::store::{KeyRecord, Store};

pub const TOTAL_STEPS: u32 = 5;
/// Most signers one key may have.
pub const MAX_SIGNERS: usize = 255;

/// A progress report, for the CLI's benefit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Started {
        step: u32,
        description: &'static str,
    },
    Finished {
        step: u32,
        elapsed_ms: u64,
    },
}

pub struct KeygenRequest {
    pub key_id: String,
    pub threshold: u32,
    pub signers: Vec<String>,
}

/// Checks a request against the registry without any I/O.
pub fn check_request(registry: &Registry, req: &KeygenRequest) -> Result<Vec<Signer>> {
    ringi_policy::key_id::check_name(&req.key_id)
        .map_err(|e| Error::InvalidArgument(format!("key_id: {e}")))?;
    let n = req.signers.len();
    if !(2..=MAX_SIGNERS).contains(&n) {
        return Err(Error::InvalidArgument(format!(
            "a key needs 2..={MAX_SIGNERS} signers, got {n}"
        )));
    }
    let mut seen = HashSet::new();
    let mut signers = Vec::with_capacity(n);
    for name in &req.signers {
        if !seen.insert(name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "signer {name:?} is listed twice"
            )));
        }
        let signer = registry.get(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "signer {name:?} is not in the coordinator's registry"
            ))
        })?;
        signers.push(signer.clone());
    }
    let t = req.threshold as usize;
    if !(2..=n).contains(&t) {
        return Err(Error::InvalidArgument(format!(
            "threshold must be 2..={n} (the number of signers), got {}",
            req.threshold
        )));
    }
    Ok(signers)
}

/// Runs the DKG and stores the key. `progress` is told of every step.
pub async fn run(
    registry: &Registry,
    store: &std::sync::Arc<Store>,
    req: KeygenRequest,
    progress: impl Fn(Progress),
) -> Result<KeyRecord> {
    let signers = check_request(registry, &req)?;
    let key_id = req.key_id.clone();
    {
        let store = store.clone();
        let id = key_id.clone();
        let existing = tokio::task::spawn_blocking(move || store.find_key(&id))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if existing.is_some() {
            return Err(Error::AlreadyExists(format!(
                "key id {key_id:?} exists already"
            )));
        }
    }
    let mut session_id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_id);
    let run = Run {
        key_id: &key_id,
        session_id: &session_id,
        threshold: req.threshold,
        signers: &signers,
    };
    let mut step = 0;
    let mut timed = |description: &'static str| {
        step += 1;
        progress(Progress::Started { step, description });
        (step, Instant::now())
    };

    let (s, t0) = timed("node info: DKG transport keys");
    let participants = run.node_info().await?;
    progress(Progress::Finished {
        step: s,
        elapsed_ms: ms(t0),
    });

    let result = async {
        let (s, t0) = timed("round 1: commitments");
        let round1 = run.round1(&participants).await?;
        progress(Progress::Finished {
            step: s,
            elapsed_ms: ms(t0),
        });

        let (s, t0) = timed("round 2: shares sealed to each recipient");
        let sealed = run.round2(&round1).await?;
        progress(Progress::Finished {
            step: s,
            elapsed_ms: ms(t0),
        });

        let (s, t0) = timed("finish: verify shares, derive the group key");
        let (public_key_package, group_public_key) = run.finish(&sealed).await?;
        progress(Progress::Finished {
            step: s,
            elapsed_ms: ms(t0),
        });
        Ok((public_key_package, group_public_key))
    }
    .await;
    let (public_key_package, group_public_key) = match result {
        Ok(v) => v,
        Err(e) => {
            run.abort().await;
            return Err(e);
        }
    };

    let (s, t0) = timed("commit: signers store their shares");
    run.commit(&group_public_key).await?;
    let record = KeyRecord {
        key_id: key_id.clone(),
        threshold: req.threshold as u16,
        signers: signers
            .iter()
            .map(|s| (s.name.clone(), s.identifier))
            .collect(),
        group_public_key,
        public_key_package,
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    {
        let store = store.clone();
        let record = record.clone();
        tokio::task::spawn_blocking(move || store.insert_key(&record))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| {
                Error::Internal(format!(
                    "every signer stored its share for key id {key_id:?}, but the coordinator could not record the key: {e}"
                ))
            })?;
    }
    progress(Progress::Finished {
        step: s,
        elapsed_ms: ms(t0),
    });
    Ok(record)
}

fn ms(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

struct Run<'a> {
    key_id: &'a str,
    session_id: &'a [u8],
    threshold: u32,
    signers: &'a [Signer],
}

impl Run<'_> {
    /// Calls `f` on every signer at once; fails with every signer's error if
    /// any fails (a DKG needs all of them).
    async fn on_all<T, F, Fut>(&self, f: F) -> Result<Vec<T>>
    where
        F: Fn(Signer) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let results = join_all(self.signers.iter().map(|s| f(s.clone()))).await;
        let mut ok = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        let mut all_unavailable = true;
        for (signer, result) in self.signers.iter().zip(results) {
            match result {
                Ok(v) => ok.push(v),
                Err(status) => {
                    all_unavailable &= matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    );
                    failures.push((status.code(), signer_failure(&signer.name, &status)));
                }
            }
        }
        if failures.is_empty() {
            return Ok(ok);
        }
        let message = format!(
            "DKG for key id {:?} failed: {}",
            self.key_id,
            failures
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        Err(
            if failures
                .iter()
                .any(|(c, _)| *c == tonic::Code::AlreadyExists)
            {
                Error::AlreadyExists(message)
            } else if all_unavailable {
                Error::Unavailable(message)
            } else {
                Error::FailedPrecondition(message)
            },
        )
    }

    /// Each signer's DKG transport key with its attestation (certificate
    /// and signature; empty without TLS), relayed unchanged to the others.
    async fn node_info(&self) -> Result<Vec<pb::DkgParticipant>> {
        let infos = self
            .on_all(|mut s| async move {
                Ok(s.client
                    .get_node_info(pb::GetNodeInfoRequest {})
                    .await?
                    .into_inner())
            })
            .await?;
        let mut keys = Vec::with_capacity(infos.len());
        for (signer, info) in self.signers.iter().zip(infos) {
            if info.key_shares.iter().any(|k| k.key_id == self.key_id) {
                return Err(Error::AlreadyExists(format!(
                    "signer {} already holds a share for key id {:?}",
                    signer.name, self.key_id
                )));
            }
            keys.push(pb::DkgParticipant {
                identifier: u32::from(signer.identifier),
                dkg_public_key: info.dkg_public_key,
                dkg_key_certificate: info.dkg_key_certificate,
                dkg_key_signature: info.dkg_key_signature,
            });
        }
        Ok(keys)
    }

    async fn round1(&self, participants: &[pb::DkgParticipant]) -> Result<BTreeMap<u32, Vec<u8>>> {
        let participants = participants.to_vec();
        let packages = self
            .on_all(|mut s| {
                let req = pb::DkgRound1Request {
                    key_id: self.key_id.to_string(),
                    session_id: self.session_id.to_vec(),
                    identifier: u32::from(s.identifier),
                    min_signers: self.threshold,
                    participants: participants.clone(),
                };
                async move { Ok(s.client.dkg_round1(req).await?.into_inner().round1_package) }
            })
            .await?;
        Ok(self
            .signers
            .iter()
            .map(|s| u32::from(s.identifier))
            .zip(packages)
            .collect())
    }

    /// Returns, per recipient, the sealed packages addressed to it by sender.
    async fn round2(
        &self,
        round1: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<BTreeMap<u32, BTreeMap<u32, Vec<u8>>>> {
        let outputs = self
            .on_all(|mut s| {
                let me = u32::from(s.identifier);
                let others = round1
                    .iter()
                    .filter(|(id, _)| **id != me)
                    .map(|(id, p)| (*id, p.clone()))
                    .collect();
                let req = pb::DkgRound2Request {
                    key_id: self.key_id.to_string(),
                    session_id: self.session_id.to_vec(),
                    round1_packages: others,
                };
                async move {
                    Ok(s.client
                        .dkg_round2(req)
                        .await?
                        .into_inner()
                        .sealed_round2_packages)
                }
            })
            .await?;
        let mut inbox: BTreeMap<u32, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
        for (sender, sealed) in self.signers.iter().zip(outputs) {
            for (recipient, package) in sealed {
                inbox
                    .entry(recipient)
                    .or_default()
                    .insert(u32::from(sender.identifier), package);
            }
        }
        Ok(inbox)
    }

    async fn finish(
        &self,
        inbox: &BTreeMap<u32, BTreeMap<u32, Vec<u8>>>,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let outputs = self
            .on_all(|mut s| {
                let req = pb::DkgFinishRequest {
                    key_id: self.key_id.to_string(),
                    session_id: self.session_id.to_vec(),
                    sealed_round2_packages: inbox
                        .get(&u32::from(s.identifier))
                        .cloned()
                        .unwrap_or_default(),
                };
                async move { Ok(s.client.dkg_finish(req).await?.into_inner()) }
            })
            .await?;
        let first = &outputs[0];
        if let Some((signer, _)) = self.signers.iter().zip(&outputs).find(|(_, o)| {
            o.public_key_package != first.public_key_package
                || o.group_public_key != first.group_public_key
        }) {
            return Err(Error::Internal(format!(
                "DKG for key id {:?}: signer {} computed a different public key package than signer {}; nothing stored",
                self.key_id, signer.name, self.signers[0].name
            )));
        }
        frost_secp256k1::keys::PublicKeyPackage::deserialize(&first.public_key_package).map_err(
            |e| {
                Error::Internal(format!(
                    "signers returned an undecodable public key package: {e}"
                ))
            },
        )?;
        Ok((
            first.public_key_package.clone(),
            first.group_public_key.clone(),
        ))
    }

    async fn commit(&self, group_public_key: &[u8]) -> Result<()> {
        self.on_all(|mut s| {
            let req = pb::DkgCommitRequest {
                key_id: self.key_id.to_string(),
                session_id: self.session_id.to_vec(),
                group_public_key: group_public_key.to_vec(),
            };
            async move { Ok(s.client.dkg_commit(req).await?.into_inner()) }
        })
        .await
        .map(|_| ())
        .map_err(|e| Error::Internal(format!("{e} (signers not named here stored their shares; remove them before reusing this key id)")))
    }

    /// Best effort: tell every signer to drop the run.
    async fn abort(&self) {
        let _ = join_all(self.signers.iter().map(|s| {
            let mut client = s.client.clone();
            let req = pb::DkgAbortRequest {
                key_id: self.key_id.to_string(),
                session_id: self.session_id.to_vec(),
            };
            async move { client.dkg_abort(req).await }
        }))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignerEntry;

    fn registry() -> Registry {
        let entries: Vec<SignerEntry> = (1..=3)
            .map(|i| SignerEntry {
                name: format!("s{i}"),
                address: format!("127.0.0.1:{}", 7100 + i),
                identifier: i,
            })
            .collect();
        Registry::new(&entries).unwrap()
    }

    fn req(threshold: u32, signers: &[&str]) -> KeygenRequest {
        KeygenRequest {
            key_id: "k".into(),
            threshold,
            signers: signers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn refusal(r: &KeygenRequest) -> String {
        match check_request(&registry(), r) {
            Err(Error::InvalidArgument(m)) => m,
            Err(other) => panic!("wrong error kind: {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[tokio::test]
    async fn checks_threshold_and_signers() {
        assert_eq!(
            check_request(&registry(), &req(2, &["s1", "s2", "s3"]))
                .unwrap()
                .len(),
            3
        );
        assert!(refusal(&req(0, &["s1", "s2", "s3"])).contains("threshold must be 2..=3"));
        assert!(refusal(&req(1, &["s1", "s2", "s3"])).contains("threshold must be 2..=3"));
        assert!(refusal(&req(4, &["s1", "s2", "s3"])).contains("threshold must be 2..=3"));
        assert!(refusal(&req(2, &["s1", "s1", "s3"])).contains("listed twice"));
        assert!(refusal(&req(2, &["s1", "s9"])).contains("not in the coordinator's registry"));
        assert!(refusal(&req(2, &["s1"])).contains("needs 2..="));
        let mut bad_id = req(2, &["s1", "s2"]);
        bad_id.key_id = "bad id".into();
        assert!(refusal(&bad_id).contains("key_id"));
    }
}
