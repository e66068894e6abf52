//! Tessera's Rust SDK: one mutually authenticated gRPC connection to a node, and typed calls.
//!
//! The SDK never needs RocksDB or the node crate; it is what applications embed. Errors are
//! turned into `Error` values whose messages say what went wrong and what to do.

pub mod batch;
mod breakglass;
mod connect;
mod error;
mod kv;
mod release;
mod sign;
mod signed;
mod topology;

pub use breakglass::GrantUse;
pub use connect::{Client, ClientConfig};
pub use error::Error;
pub use kv::{deal_version, KvValue, PutOptions};
pub use sign::Signed;
pub use tessera_crypto as crypto;
pub use tessera_crypto::SecretBytes;
pub use tessera_proto as proto;
