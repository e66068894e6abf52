//! Threshold Ed25519 with FROST (RFC 9591, frost-ed25519), shaped like the protocol: the
//! distributed key generation in three parts (`dkg_part1..3`), signing in two rounds
//! (`round1_commit`, `round2_sign`) and `aggregate`. Participants are numbered by node id, so
//! a FROST identifier is a node id.
//!
//! Secret packages (DKG state, key packages, nonces) only ever leave these functions as
//! `SecretBytes`; nonces are never serialized at all: they live in `SigningNonces`, in memory,
//! and are consumed by `round2_sign`.

use std::collections::BTreeMap;

use frost_ed25519 as frost;

use crate::{invalid, CryptoError, SecretBytes};

fn id(node: u64) -> Result<frost::Identifier, CryptoError> {
    let n = u16::try_from(node)
        .map_err(|_| invalid("participant", format!("node id {node} is too large")))?;
    frost::Identifier::try_from(n).map_err(|e| invalid("participant", e.to_string()))
}

fn node_of(i: &frost::Identifier, nodes: &[u64]) -> Option<u64> {
    nodes
        .iter()
        .copied()
        .find(|n| id(*n).ok().as_ref() == Some(i))
}

fn fe(what: &'static str) -> impl Fn(frost::Error) -> CryptoError {
    move |e| invalid(what, e.to_string())
}

/// DKG part 1: this participant's secret polynomial (kept) and its public round-1 package
/// (commitments and proof of knowledge, broadcast through Raft).
pub fn dkg_part1(me: u64, n: u16, t: u16) -> Result<(SecretBytes, Vec<u8>), CryptoError> {
    let (secret, package) =
        frost::keys::dkg::part1(id(me)?, n, t, crate::rng()).map_err(fe("DKG part 1"))?;
    Ok((
        SecretBytes::new(secret.serialize().map_err(fe("DKG part 1"))?),
        package.serialize().map_err(fe("DKG part 1"))?,
    ))
}

/// DKG part 2: checks everyone else's round-1 package and computes one round-2 package per
/// other participant (each to be sealed to its recipient).
pub fn dkg_part2(
    secret1: &SecretBytes,
    round1: &BTreeMap<u64, Vec<u8>>,
    me: u64,
) -> Result<(SecretBytes, BTreeMap<u64, SecretBytes>), CryptoError> {
    let secret = frost::keys::dkg::round1::SecretPackage::deserialize(secret1.expose())
        .map_err(fe("DKG state"))?;
    let mut others = BTreeMap::new();
    for (node, bytes) in round1 {
        if *node == me {
            continue;
        }
        others.insert(
            id(*node)?,
            frost::keys::dkg::round1::Package::deserialize(bytes).map_err(fe("round-1 package"))?,
        );
    }
    let nodes: Vec<u64> = round1.keys().copied().collect();
    let (secret2, packages) = frost::keys::dkg::part2(secret, &others).map_err(|e| {
        match e.culprits().first().and_then(|c| node_of(c, &nodes)) {
            Some(n) => invalid("DKG part 2", format!("node {n}: {e}")),
            None => invalid("DKG part 2", e.to_string()),
        }
    })?;
    let mut out = BTreeMap::new();
    for (i, p) in packages {
        let node = node_of(&i, &nodes).ok_or_else(|| invalid("DKG part 2", "unknown recipient"))?;
        out.insert(
            node,
            SecretBytes::new(p.serialize().map_err(fe("round-2 package"))?),
        );
    }
    Ok((
        SecretBytes::new(secret2.serialize().map_err(fe("DKG state"))?),
        out,
    ))
}

/// The outcome of a DKG for one participant.
pub struct DkgOutput {
    /// This participant's key package (its signing share): secret.
    pub key_package: SecretBytes,
    /// The public key package: group key and every participant's verifying share.
    pub public_key_package: Vec<u8>,
    /// The group's Ed25519 public key.
    pub group_key: [u8; 32],
}

impl std::fmt::Debug for DkgOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DkgOutput {{ group_key: {:02x?}, key_package: <redacted> }}",
            &self.group_key[..4]
        )
    }
}

