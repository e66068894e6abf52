//! The one seam through which a test build plays a faulty or compromised node.
//!
//! Tests must show that honest nodes and clients detect and route around a Byzantine holder
//! (law 3) and meet a lagging one, so the test build can be told by environment variables to
//! misbehave. None of that code exists in a build without the `byzantine-test` feature: the
//! functions below are constants there, and the environment is never read. Every hook lives in
//! this file, so a reviewer can see the whole attack surface a test build adds in one place.

use std::time::Duration;

#[cfg(feature = "byzantine-test")]
mod hooks {
    use std::time::Duration;

    /// `TESSERA_TEST_CORRUPT_RELEASES=1`: this node releases corrupted shares and signs bad
    /// receipts for other nodes' writes.
    pub fn corrupt_releases() -> bool {
        let on = std::env::var("TESSERA_TEST_CORRUPT_RELEASES").is_ok_and(|v| v == "1");
        if on {
            tracing::warn!("TEST BUILD: this node releases corrupted shares");
        }
        on
    }

    /// `TESSERA_TEST_FALSE_COMPLAINTS=1`: this node gives no receipts, and complains about
    /// every share it is dealt (a faulty or compromised holder trying to brick versions).
    pub fn false_complaints() -> bool {
        let on = std::env::var("TESSERA_TEST_FALSE_COMPLAINTS").is_ok_and(|v| v == "1");
        if on {
            tracing::warn!("TEST BUILD: this node complains about every share");
        }
        on
    }

    /// `TESSERA_TEST_LYING_TOPOLOGY=keys|threshold`: this node answers `Topology` with its own
    /// sealing key for every other holder, or with a threshold of 1 (a compromised gateway).
    pub fn lying_topology() -> Option<super::Lie> {
        let lie = match std::env::var("TESSERA_TEST_LYING_TOPOLOGY").ok()?.as_str() {
            "keys" => super::Lie::Keys,
            "threshold" => super::Lie::Threshold,
            _ => return None,
        };
        tracing::warn!(?lie, "TEST BUILD: this node lies about the topology");
        Some(lie)
    }

    /// `TESSERA_TEST_SLOW_PUTS_MS=N`: this node applies each new version N ms late (a holder
    /// that lags behind the leader).
    pub fn slow_puts() -> Option<Duration> {
        let ms: u64 = std::env::var("TESSERA_TEST_SLOW_PUTS_MS")
            .ok()?
            .parse()
            .ok()?;
        tracing::warn!(ms, "TEST BUILD: this node applies new versions late");
        Some(Duration::from_millis(ms))
    }

    /// `TESSERA_TEST_FORGED_SNAPSHOT=IDENTITY`: every snapshot this node sends attaches the
    /// root policy to IDENTITY, with this node's own vouch for the forged state (a compromised
    /// leader replacing a lagging follower's state).
    pub fn forged_snapshot() -> Option<String> {
        std::env::var("TESSERA_TEST_FORGED_SNAPSHOT").ok()
    }

    /// `TESSERA_TEST_CUT_OFF_FILE=PATH`: while PATH exists, this node neither hears nor
    /// reaches its peers (a network partition between nodes), while clients still reach it.
    pub fn cut_off() -> bool {
        std::env::var_os("TESSERA_TEST_CUT_OFF_FILE")
            .is_some_and(|p| std::path::Path::new(&p).exists())
    }
}

#[cfg(feature = "byzantine-test")]
mod forge {
    //! `TESSERA_TEST_FORGE_DIR=DIR`: this node plays a compromised leader that appends
    //! commands of its own making straight to the Raft log, past every check a serving node
    //! makes. A test writes one request per file `DIR/NAME.forge`:
    //! - `attach-root IDENTITY`: attach the root policy to IDENTITY, "by admin", unsigned;
    //! - `destroy PATH VERSION`: destroy a version, "by admin", unsigned;
    //! - `hold`: the next signed request this node serves is kept, not submitted (the client
    //!   gets an error), so that its signature was never used;
    //! - `rebind-attach-root IDENTITY`: the same attach, carrying the signature of the last
    //!   real signed request this node served (or held);
    //! - `replay`: the last real signed command this node served, appended again as it was.
    //! - `raft-add-learner ID ADDR`: a Raft membership entry that adds node ID (no signed
    //!   command asked for it), proposed at Raft's own layer;
    //! - `raft-remove-voter ID`: likewise, one that takes node ID's vote.
    //! - `forge-approval ID APPROVER`: break-glass request ID with an approval by APPROVER
    //!   added, carrying the signed call of the last real request this node served (someone
    //!   else's signature), and marked granted if that meets the gates; written into every
    //!   node's state as it stands (`Op::TestInjectBreakGlass`, applied unchecked: the
    //!   record a compromised node or storage would leave, which holders must refuse).
    //!
    //! The node answers in `DIR/NAME.result`: `index=N` and `error=...` (the replicated
    //! refusal, empty if the command applied), or `failed=...` if nothing was committed.

    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::{ForgeTools, RaftForgery};
    use crate::state::{AttachTarget, Command, Op, ROOT_POLICY};

