//! Compiles the peer protocol with protox, so no machine needs a system protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    let file = "../proto/pgwarden/raft/v1/raft.proto";
    println!("cargo:rerun-if-changed={proto_dir}");
    let fds = protox::compile([file], [proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
