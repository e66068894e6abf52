//! Commands carried by the Raft log, and what applying one returns.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::authority::SignedCall;
use super::keys::KeyPurpose;
use super::kv::{AckItem, KvPut};
use super::members::NodeId;
use super::{Model, Timestamp};
use crate::error::Refusal;
use tessera_crypto::b64;
use tessera_crypto::seal::ShareEnvelope;

/// Who a policy is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachTarget {
    Group(String),
    Identity(String),
}

/// One change to the replicated model. Every command records who asked for it, so the log itself
/// says who changed what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Identity (client certificate CN) that made the request, as checked by the serving node;
    /// `node<ID>` for a node's own commands (acknowledgements).
    pub by: String,
    pub op: Op,
    /// The client's signature on the request this command stands for (`state::authority`);
    /// `None` only for the few commands nodes make themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<Box<SignedCall>>,
    /// The leader's clock when it appended the entry (`stamp`), bounded by every follower's
    /// clock at append (`raft::append_guard`); unset on a batch's commands and before append.
    #[serde(default)]
    pub at: Timestamp,
}

impl Command {
    /// A command a node makes itself (acknowledgements, DKG messages, a batch's entry).
    pub fn by_node(by: String, op: Op) -> Command {
        Command {
            by,
            op,
            signed: None,
            at: Timestamp::default(),
        }
    }

    /// The leader stamps an entry as it appends it: the entry's time, and the time each of its
    /// commands records (a version's creation, a deletion, a key's creation). So a time in the
    /// replicated state is the leader's, which every follower bounds by its own clock before it
    /// appends (`raft::append_guard`), never the clock of whichever node took the request.
    pub fn stamp(&mut self, now: Timestamp) {
        self.at = now;
        match &mut self.op {
            Op::Batch(cmds) => {
                for c in cmds {
                    c.op.set_time(now);
                }
            }
            op => op.set_time(now),
        }
    }

