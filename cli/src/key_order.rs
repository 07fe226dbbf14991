//! `ringi keys order retire|repair|sign|show` and `ringi keys retire`: key
//! orders (`ringi_policy::key_order`) as files the admins pass around.
//!
//! An order is made unsigned (`order retire`, `order repair`: JSON on
//! stdout, to a file), each admin of the quorum adds a signature to the
//! file in place (`order sign`, with the key file or token), anyone reads
//! it (`order show`), and an operator delivers it (`keys retire`) to every
//! signer directly and to the coordinator, each of which checks it against
//! the policy it enforces.
//!
//! The file:
//!
//! ```json
//! {
//!   "key_id": "hot-1",
//!   "action": "retire",
//!   "destroy_after": 1800000600,
//!   "identifier": 0,
//!   "recipient": "",
//!   "expires_at": 1800003600,
//!   "signatures": [
//!     { "admin_public_key": "03...", "issued_at": 1800000000, "signature": "..." }
//!   ]
//! }
//! ```
//!
//! Times are seconds since the Unix epoch; keys and signatures hex.
//! `destroy_after` is a retirement's (0 for a repair), `identifier` and
//! `recipient` a repair's (0 and "" for a retirement).

use std::io::Write;
use std::path::Path;

use ringi_policy::key_id::KeyId;
use ringi_policy::key_order::{
    Action, KeyOrder, ORDER_MAX_VALIDITY_SECS, SignedOrder, check_order,
};
use ringi_policy::policy::Policy;
use ringi_policy::policy_update::AdminSignature;
use ringi_policy::transport_key::TransportCurve;
use ringi_proto::approval::v1 as apb;
use ringi_proto::coordinator::v1 as cpb;
use ringi_proto::coordinator::v1::key_service_client::KeyServiceClient;
use ringi_proto::signer::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::CliError;
use crate::approver::ApproverSigner;
use crate::connect::ClientTls;
use crate::signers::{SignerEndpoint, ask_each, report, require, texts};

/// How long an order stays valid unless told otherwise.
pub const DEFAULT_VALID_SECS: u64 = 3600;

/// One admin's signature in an order file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// SEC1, hex.
    pub admin_public_key: String,
    pub issued_at: u64,
    /// 64 bytes r || s, hex.
    pub signature: String,
}

/// A helper a repair order file names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperEntry {
    pub identifier: u32,
    /// Its DKG transport key, SEC1 compressed, hex.
    pub transport_key: String,
}

/// An order file (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFile {
    pub key_id: String,
    /// "retire", "repair" or "refresh".
    pub action: String,
    #[serde(default)]
    pub destroy_after: u64,
    #[serde(default)]
    pub identifier: u32,
    /// Hex; empty for a retirement.
    #[serde(default)]
    pub recipient: String,
    pub expires_at: u64,
    #[serde(default)]
    pub signatures: Vec<SignatureEntry>,
    /// A repair's helpers; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<HelperEntry>,
}

fn bad(what: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("not a valid key order: {what}"))
}

impl OrderFile {
    /// The file of `signed`.
    pub fn from_signed(signed: &SignedOrder) -> Self {
        let wire = ringi_proto::key_order::order_to_pb(signed);
        OrderFile {
            key_id: wire.key_id,
            action: wire.action,
            destroy_after: wire.destroy_after,
            identifier: wire.identifier,
            recipient: hex::encode(wire.recipient),
            expires_at: wire.expires_at,
            signatures: wire
                .signatures
                .iter()
                .map(|s| SignatureEntry {
                    admin_public_key: hex::encode(&s.admin_public_key),
                    issued_at: s.issued_at,
                    signature: hex::encode(&s.signature),
                })
                .collect(),
            helpers: wire
                .helpers
                .iter()
                .map(|h| HelperEntry {
                    identifier: h.identifier,
                    transport_key: hex::encode(&h.transport_key),
                })
                .collect(),
        }
    }