    static LAST_SIGNED: Mutex<Option<Command>> = Mutex::new(None);
    static HOLD: AtomicBool = AtomicBool::new(false);

    /// Remembers a signed command; whether it is to be held back.
    pub fn observe(cmd: &Command) -> bool {
        if cmd.signed.is_none() {
            return false;
        }
        *LAST_SIGNED.lock().expect("observed") = Some(cmd.clone());
        HOLD.swap(false, Ordering::SeqCst)
    }

    pub fn spawn(tools: ForgeTools) {
        let Ok(dir) = std::env::var("TESSERA_TEST_FORGE_DIR") else {
            return;
        };
        tracing::warn!(%dir, "TEST BUILD: this node forges commands on request");
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    let path = e.path();
                    if path.extension().is_some_and(|x| x == "forge") {
                        let spec = std::fs::read_to_string(&path).unwrap_or_default();
                        let _ = std::fs::remove_file(&path);
                        let answer = forge(&tools, spec.trim()).await;
                        write_result(&path.with_extension("result"), &answer);
                    }
                }
            }
        });
    }

    fn write_result(path: &Path, answer: &str) {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::write(&tmp, answer);
        let _ = std::fs::rename(&tmp, path);
    }

    /// Request `id` of `m` with a forged approval by `approver` (see the module's list).
    fn forge_approval(
        m: &crate::state::Model,
        id: &str,
        approver: &str,
        call: Option<Box<crate::state::authority::SignedCall>>,
    ) -> Result<Op, String> {
        use crate::state::breakglass::{gates_for, Decision, Grant};
        let mut r = m
            .breakglass
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no break-glass request {id}"))?;
        let now = crate::state::Timestamp::now();
        r.decisions.push(Decision {
            approver: approver.to_string(),
            approve: true,
            comment: "forged".into(),
            at: now,
            groups: m.groups_of(approver).into_iter().collect(),
            call,
        });
        let gates = gates_for(&m.policies, &crate::policy::PolicyCache::default(), &r.path);
        if gates.met(&r.requester, &r.decisions).is_ok() {
            let secs = r.ttl_secs.min(gates.max_ttl_secs());
            r.granted = Some(Grant {
                at: now,
                until: crate::state::Timestamp::from_unix_nanos(
                    now.unix_nanos() + secs * 1_000_000_000,
                ),
                uses: gates.uses(),
            });
        }
        Ok(Op::TestInjectBreakGlass(Box::new(r)))
    }

    fn forged(tools: &ForgeTools, spec: &str) -> Result<Command, String> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let attach = |who: &str| Op::Attach {
            policy: ROOT_POLICY.into(),
            target: AttachTarget::Identity(who.into()),
            detach: false,
        };
        let last = || {
            LAST_SIGNED
                .lock()
                .expect("observed")
                .clone()
                .ok_or_else(|| "no signed request served yet".to_string())
        };
        match words.as_slice() {
            ["attach-root", who] => Ok(Command::by_node("admin".into(), attach(who))),
            ["destroy", path, version] => Ok(Command::by_node(
                "admin".into(),
                Op::KvDestroy {
                    path: path.to_string(),
                    versions: vec![version.parse().map_err(|_| "bad version")?],
                },
            )),
            ["rebind-attach-root", who] => {
                let mut cmd = last()?;
                cmd.op = attach(who);
                Ok(cmd)
            }
            ["replay"] => last(),
            ["forge-approval", id, approver] => {
                let call = last().ok().and_then(|c| c.signed);
                let op = forge_approval(&(tools.model)(), id, approver, call)?;
                Ok(Command::by_node("node1".into(), op))
            }
            _ => Err(format!("unknown forge request {spec:?}")),
        }
    }

    async fn forge(tools: &ForgeTools, spec: &str) -> String {
        if spec == "hold" {
            HOLD.store(true, Ordering::SeqCst);
            return "held=armed".into();
        }
        let words: Vec<&str> = spec.split_whitespace().collect();
        let membership = match words.as_slice() {
            ["raft-add-learner", id, addr] => id.parse().ok().map(|id| RaftForgery::AddLearner {
                id,
                addr: addr.to_string(),
            }),
            ["raft-remove-voter", id] => id.parse().ok().map(RaftForgery::RemoveVoter),
            _ => None,
        };
        let cmd = match (&membership, forged(tools, spec)) {
            (Some(_), _) => None,
            (None, Ok(c)) => Some(c),
            (None, Err(e)) => return format!("failed={e}"),
        };
        // The test makes this node the leader (any member can become it).
        for _ in 0..100 {
            if (tools.is_leader)() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !(tools.is_leader)() {
            return "failed=this node is not the leader".into();
        }
        if let Some(change) = membership {
            return match (tools.membership)(change).await {
                Ok(index) => format!("index={index}\nerror="),
                Err(e) => format!("failed={e}"),
            };
        }
        let Some(cmd) = cmd else {
            return "failed=nothing to forge".into();
        };
        match (tools.append)(cmd).await {
            Ok((index, error)) => format!("index={index}\nerror={}", error.unwrap_or_default()),
            Err(e) => format!("failed={e}"),
        }
    }
}

