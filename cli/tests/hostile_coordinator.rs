//! The `ringi` binary against a fake coordinator that answers with views a
//! broken or hostile coordinator could send: the CLI refuses each with a
//! clear error and a non-zero exit, never panics, and never sends a
//! decision about a view it refused. That includes a PSBT request whose
//! transaction the coordinator misrepresents, a key shown with an address
//! that is not its own, a blind request not shown as blind, and a signed
//! transaction that is not the request's.

use std::sync::{Arc, Mutex};

use ringi_policy::key_id::KeyId;
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::key_service_server::{KeyService, KeyServiceServer};
use ringi_proto::coordinator::v1::request_service_server::{RequestService, RequestServiceServer};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Fake {
    /// What GetSigningRequest returns.
    view: Mutex<pb::SigningRequestView>,
    /// What GetPublicKey returns (a frost-secp256k1 key `hot-1` unless set).
    key: Mutex<Option<pb::PublicKey>>,
    /// Every approval received by Decide.
    decided: Mutex<Vec<ringi_proto::approval::v1::Approval>>,
}

#[derive(Clone)]
struct FakeService(Arc<Fake>);

#[tonic::async_trait]
impl RequestService for FakeService {
    async fn submit_signing_request(
        &self,
        _: Request<pb::SubmitSigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchSigningRequestStream = tokio_stream::Empty<Result<pb::SigningRequestEvent, Status>>;

    async fn watch_signing_request(
        &self,
        _: Request<pb::WatchSigningRequestRequest>,
    ) -> Result<Response<Self::WatchSigningRequestStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_signing_request(
        &self,
        _: Request<pb::GetSigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        Ok(Response::new(self.0.view.lock().unwrap().clone()))
    }

    async fn list_signing_requests(
        &self,
        _: Request<pb::ListSigningRequestsRequest>,
    ) -> Result<Response<pb::ListSigningRequestsResponse>, Status> {
        Ok(Response::new(pb::ListSigningRequestsResponse {
            requests: vec![self.0.view.lock().unwrap().clone()],
            next_page_token: String::new(),
        }))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        let approval = request.into_inner().approval.unwrap_or_default();
        self.0.decided.lock().unwrap().push(approval);
        Ok(Response::new(self.0.view.lock().unwrap().clone()))
    }

    async fn retry_signing_request(
        &self,
        _: Request<pb::RetrySigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        Err(Status::unimplemented("not part of the fake"))
    }
}

impl Fake {
    fn key(&self) -> pb::PublicKey {
        self.key
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| pb::PublicKey {
                key_id: "hot-1".into(),
                threshold: 2,
                group_public_key: vec![2; 33],
                kind: "frost-secp256k1".into(),
                ..Default::default()
            })
    }
}

#[tonic::async_trait]
impl KeyService for FakeService {
    type CreateKeyStream = tokio_stream::Empty<Result<pb::CreateKeyEvent, Status>>;

