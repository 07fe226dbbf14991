//! Compiles `ringi/**/*.proto` with protox (pure Rust), so building ringi
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "ringi/approval/v1/approval.proto",
        "ringi/signer/v1/signer.proto",
        "ringi/coordinator/v1/coordinator.proto",
    ];
    let fds = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
