//! `tessera operator init` and `tessera operator client-cert`: the cluster's certificates and
//! node configurations, written to a directory. Private keys are created 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::output::{pairs, Out};
use crate::config::{NodeConfig, PeerConfig, RaftTuning};
use crate::raft::{node_dns_name, parse_node_dns_name};
use crate::shares::keys;
use crate::state::genesis::{self, GenesisDoc, GenesisVoter};
use crate::state::topology;
use crate::state::validate_name;
use crate::tls::issue::{issue_client, issue_node, new_ca, Issued};

/// Identity of the administrator certificate `init` creates; it holds the root policy.
pub const ADMIN: &str = "admin";

#[derive(Args, Clone)]
pub struct InitArgs {
    /// Directory to write into (created; must not already hold a cluster).
    #[arg(long)]
    pub dir: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Regions, one per node or assigned round-robin (e.g. eu-west,us-east,ap-south).
    #[arg(long, value_delimiter = ',', default_value = "local")]
    pub regions: Vec<String>,
    /// Host (IP) the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Node N serves its API on base-port + N and its metrics on base-port + 100 + N.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// Shares needed to read a secret; default: the smallest that keeps the topology
    /// guarantee (no region can reconstruct alone, losing any region loses nothing).
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Accept a topology that breaks the guarantee (single-region development setups).
    #[arg(long)]
    pub allow_unsafe_topology: bool,
    /// Snapshot and compact the Raft log every N applied entries.
    #[arg(long, default_value_t = RaftTuning::default().snapshot_logs_since_last)]
    pub snapshot_every: u64,
}

pub type InitOptions = InitArgs;

/// Writes a file that only the owner may read (private keys, the CA key).
pub(super) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

