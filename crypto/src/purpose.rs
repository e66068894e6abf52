//! What a threshold signing key is for. One enum for the crypto, the node and the client: a
//! key signs only requests of its own purpose (`SignRequest::check`), so an SSH CA key cannot
//! be made to sign a JWT or raw bytes.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyPurpose {
    /// An OpenSSH user certificate authority.
    SshUserCa,
    /// An OpenSSH host certificate authority.
    SshHostCa,
    /// An EdDSA JWT issuer.
    Jwt,
    /// Raw Ed25519 signatures over caller-chosen bytes.
    Raw,
}

impl KeyPurpose {
    pub const ALL: [KeyPurpose; 4] = [
        KeyPurpose::SshUserCa,
        KeyPurpose::SshHostCa,
        KeyPurpose::Jwt,
        KeyPurpose::Raw,
    ];

    /// The name on the command line and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::SshUserCa => "ssh-user-ca",
            KeyPurpose::SshHostCa => "ssh-host-ca",
            KeyPurpose::Jwt => "jwt",
            KeyPurpose::Raw => "raw",
        }
    }
}

impl std::fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A purpose name that is not one of [`KeyPurpose::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown purpose {0:?}: use ssh-user-ca, ssh-host-ca, jwt or raw")]
pub struct UnknownPurpose(pub String);

impl std::str::FromStr for KeyPurpose {
    type Err = UnknownPurpose;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyPurpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPurpose(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for p in KeyPurpose::ALL {
            assert_eq!(p.as_str().parse::<KeyPurpose>(), Ok(p));
        }
        let e = "ssh".parse::<KeyPurpose>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown purpose \"ssh\": use ssh-user-ca, ssh-host-ca, jwt or raw"
        );
    }
}