    /// The order as the wire carries it; a field of the other action than
    /// the order's is refused (the admins' signatures would not cover it).
    pub fn to_pb(&self) -> Result<apb::KeyOrder, CliError> {
        let hex_field = |field: &str, text: &str| {
            hex::decode(text).map_err(|e| bad(format_args!("{field}: {e}")))
        };
        match self.action.as_str() {
            "retire"
                if self.identifier != 0
                    || !self.recipient.is_empty()
                    || !self.helpers.is_empty() =>
            {
                return Err(bad(
                    "a retirement names no identifier, recipient or helpers (they belong to a repair)",
                ));
            }
            "repair" if self.destroy_after != 0 => {
                return Err(bad(
                    "a repair has no destroy_after (it belongs to a retirement)",
                ));
            }
            "refresh"
                if self.destroy_after != 0
                    || self.identifier != 0
                    || !self.recipient.is_empty() =>
            {
                return Err(bad(
                    "a refresh names no destroy_after, identifier or recipient",
                ));
            }
            _ => {}
        }
        let signatures = self
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(apb::AdminSignature {
                    admin_public_key: hex_field(
                        &format!("signature #{i}: admin_public_key"),
                        &s.admin_public_key,
                    )?,
                    issued_at: s.issued_at,
                    signature: hex_field(&format!("signature #{i}: signature"), &s.signature)?,
                })
            })
            .collect::<Result<_, CliError>>()?;
        Ok(apb::KeyOrder {
            key_id: self.key_id.clone(),
            action: self.action.clone(),
            destroy_after: self.destroy_after,
            identifier: self.identifier,
            recipient: hex_field("recipient", &self.recipient)?,
            expires_at: self.expires_at,
            signatures,
            helpers: self
                .helpers
                .iter()
                .map(|h| {
                    Ok(apb::RepairHelper {
                        identifier: h.identifier,
                        transport_key: hex_field(
                            &format!("helper {}: transport_key", h.identifier),
                            &h.transport_key,
                        )?,
                    })
                })
                .collect::<Result<_, CliError>>()?,
        })
    }

    /// The signed order, every field checked as the signers decode it.
    pub fn to_signed(&self) -> Result<SignedOrder, CliError> {
        ringi_proto::key_order::order_from_pb(&self.to_pb()?).map_err(|e| bad(e.0))
    }

    /// Parses an order file's text.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let file: OrderFile = serde_json::from_str(text).map_err(bad)?;
        file.to_signed()?;
        Ok(file)
    }
}

/// Reads and checks the order file at `path`.
pub fn read(path: &Path) -> Result<SignedOrder, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    OrderFile::parse(&text)
        .and_then(|f| f.to_signed())
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// Writes `signed` to `path` whole or not at all: a temporary file in the
/// same directory, synced, then renamed over `path`.
pub fn write(path: &Path, signed: &SignedOrder) -> Result<(), CliError> {
    let text = format!("{}\n", crate::json(&OrderFile::from_signed(signed)));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let failed = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        CliError::Usage(format!("cannot write {}: {e}", path.display()))
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(failed)?;
    // The rename itself, durably (best effort: not every platform opens a
    // directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn check_validity(valid_secs: u64) -> Result<(), CliError> {
    if valid_secs == 0 || valid_secs > ORDER_MAX_VALIDITY_SECS {
        return Err(CliError::Usage(format!(
            "--valid-secs must be 1..={ORDER_MAX_VALIDITY_SECS} (the signers refuse an order valid longer)"
        )));
    }
    Ok(())
}

fn key_id(text: &str) -> Result<KeyId, CliError> {
    KeyId::parse(text).map_err(|e| CliError::Usage(format!("KEY_ID: {e}")))
}

/// An unsigned retirement of `key_id`: its shares destroyed `grace_secs`
/// after `now`, the order valid `valid_secs` from `now`.
pub fn retire_order(
    key_id: &str,
    grace_secs: u64,
    valid_secs: u64,
    now: u64,
) -> Result<SignedOrder, CliError> {
    check_validity(valid_secs)?;
    Ok(SignedOrder {
        order: KeyOrder {
            key_id: self::key_id(key_id)?,
            action: Action::Retire {
                destroy_after: now.saturating_add(grace_secs),
            },
            expires_at: now.saturating_add(valid_secs),
        },
        signatures: Vec::new(),
    })
}

/// The wire forms of a DKG transport key, for usage errors.
const TRANSPORT_KEY_FORMS: &str = "hex of a secp256k1 SEC1 compressed point (66 digits, 02 or 03 first) or of a P-256 DER SubjectPublicKeyInfo (118 digits)";

