//! The node's RocksDB database: one instance, one column family per concern, every write that
//! Raft relies on made with `sync` so that an acknowledged write survives `kill -9`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

/// Raft log entries, keyed by big-endian index.
pub const CF_LOG: &str = "log";
/// Raft metadata: vote, committed log id, last purged log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// The applied state machine.
pub const CF_STATE: &str = "state";
/// This node's own shares, sealed under its KEK. Never replicated, never in a snapshot.
pub const CF_SHARES: &str = "shares";
/// The latest snapshot, kept so that a restarted node can still serve it to a lagging peer.
pub const CF_SNAPSHOT: &str = "snapshot";

pub fn open(dir: &Path) -> anyhow::Result<Arc<DB>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // No compression: what is on disk can be searched as it is (the canary test proves that no
    // plaintext secret is), and the data is small and mostly ciphertext anyway.
    let cf_opts = || {
        let mut o = Options::default();
        o.set_compression_type(rocksdb::DBCompressionType::None);
        o
    };
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    let cfs = [CF_LOG, CF_RAFT_META, CF_STATE, CF_SNAPSHOT, CF_SHARES]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, cf_opts()));
    let db = DB::open_cf_descriptors(&opts, dir.join("raft.db"), cfs).map_err(|e| {
        anyhow::anyhow!(
            "cannot open RocksDB in {} (is another node using this data dir?): {e}",
            dir.display()
        )
    })?;
    Ok(Arc::new(db))
}

/// Write options for anything Raft has been or will be told is durable.
pub fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Write options for applying committed entries to the state machine: not synced on their own,
/// because everything applied is also in the Raft log, which is. A power loss can at worst
/// take the applied index back, and Raft then applies the same entries again (apply is
/// deterministic, and the applied index is written in the same batch as the state). RocksDB
/// keeps one ordered write-ahead log, so the next synced write (a log append, a purge, a
/// snapshot) makes every earlier state write durable: the log is never purged past state that
/// could still be lost. This takes one fsync off every commit's critical path. (A batch whose
/// effects cannot be recomputed from the log, a key-generation step, is synced.)
pub fn state_write() -> WriteOptions {
    WriteOptions::default()
}

pub fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is created at open"))
}