pub(super) fn write_public(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

pub(super) fn env_sh(dir: &Path, addr: &str, name: &str) -> String {
    format!(
        "# Source this file to talk to the cluster as {name:?}.\nexport TESSERA_ADDR={addr}\nexport TESSERA_CACERT={ca}\nexport TESSERA_CLIENT_CERT={crt}\nexport TESSERA_CLIENT_KEY={key}\n",
        ca = dir.join("ca.crt").display(),
        crt = dir.join(format!("{name}.crt")).display(),
        key = dir.join(format!("{name}.key")).display(),
    )
}

/// Creates the whole cluster layout and returns the node configurations.
pub fn init_cluster(a: &InitOptions) -> anyhow::Result<Vec<NodeConfig>> {
    if a.nodes == 0 || a.nodes > 99 {
        anyhow::bail!("--nodes must be between 1 and 99 (got {})", a.nodes);
    }
    if a.regions.is_empty()
        || a.regions
            .iter()
            .any(|r| validate_name("region", r).is_err())
    {
        anyhow::bail!(
            "--regions must be a comma-separated list of names (letters, digits, '-', '_', '.'), got {:?}",
            a.regions.join(",")
        );
    }
    if a.host.parse::<std::net::IpAddr>().is_err() {
        anyhow::bail!("--host must be an IP address, got {:?}", a.host);
    }
    if u32::from(a.base_port) + 100 + a.nodes as u32 > 65535 || a.base_port < 1024 {
        anyhow::bail!(
            "--base-port {} leaves no room for {} nodes",
            a.base_port,
            a.nodes
        );
    }
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    if dir.join("ca.crt").exists() {
        anyhow::bail!(
            "{} already holds a cluster (ca.crt exists); choose an empty directory",
            dir.display()
        );
    }
    let regions: Vec<String> = (1..=a.nodes)
        .map(|id| a.regions[((id - 1) as usize) % a.regions.len()].clone())
        .collect();
    let counts = topology::region_counts(regions.iter().map(String::as_str));
    let threshold = match (a.threshold, a.allow_unsafe_topology) {
        (Some(t), false) => {
            topology::check(&counts, t as usize).map_err(|e| {
                anyhow::anyhow!(
                    "--threshold {t}: {e}; pass --allow-unsafe-topology to accept it anyway"
                )
            })?;
            t
        }
        (Some(t), true) => {
            if t < 2 || t as u64 > a.nodes.max(2) {
                anyhow::bail!("--threshold {t} is impossible with {} nodes", a.nodes);
            }
            t
        }
        (None, unsafe_ok) => match topology::smallest_safe_threshold(&counts) {
            Some(t) => t as u32,
            None if unsafe_ok => topology::fallback_threshold(a.nodes as usize) as u32,
            None => {
                let e = topology::check(&counts, topology::fallback_threshold(a.nodes as usize))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                anyhow::bail!(
                    "no threshold keeps the topology guarantee for {} nodes in regions {}: {e}. Spread the nodes over more regions, or pass --allow-unsafe-topology for a development setup",
                    a.nodes,
                    counts.iter().map(|(r, c)| format!("{r}={c}")).collect::<Vec<_>>().join(", ")
                )
            }
        },
    };
    let cluster_id = format!("tessera-{:016x}", rand08::random::<u64>());
    let ca = new_ca(&cluster_id)?;
    write_public(&dir.join("ca.crt"), ca.cert_pem.as_bytes())?;
    write_private(&dir.join("ca.key"), ca.key_pem.as_bytes())?;

    let mut peers: Vec<PeerConfig> = Vec::new();
    for id in 1..=a.nodes {
        let name = node_dns_name(id);
        let (sealing_key, ack_key) = keys::create(
            id,
            &dir.join(format!("{name}.kek")),
            &dir.join(format!("{name}.keys")),
            write_private,
        )?;
        peers.push(PeerConfig {
            id,
            address: format!("{}:{}", a.host, a.base_port as u64 + id),
            region: regions[(id - 1) as usize].clone(),
            sealing_key,
            ack_key,
            certificate: String::new(),
        });
    }
    for p in peers.iter_mut() {
        let name = node_dns_name(p.id);
        let cert = issue_node(&ca, p.id, &a.host, &attestation(p)?)?;
        write_public(&dir.join(format!("{name}.crt")), cert.cert_pem.as_bytes())?;
        write_private(&dir.join(format!("{name}.key")), cert.key_pem.as_bytes())?;
        p.certificate = cert.cert_pem.clone();
    }
    // The admin's certificate lives 90 days like every client certificate (renewed with
    // `operator client-cert admin`). Its key signs the genesis document.
    let admin = issue_client(&ca, ADMIN, time::Duration::days(90))?;
    write_client(&dir, ADMIN, &admin, &peers[0].address)?;
    let voters = peers
        .iter()
        .map(|p| {
            (
                p.id,
                GenesisVoter {
                    address: p.address.clone(),
                    certificate: p.certificate.clone(),
                },
            )
        })
        .collect();
    let doc = GenesisDoc::first(
        &cluster_id,
        threshold,
        a.allow_unsafe_topology,
        ADMIN,
        voters,
    );
    let genesis = genesis::sign(&doc, &admin.key_pem, &admin.cert_pem)?;
    write_public(
        &dir.join("genesis.json"),
        serde_json::to_string_pretty(&genesis)?.as_bytes(),
    )?;
    let mut configs = Vec::new();
    for p in &peers {
        let name = node_dns_name(p.id);
        let cfg = NodeConfig {
            id: p.id,
            cluster_id: cluster_id.clone(),
            region: p.region.clone(),
            api_addr: p.address.clone(),
            metrics_addr: format!("{}:{}", a.host, a.base_port as u64 + 100 + p.id),
            data_dir: dir.join(&name),
            audit_file: None,
            ca_cert: dir.join("ca.crt"),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            kek_file: dir.join(format!("{name}.kek")),
            keys_file: dir.join(format!("{name}.keys")),
            genesis: Some(dir.join("genesis.json")),
            bootstrap: true,
            raft: RaftTuning {
                snapshot_logs_since_last: a.snapshot_every.max(1),
                max_in_snapshot_log_to_keep: (a.snapshot_every / 10).min(500),
                ..RaftTuning::default()
            },
            peers: peers.clone(),
            webhook: None,
        };
        write_public(
            &dir.join(format!("{name}.toml")),
            toml::to_string_pretty(&cfg)?.as_bytes(),
        )?;
        configs.push(cfg);
    }
    write_public(
        &dir.join("env.sh"),
        env_sh(&dir, &peers[0].address, ADMIN).as_bytes(),
    )?;
    Ok(configs)
}

fn write_client(dir: &Path, name: &str, c: &Issued, addr: &str) -> anyhow::Result<()> {
    write_public(&dir.join(format!("{name}.crt")), c.cert_pem.as_bytes())?;
    write_private(&dir.join(format!("{name}.key")), c.key_pem.as_bytes())?;
    if name != ADMIN {
        write_public(
            &dir.join(format!("{name}.env.sh")),
            env_sh(dir, addr, name).as_bytes(),
        )?;
    }
    Ok(())
}

pub fn run(a: InitArgs, out: Out) -> anyhow::Result<()> {
    let configs = init_cluster(&a)?;
    let dir = a.dir.canonicalize()?;
    out.emit(
        json!({
            "dir": dir,
            "cluster_id": configs[0].cluster_id,
            "nodes": configs.iter().map(|c| json!({
                "id": c.id, "region": c.region, "api_addr": c.api_addr,
                "metrics_addr": c.metrics_addr,
                "config": dir.join(format!("{}.toml", node_dns_name(c.id))),
            })).collect::<Vec<_>>(),
            "env": dir.join("env.sh"),
        }),
        || {
            println!(
                "Initialized cluster {} in {}",
                configs[0].cluster_id,
                dir.display()
            );
            super::output::table(
                &["ID", "REGION", "API", "METRICS", "CONFIG"],
                &configs
                    .iter()
                    .map(|c| {
                        vec![
                            node_dns_name(c.id),
                            c.region.clone(),
                            c.api_addr.clone(),
                            c.metrics_addr.clone(),
                            format!("{}.toml", node_dns_name(c.id)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!(
                "\nStart each node with: tessera server --config {}/<ID>.toml",
                dir.display()
            );
            println!("Then: source {}/env.sh", dir.display());
        },
    );
    Ok(())
}

/// A certificate lifetime: `90d`, `12h` or `30m`, from 10 minutes to 825 days.
pub(super) fn parse_lifetime(ttl: &str) -> anyhow::Result<time::Duration> {
    let bad = || {
        anyhow::anyhow!("--ttl {ttl:?}: give a number and a unit, d, h or m (e.g. 90d, 12h, 30m)")
    };
    let (n, unit) = ttl.split_at(ttl.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "d" => time::Duration::days(n),
        "h" => time::Duration::hours(n),
        "m" => time::Duration::minutes(n),
        _ => return Err(bad()),
    };
    if d < time::Duration::minutes(10) || d > time::Duration::days(825) {
        anyhow::bail!("--ttl {ttl:?}: a certificate lives 10 minutes to 825 days");
    }
    Ok(d)
}

pub fn client_cert(name: &str, dir: &Path, ttl: &str, renew: bool, out: Out) -> anyhow::Result<()> {
    validate_name("identity", name).map_err(|e| anyhow::anyhow!(e))?;
    let lifetime = parse_lifetime(ttl)?;
    if parse_node_dns_name(name).is_some() {
        anyhow::bail!("{name:?} is reserved for node certificates; choose another identity name");
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e} (is this the directory `tessera operator init` wrote?)",
                dir.join(f).display()
            )
        })
    };
    let ca = Issued {
        cert_pem: read("ca.crt")?,
        key_pem: read("ca.key")?.into(),
    };
    if dir.join(format!("{name}.crt")).exists() && !renew {
        anyhow::bail!(
            "{} already exists (--renew replaces it)",
            dir.join(format!("{name}.crt")).display()
        );
    }
    let addr = std::fs::read_to_string(dir.join("node1.toml"))
        .ok()
        .and_then(|t| toml::from_str::<NodeConfig>(&t).ok())
        .map(|c| c.api_addr)
        .unwrap_or_else(|| "127.0.0.1:7101".into());
    let issued = issue_client(&ca, name, lifetime)?;
    if renew {
        for ext in ["crt", "key", "env.sh"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.{ext}")));
        }
    }
    write_client(&dir, name, &issued, &addr)?;
    let serial = crate::tls::serial_of_pem(&issued.cert_pem)?;
    let files = [
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.env.sh")),
    ];
    out.emit(
        json!({ "identity": name, "serial": serial, "files": files }),
        || {
            println!("Issued a client certificate for identity {name:?}:");
            pairs(&[
                ("serial", serial.clone()),
                ("valid for", ttl.to_string()),
                ("certificate", files[0].display().to_string()),
                ("key", files[1].display().to_string()),
                ("env", format!("source {}", files[2].display())),
            ]);
            println!("It has no policy yet: `tessera policy attach NAME --identity {name}`.");
        },
    );
    Ok(())
}

/// `tessera operator node-config`: certificate and configuration for a node that will join an
/// existing cluster (it starts with `bootstrap = false` and waits for `members add`).
pub fn node_config(dir: &Path, id: u64, region: &str, out: Out) -> anyhow::Result<()> {
    validate_name("region", region).map_err(|e| anyhow::anyhow!(e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
    let name = node_dns_name(id);
    if id == 0 {
        anyhow::bail!("--id must be 1 or more");
    }
    if dir.join(format!("{name}.toml")).exists() {
        anyhow::bail!(
            "{} already exists: node {id} is taken",
            dir.join(format!("{name}.toml")).display()
        );
    }
    let template: NodeConfig = NodeConfig::load(&dir.join("node1.toml")).map_err(|e| {
        anyhow::anyhow!("{e} (is this the directory `tessera operator init` wrote?)")
    })?;
    let ca = Issued {
        cert_pem: std::fs::read_to_string(dir.join("ca.crt"))?,
        key_pem: std::fs::read_to_string(dir.join("ca.key"))?.into(),
    };
    let host = template
        .api_addr
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = |addr: &str| -> u64 {
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
    };
    let base = port(&template.api_addr) - template.id;
    let (sealing_key, ack_key) = keys::create(
        id,
        &dir.join(format!("{name}.kek")),
        &dir.join(format!("{name}.keys")),
        write_private,
    )?;
    let peer = PeerConfig {
        id,
        address: String::new(),
        region: region.to_string(),
        sealing_key,
        ack_key,
        certificate: String::new(),
    };
    let cert = issue_node(&ca, id, &host, &attestation(&peer)?)?;
    write_public(&dir.join(format!("{name}.crt")), cert.cert_pem.as_bytes())?;
    write_private(&dir.join(format!("{name}.key")), cert.key_pem.as_bytes())?;
    let cfg = NodeConfig {
        id,
        region: region.to_string(),
        api_addr: format!("{host}:{}", base + id),
        metrics_addr: format!("{host}:{}", base + 100 + id),
        data_dir: dir.join(&name),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        kek_file: dir.join(format!("{name}.kek")),
        keys_file: dir.join(format!("{name}.keys")),
        // A joiner starts from the log (the genesis document is in it), not from a file.
        genesis: None,
        bootstrap: false,
        ..template
    };
    let path = dir.join(format!("{name}.toml"));
    write_public(&path, toml::to_string_pretty(&cfg)?.as_bytes())?;
    out.emit(
        json!({ "id": id, "config": path, "api_addr": cfg.api_addr, "region": region }),
        || {
            println!("Wrote {} for a joining node.", path.display());
            println!("1. tessera server --config {}", path.display());
            println!(
                "2. tessera operator members add --id {id} --api-addr {} --region {region}",
                cfg.api_addr
            );
        },
    );
    Ok(())
}

/// What the CA attests in a node's certificate: its region and public keys.
fn attestation(p: &PeerConfig) -> anyhow::Result<tessera_crypto::attest::Attestation> {
    let key = |hex_key: &str, what: &str| -> anyhow::Result<[u8; 32]> {
        hex::decode(hex_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("node {}: malformed {what} key", p.id))
    };
    Ok(tessera_crypto::attest::Attestation {
        region: p.region.clone(),
        sealing_key: key(&p.sealing_key, "sealing")?,
        ack_key: key(&p.ack_key, "acknowledgement")?,
    })
}
