//! The Raft log on RocksDB: entries, vote, committed and purged log ids.
//!
//! Every mutation is written with `sync` before openraft is told it is durable; that is what lets
//! an acknowledged write survive `kill -9` of every node. The one exception is the committed
//! log id, a hint openraft does not need to be durable (see `save_committed`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::codec;
use super::{any, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::db::{cf, state_write, synced, CF_LOG, CF_RAFT_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_idx(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_RAFT_META), key)
            .map_err(|e| StorageIOError::read(any(e)))?;
        match raw {
            None => Ok(None),
            Some(b) => codec::decode(&b)
                .map(Some)
                .map_err(|e| StorageIOError::read(any(e)).into()),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError> {
        self.put_meta_with(key, v, &synced())
    }

    fn put_meta_with<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
        opts: &rocksdb::WriteOptions,
    ) -> Result<(), StorageError> {
        let b = codec::encode(v).map_err(|e| StorageIOError::write(any(e)))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT_META), key, b, opts)
            .map_err(|e| StorageIOError::write(any(e)).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            cf(&self.db, CF_LOG),
            IteratorMode::From(&idx_key(start), Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(any(e)))?;
            let idx = key_idx(&k);
            if !range.contains(&idx) {
                break;
            }
            let entry: Entry = codec::decode(&v).map_err(|e| StorageIOError::read_logs(any(e)))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        let last = match it.next() {
            None => None,
            Some(item) => {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(any(e)))?;
                let entry: Entry =
                    codec::decode(&v).map_err(|e| StorageIOError::read_logs(any(e)))?;
                Some(entry.log_id)
            }
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    /// Not synced on its own (openraft asks no durability of it). It only lets a restarted
    /// node apply what it knows was committed before hearing from a leader; a power loss can
    /// at worst take it back to an earlier committed index, never past one. RocksDB keeps one
    /// ordered write-ahead log, so the next synced write (a log append) makes it durable too.
    /// Syncing it cost an fsync, on Raft's own task, every time the commit index moved.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta_with(KEY_COMMITTED, &committed, &state_write())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let log = cf(&self.db, CF_LOG);
        for entry in entries {
            let v = codec::encode(&entry).map_err(|e| StorageIOError::write_logs(any(e)))?;
            batch.put_cf(log, idx_key(entry.log_id.index), v);
        }
        let res = self.db.write_opt(batch, &synced());
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(any(e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            idx_key(log_id.index),
            idx_key(u64::MAX),
        );
        // delete_range excludes its end key; u64::MAX is never a real index.
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: if we crash between the two writes the log state is
        // still consistent (entries at or below it are ignored as purged).
        self.put_meta(KEY_PURGED, &log_id)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOG), idx_key(0), idx_key(log_id.index + 1));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }
}
