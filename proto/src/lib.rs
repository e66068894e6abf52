//! Tessera's wire protocol: the generated tonic/prost types for node-to-node Raft traffic
//! (`Raft` service) and the client API (`Tessera` service).

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("tessera.v1");
}

pub use v1::*;
