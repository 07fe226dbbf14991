//! `ringi token init` and `ringi token tls-csr`: the coordinator's keys in
//! its PKCS#11 token (`[pkcs11]` in its config; see
//! `ringi::token_keys`). The PIN comes from `RINGI_PKCS11_PIN` or the
//! configured PIN file, never from the command line.

use ringi::config::Config;

/// Creates the token's keys if missing (the TLS key and the audit key; a
/// signer's token format, so the same `ringi-signer init` keys), and
/// prints what it created.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let token = opened(config)?;
    let created = ringi::token_keys::initialize(&token)?;
    if created.is_empty() {
        println!("the token holds the coordinator's keys already");
    } else {
        println!("created in the token: {}", created.join(", "));
    }
    Ok(())
}

/// Prints a CSR for the token's TLS key, for the name `name` (the
/// coordinator's certified identity, `coordinator`), signed inside the
/// token, e.g. for `ringi dev-certs --signer-csr`.
pub fn tls_csr(config: &Config, name: &str) -> anyhow::Result<()> {
    let token = opened(config)?;
    print!("{}", ringi::token_keys::tls_csr_pem(&token, name)?);
    Ok(())
}

fn opened(config: &Config) -> anyhow::Result<ringi::token_keys::SharedToken> {
    ringi::token_keys::open(config)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the config names no token: add a [pkcs11] table (module, token_label, pin_file)"
        )
    })
}
