//! The Raft state machine on RocksDB: applies committed commands to the replicated model,
//! lets this node's share vault act on the versions it holds, builds snapshots (which let the
//! log be compacted) and installs snapshots from the leader.
//!
//! Each batch of entries is persisted in one synced write: the small model with the last applied
//! log id and the membership, every secret entry that changed, and this node's own share
//! changes. After a crash the state machine is exactly as of some applied index and openraft
//! replays the log from there. Readers wait on the lock until the batch is durable.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::codec;
use super::{any, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::db::{cf, state_write, synced, CF_SNAPSHOT, CF_STATE};
use crate::shares::ShareVault;
use crate::state::authority::Trust;
use crate::state::checkpoint::{self, CertifiedSnapshot};
use crate::state::kv::SecretEntry;
use crate::state::model::ApplyCtx;
use crate::state::{CommandResult, Effects, Members, Model, Op};

const KEY_APPLIED: &[u8] = b"applied";
const SECRET_PREFIX: &[u8] = b"secret/";
/// One entry per signed call applied within the replay window: id → expiry.
const CALL_PREFIX: &[u8] = b"call/";
const KEY_SNAPSHOT: &[u8] = b"current";

/// What the state machine holds: the model plus the Raft bookkeeping that must move with it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub model: Model,
}

/// A read handle on the applied state, shared with the API so reads never go through Raft's
/// core task.
pub type SharedState = Arc<RwLock<Applied>>;

/// Something this node must submit through Raft after applying: an acknowledgement (or
/// complaint) of a version it holds, or a command of its own (DKG messages).
#[derive(Debug)]
pub enum Outgoing {
    Ack(String, u64, Option<String>),
    Op(crate::state::Op),
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    #[serde(with = "tessera_crypto::b64::bytes")]
    data: Vec<u8>,
}

/// The snapshot payload: the model and every secret entry (all public material).
#[derive(Deserialize)]
struct SnapshotPayload {
    applied: Applied,
    secrets: BTreeMap<String, SecretEntry>,
    calls: BTreeMap<Vec<u8>, u64>,
}

/// `SnapshotPayload` as written, from a copy of the state without copying it again.
#[derive(Serialize)]
struct SnapshotPayloadRef<'a> {
    applied: &'a Applied,
    secrets: &'a BTreeMap<String, SecretEntry>,
    calls: &'a BTreeMap<Vec<u8>, u64>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    state: SharedState,
    cluster_id: String,
    /// What signed commands are checked against on apply.
    trust: Arc<Trust>,
    vault: Option<Arc<ShareVault>>,
    acks: mpsc::UnboundedSender<Outgoing>,
    applied_tx: Arc<watch::Sender<u64>>,
    snapshot_seq: Arc<AtomicU64>,
    /// Counts snapshots installed from a leader (exported as a metric).
    pub installs: Arc<AtomicU64>,
    /// Test builds only: wait this long before applying a new version (a lagging holder).
    slow_puts: Option<std::time::Duration>,
    /// Snapshots are taken at every index that is a multiple of this (0: at whatever index
    /// openraft asks), the same on every node so that voters vouch for the same states
    /// (`state::checkpoint`).
    checkpoint_every: u64,
    /// The checkpoint being stored, if any (tests wait for it).
    last_checkpoint: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Snapshots are stored one at a time, so that an older one never replaces a newer one.
    snapshot_write: Arc<std::sync::Mutex<()>>,
}

fn call_key(id: &[u8]) -> Vec<u8> {
    let mut k = CALL_PREFIX.to_vec();
    k.extend_from_slice(id);
    k
}

