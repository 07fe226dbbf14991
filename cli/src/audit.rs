//! `ringi audit verify|export`: a coordinator's or a signer's audit log,
//! checked offline (no coordinator needed).

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
    let lines = read_lines(path)?;
    let v = ringi_policy::audit::verify(&lines, key.as_ref())
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
    Ok(())
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
