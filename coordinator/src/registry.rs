//! The signer registry: which signer nodes exist, where they listen, and
//! which FROST identifier each one takes. Built from the config; checked
//! once at start so a bad entry stops the coordinator instead of a signing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ringi_net::tls::Reloadable;
use ringi_proto::signer::v1::signer_client::SignerClient;
use tonic::transport::{Channel, Endpoint};

use crate::commitment_pool::CommitmentPools;
use crate::config::SignerEntry;
use crate::sign_batches::SignBatches;
use crate::signer_standing::SignerStandings;

/// How long to wait for a TCP connection to a signer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one signer call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("signer name {0:?} appears twice in the registry")]
    DuplicateName(String),
    #[error("signer name {0:?} is invalid: use 1..=64 characters of [A-Za-z0-9._-]")]
    BadName(String),
    #[error("FROST identifier {0} is given to two signers")]
    DuplicateIdentifier(u32),
    #[error("signer {name:?}: identifier {identifier} is outside 1..=65535")]
    BadIdentifier { name: String, identifier: u32 },
    #[error("signer {name:?}: {reason}")]
    Address { name: String, reason: String },
}

/// One registered signer and its (lazily connected, reused) gRPC channel.
#[derive(Clone)]
pub struct Signer {
    pub name: String,
    pub address: String,
    pub identifier: u16,
    pub client: SignerClient<Channel>,
    /// The channel `client` uses (for the health watch).
    pub channel: Channel,
    /// Round-2 calls over `client`, batched under load
    /// ([`crate::sign_batches`]).
    pub sign_batches: SignBatches,
}

#[derive(Clone)]
pub struct Registry {
    signers: BTreeMap<String, Signer>,
    /// The client identity every signer channel presents when it
    /// (re)connects; replaced on SIGHUP.
    tls: Option<Reloadable<rustls::ClientConfig>>,
    /// Preprocessed commitments of every signer, per key.
    pools: Arc<CommitmentPools>,
    /// How fast each signer answers, and which are excluded for cause.
    standings: Arc<SignerStandings>,
}

impl Registry {
    /// Checks the entries and prepares one channel per signer. No connection
    /// is made yet: a signer that is down does not stop the coordinator.
    /// Plaintext, so loopback only.
    pub fn new(entries: &[SignerEntry]) -> Result<Self, RegistryError> {
        Self::build(entries, None)
    }

    /// Like [`Registry::new`], dialling every signer over mutual TLS with
    /// `tls`, and accepting it only if its certificate names it.
    pub fn with_tls(
        entries: &[SignerEntry],
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, RegistryError> {
        Self::build(entries, Some(Reloadable::new(tls)))
    }

    /// The client TLS configuration the signer channels use, to replace
    /// when certificates are reloaded.
    pub fn client_tls(&self) -> Option<&Reloadable<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    fn build(
        entries: &[SignerEntry],
        tls: Option<Reloadable<rustls::ClientConfig>>,
    ) -> Result<Self, RegistryError> {
        let mut signers = BTreeMap::new();
        let mut identifiers = HashSet::new();
        for entry in entries {
            if ringi_policy::key_id::check_name(&entry.name).is_err() {
                return Err(RegistryError::BadName(entry.name.clone()));
            }
            let identifier = u16::try_from(entry.identifier)
                .ok()
                .filter(|i| *i != 0)
                .ok_or_else(|| RegistryError::BadIdentifier {
                    name: entry.name.clone(),
                    identifier: entry.identifier,
                })?;
            if !identifiers.insert(identifier) {
                return Err(RegistryError::DuplicateIdentifier(entry.identifier));
            }
            let address_error = |reason: String| RegistryError::Address {
                name: entry.name.clone(),
                reason,
            };
            let channel = match &tls {
                Some(config) => {
                    ringi_net::tls::connect_lazy(&entry.address, &entry.name, config.clone())
                        .map_err(|e| address_error(e.to_string()))?
                }
                None => {
                    let uri = ringi_net::transport::check_plaintext_dial(&entry.address)
                        .map_err(|e| address_error(e.to_string()))?;
                    Endpoint::from_shared(uri)
                        .map_err(|e| address_error(e.to_string()))?
                        .connect_timeout(CONNECT_TIMEOUT)
                        .timeout(CALL_TIMEOUT)
                        .tcp_nodelay(true)
                        .connect_lazy()
                }
            };
            let signer = Signer {
                name: entry.name.clone(),
                address: entry.address.clone(),
                identifier,
                client: SignerClient::new(channel.clone()),
                sign_batches: SignBatches::new(SignerClient::new(channel.clone())),
                channel,
            };
            if signers.insert(entry.name.clone(), signer).is_some() {
                return Err(RegistryError::DuplicateName(entry.name.clone()));
            }
        }
        Ok(Registry {
            signers,
            tls,
            pools: Arc::default(),
            standings: Arc::default(),
        })
    }

    /// The signers' preprocessed commitments (one-round signing).
    pub fn pools(&self) -> &Arc<CommitmentPools> {
        &self.pools
    }

    /// What the coordinator has seen of each signer lately.
    pub fn standings(&self) -> &Arc<SignerStandings> {
        &self.standings
    }

    /// Every registered signer, by name.
    pub fn signers(&self) -> impl Iterator<Item = &Signer> {
        self.signers.values()
    }

    pub fn get(&self, name: &str) -> Option<&Signer> {
        self.signers.get(name)
    }

    pub fn len(&self) -> usize {
        self.signers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, address: &str, identifier: u32) -> SignerEntry {
        SignerEntry {
            name: name.into(),
            address: address.into(),
            identifier,
        }
    }

    #[tokio::test]
    async fn accepts_distinct_loopback_signers() {
        let r =
            Registry::new(&[entry("a", "127.0.0.1:1", 1), entry("b", "localhost:2", 2)]).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.get("b").unwrap().identifier, 2);
    }

    #[tokio::test]
    async fn refuses_bad_entries() {
        let dup = Registry::new(&[entry("a", "127.0.0.1:1", 1), entry("a", "127.0.0.1:2", 2)]);
        assert_eq!(dup.err(), Some(RegistryError::DuplicateName("a".into())));
        let dup_id = Registry::new(&[entry("a", "127.0.0.1:1", 1), entry("b", "127.0.0.1:2", 1)]);
        assert_eq!(dup_id.err(), Some(RegistryError::DuplicateIdentifier(1)));
        assert!(matches!(
            Registry::new(&[entry("a", "127.0.0.1:1", 0)]).err(),
            Some(RegistryError::BadIdentifier { .. })
        ));
        assert!(matches!(
            Registry::new(&[entry("a", "127.0.0.1:1", 70000)]).err(),
            Some(RegistryError::BadIdentifier { .. })
        ));
        let remote = Registry::new(&[entry("a", "192.0.2.1:7101", 1)])
            .err()
            .unwrap();
        assert!(remote.to_string().contains("refusing to connect to"));
        assert!(matches!(
            Registry::new(&[entry("a b", "127.0.0.1:1", 1)]).err(),
            Some(RegistryError::BadName(_))
        ));
    }
}
