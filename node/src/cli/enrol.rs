//! Enrolment without a shared directory, for real clusters: the CA and the admin key stay on
//! an offline machine, and each node makes its own keys.
//!
//! 1. `tessera operator ca init --dir CA` (offline): the cluster CA, its id, and the first
//!    admin's client certificate.
//! 2. `tessera node init --dir HOME --id N --region R --api-addr HOST:PORT --ca-cert ca.crt`
//!    (on node N): its KEK, sealing and acknowledgement keys, TLS key, configuration, and a
//!    signing request that its acknowledgement key signs.
//! 3. `tessera operator ca sign nodeN.request.json --dir CA` (offline): the node's certificate,
//!    with the region and public keys the CA attests.
//! 4. `tessera operator genesis --dir CA --nodes 1,2,3` (offline): the genesis document, signed
//!    with the admin key.
//! 5. Copy `nodeN.crt` and `genesis.json` to node N; `tessera server --config HOME/nodeN.toml`.
//!
//! # Security
//!
//! No private key travels: a node's keys are made on it and never leave it, and only public
//! files (a request, a certificate, the genesis document, the CA certificate) move between the
//! machines. A request is signed by the node's TLS key (the CSR) and by its acknowledgement key
//! over every field, so a changed region, key or address is refused at signing; `node init`
//! and `ca sign` print the same fingerprint for the operator to compare.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::init::{env_sh, write_private, write_public, ADMIN};
use super::output::{pairs, Out};
use crate::config::{NodeConfig, RaftTuning};
use crate::raft::node_dns_name;
use crate::shares::keys::{self, FileKeyProvider};
use crate::state::genesis::{self, GenesisDoc, GenesisVoter};
use crate::state::{topology, validate_name};
use crate::tls::issue::{issue_client, new_ca, node_request, sign_node_request, Issued};

/// The request file's `format`.
const REQUEST_FORMAT: &str = "tessera-node-request-v1";

/// What the CA's common name starts with; the cluster id follows.
const CA_NAME_PREFIX: &str = "Tessera cluster CA ";

/// A node's request for its certificate (public; `nodeN.request.json`).
#[derive(Serialize, Deserialize)]
struct NodeRequest {
    format: String,
    cluster_id: String,
    id: u64,
    region: String,
    /// Where the node serves (host:port).
    address: String,
    /// X25519 sealing key and Ed25519 acknowledgement key (hex).
    sealing_key: String,
    ack_key: String,
    /// The certificate signing request of its TLS key (PEM).
    csr: String,
    /// The acknowledgement key's signature over every field above (hex).
    signature: String,
}

impl NodeRequest {
    fn statement(&self) -> Vec<u8> {
        let fields = json!([
            self.format,
            self.cluster_id,
            self.id,
            self.region,
            self.address,
            self.sealing_key,
            self.ack_key,
            self.csr
        ]);
        [
            b"tessera node request v1\0".as_slice(),
            fields.to_string().as_bytes(),
        ]
        .concat()
    }

