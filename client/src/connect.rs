//! Connecting to a node over mutual TLS, and the typed calls of the client API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_proto::kv_client::KvClient;
use tessera_proto::signing_client::SigningClient;
use tessera_proto::sys_client::SysClient;
use tessera_proto::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{transport_hint, Error};

/// The largest message a client sends or takes (a value is at most 1 MiB; a snapshot more).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn kv_rpc(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub(crate) fn sys_rpc(channel: Channel) -> SysClient<Channel> {
    SysClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub(crate) fn signing_rpc(channel: Channel) -> SigningClient<Channel> {
    SigningClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Where and as whom to connect. Mirrors the CLI flags and the `TESSERA_*` environment.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` of any node (or `https://host:port`).
    pub address: String,
    pub ca_cert: PathBuf,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Name to verify on the node's certificate, e.g. `node3`; defaults to the address host.
    pub server_name: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("address", &self.address)
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key.as_ref().map(|_| "<path>"))
            .finish()
    }
}

#[derive(Clone)]
pub struct Client {
    /// The connection to the node this client was pointed at.
    pub(crate) channel: Channel,
    address: String,
    /// What it takes to open more connections: readers talk to several holders.
    pub(crate) tls: Arc<TlsFiles>,
    pub(crate) pool: Arc<Mutex<HashMap<u64, Channel>>>,
    pub(crate) timeout: Duration,
    /// The last topology seen (holders, keys, threshold), refreshed when a write says it changed.
    pub(crate) topology: Arc<Mutex<Option<tessera_proto::TopologyReply>>>,
    /// Holders that left a read unanswered lately, until when they are asked last (see
    /// `kv::HOLDER_PATIENCE`).
    pub(crate) slow: Arc<Mutex<HashMap<u64, std::time::Instant>>>,
    /// Each holder's release queue (see `release`), by node id and cluster id.
    pub(crate) releasers: Arc<Mutex<HashMap<(u64, String), crate::release::Releaser>>>,
    /// Each signer's round-2 queue (see `sign`), by node id.
    pub(crate) signers: Arc<Mutex<HashMap<u64, crate::sign::Signer>>>,
    /// Verifiers of the versions read lately, by their commitments (see `kv::verifier`).
    #[allow(clippy::type_complexity)]
    pub(crate) verifiers: Arc<Mutex<HashMap<Vec<u8>, Arc<tessera_crypto::vss::Verifier>>>>,
    /// Lagrange coefficients by the share indices they combine (see `kv::lagrange`).
    #[allow(clippy::type_complexity)]
    pub(crate) lagrange: Arc<Mutex<HashMap<Vec<u16>, Arc<tessera_crypto::vss::Lagrange>>>>,
    /// Active signing keys' public state (group key, public key package, participants).
    /// With each, its public key package parsed once (parsing checks every point).
    #[allow(clippy::type_complexity)]
    pub(crate) keys: Arc<
        Mutex<
            HashMap<
                String,
                (
                    tessera_proto::KeyInfo,
                    Arc<tessera_crypto::frost::PublicKeys>,
                ),
            >,
        >,
    >,
    /// Preprocessed FROST commitments per (key, signer): nonce id, commitments, when fetched.
    #[allow(clippy::type_complexity)]
    pub(crate) commitments: Arc<
        Mutex<
            HashMap<
                (String, u64),
                std::collections::VecDeque<(String, Vec<u8>, std::time::Instant)>,
            >,
        >,
    >,
    /// Nonce pairs to ask each signer for at once (see `set_nonce_batch`).
    pub(crate) nonce_batch: u32,
    /// Whether we presented a client certificate: without one every node closes the
    /// connection, and the error should say why.
    has_identity: bool,
    /// Signs the requests that change the replicated state (see `signed`); `None` without a
    /// client certificate.
    signer: Option<Arc<crate::signed::CallSigner>>,
    /// The cluster's id, which every signed request names; asked for once.
    cluster_id: Arc<Mutex<Option<String>>>,
}

/// The PEM material of a connection. The key is zeroized on drop, never printed.
pub(crate) struct TlsFiles {
    pub(crate) ca: Vec<u8>,
    identity: Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)>,
}

impl TlsFiles {
    fn config(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        if let Some((c, k)) = &self.identity {
            tls = tls.identity(Identity::from_pem(c, &**k));
        }
        tls
    }
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))
}

