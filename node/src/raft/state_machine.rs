//! The Raft state machine on RocksDB: applies committed commands to the replicated model,
//! builds snapshots (which let the log be compacted) and installs snapshots from the leader.
//!
//! The model, the last applied log id and the membership are written together in one synced
//! batch, so after a crash the state machine is exactly as of some applied index and openraft
//! replays the log from there.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::db::{cf, synced, CF_SNAPSHOT, CF_STATE};
use super::{any, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::{CommandResult, Model};

const KEY_APPLIED: &[u8] = b"applied";
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

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    state: SharedState,
    snapshot_seq: Arc<AtomicU64>,
    /// Counts snapshots installed from a leader (exported as a metric).
    pub installs: Arc<AtomicU64>,
}

impl StateMachine {
    pub fn open(db: Arc<DB>) -> anyhow::Result<Self> {
        let applied = match db.get_cf(cf(&db, CF_STATE), KEY_APPLIED)? {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("state machine data is corrupt: {e}"))?,
            None => Applied::default(),
        };
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(applied)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            installs: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    fn persist(&self, applied: &Applied) -> Result<(), StorageError> {
        let b =
            serde_json::to_vec(applied).map_err(|e| StorageIOError::write_state_machine(any(e)))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_STATE), KEY_APPLIED, b);
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_state_machine(any(e)).into())
    }

    fn save_snapshot(&self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        let b = serde_json::to_vec(snap)
            .map_err(|e| StorageIOError::write_snapshot(Some(snap.meta.signature()), any(e)))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_SNAPSHOT), KEY_SNAPSHOT, b, &synced())
            .map_err(|e| StorageIOError::write_snapshot(Some(snap.meta.signature()), any(e)).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, membership) = {
            let st = self.state.read().expect("state lock");
            let data =
                serde_json::to_vec(&*st).map_err(|e| StorageIOError::read_state_machine(any(e)))?;
            (data, st.last_applied, st.membership.clone())
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)?;
        tracing::info!(index = ?last_applied.map(|l| l.index), "built snapshot");
        Ok(Snapshot {
            meta,
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
        // Apply to a copy and publish it only after it is durable: readers never see state that
        // a crash could take back.
        let mut next = self.state.read().expect("state lock").clone();
        let mut results = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(CommandResult::ok()),
                EntryPayload::Normal(cmd) => results.push(next.model.apply(&cmd)),
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), m);
                    results.push(CommandResult::ok());
                }
            }
        }
        self.persist(&next)?;
        *self.state.write().expect("state lock") = next;
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
        let data = snapshot.into_inner();
        let mut applied: Applied = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        self.persist(&applied)?;
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        *self.state.write().expect("state lock") = applied;
        self.installs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_SNAPSHOT), KEY_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        let Some(raw) = raw else { return Ok(None) };
        let snap: StoredSnapshot = serde_json::from_slice(&raw)
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(Some(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
        }))
    }
}
