//! `ringi dev-certs`: a CA and certificates for a local or Docker setup.
//!
//! Writes into a directory (never overwriting a file):
//! - `ca.pem`, `ca.key`: the development CA (its key is a file: development
//!   only);
//! - `coordinator.pem`, `coordinator.key`: the coordinator's identity, for
//!   serving wallets and the CLI and for dialling signers (names
//!   `coordinator`, `localhost`, `127.0.0.1`);
//! - for each signer CSR given (made inside the signer's token by
//!   `ringi-signer tls-csr`): `<name>.pem`, certifying the token's key;
//!   otherwise, for `--signers N`, `signer-<i>.pem` and `signer-<i>.key`
//!   with file keys (development only);
//! - for each client name (wallet services, approvers, operators):
//!   `<name>.pem`, `<name>.key`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum DevCertsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("CSR {path} names no DNS subject alternative name")]
    CsrWithoutName { path: PathBuf },
}

pub struct DevCertsRequest {
    pub out: PathBuf,
    /// Signers to make file-key certificates for (when no CSR is given).
    pub signers: usize,
    /// CSRs made by `ringi-signer tls-csr`.
    pub signer_csrs: Vec<PathBuf>,
    /// A CSR made by `ringi token tls-csr` in the coordinator's token: its
    /// certificate then certifies the token's key, and no
    /// `coordinator.key` is written.
    pub coordinator_csr: Option<PathBuf>,
    /// Client identities to certify.
    pub clients: Vec<String>,
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), DevCertsError> {
    let err = |e: std::io::Error| DevCertsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)
}

fn leaf_params(
    name: &str,
    extra_sans: &[SanType],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.subject_alt_names.extend(extra_sans.iter().cloned());
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = usages;
    Ok(params)
}

fn read_csr(path: &Path) -> Result<CertificateSigningRequestParams, DevCertsError> {
    let text = std::fs::read_to_string(path).map_err(|e| DevCertsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(CertificateSigningRequestParams::from_pem(&text)?)
}

/// Writes the CA and every certificate; returns the files written.
pub fn generate(req: &DevCertsRequest) -> Result<Vec<PathBuf>, DevCertsError> {
    std::fs::create_dir_all(&req.out).map_err(|e| DevCertsError::File {
        path: req.out.clone(),
        reason: e.to_string(),
    })?;
    let mut written = Vec::new();
    let mut put = |name: &str, contents: &str, mode: u32| -> Result<(), DevCertsError> {
        let path = req.out.join(name);
        write_new(&path, contents, mode)?;
        written.push(path);
        Ok(())
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ringi development CA");
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    put("ca.pem", &ca.pem(), 0o644)?;
    put("ca.key", &ca_key_pem, 0o600)?;

    let both = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let local = [
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
    ];
    match &req.coordinator_csr {
        Some(path) => {
            let mut csr = read_csr(path)?;
            csr.params.subject_alt_names.extend(local.iter().cloned());
            csr.params.extended_key_usages = both.clone();
            put("coordinator.pem", &csr.signed_by(&ca)?.pem(), 0o644)?;
        }
        None => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = leaf_params("coordinator", &local, both.clone())?.signed_by(&key, &ca)?;
            put("coordinator.pem", &cert.pem(), 0o644)?;
            put("coordinator.key", &key.serialize_pem(), 0o600)?;
        }
    }

    if req.signer_csrs.is_empty() {
        for i in 1..=req.signers {
            let name = format!("signer-{i}");
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = leaf_params(&name, &[], both.clone())?.signed_by(&key, &ca)?;
            put(&format!("{name}.pem"), &cert.pem(), 0o644)?;
            put(&format!("{name}.key"), &key.serialize_pem(), 0o600)?;
        }
    }
    for path in &req.signer_csrs {
        let mut csr = read_csr(path)?;
        let name = csr
            .params
            .subject_alt_names
            .iter()
            .find_map(|s| match s {
                SanType::DnsName(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| DevCertsError::CsrWithoutName { path: path.clone() })?;
        csr.params.extended_key_usages = both.clone();
        let cert = csr.signed_by(&ca)?;
        put(&format!("{name}.pem"), &cert.pem(), 0o644)?;
    }
    for name in &req.clients {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = leaf_params(name, &[], vec![ExtendedKeyUsagePurpose::ClientAuth])?
            .signed_by(&key, &ca)?;
        put(&format!("{name}.pem"), &cert.pem(), 0o644)?;
        put(&format!("{name}.key"), &key.serialize_pem(), 0o600)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coordinator_csr_gets_a_certificate_and_no_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["coordinator".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "coordinator");
        let csr_path = dir.path().join("coordinator.csr");
        std::fs::write(
            &csr_path,
            params.serialize_request(&key).unwrap().pem().unwrap(),
        )
        .unwrap();
        let out = dir.path().join("certs");
        generate(&DevCertsRequest {
            out: out.clone(),
            signers: 1,
            signer_csrs: Vec::new(),
            coordinator_csr: Some(csr_path),
            clients: Vec::new(),
        })
        .unwrap();
        assert!(!out.join("coordinator.key").exists());
        let cert = ringi_net::tls::load_certs(&out.join("coordinator.pem")).unwrap();
        assert_eq!(
            ringi_net::tls::identity(&cert[0]).as_deref(),
            Some("coordinator")
        );
        // It certifies the CSR's key: a server config with that key builds.
        let ca = ringi_net::tls::load_certs(&out.join("ca.pem")).unwrap();
        let pem = dir.path().join("coordinator.key");
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        let signing = ringi_net::tls::load_key(&pem).unwrap();
        ringi_net::tls::server_config(cert, signing, &ca).unwrap();
    }

    #[test]
    fn writes_a_ca_and_certificates_that_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        // A CSR as ringi-signer makes it (here with a file key).
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["signer-7".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "signer-7");
        let csr_path = dir.path().join("signer-7.csr");
        std::fs::write(
            &csr_path,
            params.serialize_request(&key).unwrap().pem().unwrap(),
        )
        .unwrap();
        let out = dir.path().join("certs");
        let req = DevCertsRequest {
            out: out.clone(),
            signers: 3,
            signer_csrs: vec![csr_path],
            coordinator_csr: None,
            clients: vec!["wallet-service".into()],
        };
        let written = generate(&req).unwrap();
        assert!(written.contains(&out.join("signer-7.pem")));
        assert!(
            !out.join("signer-1.pem").exists(),
            "CSRs replace file-key signers"
        );
        let ca = ringi_net::tls::load_certs(&out.join("ca.pem")).unwrap();
        let signer = ringi_net::tls::load_certs(&out.join("signer-7.pem")).unwrap();
        assert_eq!(
            ringi_net::tls::identity(&signer[0]).as_deref(),
            Some("signer-7")
        );
        let wallet = ringi_net::tls::load_certs(&out.join("wallet-service.pem")).unwrap();
        assert_eq!(
            ringi_net::tls::identity(&wallet[0]).as_deref(),
            Some("wallet-service")
        );
        let coordinator_key = ringi_net::tls::load_key(&out.join("coordinator.key")).unwrap();
        let coordinator = ringi_net::tls::load_certs(&out.join("coordinator.pem")).unwrap();
        ringi_net::tls::server_config(coordinator, coordinator_key, &ca).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(out.join("ca.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // Never overwrites.
        assert!(matches!(generate(&req), Err(DevCertsError::File { .. })));
    }
}