impl Client {
    pub async fn connect(cfg: &ClientConfig) -> Result<Client, Error> {
        let address = cfg.address.trim_start_matches("https://").to_string();
        if address.is_empty() {
            return Err(Error::Config(
                "no node address: set --address or TESSERA_ADDR (e.g. 127.0.0.1:7101)".into(),
            ));
        }
        let identity = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((
                read(c, "client certificate")?,
                zeroize::Zeroizing::new(read(k, "client key")?),
            )),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "--client-cert and --client-key go together: set both or neither".into(),
                ))
            }
        };
        let signer = match &identity {
            Some((_, key)) => Some(Arc::new(crate::signed::CallSigner::from_pem(key)?)),
            None => None,
        };
        let files = TlsFiles {
            ca: read(&cfg.ca_cert, "CA certificate")?,
            identity,
        };
        let mut tls = files.config();
        if let Some(name) = &cfg.server_name {
            tls = tls.domain_name(name.clone());
        }
        let endpoint = Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| Error::Config(format!("bad address {address:?}: {e}")))?
            .tls_config(tls)
            .map_err(|e| Error::Config(format!("TLS configuration: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(cfg.timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| Error::Connect {
            address: address.clone(),
            message: transport_hint(&tonic::Status::from_error(Box::new(e))),
        })?;
        Ok(Client {
            channel,
            address,
            has_identity: cfg.client_cert.is_some(),
            tls: Arc::new(files),
            pool: Arc::new(Mutex::new(HashMap::new())),
            timeout: cfg.timeout,
            topology: Arc::new(Mutex::new(None)),
            slow: Arc::new(Mutex::new(HashMap::new())),
            releasers: Arc::new(Mutex::new(HashMap::new())),
            signers: Arc::new(Mutex::new(HashMap::new())),
            verifiers: Arc::new(Mutex::new(HashMap::new())),
            lagrange: Arc::new(Mutex::new(HashMap::new())),
            keys: Arc::new(Mutex::new(HashMap::new())),
            commitments: Arc::new(Mutex::new(HashMap::new())),
            nonce_batch: 1,
            signer,
            cluster_id: Arc::new(Mutex::new(None)),
        })
    }

    /// A connection to node `id` at `addr` whose certificate must name that node. Reused.
    pub(crate) fn node_channel(&self, id: u64, addr: &str) -> Result<Channel, Error> {
        let mut pool = self.pool.lock().expect("pool lock");
        if let Some(c) = pool.get(&id) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| Error::Config(format!("bad address {addr:?}: {e}")))?
            .tls_config(self.tls.config().domain_name(format!("node{id}")))
            .map_err(|e| Error::Config(format!("TLS configuration: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        pool.insert(id, channel.clone());
        Ok(channel)
    }

    /// The release queue to node `id` at `addr`, started on first use and reused.
    pub(crate) fn releaser(
        &self,
        id: u64,
        addr: &str,
        cluster_id: &str,
    ) -> Result<crate::release::Releaser, Error> {
        let key = (id, cluster_id.to_string());
        self.queue(
            &self.releasers,
            key,
            id,
            addr,
            |r| r.is_closed(),
            |rpc| crate::release::Releaser::start(rpc, id, addr, cluster_id),
        )
    }

    /// The round-2 queue to signer `id` at `addr`, started on first use and reused.
    pub(crate) fn signer(&self, id: u64, addr: &str) -> Result<crate::sign::Signer, Error> {
        self.queue(
            &self.signers,
            id,
            id,
            addr,
            |s| s.is_closed(),
            |rpc| crate::sign::Signer::start(rpc, id, addr),
        )
    }

    /// The queue in `map` under `key`, started on first use and again when the runtime that
    /// ran its task is gone.
    fn queue<K: std::hash::Hash + Eq, Q: Clone>(
        &self,
        map: &Mutex<HashMap<K, Q>>,
        key: K,
        id: u64,
        addr: &str,
        closed: impl Fn(&Q) -> bool,
        start: impl FnOnce(Channel) -> Q,
    ) -> Result<Q, Error> {
        if let Some(q) = map.lock().expect("queues lock").get(&key) {
            if !closed(q) {
                return Ok(q.clone());
            }
        }
        let rpc = self.node_channel(id, addr)?;
        let mut all = map.lock().expect("queues lock");
        let q = match all.get(&key) {
            Some(q) if !closed(q) => q.clone(),
            _ => start(rpc),
        };
        all.insert(key, q.clone());
        Ok(q)
    }

    /// The generated gRPC clients of each service, for calls the SDK does not wrap (and for
    /// tests that send deliberately malformed requests).
    pub fn kv_rpc(&self) -> KvClient<Channel> {
        kv_rpc(self.channel.clone())
    }

    pub fn signing_rpc(&self) -> SigningClient<Channel> {
        signing_rpc(self.channel.clone())
    }

    pub fn sys_rpc(&self) -> SysClient<Channel> {
        sys_rpc(self.channel.clone())
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The error for a status this client got from its node, with a hint when the client
    /// presented no certificate.
    pub(crate) fn err(&self, s: tonic::Status) -> Error {
        match Error::from_status(&self.address, s) {
            Error::Connect { address, message } if !self.has_identity => Error::Connect {
                address,
                message: format!(
                    "{message} (no client certificate was presented, and nodes require one signed by the cluster CA: set --client-cert and --client-key, or TESSERA_CLIENT_CERT and TESSERA_CLIENT_KEY)"
                ),
            },
            e => e,
        }
    }

    /// `msg` as a request for `method`, signed by this client's key for the cluster it talks to.
    pub async fn signed<T: prost::Message>(
        &self,
        method: tessera_proto::SignedMethod,
        msg: T,
    ) -> Result<tonic::Request<T>, Error> {
        let Some(signer) = &self.signer else {
            return Err(Error::Config(
                "a request that changes the cluster must be signed with a client certificate's key: set --client-cert and --client-key (or TESSERA_CLIENT_CERT and TESSERA_CLIENT_KEY)".into(),
            ));
        };
        let cluster_id = self.cluster_id().await?;
        signer.sign(&cluster_id, method, msg)
    }

    /// The cluster's id (asked once, then remembered).
    pub async fn cluster_id(&self) -> Result<String, Error> {
        let cached = self.cluster_id.lock().expect("cluster id lock").clone();
        match cached {
            Some(id) => Ok(id),
            None => {
                let id = self.who_am_i().await?.cluster_id;
                *self.cluster_id.lock().expect("cluster id lock") = Some(id.clone());
                Ok(id)
            }
        }
    }

    /// Remembers the cluster id a node told us (with the topology), saving a round trip.
    pub(crate) fn learn_cluster_id(&self, id: &str) {
        let mut cached = self.cluster_id.lock().expect("cluster id lock");
        if cached.is_none() && !id.is_empty() {
            *cached = Some(id.to_string());
        }
    }

    pub async fn status(&self) -> Result<StatusReply, Error> {
        let r = self.sys_rpc().status(Empty {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn who_am_i(&self) -> Result<WhoAmIReply, Error> {
        let r = self.sys_rpc().who_am_i(Empty {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn list_members(&self) -> Result<Vec<NodeEntry>, Error> {
        let r = self.sys_rpc().list_members(Empty {}).await;
        r.map(|r| r.into_inner().members).map_err(|s| self.err(s))
    }

    pub async fn add_member(
        &self,
        id: u64,
        address: &str,
        region: &str,
        voter: bool,
    ) -> Result<u64, Error> {
        let req = AddMemberRequest {
            id,
            address: address.into(),
            region: region.into(),
            voter,
        };
        let req = self
            .signed(tessera_proto::SignedMethod::MembersAdd, req)
            .await?;
        let r = self.sys_rpc().add_member(req).await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn remove_member(&self, id: u64) -> Result<u64, Error> {
        let r = self
            .sys_rpc()
            .remove_member(
                self.signed(
                    tessera_proto::SignedMethod::MembersRemove,
                    RemoveMemberRequest { id },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn write_group(&self, name: &str, members: Vec<String>) -> Result<u64, Error> {
        let req = GroupWriteRequest {
            name: name.into(),
            members,
        };
        let r = self
            .sys_rpc()
            .write_group(
                self.signed(tessera_proto::SignedMethod::GroupWrite, req)
                    .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn read_group(&self, name: &str) -> Result<Group, Error> {
        let r = self
            .sys_rpc()
            .read_group(NameRequest { name: name.into() })
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn list_groups(&self) -> Result<Vec<String>, Error> {
        let r = self.sys_rpc().list_groups(Empty {}).await;
        r.map(|r| r.into_inner().names).map_err(|s| self.err(s))
    }

    pub async fn delete_group(&self, name: &str) -> Result<u64, Error> {
        self.delete_group_under(name, None).await
    }

    /// Deletes a group; one a break-glass gate names as approvers takes a grant for
    /// `sys/groups/NAME` (`delete`), spent by the deletion.
    pub async fn delete_group_under(&self, name: &str, grant: Option<&str>) -> Result<u64, Error> {
        let r = self
            .sys_rpc()
            .delete_group(
                self.signed(
                    tessera_proto::SignedMethod::GroupDelete,
                    GroupDeleteRequest {
                        name: name.into(),
                        grant: grant.unwrap_or_default().into(),
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn write_policy(&self, name: &str, text: &str) -> Result<u64, Error> {
        self.write_policy_under(name, text, None).await
    }

    /// Writes a policy; changing one that holds a break-glass gate takes a grant for
    /// `sys/policies/NAME` (`update`), spent by the change.
    pub async fn write_policy_under(
        &self,
        name: &str,
        text: &str,
        grant: Option<&str>,
    ) -> Result<u64, Error> {
        let req = PolicyWriteRequest {
            name: name.into(),
            text: text.into(),
            grant: grant.unwrap_or_default().into(),
        };
        let r = self
            .sys_rpc()
            .write_policy(
                self.signed(tessera_proto::SignedMethod::PolicyWrite, req)
                    .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn read_policy(&self, name: &str) -> Result<PolicyReply, Error> {
        let r = self
            .sys_rpc()
            .read_policy(NameRequest { name: name.into() })
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn list_policies(&self) -> Result<Vec<String>, Error> {
        let r = self.sys_rpc().list_policies(Empty {}).await;
        r.map(|r| r.into_inner().names).map_err(|s| self.err(s))
    }

    pub async fn delete_policy(&self, name: &str) -> Result<u64, Error> {
        self.delete_policy_under(name, None).await
    }

    /// Deletes a policy; one that holds a break-glass gate takes a grant for
    /// `sys/policies/NAME` (`delete`), spent by the deletion.
    pub async fn delete_policy_under(&self, name: &str, grant: Option<&str>) -> Result<u64, Error> {
        let r = self
            .sys_rpc()
            .delete_policy(
                self.signed(
                    tessera_proto::SignedMethod::PolicyDelete,
                    PolicyDeleteRequest {
                        name: name.into(),
                        grant: grant.unwrap_or_default().into(),
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    /// Attaches (or with `detach`, removes) a policy to exactly one of a group or an identity.
    pub async fn attach_policy(
        &self,
        policy: &str,
        group: Option<&str>,
        identity: Option<&str>,
        detach: bool,
    ) -> Result<u64, Error> {
        let req = PolicyAttachRequest {
            policy: policy.into(),
            group: group.unwrap_or_default().into(),
            identity: identity.unwrap_or_default().into(),
            detach,
        };
        let r = self
            .sys_rpc()
            .attach_policy(
                self.signed(tessera_proto::SignedMethod::PolicyAttach, req)
                    .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    /// Revokes a certificate (`Target::Serial`), every certificate of an identity, or every
    /// certificate of a node: every node refuses them once the revocation applies.
    pub async fn revoke(&self, target: revoke_request::Target) -> Result<u64, Error> {
        let r = self
            .sys_rpc()
            .revoke(
                self.signed(
                    tessera_proto::SignedMethod::Revoke,
                    RevokeRequest {
                        target: Some(target),
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    /// Replaces the root identities (those that hold every capability).
    pub async fn set_roots(&self, identities: Vec<String>) -> Result<u64, Error> {
        let req = self
            .signed(
                tessera_proto::SignedMethod::RootsSet,
                RootsRequest { identities },
            )
            .await?;
        let r = self.sys_rpc().set_roots(req).await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn roots(&self) -> Result<Vec<String>, Error> {
        let r = self.sys_rpc().list_roots(Empty {}).await;
        r.map(|r| r.into_inner().names).map_err(|s| self.err(s))
    }

    pub async fn revocations(&self) -> Result<RevocationsReply, Error> {
        let r = self.sys_rpc().list_revocations(Empty {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn snapshot_save(&self) -> Result<Vec<u8>, Error> {
        let r = self.sys_rpc().snapshot_save(Empty {}).await;
        r.map(|r| r.into_inner().data).map_err(|s| self.err(s))
    }

    pub async fn snapshot_restore(&self, data: Vec<u8>) -> Result<u64, Error> {
        let r = self
            .sys_rpc()
            .snapshot_restore(
                self.signed(
                    tessera_proto::SignedMethod::SnapshotRestore,
                    SnapshotData { data },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }
}
