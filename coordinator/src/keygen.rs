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
//!    public key package; all must be byte-identical, decode, and name the
//!    group key they return ([`agree_on_result`], pure);
//! 5. commit: each signer stores its share; then the coordinator stores the
//!    public key package.
//!
//! A failure before step 5 aborts the run on every signer: no share and no
//! record is left anywhere.
//!
//! Generic over the ciphersuite ([`ringi_frost::Suite`]), like the signing
//! engine; [`run_kind`] instantiates it with the suite of the key kind
//! asked for, and every signer is told the kind in round 1 (it seals the
//! kind with its share).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use rand::RngCore;
use ringi_frost::frost_core::keys::PublicKeyPackage;
use ringi_frost::taproot::Secp256k1Tr;
use ringi_frost::{KeyKind, Secp256k1, Suite};
use ringi_policy::key_id::KeyId;
use ringi_proto::signer::v1 as pb;

use crate::error::{Error, KeySpecError, KeygenError, Result, SignerFailure, SignerFailures};
use crate::registry::{Registry, Signer};
use crate::store::{KeyRecord, KeyStore, blocking};
use crate::transport_keys;

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
    pub key_id: KeyId,
    /// The key's kind: which suite the DKG and every signing use.
    pub kind: KeyKind,
    pub threshold: u32,
    pub signers: Vec<String>,
}

/// Checks a request against the registry without any I/O.
pub fn check_request(
    registry: &Registry,
    req: &KeygenRequest,
) -> std::result::Result<Vec<Signer>, KeySpecError> {
    let n = req.signers.len();
    if !(2..=MAX_SIGNERS).contains(&n) {
        return Err(KeySpecError::SignerCount {
            got: n,
            max: MAX_SIGNERS,
        });
    }
    let mut seen = HashSet::new();
    let mut signers = Vec::with_capacity(n);
    for name in &req.signers {
        if !seen.insert(name.as_str()) {
            return Err(KeySpecError::DuplicateSigner(name.clone()));
        }
        let signer = registry
            .get(name)
            .ok_or_else(|| KeySpecError::UnknownSigner(name.clone()))?;
        signers.push(signer.clone());
    }
    let t = req.threshold as usize;
    if !(2..=n).contains(&t) {
        return Err(KeySpecError::Threshold {
            got: req.threshold,
            signers: n,
        });
    }
    Ok(signers)
}

/// Runs the DKG for a key of `req.kind` and stores the key. `progress` is
/// told of every step. The one place a kind picks the DKG's suite.
pub async fn run(
    registry: &Registry,
    store: &Arc<dyn KeyStore>,
    req: KeygenRequest,
    progress: impl Fn(Progress),
) -> Result<KeyRecord> {
    match req.kind {
        KeyKind::FrostSecp256k1 => run_suite::<Secp256k1>(registry, store, req, progress).await,
        KeyKind::BitcoinTaproot => run_suite::<Secp256k1Tr>(registry, store, req, progress).await,
    }
}

