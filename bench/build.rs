//! Compiles the etcd API subset with protox, so no machine needs a system protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "proto";
    println!("cargo:rerun-if-changed={proto_dir}");
    let fds = protox::compile(["proto/etcd/rpc_subset.proto"], [proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
