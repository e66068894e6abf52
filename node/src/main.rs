//! The one `tessera` binary: server, dev cluster and CLI (like `vault` / `bao`).

/// Every gRPC call, Raft message and log entry allocates and frees small buffers on many
/// threads at once; mimalloc serves those from per-thread pages. Secrets are zeroized by their
/// own types before their memory is freed, whichever allocator takes it back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tessera_node::cli::main()
}
