//! `tessera-bench grant`: what a read under a break-glass grant costs beside a plain read, at
//! concurrency 1, on a running cluster whose directory holds the CA (a `tessera dev` cluster).
//!
//! It makes two identities (a reader and an approver), a gate on `bench/bg/*` with `--reads`
//! uses, and a plain policy on `bench/plain/*`; one grant is asked for and approved. Then,
//! alternating, it reads the plain secret (`kv_get`, the SDK's normal read) and the gated one:
//! a use is committed for the version (a Raft write, timed apart), then the shares are read
//! under it (`kv_get_under`, timed: every holder's evidence check and its synced record of the
//! use are in it). The gated secret's version is looked up once, as a reader that knows it would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tessera_client::{Client, ClientConfig, PutOptions};
use tessera_node::cli::output::{table, Out};
use tessera_node::cli::Failure;

#[derive(Args)]
pub struct GrantBench {
    /// The cluster's directory (with ca.key and ca.crt): the bench makes its two identities there.
    #[arg(long)]
    dir: PathBuf,
    /// Reads of each kind (also the gate's `uses`).
    #[arg(long, default_value_t = 200)]
    reads: u32,
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        message: msg.into(),
        code: 1,
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

async fn client_as(admin: &Client, dir: &std::path::Path, name: &str) -> Result<Client, Failure> {
    let tessera = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tessera")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("tessera"));
    if !dir.join(format!("{name}.crt")).exists() {
        let out = std::process::Command::new(tessera)
            .args(["operator", "client-cert", name, "--dir"])
            .arg(dir)
            .output()
            .map_err(|e| fail(format!("tessera operator client-cert: {e}")))?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
    }
    let cfg = ClientConfig {
        address: admin.address().to_string(),
        ca_cert: dir.join("ca.crt"),
        client_cert: Some(dir.join(format!("{name}.crt"))),
        client_key: Some(dir.join(format!("{name}.key"))),
        server_name: None,
        timeout: Duration::from_secs(15),
    };
    Ok(Client::connect(&cfg).await?)
}

pub async fn run(a: GrantBench, admin: &Client, out: Out) -> Result<(), Failure> {
    let n = a.reads.clamp(1, 10_000);
    let reader = client_as(admin, &a.dir, "bench-reader").await?;
    let approver = client_as(admin, &a.dir, "bench-approver").await?;
    let gate = format!(
        "path \"bench/bg/*\" {{\n  capabilities = [\"read\"]\n  break_glass {{\n    max_ttl = \"1h\"\n    uses = {n}\n    factor \"one\" {{ approvers = [\"identity:bench-approver\"] approvals = 1 }}\n  }}\n}}\npath \"bench/plain/*\" {{\n  capabilities = [\"read\"]\n}}\n"
    );
    let name = format!("bench-gate-{n}");
    admin.write_policy(&name, &gate).await?;
    admin
        .attach_policy(&name, None, Some("bench-reader"), false)
        .await?;
    let value = [7u8; 32];
    for path in ["bench/bg/x", "bench/plain/x"] {
        admin.kv_put(path, &value, &PutOptions::default()).await?;
    }
    let opened = reader
        .breakglass_request("bench/bg/x", "read", "benchmark", 3600)
        .await?;
    let record = approver.breakglass_show(&opened.id, false).await?;
    approver.breakglass_decide(&record, true, "").await?;
    let version = admin.kv_metadata("bench/bg/x").await?.current_version;

    let (mut plain, mut used, mut under) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..n {
        if started.elapsed() > Duration::from_secs(600) {
            break;
        }
        let t = Instant::now();
        reader.kv_get("bench/plain/x", None).await?;
        plain.push(t.elapsed());
        let t = Instant::now();
        let u = reader
            .breakglass_use(&opened.id, version, Vec::new())
            .await?;
        used.push(t.elapsed());
        let t = Instant::now();
        let v = reader
            .kv_get_under("bench/bg/x", Some(version), Some(&u))
            .await?;
        under.push(t.elapsed());
        if v.value.expose() != value.as_slice() {
            return Err(fail("the gated read returned another value"));
        }
    }
    let rows = [
        ("plain read", pct(plain.clone(), 0.5), pct(plain, 0.99)),
        (
            "read under a use",
            pct(under.clone(), 0.5),
            pct(under, 0.99),
        ),
        ("commit a use", pct(used.clone(), 0.5), pct(used, 0.99)),
    ];
    out.emit(
        json!(rows
            .iter()
            .map(|(k, p50, p99)| json!({"phase": k, "p50_ms": p50, "p99_ms": p99}))
            .collect::<Vec<_>>()),
        || {
            table(
                &["PHASE", "P50 MS", "P99 MS"],
                &rows
                    .iter()
                    .map(|(k, p50, p99)| {
                        vec![k.to_string(), format!("{p50:.2}"), format!("{p99:.2}")]
                    })
                    .collect::<Vec<_>>(),
            )
        },
    );
    Ok(())
}
