//! `tessera-bench floor`: what one read at concurrency 1 cannot avoid on this machine, measured
//! piece by piece in this one process, with no cluster.
//!
//! Why it exists: a closed loop of one reader runs one read after another, so its rate is at
//! most one over the read's critical path. That path always holds a synced audit line on each
//! holder (law 4: no audit, no share; the holders sync at the same time, on this machine's one
//! disk), the reader opening the sealed shares and checking them against the commitments (law 3)
//! before combining, and one call over the transport every Tessera process speaks (gRPC over
//! mutual TLS, docs/architecture.md), timed here against a server that only echoes. Summing the medians of
//! those pieces gives a lower bound for a read, to compare with another system's measured rate.
//! Work that could in principle run beside the sync (the holder sealing its share) or before
//! the read (the reader's one-time key) is measured and shown, but left out of the sum, so that
//! the bound stays a bound; so is a bare TCP round trip, which the gRPC call already contains.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tessera_crypto::at_rest::Kek;
use tessera_crypto::release::{Item, Opener, Reply, Sealer};
use tessera_crypto::seal::SealingKey;
use tessera_crypto::value;
use tessera_crypto::vss::{self, Lagrange, Share};
use tessera_proto::raft_client::RaftClient;
use tessera_proto::raft_server::{Raft as RaftRpc, RaftServer};
use tessera_proto::{Empty, NodeStatusReply, RaftPayload, ReadIndexReply};
use tonic::{Request, Response, Status};

use tessera_node::audit::{AuditLog, AuditRecord};
use tessera_node::cli::output::{table, Out};
use tessera_node::cli::Failure;
use tessera_node::tls::{issue, TlsMaterial};

#[derive(Args)]
pub struct FloorBench {
    /// Share holders a read asks (the cluster's threshold `t`; 2 on a 3-node cluster).
    #[arg(long, default_value_t = 2)]
    threshold: usize,
    /// Rounds of each measurement (each is bounded by this count).
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Where the audit logs of the sync measurement go: put it on the disk that holds the
    /// nodes' data directories. Removed afterwards.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Bytes a request and its answer each carry in the network round trip.
    #[arg(long, default_value_t = 512)]
    message_size: usize,
}

/// Medians and tails of one measured piece, in microseconds.
struct Piece {
    name: &'static str,
    in_floor: bool,
    p50: f64,
    p99: f64,
}