/// An unsigned repair of participant `identifier` of `key_id` for the node
/// whose DKG transport key is `recipient_hex`.
pub fn repair_order(
    key_id: &str,
    identifier: u32,
    recipient_hex: &str,
    helpers: &[String],
    valid_secs: u64,
    now: u64,
) -> Result<SignedOrder, CliError> {
    check_validity(valid_secs)?;
    let identifier = u16::try_from(identifier)
        .ok()
        .filter(|i| *i != 0)
        .ok_or_else(|| CliError::Usage("--identifier must be 1..=65535".into()))?;
    let recipient =
        hex::decode(recipient_hex).map_err(|e| CliError::Usage(format!("--recipient-key: {e}")))?;
    // Either curve's wire form, as `ringi-signer info` prints it on its
    // `dkg_transport_key CURVE HEX` lines; every key of the order on one
    // curve (the nodes derive pairwise ECDH secrets).
    let Some(curve) = TransportCurve::of(&recipient) else {
        return Err(CliError::Usage(format!(
            "--recipient-key must be the new node's DKG transport key as `ringi-signer info` prints it: {TRANSPORT_KEY_FORMS}"
        )));
    };
    let mut named = std::collections::BTreeMap::new();
    for spec in helpers {
        let (id, key) = spec.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "--helper takes IDENTIFIER=TRANSPORT_KEY_HEX, got {spec:?}"
            ))
        })?;
        let id: u16 =
            id.parse().ok().filter(|i| *i != 0).ok_or_else(|| {
                CliError::Usage(format!("--helper {spec:?}: identifier 1..=65535"))
            })?;
        let key = hex::decode(key)
            .ok()
            .filter(|k| TransportCurve::of(k).is_some())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--helper {spec:?}: the key must be a DKG transport key as `ringi-signer info` prints it: {TRANSPORT_KEY_FORMS}"
                ))
            })?;
        if TransportCurve::of(&key) != Some(curve) {
            return Err(CliError::Usage(format!(
                "--helper {spec:?}: not a {curve} key like --recipient-key: name every node's key on one curve (its `dkg_transport_key {curve}` line)"
            )));
        }
        if named.insert(id, key).is_some() {
            return Err(CliError::Usage(format!("--helper {id} is given twice")));
        }
    }
    Ok(SignedOrder {
        order: KeyOrder {
            key_id: self::key_id(key_id)?,
            action: Action::Repair {
                identifier,
                recipient,
                helpers: named,
            },
            expires_at: now.saturating_add(valid_secs),
        },
        signatures: Vec::new(),
    })
}

/// An unsigned refresh order for `key_id` (for a key whose rules set
/// `refresh_needs_order`), valid `valid_secs` from `now`.
pub fn refresh_order(key_id: &str, valid_secs: u64, now: u64) -> Result<SignedOrder, CliError> {
    check_validity(valid_secs)?;
    Ok(SignedOrder {
        order: KeyOrder {
            key_id: self::key_id(key_id)?,
            action: Action::Refresh,
            expires_at: now.saturating_add(valid_secs),
        },
        signatures: Vec::new(),
    })
}

/// Prints an order file (JSON) on stdout.
pub fn print(signed: &SignedOrder) {
    println!("{}", crate::json(&OrderFile::from_signed(signed)));
}

/// `signed` with `admin`'s signature (issued at `now`) added; refused if
/// the order expired or this key signed it already.
pub fn add_signature(
    mut signed: SignedOrder,
    admin: &ApproverSigner,
    now: u64,
) -> Result<SignedOrder, CliError> {
    if now > signed.order.expires_at {
        return Err(CliError::Usage(format!(
            "the order expired at {}: make a new one",
            crate::view::rfc3339(signed.order.expires_at)
        )));
    }
    let key = admin.public_key();
    if signed.signatures.iter().any(|s| s.admin == key) {
        return Err(CliError::Usage(format!(
            "{} signed this order already",
            key.to_text()
        )));
    }
    let signature = admin
        .sign(&signed.order.signed_bytes(now, &key))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    signed.signatures.push(AdminSignature {
        admin: key,
        issued_at: now,
        signature,
    });
    Ok(signed)
}

