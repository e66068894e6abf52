//! The node's gRPC services. Below this folder nothing returns a `tonic::Status`: handlers
//! refuse with a `Refusal`, which `error/wire.rs` turns into a status at the edge (and the peer
//! client in `raft/network.rs` turns a peer's status back into a `Refusal`).
//!
//! One service per noun, each in its own file, each trait implementation the handler itself:
//! `Kv` (secrets), `Signing` (threshold keys and signatures) and `Sys` (the cluster) for
//! clients; `Raft` and `Holder` between nodes. Every client call goes through `Api::run`
//! (`call.rs`), which takes the caller's identity from its verified certificate, lets the
//! handler authorize and act, writes the audit line (fsynced) before any answer leaves the
//! node, and records metrics. Handlers refuse with a typed [`Refusal`](crate::error::Refusal);
//! it becomes a status, with the refusal in its metadata, at the edge.

mod authz;
mod breakglass;
mod call;
mod convert;
mod grant;
mod holder;
mod kv;
mod peers;
mod raft;
mod signing;
mod sys;

use std::sync::Arc;

use crate::node::Node;

pub use authz::authorize;

/// The services' shared handle on the node (cheap to clone: one per service).
#[derive(Clone)]
pub struct Api {
    node: Arc<Node>,
}

impl Api {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}
