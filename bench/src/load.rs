//! `tessera-bench kv` and `tessera-bench sign`: closed-loop load against a running cluster through the SDK: KV writes
//! (new secrets) and reads (of pre-written secrets), each phase bounded in time and in count,
//! at one or more concurrencies; reports throughput and p50/p99 latency. A `ping` phase times one
//! authenticated call that does no work but is audited like every call (`WhoAmI`), so that a
//! read's latency can be split into what any call costs and what the read itself adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tessera_client::{Client, PutOptions};

use tessera_node::cli::output::{table, Out};
use tessera_node::cli::Failure;

#[derive(Args)]
pub struct SignBench {
    /// Concurrencies to run, e.g. 1,16.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Most operations per phase, whatever the duration.
    #[arg(long, default_value_t = 200_000)]
    max_ops: u64,
    /// Nonce batches to compare: 1 signs in two rounds; more preprocesses commitments so
    /// that most signatures take one round (phases named "... pre").
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    nonce_batch: Vec<u32>,
}

#[derive(Args)]
pub struct KvBench {
    /// Concurrencies to run, e.g. 1,32.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Most operations per phase, whatever the duration.
    #[arg(long, default_value_t = 200_000)]
    max_ops: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// Secrets written before the read phases (read at random).
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Phases to run at each concurrency, e.g. `write` alone, so that a run's resource use
    /// (`bench/cpu.sh`) belongs to one kind of operation. `ping` is one mutually authenticated
    /// call that does no work (`WhoAmI` on the connected node), audited like every call.
    #[arg(long, value_delimiter = ',', default_value = "write,read")]
    ops: Vec<KvOp>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvOp {
    Write,
    Read,
    Ping,
}

struct Stats {
    ops: usize,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    first_error: Option<String>,
}

async fn phase<F, Fut>(client: &Client, conc: usize, dur: Duration, max_ops: u64, op: F) -> Stats
where
    F: Fn(Client, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), tessera_client::Error>> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None));
    let started = Instant::now();
    let deadline = started + dur;
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, counter, errors, first_error, op) = (
            client.clone(),
            counter.clone(),
            errors.clone(),
            first_error.clone(),
            op.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= max_ops || Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                match op(client.clone(), n).await {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("lock")
                            .get_or_insert(e.to_string());
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        if all.is_empty() {
            Duration::ZERO
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        }
    };
    let first_error = first_error.lock().expect("lock").clone();
    Stats {
        ops: all.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        first_error,
    }
}

fn report(out: Out, rows: Vec<Vec<String>>, results: Vec<serde_json::Value>) {
    out.emit(json!(results), || {
        table(
            &["OP", "CONC", "OPS", "OPS/S", "P50 MS", "P99 MS", "ERRORS"],
            &rows,
        )
    });
}

fn record(
    kind: &str,
    conc: usize,
    stats: &Stats,
    rows: &mut Vec<Vec<String>>,
    results: &mut Vec<serde_json::Value>,
) {
    let rate = stats.ops as f64 / stats.elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{kind:<9} c={conc:<3} {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ops, {} errors)",
        rate,
        ms(stats.p50),
        ms(stats.p99),
        stats.ops,
        stats.errors
    );
    if let Some(e) = &stats.first_error {
        eprintln!("  first error: {e}");
    }
    rows.push(vec![
        kind.to_string(),
        conc.to_string(),
        stats.ops.to_string(),
        format!("{rate:.0}"),
        format!("{:.2}", ms(stats.p50)),
        format!("{:.2}", ms(stats.p99)),
        stats.errors.to_string(),
    ]);
    results.push(json!({
        "op": kind.replace(' ', "_"), "concurrency": conc, "ops": stats.ops,
        "ops_per_sec": rate, "p50_ms": ms(stats.p50), "p99_ms": ms(stats.p99),
        "errors": stats.errors, "seconds": stats.elapsed.as_secs_f64(),
    }));
}