fn piece(name: &'static str, in_floor: bool, mut samples: Vec<Duration>) -> Piece {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    Piece {
        name,
        in_floor,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn timed(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect()
}

fn failure(message: String) -> Failure {
    Failure { message, code: 1 }
}

/// A line as long as a real release's: the same fields, a typical identity and path.
fn release_record(i: usize) -> AuditRecord {
    AuditRecord {
        time: String::new(),
        request_id: format!("floor-{i:016x}"),
        identity: "CN=admin,O=tessera-client".into(),
        operation: "kv.release_share".into(),
        path: format!("bench/floor/r/{}", i % 100),
        outcome: "ok".into(),
        remote_addr: "127.0.0.1:50000".into(),
        error: None,
        detail: None,
    }
}

/// `t` holders syncing their audit line at the same moment, each to its own log on the same
/// disk: the time until the last of them is durable, per round.
fn audit_syncs(dir: &std::path::Path, t: usize, n: usize) -> Result<Vec<Duration>, Failure> {
    let logs: Vec<AuditLog> = (0..t)
        .map(|h| {
            let path = dir.join(format!("{t}-at-once-holder{h}-audit.log"));
            AuditLog::open(&path).map_err(|e| failure(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let start = Arc::new(Barrier::new(t));
    let per_holder: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = logs
            .iter()
            .map(|log| {
                let start = start.clone();
                s.spawn(move || {
                    let mut took = Vec::with_capacity(n);
                    for i in 0..n {
                        start.wait();
                        let t0 = Instant::now();
                        log.append(&release_record(i)).map_err(|e| e.to_string())?;
                        took.push(t0.elapsed());
                    }
                    Ok(took)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("audit thread panicked".into()))
            })
            .collect()
    });
    let per_holder: Vec<Vec<Duration>> = per_holder
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(failure)?;
    Ok((0..n)
        .map(|i| per_holder.iter().map(|h| h[i]).max().unwrap_or_default())
        .collect())
}

/// One request and one answer of `size` bytes each over loopback TCP, between two blocking
/// threads with Nagle off: the least any network protocol pays for a round trip here.
fn tcp_round_trips(size: usize, n: usize) -> Result<Vec<Duration>, Failure> {
    let io = |e: std::io::Error| failure(format!("loopback round trip: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr).map_err(io)?;
    c.set_nodelay(true).map_err(io)?;
    let request = vec![7u8; size];
    let mut answer = vec![0u8; size];
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        c.write_all(&request).map_err(io)?;
        c.read_exact(&mut answer).map_err(io)?;
        took.push(t0.elapsed());
    }
    echo.join()
        .map_err(|_| failure("loopback echo thread panicked".into()))?
        .map_err(io)?;
    Ok(took)
}

/// The server end of the nodes' transport with nothing behind it: `Forward` sends the request's
/// bytes back; every other call is refused.
struct Echo;

fn echo_only() -> Status {
    Status::unimplemented("this server only echoes Forward")
}

#[tonic::async_trait]
impl RaftRpc for Echo {
    async fn append_entries(
        &self,
        _: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        Err(echo_only())
    }
    async fn vote(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        Err(echo_only())
    }
    async fn install_snapshot(
        &self,
        _: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        Err(echo_only())
    }
    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        Ok(Response::new(RaftPayload {
            data: req.into_inner().data,
        }))
    }
    async fn read_index(&self, _: Request<Empty>) -> Result<Response<ReadIndexReply>, Status> {
        Err(echo_only())
    }
    async fn node_status(&self, _: Request<Empty>) -> Result<Response<NodeStatusReply>, Status> {
        Err(echo_only())
    }
}

/// One gRPC call of `size` bytes each way over mutual TLS on loopback, as one node calls another
/// (tonic and rustls, Nagle off, the connection already open), to a server in this process that
/// only echoes. Client and server share this process's runtime, so a wake-up that crosses
/// processes in a real read is cheaper here: the figure stays a lower bound.
async fn grpc_round_trips(size: usize, n: usize) -> Result<Vec<Duration>, Failure> {
    let err = |e: &dyn std::fmt::Display| failure(format!("gRPC round trip over mutual TLS: {e}"));
    // A throwaway CA and two node certificates, made in memory and dropped at the end.
    let ca = issue::new_ca("floor").map_err(|e| err(&e))?;
    let material = |id| -> Result<TlsMaterial, Failure> {
        let attested = tessera_crypto::attest::Attestation {
            region: "a".into(),
            sealing_key: [0; 32],
            ack_key: [0; 32],
        };
        let node = issue::issue_node(&ca, id, "127.0.0.1", &attested).map_err(|e| err(&e))?;
        Ok(TlsMaterial::from_pem(
            ca.cert_pem.as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
        ))
    };
    let (server_tls, client_tls) = (material(1)?, material(2)?);
    let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
        .map_err(|e| err(&e))?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().map_err(|e| err(&e))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .tls_config(server_tls.server())
        .map_err(|e| err(&e))?
        .tcp_nodelay(true)
        .add_service(RaftServer::new(Echo))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    let server = tokio::spawn(server);
    let measured = async {
        let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
            .map_err(|e| err(&e))?
            .tls_config(client_tls.to_peer(1))
            .map_err(|e| err(&e))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| err(&e))?;
        let mut client = RaftClient::new(channel);
        let payload = vec![7u8; size];
        let mut call = async || -> Result<(), Failure> {
            let back = client
                .forward(RaftPayload {
                    data: payload.clone(),
                })
                .await
                .map_err(|s| err(&s.message()))?;
            if back.get_ref().data != payload {
                return Err(err(&"the echo came back changed"));
            }
            Ok(())
        };
        // The handshake and HTTP/2 set-up happen once per connection: not timed.
        call().await?;
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            call().await?;
            took.push(t0.elapsed());
        }
        Ok(took)
    }
    .await;
    let _ = stop.send(());
    let _ = server.await;
    measured
}

pub async fn run(a: FloorBench, out: Out) -> Result<(), Failure> {
    let t = a.threshold;
    if !(2..=16).contains(&t) {
        return Err(Failure {
            message: format!("--threshold {t}: a read asks 2 to 16 holders"),
            code: 2,
        });
    }
    if !(10..=100_000).contains(&a.iterations) {
        return Err(Failure {
            message: format!("--iterations {}: give 10 to 100000", a.iterations),
            code: 2,
        });
    }
    if !(1..=1 << 20).contains(&a.message_size) {
        return Err(Failure {
            message: format!("--message-size {}: give 1 to 1048576", a.message_size),
            code: 2,
        });
    }
    let n = a.iterations;
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("tessera-floor-")
        .tempdir_in(&base)
        .map_err(|e| {
            failure(format!(
                "cannot make a directory in {}: {e}",
                base.display()
            ))
        })?;

    // One version of a secret, dealt `t` of `t + 1`, as a write leaves it.
    let cluster_id = "floor";
    let (path, version) = ("bench/floor/r/0", 1u64);
    let dealing = vss::deal(t, t + 1).map_err(|e| failure(e.to_string()))?;
    let aad = value::value_aad(cluster_id, path, version);
    let ciphertext = value::encrypt(&dealing.key, &aad, &[b'v'; 32]);
    let kek = Kek::generate();
    let label = b"floor/at-rest/share";
    let at_rest: Vec<Vec<u8>> = dealing.shares[..t]
        .iter()
        .map(|s| kek.seal(label, &s.to_bytes()))
        .collect();
    let item = Item {
        position: 0,
        path,
        version,
    };
    let reply = |node_id: u64| Reply {
        cluster_id,
        node_id,
    };

    // The reader's one-time key (made ahead of the read, off the path).
    let keygen = timed(n, || drop(SealingKey::generate()));
    let reader = SealingKey::generate();

    // A holder: its share out of the at-rest seal, sealed to the reader's key.
    let holder_seal = |h: usize| -> Result<([u8; 32], Vec<u8>), String> {
        let plain = kek.open(label, &at_rest[h]).map_err(|e| e.to_string())?;
        let share = Share::from_bytes(plain.expose()).map_err(|e| e.to_string())?;
        let sealer =
            Sealer::new(&reader.public(), &reply(h as u64 + 1)).map_err(|e| e.to_string())?;
        let sealed = sealer
            .seal(&item, &share.to_bytes())
            .map_err(|e| e.to_string())?;
        Ok((sealer.enc(), sealed))
    };
    let mut seal_error = None;
    let seal = timed(n, || {
        if let Err(e) = holder_seal(0) {
            seal_error.get_or_insert(e);
        }
    });
    let replies: Vec<([u8; 32], Vec<u8>)> = (0..t)
        .map(&holder_seal)
        .collect::<Result<_, _>>()
        .map_err(failure)?;
    if let Some(e) = seal_error {
        return Err(failure(format!("holder seal: {e}")));
    }

    // The reader: one reply opened.
    let reader_open = |h: usize| -> Result<Share, String> {
        let (enc, sealed) = &replies[h];
        let opener = Opener::new(&reader, &reply(h as u64 + 1), enc).map_err(|e| e.to_string())?;
        let plain = opener.open(&item, sealed).map_err(|e| e.to_string())?;
        Share::from_bytes(plain.expose()).map_err(|e| e.to_string())
    };
    let mut open_error = None;
    let open = timed(n, || {
        if let Err(e) = reader_open(0) {
            open_error.get_or_insert(e);
        }
    });
    if let Some(e) = open_error {
        return Err(failure(format!("reader open: {e}")));
    }
    let shares: Vec<Share> = (0..t)
        .map(&reader_open)
        .collect::<Result<_, _>>()
        .map_err(failure)?;

    // The reader: all `t` shares checked at once, combined, the value decrypted (with the
    // commitments' verifier and the Lagrange coefficients kept, as the SDK keeps them).
    let verifier = dealing
        .commitments
        .verifier_for(t + 1)
        .map_err(|e| failure(e.to_string()))?;
    let indices: Vec<u16> = shares.iter().map(|s| s.index).collect();
    let lagrange = Lagrange::new(&indices).map_err(|e| failure(e.to_string()))?;
    let mut check_error = None;
    let check = timed(n, || {
        let refs: Vec<&Share> = shares.iter().collect();
        let outcome = if verifier.verify_all(&refs) {
            vss::combine_with(&shares, &lagrange)
                .map_err(|e| e.to_string())
                .and_then(|key| value::decrypt(&key, &aad, &ciphertext).map_err(|e| e.to_string()))
                .map(drop)
        } else {
            Err("the shares did not verify".into())
        };
        if let Err(e) = outcome {
            check_error.get_or_insert(e);
        }
    });
    if let Some(e) = check_error {
        return Err(failure(format!("check and combine: {e}")));
    }

    // Blocking file and socket I/O: the runtime is told so (nothing else runs on it meanwhile).
    let (sync_alone, sync, rtt) = tokio::task::block_in_place(|| {
        Ok::<_, Failure>((
            audit_syncs(dir.path(), 1, n)?,
            audit_syncs(dir.path(), t, n)?,
            tcp_round_trips(a.message_size, n)?,
        ))
    })?;
    drop(dir);
    let grpc = grpc_round_trips(a.message_size, n).await?;

    let pieces = [
        piece("audit line synced, t holders at once", true, sync),
        piece("audit line synced, one holder alone", false, sync_alone),
        piece(
            "holder: share unsealed, sealed to the reader (can overlap the sync)",
            false,
            seal,
        ),
        piece("reader: one reply opened", true, open),
        piece(
            "reader: t shares checked, combined, value decrypted",
            true,
            check,
        ),
        piece(
            "one gRPC call over mutual TLS, as the nodes speak, to an echo",
            true,
            grpc,
        ),
        piece(
            "loopback TCP round trip, no TLS (inside the call above)",
            false,
            rtt,
        ),
        piece(
            "reader: one-time key made (ahead, off the path)",
            false,
            keygen,
        ),
    ];
    let floor: f64 = pieces.iter().filter(|p| p.in_floor).map(|p| p.p50).sum();
    let ceiling = 1e6 / floor;
    let rows: Vec<Vec<String>> = pieces
        .iter()
        .map(|p| {
            vec![
                p.name.to_string(),
                if p.in_floor { "yes" } else { "no" }.to_string(),
                format!("{:.1}", p.p50),
                format!("{:.1}", p.p99),
            ]
        })
        .collect();
    let value = json!({
        "threshold": t,
        "iterations": n,
        "dir": base,
        "pieces": pieces.iter().map(|p| json!({
            "piece": p.name, "in_floor": p.in_floor, "p50_us": p.p50, "p99_us": p.p99,
        })).collect::<Vec<_>>(),
        "floor_us": floor,
        "max_reads_per_sec_at_1": ceiling,
    });
    out.emit(value, || {
        table(&["PIECE", "IN FLOOR", "P50 US", "P99 US"], &rows);
        println!();
        println!(
            "floor of one read (sum of the medians in the floor): {floor:.0} us, so at most \
             {ceiling:.0} reads/s at concurrency 1"
        );
        println!(
            "(left out, though a real read pays them too: the holder's sealing, the policy \
             check, the share's RocksDB read, wake-ups across processes, the other t - 1 \
             replies' opening)"
        );
    });
    Ok(())
}
