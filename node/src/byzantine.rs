//! The one seam through which a test build plays a faulty or compromised node.
//!
//! Tests must show that honest nodes and clients detect and route around a Byzantine holder
//! (law 3) and meet a lagging one, so the test build can be told by environment variables to
//! misbehave. None of that code exists in a build without the `byzantine-test` feature: the
//! functions below are constants there, and the environment is never read. Every hook lives in
//! this file, so a reviewer can see the whole attack surface a test build adds in one place.

use std::time::Duration;

#[cfg(feature = "byzantine-test")]
mod hooks {
    use std::time::Duration;

    /// `TESSERA_TEST_CORRUPT_RELEASES=1`: this node releases corrupted shares and signs bad
    /// receipts for other nodes' writes.
    pub fn corrupt_releases() -> bool {
        let on = std::env::var("TESSERA_TEST_CORRUPT_RELEASES").is_ok_and(|v| v == "1");
        if on {
            tracing::warn!("TEST BUILD: this node releases corrupted shares");
        }
        on
    }

    /// `TESSERA_TEST_SLOW_PUTS_MS=N`: this node applies each new version N ms late (a holder
    /// that lags behind the leader).
    pub fn slow_puts() -> Option<Duration> {
        let ms: u64 = std::env::var("TESSERA_TEST_SLOW_PUTS_MS")
            .ok()?
            .parse()
            .ok()?;
        tracing::warn!(ms, "TEST BUILD: this node applies new versions late");
        Some(Duration::from_millis(ms))
    }
}

#[cfg(not(feature = "byzantine-test"))]
mod hooks {
    use std::time::Duration;

    pub fn corrupt_releases() -> bool {
        false
    }

    pub fn slow_puts() -> Option<Duration> {
        None
    }
}

/// Whether this node corrupts the shares it releases and the receipts it gives other nodes
/// (test builds only; always false otherwise).
pub fn corrupt_releases() -> bool {
    hooks::corrupt_releases()
}

/// How late this node applies each new version (test builds only; always `None` otherwise).
pub fn slow_puts() -> Option<Duration> {
    hooks::slow_puts()
}
