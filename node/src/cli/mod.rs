//! The `tessera` command line: `server` and `dev` run nodes; every other command is a client of
//! the API (`status`, `operator ...`, `group ...`, `policy ...`), except `operator init`,
//! `operator client-cert` and `audit verify`, which work on local files.

mod bench;
mod commands;
mod dev;
mod init;
mod kv;
mod output;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tessera_client::{Client, ClientConfig};

pub use init::{init_cluster, InitOptions};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: a multi-region secrets cluster in which no node holds a whole secret"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    client: ClientArgs,
    /// Output format of client commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How a client command reaches the cluster (flags win over the `TESSERA_*` environment).
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Address (host:port) of any node.
    #[arg(long, global = true, env = "TESSERA_ADDR")]
    address: Option<String>,
    /// PEM file of the cluster CA.
    #[arg(long, global = true, env = "TESSERA_CACERT")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate (its subject CN is your identity).
    #[arg(long, global = true, env = "TESSERA_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, global = true, env = "TESSERA_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    /// Name the node's certificate must carry (e.g. node3); defaults to the address host.
    #[arg(long, global = true, env = "TESSERA_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
}

impl ClientArgs {
    pub async fn connect(&self) -> Result<Client, tessera_client::Error> {
        let cfg = ClientConfig {
            address: self.address.clone().ok_or_else(|| {
                tessera_client::Error::Config(
                    "no node address: pass --address or set TESSERA_ADDR (`source DIR/env.sh` after `tessera operator init`)".into(),
                )
            })?,
            ca_cert: self.ca_cert.clone().ok_or_else(|| {
                tessera_client::Error::Config(
                    "no CA certificate: pass --ca-cert or set TESSERA_CACERT".into(),
                )
            })?,
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            server_name: self.tls_server_name.clone(),
            timeout: Duration::from_secs(self.timeout.max(1)),
        };
        Client::connect(&cfg).await
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node from its configuration file.
    Server(server::ServerArgs),
    /// Start a local multi-region cluster (real processes) for development.
    Dev(dev::DevArgs),
    /// Show the cluster: leader, term, commit index and every node.
    Status,
    /// Show the identity of your client certificate and its policies.
    Whoami,
    /// Cluster administration.
    Operator {
        #[command(subcommand)]
        cmd: OperatorCmd,
    },
    /// Groups of identities.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Path policies (Vault-style HCL).
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Secrets (key/value, versioned, split over the share holders).
    Kv {
        #[command(subcommand)]
        cmd: kv::KvCmd,
    },
    /// Load a running cluster and report throughput and latency.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// The node audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Create a cluster CA, node certificates and configs, and an admin client certificate.
    Init(init::InitArgs),
    /// Issue a client certificate signed by the cluster CA.
    ClientCert {
        /// Identity (certificate subject CN).
        name: String,
        /// The directory `operator init` wrote (holds ca.crt and ca.key).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Certificate and config for a node that will join with `members add`.
    NodeConfig {
        /// The directory `operator init` wrote.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        region: String,
    },
    /// List or change the Raft members.
    Members {
        #[command(subcommand)]
        cmd: Option<MembersCmd>,
    },
    /// Change the replicated cluster settings.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Regions, holders per region, the threshold, and whether the guarantee holds.
    Topology,
    /// Shares each node holds (paths, versions and share indices; never values).
    Shares,
    /// Save or restore the replicated data (groups, policies).
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
}

#[derive(Subcommand)]
enum MembersCmd {
    /// List members with their region and role.
    List,
    /// Add a node (started with `bootstrap = false`) as a learner, then a voter.
    Add {
        #[arg(long)]
        id: u64,
        /// Its API address, host:port (as in its config's `api_addr`).
        #[arg(long)]
        api_addr: String,
        #[arg(long)]
        region: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the membership.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// `threshold T`, `ack-fault-tolerance F` or `allow-unsafe-topology true|false`.
    Set { key: String, value: String },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Write the replicated data to FILE.
    Save { file: PathBuf },
    /// Replace the replicated data with the contents of FILE.
    Restore { file: PathBuf },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Create or replace a group.
    Write {
        name: String,
        /// Comma-separated identities.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    Read {
        name: String,
    },
    List,
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Create or replace a policy from FILE, or `-` for standard input.
    Write {
        name: String,
        file: String,
    },
    Read {
        name: String,
    },
    List,
    Delete {
        name: String,
    },
    /// Attach a policy to a group or an identity.
    Attach {
        name: String,
        #[arg(
            long,
            conflicts_with = "identity",
            required_unless_present = "identity"
        )]
        group: Option<String>,
        #[arg(long)]
        identity: Option<String>,
        /// Detach instead.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain of an audit file; names the first broken line.
    Verify { file: PathBuf },
}

/// A failure to report: the message, and the process exit code.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<tessera_client::Error> for Failure {
    fn from(e: tessera_client::Error) -> Self {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            message: format!("{e:#}"),
            code: 1,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Server(_) | Cmd::Dev(_)) {
        restore_sigpipe();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("Error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Lets `tessera kv list | head` end quietly instead of panicking on a closed pipe. Only for the
/// short-lived client commands: a server must keep ignoring SIGPIPE so that a peer closing a
/// socket cannot kill it.
fn restore_sigpipe() {
    // SAFETY: this runs at the start of `main`, before the async runtime or any other thread
    // exists, so no other code can be installing a signal handler concurrently; SIG_DFL is not
    // a Rust handler, so no Rust code ever runs in signal context.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let out = output::Out::new(cli.format);
    match cli.cmd {
        Cmd::Server(a) => server::run(a).await.map_err(Failure::from),
        Cmd::Dev(a) => dev::run(a, out).await.map_err(Failure::from),
        Cmd::Operator {
            cmd: OperatorCmd::Init(a),
        } => init::run(a, out).map_err(Failure::from),
        Cmd::Operator {
            cmd: OperatorCmd::ClientCert { name, dir },
        } => init::client_cert(&name, &dir, out).map_err(Failure::from),
        Cmd::Operator {
            cmd: OperatorCmd::NodeConfig { dir, id, region },
        } => init::node_config(&dir, id, &region, out).map_err(Failure::from),
        Cmd::Audit {
            cmd: AuditCmd::Verify { file },
        } => commands::audit_verify(&file, out),
        cmd => {
            let client = cli.client.connect().await?;
            commands::run(cmd, &client, out).await
        }
    }
}
