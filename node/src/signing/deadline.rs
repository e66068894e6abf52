//! Key generations that do not finish in time are abandoned by the leader, so that `key create`
//! can run them again (a participant was down, or a message was lost).

use std::sync::Arc;
use std::time::Duration;

use crate::raft::leader::Leader;
use crate::raft::state_machine::SharedState;
use crate::state::keys::KeyStatus;
use crate::state::Op;

/// While this node leads, submits a `KeyAbort` for every key generation past its deadline.
/// Runs until the runtime stops.
pub async fn abort_stale_dkgs(state: SharedState, leader: Arc<Leader>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !leader.is_me() {
            continue;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        let stale: Vec<(String, u64)> = {
            let st = state.read().expect("state lock");
            st.model
                .keys
                .iter()
                .filter(|(_, k)| k.status == KeyStatus::Generating && k.deadline < now)
                .map(|(n, k)| (n.clone(), k.attempt))
                .collect()
        };
        for (name, attempt) in stale {
            tracing::warn!(key = %name, attempt, "key generation timed out; aborting");
            let op = Op::KeyAbort {
                name,
                attempt,
                reason: "the key generation did not finish in time (a participant is down?); run `tessera key create` again".into(),
            };
            leader.submit_own(op).await;
        }
    }
}