/// DKG part 3: verifies the round-2 packages addressed to this participant and derives its key
/// package and the public key package.
pub fn dkg_part3(
    secret2: &SecretBytes,
    round1: &BTreeMap<u64, Vec<u8>>,
    round2_for_me: &BTreeMap<u64, SecretBytes>,
    me: u64,
) -> Result<DkgOutput, CryptoError> {
    let secret = frost::keys::dkg::round2::SecretPackage::deserialize(secret2.expose())
        .map_err(fe("DKG state"))?;
    let nodes: Vec<u64> = round1.keys().copied().collect();
    let mut r1 = BTreeMap::new();
    for (node, bytes) in round1 {
        if *node != me {
            r1.insert(
                id(*node)?,
                frost::keys::dkg::round1::Package::deserialize(bytes)
                    .map_err(fe("round-1 package"))?,
            );
        }
    }
    let mut r2 = BTreeMap::new();
    for (node, bytes) in round2_for_me {
        r2.insert(
            id(*node)?,
            frost::keys::dkg::round2::Package::deserialize(bytes.expose())
                .map_err(fe("round-2 package"))?,
        );
    }
    let (kp, pkp) = frost::keys::dkg::part3(&secret, &r1, &r2).map_err(|e| {
        match e.culprits().first().and_then(|c| node_of(c, &nodes)) {
            Some(n) => invalid("DKG part 3", format!("node {n}: {e}")),
            None => invalid("DKG part 3", e.to_string()),
        }
    })?;
    let gk = pkp.verifying_key().serialize().map_err(fe("group key"))?;
    let group_key: [u8; 32] = gk
        .as_slice()
        .try_into()
        .map_err(|_| invalid("group key", "not 32 bytes"))?;
    Ok(DkgOutput {
        key_package: SecretBytes::new(kp.serialize().map_err(fe("key package"))?),
        public_key_package: pkp.serialize().map_err(fe("public key package"))?,
        group_key,
    })
}

/// One signer's nonces for one signature: in memory only, used once.
pub struct SigningNonces(frost::round1::SigningNonces);

impl std::fmt::Debug for SigningNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningNonces(<redacted>)")
    }
}

/// A participant's key package (its signing share), parsed once: parsing checks every point in
/// it, which costs more than a signature share, so a signer keeps it parsed. Zeroized on drop
/// (frost's `KeyPackage` is), never printed.
pub struct KeyShare(frost::keys::KeyPackage);

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyShare(<redacted>)")
    }
}

impl KeyShare {
    pub fn parse(key_package: &SecretBytes) -> Result<KeyShare, CryptoError> {
        frost::keys::KeyPackage::deserialize(key_package.expose())
            .map(KeyShare)
            .map_err(fe("key package"))
    }
}

/// The group's public key package, parsed once (it is public; parsing checks every point).
pub struct PublicKeys(frost::keys::PublicKeyPackage);

impl PublicKeys {
    pub fn parse(public_key_package: &[u8]) -> Result<PublicKeys, CryptoError> {
        frost::keys::PublicKeyPackage::deserialize(public_key_package)
            .map(PublicKeys)
            .map_err(fe("public key package"))
    }
}

/// Round 1: fresh nonces (kept by the caller, used once) and their public commitments.
pub fn round1_commit(share: &KeyShare) -> Result<(SigningNonces, Vec<u8>), CryptoError> {
    let (nonces, commitments) = frost::round1::commit(share.0.signing_share(), &mut crate::rng());
    Ok((
        SigningNonces(nonces),
        commitments.serialize().map_err(fe("commitments"))?,
    ))
}

/// The signing package. `own` is a signer's own commitments, already parsed: parsing checks
/// each point's order, the costliest step of a signature share, and the signer made these.
fn signing_package(
    message: &[u8],
    commitments: &BTreeMap<u64, Vec<u8>>,
    own: Option<(frost::Identifier, &frost::round1::SigningCommitments)>,
) -> Result<frost::SigningPackage, CryptoError> {
    let mut c = BTreeMap::new();
    for (node, bytes) in commitments {
        let who = id(*node)?;
        let parsed = match own {
            // Only if the caller sent exactly what this signer committed to; otherwise the
            // signer would sign over a package the aggregator does not have.
            Some((me, mine)) if me == who => {
                if mine.serialize().map_err(fe("commitments"))? != *bytes {
                    return Err(invalid(
                        "commitments",
                        format!("node {node}: not the ones this signer committed to"),
                    ));
                }
                *mine
            }
            _ => frost::round1::SigningCommitments::deserialize(bytes)
                .map_err(|e| invalid("commitments", format!("node {node}: {e}")))?,
        };
        c.insert(who, parsed);
    }
    Ok(frost::SigningPackage::new(c, message))
}

/// Round 2: this signer's share of the signature over `message`, consuming its nonces.
pub fn round2_sign(
    message: &[u8],
    commitments: &BTreeMap<u64, Vec<u8>>,
    nonces: SigningNonces,
    key_share: &KeyShare,
) -> Result<Vec<u8>, CryptoError> {
    let own = (*key_share.0.identifier(), nonces.0.commitments());
    let pkg = signing_package(message, commitments, Some(own))?;
    let share = frost::round2::sign(&pkg, &nonces.0, &key_share.0).map_err(fe("signing"))?;
    Ok(share.serialize())
}