    /// The commands this one stands for, in order: a batch's, or itself alone. Whatever looks
    /// into the log for a kind of command looks through this, so that batching changes nothing.
    pub fn each(&self) -> &[Command] {
        match &self.op {
            Op::Batch(cmds) => cmds,
            _ => std::slice::from_ref(self),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    PutGroup {
        name: String,
        members: BTreeSet<String>,
    },
    DeleteGroup {
        name: String,
        /// The break-glass grant deleting a group a gate names as approvers is made under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<String>,
    },
    /// `text` is the policy source; it was parsed by the serving node and is parsed again on
    /// apply, so a malformed policy can never enter the model.
    PutPolicy {
        name: String,
        text: String,
        /// The break-glass grant a change to a gating policy is made under (`ops::policy`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<String>,
    },
    DeletePolicy {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<String>,
    },
    Attach {
        policy: String,
        target: AttachTarget,
        detach: bool,
    },
    /// Replace groups, policies and attachments (operator snapshot restore). Membership,
    /// settings and secrets are not touched.
    Restore {
        model: Box<Model>,
    },
    /// Cluster settings; `None` leaves a setting as it is.
    SetSettings {
        threshold: Option<u32>,
        ack_fault_tolerance: Option<u32>,
        allow_unsafe_topology: Option<bool>,
        /// `breakglass.request_ttl`: how long a request waits for approvals (seconds).
        #[serde(default)]
        breakglass_request_ttl_secs: Option<u64>,
    },
    KvPut(Box<KvPut>),
    /// A holder's acknowledgements (or complaints) for versions it received.
    KvAcks {
        node: NodeId,
        acks: Vec<AckItem>,
        /// The node's signature over the batch's statements (`batch_message`).
        #[serde(with = "b64::bytes")]
        signature: Vec<u8>,
    },
    KvDelete {
        path: String,
        versions: Vec<u64>,
        time: Timestamp,
    },
    KvUndelete {
        path: String,
        versions: Vec<u64>,
    },
    KvDestroy {
        path: String,
        versions: Vec<u64>,
    },
    KvMetadataPut {
        path: String,
        max_versions: Option<u32>,
        cas_required: Option<bool>,
        custom_metadata: Option<BTreeMap<String, String>>,
        time: Timestamp,
    },
    /// Removes the secret, every version and its metadata.
    KvMetadataDelete {
        path: String,
    },
    /// Starts a distributed key generation among the voters.
    KeyCreate {
        name: String,
        purpose: KeyPurpose,
        time: Timestamp,
        /// Unix seconds after which the DKG is aborted if unfinished.
        deadline: u64,
    },
    /// A participant's public round-1 package.
    DkgRound1 {
        name: String,
        attempt: u64,
        node: NodeId,
        #[serde(with = "b64::bytes")]
        package: Vec<u8>,
        #[serde(with = "b64::bytes")]
        signature: Vec<u8>,
    },
    /// A participant's round-2 packages, each sealed to its recipient.
    DkgRound2 {
        name: String,
        attempt: u64,
        node: NodeId,
        envelopes: BTreeMap<NodeId, ShareEnvelope>,
        #[serde(with = "b64::bytes")]
        signature: Vec<u8>,
    },
    /// A participant finished: the public key package it derived.
    DkgDone {
        name: String,
        attempt: u64,
        node: NodeId,
        #[serde(with = "b64::bytes")]
        public_key_package: Vec<u8>,
        #[serde(with = "b64::bytes")]
        signature: Vec<u8>,
    },
    /// Sets the SSH role (principal, extension and lifetime limits) of an SSH CA key.
    SshRoleWrite {
        key: String,
        role: super::keys::SshRole,
    },
    /// A DKG that did not finish in time (or failed) is abandoned; `key create` runs it again.
    KeyAbort {
        name: String,
        attempt: u64,
        reason: String,
    },
    /// Opens a break-glass request (`state::breakglass`); its id is the signed call's id.
    BreakGlassRequest {
        path: String,
        capability: crate::policy::Capability,
        reason: String,
        ttl_secs: u64,
        time: Timestamp,
    },
    /// An approver's approval or denial of request `id`, for the request whose digest it names.
    BreakGlassDecide {
        id: String,
        approve: bool,
        comment: String,
        #[serde(with = "b64::bytes")]
        digest: Vec<u8>,
        time: Timestamp,
    },
    /// Ends request `id` or its grant.
    BreakGlassRevoke {
        id: String,
        time: Timestamp,
    },
    /// Commits one use of grant `id`.
    BreakGlassUse {
        id: String,
        use_id: String,
        target: crate::state::breakglass::UseTarget,
        time: Timestamp,
    },
    /// A node delivered these break-glass events (request id, event key; `notify::events`),
    /// signed with its acknowledgement key; the next leader does not deliver them again.
    BreakGlassNotified {
        node: NodeId,
        items: Vec<(String, String)>,
        #[serde(with = "b64::bytes")]
        signature: Vec<u8>,
    },
    /// The cluster's starting state, signed by a root at `operator init` (`state::genesis`):
    /// carried into the log by the first leader, applied once.
    Genesis(Box<super::genesis::Genesis>),
    /// A node joins the membership (`operator members add`). Its region and keys are what its
    /// certificate attests; `region` is what the request asked for ("" for any), and must match.
    MemberAdd {
        id: NodeId,
        addr: String,
        region: String,
        voter: bool,
        /// The joiner's certificate (DER), checked on apply against the cluster CA.
        #[serde(with = "b64::bytes")]
        certificate: Vec<u8>,
    },
    /// A node leaves the membership (`operator members remove`).
    MemberRemove {
        id: NodeId,
    },
    /// The identities that hold every capability, replacing the current ones.
    SetRoots {
        roots: BTreeSet<String>,
    },
    /// Certificates every node refuses from now on.
    Revoke {
        target: super::revocations::RevokeTarget,
    },
    /// A voter's signed digest of the state at a checkpoint index, which followers need before
    /// they install a snapshot taken there (`state::checkpoint`).
    Checkpoint {
        index: u64,
        vouch: super::checkpoint::Vouch,
    },
    /// Commands the leader received while its previous entry was being written, carried by one
    /// Raft entry (`raft::batcher`). Each is applied on its own, in order, with its own result,
    /// exactly as if each had its own entry; a batch inside a batch is refused.
    Batch(Vec<Command>),
    /// Test builds only (`crate::byzantine`): a break-glass record written into every node's
    /// state as it stands, past every check, as a compromised node (or its storage) would
    /// write it. It exists so that a test can show holders refuse what it carries.
    #[cfg(feature = "byzantine-test")]
    TestInjectBreakGlass(Box<crate::state::breakglass::Request>),
}

impl Op {
    /// The moment an op records, where it records one.
    fn set_time(&mut self, now: Timestamp) {
        match self {
            Op::KvPut(p) => p.time = now,
            Op::KvDelete { time, .. }
            | Op::KvMetadataPut { time, .. }
            | Op::BreakGlassRequest { time, .. }
            | Op::BreakGlassDecide { time, .. }
            | Op::BreakGlassRevoke { time, .. }
            | Op::BreakGlassUse { time, .. } => *time = now,
            // The deadline is the request's timeout from the moment recorded
            // (`intent::key_create`), so it moves with it.
            Op::KeyCreate { time, deadline, .. } => {
                let timeout = deadline.saturating_sub(time.unix_secs());
                *time = now;
                *deadline = now.unix_secs().saturating_add(timeout);
            }
            _ => {}
        }
    }
}

/// The outcome of applying a command, identical on every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// `None` when applied; otherwise why the model refused it (and nothing changed).
    pub error: Option<Refusal>,
    /// For an `Op::Batch`: the result of each of its commands, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<CommandResult>,
}

impl CommandResult {
    pub fn ok() -> Self {
        Self::default()
    }
    pub fn refused(why: Refusal) -> Self {
        Self {
            error: Some(why),
            batch: Vec::new(),
        }
    }
}
