//! `tessera-bench`: the benchmark lab, kept out of the `tessera` binary a user installs.
//!
//! - `kv` and `sign` load a running cluster through the SDK (closed loops, bounded in time and
//!   count) and report throughput and p50/p99 latency;
//! - `floor` measures, in this one process and with no cluster, what one read at concurrency 1
//!   cannot avoid on this machine.
//!
//! Connection flags, `--format` and exit codes are the `tessera` CLI's own.

mod floor;
mod grant;
mod load;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_node::cli::output::Out;
use tessera_node::cli::{ClientArgs, Failure, Format};

// The same allocator as the node, so that the load generator's CPU figures are comparable.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera-bench",
    version,
    about = "Tessera benchmarks: load a running cluster, or measure the floor of one read"
)]
struct Cli {
    #[command(subcommand)]
    cmd: BenchCmd,
    #[command(flatten)]
    client: ClientArgs,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// KV write and read throughput and latency.
    Kv(load::KvBench),
    /// Threshold signing (raw Ed25519 and SSH certificates) throughput and latency.
    Sign(load::SignBench),
    /// The floor of one read at concurrency 1 on this machine: each piece a read cannot avoid
    /// (synced audit lines, opening, checking, one gRPC call over mutual TLS), measured in this
    /// process with no cluster.
    Floor(floor::FloorBench),
    /// A read under a break-glass grant beside a plain read, at concurrency 1 (needs the
    /// cluster's directory, with its CA, to make a reader and an approver).
    Grant(grant::GrantBench),
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let out = Out::new(cli.format);
    match cli.cmd {
        BenchCmd::Floor(a) => floor::run(a, out).await,
        BenchCmd::Kv(a) => load::run_kv(a, &cli.client.connect().await?, out).await,
        BenchCmd::Sign(a) => load::run_sign(a, &cli.client.connect().await?, out).await,
        BenchCmd::Grant(a) => grant::run(a, &cli.client.connect().await?, out).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tessera_node::cli::quiet_on_closed_stdout();
    tessera_node::cli::exit_with(run(cli))
}