fn secret_key(path: &str) -> Vec<u8> {
    let mut k = SECRET_PREFIX.to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

impl StateMachine {
    pub fn open(
        db: Arc<DB>,
        cluster_id: String,
        trust: Arc<Trust>,
        vault: Option<Arc<ShareVault>>,
        acks: mpsc::UnboundedSender<Outgoing>,
    ) -> anyhow::Result<Self> {
        let mut applied: Applied = match db.get_cf(cf(&db, CF_STATE), KEY_APPLIED)? {
            Some(b) => codec::decode(&b)
                .map_err(|e| anyhow::anyhow!("state machine data is corrupt: {e}"))?,
            None => Applied::default(),
        };
        let it = db.iterator_cf(
            cf(&db, CF_STATE),
            IteratorMode::From(SECRET_PREFIX, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            let Some(path) = k.strip_prefix(SECRET_PREFIX) else {
                break;
            };
            let entry: SecretEntry =
                codec::decode(&v).map_err(|e| anyhow::anyhow!("secret entry is corrupt: {e}"))?;
            applied
                .model
                .secrets
                .insert(String::from_utf8_lossy(path).into_owned(), entry);
        }
        let it = db.iterator_cf(
            cf(&db, CF_STATE),
            IteratorMode::From(CALL_PREFIX, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            let Some(id) = k.strip_prefix(CALL_PREFIX) else {
                break;
            };
            let expires = <[u8; 8]>::try_from(&*v)
                .map(u64::from_be_bytes)
                .map_err(|_| anyhow::anyhow!("signed-call entry is corrupt"))?;
            applied.model.calls.insert(id.to_vec(), expires);
        }
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let sm = Self {
            db,
            state: Arc::new(RwLock::new(applied)),
            cluster_id,
            trust,
            vault,
            acks,
            applied_tx: Arc::new(watch::channel(index).0),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            installs: Arc::new(AtomicU64::new(0)),
            slow_puts: crate::byzantine::slow_puts(),
            checkpoint_every: 0,
            last_checkpoint: Arc::default(),
            snapshot_write: Arc::new(std::sync::Mutex::new(())),
        };
        sm.reconcile_shares()
            .map_err(|e| anyhow::anyhow!("cannot reconcile this node's shares: {e}"))?;
        Ok(sm)
    }

    /// Takes snapshots only at indices that are multiples of `every`, and vouches for each
    /// (`state::checkpoint`).
    pub fn with_checkpoints(mut self, every: u64) -> Self {
        self.checkpoint_every = every;
        self
    }

    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    /// Notified with the last applied index after every durable apply.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Brings this node's share vault in line with the model: shares of versions that are gone
    /// are erased, envelopes not yet opened are opened (a node back from a long absence, or one
    /// that installed a snapshot), and every held share not yet acknowledged is queued.
    fn reconcile_shares(&self) -> Result<(), StorageError> {
        let Some(vault) = &self.vault else {
            return Ok(());
        };
        let st = self.state.read().expect("state lock");
        let me = vault.node_id();
        let mut batch = WriteBatch::default();
        for (path, version) in vault.list() {
            let keep = st
                .model
                .secrets
                .get(&path)
                .and_then(|e| e.versions.get(&version))
                .is_some_and(|v| !v.destroyed && v.share_index(me).is_some());
            if !keep {
                vault.erase(&mut batch, &path, version);
            }
        }
        for (path, e) in &st.model.secrets {
            for (version, v) in &e.versions {
                if v.destroyed
                    || v.share_index(me).is_none()
                    || (v.acks.contains_key(&me) && !v.envelopes.contains_key(&me))
                    || v.complaints.contains_key(&me)
                {
                    continue;
                }
                if vault.has(path, *version) {
                    let _ = self.acks.send(Outgoing::Ack(path.clone(), *version, None));
                } else if v.envelopes.contains_key(&me) {
                    let verdict = vault
                        .accept(&mut batch, path, *version, v)
                        .err()
                        .map(|e| e.0);
                    let _ = self
                        .acks
                        .send(Outgoing::Ack(path.clone(), *version, verdict));
                }
            }
        }
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_state_machine(any(e)).into())
    }

    fn write_applied(&self, batch: &mut WriteBatch, applied: &Applied) -> Result<(), StorageError> {
        let b = codec::encode(applied).map_err(|e| StorageIOError::write_state_machine(any(e)))?;
        batch.put_cf(cf(&self.db, CF_STATE), KEY_APPLIED, b);
        Ok(())
    }

    fn write_secret(
        &self,
        batch: &mut WriteBatch,
        model: &Model,
        path: &str,
    ) -> Result<(), StorageError> {
        match model.secrets.get(path) {
            Some(e) => {
                let b =
                    codec::encode(e).map_err(|e| StorageIOError::write_state_machine(any(e)))?;
                batch.put_cf(cf(&self.db, CF_STATE), secret_key(path), b);
            }
            None => batch.delete_cf(cf(&self.db, CF_STATE), secret_key(path)),
        }
        Ok(())
    }

    /// Persists the signed-call ids an applied command remembered or forgot.
    fn write_calls(&self, batch: &mut WriteBatch, fx: &Effects) {
        for (id, expires) in &fx.calls {
            match expires {
                Some(e) => batch.put_cf(cf(&self.db, CF_STATE), call_key(id), e.to_be_bytes()),
                None => batch.delete_cf(cf(&self.db, CF_STATE), call_key(id)),
            }
        }
    }

    /// The node-local side of an applied command: open new shares, erase dead ones.
    fn share_effects(
        &self,
        batch: &mut WriteBatch,
        model: &Model,
        fx: &Effects,
        pending: &mut Vec<Outgoing>,
        members: &Members,
    ) {
        let Some(vault) = &self.vault else { return };
        if let Some((path, version)) = &fx.created {
            if let Some(v) = model
                .secrets
                .get(path)
                .and_then(|e| e.versions.get(version))
            {
                if v.share_index(vault.node_id()).is_some() {
                    let verdict = vault.accept(batch, path, *version, v).err().map(|e| e.0);
                    if let Some(reason) = &verdict {
                        tracing::warn!(%path, version, %reason, "share failed verification; filing a complaint");
                    }
                    pending.push(Outgoing::Ack(path.clone(), *version, verdict));
                }
            }
        }
        for (path, version) in &fx.erased {
            vault.erase(batch, path, *version);
        }
        if let Some(name) = &fx.dkg {
            if let Some(k) = model.keys.get(name) {
                for op in vault.dkg_step(batch, name, k, members) {
                    pending.push(Outgoing::Op(op));
                }
            }
        }
    }

    /// Stores the state at a checkpoint index as this node's snapshot and, if this node is one
    /// of that state's voters, vouches for it through Raft. The state was computed here by
    /// applying the log, never installed from a leader: a node vouches only for what it saw.
    ///
    /// Encoding a large state takes time, so it runs on a blocking thread while applying goes
    /// on; until it is stored, openraft's snapshot is the previous checkpoint.
    fn checkpoint(&self, copy: Applied) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let index = copy.last_applied.map(|l| l.index).unwrap_or(0);
            let stored = match snapshot_of(&copy).and_then(|s| me.save_if_newer(&s).map(|_| s)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(index, error = %e, "cannot store the checkpoint");
                    return;
                }
            };
            let digest = checkpoint::digest(&stored.data);
            tracing::info!(index, digest = %hex::encode(digest), "checkpoint");
            if let Some(vault) = &me.vault {
                if copy.model.members.voters.contains_key(&vault.node_id()) {
                    let vouch = vault.vouch(index, digest);
                    let _ = me.acks.send(Outgoing::Op(Op::Checkpoint { index, vouch }));
                }
            }
        })
    }

    /// Stores `snap` as this node's snapshot unless a later one is stored already (a checkpoint
    /// finishing after a snapshot installed from the leader, say).
    fn save_if_newer(&self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        let _one_at_a_time = self.snapshot_write.lock().expect("snapshot write lock");
        let stored = self.stored_snapshot()?.and_then(|s| s.meta.last_log_id);
        if stored.is_some_and(|s| Some(s) >= snap.meta.last_log_id) {
            return Ok(());
        }
        self.save_snapshot(snap)
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_SNAPSHOT), KEY_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        raw.map(|raw| {
            codec::decode(&raw).map_err(|e| StorageIOError::read_snapshot(None, any(e)).into())
        })
        .transpose()
    }

    /// Test builds only: the snapshot this node sends gives `who` the root policy, with this
    /// node's own vouch for the forged bytes (a compromised leader's best attempt).
    #[cfg(feature = "byzantine-test")]
    fn forge_snapshot(&self, wire: &mut CertifiedSnapshot, index: u64, who: &str) {
        let (Some(vault), Ok(mut payload)) =
            (&self.vault, codec::decode::<SnapshotPayload>(&wire.state))
        else {
            return;
        };
        payload
            .applied
            .model
            .identity_policies
            .entry(who.into())
            .or_default()
            .insert(crate::state::ROOT_POLICY.into());
        let Ok(forged) = codec::encode(&SnapshotPayloadRef {
            applied: &payload.applied,
            secrets: &payload.secrets,
            calls: &payload.calls,
        }) else {
            return;
        };
        wire.vouches
            .push(vault.vouch(index, checkpoint::digest(&forged)));
        wire.state = forged;
        tracing::warn!(index, who, "TEST BUILD: sending a forged snapshot");
    }

    fn save_snapshot(&self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        let b = codec::encode(snap)
            .map_err(|e| StorageIOError::write_snapshot(Some(snap.meta.signature()), any(e)))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_SNAPSHOT), KEY_SNAPSHOT, b, &synced())
            .map_err(|e| StorageIOError::write_snapshot(Some(snap.meta.signature()), any(e)).into())
    }
}