/// The DKG with suite `C` (of kind `req.kind`).
async fn run_suite<C: Suite>(
    registry: &Registry,
    store: &Arc<dyn KeyStore>,
    req: KeygenRequest,
    progress: impl Fn(Progress),
) -> Result<KeyRecord> {
    let signers = check_request(registry, &req)?;
    let key_id = req.key_id.clone();
    {
        let store = store.clone();
        let id = key_id.clone();
        if blocking(move || store.find_key(&id)).await?.is_some() {
            return Err(Error::KeyExists(key_id));
        }
    }
    let mut session_id = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_id);
    let run = Run {
        key_id: &key_id,
        session_id: &session_id,
        threshold: req.threshold,
        signers: &signers,
        refresh: None,
        order: None,
    };
    let mut step = 0;
    let mut timed = |description: &'static str| {
        step += 1;
        progress(Progress::Started { step, description });
        (step, Instant::now())
    };

    let (s, t0) = timed("node info: DKG transport keys");
    let (participants, held) = run.node_info().await?;
    if let Some((signer, _)) = signers.iter().zip(&held).find(|(_, h)| h.is_some()) {
        return Err(KeygenError::ShareExists {
            key: key_id.clone(),
            signer: signer.name.clone(),
        }
        .into());
    }
    progress(Progress::Finished {
        step: s,
        elapsed_ms: ms(t0),
    });

    let result = async {
        let (s, t0) = timed("round 1: commitments");
        let round1 = run.round1(&participants, C::KIND).await?;
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
        let (public_key_package, group_public_key) = run.finish::<C>(&sealed).await?;
        progress(Progress::Finished {
            step: s,
            elapsed_ms: ms(t0),
        });
        Ok::<_, Error>((public_key_package, group_public_key))
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
        kind: C::KIND,
        threshold: req.threshold as u16,
        signers: signers
            .iter()
            .map(|s| (s.name.clone(), s.identifier))
            .collect(),
        group_public_key,
        public_key_package,
        created_at: i64::try_from(ringi_policy::clock::now()).unwrap_or(i64::MAX),
    };
    {
        let store = store.clone();
        let record = record.clone();
        blocking(move || store.insert_key(&record))
            .await
            .map_err(|e| KeygenError::NotRecorded {
                key: key_id.clone(),
                reason: e.to_string(),
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

/// Checks the signers' DKG finish results (signer name, its answer), as
/// sent by signers that may be compromised: every signer must have
/// computed byte-identical results, the public key package must decode as
/// one of suite `C`, and the group public key must be the package's.
/// Returns (public key package, group public key) as the signers encoded
/// them, or why they cannot be stored. Never panics.
pub fn agree_on_result<C: Suite>(
    results: &[(&str, &pb::DkgFinishResponse)],
) -> std::result::Result<(Vec<u8>, Vec<u8>), String> {
    let Some((first_signer, first)) = results.first() else {
        return Err("no signer returned a result".into());
    };
    if let Some((signer, _)) = results.iter().find(|(_, o)| {
        o.public_key_package != first.public_key_package
            || o.group_public_key != first.group_public_key
    }) {
        return Err(format!(
            "signer {signer} computed a different public key package than signer {first_signer}"
        ));
    }
    let package = PublicKeyPackage::<C>::deserialize(&first.public_key_package)
        .map_err(|e| format!("signers returned an undecodable public key package: {e}"))?;
    let group_key = package
        .verifying_key()
        .serialize()
        .map_err(|e| format!("the group key does not encode: {e}"))?;
    if group_key != first.group_public_key {
        return Err(format!(
            "the group public key the signers returned ({}) is not their package's ({})",
            hex::encode(&first.group_public_key),
            hex::encode(&group_key)
        ));
    }
    Ok((
        first.public_key_package.clone(),
        first.group_public_key.clone(),
    ))
}

/// One DKG run (a new key, or a refresh of one) over its signers: the
/// steps, each on every signer at once. Also driven by
/// [`crate::refresh`].
pub(crate) struct Run<'a> {
    pub key_id: &'a KeyId,
    pub session_id: &'a [u8],
    pub threshold: u32,
    pub signers: &'a [Signer],
    /// For a refresh: the key's current public key package.
    pub refresh: Option<&'a [u8]>,
    /// For a refresh: the admins' refresh order, relayed to every signer.
    pub order: Option<&'a ringi_proto::approval::v1::KeyOrder>,
}

impl Run<'_> {
    /// Calls `f` on every signer at once; fails with every signer's error if
    /// any fails (a DKG needs all of them).
    pub async fn on_all<T, F, Fut>(&self, f: F) -> std::result::Result<Vec<T>, SignerFailures>
    where
        F: Fn(Signer) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let results = join_all(self.signers.iter().map(|s| f(s.clone()))).await;
        let mut ok = Vec::with_capacity(results.len());
        let mut failures = SignerFailures::default();
        for (signer, result) in self.signers.iter().zip(results) {
            match result {
                Ok(v) => ok.push(v),
                Err(status) => failures.push(SignerFailure::status(&signer.name, &status)),
            }
        }
        if failures.is_empty() {
            Ok(ok)
        } else {
            Err(failures)
        }
    }

    /// [`Run::on_all`] for a step before the commit: a failure fails the DKG.
    async fn step<T, F, Fut>(&self, f: F) -> Result<Vec<T>>
    where
        F: Fn(Signer) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        self.on_all(f).await.map_err(|failures| {
            KeygenError::Signers {
                key: self.key_id.clone(),
                failures,
            }
            .into()
        })
    }

    /// Each signer's DKG transport key on the run's curve with its
    /// attestation (certificate and signature; empty without TLS), relayed
    /// unchanged to the others ([`crate::transport_keys`]); and what each
    /// holds of the run's key id, if anything (in signer order).
    pub async fn node_info(
        &self,
    ) -> Result<(Vec<pb::DkgParticipant>, Vec<Option<pb::KeyShareInfo>>)> {
        let infos = self
            .step(|mut s| async move {
                Ok(s.client
                    .get_node_info(pb::GetNodeInfoRequest {})
                    .await?
                    .into_inner())
            })
            .await?;
        let curve = transport_keys::run_curve(
            self.signers
                .iter()
                .zip(&infos)
                .map(|(s, info)| (s.name.as_str(), info)),
        )
        .map_err(|reason| KeygenError::NoTransportCurve {
            key: self.key_id.clone(),
            reason,
        })?;
        let mut keys = Vec::with_capacity(infos.len());
        let mut held = Vec::with_capacity(infos.len());
        for (signer, info) in self.signers.iter().zip(infos) {
            // `run_curve` found a key on `curve` for every signer.
            if let Some(p) = transport_keys::participant_on(signer.identifier, &info, curve) {
                keys.push(p);
            }
            held.push(
                info.key_shares
                    .into_iter()
                    .find(|k| k.key_id == self.key_id.as_str()),
            );
        }
        Ok((keys, held))
    }

    pub async fn round1(
        &self,
        participants: &[pb::DkgParticipant],
        kind: KeyKind,
    ) -> Result<BTreeMap<u32, Vec<u8>>> {
        let participants = participants.to_vec();
        let packages = self
            .step(|mut s| {
                let req = pb::DkgRound1Request {
                    key_id: self.key_id.to_string(),
                    session_id: self.session_id.to_vec(),
                    identifier: u32::from(s.identifier),
                    min_signers: self.threshold,
                    participants: participants.clone(),
                    kind: kind.as_str().to_string(),
                    refresh: self.refresh.is_some(),
                    public_key_package: self.refresh.map(<[u8]>::to_vec).unwrap_or_default(),
                    order: self.order.cloned(),
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
    pub async fn round2(
        &self,
        round1: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<BTreeMap<u32, BTreeMap<u32, Vec<u8>>>> {
        let outputs = self
            .step(|mut s| {
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

    pub async fn finish<C: Suite>(
        &self,
        inbox: &BTreeMap<u32, BTreeMap<u32, Vec<u8>>>,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let outputs = self
            .step(|mut s| {
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
        let results: Vec<(&str, &pb::DkgFinishResponse)> = self
            .signers
            .iter()
            .map(|s| s.name.as_str())
            .zip(&outputs)
            .collect();
        agree_on_result::<C>(&results).map_err(|reason| {
            KeygenError::BadResult {
                key: self.key_id.clone(),
                reason,
            }
            .into()
        })
    }

    async fn commit(&self, group_public_key: &[u8]) -> Result<()> {
        self.commit_each(group_public_key)
            .await
            .map(|_| ())
            .map_err(|failures| {
                KeygenError::CommitIncomplete {
                    key: self.key_id.clone(),
                    failures,
                }
                .into()
            })
    }

    /// The commit step: every signer stores its share; returns each
    /// signer's stored generation, or every failure.
    pub async fn commit_each(
        &self,
        group_public_key: &[u8],
    ) -> std::result::Result<Vec<u32>, SignerFailures> {
        self.on_all(|mut s| {
            let req = pb::DkgCommitRequest {
                key_id: self.key_id.to_string(),
                session_id: self.session_id.to_vec(),
                group_public_key: group_public_key.to_vec(),
            };
            async move { Ok(s.client.dkg_commit(req).await?.into_inner().generation) }
        })
        .await
    }

    /// Best effort: tell every signer to drop the run.
    pub async fn abort(&self) {
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
            key_id: KeyId::parse("k").unwrap(),
            kind: KeyKind::FrostSecp256k1,
            threshold,
            signers: signers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn refusal(r: &KeygenRequest) -> String {
        let e = Error::from(check_request(&registry(), r).err().expect("accepted"));
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        e.to_string()
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
        assert_eq!(
            refusal(&req(2, &["s1"])),
            "a key needs 2..=255 signers, got 1"
        );
    }

    fn finish(package: &[u8], group_key: &[u8]) -> pb::DkgFinishResponse {
        pb::DkgFinishResponse {
            public_key_package: package.to_vec(),
            group_public_key: group_key.to_vec(),
        }
    }

    #[test]
    fn finish_results_must_agree_decode_and_match() {
        let (_, public) = ringi_frost::frost_core::keys::generate_with_dealer::<Secp256k1, _>(
            3,
            2,
            ringi_frost::frost_core::keys::IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let package = public.serialize().unwrap();
        let group = public.verifying_key().serialize().unwrap();
        let good = finish(&package, &group);
        assert_eq!(
            agree_on_result::<Secp256k1>(&[("a", &good), ("b", &good)]).unwrap(),
            (package.clone(), group.clone())
        );
        let mut other_group = group.clone();
        other_group[5] ^= 1;
        let differs = finish(&package, &other_group);
        assert_eq!(
            agree_on_result::<Secp256k1>(&[("a", &good), ("b", &differs)]).unwrap_err(),
            "signer b computed a different public key package than signer a"
        );
        let err = agree_on_result::<Secp256k1>(&[("a", &differs), ("b", &differs)]).unwrap_err();
        assert!(err.contains("is not their package's"), "{err}");
        let garbage = finish(&[0xff; 40], &group);
        let err = agree_on_result::<Secp256k1>(&[("a", &garbage)]).unwrap_err();
        assert!(err.contains("undecodable public key package"), "{err}");
        let empty = finish(&[], &[]);
        assert!(agree_on_result::<Secp256k1>(&[("a", &empty)]).is_err());
        assert!(agree_on_result::<Secp256k1>(&[]).is_err());
    }
}
