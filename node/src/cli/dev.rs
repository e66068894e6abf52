//! `tessera dev`: a real local cluster in one command. Initializes a directory, starts every
//! node as a child process (`tessera server`), waits for a leader, prints the nodes, and stops
//! them all cleanly on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tessera_client::{Client, ClientConfig};
use tokio::process::{Child, Command};

use super::init::{init_cluster, InitArgs};
use super::output::{table, Out};
use crate::config::NodeConfig;
use crate::raft::node_dns_name;

#[derive(Args)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: u64,
    /// Regions, assigned round-robin: the default spreads 5 nodes 2/2/1 over 3 regions.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "eu-west,us-east,ap-south"
    )]
    regions: Vec<String>,
    /// Keep the cluster in DIR (reused on the next run); default: a temporary directory that is
    /// removed on exit.
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Allow a layout that breaks the topology guarantee (e.g. a single region).
    #[arg(long)]
    allow_unsafe_topology: bool,
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
}

pub async fn run(a: DevArgs, out: Out) -> anyhow::Result<()> {
    let (dir, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            tempfile::Builder::new()
                .prefix("tessera-dev-")
                .tempdir()?
                .keep(),
            true,
        ),
    };
    let dir = {
        std::fs::create_dir_all(&dir)?;
        dir.canonicalize()?
    };
    let configs: Vec<NodeConfig> = if dir.join("node1.toml").exists() {
        eprintln!("Reusing the cluster in {}", dir.display());
        let mut v = Vec::new();
        for id in 1.. {
            let p = dir.join(format!("{}.toml", node_dns_name(id)));
            if !p.exists() {
                break;
            }
            v.push(NodeConfig::load(&p)?);
        }
        v
    } else {
        init_cluster(&InitArgs {
            dir: dir.clone(),
            nodes: a.nodes,
            regions: a.regions.clone(),
            host: a.host.clone(),
            base_port: a.base_port,
            snapshot_every: crate::config::RaftTuning::default().snapshot_logs_since_last,
            threshold: None,
            allow_unsafe_topology: a.allow_unsafe_topology,
        })?
    };

    let exe = std::env::current_exe()?;
    let mut children: Vec<(u64, Child)> = Vec::new();
    for c in &configs {
        let name = node_dns_name(c.id);
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(&exe)
            .arg("server")
            .arg("--config")
            .arg(dir.join(format!("{name}.toml")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        children.push((c.id, child));
    }

    let result = wait_for_leader(&dir, &configs, &mut children).await;
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            stop(&mut children).await;
            return Err(e);
        }
    };
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                node_dns_name(n.id),
                n.region.clone(),
                n.address.clone(),
                if status.leader == Some(n.id) {
                    "leader".into()
                } else {
                    n.role.clone()
                },
            ]
        })
        .collect();
    out.emit(
        json!({
            "dir": dir,
            "leader": status.leader,
            "nodes": status.nodes.iter().map(|n| json!({
                "id": n.id, "region": n.region, "address": n.address,
                "role": if status.leader == Some(n.id) { "leader".to_string() } else { n.role.clone() },
            })).collect::<Vec<_>>(),
            "env": dir.join("env.sh"),
        }),
        || {
            println!("Tessera dev cluster is up ({} nodes, logs in {}):\n", rows.len(), dir.display());
            table(&["ID", "REGION", "ADDRESS", "ROLE"], &rows);
            // The binary's own path, so the hint works under `cargo run` too.
            let me = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "tessera".into());
            println!("\nIn another shell:\n\n    source {}/env.sh\n    {me} status\n", dir.display());
            println!("Press Ctrl-C to stop the cluster.");
        },
    );

    tokio::select! {
        _ = super::server::shutdown_signal() => {}
        exited = first_exit(&mut children) => {
            eprintln!("{exited}; stopping the cluster (see the node logs in {})", dir.display());
        }
    }
    stop(&mut children).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("Stopped.");
    Ok(())
}

async fn wait_for_leader(
    dir: &std::path::Path,
    configs: &[NodeConfig],
    children: &mut [(u64, Child)],
) -> anyhow::Result<tessera_client::proto::StatusReply> {
    let cfg = ClientConfig {
        address: configs[0].api_addr.clone(),
        ca_cert: dir.join("ca.crt"),
        client_cert: Some(dir.join("admin.crt")),
        client_key: Some(dir.join("admin.key")),
        server_name: None,
        timeout: Duration::from_secs(5),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        for (id, child) in children.iter_mut() {
            if let Ok(Some(st)) = child.try_wait() {
                anyhow::bail!(
                    "{} exited at start ({st}); see {}",
                    node_dns_name(*id),
                    dir.join(format!("{}.log", node_dns_name(*id))).display()
                );
            }
        }
        match Client::connect(&cfg).await {
            Ok(c) => match c.status().await {
                Ok(s) if s.leader.is_some() && s.nodes.iter().all(|n| n.reachable) => {
                    // Ready once the first leader has written the threshold.
                    if c.topology().await.is_ok_and(|t| t.threshold > 0) {
                        return Ok(s);
                    }
                    last = "waiting for the cluster settings".into();
                }
                Ok(_) => last = "waiting for a leader and every node".into(),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    anyhow::bail!("the cluster did not elect a leader within 60 s: {last}")
}

async fn first_exit(children: &mut [(u64, Child)]) -> String {
    loop {
        for (id, child) in children.iter_mut() {
            if let Ok(Some(st)) = child.try_wait() {
                return format!("{} exited ({st})", node_dns_name(*id));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// SIGTERM every child, give them 10 s to flush and exit, then kill what is left.
async fn stop(children: &mut [(u64, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, child) in children.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}
