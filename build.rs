//! Compiles the admin API with protox, so no machine needs a system protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "proto";
    let file = "proto/pgwarden/admin/v1/admin.proto";
    println!("cargo:rerun-if-changed={proto_dir}/pgwarden/admin");
    let fds = protox::compile([file], [proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
