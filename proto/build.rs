//! Compiles `ringi/**/*.proto` with protox (pure Rust), so building ringi
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "ringi/approval/v1/approval.proto",
        "ringi/signer/v1/signer.proto",
        "ringi/signer/v1/governance.proto",
        "ringi/coordinator/v1/coordinator.proto",
    ];
    let fds = protox::compile(protos, ["."])?;
    // The encoded descriptors, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ringi_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