/// `ringi keys order sign FILE`: adds the admin's signature to the file in
/// place.
pub fn sign(path: &Path, admin: ApproverSigner) -> Result<(), CliError> {
    let signed = read(path)?;
    let now = ringi_policy::clock::now();
    let signed = add_signature(signed, &admin, now)?;
    write(path, &signed)?;
    eprintln!(
        "ringi: signed order {} ({} of key {}) as {}; {} signature(s) in {}",
        hex::encode(signed.order.id()),
        signed.order.action.name(),
        signed.order.key_id,
        admin.public_key().to_text(),
        signed.signatures.len(),
        path.display()
    );
    Ok(())
}

/// The order, readably: one fact a line; with `policy`, each signer's
/// name in it and the verdict of the order's rules now.
pub fn describe(signed: &SignedOrder, policy: Option<&Policy>, now: u64) -> Vec<String> {
    let o = &signed.order;
    let mut lines = vec![
        format!("order        {}", hex::encode(o.id())),
        format!("key          {}", o.key_id),
        format!("action       {}", o.action.name()),
    ];
    match &o.action {
        Action::Retire { destroy_after } => lines.push(format!(
            "destroy      shares destroyed at or after {}",
            crate::view::when(now, *destroy_after)
        )),
        Action::Repair {
            identifier,
            recipient,
            helpers,
        } => {
            lines.push(format!("identifier   {identifier}"));
            lines.push(format!("recipient    {}", hex::encode(recipient)));
            for (id, key) in helpers {
                lines.push(format!("helper       {id} {}", hex::encode(key)));
            }
        }
        Action::Refresh => lines.push("refresh      a refresh DKG among the key's signers".into()),
    }
    lines.push(format!(
        "expires      {}",
        crate::view::when(now, o.expires_at)
    ));
    if signed.signatures.is_empty() {
        lines.push("signatures   none yet".into());
    }
    for (i, s) in signed.signatures.iter().enumerate() {
        let verifies = s
            .admin
            .verify(&o.signed_bytes(s.issued_at, &s.admin), &s.signature);
        let name = policy
            .and_then(|p| p.approver(&s.admin))
            .map(|a| format!(" ({})", a.name))
            .unwrap_or_default();
        lines.push(format!(
            "signature #{i} {}{name}, signed {}{}",
            s.admin.to_text(),
            crate::view::when(now, s.issued_at),
            if verifies { "" } else { ": DOES NOT VERIFY" }
        ));
    }
    if let Some(p) = policy {
        lines.push(match check_order(p, signed, now) {
            Ok(admins) => format!(
                "verdict      would be carried out now (admins {})",
                admins.join(", ")
            ),
            Err(e) => format!("verdict      would be refused now: {e}"),
        });
    }
    lines
}

/// `ringi keys order show FILE [--policy POLICY]`.
pub fn show(path: &Path, policy: Option<&Path>) -> Result<(), CliError> {
    let signed = read(path)?;
    let policy = policy.map(crate::requests::load_policy).transpose()?;
    for line in describe(&signed, policy.as_ref(), ringi_policy::clock::now()) {
        println!("{line}");
    }
    Ok(())
}

/// A signer's answer to a retirement, in words.
fn retired_text(r: &pb::RetireKeyResponse) -> String {
    let destroy_after = r.retirement.as_ref().map_or(0, |t| t.destroy_after);
    let held = if r.kind.is_empty() {
        "holds no share of the key".to_string()
    } else {
        format!("holds a {} share", r.kind)
    };
    let verb = if r.already {
        "retired already (that retirement stands)"
    } else {
        "retired"
    };
    format!(
        "{verb}: signs nothing more with the key; {held}, destroyed at or after {destroy_after}"
    )
}

