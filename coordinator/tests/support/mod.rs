//! Test harness: real `ringi-signer` and `ringi` processes, each signer with
//! its own SoftHSM2 token initialised in a temporary directory by
//! `softhsm-setup/init-tokens.sh`, talking real gRPC on loopback.
#![allow(dead_code)]

pub mod in_process;
pub mod pg_server;

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

/// The `ringi` binary (package ringi-cli), beside this test executable:
/// `target/<profile>/ringi`, the test itself being in `target/<profile>/deps/`.
/// `CARGO_BIN_EXE_ringi` exists only for binaries of the test's own package.
pub fn ringi_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the test executable's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile>/");
    }
    let path = dir.join(format!("ringi{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build every binary first (cargo build --workspace --bins, as softhsm-setup/run-tests.sh does)",
        path.display()
    );
    path
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

/// The approvers of the test policy: (name, department).
pub const APPROVERS: [(&str, &str); 5] = [
    ("alice", "treasury"),
    ("bob", "treasury"),
    ("carol", "compliance"),
    ("dave", "compliance"),
    ("erin", "security"),
];

/// Key ids the test policy has rules for. All require treasury 1 and
/// compliance 1, and above 1 000 000 also a second treasurer and security;
/// `short-req` requests live 2 s, `short-appr` approvals 3 s.
pub const POLICY_KEYS: [&str; 8] = [
    "hot-1",
    "cold-1",
    "busy",
    "k",
    "hot",
    "tiered",
    "short-req",
    "short-appr",
];

/// Writes approver key files and the policy into `dir`; returns the policy
/// path. `token_approver`'s key is generated in a SoftHSM token instead (by
/// softhsm-setup/approver-token.sh) and read back through `ringi approver-key show`.
pub fn write_policy(dir: &Path, token_approver: Option<&str>) -> PathBuf {
    let mut text = String::from("version = 1\n");
    for dept in ["treasury", "compliance", "security"] {
        text.push_str(&format!(
            "\n[[departments]]\nname = \"{dept}\"\napprovers = [\n"
        ));
        for (name, _) in APPROVERS.iter().filter(|(_, d)| *d == dept) {
            let public = if token_approver == Some(*name) {
                approver_token_public_key(dir, name)
            } else {
                ringi_cli::approver::generate_key_file(&dir.join(format!("{name}.pem")))
                    .unwrap()
                    .to_text()
            };
            text.push_str(&format!("  {{ name = \"{name}\", key = \"{public}\" }},\n"));
        }
        text.push_str("]\n");
    }
    for key in POLICY_KEYS {
        let request_ttl = if key == "short-req" { 2 } else { 3600 };
        let approval_ttl = if key == "short-appr" { 3 } else { 600 };
        text.push_str(&format!(
            "\n[keys.{key}]\nrequest_ttl_secs = {request_ttl}\napproval_ttl_secs = {approval_ttl}\nrequire = {{ treasury = 1, compliance = 1 }}\ntiers = [{{ above = 1000000, require = {{ treasury = 2, compliance = 1, security = 1 }} }}]\n"
        ));
    }
    // Caps: at most 2000 a request, 2500 in any 8 s (long enough for a slow CI machine to sign twice inside it).
    text.push_str(
        "\n[keys.capped]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = { treasury = 1, compliance = 1 }\n\
         [keys.capped.limits]\nmax_amount_per_request = 2000\nwindow_secs = 8\nmax_amount_per_window = 2500\nmax_requests_per_window = 10\n",
    );
    // A window cap of 10% of an operator-updated daily volume.
    text.push_str(
        "\n[keys.volume-capped]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = { treasury = 1, compliance = 1 }\n\
         [keys.volume-capped.limits]\nwindow_secs = 3600\nmax_window_percent_of_daily_volume = 10.0\n",
    );
    std::fs::write(dir.join("volumes.toml"), "volume-capped = 20000\n").unwrap();
    // Allowlists: `listed` lets other destinations through with security's
    // approval too; `listed-strict` refuses them.
    for (key, extra) in [
        ("listed", "unlisted_require = { security = 1 }\n"),
        ("listed-strict", ""),
    ] {
        text.push_str(&format!(
            "\n[keys.{key}]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = {{ treasury = 1, compliance = 1 }}\n\
             [keys.{key}.destinations]\nallowed = [\"bc1qlisted\"]\n{extra}"
        ));
    }
    // bitcoin-taproot keys on regtest: `tr` pays only the two listed
    // addresses, at most 100000 sat a request, with fees of at most
    // 20000 sat and 100 sat/vB; `tr-blind` also signs raw messages, under
    // security's quorum alone.
    text.push_str(&format!(
        "\n[keys.tr]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = {{ treasury = 1, compliance = 1 }}\n\
         network = \"regtest\"\nfees = {{ max_sats = 20000, max_sat_per_vbyte = 100 }}\n\
         [keys.tr.limits]\nmax_amount_per_request = 100000\n\
         [keys.tr.destinations]\nallowed = [\"{}\", \"{}\"]\n",
        listed_address(1),
        listed_address(2)
    ));
    text.push_str(
        "\n[keys.tr-blind]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = { treasury = 1, compliance = 1 }\n\
         network = \"regtest\"\nblind_signing = { require = { security = 1 } }\n",
    );
    // Time rules: `timed` signs 3 s after full approval (30 s above
    // 1 000 000); `closed` signs only in one hour a day that starts six
    // hours from now (UTC), so never during a test (and its requests live
    // a day, so they can wait for it).
    text.push_str(
        "\n[keys.timed]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = { treasury = 1, compliance = 1 }\n\
         [keys.timed.time]\ndelay_secs = 3\ndelays = [{ above = 1000000, delay_secs = 30 }]\n",
    );
    let opens = (ringi::requests::now() / 3600 + 6) % 24;
    text.push_str(&format!(
        "\n[keys.closed]\nrequest_ttl_secs = 86400\napproval_ttl_secs = 600\nrequire = {{ treasury = 1, compliance = 1 }}\n\
         [keys.closed.time]\nsigning_hours = {{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"], from = \"{opens:02}:00\", to = \"{opens:02}:59\", utc_offset = \"+00:00\" }}\n"
    ));
    // `signed` takes only requests signed by their requester: the
    // wallet-service's own P-256 key (wallet-service.pem here).
    let requester = ringi_cli::approver::generate_key_file(&dir.join("wallet-service.pem"))
        .unwrap()
        .to_text();
    text.push_str(&format!(
        "\n[keys.signed]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = {{ treasury = 1, compliance = 1 }}\nsigned_requests = true\n\
         \n[[requesters]]\nname = \"wallet-service\"\nkey = \"{requester}\"\n"
    ));
    // `guarded`: a refresh needs the admins' order.
    text.push_str(
        "\n[keys.guarded]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = { treasury = 1, compliance = 1 }\nrefresh_needs_order = true\n",
    );
    // erin (security) may freeze alone; a treasurer and a compliance
    // officer together lift a freeze.
    text.push_str(
        "\n[governance]\nfreeze_officers = [\"erin\"]\nunfreeze = { treasury = 1, compliance = 1 }\n\
         admins = [\"alice\", \"carol\", \"erin\"]\nadmin_quorum = 2\nloosening_delay_secs = 3600\n",
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The script of a regtest P2WPKH address made of `n` (`tr`'s allowlist
/// holds those of 1 and 2).
pub fn listed_script(n: u8) -> ringi_psbt::bitcoin::ScriptBuf {
    use ringi_psbt::bitcoin::hashes::Hash;
    ringi_psbt::bitcoin::ScriptBuf::new_p2wpkh(&ringi_psbt::bitcoin::WPubkeyHash::from_byte_array(
        [n; 20],
    ))
}

/// The regtest address of [`listed_script`]`(n)`.
pub fn listed_address(n: u8) -> String {
    ringi_psbt::bitcoin::Address::from_script(
        &listed_script(n),
        ringi_psbt::bitcoin::Network::Regtest,
    )
    .unwrap()
    .to_string()
}

/// Creates `name`'s approver token under `dir` and returns its public key.
fn approver_token_public_key(dir: &Path, name: &str) -> String {
    let out = Command::new(repo_root().join("softhsm-setup/approver-token.sh"))
        .arg(dir)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "approver-token.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = node_env(&dir.join(format!("approver-{name}")));
    let out = Command::new(ringi_bin())
        .envs(env)
        .args([
            "approver-key",
            "show",
            "--token",
            &format!("approver-{name}"),
            "--key-label",
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "approver-key show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `ringi dev-certs` into `out`: a new CA, the coordinator's identity, the
/// [`TLS_CLIENTS`], and each signer's certificate from a CSR its token signs
/// (kept as `csr_file` in the signer's directory).
pub fn dev_certs_from_tokens(signers: &[SignerNode], out: &Path, csr_file: &str) {
    dev_certs_with_csrs(signers, out, csr_file, None);
}

/// [`dev_certs_from_tokens`], with the coordinator's certificate issued
/// from `coordinator_csr` (its token-held TLS key; no `coordinator.key`).
pub fn dev_certs_with_csrs(
    signers: &[SignerNode],
    out: &Path,
    csr_file: &str,
    coordinator_csr: Option<&Path>,
) {
    let mut cmd = Command::new(ringi_bin());
    cmd.args([
        "dev-certs",
        "--out",
        out.to_str().unwrap(),
        "--clients",
        TLS_CLIENTS,
    ]);
    for node in signers {
        let made = node
            .command()
            .args(["tls-csr", "--name", &node.name])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "tls-csr: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let csr = node.dir.join(csr_file);
        std::fs::write(&csr, &made.stdout).unwrap();
        cmd.arg("--signer-csr").arg(&csr);
    }
    if let Some(csr) = coordinator_csr {
        cmd.arg("--coordinator-csr").arg(csr);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "dev-certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Client identities `ringi dev-certs` makes for a TLS cluster.
pub const TLS_CLIENTS: &str =
    "operator,wallet-service,limited-wallet,cold-wallet,approver-desk,no-role,stranger";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub policy_path: PathBuf,
    /// Under mutual TLS: the directory of certificates (ca.pem, <name>.pem/.key).
    pub certs: Option<PathBuf>,
    pub signers: Vec<SignerNode>,
    pub coordinator: Option<Child>,
    pub coordinator_address: String,
    /// The coordinator's own SoftHSM token ([`Cluster::start_tls_token_coordinator`]):
    /// its `[pkcs11]` table and the environment that finds the token.
    pub coordinator_token: Option<(String, Vec<(String, String)>)>,
    /// Written into the coordinator's config before its tables (top-level
    /// settings, and tables such as `[store]`); empty by default.
    pub coordinator_extra: String,
}

impl Cluster {
    /// `n` signers (started) and a coordinator (started) knowing all of them.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, None)
    }

    /// Like [`Cluster::start`], with `token_approver`'s key in a SoftHSM token.
    pub fn start_with(n: usize, token_approver: Option<&str>) -> Cluster {
        Self::start_full(n, token_approver, false, false, &[])
    }

    /// Like [`Cluster::start`], with mutual TLS on every hop: each signer's
    /// certificate is issued from a CSR made in its token; the CLI calls as
    /// `operator` (admin, wallet and approver roles).
    pub fn start_tls(n: usize) -> Cluster {
        Self::start_full(n, None, true, false, &[])
    }

    /// Like [`Cluster::start_tls`], with the coordinator's TLS key and
    /// audit key in its own SoftHSM token (`[pkcs11]`; its certificate
    /// issued from a CSR the token signs) instead of files.
    pub fn start_tls_token_coordinator(n: usize) -> Cluster {
        Self::start_full(n, None, true, true, &[])
    }

    /// Like [`Cluster::start_tls`], with the signers numbered in
    /// `kryoptic` (1-based) on kryoptic tokens (the second PKCS#11 module,
    /// softhsm-setup/kryoptic-token.sh; fails, naming
    /// softhsm-setup/build-kryoptic.sh, when it is not built), the others
    /// on SoftHSM2.
    pub fn start_tls_with_kryoptic(n: usize, kryoptic: &[usize]) -> Cluster {
        Self::start_full(n, None, true, false, kryoptic)
    }

    fn start_full(
        n: usize,
        token_approver: Option<&str>,
        tls: bool,
        coordinator_token: bool,
        kryoptic: &[usize],
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let tokens = n + usize::from(coordinator_token);
        let status = Command::new(repo_root().join("softhsm-setup/init-tokens.sh"))
            .arg(dir.path())
            .arg(tokens.to_string())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "init-tokens.sh failed");
        let policy_path = write_policy(dir.path(), token_approver);
        let mut signers = Vec::new();
        for i in 1..=n {
            let node_dir = dir.path().join(format!("signer-{i}"));
            if kryoptic.contains(&i) {
                let out = Command::new(repo_root().join("softhsm-setup/kryoptic-token.sh"))
                    .arg(&node_dir)
                    .arg(format!("signer-{i}"))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "kryoptic-token.sh: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let mut env = node_env(&node_dir);
            env.push((
                "RINGI_POLICY_FILE".into(),
                policy_path.display().to_string(),
            ));
            env.push((
                "RINGI_DAILY_VOLUME_FILE".into(),
                dir.path().join("volumes.toml").display().to_string(),
            ));
            // Each cluster is its own host: the signers' per-host token
            // locks (named by module and token label, in the temporary
            // directory) must not collide with another test's cluster,
            // whose SoftHSM tokens carry the same labels.
            let tmp = dir.path().join("tmp");
            std::fs::create_dir_all(&tmp).unwrap();
            env.push(("TMPDIR".into(), tmp.display().to_string()));
            let node = SignerNode {
                name: format!("signer-{i}"),
                env,
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
        // The last token is the coordinator's: its keys made by `ringi token
        // init`, a CSR for its TLS key by `ringi token tls-csr`.
        let coordinator_token = coordinator_token.then(|| {
            let token_dir = dir.path().join(format!("signer-{tokens}"));
            let env = node_env(&token_dir);
            let var = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
            let table = format!(
                "\n[pkcs11]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\n",
                var("RINGI_PKCS11_MODULE"),
                var("RINGI_TOKEN_LABEL"),
                var("RINGI_PKCS11_PIN_FILE")
            );
            let config = token_dir.join("coordinator-token.toml");
            std::fs::write(&config, &table).unwrap();
            let softhsm = vec![("SOFTHSM2_CONF".to_string(), var("SOFTHSM2_CONF"))];
            for args in [
                vec!["token", "init"],
                vec!["token", "tls-csr", "--name", "coordinator"],
            ] {
                let out = Command::new(ringi_bin())
                    .args(&args)
                    .arg("--config")
                    .arg(&config)
                    .envs(softhsm.iter().cloned())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "ringi {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if args[1] == "tls-csr" {
                    std::fs::write(token_dir.join("coordinator.csr"), &out.stdout).unwrap();
                }
            }
            (table, softhsm, token_dir.join("coordinator.csr"))
        });
        let certs = tls.then(|| {
            let certs = dir.path().join("certs");
            let csr = coordinator_token.as_ref().map(|t| t.2.as_path());
            dev_certs_with_csrs(&signers, &certs, "tls.csr", csr);
            for node in &mut signers {
                node.env.push((
                    "RINGI_TLS_CERT".into(),
                    certs
                        .join(format!("{}.pem", node.name))
                        .display()
                        .to_string(),
                ));
                node.env.push((
                    "RINGI_TLS_CA".into(),
                    certs.join("ca.pem").display().to_string(),
                ));
            }
            certs
        });
        for node in &mut signers {
            node.start();
        }
        let mut cluster = Cluster {
            dir,
            policy_path,
            certs,
            signers,
            coordinator: None,
            coordinator_address: String::new(),
            coordinator_token: coordinator_token.map(|(table, env, _)| (table, env)),
            coordinator_extra: String::new(),
        };
        cluster.write_coordinator_config();
        cluster.start_coordinator();
        cluster
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("coordinator.toml")
    }

    /// (Re)writes the coordinator's config for every signer, e.g. after
    /// `coordinator_extra` changed; takes effect when it (re)starts.
    pub fn write_coordinator_config(&self) {
        let entries: Vec<(usize, u16)> =
            (0..self.signers.len()).map(|i| (i, i as u16 + 1)).collect();
        self.write_coordinator_config_with(&entries);
    }

    /// Rewrites the coordinator's config with only the signers `entries`
    /// names (signer index, FROST identifier): a replaced node's entry
    /// dropped, its replacement registered under its identifier. Takes
    /// effect when the coordinator (re)starts.
    pub fn write_coordinator_config_with(&self, entries: &[(usize, u16)]) {
        let mut toml = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\npolicy_file = \"{}\"\ndaily_volume_file = \"{}\"\n",
            self.dir.path().join("coordinator").display(),
            self.policy_path.display(),
            self.dir.path().join("volumes.toml").display()
        );
        toml.push_str(&self.coordinator_extra);
        if let Some(certs) = &self.certs {
            // With its own token, the coordinator's TLS key is the token's.
            let key = if self.coordinator_token.is_some() {
                String::new()
            } else {
                format!("key = \"{}/coordinator.key\"\n", certs.display())
            };
            toml.push_str(&format!(
                "\n[tls]\ncert = \"{0}/coordinator.pem\"\n{key}ca = \"{0}/ca.pem\"\n",
                certs.display()
            ));
            for (name, roles, keys) in [
                ("operator", "\"admin\", \"wallet\", \"approver\"", "\"*\""),
                ("wallet-service", "\"wallet\"", "\"*\""),
                ("limited-wallet", "\"wallet\"", "\"hot-1\""),
                ("cold-wallet", "\"wallet\"", "\"cold-1\""),
                ("approver-desk", "\"approver\"", ""),
                ("no-role", "", "\"*\""),
            ] {
                toml.push_str(&format!(
                    "\n[[clients]]\nname = \"{name}\"\nroles = [{roles}]\nkey_ids = [{keys}]\n"
                ));
            }
        }
        for (i, identifier) in entries {
            let s = &self.signers[*i];
            toml.push_str(&format!(
                "\n[[signers]]\nname = \"{}\"\naddress = \"{}\"\nidentifier = {}\n",
                s.name, s.address, identifier
            ));
        }
        if let Some((table, _)) = &self.coordinator_token {
            toml.push_str(table);
        }
        std::fs::write(self.config_path(), toml).unwrap();
    }

    /// `NAME=ADDRESS` of every signer, for `--signer` (the CLI's direct
    /// line to the signers' governance API).
    pub fn signer_list(&self) -> String {
        self.signers
            .iter()
            .map(|s| format!("{}={}", s.name, s.address))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn start_coordinator(&mut self) {
        self.start_coordinator_with_env(&[]);
    }

    /// Starts the coordinator with extra environment (e.g. a fault to
    /// inject, `RINGI_TEST_FAULT`).
    pub fn start_coordinator_with_env(&mut self, env: &[(&str, &str)]) {
        let mut cmd = Command::new(ringi_bin());
        cmd.args(["serve", "--config"]).arg(self.config_path());
        if let Some((_, token_env)) = &self.coordinator_token {
            cmd.envs(token_env.iter().cloned());
        }
        cmd.envs(env.iter().copied());
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
        self.ringi_as("operator", args)
    }

    /// Runs the CLI with `identity`'s client certificate (under TLS).
    pub fn ringi_as(&self, identity: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(ringi_bin());
        cmd.env("RINGI_COORDINATOR", &self.coordinator_address);
        if let Some(certs) = &self.certs {
            cmd.env(
                "RINGI_TLS_CLIENT_CERT",
                certs.join(format!("{identity}.pem")),
            )
            .env(
                "RINGI_TLS_CLIENT_KEY",
                certs.join(format!("{identity}.key")),
            )
            .env("RINGI_TLS_CA", certs.join("ca.pem"));
        }
        cmd.args(args).output().unwrap()
    }

    /// A gRPC channel to the coordinator as `identity` (its client
    /// certificate under TLS; plaintext otherwise).
    pub async fn channel_as(&self, identity: &str) -> tonic::transport::Channel {
        self.channel_to(&self.coordinator_address, identity).await
    }

    /// A gRPC channel to the coordinator at `address` (one of several on a
    /// shared store) as `identity`.
    pub async fn channel_to(&self, address: &str, identity: &str) -> tonic::transport::Channel {
        let tls = self
            .certs
            .as_ref()
            .map(|certs| ringi_cli::connect::ClientTls {
                cert: certs.join(format!("{identity}.pem")),
                key: certs.join(format!("{identity}.key")),
                ca: certs.join("ca.pem"),
                server_name: "coordinator".into(),
            });
        ringi_cli::connect::connect(address, tls.as_ref())
            .await
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
        self.keygen_kind(key_id, "frost-secp256k1", threshold, signers)
    }

    /// A DKG for a key of `kind`; its group key.
    pub fn keygen_kind(
        &self,
        key_id: &str,
        kind: &str,
        threshold: usize,
        signers: &[&str],
    ) -> Vec<u8> {
        let t = threshold.to_string();
        let names = signers.join(",");
        hex::decode(self.ringi_ok(&[
            "keygen",
            "--key-id",
            key_id,
            "--kind",
            kind,
            "--threshold",
            &t,
            "--signers",
            &names,
        ]))
        .unwrap()
    }

    /// Submits a request (amount 1000 unless given) and returns its id.
    pub fn submit(
        &self,
        key_id: &str,
        message: &[u8],
        amount: u128,
        requester: &str,
        signers: &[&str],
    ) -> String {
        let out = self.submission(key_id, message, amount, requester, signers);
        assert!(
            out.status.success(),
            "submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A raw submission for `key_id` by the wallet service through the CLI
    /// (1000 BTC units to bc1qdestination; `signers` if any), whatever
    /// its outcome.
    pub fn try_submit(&self, key_id: &str, signers: &[&str]) -> Output {
        self.submission(key_id, &[0xab, 0xcd], 1000, "wallet-service", signers)
    }

    /// `ringi requests submit` of `message` (`amount` BTC units to
    /// bc1qdestination) by `requester` (under TLS: its certificate).
    fn submission(
        &self,
        key_id: &str,
        message: &[u8],
        amount: u128,
        requester: &str,
        signers: &[&str],
    ) -> Output {
        let msg = hex::encode(message);
        let amount = amount.to_string();
        let names = signers.join(",");
        let mut args = vec![
            "requests",
            "submit",
            "--key-id",
            key_id,
            "--message-hex",
            &msg,
            "--asset",
            "BTC",
            "--amount",
            &amount,
            "--destination",
            "bc1qdestination",
            "--memo",
            "test",
        ];
        if !signers.is_empty() {
            args.extend(["--signers", &names]);
        }
        if self.certs.is_some() {
            // Under TLS the requester is the caller's certificate.
            return self.ringi_as(requester, &args);
        }
        args.extend(["--requester", requester]);
        self.ringi(&args)
    }

    pub fn key_file(&self, approver: &str) -> String {
        self.dir
            .path()
            .join(format!("{approver}.pem"))
            .display()
            .to_string()
    }

    /// `ringi approve --yes` with the approver's key file (a test is a
    /// script: it confirms with the flag, not on a terminal).
    pub fn approve(&self, id: &str, approver: &str, department: &str) -> Output {
        let key = self.key_file(approver);
        self.ringi(&[
            "approve",
            id,
            "--department",
            department,
            "--key-file",
            &key,
            "--yes",
        ])
    }

    /// Waits for a terminal state; the signature if SIGNED.
    pub fn wait(&self, id: &str) -> Output {
        self.ringi(&["requests", "wait", id, "--timeout-secs", "30"])
    }

    /// Waits for request `id` to be SIGNED (failing the test otherwise)
    /// and returns its signature.
    pub fn wait_signed(&self, id: &str) -> Vec<u8> {
        let out = self.wait(id);
        assert!(
            out.status.success(),
            "wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
    }

    /// Submits, has treasury (alice) and compliance (carol) approve, waits,
    /// and returns the signature.
    pub fn sign(&self, key_id: &str, message: &[u8], signers: &[&str]) -> Vec<u8> {
        let id = self.submit(key_id, message, 1000, "wallet-service", signers);
        for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
            let out = self.approve(&id, who, dept);
            assert!(
                out.status.success(),
                "approve: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = self.wait(&id);
        assert!(
            out.status.success(),
            "wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
    }

    /// The signing request and approvals a coordinator would send to the
    /// signers, built in the test with the approvers' key files.
    pub fn bundle(
        &self,
        key_id: &str,
        message: &[u8],
        approvers: &[(&str, &str)],
    ) -> (
        ringi_policy::request::SigningRequest,
        ringi_proto::approval::v1::ApprovalBundle,
    ) {
        let policy =
            ringi_policy::policy::Policy::from_bytes(&std::fs::read(&self.policy_path).unwrap())
                .unwrap();
        let now = ringi::requests::now();
        let request = ringi_policy::request::SigningRequest {
            key_id: key_id.parse().expect("a valid key id"),
            message: message.to_vec(),
            metadata: ringi_policy::request::Metadata {
                asset: "BTC".into(),
                amount: 1000,
                destination: "bc1q".into(),
                memo: String::new(),
            },
            psbt: None,
            requester: "wallet-service".into(),
            created_at: now,
            expires_at: now + 600,
            policy_hash: policy.hash(),
            // Fixed, as a coordinator would draw one: the signers compute
            // v2 ids.
            nonce: vec![0x42; ringi_policy::request::NONCE_LEN],
        };
        let approvals = approvers
            .iter()
            .map(|(who, dept)| {
                self.approval(
                    &request,
                    who,
                    dept,
                    ringi_policy::statement::Decision::Approve,
                )
            })
            .collect();
        let bundle = ringi_proto::approval::v1::ApprovalBundle {
            request: Some(ringi_proto::bundle::request_to_pb(&request)),
            approvals,
        };
        (request, bundle)
    }

    /// One signed approval statement by `who`'s key file.
    pub fn approval(
        &self,
        request: &ringi_policy::request::SigningRequest,
        who: &str,
        department: &str,
        decision: ringi_policy::statement::Decision,
    ) -> ringi_proto::approval::v1::Approval {
        let signer =
            ringi_cli::approver::ApproverSigner::from_file(Path::new(&self.key_file(who))).unwrap();
        let now = ringi::requests::now();
        let statement = ringi_policy::statement::Statement::for_request(
            request,
            department,
            decision,
            "",
            now,
            now + 300,
        );
        let approver = signer.public_key();
        let signature = signer.sign(&statement.signed_bytes(&approver)).unwrap();
        ringi_proto::bundle::approval_to_pb(&ringi_policy::statement::Approval {
            statement,
            approver,
            signature,
        })
    }

    /// `order` signed by each of `admins` (their approver key files), as
    /// the wire carries it.
    pub fn key_order(
        &self,
        order: &ringi_policy::key_order::KeyOrder,
        admins: &[&str],
    ) -> ringi_proto::approval::v1::KeyOrder {
        let now = ringi::requests::now();
        let signatures = admins
            .iter()
            .map(|who| {
                let signer =
                    ringi_cli::approver::ApproverSigner::from_file(Path::new(&self.key_file(who)))
                        .unwrap();
                let admin = signer.public_key();
                let signature = signer.sign(&order.signed_bytes(now, &admin)).unwrap();
                ringi_policy::policy_update::AdminSignature {
                    admin,
                    issued_at: now,
                    signature,
                }
            })
            .collect();
        ringi_proto::key_order::order_to_pb(&ringi_policy::key_order::SignedOrder {
            order: order.clone(),
            signatures,
        })
    }

    /// The labels of the sealed-share objects on signer `i`'s token, read
    /// with pkcs11-tool (an independent PKCS#11 client) while the signer
    /// runs; sorted.
    pub fn share_labels(&self, i: usize) -> Vec<String> {
        let node = &self.signers[i];
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", node.dir.join("softhsm2.conf"))
            .args([
                "--module",
                &node.module(),
                "--token-label",
                &node.name,
                "--login",
                "--pin",
                &node.pin(),
                "--list-objects",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let mut labels: Vec<String> = pkcs11_objects(&listing)
            .iter()
            .filter_map(|b| {
                b.lines()
                    .find(|l| l.trim_start().starts_with("label:"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, label)| label.trim().trim_matches('\'').to_string())
            })
            .filter(|l| l.starts_with("ringi-share:"))
            .collect();
        labels.sort();
        labels
    }

    /// The key as the coordinator records it (GetPublicKey, as operator).
    pub async fn coordinator_key(&self, key_id: &str) -> ringi_proto::coordinator::v1::PublicKey {
        use ringi_proto::coordinator::v1 as cpb;
        let channel = self.channel_as("operator").await;
        cpb::key_service_client::KeyServiceClient::new(channel)
            .get_public_key(cpb::GetPublicKeyRequest {
                key_id: key_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .key
            .unwrap()
    }

    /// A repair order made with the CLI, as an operator makes it (`ringi
    /// keys order repair KEY_ID --identifier ID --recipient-key HEX --helper
    /// ID=HEX ...`, the keys in their wire form), written to `file` in the
    /// cluster's directory and signed by each of `admins`: its path.
    pub fn repair_order_file(
        &self,
        file: &str,
        key_id: &str,
        identifier: u16,
        recipient: &[u8],
        helpers: &[(u16, Vec<u8>)],
        admins: &[&str],
    ) -> PathBuf {
        let identifier = identifier.to_string();
        let recipient = hex::encode(recipient);
        let helpers: Vec<String> = helpers
            .iter()
            .map(|(id, key)| format!("{id}={}", hex::encode(key)))
            .collect();
        let mut args = vec![
            "keys",
            "order",
            "repair",
            key_id,
            "--identifier",
            &identifier,
            "--recipient-key",
            &recipient,
        ];
        for helper in &helpers {
            args.extend(["--helper", helper.as_str()]);
        }
        let path = self.dir.path().join(file);
        std::fs::write(&path, self.ringi_ok(&args)).unwrap();
        for admin in admins {
            self.sign_order(&path, admin);
        }
        path
    }

    /// `who` adds an admin signature to the key order file at `path`
    /// (`ringi keys order sign`).
    pub fn sign_order(&self, path: &Path, who: &str) {
        let key = self.key_file(who);
        self.ringi_ok(&[
            "keys",
            "order",
            "sign",
            path.to_str().unwrap(),
            "--key-file",
            &key,
        ]);
    }

    /// Signer `i`'s GetNodeInfo answer.
    pub async fn node_info(&self, i: usize) -> ringi_proto::signer::v1::GetNodeInfoResponse {
        self.signer_client(i)
            .await
            .get_node_info(ringi_proto::signer::v1::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Every signer as a DKG participant (identifiers 1..=n), with its
    /// transport key and attestation relayed as the coordinator does.
    pub async fn dkg_participants(&self) -> Vec<ringi_proto::signer::v1::DkgParticipant> {
        let mut participants = Vec::new();
        for i in 0..self.signers.len() {
            let info = self.node_info(i).await;
            participants.push(ringi_proto::signer::v1::DkgParticipant {
                identifier: i as u32 + 1,
                dkg_public_key: info.dkg_public_key,
                dkg_key_certificate: info.dkg_key_certificate,
                dkg_key_signature: info.dkg_key_signature,
            });
        }
        participants
    }

    /// A client of signer `i` as the coordinator would dial it: under
    /// mutual TLS with the coordinator's certificate, else plaintext.
    /// A `RequestService` client to the coordinator (plaintext cluster).
    pub async fn request_client(
        &self,
    ) -> ringi_proto::coordinator::v1::request_service_client::RequestServiceClient<
        tonic::transport::Channel,
    > {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.coordinator_address))
                .unwrap()
                .connect()
                .await
                .unwrap();
        ringi_proto::coordinator::v1::request_service_client::RequestServiceClient::new(channel)
    }

    pub async fn signer_client(
        &self,
        i: usize,
    ) -> ringi_proto::signer::v1::signer_client::SignerClient<tonic::transport::Channel> {
        let node = &self.signers[i];
        let Some(certs) = &self.certs else {
            return ringi_proto::signer::v1::signer_client::SignerClient::connect(format!(
                "http://{}",
                node.address
            ))
            .await
            .unwrap();
        };
        use ringi_net::tls;
        let config = tls::client_config(
            tls::load_certs(&certs.join("coordinator.pem")).unwrap(),
            tls::load_key(&certs.join("coordinator.key")).unwrap(),
            &tls::load_certs(&certs.join("ca.pem")).unwrap(),
        )
        .unwrap();
        let channel = tls::connect(&node.address, &node.name, std::sync::Arc::new(config))
            .await
            .unwrap();
        ringi_proto::signer::v1::signer_client::SignerClient::new(channel)
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

/// `pkcs11-tool --list-objects` output split into one block per object
/// (blocks start at unindented header lines; their order varies).
pub fn pkcs11_objects(listing: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

/// The block of the object whose header starts with `kind` and whose label
/// is `label`.
pub fn pkcs11_object(listing: &str, kind: &str, label: &str) -> String {
    pkcs11_objects(listing)
        .into_iter()
        .find(|b| {
            b.starts_with(kind)
                && b.lines()
                    .any(|l| l.trim_start().starts_with("label:") && l.contains(label))
        })
        .unwrap_or_else(|| panic!("no {kind} labelled {label} in:\n{listing}"))
}

/// A raw-message submission for `key_id` by the wallet service: 1000
/// (smallest unit) of BTC to `bc1q`.
pub fn raw_submission(
    key_id: &str,
    message: &[u8],
    idempotency_key: &str,
) -> ringi_proto::coordinator::v1::SubmitSigningRequestRequest {
    ringi_proto::coordinator::v1::SubmitSigningRequestRequest {
        key_id: key_id.into(),
        message: message.to_vec(),
        asset: "BTC".into(),
        amount: "1000".into(),
        destination: "bc1q".into(),
        memo: String::new(),
        requester: "wallet-service".into(),
        signers: vec![],
        idempotency_key: idempotency_key.into(),
        psbt: Vec::new(),
    }
}