/// A change to Raft's own membership that no signed command asked for.
#[cfg_attr(not(feature = "byzantine-test"), allow(dead_code))]
pub enum RaftForgery {
    AddLearner { id: u64, addr: String },
    RemoveVoter(u64),
}

/// What the forger needs of the node, given as functions so that this file depends on no
/// part of the node but the state it forges.
#[cfg_attr(not(feature = "byzantine-test"), allow(dead_code))]
pub struct ForgeTools {
    pub is_leader: Box<dyn Fn() -> bool + Send + Sync>,
    /// Appends a command straight to the Raft log: its index and the replicated refusal.
    #[allow(clippy::type_complexity)]
    pub append: Box<
        dyn Fn(
                crate::state::Command,
            )
                -> futures::future::BoxFuture<'static, Result<(u64, Option<String>), String>>
            + Send
            + Sync,
    >,
    /// Proposes a Raft membership change as leader: its index once committed.
    #[allow(clippy::type_complexity)]
    pub membership: Box<
        dyn Fn(RaftForgery) -> futures::future::BoxFuture<'static, Result<u64, String>>
            + Send
            + Sync,
    >,
    /// A copy of this node's replicated model.
    pub model: Box<dyn Fn() -> crate::state::Model + Send + Sync>,
}

/// Remembers a signed command this node is about to submit (test builds only: the forger
/// reuses it); whether to hold it back instead (never, outside test builds).
pub fn withhold_signed(_cmd: &crate::state::Command) -> bool {
    #[cfg(feature = "byzantine-test")]
    return forge::observe(_cmd);
    #[cfg(not(feature = "byzantine-test"))]
    false
}

/// Starts the forger if the environment asks for it (test builds only; nothing otherwise).
pub fn spawn_forger(_tools: impl FnOnce() -> ForgeTools) {
    #[cfg(feature = "byzantine-test")]
    forge::spawn(_tools());
}

#[cfg(not(feature = "byzantine-test"))]
mod hooks {
    use std::time::Duration;

    pub fn corrupt_releases() -> bool {
        false
    }

    pub fn lying_topology() -> Option<super::Lie> {
        None
    }

    pub fn false_complaints() -> bool {
        false
    }

    pub fn slow_puts() -> Option<Duration> {
        None
    }

    pub fn cut_off() -> bool {
        false
    }
}

/// How a test build lies about the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "byzantine-test"), allow(dead_code))]
pub enum Lie {
    /// Its own sealing key for every other holder.
    Keys,
    /// A threshold of 1.
    Threshold,
}

/// How this node lies about the topology (test builds only; always `None` otherwise).
pub fn lying_topology() -> Option<Lie> {
    hooks::lying_topology()
}

/// Whether this node corrupts the shares it releases and the receipts it gives other nodes
/// (test builds only; always false otherwise).
pub fn corrupt_releases() -> bool {
    hooks::corrupt_releases()
}

/// How late this node applies each new version (test builds only; always `None` otherwise).
pub fn slow_puts() -> Option<Duration> {
    hooks::slow_puts()
}

/// Whether this node withholds receipts and complains about every share it is dealt (test
/// builds only; always false otherwise).
pub fn false_complaints() -> bool {
    hooks::false_complaints()
}

/// Whom the snapshots this node sends forge a root grant for (test builds only; the code that
/// forges, in `raft::state_machine`, exists only in them).
#[cfg(feature = "byzantine-test")]
pub fn forged_snapshot() -> Option<String> {
    hooks::forged_snapshot()
}

/// Whether this node is cut off from its peers (test builds only; always false otherwise).
pub fn cut_off() -> bool {
    hooks::cut_off()
}
