//! Threshold signing on this node, apart from the API: the round-1 nonces it holds for its
//! callers, and the deadline its key generations must meet.

pub mod deadline;
pub mod nonces;

pub use nonces::NonceStore;