/// A snapshot of `copy`: its bytes are a function of the state alone (MessagePack of ordered
/// maps), so every node at the same index makes the same bytes, and the same id.
fn snapshot_of(copy: &Applied) -> Result<StoredSnapshot, StorageError> {
    let data = codec::encode(&SnapshotPayloadRef {
        applied: copy,
        secrets: &copy.model.secrets,
        calls: &copy.model.calls.seen,
    })
    .map_err(|e| StorageIOError::read_state_machine(any(e)))?;
    let snapshot_id = match copy.last_applied {
        Some(l) => format!("{}-{}", l.leader_id, l.index),
        None => "empty".into(),
    };
    let meta = SnapshotMeta {
        last_log_id: copy.last_applied,
        last_membership: copy.membership.clone(),
        snapshot_id,
    };
    Ok(StoredSnapshot { meta, data })
}

/// What a follower checks a snapshot's vouches against, read from the snapshot's own bytes.
pub struct SnapshotView {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub members: Members,
    pub revocations: crate::state::revocations::Revocations,
}

/// Reads the parts of a snapshot's state that its certificate is checked against.
pub fn snapshot_view(state: &[u8]) -> Result<SnapshotView, codec::CodecError> {
    let payload: SnapshotPayload = codec::decode(state)?;
    Ok(SnapshotView {
        last_applied: payload.applied.last_applied,
        membership: payload.applied.membership,
        members: payload.applied.model.members,
        revocations: payload.applied.model.revocations,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // With checkpoints, the snapshot is the newest checkpoint (taken while applying),
        // the only states voters vouch for.
        if self.checkpoint_every > 0 {
            // openraft asks right after a checkpoint index is applied: wait for that checkpoint
            // to be stored rather than answer with the previous one (and be asked again after
            // every apply until it is).
            let pending = self.last_checkpoint.lock().expect("checkpoint lock").take();
            if let Some(h) = pending {
                let _ = h.await;
            }
            if let Some(snap) = self.stored_snapshot()? {
                tracing::debug!(index = ?snap.meta.last_log_id.map(|l| l.index), "snapshot is the newest checkpoint");
                return Ok(Snapshot {
                    meta: snap.meta,
                    snapshot: Box::new(Cursor::new(snap.data)),
                });
            }
        }
        // One consistent copy, taken under the lock; it is written out once the lock is let
        // go, so that applying (which takes the lock to write) is held up only for the copy,
        // not for encoding every secret entry.
        let copy = self.state.read().expect("state lock").clone();
        let mut stored = snapshot_of(&copy)?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        stored.meta.snapshot_id = format!("{}-{seq}", stored.meta.snapshot_id);
        self.save_snapshot(&stored)?;
        tracing::info!(index = ?copy.last_applied.map(|l| l.index), "built snapshot");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.state.read().expect("state lock");
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(delay) = self.slow_puts {
            let put = |e: &Entry| matches!(&e.payload, EntryPayload::Normal(c) if c.each().iter().any(|c| matches!(c.op, Op::KvPut(_))));
            if entries.iter().any(put) {
                tokio::time::sleep(delay).await;
            }
        }
        let mut results = Vec::new();
        let mut pending = Vec::new();
        let mut batch = WriteBatch::default();
        let mut sync_now = false;
        let mut checkpoint_copy: Option<Applied> = None;
        let last_index;
        {
            // Holding the write lock until the batch is durable: readers never see state that a
            // crash could take back.
            let mut st = self.state.write().expect("state lock");
            let mut members = st.model.members.clone();
            for entry in entries {
                let index = entry.log_id.index;
                let at_checkpoint =
                    self.checkpoint_every > 0 && index > 0 && index % self.checkpoint_every == 0;
                st.last_applied = Some(entry.log_id);
                let only_vouches = matches!(&entry.payload, EntryPayload::Normal(c)
                    if c.each().iter().all(|c| matches!(c.op, Op::Checkpoint { .. })));
                st.model.checkpoints.changed |= !only_vouches;
                match entry.payload {
                    EntryPayload::Blank => results.push(CommandResult::ok()),
                    EntryPayload::Normal(cmd) => {
                        // A batch's commands are applied one by one, each exactly as it would be
                        // in an entry of its own (`raft::batcher`).
                        let batched = matches!(cmd.op, Op::Batch(_));
                        let at = cmd.at;
                        if batched {
                            // The clients' signatures of the whole batch checked together.
                            self.trust.preverify(cmd.each(), &self.cluster_id);
                        }
                        let mut each = Vec::with_capacity(cmd.each().len());
                        for cmd in cmd.each() {
                            let ctx = ApplyCtx {
                                members: &members,
                                cluster_id: &self.cluster_id,
                                index: entry.log_id.index,
                                trust: &self.trust,
                                time: at,
                            };
                            let (res, fx) = st.model.apply(cmd, &ctx);
                            // A key-generation step keeps results that exist nowhere else
                            // (this node's key package); the log cannot recreate them.
                            sync_now |= fx.dkg.is_some();
                            for path in &fx.secrets {
                                self.write_secret(&mut batch, &st.model, path)?;
                            }
                            self.write_calls(&mut batch, &fx);
                            self.share_effects(&mut batch, &st.model, &fx, &mut pending, &members);
                            if fx.members {
                                members = st.model.members.clone();
                            }
                            each.push(res);
                        }
                        results.push(if batched {
                            CommandResult {
                                error: None,
                                batch: each,
                            }
                        } else {
                            each.pop().unwrap_or_default()
                        });
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        results.push(CommandResult::ok());
                    }
                }
                if at_checkpoint && st.model.checkpoints.changed {
                    st.model.checkpoints.changed = false;
                    checkpoint_copy = Some(st.clone());
                }
            }
            self.write_applied(&mut batch, &st)?;
            let opts = if sync_now { synced() } else { state_write() };
            self.db
                .write_opt(batch, &opts)
                .map_err(|e| StorageIOError::write_state_machine(any(e)))?;
            last_index = st.last_applied.map(|l| l.index).unwrap_or(0);
        }
        if let Some(copy) = checkpoint_copy {
            *self.last_checkpoint.lock().expect("checkpoint lock") = Some(self.checkpoint(copy));
        }
        for p in pending {
            let _ = self.acks.send(p);
        }
        self.applied_tx.send_replace(last_index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        // The vouches were checked before openraft was handed the snapshot
        // (`raft::snapshot_guard`); only the state is kept.
        let wire: CertifiedSnapshot = codec::decode(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?;
        let data = wire.state;
        let payload: SnapshotPayload = codec::decode(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?;
        let mut applied = payload.applied;
        applied.model.secrets = payload.secrets;
        for (id, expires) in payload.calls {
            applied.model.calls.insert(id, expires);
        }
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        {
            let mut st = self.state.write().expect("state lock");
            let mut batch = WriteBatch::default();
            for path in st.model.secrets.keys() {
                if !applied.model.secrets.contains_key(path) {
                    batch.delete_cf(cf(&self.db, CF_STATE), secret_key(path));
                }
            }
            for path in applied.model.secrets.keys() {
                self.write_secret(&mut batch, &applied.model, path)?;
            }
            for id in st.model.calls.seen.keys() {
                if !applied.model.calls.seen.contains_key(id) {
                    batch.delete_cf(cf(&self.db, CF_STATE), call_key(id));
                }
            }
            for (id, expires) in &applied.model.calls.seen {
                batch.put_cf(cf(&self.db, CF_STATE), call_key(id), expires.to_be_bytes());
            }
            self.write_applied(&mut batch, &applied)?;
            self.db
                .write_opt(batch, &synced())
                .map_err(|e| StorageIOError::write_state_machine(any(e)))?;
            *st = applied;
        }
        {
            let _one_at_a_time = self.snapshot_write.lock().expect("snapshot write lock");
            self.save_snapshot(&StoredSnapshot {
                meta: meta.clone(),
                data,
            })?;
        }
        self.reconcile_shares()?;
        self.installs.fetch_add(1, Ordering::Relaxed);
        self.applied_tx
            .send_replace(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), "installed snapshot from leader");
        Ok(())
    }

    /// The snapshot as it is sent: the stored state with the vouches the replicated state
    /// holds for its index now (a follower refuses it until enough voters vouched).
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(snap) = self.stored_snapshot()? else {
            return Ok(None);
        };
        let index = snap.meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let vouches = self
            .state
            .read()
            .expect("state lock")
            .model
            .checkpoints
            .vouches(index);
        // Changed only by the test-only Byzantine build.
        #[cfg_attr(not(feature = "byzantine-test"), allow(unused_mut))]
        let mut wire = CertifiedSnapshot {
            vouches,
            state: snap.data,
        };
        #[cfg(feature = "byzantine-test")]
        if let Some(who) = crate::byzantine::forged_snapshot() {
            self.forge_snapshot(&mut wire, index, &who);
        }
        let data = codec::encode(&wire).map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(Some(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{CommittedLeaderId, Entry as RaftEntry};

    use super::*;
    use crate::state::authority::testing::TestCa;
    use crate::state::Command;

    fn entry(index: u64, cmd: Command) -> Entry {
        RaftEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn put_group(name: &str) -> Op {
        Op::PutGroup {
            name: name.into(),
            members: BTreeSet::from(["alice".to_string()]),
        }
    }

    fn machine(dir: &std::path::Path, ca: &TestCa) -> StateMachine {
        let (tx, _rx) = mpsc::unbounded_channel();
        let db = crate::db::open(dir).unwrap();
        let sm = StateMachine::open(db, "c".into(), ca.trust.clone(), None, tx).unwrap();
        // As a genesis document would start it: `admin` is root.
        sm.shared().write().unwrap().model = crate::state::authority::testing::model();
        sm
    }

    /// A batch is the same as its commands in entries of their own: each is validated and
    /// answered on its own (one refused does not refuse the others), in order, and what they
    /// change is the same.
    #[tokio::test]
    async fn a_batch_applies_each_command_as_if_alone() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let ops = || {
            vec![
                put_group("ops"),
                Op::DeleteGroup {
                    name: "nobody".into(),
                    grant: None,
                },
                put_group("dev"),
                Op::DeleteGroup {
                    name: "ops".into(),
                    grant: None,
                },
            ]
        };

        let mut batched = machine(a.path(), &ca);
        let signed: Vec<Command> = ops().into_iter().map(|op| admin.sign(op)).collect();
        let res = batched
            .apply(vec![entry(
                1,
                Command::by_node("node1".into(), Op::Batch(signed.clone())),
            )])
            .await
            .unwrap();
        assert_eq!(res.len(), 1);
        let each: Vec<Option<String>> = res[0]
            .batch
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.to_string()))
            .collect();
        assert_eq!(each.len(), 4);
        assert!(each[0].is_none() && each[2].is_none() && each[3].is_none());
        assert_eq!(each[1].as_deref(), Some("group \"nobody\" does not exist"));

        let mut alone = machine(b.path(), &ca);
        let entries = signed
            .into_iter()
            .enumerate()
            .map(|(i, cmd)| entry(i as u64 + 1, cmd))
            .collect::<Vec<_>>();
        let res_alone = alone.apply(entries).await.unwrap();
        let alone_errors: Vec<Option<String>> = res_alone
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.to_string()))
            .collect();
        assert_eq!(each, alone_errors);

        let groups = |m: &StateMachine| m.shared().read().unwrap().model.groups.clone();
        assert_eq!(groups(&batched), groups(&alone));
        assert!(groups(&batched).contains_key("dev") && !groups(&batched).contains_key("ops"));
    }

    /// Two nodes that apply the same log, one in a single batch and one entry by entry, take
    /// byte-identical snapshots at each checkpoint index (voters must vouch for the same bytes),
    /// take none elsewhere, and skip a checkpoint reached with nothing but vouches applied.
    #[tokio::test]
    async fn checkpoints_are_the_same_bytes_on_every_node_and_only_at_their_indices() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let entries: Vec<Entry> = (1..=8)
            .map(|i| entry(i, admin.sign(put_group(&format!("g{i}")))))
            .collect();
        let mut one = machine(a.path(), &ca).with_checkpoints(4);
        let mut other = machine(b.path(), &ca).with_checkpoints(4);
        one.apply(entries.clone()).await.unwrap();
        let taken = |m: &StateMachine| m.last_checkpoint.lock().unwrap().take();
        taken(&one).unwrap().await.unwrap();
        for e in entries {
            other.apply(vec![e]).await.unwrap();
            if let Some(h) = taken(&other) {
                h.await.unwrap();
            }
        }
        let stored = |m: &StateMachine| m.stored_snapshot().unwrap().expect("a checkpoint");
        let (x, y) = (stored(&one), stored(&other));
        assert_eq!(x.meta.last_log_id.map(|l| l.index), Some(8));
        assert_eq!(x.data, y.data);
        assert_eq!(x.meta.snapshot_id, y.meta.snapshot_id);
        // Index 12 reached with nothing applied since 8 but (empty) batches: skipped, and
        // openraft's snapshot is still the checkpoint at 8, not the state at 12.
        let quiet: Vec<Entry> = (9..=12)
            .map(|i| entry(i, Command::by_node("node1".into(), Op::Batch(vec![]))))
            .collect();
        one.apply(quiet).await.unwrap();
        assert!(taken(&one).is_none());
        assert_eq!(stored(&one).meta.last_log_id.map(|l| l.index), Some(8));
        let built = one.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(8));
    }

    /// The signatures of a batch are checked together; one forged signature among them fails
    /// the batch check, and then each is checked alone: only the forged command is refused.
    #[tokio::test]
    async fn a_batch_with_one_forged_signature_refuses_only_that_command() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let mut sm = machine(dir.path(), &ca);
        let mut cmds: Vec<Command> = (0..4)
            .map(|i| admin.sign(put_group(&format!("g{i}"))))
            .collect();
        cmds[2].signed.as_mut().unwrap().signature[0] ^= 1;
        let res = sm
            .apply(vec![entry(
                1,
                Command::by_node("node1".into(), Op::Batch(cmds)),
            )])
            .await
            .unwrap();
        let errors: Vec<Option<String>> = res[0]
            .batch
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.to_string()))
            .collect();
        assert!(errors[0].is_none() && errors[1].is_none() && errors[3].is_none());
        assert!(
            errors[2]
                .as_deref()
                .unwrap_or("")
                .contains("does not verify"),
            "{errors:?}"
        );
        let groups = sm.shared().read().unwrap().model.groups.clone();
        assert!(groups.contains_key("g0") && groups.contains_key("g3"));
        assert!(!groups.contains_key("g2"));
    }

    #[tokio::test]
    async fn a_batch_inside_a_batch_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let mut sm = machine(dir.path(), &ca);
        let inner = Op::Batch(vec![ca.client("admin").sign(put_group("ops"))]);
        let outer = Op::Batch(vec![Command::by_node("node1".into(), inner)]);
        let res = sm
            .apply(vec![entry(1, Command::by_node("node1".into(), outer))])
            .await
            .unwrap();
        assert_eq!(
            res[0].batch[0]
                .error
                .as_ref()
                .map(|e| e.to_string())
                .as_deref(),
            Some("a batch of commands cannot be nested")
        );
        assert!(sm.shared().read().unwrap().model.groups.is_empty());
    }
}