/// `ringi keys retire FILE`: delivers a retirement order to every signer,
/// then to the coordinator; fails unless all of them accepted it.
pub async fn retire(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    coordinator: &str,
    path: &Path,
) -> Result<(), CliError> {
    require(signers)?;
    let signed = read(path)?;
    let Action::Retire { destroy_after } = signed.order.action else {
        return Err(CliError::Usage(format!(
            "{} is a {} order, not a retirement",
            path.display(),
            signed.order.action.name()
        )));
    };
    let key_id = signed.order.key_id.to_string();
    eprintln!(
        "ringi: retiring key {key_id} (order {}): it signs nothing more from now on; its shares are destroyed at or after {}",
        hex::encode(signed.order.id()),
        crate::view::when(ringi_policy::clock::now(), destroy_after)
    );
    let wire = ringi_proto::key_order::order_to_pb(&signed);
    // The signers first: they are where the retirement is enforced.
    let answers = ask_each(signers, tls, |mut client| {
        let request = pb::RetireKeyRequest {
            order: Some(wire.clone()),
        };
        async move {
            Ok(retired_text(
                &client.retire_key(request).await?.into_inner(),
            ))
        }
    })
    .await;
    let signers_report = report(&format!("retirement of key {key_id}"), &texts(answers));
    let at_coordinator = async {
        let channel = crate::connect::connect(coordinator, tls).await?;
        Ok::<_, CliError>(
            KeyServiceClient::new(channel)
                .retire_key(cpb::RetireKeyRequest { order: Some(wire) })
                .await?
                .into_inner(),
        )
    }
    .await;
    match &at_coordinator {
        Ok(r) => eprintln!(
            "ringi: coordinator: {}",
            if r.already {
                "retired already (that retirement stands); takes no request for the key"
            } else {
                "retired: takes no request for the key"
            }
        ),
        Err(e) => eprintln!(
            "ringi: coordinator: NOT recorded: {}",
            crate::view::printable(&e.to_string())
        ),
    }
    println!("{}", hex::encode(signed.order.id()));
    signers_report?;
    at_coordinator.map(|_| ())
}

