//! The one `tessera` binary: server, dev cluster and CLI (like `vault` / `bao`).

fn main() -> std::process::ExitCode {
    tessera_node::cli::main()
}
