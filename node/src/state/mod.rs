//! The replicated model: what every node agrees on through Raft (groups, policies and their
//! attachments, cluster settings, and the public side of secrets), the commands that change it,
//! and the pure functions that validate and apply them.
//!
//! Applying is deterministic and never trusts the submitter: a command that would break an
//! invariant is rejected identically on every node, and the model is left unchanged. Each
//! operation's validation and application live together in `ops/`.

pub mod authority;
pub mod breakglass;
pub mod checkpoint;
mod command;
pub mod genesis;
pub mod intent;
pub mod keys;
pub mod kv;
pub mod members;
pub mod model;
pub mod ops;
pub mod revocations;
pub mod time;
pub mod topology;

pub use command::{AttachTarget, Command, CommandResult, Op};
pub use members::{Members, NodeId, NodeInfo};
pub use model::{validate_name, Effects, Model, Settings, ROOT_POLICY};
pub use time::Timestamp;
