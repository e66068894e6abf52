//! The replicated model: what every node agrees on through Raft (groups, policies and their
//! attachments), the commands that change it, and the pure function that applies them.
//!
//! Applying is deterministic and never trusts the submitter: a command that would break an
//! invariant is rejected identically on every node, and the model is left unchanged.

mod command;
mod model;

pub use command::{AttachTarget, Command, CommandResult, Op};
pub use model::{validate_name, Model, ROOT_POLICY};
