//! Serving a started node, top to bottom: the gRPC services over mutual TLS, the metrics
//! endpoint, forming the cluster on first start, and the node's background work (its
//! acknowledgements, the first threshold, the leader's lease, key-generation deadlines). Runs
//! until `shutdown` resolves.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tessera_proto::break_glass_server::BreakGlassServer;
use tessera_proto::holders_server::HoldersServer;
use tessera_proto::kv_server::KvServer;
use tessera_proto::raft_server::RaftServer;
use tessera_proto::signing_server::SigningServer;
use tessera_proto::sys_server::SysServer;

use crate::api::Api;
use crate::node::{Background, Node};
use crate::raft::bootstrap;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::raft::outgoing::Acks;
use crate::signing::deadline;
use crate::tls::TlsMaterial;

pub async fn serve(
    node: Arc<Node>,
    background: Background,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = &node.config;
    let tls = TlsMaterial::load(&config.ca_cert, &config.cert, &config.key)?;
    let addr: std::net::SocketAddr = config
        .api_addr
        .parse()
        .map_err(|e| anyhow::anyhow!("api_addr {:?}: {e}", config.api_addr))?;

    // Metrics on their own port: the Raft gauges are brought up to date on every scrape.
    let metrics_listener = tokio::net::TcpListener::bind(&config.metrics_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on metrics_addr {}: {e}", config.metrics_addr)
        })?;
    let scraped = node.clone();
    tokio::spawn(crate::metrics::serve(metrics_listener, move || {
        let node = scraped.clone();
        async move {
            let st = node.local_status().await;
            let installs = node.snapshot_installs.load(Ordering::Relaxed);
            node.metrics.refresh(node.id, &st, &node.raft, installs);
            let rotate = {
                let st = node.state.read().expect("state lock");
                st.model
                    .secrets
                    .values()
                    .filter(|e| {
                        e.versions
                            .get(&e.current_version)
                            .is_some_and(|v| v.rotate_required.is_some())
                    })
                    .count()
            };
            node.metrics.rotate_required.set(rotate as i64);
            node.metrics.render()
        }
    }));

    // Nagle's algorithm would hold small replies back for a delayed ACK (tens of ms per
    // round trip); every request here is small, so it is off.
    let incoming = tonic::transport::server::TcpIncoming::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on api_addr {addr}: {e}"))?
        .with_nodelay(Some(true));
    tracing::info!(id = node.id, %addr, region = %config.region, "node serving");

    if config.bootstrap {
        let n = node.clone();
        tokio::spawn(async move { bootstrap::initialize(&n.raft, &n.config, &n.trust).await });
    }
    let acks = Acks {
        id: node.id,
        state: node.state.clone(),
        vault: node.vault.clone(),
        leader: node.leader.clone(),
    };
    tokio::spawn(acks.run(background.outgoing));
    if let Some(path) = &config.genesis {
        // A missing or unreadable genesis file is said at start, not found later.
        crate::state::genesis::read(path)?;
    }
    tokio::spawn(bootstrap::seed_genesis(
        config.clone(),
        node.state.clone(),
        node.leader.clone(),
    ));
    node.reads.watch_lease_on_own_thread();
    tokio::spawn(node.reads.clone().keep_confirming());
    // Break-glass events to the audit log and the webhook, while this node leads.
    tokio::spawn(crate::notify::Notifier::new(node.clone())?.run());
    tokio::spawn(deadline::abort_stale_dkgs(
        node.state.clone(),
        node.leader.clone(),
    ));
    // Test builds only: a compromised member's forged commands (nothing otherwise).
    crate::byzantine::spawn_forger(|| {
        use futures::FutureExt;
        let (a, c, m, s) = (node.clone(), node.clone(), node.clone(), node.clone());
        crate::byzantine::ForgeTools {
            model: Box::new(move || s.state.read().expect("state lock").model.clone()),
            is_leader: Box::new(move || a.leader.is_me()),
            append: Box::new(move |mut cmd| {
                let raft = c.raft.clone();
                // As a real leader would, so that followers take the entry at all.
                cmd.stamp(crate::state::Timestamp::now());
                async move {
                    raft.client_write(cmd)
                        .await
                        .map(|r| (r.log_id.index, r.data.error.map(|e| e.to_string())))
                        .map_err(|e| e.to_string())
                }
                .boxed()
            }),
            membership: Box::new(move |change| {
                let raft = m.raft.clone();
                async move {
                    let proposed = async {
                        match change {
                            crate::byzantine::RaftForgery::AddLearner { id, addr } => {
                                let node = crate::raft::NodeInfo {
                                    addr,
                                    region: "a".into(),
                                    ..Default::default()
                                };
                                raft.add_learner(id, node, false).await
                            }
                            crate::byzantine::RaftForgery::RemoveVoter(id) => {
                                raft.change_membership(
                                    openraft::ChangeMembers::RemoveVoters([id].into()),
                                    false,
                                )
                                .await
                            }
                        }
                    };
                    match tokio::time::timeout(std::time::Duration::from_secs(8), proposed).await {
                        Ok(Ok(r)) => Ok(r.log_id.index),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("not committed within 8 s".into()),
                    }
                }
                .boxed()
            }),
        }
    });

    let api = Api::new(node.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .tls_config(tls.server())?
        .tcp_nodelay(true)
        .add_service(
            RaftServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            HoldersServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            KvServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            SigningServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            BreakGlassServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            SysServer::new(api)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async {
            let _ = rx.await;
        });
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    server.await?;
    tracing::info!(id = node.id, "shutting down raft");
    let _ = node.raft.shutdown().await;
    Ok(())
}
