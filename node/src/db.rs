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

/// The layout and encoding of what a data directory holds. A directory written under another
/// format is refused at start, naming both: there are no deployments to migrate yet, and
/// replaying records under rules they were not written for would be worse than refusing.
///
/// - 1: before this marker (directories without one).
/// - 2: typed refusals in replicated results, membership types in `state`, shares and DKG
///   packages as `ShareEnvelope`, policies without approval attributes.
/// - 3: commands carry their client's signature (`state::authority`); signed-call ids kept
///   under `call/`.
/// - 4: the cluster starts from a signed genesis document; members, roots and settings are
///   replicated state changed only by signed commands.
pub const DATA_FORMAT: u32 = 4;

/// Where the format marker lives (in `CF_RAFT_META`).
const FORMAT_KEY: &[u8] = b"data_format";

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
    check_format(&db, dir)?;
    Ok(Arc::new(db))
}

/// Marks a new data directory with [`DATA_FORMAT`]; refuses one written under another format.
fn check_format(db: &DB, dir: &Path) -> anyhow::Result<()> {
    let meta = cf(db, CF_RAFT_META);
    let found = match db.get_cf(meta, FORMAT_KEY)? {
        Some(b) => Some(
            <[u8; 4]>::try_from(b.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| {
                    anyhow::anyhow!("data directory {}: unreadable format marker", dir.display())
                })?,
        ),
        None => None,
    };
    let empty = [CF_LOG, CF_RAFT_META, CF_STATE, CF_SNAPSHOT, CF_SHARES]
        .into_iter()
        .all(|name| {
            db.iterator_cf(cf(db, name), rocksdb::IteratorMode::Start)
                .next()
                .is_none()
        });
    match found {
        Some(DATA_FORMAT) => Ok(()),
        None if empty => {
            db.put_cf_opt(meta, FORMAT_KEY, DATA_FORMAT.to_be_bytes(), &synced())?;
            Ok(())
        }
        other => anyhow::bail!(
            "data directory {} holds data format {} and this tessera reads format {DATA_FORMAT}; \
             there is no migration between them: start this node with a new, empty data \
             directory (and the cluster from a snapshot saved by the old version, if needed)",
            dir.display(),
            other.unwrap_or(1),
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_marked_and_an_older_one_is_refused_naming_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        // Marked: it opens again.
        drop(open(dir.path()).unwrap());

        // A directory of an earlier version: data, and no marker.
        let old = tempfile::tempdir().unwrap();
        {
            let db = open(old.path()).unwrap();
            db.delete_cf(cf(&db, CF_RAFT_META), FORMAT_KEY).unwrap();
            db.put_cf(cf(&db, CF_LOG), b"entry", b"x").unwrap();
        }
        let e = open(old.path()).unwrap_err().to_string();
        assert!(
            e.contains("holds data format 1 and this tessera reads format 4"),
            "{e}"
        );

        // One of a later version.
        let newer = tempfile::tempdir().unwrap();
        {
            let db = open(newer.path()).unwrap();
            db.put_cf(cf(&db, CF_RAFT_META), FORMAT_KEY, 9u32.to_be_bytes())
                .unwrap();
        }
        let e = open(newer.path()).unwrap_err().to_string();
        assert!(e.contains("holds data format 9"), "{e}");
    }
}
