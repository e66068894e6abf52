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
        "tessera/v1/breakglass.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // Maps as BTreeMap: a signed request is encoded by the client and encoded again by the node
    // that checks the signature, and both must produce the same bytes (a HashMap's order is
    // random per process).
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
