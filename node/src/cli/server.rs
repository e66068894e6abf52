//! `tessera server --config FILE`: runs one node until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::NodeConfig;
use crate::node::Node;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct ServerArgs {
    /// The node's configuration file (written by `tessera operator init`).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `tessera_node=debug,openraft=info`.
    #[arg(long, env = "TESSERA_LOG", default_value = "info,openraft=warn")]
    pub log_level: String,
}

pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_level);
    let config = NodeConfig::load(&args.config)?;
    warn_of_keys_beside(&args.config, &config);
    let (node, background) = Node::start(config).await?;
    crate::server::serve(node, background, shutdown_signal()).await
}

/// Says loudly when the CA key (or the first admin key) sits beside this node's configuration,
/// as `tessera operator init` and `tessera dev` leave it for a local cluster: whoever reads that
/// directory can issue certificates and attest keys, so a real node must not run from it. A
/// warning rather than a refusal, so that the one-directory local cluster keeps working.
fn warn_of_keys_beside(config_path: &std::path::Path, config: &NodeConfig) {
    let mut dirs = vec![config_path.parent().map(|p| p.to_path_buf())];
    dirs.push(config.ca_cert.parent().map(|p| p.to_path_buf()));
    for dir in dirs.into_iter().flatten() {
        for name in ["ca.key", "admin.key"] {
            let path = dir.join(name);
            if path.exists() {
                tracing::warn!(
                    path = %path.display(),
                    "{name} sits beside this node's configuration: whoever can read this directory can issue certificates and attest keys for the whole cluster. This is the one-directory layout of a local cluster (`operator init`, `tessera dev`); for a real node, keep the CA and the admin key off the node (docs/operations.md)"
                );
                return;
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested");
}
