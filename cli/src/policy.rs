//! `ringi policy check|approve|submit|status`: a policy update under the
//! policy's own admin quorum (`ringi_policy::policy_update`).
//!
//! The proposal is the new policy file itself (with `sequence` one more
//! than the current one's). `check` validates it offline and prints its
//! hash and what kind of change it is; each admin runs `approve`, which
//! signs the update statement and prints it (JSON) for the proposer;
//! `submit` delivers the file and the signatures to every signer and to the
//! coordinator, each of which checks them against the policy it enforces;
//! `status` asks each of them which policy is in force and which is
//! pending.

use std::path::{Path, PathBuf};

use ringi_policy::policy::Policy;
use ringi_policy::policy_update::{
    AdminSignature, Change, PolicyUpdate, check_update, classify, signed_bytes,
};
use ringi_proto::approval::v1::PolicyStatus;
use ringi_proto::coordinator::v1 as cpb;
use ringi_proto::coordinator::v1::policy_service_client::PolicyServiceClient;
use ringi_proto::signer::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::connect::ClientTls;
use crate::signers::{SignerEndpoint, all_answered, ask_each, report, require, texts};

fn load(path: &Path) -> Result<(Vec<u8>, Policy), CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let policy = Policy::from_bytes(&bytes)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    Ok((bytes, policy))
}

fn describe(change: &Change) -> String {
    match change {
        Change::Tightening => "tightening (may take effect at once)".into(),
        Change::Loosening(reason) => format!("loosening: {reason}"),
    }
}

/// Validates `path`; prints its hash and sequence, and against `current`,
/// the kind of change and the earliest time a loosening may take effect.
pub fn check(path: &Path, current: Option<&Path>) -> Result<(), CliError> {
    let (_, policy) = load(path)?;
    println!("{}", hex::encode(policy.hash()));
    eprintln!(
        "ringi: {} is valid: sequence {}, {} key(s)",
        path.display(),
        policy.sequence(),
        policy.keys().count()
    );
    if let Some(current) = current {
        let (_, old) = load(current)?;
        if policy.sequence() != old.sequence() + 1 {
            return Err(CliError::Usage(format!(
                "sequence {} does not follow the current policy's {}",
                policy.sequence(),
                old.sequence()
            )));
        }
        eprintln!(
            "ringi: as an update of {}: {}",
            current.display(),
            describe(&classify(&old, &policy))
        );
        let g = old.governance();
        if g.admins.is_empty() {
            eprintln!(
                "ringi: the current policy names no admins: it cannot be updated by signatures"
            );
        } else {
            eprintln!(
                "ringi: needs {} of the admins {} of the current policy; a loosening waits {} s after its quorum",
                g.admin_quorum,
                g.admins.join(", "),
                g.loosening_delay_secs
            );
        }
    }
    Ok(())
}

/// One admin's signature, as a file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Hex of the new policy's hash (what was signed).
    pub policy_sha256: String,
    pub previous_sha256: String,
    pub effective_at: u64,
    pub admin_public_key: String,
    pub issued_at: u64,
    pub signature: String,
}

impl SignatureFile {
    fn read(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!(
                "{}: not a policy signature file: {e}",
                path.display()
            ))
        })
    }

    fn signature(&self) -> Result<AdminSignature, CliError> {
        let hex = |field: &str, text: &str| {
            hex::decode(text).map_err(|e| CliError::Usage(format!("{field}: {e}")))
        };
        Ok(AdminSignature {
            admin: ringi_policy::approver_key::ApproverKey::from_sec1(&hex(
                "admin_public_key",
                &self.admin_public_key,
            )?)
            .map_err(|e| CliError::Usage(format!("admin_public_key: {e}")))?,
            issued_at: self.issued_at,
            signature: hex("signature", &self.signature)?,
        })
    }
}

/// An admin signs the update from `current` to `new`, effective at
/// `effective_at`; prints the signature file (JSON).
pub fn approve(
    new: &Path,
    current: &Path,
    effective_at: u64,
    admin: ApproverSigner,
) -> Result<(), CliError> {
    let (_, new_policy) = load(new)?;
    let (_, old) = load(current)?;
    let key = admin.public_key();
    match old.approver(&key) {
        Some(a) if old.governance().admins.contains(&a.name) => {
            eprintln!(
                "ringi: signing as admin {} the update of {} to {} (sequence {}): {}",
                a.name,
                hex::encode(old.hash()),
                hex::encode(new_policy.hash()),
                new_policy.sequence(),
                describe(&classify(&old, &new_policy))
            );
        }
        _ => {
            return Err(CliError::Usage(
                "this key is not an admin of the current policy: its signature would not count"
                    .into(),
            ));
        }
    }
    let issued_at = ringi_policy::clock::now();
    let bytes = signed_bytes(
        &old.hash(),
        &new_policy.hash(),
        new_policy.sequence(),
        effective_at,
        issued_at,
        &key,
    );
    let signature = admin
        .sign(&bytes)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    println!(
        "{}",
        crate::json(&SignatureFile {
            policy_sha256: hex::encode(new_policy.hash()),
            previous_sha256: hex::encode(old.hash()),
            effective_at,
            admin_public_key: hex::encode(key.to_sec1()),
            issued_at,
            signature: hex::encode(signature),
        })
    );
    Ok(())
}

