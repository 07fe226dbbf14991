//! A signer serving over mutual TLS with its TLS key inside its SoftHSM
//! token: only the coordinator's identity may call it; plaintext, another
//! CA, another client identity and a wrong server name all fail.
//! (The whole system over mutual TLS is `e2e_mtls.rs`.)

mod support;

use std::process::Command;
use std::sync::Arc;

use ringi_proto::signer::v1 as pb;
use ringi_proto::signer::v1::signer_client::SignerClient;
use support::*;
use tonic::Code;

fn client_config(
    certs: &std::path::Path,
    name: &str,
    ca_dir: &std::path::Path,
) -> Arc<rustls::ClientConfig> {
    use ringi_net::tls;
    let chain = tls::load_certs(&certs.join(format!("{name}.pem"))).unwrap();
    let key = tls::load_key(&certs.join(format!("{name}.key"))).unwrap();
    let ca = tls::load_certs(&ca_dir.join("ca.pem")).unwrap();
    Arc::new(tls::client_config(chain, key, &ca).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_over_mutual_tls_with_its_key_in_the_token() {
    let mut cluster = Cluster::start(1);
    cluster.stop_coordinator();
    cluster.signers[0].stop();
    let node = &cluster.signers[0];

    // CSR made inside the token; certificates from the development CA.
    let out = node
        .command()
        .args(["tls-csr", "--name", "signer-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csr = cluster.dir.path().join("signer-1.csr");
    std::fs::write(&csr, &out.stdout).unwrap();
    let certs = cluster.dir.path().join("certs");
    let other = cluster.dir.path().join("other-ca");
    for (dir, extra) in [
        (&certs, vec!["--signer-csr", csr.to_str().unwrap()]),
        (&other, vec![]),
    ] {
        let out = Command::new(ringi_bin())
            .args([
                "dev-certs",
                "--out",
                dir.to_str().unwrap(),
                "--clients",
                "wallet-service",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut cmd = node.command();
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--tls-cert"])
        .arg(certs.join("signer-1.pem"))
        .arg("--tls-ca")
        .arg(certs.join("ca.pem"));
    let (mut child, address) = spawn_listening(cmd, &node.dir.join("tls.log"));
    let port = address.rsplit(':').next().unwrap().to_string();
    let address = format!("127.0.0.1:{port}");

    // The coordinator's identity: served.
    let channel = ringi_net::tls::connect(
        &address,
        "signer-1",
        client_config(&certs, "coordinator", &certs),
    )
    .await
    .unwrap();
    let info = SignerClient::new(channel)
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.dkg_public_key.len(), 33);

    // Another identity from the same CA: authenticated, not authorized.
    let channel = ringi_net::tls::connect(
        &address,
        "signer-1",
        client_config(&certs, "wallet-service", &certs),
    )
    .await
    .unwrap();
    let err = SignerClient::new(channel)
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("\"wallet-service\" may not call"),
        "{}",
        err.message()
    );

    // A certificate from another CA: no connection.
    let rogue = ringi_net::tls::connect(
        &address,
        "signer-1",
        client_config(&other, "coordinator", &certs),
    )
    .await;
    let refused = match rogue {
        Err(_) => true,
        Ok(channel) => SignerClient::new(channel)
            .get_node_info(pb::GetNodeInfoRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client from another CA was served");

    // Expecting another signer's name: the client refuses this server.
    let wrong = ringi_net::tls::connect(
        &address,
        "signer-2",
        client_config(&certs, "coordinator", &certs),
    )
    .await;
    assert!(wrong.is_err(), "a server with another name was accepted");

    // Plaintext: refused.
    let plain = SignerClient::connect(format!("http://{address}")).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.get_node_info(pb::GetNodeInfoRequest {}).await.is_err(),
    };
    assert!(refused, "a plaintext client was served");

    stop(&mut child);

    // The TLS private key never leaves the token (pkcs11-tool's view).
    let listing = Command::new("pkcs11-tool")
        .envs(node.env.iter().cloned())
        .args([
            "--module",
            &node.module(),
            "--token-label",
            "signer-1",
            "--login",
            "--pin",
            &node.pin(),
            "--list-objects",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let tls_private = pkcs11_object(&listing, "Private Key Object", "ringi-tls");
    assert!(
        tls_private.contains("never extractable") && tls_private.contains("sensitive"),
        "{listing}"
    );
}
