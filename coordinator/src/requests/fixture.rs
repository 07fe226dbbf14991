//! Test fixtures for the request flow: a policy with three departments and
//! approvers whose keys the tests hold.

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::policy::Policy;
use ringi_policy::request::SigningRequest;
use ringi_policy::statement::{Approval, Decision, Statement};

pub const NOW: u64 = 1_800_000_100;

/// treasury 1 + compliance 1; above 100000000: treasury 2, compliance 1,
/// security 1.
pub const HOT: &str = r#"[keys.hot-1]
request_ttl_secs = 86400
approval_ttl_secs = 3600
require = { treasury = 1, compliance = 1 }
tiers = [{ above = 100000000, require = { treasury = 2, compliance = 1, security = 1 } }]
"#;

pub const ALLOWLIST: &str = r#"[keys.hot-1]
request_ttl_secs = 86400
approval_ttl_secs = 3600
require = { treasury = 1, compliance = 1 }
destinations = { allowed = ["bc1qexchange"] }
"#;

pub struct Fixture {
    pub policy: Policy,
    keys: Vec<(&'static str, SigningKey)>,
}

/// treasury: alice, bob; compliance: carol, dave; security: erin; and
/// mallory, who is in no department.
pub fn fixture_with(key_section: &str) -> Fixture {
    let keys: Vec<(&'static str, SigningKey)> =
        ["alice", "bob", "carol", "dave", "erin", "mallory"]
            .into_iter()
            .map(|n| (n, SigningKey::random(&mut rand::rngs::OsRng)))
            .collect();
    let public = |name: &str| {
        let sk = &keys.iter().find(|(n, _)| *n == name).unwrap().1;
        format!(
            "p256:{}",
            hex::encode(sk.verifying_key().to_encoded_point(true).as_bytes())
        )
    };
    let text = format!(
        r#"version = 1

[[departments]]
name = "treasury"
approvers = [{{ name = "alice", key = "{}" }}, {{ name = "bob", key = "{}" }}]

[[departments]]
name = "compliance"
approvers = [{{ name = "carol", key = "{}" }}, {{ name = "dave", key = "{}" }}]

[[departments]]
name = "security"
approvers = [{{ name = "erin", key = "{}" }}]

{key_section}
"#,
        public("alice"),
        public("bob"),
        public("carol"),
        public("dave"),
        public("erin"),
    );
    Fixture {
        policy: Policy::from_bytes(text.as_bytes()).unwrap(),
        keys,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(HOT)
}

impl Fixture {
    /// A request for 1000 to bc1qexample, made at `NOW - 100`.
    pub fn request(&self) -> SigningRequest {
        let mut r = crate::store::contract::request();
        r.metadata.amount = 1000;
        r.metadata.destination = "bc1qexample".into();
        r.created_at = NOW - 100;
        r.expires_at = NOW + 3600;
        r.policy_hash = self.policy.hash();
        r
    }

    /// `who`'s signed decision on `request`, issued 10 s ago, valid 10 min.
    pub fn decide(
        &self,
        request: &SigningRequest,
        who: &str,
        department: &str,
        decision: Decision,
    ) -> Approval {
        self.sign(
            who,
            Statement::for_request(request, department, decision, "why", NOW - 10, NOW + 600),
        )
    }

    /// `who`'s admin signature of a key order, issued at `issued_at`.
    pub fn order_signature(
        &self,
        who: &str,
        order: &ringi_policy::key_order::KeyOrder,
        issued_at: u64,
    ) -> ringi_policy::policy_update::AdminSignature {
        let sk = &self.keys.iter().find(|(n, _)| *n == who).unwrap().1;
        let admin =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let signature: p256::ecdsa::Signature = sk.sign(&order.signed_bytes(issued_at, &admin));
        ringi_policy::policy_update::AdminSignature {
            admin,
            issued_at,
            signature: signature.to_bytes().to_vec(),
        }
    }

    pub fn sign(&self, who: &str, statement: Statement) -> Approval {
        let sk = &self.keys.iter().find(|(n, _)| *n == who).unwrap().1;
        let approver =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let signature: p256::ecdsa::Signature = sk.sign(&statement.signed_bytes(&approver));
        Approval {
            statement,
            approver,
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// A bitcoin-taproot key, its policy section, and PSBTs spending from it.
pub mod taproot {
    use ringi_frost::KeyKind;
    use ringi_frost::taproot::Secp256k1Tr;
    use ringi_psbt::bitcoin::hashes::Hash;
    use ringi_psbt::bitcoin::{Address, ScriptBuf, WPubkeyHash};
    use ringi_psbt::build::{Coin, unsigned};
    use ringi_psbt::{Network, OwnKey};

    use crate::store::KeyRecord;

    /// `tr-1`: regtest, fees at most 5000 sat and 50 sat/vB, payments only
    /// to [`listed`] 1 and 2; `extra` is appended to its section (e.g.
    /// `blind_signing = ...`).
    pub fn section(extra: &str) -> String {
        format!(
            r#"[keys.tr-1]
request_ttl_secs = 86400
approval_ttl_secs = 3600
require = {{ treasury = 1, compliance = 1 }}
network = "regtest"
fees = {{ max_sats = 5000, max_sat_per_vbyte = 50 }}
{extra}
[keys.tr-1.destinations]
allowed = ["{}", "{}"]
"#,
            listed(1),
            listed(2)
        )
    }

    /// A regtest P2WPKH address made of `n`.
    pub fn listed(n: u8) -> String {
        Address::from_script(&script(n), ringi_psbt::bitcoin_network(Network::Regtest))
            .unwrap()
            .to_string()
    }

    /// The script of [`listed`]`(n)`.
    pub fn script(n: u8) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
    }

    /// A taproot key's record (a dealer's key: only its group key matters
    /// to submission).
    pub fn key(key_id: &str) -> KeyRecord {
        let (_, public) = ringi_frost::frost_core::keys::generate_with_dealer::<Secp256k1Tr, _>(
            3,
            2,
            ringi_frost::frost_core::keys::IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        KeyRecord {
            kind: KeyKind::BitcoinTaproot,
            group_public_key: public.verifying_key().serialize().unwrap(),
            public_key_package: public.serialize().unwrap(),
            ..crate::store::contract::key_record(key_id)
        }
    }

    /// The key's own keys on regtest.
    pub fn own(key: &KeyRecord) -> OwnKey {
        let (internal_key, output_key) = key.taproot_keys().unwrap();
        OwnKey {
            internal_key,
            output_key,
            network: Network::Regtest,
        }
    }

    /// A PSBT spending `coins` (sats each) of `key` to `outputs`.
    pub fn psbt(key: &KeyRecord, coins: &[u64], outputs: &[(ScriptBuf, u64)]) -> Vec<u8> {
        let coins: Vec<Coin> = coins
            .iter()
            .enumerate()
            .map(|(i, v)| Coin::synthetic(7, i as u32, *v))
            .collect();
        unsigned(&own(key), &coins, outputs).serialize()
    }
}
