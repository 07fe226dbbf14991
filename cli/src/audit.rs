//! `ringi audit verify|export`: a coordinator's or a signer's audit log,
//! checked offline (no coordinator needed); `ringi audit repair`: the
//! coordinator's own log, set right after it was broken.

use std::io::Write;
use std::path::Path;

use ringi_policy::approver_key::ApproverKey;

/// `ringi audit verify`: checks every link; with `checkpoint_key` (a
/// signer's audit key, `p256:...`), every checkpoint must be signed by it.
pub fn verify(path: &Path, checkpoint_key: Option<&str>) -> anyhow::Result<()> {
    let key = checkpoint_key
        .map(ApproverKey::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--checkpoint-key: {e}"))?;
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let v = ringi_policy::audit::verify_bytes(&bytes, key.as_ref())
        .map_err(|b| anyhow::anyhow!("audit log {} is broken: {b}", path.display()))?;
    println!(
        "ok: {} entries, {} signed checkpoints{}, head {}",
        v.entries,
        v.checkpoints,
        if v.checkpoint_keys.is_empty() {
            String::new()
        } else {
            format!(" by {}", v.checkpoint_keys.join(", "))
        },
        hex::encode(v.head)
    );
    // The chain holds, but entries are missing where a repair set a broken
    // tail aside: an auditor must see that.
    for gap in &v.gaps {
        let field = |k: &str| gap.fields.get(k).map(String::as_str).unwrap_or("?");
        println!(
            "warning: {} at seq {}: {} line(s) ({} bytes, sha256 {}) were set aside in {} by a repair; reason: {}",
            ringi_policy::audit::AUDIT_GAP,
            gap.seq,
            field("tail_lines"),
            field("tail_bytes"),
            field("tail_sha256"),
            field("kept_in"),
            field("reason")
        );
    }
    Ok(())
}

/// `ringi audit repair --config FILE`: sets the broken tail of the
/// coordinator's audit log aside and records the gap (see
/// `ringi_policy::audit_repair`). Refused while the coordinator runs: it
/// takes `ringi serve`'s lock on the data directory first.
pub fn repair(config: &ringi::config::Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir()?;
    let path = data_dir.join(ringi::server::AUDIT_FILE);
    if !path.exists() {
        anyhow::bail!(
            "no audit log at {}: nothing to repair (is this the coordinator's config?)",
            path.display()
        );
    }
    let _lock =
        ringi_net::instance_lock::InstanceLock::data_dir(&data_dir, "ringi").map_err(|e| {
            anyhow::anyhow!("cannot repair the audit log while the coordinator runs: {e}")
        })?;
    let repair = ringi_policy::audit_repair::repair(&path, ringi_policy::clock::now())?;
    println!("{}", repair.describe(&path));
    Ok(())
}

/// The command that repairs the audit log of `ringi serve --config
/// config`, for the message refusing a broken log.
pub fn repair_command(config: &Path) -> String {
    format!("ringi audit repair --config {}", config.display())
}

/// `ringi audit export`: verifies, then prints one flat JSON object per
/// entry (JSON lines), each naming `node`.
pub fn export(path: &Path, node: &str) -> anyhow::Result<()> {
    let lines = read_lines(path)?;
    ringi_policy::audit::verify(&lines, None).map_err(|b| {
        anyhow::anyhow!("audit log {} is broken, not exporting: {b}", path.display())
    })?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let entry: ringi_policy::audit::Entry = serde_json::from_str(line)?;
        let written = writeln!(out, "{}", ringi_policy::audit::export_line(node, &entry));
        if closed_pipe(written)? {
            return Ok(());
        }
    }
    closed_pipe(out.flush())?;
    Ok(())
}

/// Whether the reader of our output went away (`ringi audit export | head`):
/// that ends the export quietly, as it does for any Unix filter; any other
/// write error is one.
fn closed_pipe(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(anyhow::anyhow!("cannot write the export: {e}")),
    }
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().map(String::from).collect())
}
