//! The Tessera node: Raft over RocksDB, the replicated model, policies, audit, metrics,
//! mTLS, the gRPC services, and the `tessera` command line.
//!
//! Layout (one folder a concern, see DESIGN.md): `raft/` consensus and storage, `state/` the
//! replicated model and its commands, `policy/` path policies, `audit/` the hash-chained audit
//! log, `api/` the tonic services, `tls/` certificates and identities, `metrics/` Prometheus,
//! `cli/` the command line, `config` a node's configuration file, `node` the running node.

pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod raft;
pub mod shares;
pub mod state;
pub mod tls;