/// `ringi keys repair KEY_ID --signer NAME --order FILE`: asks the
/// coordinator to rebuild the order's participant's share on `signer`;
/// says who helped and which node was replaced; prints the group key.
pub async fn repair(
    channel: tonic::transport::Channel,
    key_id: &str,
    signer: &str,
    path: &Path,
) -> Result<(), CliError> {
    let signed = read(path)?;
    let Action::Repair { identifier, .. } = signed.order.action else {
        return Err(CliError::Usage(format!(
            "{} is a {} order, not a repair",
            path.display(),
            signed.order.action.name()
        )));
    };
    if signed.order.key_id.as_str() != key_id {
        return Err(CliError::Usage(format!(
            "{} orders a repair of key {}, not {key_id}",
            path.display(),
            signed.order.key_id
        )));
    }
    eprintln!(
        "ringi: repairing participant {identifier} of key {key_id} onto {signer} (order {})",
        hex::encode(signed.order.id())
    );
    let answer = KeyServiceClient::new(channel)
        .repair_key(cpb::RepairKeyRequest {
            order: Some(ringi_proto::key_order::order_to_pb(&signed)),
            signer: signer.to_string(),
        })
        .await?
        .into_inner();
    let key = answer.key.ok_or_else(|| CliError::Status {
        code: tonic::Code::Internal,
        message: "the coordinator answered the repair without the key".into(),
    })?;
    eprintln!(
        "ringi: {signer} now holds participant {identifier} of key {key_id} (replacing {}); helpers: {}",
        crate::view::printable(&answer.replaced_signer),
        crate::view::printable(&answer.helpers.join(", "))
    );
    eprintln!(
        "ringi: refresh the key next (ringi keys refresh {key_id}): the lost token's copy of the share stays valid until then"
    );
    println!("{}", hex::encode(key.group_public_key));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn admin() -> (tempfile::TempDir, ApproverSigner) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.pem");
        crate::approver::generate_key_file(&path).unwrap();
        let signer = ApproverSigner::from_file(&path).unwrap();
        (dir, signer)
    }

    #[test]
    fn an_order_file_round_trips_with_its_signatures() {
        let (_dir, alice) = admin();
        let order = retire_order("hot-1", 30, 3600, NOW).unwrap();
        assert_eq!(
            order.order.action,
            Action::Retire {
                destroy_after: NOW + 30
            }
        );
        assert_eq!(order.order.expires_at, NOW + 3600);
        let signed = add_signature(order, &alice, NOW + 1).unwrap();
        let text = crate::json(&OrderFile::from_signed(&signed));
        assert!(text.contains("\"action\": \"retire\""), "{text}");
        let back = OrderFile::parse(&text).unwrap().to_signed().unwrap();
        assert_eq!(back, signed);
        let s = &back.signatures[0];
        assert!(s.admin.verify(
            &back.order.signed_bytes(s.issued_at, &s.admin),
            &s.signature
        ));
        // The same admin twice, or after expiry: refused.
        let twice = add_signature(back.clone(), &alice, NOW + 2).unwrap_err();
        assert!(
            twice.to_string().contains("signed this order already"),
            "{twice}"
        );
        let (_d2, bob) = admin();
        let late = add_signature(back, &bob, NOW + 3601).unwrap_err();
        assert!(late.to_string().contains("expired"), "{late}");

        // A repair order on either curve (P-256: a node whose token makes no
        // secp256k1 keys), its keys as `ringi-signer info` prints them, and
        // back from its file; keys on two curves are refused, naming the
        // curve to use.
        let (recipient, helper) = (
            format!("02{}", "ab".repeat(32)),
            format!("03{}", "cd".repeat(32)),
        );
        let p256 =
            |point: &str| hex::encode(TransportCurve::P256.wire(&hex::decode(point).unwrap()));
        let repair = |recipient: &str, helper: &str| {
            repair_order("hot-1", 2, recipient, &[format!("1={helper}")], 600, NOW)
        };
        for (recipient, helper) in [
            (recipient.clone(), helper.clone()),
            (p256(&recipient), p256(&helper)),
        ] {
            let order = repair(&recipient, &helper).unwrap();
            let text = crate::json(&OrderFile::from_signed(&order));
            assert_eq!(OrderFile::parse(&text).unwrap().to_signed().unwrap(), order);
        }
        let mixed = repair(&p256(&recipient), &helper).unwrap_err();
        assert!(mixed.to_string().contains("not a P-256 key"), "{mixed}");
    }

    #[test]
    fn malformed_files_and_arguments_are_refused_with_their_reason() {
        let good = OrderFile::from_signed(&retire_order("hot-1", 30, 3600, NOW).unwrap());
        let text = |f: &OrderFile| serde_json::to_string(f).unwrap();
        for (file, words) in [
            ("not json".to_string(), "not a valid key order"),
            ("{}".to_string(), "missing field"),
            (
                text(&good).replace("\"expires_at\"", "\"expires\""),
                "unknown field",
            ),
            (
                text(&OrderFile {
                    action: "burn".into(),
                    ..good.clone()
                }),
                "burn",
            ),
            (
                text(&OrderFile {
                    key_id: "bad key".into(),
                    ..good.clone()
                }),
                "key_id",
            ),
            (
                text(&OrderFile {
                    identifier: 3,
                    ..good.clone()
                }),
                "no identifier",
            ),
            (
                text(&OrderFile {
                    signatures: vec![SignatureEntry {
                        admin_public_key: "zz".into(),
                        issued_at: NOW,
                        signature: String::new(),
                    }],
                    ..good.clone()
                }),
                "signature #0: admin_public_key",
            ),
            (
                text(&OrderFile {
                    action: "repair".into(),
                    identifier: 1,
                    ..good.clone()
                }),
                "no destroy_after",
            ),
        ] {
            let err = OrderFile::parse(&file).unwrap_err().to_string();
            assert!(err.contains(words), "{file}: {err}");
        }
        assert!(retire_order("hot-1", 30, 0, NOW).is_err());
        assert!(retire_order("hot-1", 30, ORDER_MAX_VALIDITY_SECS + 1, NOW).is_err());
        assert!(retire_order("bad key", 30, 60, NOW).is_err());
        for (id, key) in [
            (0, format!("02{}", "ab".repeat(32))),
            (70_000, format!("02{}", "ab".repeat(32))),
            (1, format!("04{}", "ab".repeat(32))),
            (1, "0203".to_string()),
            (1, "xyz".to_string()),
        ] {
            assert!(
                repair_order("hot-1", id, &key, &[], 60, NOW).is_err(),
                "{id} {key}"
            );
        }
    }

    #[test]
    fn a_file_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order.json");
        let (_d, alice) = admin();
        let order = retire_order("hot-1", 30, 3600, NOW).unwrap();
        write(&path, &order).unwrap();
        assert_eq!(read(&path).unwrap(), order);
        let signed = add_signature(order, &alice, NOW).unwrap();
        write(&path, &signed).unwrap();
        assert_eq!(read(&path).unwrap(), signed);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "{").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("order.json") && err.contains("not a valid key order"),
            "{err}"
        );
        assert!(read(&dir.path().join("missing.json")).is_err());
        let lines = describe(&signed, None, NOW);
        assert!(
            lines.iter().any(|l| l.starts_with("key          hot-1")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("signature #0")),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("DOES NOT VERIFY")),
            "{lines:?}"
        );
    }
}
