//! A coordinator in this test's own process: a `Coordinator` over a
//! temporary SQLite store, called through its request flow and its gRPC
//! service (`RequestService`) without a network. For tests that count or
//! race what happens inside one process; the flow across real processes is
//! the e2e tests'.

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use ringi::request_store::RequestRecord;
use ringi::requests;
use ringi::store::KeyRecord;
use ringi_frost::{KeyKind, Secp256k1};
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_policy::statement::{Approval, Decision, Statement};
use ringi_proto::coordinator::v1 as pb;

/// An approver of one department, with its P-256 key.
pub struct Approver {
    pub name: &'static str,
    pub department: &'static str,
    pub key: SigningKey,
}

impl Approver {
    pub fn new(name: &'static str, department: &'static str) -> Self {
        Approver {
            name,
            department,
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    pub fn public(&self) -> ApproverKey {
        ApproverKey::from_sec1(self.key.verifying_key().to_encoded_point(true).as_bytes()).unwrap()
    }

    /// This approver's approval of `record`, valid for ten minutes.
    pub fn approval(&self, record: &RequestRecord) -> Approval {
        let now = requests::now();
        let statement = Statement::for_request(
            &record.request,
            self.department,
            Decision::Approve,
            "",
            now,
            now + 600,
        );
        self.signed(statement)
    }

    /// `statement`, signed by this approver.
    pub fn signed(&self, statement: Statement) -> Approval {
        let approver = self.public();
        let signature: p256::ecdsa::Signature = self.key.sign(&statement.signed_bytes(&approver));
        Approval {
            statement,
            approver,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// [`Approver::approval`] as a Decide call.
    pub fn approve(&self, record: &RequestRecord) -> pb::DecideRequest {
        pb::DecideRequest {
            approval: Some(ringi_proto::bundle::approval_to_pb(&self.approval(record))),
        }
    }
}

/// A policy with one department per approver, and keys hot-1 and hot-2
/// each needing one treasury and one compliance approval.
pub fn policy(approvers: &[&Approver]) -> Policy {
    let mut text = String::from("version = 1\n");
    for a in approvers {
        text.push_str(&format!(
            "\n[[departments]]\nname = \"{}\"\napprovers = [{{ name = \"{}\", key = \"{}\" }}]\n",
            a.department,
            a.name,
            a.public().to_text()
        ));
    }
    for key in ["hot-1", "hot-2"] {
        text.push_str(&format!(
            "\n[keys.{key}]\nrequest_ttl_secs = 86400\napproval_ttl_secs = 3600\n\
             require = {{ treasury = 1, compliance = 1 }}\n",
        ));
    }
    Policy::from_bytes(text.as_bytes()).unwrap()
}

/// A 2-of-3 key `key_id` made by a dealer: the coordinator needs only its
/// public package; with no signer registered, its signing fails for good
/// after the run has checked the approvals.
pub fn key_record(key_id: &str) -> KeyRecord {
    let (_, public) = ringi_frost::frost_core::keys::generate_with_dealer::<Secp256k1, _>(
        3,
        2,
        ringi_frost::frost_core::keys::IdentifierList::Default,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    KeyRecord {
        key_id: KeyId::parse(key_id).unwrap(),
        kind: KeyKind::FrostSecp256k1,
        threshold: 2,
        signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
        group_public_key: public.verifying_key().serialize().unwrap(),
        public_key_package: public.serialize().unwrap(),
        created_at: 1_700_000_000,
    }
}

/// A raw request for `key_id` as a wallet service submits it.
pub fn submission(key_id: &str, idempotency_key: &str) -> requests::Submission {
    requests::Submission {
        key_id: KeyId::parse(key_id).unwrap(),
        message: format!("pay 10 ({idempotency_key})").into_bytes(),
        asset: "BTC".into(),
        amount: "10".into(),
        destination: "bc1qexample".into(),
        memo: String::new(),
        requester: "wallet".into(),
        signers: Vec::new(),
        idempotency_key: idempotency_key.into(),
        psbt: None,
    }
}