/// Why aggregation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateError {
    /// These signers' shares did not verify (FROST cheater detection).
    Cheaters(Vec<u64>),
    Other(String),
}

/// Aggregates the shares and verifies the group signature (frost's `aggregate` does, and
/// checks each share only when it fails, to name the cheaters).
pub fn aggregate(
    message: &[u8],
    commitments: &BTreeMap<u64, Vec<u8>>,
    shares: &BTreeMap<u64, Vec<u8>>,
    public_keys: &PublicKeys,
) -> Result<[u8; 64], AggregateError> {
    let other = |e: CryptoError| AggregateError::Other(e.to_string());
    let pkg = signing_package(message, commitments, None).map_err(other)?;
    let pkp = &public_keys.0;
    let nodes: Vec<u64> = commitments.keys().copied().collect();
    let mut s = BTreeMap::new();
    for (node, bytes) in shares {
        match frost::round2::SignatureShare::deserialize(bytes) {
            Ok(share) => {
                s.insert(id(*node).map_err(other)?, share);
            }
            Err(_) => return Err(AggregateError::Cheaters(vec![*node])),
        }
    }
    let sig = frost::aggregate(&pkg, &s, pkp).map_err(|e| match &e {
        frost::Error::InvalidSignatureShare { culprits } => {
            AggregateError::Cheaters(culprits.iter().filter_map(|c| node_of(c, &nodes)).collect())
        }
        _ => AggregateError::Other(e.to_string()),
    })?;
    let bytes = sig
        .serialize()
        .map_err(|e| AggregateError::Other(e.to_string()))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| AggregateError::Other("signature is not 64 bytes".into()))
}

/// A share with a flipped bit: what a cheating signer would send (tests only).
pub fn corrupt_share(share: &[u8]) -> Vec<u8> {
    let mut s = share.to_vec();
    if let Some(b) = s.first_mut() {
        *b ^= 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, VerifyingKey};

    fn dkg(nodes: &[u64], t: u16) -> BTreeMap<u64, DkgOutput> {
        let n = nodes.len() as u16;
        let mut s1 = BTreeMap::new();
        let mut r1 = BTreeMap::new();
        for &me in nodes {
            let (s, p) = dkg_part1(me, n, t).unwrap();
            s1.insert(me, s);
            r1.insert(me, p);
        }
        let mut s2 = BTreeMap::new();
        let mut inbox: BTreeMap<u64, BTreeMap<u64, SecretBytes>> = BTreeMap::new();
        for &me in nodes {
            let (s, out) = dkg_part2(&s1[&me], &r1, me).unwrap();
            s2.insert(me, s);
            for (to, p) in out {
                inbox.entry(to).or_default().insert(me, p);
            }
        }
        nodes
            .iter()
            .map(|&me| (me, dkg_part3(&s2[&me], &r1, &inbox[&me], me).unwrap()))
            .collect()
    }

    #[test]
    fn dkg_then_threshold_signature_verifies_with_ed25519_dalek_and_cheaters_are_named() {
        let nodes = [1u64, 2, 3, 4, 5];
        let out = dkg(&nodes, 3);
        let gk = out[&1].group_key;
        assert!(out
            .values()
            .all(|o| o.group_key == gk && o.public_key_package == out[&1].public_key_package));
        let msg = b"hello";
        let signers = [2u64, 4, 5];
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for s in signers {
            let (n, c) = round1_commit(&KeyShare::parse(&out[&s].key_package).unwrap()).unwrap();
            nonces.insert(s, n);
            commitments.insert(s, c);
        }
        let mut shares = BTreeMap::new();
        for s in signers {
            let n = nonces.remove(&s).unwrap();
            shares.insert(
                s,
                round2_sign(
                    msg,
                    &commitments,
                    n,
                    &KeyShare::parse(&out[&s].key_package).unwrap(),
                )
                .unwrap(),
            );
        }
        let sig = aggregate(
            msg,
            &commitments,
            &shares,
            &PublicKeys::parse(&out[&1].public_key_package).unwrap(),
        )
        .unwrap();
        VerifyingKey::from_bytes(&gk)
            .unwrap()
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .unwrap();

        let mut bad = shares.clone();
        bad.insert(4, corrupt_share(&shares[&4]));
        assert_eq!(
            aggregate(
                msg,
                &commitments,
                &bad,
                &PublicKeys::parse(&out[&1].public_key_package).unwrap()
            ),
            Err(AggregateError::Cheaters(vec![4]))
        );
        assert!(!format!("{:?}", out[&1])
            .contains(&format!("{:?}", &out[&1].key_package.expose()[..6])));
    }
}