/// Builds the update from the files, checks it as a signer would (so a
/// wrong bundle is reported here, not 3 times), and delivers it.
pub async fn submit(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    coordinator: &str,
    new: &Path,
    current: &Path,
    files: &[PathBuf],
) -> Result<(), CliError> {
    require(signers)?;
    let (text, new_policy) = load(new)?;
    let (_, old) = load(current)?;
    let mut effective_at = None;
    let mut signatures = Vec::new();
    for path in files {
        let file = SignatureFile::read(path)?;
        if file.policy_sha256 != hex::encode(new_policy.hash()) {
            return Err(CliError::Usage(format!(
                "{} signs policy {}, not {}",
                path.display(),
                file.policy_sha256,
                hex::encode(new_policy.hash())
            )));
        }
        if *effective_at.get_or_insert(file.effective_at) != file.effective_at {
            return Err(CliError::Usage(format!(
                "{} is signed for another effective time ({})",
                path.display(),
                file.effective_at
            )));
        }
        signatures.push(file.signature()?);
    }
    let update = PolicyUpdate {
        text,
        previous_hash: old.hash(),
        effective_at: effective_at.unwrap_or_default(),
        signatures,
    };
    // A local check first: the message a signer would give, once. The
    // signers check again with their own clocks and pinned policies.
    if let Err(e) = check_update(&old, &update, ringi_policy::clock::now()) {
        eprintln!(
            "ringi: warning: as checked here against {}: {e}",
            current.display()
        );
    }
    let wire = ringi_proto::policy_update::update_to_pb(&update);
    let answers = ask_each(signers, tls, |mut client| {
        let request = pb::UpdatePolicyRequest {
            update: Some(wire.clone()),
        };
        async move { Ok(accepted(&client.update_policy(request).await?.into_inner())) }
    })
    .await;
    println!("{}", hex::encode(new_policy.hash()));
    let signers_report = report(
        &format!("policy update to sequence {}", new_policy.sequence()),
        &texts(answers),
    );
    // The coordinator, so new requests are made under the new policy and
    // the old policy's requests are resolved (a coordinator that refuses
    // is reported, never hidden).
    let at_coordinator = async {
        let channel = crate::connect::connect(coordinator, tls).await?;
        Ok::<_, CliError>(
            PolicyServiceClient::new(channel)
                .update_policy(cpb::UpdatePolicyRequest { update: Some(wire) })
                .await?
                .into_inner(),
        )
    }
    .await;
    match &at_coordinator {
        Ok(s) => eprintln!("ringi: coordinator: {}", accepted(s)),
        Err(e) => eprintln!("ringi: coordinator: NOT recorded: {e}"),
    }
    signers_report?;
    at_coordinator.map(|_| ())
}

/// What a node answered to an update: "accepted sequence N (tightening)",
/// and when it takes effect if it is pending.
fn accepted(s: &PolicyStatus) -> String {
    let verb = if s.already { "already has" } else { "accepted" };
    if s.pending_hash.is_empty() {
        format!(
            "{verb} sequence {} ({})",
            s.sequence,
            crate::view::printable(&s.change)
        )
    } else {
        format!(
            "{verb} sequence {} ({}), pending until {}",
            s.pending_sequence,
            crate::view::printable(&s.change),
            s.pending_effective_at
        )
    }
}

/// A node's policy in force, and its pending update if any.
fn standing(p: &PolicyStatus) -> String {
    let mut line = format!(
        "policy {} sequence {}",
        hex::encode(&p.policy_hash),
        p.sequence
    );
    if !p.pending_hash.is_empty() {
        line.push_str(&format!(
            "; pending {} sequence {} from {}",
            hex::encode(&p.pending_hash),
            p.pending_sequence,
            p.pending_effective_at
        ));
    }
    line
}

/// Each signer's policy in force and pending update.
pub async fn status(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    coordinator: &str,
) -> Result<(), CliError> {
    require(signers)?;
    match async {
        let channel = crate::connect::connect(coordinator, tls).await?;
        Ok::<_, CliError>(
            PolicyServiceClient::new(channel)
                .get_policy(cpb::GetPolicyRequest {})
                .await?
                .into_inner(),
        )
    }
    .await
    {
        Ok(p) => println!("coordinator: {}", standing(&p)),
        Err(e) => eprintln!("ringi: coordinator: {e}"),
    }
    let answers = ask_each(signers, tls, |mut client| async move {
        Ok(client
            .get_policy(pb::GetPolicyRequest {})
            .await?
            .into_inner())
    })
    .await;
    for (name, answer) in &answers {
        if let Ok(p) = answer {
            println!("{name}: {}", standing(p));
        }
    }
    all_answered(&answers)
}
