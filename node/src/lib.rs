//! The Tessera node: Raft over RocksDB, the replicated model, policies, audit, metrics,
//! mTLS, the gRPC services, and the `tessera` command line.
//!
//! Layout (one folder a concern; docs/architecture.md): `raft/` consensus (log store, state
//! machine, transport, the way to the leader, consistent reads, what the node submits),
//! `state/` the replicated model and its commands, `shares/` this node's own shares and keys,
//! `signing/` its FROST nonces and key-generation deadlines, `policy/` path policies, `audit/`
//! the hash-chained audit log, `api/` the gRPC services (the only place that speaks
//! `tonic::Status`), `tls/` certificates and identities, `metrics/` Prometheus, `cli/` the
//! command line. `error` is every refusal a node can make, `db` the RocksDB database, `config`
//! a node's configuration file, `node` the parts wired together, `server` the serving loop.

pub mod api;
pub mod audit;
mod byzantine;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod policy;
pub mod raft;
pub mod server;
pub mod shares;
pub mod signing;
pub mod state;
pub mod tls;
