//! A node's private keys and where they come from: the key-encryption key (KEK) from a
//! `KeyProvider`, and the sealing and acknowledgement keys, kept on disk only sealed under it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_crypto::ack::AckKey;
use tessera_crypto::at_rest::Kek;
use tessera_crypto::seal::SealingKey;

/// Where a node's KEK comes from. A file with 0600 permissions today; a KMS or PKCS#11 later.
pub trait KeyProvider {
    fn kek(&self) -> anyhow::Result<Kek>;
}

/// The KEK as 64 hex characters in a file only its owner can read.
pub struct FileKeyProvider {
    pub path: PathBuf,
}

impl KeyProvider for FileKeyProvider {
    fn kek(&self) -> anyhow::Result<Kek> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            anyhow::anyhow!("cannot read the KEK file {}: {e}", self.path.display())
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            anyhow::bail!(
                "the KEK file {} is readable by others (mode {:o}); chmod 600 it",
                self.path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&self.path)?);
        let bytes = zeroize::Zeroizing::new(
            hex::decode(text.trim())
                .map_err(|_| anyhow::anyhow!("the KEK file {} is not hex", self.path.display()))?,
        );
        Kek::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("KEK file {}: {e}", self.path.display()))
    }
}

/// A node's private keys, loaded in memory. Never printed.
pub struct NodeKeys {
    pub kek: Kek,
    pub sealing: SealingKey,
    pub ack: AckKey,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKeys(<redacted>)")
    }
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    sealing: String,
    ack: String,
}

fn label(node: u64) -> Vec<u8> {
    format!("tessera/node-keys/v1/{node}").into_bytes()
}

/// Creates a node's key files: the KEK (0600) and the private keys sealed under it. Returns the
/// public halves (sealing key, acknowledgement key) as hex for the membership.
pub fn create(
    node: u64,
    kek_path: &Path,
    keys_path: &Path,
    write_private: impl Fn(&Path, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<(String, String)> {
    let kek = Kek::generate();
    let sealing = SealingKey::generate();
    let ack = AckKey::generate();
    let kf = zeroize::Zeroizing::new(serde_json::to_vec(&KeysFile {
        sealing: hex::encode(sealing.secret_bytes().expose()),
        ack: hex::encode(ack.secret_bytes().expose()),
    })?);
    write_private(kek_path, hex::encode(kek.to_bytes().expose()).as_bytes())?;
    write_private(keys_path, &kek.seal(&label(node), &kf))?;
    Ok((hex::encode(sealing.public().0), hex::encode(ack.public())))
}

pub fn load(node: u64, provider: &dyn KeyProvider, keys_path: &Path) -> anyhow::Result<NodeKeys> {
    let kek = provider.kek()?;
    let sealed = std::fs::read(keys_path).map_err(|e| {
        anyhow::anyhow!("cannot read the node key file {}: {e}", keys_path.display())
    })?;
    let plain = kek.open(&label(node), &sealed).map_err(|_| {
        anyhow::anyhow!(
            "the node key file {} does not open with this KEK (wrong KEK or another node's file)",
            keys_path.display()
        )
    })?;
    let kf: KeysFile = serde_json::from_slice(plain.expose())?;
    let s = zeroize::Zeroizing::new(hex::decode(&kf.sealing)?);
    let a = zeroize::Zeroizing::new(hex::decode(&kf.ack)?);
    Ok(NodeKeys {
        kek,
        sealing: SealingKey::from_secret_bytes(&s)?,
        ack: AckKey::from_secret_bytes(&a)?,
    })
}
