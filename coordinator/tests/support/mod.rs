//! Test harness: real `ringi-signer` and `ringi` processes, each signer with
//! its own SoftHSM2 token initialised in a temporary directory by
//! `softhsm-setup/init-tokens.sh`, talking real gRPC on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::group::GroupEncoding;
use k256::elliptic_curve::hash2curve::{ExpandMsgXmd, hash_to_field};
use k256::elliptic_curve::sec1::FromEncodedPoint;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn ringi_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringi"))
}

pub fn signer_bin() -> PathBuf {
    let path = ringi_bin().with_file_name("ringi-signer");
    assert!(
        path.exists(),
        "{} is missing: build every binary first (cargo build --workspace --bins, as softhsm-setup/run-tests.sh does)",
        path.display()
    );
    path
}

/// Environment for one signer node, read from the `env` file that
/// init-tokens.sh wrote.
pub fn node_env(node_dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(node_dir.join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// Starts `cmd`, waits for its `listening on ADDR` stdout line, returns the
/// child and ADDR. stderr goes to `log`.
pub fn spawn_listening(mut cmd: Command, log: &Path) -> (Child, String) {
    let log_file = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "process did not start listening; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Sends SIGTERM and waits, so the process shuts down cleanly.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub struct SignerNode {
    pub name: String,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub address: String,
    pub child: Option<Child>,
}

impl SignerNode {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(signer_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().cloned());
        cmd
    }

    pub fn pin(&self) -> String {
        std::fs::read_to_string(self.dir.join("pin"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn module(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "RINGI_PKCS11_MODULE")
            .unwrap()
            .1
            .clone()
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let listen = if self.address.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            self.address.clone()
        };
        let mut cmd = self.command();
        cmd.args(["serve", "--listen", &listen]);
        let (child, address) = spawn_listening(cmd, &self.dir.join("log"));
        self.address = address;
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub signers: Vec<SignerNode>,
    pub coordinator: Option<Child>,
    pub coordinator_address: String,
}

impl Cluster {
    /// `n` signers (started) and a coordinator (started) knowing all of them.
    pub fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(repo_root().join("softhsm-setup/init-tokens.sh"))
            .arg(dir.path())
            .arg(n.to_string())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "init-tokens.sh failed");
        let mut signers = Vec::new();
        for i in 1..=n {
            let node_dir = dir.path().join(format!("signer-{i}"));
            let node = SignerNode {
                name: format!("signer-{i}"),
                env: node_env(&node_dir),
                dir: node_dir,
                address: String::new(),
                child: None,
            };
            let out = node.command().arg("init").output().unwrap();
            assert!(
                out.status.success(),
                "ringi-signer init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            signers.push(node);
        }
        for node in &mut signers {
            node.start();
        }
        let mut cluster = Cluster {
            dir,
            signers,
            coordinator: None,
            coordinator_address: String::new(),
        };
        cluster.write_coordinator_config();
        cluster.start_coordinator();
        cluster
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("coordinator.toml")
    }

    fn write_coordinator_config(&self) {
        let mut toml = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            self.dir.path().join("coordinator").display()
        );
        for (i, s) in self.signers.iter().enumerate() {
            toml.push_str(&format!(
                "\n[[signers]]\nname = \"{}\"\naddress = \"{}\"\nidentifier = {}\n",
                s.name,
                s.address,
                i + 1
            ));
        }
        std::fs::write(self.config_path(), toml).unwrap();
    }

    pub fn start_coordinator(&mut self) {
        let mut cmd = Command::new(ringi_bin());
        cmd.args(["serve", "--config"]).arg(self.config_path());
        let (child, address) = spawn_listening(cmd, &self.dir.path().join("coordinator.log"));
        self.coordinator = Some(child);
        self.coordinator_address = address;
    }

    pub fn stop_coordinator(&mut self) {
        if let Some(mut child) = self.coordinator.take() {
            stop(&mut child);
        }
    }

    /// Runs the `ringi` CLI against this cluster's coordinator.
    pub fn ringi(&self, args: &[&str]) -> Output {
        Command::new(ringi_bin())
            .env("RINGI_COORDINATOR", &self.coordinator_address)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the CLI and returns its stdout, failing the test if it fails.
    pub fn ringi_ok(&self, args: &[&str]) -> String {
        let out = self.ringi(args);
        assert!(
            out.status.success(),
            "ringi {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs the CLI expecting failure; returns stderr.
    pub fn ringi_err(&self, args: &[&str]) -> String {
        let out = self.ringi(args);
        assert!(!out.status.success(), "ringi {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn keygen(&self, key_id: &str, threshold: usize, signers: &[&str]) -> Vec<u8> {
        let t = threshold.to_string();
        let names = signers.join(",");
        hex::decode(self.ringi_ok(&[
            "keygen",
            "--key-id",
            key_id,
            "--threshold",
            &t,
            "--signers",
            &names,
        ]))
        .unwrap()
    }

    pub fn sign(&self, key_id: &str, message: &[u8], signers: &[&str]) -> Vec<u8> {
        let msg = hex::encode(message);
        let mut args = vec!["sign", "--key-id", key_id, "--message-hex", &msg];
        let names = signers.join(",");
        if !signers.is_empty() {
            args.extend(["--signers", &names]);
        }
        hex::decode(self.ringi_ok(&args)).unwrap()
    }

    pub async fn signer_client(
        &self,
        i: usize,
    ) -> ringi_proto::signer::v1::signer_client::SignerClient<tonic::transport::Channel> {
        ringi_proto::signer::v1::signer_client::SignerClient::connect(format!(
            "http://{}",
            self.signers[i].address
        ))
        .await
        .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_coordinator();
        for s in &mut self.signers {
            s.stop();
        }
    }
}

/// Verifies with the frost crate.
pub fn frost_verify(group_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let vk = frost_secp256k1::VerifyingKey::deserialize(group_key).unwrap();
    let sig = frost_secp256k1::Signature::deserialize(signature).unwrap();
    vk.verify(message, &sig).is_ok()
}

/// Verifies from RFC 9591 with k256 arithmetic only (no frost code):
/// z·G == R + H2(R ‖ PK ‖ m)·PK, with H2 = hash_to_field over
/// expand_message_xmd(SHA-256), DST "FROST-secp256k1-SHA256-v1chal".
pub fn independent_verify(group_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    if signature.len() != 65 {
        return false;
    }
    let point = |bytes: &[u8]| -> Option<k256::ProjectivePoint> {
        let encoded = k256::EncodedPoint::from_bytes(bytes).ok()?;
        let affine: Option<k256::AffinePoint> =
            k256::AffinePoint::from_encoded_point(&encoded).into();
        affine.map(k256::ProjectivePoint::from)
    };
    let (Some(r), Some(pk)) = (point(&signature[..33]), point(group_key)) else {
        return false;
    };
    let mut z_bytes = k256::FieldBytes::default();
    z_bytes.copy_from_slice(&signature[33..]);
    let Some(z) = Option::<k256::Scalar>::from(k256::Scalar::from_repr(z_bytes)) else {
        return false;
    };
    let mut input = Vec::new();
    input.extend_from_slice(&signature[..33]);
    input.extend_from_slice(group_key);
    input.extend_from_slice(message);
    let mut c = [k256::Scalar::ZERO];
    hash_to_field::<ExpandMsgXmd<sha2::Sha256>, k256::Scalar>(
        &[&input],
        &[b"FROST-secp256k1-SHA256-v1chal"],
        &mut c,
    )
    .unwrap();
    let lhs = k256::ProjectivePoint::GENERATOR * z;
    let rhs = r + pk * c[0];
    lhs.to_bytes() == rhs.to_bytes()
}

/// Every k-subset of 0..n.
pub fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![vec![]];
    }
    if n < k {
        return vec![];
    }
    let mut with_last: Vec<Vec<usize>> = subsets(n - 1, k - 1);
    for s in &mut with_last {
        s.push(n - 1);
    }
    let mut out = subsets(n - 1, k);
    out.extend(with_last);
    out
}
