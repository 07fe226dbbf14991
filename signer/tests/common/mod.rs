//! In-process SoftHSM2 for the signer's single-test binaries: a token
//! directory of its own, tokens created up front (SoftHSM lists its slots
//! once, at C_Initialize), and [`Token`]s opened on them.

use std::process::Command;

use ringi_signer::token::{Token, TokenConfig};
use secrecy::SecretString;

pub const PIN: &str = "1234";

fn module() -> String {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("SoftHSM2 is installed (softhsm-setup/install-deps.sh)")
    .to_string()
}

/// Points this process at a fresh token directory in `dir` and creates one
/// token per label, each with ringi's keys. Call first thing in the binary's
/// only test: it sets SOFTHSM2_CONF, which is only safe before other threads
/// run.
pub fn tokens(dir: &std::path::Path, labels: &[&str]) -> Vec<Token> {
    std::fs::create_dir(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    // SAFETY: called before any other thread of this test binary starts.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    for label in labels {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                "5678",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    labels
        .iter()
        .map(|label| {
            let token = Token::open(&TokenConfig {
                module: module().into(),
                token_label: label.to_string(),
                pin: SecretString::from(PIN),
            })
            .unwrap();
            token.initialize_keys().unwrap();
            token
        })
        .collect()
}