    async fn create_key(
        &self,
        _: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<Self::CreateKeyStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type RefreshKeyStream = tokio_stream::Empty<Result<pb::CreateKeyEvent, Status>>;

    async fn refresh_key(
        &self,
        _: Request<pb::RefreshKeyRequest>,
    ) -> Result<Response<Self::RefreshKeyStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn repair_key(
        &self,
        _: Request<pb::RepairKeyRequest>,
    ) -> Result<Response<pb::RepairKeyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn import_key(
        &self,
        _: Request<pb::ImportKeyRequest>,
    ) -> Result<Response<pb::ImportKeyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn retire_key(
        &self,
        _: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::RetireKeyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_public_key(
        &self,
        _: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        Ok(Response::new(pb::GetPublicKeyResponse {
            key: Some(self.0.key()),
        }))
    }

    async fn list_keys(
        &self,
        _: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        Ok(Response::new(pb::ListKeysResponse {
            keys: vec![self.0.key()],
        }))
    }
}

fn request(destination: &str) -> SigningRequest {
    let now = ringi_policy::clock::now();
    SigningRequest {
        key_id: KeyId::parse("hot-1").unwrap(),
        message: vec![0xab; 32],
        metadata: Metadata {
            asset: "BTC".into(),
            amount: 1000,
            destination: destination.into(),
            memo: String::new(),
        },
        psbt: None,
        requester: "wallet-service".into(),
        created_at: now,
        expires_at: now + 600,
        policy_hash: [7; 32],
        nonce: vec![3; ringi_policy::request::NONCE_LEN],
    }
}

fn view(r: &SigningRequest, approval_ttl_secs: u64) -> pb::SigningRequestView {
    pb::SigningRequestView {
        request_id: hex::encode(r.id()),
        request: Some(ringi_proto::bundle::request_to_pb(r)),
        state: "PENDING_APPROVAL".into(),
        content_digest: hex::encode(r.content_digest()),
        approval_ttl_secs,
        ..Default::default()
    }
}

struct Setup {
    fake: Arc<Fake>,
    address: String,
    dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn start() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = Arc::new(Fake::default());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let service = FakeService(fake.clone());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(RequestServiceServer::new(service.clone()))
            .add_service(KeyServiceServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    ringi_cli::approver::generate_key_file(&dir.path().join("alice.pem")).unwrap();
    Setup {
        fake,
        address,
        dir,
        _runtime: runtime,
    }
}

impl Setup {
    fn ringi(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringi"))
            .env("RINGI_COORDINATOR", &self.address)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (out.status.success(), stderr)
    }

    fn approve(&self, id: &str) -> (bool, String) {
        self.approve_with(id, &["--yes"])
    }

    /// `ringi approve` as alice with `extra` arguments.
    fn approve_with(&self, id: &str, extra: &[&str]) -> (bool, String) {
        let key = self.dir.path().join("alice.pem");
        let mut args = vec![
            "approve",
            id,
            "--department",
            "treasury",
            "--key-file",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.ringi(&args)
    }

    fn set(&self, v: pb::SigningRequestView) {
        *self.fake.view.lock().unwrap() = v;
    }

    fn set_key(&self, k: pb::PublicKey) {
        *self.fake.key.lock().unwrap() = Some(k);
    }

    fn decided(&self) -> Vec<ringi_proto::approval::v1::Approval> {
        self.fake.decided.lock().unwrap().clone()
    }
}

#[test]
fn a_sound_view_is_approved_for_the_proposed_validity() {
    let s = start();
    let r = request("bc1qexample");
    s.set(view(&r, 3600));
    let (ok, err) = s.approve(&hex::encode(r.id()));
    assert!(ok, "{err}");
    let decided = s.decided();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].request_id, r.id());
    assert_eq!(decided[0].expires_at - decided[0].issued_at, 3600);
}

#[test]
fn an_absurd_approval_validity_is_refused_without_a_panic() {
    let s = start();
    let r = request("bc1qexample");
    let id = hex::encode(r.id());
    for (ttl, says) in [
        // `now + u64::MAX` overflowed: the CLI panicked.
        (
            u64::MAX,
            "more than the 604800 s (7 days) the CLI signs for",
        ),
        (604_801, "more than the 604800 s (7 days) the CLI signs for"),
        (0, "valid for 0 s"),
    ] {
        s.set(view(&r, ttl));
        let (ok, err) = s.approve(&id);
        assert!(!ok, "approved with a validity of {ttl} s");
        assert!(
            err.contains("ringi: error: refusing the coordinator's answer"),
            "{err}"
        );
        assert!(
            err.contains(says) && err.contains("refusing to sign"),
            "{err}"
        );
    }
    assert!(s.decided().is_empty(), "nothing was signed");
}

#[test]
fn a_view_that_is_not_the_request_asked_for_is_refused() {
    let s = start();
    let asked = request("bc1qexample");
    let id = hex::encode(asked.id());

    // The coordinator shows another destination under the same id.
    let mut tampered = view(&asked, 3600);
    tampered.request.as_mut().unwrap().destination = "bc1qmallory".into();
    s.set(tampered);
    let (ok, err) = s.approve(&id);
    assert!(!ok);
    assert!(err.contains("not to that id"), "{err}");

    // The coordinator answers with another (well-formed) request.
    s.set(view(&request("bc1qmallory"), 3600));
    let (ok, err) = s.approve(&id);
    assert!(!ok);
    assert!(err.contains("the coordinator returned request"), "{err}");

    assert!(s.decided().is_empty(), "nothing was signed");
}

#[test]
fn malformed_views_fail_show_and_list_with_a_clear_error() {
    let s = start();
    let r = request("bc1qexample");
    let id = hex::encode(r.id());
    let mut v = view(&r, 3600);
    v.state = "LIMBO".into();
    s.set(v);
    for args in [
        &["requests", "show", &id][..],
        &["requests", "list"],
        &["requests", "wait", &id],
    ] {
        let (ok, err) = s.ringi(args);
        assert!(!ok, "{args:?}");
        assert!(
            err.contains("state \"LIMBO\" is not a request state"),
            "{err}"
        );
    }
    let mut v = view(&r, 3600);
    v.request_id = "not hex".into();
    s.set(v);
    let (ok, err) = s.ringi(&["requests", "list"]);
    assert!(!ok);
    assert!(
        err.contains("request id \"not hex\" is not 64 hex digits"),
        "{err}"
    );
}

#[test]
fn a_wait_longer_than_time_itself_does_not_panic() {
    let s = start();
    let r = request("bc1qexample");
    let mut v = view(&r, 3600);
    v.state = "SIGNED".into();
    v.signature = vec![5; 65];
    s.set(v);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringi"))
        .env("RINGI_COORDINATOR", &s.address)
        .args([
            "requests",
            "wait",
            &hex::encode(r.id()),
            "--timeout-secs",
            &u64::MAX.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        hex::encode([5; 65])
    );
}

/// A bitcoin-taproot key `tr` on regtest, as an honest coordinator shows it.
fn taproot_key() -> (pb::PublicKey, ringi_psbt::OwnKey) {
    let (_, public) =
        frost_core::keys::generate_with_dealer::<ringi_frost::taproot::Secp256k1Tr, _>(
            3,
            2,
            frost_core::keys::IdentifierList::Default,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
    let group_public_key = public.verifying_key().serialize().unwrap();
    let (internal_key, output_key) =
        ringi_frost::taproot::keys_of_group(&group_public_key).unwrap();
    let own = ringi_psbt::OwnKey {
        internal_key,
        output_key,
        network: ringi_psbt::Network::Regtest,
    };
    let key = pb::PublicKey {
        key_id: "tr".into(),
        threshold: 2,
        group_public_key,
        kind: "bitcoin-taproot".into(),
        internal_key: internal_key.to_vec(),
        output_key: output_key.to_vec(),
        network: "regtest".into(),
        address: own.address(),
        ..Default::default()
    };
    (key, own)
}

/// A regtest P2WPKH script made of `n`.
fn script(n: u8) -> ringi_psbt::bitcoin::ScriptBuf {
    use ringi_psbt::bitcoin::hashes::Hash;
    ringi_psbt::bitcoin::ScriptBuf::new_p2wpkh(&ringi_psbt::bitcoin::WPubkeyHash::from_byte_array(
        [n; 20],
    ))
}

/// A PSBT request of `tr` paying 40000 sat to script 1, and its honest
/// view (the transaction the coordinator derives).
fn psbt_request(own: &ringi_psbt::OwnKey) -> (SigningRequest, pb::SigningRequestView) {
    let psbt = ringi_psbt::build::unsigned(
        own,
        &[ringi_psbt::build::Coin::synthetic(1, 0, 100_000)],
        &[(script(1), 40_000), (own.script(), 59_000)],
    )
    .serialize();
    let mut r = request("");
    r.key_id = KeyId::parse("tr").unwrap();
    r.message.clear();
    r.metadata = Metadata {
        memo: "sweep".into(),
        ..Metadata::default()
    };
    r.psbt = Some(psbt.clone());
    let mut v = view(&r, 3600);
    let derived = ringi_psbt::derive(&psbt, own, false).unwrap();
    v.transaction = Some(ringi::service::transaction_pb(
        &derived,
        ringi_psbt::Network::Regtest,
    ));
    (r, v)
}

#[test]
fn a_psbt_request_is_shown_from_its_own_derivation_and_approved() {
    let s = start();
    let (key, own) = taproot_key();
    s.set_key(key);
    let (r, v) = psbt_request(&own);
    s.set(v);
    let id = hex::encode(r.id());
    let (ok, err) = s.ringi(&["requests", "show", &id]);
    assert!(ok, "{err}");
    let (ok, err) = s.approve(&id);
    assert!(ok, "{err}");
    assert!(
        err.contains("PAYS") && err.contains("0.00040000 BTC (40000 sat)"),
        "{err}"
    );
    assert_eq!(s.decided().len(), 1);
}

#[test]
fn a_misrepresented_transaction_is_refused() {
    let s = start();
    let (key, own) = taproot_key();
    s.set_key(key);
    let (r, honest) = psbt_request(&own);
    let id = hex::encode(r.id());
    type Lie = fn(&mut pb::Transaction);
    let lies: [(Lie, &str); 4] = [
        (
            |t| t.payments[0].address = "bcrt1qmallorymallorymallorymallory".into(),
            "payments differs",
        ),
        (|t| t.payments[0].value_sats = 1, "payments differs"),
        (|t| t.fee_sats = 1, "fee differs"),
        (|t| t.txid = "00".repeat(32), "txid differs"),
    ];
    for (lie, says) in lies {
        let mut v = honest.clone();
        lie(v.transaction.as_mut().unwrap());
        s.set(v);
        for args in [&["requests", "show", &id][..], &["requests", "list"]] {
            let (ok, err) = s.ringi(args);
            assert!(!ok, "{args:?}");
            assert!(
                err.contains("is not what the request's PSBT does") && err.contains(says),
                "{err}"
            );
        }
        let (ok, err) = s.approve(&id);
        assert!(!ok);
        assert!(err.contains(says), "{err}");
    }
    // No transaction at all.
    let mut v = honest.clone();
    v.transaction = None;
    s.set(v);
    let (ok, err) = s.approve(&id);
    assert!(!ok);
    assert!(err.contains("no transaction shown"), "{err}");
    assert!(s.decided().is_empty(), "nothing was signed");
}

#[test]
fn a_key_shown_with_another_address_is_refused() {
    let s = start();
    let (key, own) = taproot_key();
    let (_, other) = taproot_key();
    let (r, v) = psbt_request(&own);
    s.set(v);
    let id = hex::encode(r.id());
    type Lie = fn(&mut pb::PublicKey, &ringi_psbt::OwnKey);
    let lies: [(Lie, &str); 3] = [
        (|k, o| k.address = o.address(), "is not its output key's"),
        (
            |k, o| k.output_key = o.output_key.to_vec(),
            "not its group key's",
        ),
        (|k, _| k.network = "mainnet".into(), "is not a network"),
    ];
    for (lie, says) in lies {
        let mut k = key.clone();
        lie(&mut k, &other);
        s.set_key(k);
        for args in [
            &["requests", "show", &id][..],
            &["pubkey", "--key-id", "tr"],
            &["keys"],
        ] {
            let (ok, err) = s.ringi(args);
            assert!(!ok, "{args:?}");
            assert!(err.contains(says), "{err}");
        }
        let (ok, _) = s.approve(&id);
        assert!(!ok);
    }
    // The honest key shows its address.
    s.set_key(key.clone());
    let (ok, err) = s.ringi(&["pubkey", "--key-id", "tr"]);
    assert!(ok, "{err}");
    assert!(s.decided().is_empty(), "nothing was signed");
}

#[test]
fn a_blind_request_must_be_shown_as_blind() {
    let s = start();
    let (mut key, _) = taproot_key();
    key.key_id = "hot-1".into();
    s.set_key(key);
    let r = request("bc1qexample");
    let id = hex::encode(r.id());
    // A raw message on a taproot key that the coordinator does not call blind.
    s.set(view(&r, 3600));
    let (ok, err) = s.approve(&id);
    assert!(!ok);
    assert!(err.contains("blind = false, but it is true"), "{err}");
    assert!(s.decided().is_empty());
    let mut v = view(&r, 3600);
    v.blind = true;
    s.set(v);
    let (ok, err) = s.approve(&id);
    assert!(ok, "{err}");
    assert!(err.contains("*** BLIND ***"), "{err}");
}

#[test]
fn a_signed_transaction_that_is_not_the_requests_is_refused() {
    let s = start();
    let (key, own) = taproot_key();
    s.set_key(key);
    let (r, mut v) = psbt_request(&own);
    v.state = "SIGNED".into();
    v.signature = vec![7; 64];
    v.signed_psbt = r.psbt.clone().unwrap();
    v.signed_transaction = vec![1, 2, 3];
    s.set(v);
    let id = hex::encode(r.id());
    for output in ["tx", "psbt"] {
        let (ok, err) = s.ringi(&["requests", "wait", &id, "--output", output]);
        assert!(!ok);
        assert!(
            err.contains("its signed transaction is not the request's PSBT with its signatures"),
            "{err}"
        );
    }
}

// --- Confirmation, the approver's own policy, renewal ---

/// alice in treasury (her key file's key), carol in compliance; hot-1
/// approvals valid at most 600 s. Written into the setup's directory;
/// returns its path and SHA-256.
fn write_policy(s: &Setup, approval_ttl_secs: u64) -> (std::path::PathBuf, [u8; 32]) {
    let alice = ringi_cli::approver::ApproverSigner::from_file(&s.dir.path().join("alice.pem"))
        .unwrap()
        .public_key()
        .to_text();
    let carol = ringi_cli::approver::generate_key_file(&s.dir.path().join("carol.pem"))
        .unwrap()
        .to_text();
    let text = format!(
        "version = 1\n\
         [[departments]]\nname = \"treasury\"\napprovers = [{{ name = \"alice\", key = \"{alice}\" }}]\n\
         [[departments]]\nname = \"compliance\"\napprovers = [{{ name = \"carol\", key = \"{carol}\" }}]\n\
         [keys.hot-1]\nrequest_ttl_secs = 3600\napproval_ttl_secs = {approval_ttl_secs}\n\
         require = {{ treasury = 1, compliance = 1 }}\n\
         tiers = [{{ above = 100000000, require = {{ treasury = 1, compliance = 1 }} }}]\n"
    );
    let path = s.dir.path().join("policy.toml");
    std::fs::write(&path, &text).unwrap();
    let policy = ringi_policy::policy::Policy::from_bytes(text.as_bytes()).unwrap();
    (path, policy.hash())
}

/// The test request (0.5 BTC) under policy `hash`.
fn request_under(hash: [u8; 32]) -> SigningRequest {
    let mut r = request("bc1qexample");
    r.policy_hash = hash;
    r.metadata.amount = 50_000_000;
    r.metadata.memo = "exchange rebalance".into();
    r
}

#[test]
fn approve_on_a_stdin_that_is_not_a_terminal_needs_yes() {
    let s = start();
    let r = request("bc1qexample");
    s.set(view(&r, 3600));
    let id = hex::encode(r.id());
    // `Command::output` gives the CLI no stdin: not a terminal.
    let (ok, err) = s.approve_with(&id, &[]);
    assert!(!ok, "approved without a confirmation");
    assert!(
        err.contains(
            "stdin is not a terminal, so the decision cannot be confirmed: refusing to approve (pass --yes to approve from a script)"
        ),
        "{err}"
    );
    let key = s.dir.path().join("alice.pem");
    let (ok, err) = s.ringi(&[
        "reject",
        &id,
        "--department",
        "treasury",
        "--reason",
        "no",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("refusing to reject"), "{err}");
    assert!(s.decided().is_empty(), "nothing was signed");
    // With --yes it goes through.
    let (ok, err) = s.approve(&id);
    assert!(ok, "{err}");
    assert_eq!(s.decided().len(), 1);
}

#[test]
fn a_policy_file_that_is_not_the_requests_is_refused_naming_both_hashes() {
    let s = start();
    let (path, hash) = write_policy(&s, 600);
    let r = request("bc1qexample"); // made under policy 0707...
    s.set(view(&r, 600));
    let id = hex::encode(r.id());
    let (ok, err) = s.approve_with(&id, &["--yes", "--policy", path.to_str().unwrap()]);
    assert!(!ok, "approved under another policy");
    assert!(
        err.contains(&format!(
            "request {id} was made under policy {}, but your policy file hashes to {}; refusing to sign",
            hex::encode([7u8; 32]),
            hex::encode(hash)
        )),
        "{err}"
    );
    // The same through the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringi"))
        .env("RINGI_COORDINATOR", &s.address)
        .env("RINGI_POLICY_FILE", &path)
        .args([
            "approve",
            &id,
            "--department",
            "treasury",
            "--key-file",
            s.dir.path().join("alice.pem").to_str().unwrap(),
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("your policy file hashes to"));
    assert!(s.decided().is_empty(), "nothing was signed");
}

#[test]
fn a_validity_above_the_approvers_policy_is_refused_and_within_it_signed() {
    let s = start();
    let (path, hash) = write_policy(&s, 600);
    let r = request_under(hash);
    let id = hex::encode(r.id());
    let policy = ["--yes", "--policy", path.to_str().unwrap()];
    // Ten years, an hour, 601 s: each above the policy's 600 s.
    for ttl in [10 * 365 * 86_400, 3600, 601] {
        s.set(view(&r, ttl));
        let (ok, err) = s.approve_with(&id, &policy);
        assert!(!ok, "signed for {ttl} s");
        assert!(
            err.contains(&format!(
                "the coordinator proposes approvals valid for {ttl} s, more than the approval_ttl_secs of 600 s your policy sets for key hot-1; refusing to sign"
            )),
            "{err}"
        );
    }
    assert!(s.decided().is_empty(), "nothing was signed");
    // Within it: shown with the rule of the approver's policy, and signed.
    s.set(view(&r, 600));
    let (ok, err) = s.approve_with(&id, &policy);
    assert!(ok, "{err}");
    for shown in [
        "amount       0.50000000 BTC (50000000 sat)",
        "memo         exchange rebalance",
        "requester    wallet-service",
        "rule         the base rule: compliance 1, treasury 1",
        "the amount counted is 0.50000000 BTC (50000000 sat)",
        "your policy  still needs compliance 0 of 1, treasury 0 of 1",
        "within the approval_ttl_secs of 600 s of your policy",
        &format!("policy       {} (your copy)", hex::encode(hash)),
    ] {
        assert!(err.contains(shown), "{shown:?} not in:\n{err}");
    }
    let decided = s.decided();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].expires_at - decided[0].issued_at, 600);
    // Without a policy: today's cap, and the CLI says it did not check.
    s.set(view(&r, 3600));
    let (ok, err) = s.approve(&id);
    assert!(ok, "{err}");
    assert!(
        err.contains("not checked against a policy (no --policy)")
            && err.contains("the tier cannot be checked locally"),
        "{err}"
    );
}

/// An approval by alice of `r`, issued at `issued_at`, valid until
/// `expires_at`, with its decision summary.
fn alices_approval(
    s: &Setup,
    r: &SigningRequest,
    issued_at: u64,
    expires_at: u64,
) -> (ringi_proto::approval::v1::Approval, pb::DecisionSummary) {
    use ringi_policy::statement::{Approval, Decision, Statement};
    let signer =
        ringi_cli::approver::ApproverSigner::from_file(&s.dir.path().join("alice.pem")).unwrap();
    let statement =
        Statement::for_request(r, "treasury", Decision::Approve, "", issued_at, expires_at);
    let approver = signer.public_key();
    let signature = signer.sign(&statement.signed_bytes(&approver)).unwrap();
    let approval = Approval {
        statement,
        approver,
        signature,
    };
    let summary = pb::DecisionSummary {
        approver: "alice".into(),
        department: "treasury".into(),
        decision: "approve".into(),
        reason: String::new(),
        issued_at,
        expires_at,
    };
    (ringi_proto::bundle::approval_to_pb(&approval), summary)
}

#[test]
fn an_expired_approval_is_renewed_and_a_valid_one_is_not_signed_again() {
    let s = start();
    let r = request("bc1qexample");
    let id = hex::encode(r.id());
    let now = ringi_policy::clock::now();
    let (approval, summary) = alices_approval(&s, &r, now - 700, now - 100);
    let mut v = view(&r, 600);
    v.approvals = vec![approval];
    v.decisions = vec![summary];
    s.set(v);
    let (ok, err) = s.approve(&id);
    assert!(ok, "{err}");
    assert!(
        err.contains("renewing your approval that expired at ") && err.contains("EXPIRED at "),
        "{err}"
    );
    assert_eq!(s.decided().len(), 1);

    let (approval, summary) = alices_approval(&s, &r, now, now + 600);
    let mut v = view(&r, 600);
    v.approvals = vec![approval];
    v.decisions = vec![summary];
    s.set(v);
    let (ok, err) = s.approve(&id);
    assert!(!ok);
    assert!(
        err.contains("has already decided on request") && err.contains("AlreadyExists"),
        "{err}"
    );
    assert_eq!(s.decided().len(), 1, "nothing more was signed");
}