    /// What `node init` and `ca sign` both print, for the operator to compare.
    fn fingerprint(&self) -> String {
        let d = hex::encode(&Sha256::digest(self.statement())[..12]);
        d.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// What the CA keeps of each node it signed (`CA/nodes/nodeN.json`), for the genesis.
#[derive(Serialize, Deserialize)]
struct Signed {
    id: u64,
    address: String,
    region: String,
    certificate: String,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

fn ca_of(dir: &Path) -> anyhow::Result<Issued> {
    Ok(Issued {
        cert_pem: read(&dir.join("ca.crt"))?,
        key_pem: read(&dir.join("ca.key"))
            .map_err(|e| anyhow::anyhow!("{e} (is this the directory `operator ca init` wrote?)"))?
            .into(),
    })
}

/// The cluster id the CA certificate names.
fn cluster_id_of(ca_pem: &str) -> anyhow::Result<String> {
    let der = tessera_crypto::attest::pem_to_der(ca_pem.as_bytes())?;
    let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
        '_,
        x509_parser::error::X509Error,
    >>::from_der(&der)
    .map_err(|e| anyhow::anyhow!("unreadable CA certificate: {e}"))?;
    tessera_crypto::attest::common_name(&cert)
        .and_then(|cn| cn.strip_prefix(CA_NAME_PREFIX).map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("the CA certificate does not name a Tessera cluster"))
}

/// `tessera operator ca init`.
pub fn ca_init(
    dir: &Path,
    cluster_id: Option<String>,
    admin_ttl: &str,
    out: Out,
) -> anyhow::Result<()> {
    let admin_lifetime = super::init::parse_lifetime(admin_ttl)?;
    std::fs::create_dir_all(dir)?;
    if dir.join("ca.key").exists() {
        anyhow::bail!("{} already holds a CA", dir.display());
    }
    let cluster_id =
        cluster_id.unwrap_or_else(|| format!("tessera-{:016x}", rand08::random::<u64>()));
    validate_name("cluster id", &cluster_id).map_err(|e| anyhow::anyhow!(e))?;
    let ca = new_ca(&cluster_id)?;
    write_public(&dir.join("ca.crt"), ca.cert_pem.as_bytes())?;
    write_private(&dir.join("ca.key"), ca.key_pem.as_bytes())?;
    // Short-lived like every client certificate: a stolen admin key ends with it (or sooner,
    // by `operator revoke`); the CA machine renews it.
    let admin = issue_client(&ca, ADMIN, admin_lifetime)?;
    write_public(&dir.join(format!("{ADMIN}.crt")), admin.cert_pem.as_bytes())?;
    write_private(&dir.join(format!("{ADMIN}.key")), admin.key_pem.as_bytes())?;
    std::fs::create_dir_all(dir.join("nodes"))?;
    let dir = dir.canonicalize()?;
    out.emit(json!({ "cluster_id": cluster_id, "dir": dir }), || {
        println!("Created the CA of cluster {cluster_id} in {}.", dir.display());
        println!("Keep this directory offline: it holds ca.key and admin.key.");
        println!(
            "Next, on each node: tessera node init --id N --region R --api-addr HOST:PORT --ca-cert ca.crt --dir DIR"
        );
    });
    Ok(())
}

#[derive(Args, Clone)]
pub struct NodeInitArgs {
    /// The node's own directory (its keys, configuration and data); created.
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub id: u64,
    #[arg(long)]
    pub region: String,
    /// Where it serves clients and peers (host:port, an IP host).
    #[arg(long)]
    pub api_addr: String,
    /// Where it serves /metrics; default: the API host, port + 100.
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// The cluster CA certificate (public), copied from the CA machine.
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// A node that joins a running cluster (`members add`) rather than one of the first.
    #[arg(long)]
    pub join: bool,
}

/// `tessera node init`: on the node itself.
pub fn node_init(a: &NodeInitArgs, out: Out) -> anyhow::Result<()> {
    validate_name("region", &a.region).map_err(|e| anyhow::anyhow!(e))?;
    if a.id == 0 {
        anyhow::bail!("--id must be 1 or more");
    }
    let addr: std::net::SocketAddr = a.api_addr.parse().map_err(|_| {
        anyhow::anyhow!(
            "--api-addr {:?} must be host:port with an IP host, e.g. 10.0.1.5:7101",
            a.api_addr
        )
    })?;
    let metrics_addr = match &a.metrics_addr {
        Some(m) => m.clone(),
        None => format!("{}:{}", addr.ip(), addr.port().saturating_add(100)),
    };
    let ca_pem = read(&a.ca_cert)?;
    let cluster_id = cluster_id_of(&ca_pem)?;
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    let name = node_dns_name(a.id);
    if dir.join(format!("{name}.toml")).exists() {
        anyhow::bail!(
            "{} already exists",
            dir.join(format!("{name}.toml")).display()
        );
    }
    write_public(&dir.join("ca.crt"), ca_pem.as_bytes())?;
    let (kek_file, keys_file) = (
        dir.join(format!("{name}.kek")),
        dir.join(format!("{name}.keys")),
    );
    let (sealing_key, ack_key) = keys::create(a.id, &kek_file, &keys_file, write_private)?;
    let tls = node_request(a.id)?;
    write_private(&dir.join(format!("{name}.key")), tls.key_pem.as_bytes())?;
    let mut request = NodeRequest {
        format: REQUEST_FORMAT.into(),
        cluster_id: cluster_id.clone(),
        id: a.id,
        region: a.region.clone(),
        address: a.api_addr.clone(),
        sealing_key,
        ack_key,
        csr: tls.cert_pem.clone(),
        signature: String::new(),
    };
    let node_keys = keys::load(
        a.id,
        &FileKeyProvider {
            path: kek_file.clone(),
        },
        &keys_file,
    )?;
    request.signature = hex::encode(node_keys.ack.sign(&request.statement()));
    let request_path = dir.join(format!("{name}.request.json"));
    write_public(
        &request_path,
        serde_json::to_string_pretty(&request)?.as_bytes(),
    )?;
    let cfg = NodeConfig {
        id: a.id,
        cluster_id,
        region: a.region.clone(),
        api_addr: a.api_addr.clone(),
        metrics_addr,
        data_dir: dir.join(&name),
        audit_file: None,
        ca_cert: dir.join("ca.crt"),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        kek_file,
        keys_file,
        genesis: (!a.join).then(|| dir.join("genesis.json")),
        bootstrap: !a.join,
        raft: RaftTuning::default(),
        peers: Vec::new(),
        webhook: None,
    };
    let config = dir.join(format!("{name}.toml"));
    write_public(&config, toml::to_string_pretty(&cfg)?.as_bytes())?;
    let fingerprint = request.fingerprint();
    out.emit(
        json!({ "id": a.id, "request": request_path, "config": config, "fingerprint": fingerprint }),
        || {
            println!("Made node {}'s keys in {}; none of them leaves this machine.", a.id, dir.display());
            pairs(&[
                ("request", request_path.display().to_string()),
                ("fingerprint", fingerprint.clone()),
                ("config", config.display().to_string()),
            ]);
            println!(
                "Next: on the CA machine, `tessera operator ca sign {name}.request.json`, check the fingerprint, and copy {name}.crt{} back here.",
                if a.join { "" } else { " and genesis.json" }
            );
        },
    );
    Ok(())
}

/// `tessera operator ca sign`: on the CA machine.
pub fn ca_sign(request: &Path, dir: &Path, out: Out) -> anyhow::Result<()> {
    let ca = ca_of(dir)?;
    let r: NodeRequest = serde_json::from_str(&read(request)?)
        .map_err(|e| anyhow::anyhow!("unreadable request {}: {e}", request.display()))?;
    if r.format != REQUEST_FORMAT {
        anyhow::bail!("request format {:?}, expected {REQUEST_FORMAT:?}", r.format);
    }
    let cluster_id = cluster_id_of(&ca.cert_pem)?;
    if r.cluster_id != cluster_id {
        anyhow::bail!(
            "the request is for cluster {:?}, and this CA is cluster {cluster_id:?}",
            r.cluster_id
        );
    }
    validate_name("region", &r.region).map_err(|e| anyhow::anyhow!(e))?;
    let key = |hex_key: &str, what: &str| -> anyhow::Result<[u8; 32]> {
        hex::decode(hex_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("the request's {what} key is malformed"))
    };
    let attestation = tessera_crypto::attest::Attestation {
        region: r.region.clone(),
        sealing_key: key(&r.sealing_key, "sealing")?,
        ack_key: key(&r.ack_key, "acknowledgement")?,
    };
    let signature = hex::decode(&r.signature).unwrap_or_default();
    tessera_crypto::ack::verify_ack(&attestation.ack_key, &r.statement(), &signature).map_err(
        |_| {
            anyhow::anyhow!(
                "the request's signature does not verify: it was changed after `node init` made it"
            )
        },
    )?;
    let host = r
        .address
        .parse::<std::net::SocketAddr>()
        .map_err(|_| anyhow::anyhow!("the request's address {:?} is not host:port", r.address))?
        .ip()
        .to_string();
    let name = node_dns_name(r.id);
    let cert = sign_node_request(&ca, r.id, &host, &attestation, &r.csr)?;
    let nodes = dir.join("nodes");
    std::fs::create_dir_all(&nodes)?;
    let cert_path = nodes.join(format!("{name}.crt"));
    std::fs::write(&cert_path, &cert)?;
    let signed = Signed {
        id: r.id,
        address: r.address.clone(),
        region: r.region.clone(),
        certificate: cert,
    };
    std::fs::write(
        nodes.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&signed)?,
    )?;
    let fingerprint = r.fingerprint();
    out.emit(
        json!({ "id": r.id, "region": r.region, "address": r.address, "certificate": cert_path, "fingerprint": fingerprint }),
        || {
            println!("Signed node {}'s certificate, attesting its keys and region:", r.id);
            pairs(&[
                ("region", r.region.clone()),
                ("address", r.address.clone()),
                ("fingerprint", fingerprint.clone()),
                ("certificate", cert_path.display().to_string()),
            ]);
            println!("Check the fingerprint against what `node init` printed on node {}.", r.id);
        },
    );
    Ok(())
}

#[derive(Args, Clone)]
pub struct GenesisArgs {
    /// The CA directory (`operator ca init`), with the nodes `ca sign` signed.
    #[arg(long)]
    pub dir: PathBuf,
    /// The first voters, by id (each signed with `ca sign`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<u64>,
    /// Shares needed to read a secret; default: the smallest that keeps the topology guarantee.
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Accept a topology that breaks the guarantee.
    #[arg(long)]
    pub allow_unsafe_topology: bool,
}

/// `tessera operator genesis`: on the CA machine, with the admin key.
pub fn genesis(a: &GenesisArgs, out: Out) -> anyhow::Result<()> {
    let cluster_id = cluster_id_of(&read(&a.dir.join("ca.crt"))?)?;
    let mut voters = std::collections::BTreeMap::new();
    let mut regions = Vec::new();
    for id in &a.nodes {
        let path = a
            .dir
            .join("nodes")
            .join(format!("{}.json", node_dns_name(*id)));
        let s: Signed = serde_json::from_str(&read(&path).map_err(|e| {
            anyhow::anyhow!("{e}: sign node {id}'s request first (`operator ca sign`)")
        })?)?;
        regions.push(s.region.clone());
        voters.insert(
            s.id,
            GenesisVoter {
                address: s.address,
                certificate: s.certificate,
            },
        );
    }
    let counts = topology::region_counts(regions.iter().map(String::as_str));
    let threshold = match a.threshold {
        Some(t) => t,
        None => match topology::smallest_safe_threshold(&counts) {
            Some(t) => t as u32,
            None if a.allow_unsafe_topology => topology::fallback_threshold(regions.len()) as u32,
            None => anyhow::bail!(
                "no threshold keeps the topology guarantee for these regions; add nodes in other regions, or pass --allow-unsafe-topology"
            ),
        },
    };
    if !a.allow_unsafe_topology {
        topology::check(&counts, threshold as usize).map_err(|e| {
            anyhow::anyhow!(
                "--threshold {threshold}: {e}; pass --allow-unsafe-topology to accept it anyway"
            )
        })?;
    }
    let doc = GenesisDoc::first(
        &cluster_id,
        threshold,
        a.allow_unsafe_topology,
        ADMIN,
        voters,
    );
    let admin_key = read(&a.dir.join(format!("{ADMIN}.key")))?;
    let admin_cert = read(&a.dir.join(format!("{ADMIN}.crt")))?;
    let signed = genesis::sign(&doc, &admin_key, &admin_cert)?;
    let path = a.dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(&signed)?)?;
    write_env(&a.dir, &doc)?;
    out.emit(
        json!({ "genesis": path, "cluster_id": cluster_id, "threshold": threshold, "digest": signed.digest() }),
        || {
            println!("Signed the genesis of cluster {cluster_id} (t = {threshold}) with the admin key:");
            pairs(&[
                ("genesis", path.display().to_string()),
                ("digest", signed.digest()),
            ]);
            println!("Copy genesis.json to each first node, beside its configuration, and start them.");
        },
    );
    Ok(())
}

/// `env.sh` for the admin, naming the first voter's address.
fn write_env(dir: &Path, doc: &GenesisDoc) -> anyhow::Result<()> {
    let Some(first) = doc.voters.values().next() else {
        return Ok(());
    };
    let path = dir.join("env.sh");
    let _ = std::fs::remove_file(&path);
    write_public(
        &path,
        env_sh(&dir.canonicalize()?, &first.address, ADMIN).as_bytes(),
    )
}
