//! Tessera's wire protocol: the generated tonic/prost types. Services by noun:
//!
//! - `Raft` (node to node: consensus, forwarding to the leader, read index, node status);
//! - `Holders` (node to node: receipts for a write's shares before it is submitted);
//! - `Kv` (secrets), `Signing` (threshold keys and signatures), `Sys` (the cluster itself),
//!   for clients.
//!
//! Every error a node sends carries a [`Refusal`] (see `refusal.proto`): the contract between
//! node and client is that typed value, not the status message.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("tessera.v1");
}

pub use v1::*;

/// The binary metadata key that carries a [`Refusal`] (protobuf) beside an error status.
pub const REFUSAL_METADATA_KEY: &str = "tessera-refusal-bin";
