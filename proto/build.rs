//! Compiles `proto/tessera/v1/*.proto` with protox (pure Rust), so a fresh machine needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "tessera/v1/common.proto",
        "tessera/v1/refusal.proto",
        "tessera/v1/raft.proto",
        "tessera/v1/holder.proto",
        "tessera/v1/kv.proto",
        "tessera/v1/signing.proto",
        "tessera/v1/sys.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