pub async fn run_sign(a: SignBench, client: &Client, out: Out) -> Result<(), Failure> {
    use tessera_client::crypto::purpose::KeyPurpose;
    use tessera_client::crypto::sign_request::SignRequest;
    use tessera_client::crypto::ssh::CertRequest;
    for (name, purpose) in [
        ("bench-raw", KeyPurpose::Raw),
        ("bench-ssh", KeyPurpose::SshUserCa),
    ] {
        if client.key_read(name).await.is_err() {
            client.key_create(name, purpose, 60).await?;
        }
    }
    let subject = tessera_client::crypto::ack::AckKey::generate().public();
    let dur = Duration::from_secs(a.duration.max(1));
    let (mut rows, mut results) = (Vec::new(), Vec::new());
    for (&conc, &batch) in a
        .concurrency
        .iter()
        .flat_map(|c| a.nonce_batch.iter().map(move |b| (c, b)))
    {
        let mut client = client.clone();
        client.set_nonce_batch(batch);
        let client = &client;
        let suffix = if batch > 1 { " pre" } else { "" };
        let stats = phase(
            client,
            conc,
            dur,
            a.max_ops,
            move |c: Client, n| async move {
                let req = SignRequest::Raw {
                    message: n.to_be_bytes().to_vec(),
                };
                c.sign("bench-raw", &req).await.map(|_| ())
            },
        )
        .await;
        record(
            &format!("sign raw{suffix}"),
            conc,
            &stats,
            &mut rows,
            &mut results,
        );
        let stats = phase(
            client,
            conc,
            dur,
            a.max_ops,
            move |c: Client, n| async move {
                let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
                let req = SignRequest::Ssh(CertRequest {
                    public_key: subject,
                    cert_type: 1,
                    key_id: "bench".into(),
                    principals: vec!["bench".into()],
                    valid_after: now - 60,
                    valid_before: now + 3600,
                    extensions: vec!["permit-pty".into()],
                    serial: n,
                    nonce: [7; 32],
                });
                c.sign("bench-ssh", &req).await.map(|_| ())
            },
        )
        .await;
        record(
            &format!("sign ssh{suffix}"),
            conc,
            &stats,
            &mut rows,
            &mut results,
        );
    }
    report(out, rows, results);
    Ok(())
}

pub async fn run_kv(a: KvBench, client: &Client, out: Out) -> Result<(), Failure> {
    let value = Arc::new(vec![b'v'; a.value_size]);
    let run_id = format!("{:08x}", rand08::random::<u32>());
    let dur = Duration::from_secs(a.duration.max(1));
    let reads = a.ops.contains(&KvOp::Read);
    if reads && a.keys == 0 {
        return Err(Failure {
            message: "--keys must be at least 1 when the read phase runs (it reads those secrets)"
                .into(),
            code: 2,
        });
    }
    // Secrets to read (none when no read phase runs).
    for k in 0..if reads { a.keys } else { 0 } {
        client
            .kv_put(
                &format!("bench/{run_id}/r/{k}"),
                &value,
                &PutOptions::default(),
            )
            .await?;
    }
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for &conc in &a.concurrency {
        for &op in &a.ops {
            let (value, run_id, keys) = (value.clone(), run_id.clone(), a.keys as u64);
            let (kind, stats) = match op {
                KvOp::Write => (
                    "write",
                    phase(client, conc, dur, a.max_ops, move |c: Client, n| {
                        let (value, path) = (value.clone(), format!("bench/{run_id}/w/{conc}/{n}"));
                        async move {
                            c.kv_put(&path, &value, &PutOptions::default())
                                .await
                                .map(|_| ())
                        }
                    })
                    .await,
                ),
                KvOp::Read => (
                    "read",
                    phase(client, conc, dur, a.max_ops, move |c: Client, n| {
                        let path =
                            format!("bench/{run_id}/r/{}", n.wrapping_mul(2654435761) % keys);
                        async move { c.kv_get(&path, None).await.map(|_| ()) }
                    })
                    .await,
                ),
                KvOp::Ping => (
                    "ping",
                    phase(client, conc, dur, a.max_ops, |c: Client, _| async move {
                        c.who_am_i().await.map(|_| ())
                    })
                    .await,
                ),
            };
            record(&format!("kv {kind}"), conc, &stats, &mut rows, &mut results);
        }
    }
    report(out, rows, results);
    Ok(())
}
