//! Tessera's crypto, pure and synchronous (no I/O, no async, no RocksDB), shared by the node and
//! the client.
//!
//! The pieces follow a secret's life:
//! - [`value`]: a random data key encrypts the value (AES-256-GCM, path and version bound in).
//! - [`vss`]: the data key's scalar is dealt `t` of `n` with Feldman VSS over Ristretto255, with
//!   public commitments anyone can check a share against; `t` shares recombine it.
//! - [`seal`]: each share travels sealed to one node's X25519 key (HPKE, RFC 9180 base mode),
//!   with the cluster, path, version, node and purpose bound into the context (`hpke.rs`: the
//!   one suite Tessera uses, written for the hot path and checked against the `hpke` crate).
//! - [`release`]: a holder releases shares to a reader's one-time key, one HPKE context per reply.
//! - [`at_rest`]: a node keeps its share sealed under its key-encryption key.
//! - [`ack`]: a node signs (Ed25519) that it holds a verified share; [`merkle`] lets one
//!   signature vouch for a batch of such statements.
//!
//! Every type that holds secret material zeroizes on drop and prints a placeholder in `Debug`.

pub mod ack;
pub mod at_rest;
pub mod attest;
pub mod b64;
pub mod breakglass;
pub mod client_sig;
pub mod frost;
mod hpke;
pub mod jwt;
pub mod merkle;
pub mod purpose;
pub mod release;
pub mod seal;
pub mod secret;
pub mod sign_request;
pub mod ssh;
pub mod value;
pub mod vss;

pub use secret::SecretBytes;

/// Errors carry no secret material, only what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("decryption failed: wrong key or context, or the data was altered")]
    Decrypt,
    #[error("share {index} does not match the commitments")]
    BadShare { index: u16 },
    #[error("need {need} shares, have {have}")]
    NotEnoughShares { need: usize, have: usize },
}

pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> CryptoError {
    CryptoError::Invalid {
        what,
        why: why.into(),
    }
}

/// The random number generator every function here takes: the OS generator.
pub fn rng() -> rand08::rngs::OsRng {
    rand08::rngs::OsRng
}

/// Fills buffers from a CSPRNG (lets callers draw random bytes without depending on `rand`).
pub trait RngFill {
    fn fill(&mut self, b: &mut [u8]);
}

impl RngFill for rand08::rngs::OsRng {
    fn fill(&mut self, b: &mut [u8]) {
        rand08::RngCore::fill_bytes(self, b)
    }
}
