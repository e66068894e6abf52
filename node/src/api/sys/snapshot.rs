//! The file `tessera operator snapshot save` writes and `restore` reads.

use crate::state::Model;

pub(super) const SNAPSHOT_FORMAT: &str = "tessera-snapshot-v1";

/// What `tessera operator snapshot save` writes: the replicated data model (no membership, no
/// secrets: only public metadata lives in the model).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SnapshotFile {
    pub format: String,
    pub cluster_id: String,
    pub model: Model,
}
