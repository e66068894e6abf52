//! Group commit on the leader: commands that arrive while the leader's previous Raft entry is
//! still being written go together in its next entry.
//!
//! openraft 0.9 appends and syncs the log once per `client_write`, on its own task, before it
//! takes the next request, so under concurrent writes the leader's fsyncs set the pace, one per
//! command. One entry that carries several commands costs one append and one sync on every node.
//! Nothing about a command changes on the way: the state machine applies a batch's commands one
//! by one, in order, each validated and answered on its own (`Op::Batch`), so the log says who
//! asked for what exactly as before. A command that arrives alone is written alone, at no extra
//! delay.

use std::sync::Arc;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{node_dns_name, NodeId, NodeInfo, Raft};
use crate::error::Refusal;
use crate::state::{Command, CommandResult, Op, Timestamp};

/// What one command's submission comes to: the index of the entry that carried it and its own
/// result, or Raft's error, which every command of that entry gets (as it would have alone).
pub type Written =
    Result<(u64, CommandResult), RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>;

/// Entries being written at once. While they are, new commands wait and form the next batch.
/// One, two and three measured the same under 32 concurrent writes (`chaos/cpu.sh`); with two,
/// one entry's replication overlaps the next one's append.
const IN_FLIGHT: usize = 2;
/// At most this many commands in one entry.
const MAX_COMMANDS: usize = 64;
/// At most about this many bytes of values in one entry (a value can be 1 MiB; messages between
/// nodes stop at 64 MiB).
const MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Written>,
}

/// The leader's queue of commands for Raft. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Starts the task that turns queued commands into entries. It ends when every `Batcher`
    /// handle is dropped.
    pub fn start(raft: Raft, id: NodeId) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, id, rx));
        Batcher { tx }
    }

    /// Submits one command through Raft and returns once it is committed and applied here.
    pub async fn write(&self, cmd: Command) -> Written {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Pending { cmd, reply }).is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

async fn run(raft: Raft, id: NodeId, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Waiting for a slot is what lets a batch form: commands queue up meanwhile.
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let mut bytes = value_bytes(&first.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_COMMANDS {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += value_bytes(&p.cmd);
                    if bytes > MAX_VALUE_BYTES {
                        held = Some(p);
                        break;
                    }
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(&raft, id, batch).await;
            drop(slot);
        });
    }
}

/// The bytes a command adds to an entry beyond its fixed fields: its value, if it has one.
fn value_bytes(cmd: &Command) -> usize {
    match &cmd.op {
        Op::KvPut(p) => p.ciphertext.ciphertext.len(),
        _ => 0,
    }
}

async fn submit(raft: &Raft, id: NodeId, mut batch: Vec<Pending>) {
    // The leader's clock stamps the entry (`Command::stamp`), bounded by every follower's.
    let now = Timestamp::now();
    if batch.len() == 1 {
        let p = batch.pop().expect("one command");
        let mut cmd = p.cmd;
        cmd.stamp(now);
        let res = raft.client_write(cmd).await;
        let _ = p.reply.send(res.map(|r| (r.log_id.index, r.data)));
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<oneshot::Sender<Written>>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let mut entry = Command::by_node(node_dns_name(id), Op::Batch(cmds));
    entry.stamp(now);
    match raft.client_write(entry).await {
        Ok(r) => {
            let index = r.log_id.index;
            let mut results = r.data.batch.into_iter();
            for reply in replies {
                // The state machine answers every command of a batch; a missing answer would
                // mean the entry was refused as a whole, and then so is each command.
                let res = results.next().unwrap_or_else(|| {
                    CommandResult::refused(r.data.error.clone().unwrap_or_else(|| {
                        Refusal::internal("the batch carrying this command was refused")
                    }))
                });
                let _ = reply.send(Ok((index, res)));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
