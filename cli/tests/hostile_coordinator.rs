//! The `ringi` binary against a fake coordinator that answers with views a
//! broken or hostile coordinator could send: the CLI refuses each with a
//! clear error and a non-zero exit, never panics, and never sends a
//! decision about a view it refused.

use std::sync::{Arc, Mutex};

use ringi_policy::key_id::KeyId;
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_proto::coordinator::v1 as pb;
use ringi_proto::coordinator::v1::request_service_server::{RequestService, RequestServiceServer};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Fake {
    /// What GetSigningRequest returns.
    view: Mutex<pb::SigningRequestView>,
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
            .add_service(RequestServiceServer::new(service))
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
        let key = self.dir.path().join("alice.pem");
        self.ringi(&[
            "approve",
            id,
            "--department",
            "treasury",
            "--key-file",
            key.to_str().unwrap(),
        ])
    }

    fn set(&self, v: pb::SigningRequestView) {
        *self.fake.view.lock().unwrap() = v;
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
