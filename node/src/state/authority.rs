//! Who may change the replicated state, decided by every node when it applies a command.
//!
//! # Security
//!
//! Raft tolerates crashes, not lies: a compromised member can win an election and replicate any
//! entry it likes. So a command that changes authorization or data counts only with the
//! signature of the client that asked for it ([`SignedCall`]), and every node checks, on apply,
//! against the state at that index:
//! 1. the certificate chains to the cluster CA and is a client certificate (a node never acts
//!    as a user), and is not revoked;
//! 2. its identity is the command's `by`;
//! 3. the signature covers this cluster, the method, the request's exact bytes, an id and an
//!    expiry; the id was never applied before (replays) and the expiry is not older than the
//!    replicated window (so a forgotten id cannot come back);
//! 4. the op in the log is exactly the one those bytes ask for ([`super::intent`]);
//! 5. the signer is allowed to do it by the policies at this index (law 2).
//!
//! Commands nodes make themselves are covered otherwise: acknowledgements and DKG messages
//! carry the node's own signature (checked where they apply); the abort of a key generation
//! at its deadline touches only a generation under way (never an active key); the cluster's
//! starting state comes from the genesis document, which carries a root's own signature
//! (`state::genesis`) and applies only once. A refused command changes nothing, identically on every node.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_crypto::attest;
use tessera_proto::{call_statement, SignedMethod, CALL_MAX_LIFETIME_SECS};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::command::{Command, Op};
use super::intent::{self, Filled};
use super::members::parse_node_dns_name;
use super::{Effects, Model, ROOT_POLICY};
use crate::error::Refusal;
use crate::policy::{allowed_setting_gates_aside, Capability, Policy, PolicyCache};

/// How far a signed call's clock may run ahead of the node that receives it, in seconds.
pub const CALL_SKEW_SECS: u64 = 30;

/// How long an applied call's id is remembered, measured back from the latest expiry applied:
/// a call whose expiry is older than that is refused as stale, so an id forgotten is never
/// accepted again. Twice the longest lifetime plus the skew, so that honest calls taken in
/// any order within their lifetime are never stale.
pub const CALL_WINDOW_SECS: u64 = 2 * (CALL_MAX_LIFETIME_SECS + CALL_SKEW_SECS);

/// A client's signed request, carried by the command it asked for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCall {
    /// The gRPC method path (`SignedMethod::path`).
    pub method: String,
    /// The request's bytes exactly as signed.
    #[serde(with = "tessera_crypto::b64::bytes")]
    pub body: Vec<u8>,
    #[serde(with = "tessera_crypto::b64::bytes")]
    pub id: Vec<u8>,
    /// Unix seconds.
    pub expires: u64,
    #[serde(with = "tessera_crypto::b64::bytes")]
    pub signature: Vec<u8>,
    /// The signer's client certificate (DER).
    #[serde(with = "tessera_crypto::b64::bytes")]
    pub cert: Vec<u8>,
}

impl std::fmt::Debug for SignedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedCall")
            .field("method", &self.method)
            .field("id", &hex::encode(&self.id))
            .field("expires", &self.expires)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The ids of the signed calls applied within the window (replicated state, persisted one
/// entry per id by the state machine).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// The latest expiry applied (Unix seconds): the window ends here.
    pub high_water: u64,
    /// id → expiry.
    #[serde(skip)]
    pub seen: BTreeMap<Vec<u8>, u64>,
    #[serde(skip)]
    by_expiry: BTreeSet<(u64, Vec<u8>)>,
}

impl Calls {
    /// Remembers an id (also when loading persisted state).
    pub fn insert(&mut self, id: Vec<u8>, expires: u64) {
        self.by_expiry.insert((expires, id.clone()));
        self.seen.insert(id, expires);
    }

    /// The oldest expiry still accepted.
    fn oldest_accepted(&self) -> u64 {
        self.high_water.saturating_sub(CALL_WINDOW_SECS)
    }

    /// Forgets ids whose calls are now stale; returns them.
    fn prune(&mut self) -> Vec<Vec<u8>> {
        let cutoff = self.oldest_accepted();
        let mut gone = Vec::new();
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > cutoff {
                break;
            }
            let (_, id) = self.by_expiry.pop_first().expect("first exists");
            self.seen.remove(&id);
            gone.push(id);
        }
        gone
    }
}

/// A verified signer: what a client certificate that chains to the CA says.
#[derive(Debug)]
pub(crate) struct Signer {
    identity: String,
    serial: String,
    /// Unix seconds.
    not_after: u64,
    /// The public key: 32 bytes for Ed25519, the uncompressed point for P-256.
    key: Vec<u8>,
    /// Ed25519 keys are checked by `tessera_crypto::client_sig` (one rule alone and in a
    /// batch); P-256 keys by ring.
    ed25519: Option<tessera_crypto::client_sig::ClientKey>,
}

impl Signer {
    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }
}

/// What every node checks signed commands against: the cluster CA, and caches of what it
/// verified (certificates by their digest, signatures already checked). The root identities
/// are replicated state (`Model::roots`, from the genesis document), not configuration.
pub struct Trust {
    ca_der: Vec<u8>,
    pub policies: PolicyCache,
    signers: Mutex<HashMap<[u8; 32], Arc<Signer>>>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

/// Most signatures remembered as verified (the serving node checks a command before it
/// submits it and again when it applies it; this spares the second check).
const VERIFIED_CAPACITY: usize = 4096;

impl Trust {
    /// Trust anchored in the cluster CA certificate (PEM).
    pub fn new(ca_pem: &[u8]) -> anyhow::Result<Trust> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem)
            .map_err(|e| anyhow::anyhow!("unreadable CA certificate: {e}"))?;
        pem.parse_x509()
            .map_err(|e| anyhow::anyhow!("unreadable CA certificate: {e}"))?;
        Ok(Trust {
            ca_der: pem.contents.clone(),
            policies: PolicyCache::default(),
            signers: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// What the CA attests in node `id`'s certificate (DER).
    pub fn attested_node(
        &self,
        cert: &[u8],
        id: u64,
    ) -> Result<tessera_crypto::attest::Attestation, tessera_crypto::CryptoError> {
        tessera_crypto::attest::verify_node_certificate(&self.ca_der, cert, id)
    }

    /// The signer a certificate names, once it is shown to chain to the cluster CA.
    pub(crate) fn signer(&self, der: &[u8]) -> Result<Arc<Signer>, Refusal> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        if let Some(s) = self.signers.lock().expect("signer cache").get(&digest) {
            return Ok(s.clone());
        }
        let unreadable = |e: String| Refusal::unauthenticated(format!("signer certificate: {e}"));
        let (_, ca) =
            X509Certificate::from_der(&self.ca_der).map_err(|e| unreadable(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| unreadable(e.to_string()))?;
        cert.verify_signature(Some(ca.public_key())).map_err(|_| {
            Refusal::unauthenticated("the signer's certificate is not signed by the cluster CA")
        })?;
        // A node's certificate proves a node, and a node never acts as a user.
        if let Some(node) = attest::dns_names(&cert)
            .iter()
            .find_map(|d| parse_node_dns_name(d))
        {
            return Err(Refusal::unauthenticated(format!(
                "the command is signed with node {node}'s certificate; only clients sign commands"
            )));
        }
        let identity = attest::common_name(&cert)
            .ok_or_else(|| unreadable("it has no subject common name".into()))?;
        let spki = cert.public_key();
        let key = spki.subject_public_key.data.to_vec();
        // Ed25519 (1.3.101.112) or EC public key (1.2.840.10045.2.1) on P-256.
        let ed25519 = match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => {
                let bytes: &[u8; 32] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| unreadable("its Ed25519 key is not 32 bytes".into()))?;
                Some(
                    tessera_crypto::client_sig::ClientKey::from_bytes(bytes)
                        .ok_or_else(|| unreadable("its Ed25519 key is not a curve point".into()))?,
                )
            }
            "1.2.840.10045.2.1" => None,
            other => {
                return Err(unreadable(format!(
                    "its key algorithm {other} cannot sign commands (Ed25519 or ECDSA P-256)"
                )))
            }
        };
        let signer = Arc::new(Signer {
            ed25519,
            identity,
            serial: hex::encode(cert.raw_serial()),
            not_after: u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
            key,
        });
        let mut cache = self.signers.lock().expect("signer cache");
        if cache.len() >= VERIFIED_CAPACITY {
            cache.clear();
        }
        cache.insert(digest, signer.clone());
        Ok(signer)
    }

    /// Checks `signature` by `signer` over `statement` (remembering a good one).
    pub(crate) fn verify(
        &self,
        signer: &Signer,
        statement: &[u8],
        signature: &[u8],
    ) -> Result<(), Refusal> {
        let digest = verified_digest(signer, statement, signature);
        if self
            .verified
            .lock()
            .expect("verified cache")
            .contains(&digest)
        {
            return Ok(());
        }
        let good = match &signer.ed25519 {
            Some(key) => tessera_crypto::client_sig::verify_one(key, statement, signature),
            None => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &signer.key)
                .verify(statement, signature)
                .is_ok(),
        };
        if !good {
            return Err(Refusal::unauthenticated(format!(
                "the signature of {:?} on the command does not verify",
                signer.identity
            )));
        }
        self.remember_verified([digest]);
        Ok(())
    }

    fn remember_verified(&self, digests: impl IntoIterator<Item = [u8; 32]>) {
        let mut cache = self.verified.lock().expect("verified cache");
        for d in digests {
            if cache.len() >= VERIFIED_CAPACITY {
                cache.clear();
            }
            cache.insert(d);
        }
    }

    /// Checks the Ed25519 signatures of `cmds` (the commands of one Raft entry) together, and
    /// remembers them as verified if all pass: then each command's own check (`verify`) finds
    /// its signature done. A batch that fails changes nothing, and each command is checked on
    /// its own as usual; the verdict on each signature is the same either way
    /// (`tessera_crypto::client_sig`).
    pub fn preverify(&self, cmds: &[Command], cluster_id: &str) {
        let mut pending = Vec::new();
        for cmd in cmds {
            let Some(call) = &cmd.signed else { continue };
            let Some(method) = SignedMethod::from_path(&call.method) else {
                continue;
            };
            let Ok(signer) = self.signer(&call.cert) else {
                continue;
            };
            if signer.ed25519.is_none() {
                continue;
            }
            let statement = call_statement(cluster_id, method, &call.id, call.expires, &call.body);
            let digest = verified_digest(&signer, &statement, &call.signature);
            pending.push((signer, statement, call, digest));
        }
        {
            let cache = self.verified.lock().expect("verified cache");
            pending.retain(|(_, _, _, d)| !cache.contains(d));
        }
        if pending.len() < 2 {
            return;
        }
        let items: Vec<tessera_crypto::client_sig::Signed<'_>> = pending
            .iter()
            .filter_map(|(signer, statement, call, _)| {
                Some(tessera_crypto::client_sig::Signed {
                    key: signer.ed25519.as_ref()?,
                    message: statement,
                    signature: &call.signature,
                })
            })
            .collect();
        if tessera_crypto::client_sig::verify_all(&items) {
            self.remember_verified(pending.iter().map(|(_, _, _, d)| *d));
        }
    }
}

/// What the verified-signature cache remembers a good signature by.
fn verified_digest(signer: &Signer, statement: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&signer.key);
    h.update(Sha256::digest(statement));
    h.update(signature);
    h.finalize().into()
}

/// Whether `cmd` comes from whom it says: signed by a current client of this cluster, for this
/// cluster, never applied before; or one of the few commands nodes make themselves (see the
/// module's `# Security`).
pub fn verify(
    m: &Model,
    cmd: &Command,
    trust: &Trust,
    cluster_id: &str,
    now: super::Timestamp,
) -> Result<(), Refusal> {
    let Some(call) = &cmd.signed else {
        return match &cmd.op {
            // Signed by the node that made them; checked where they apply.
            Op::KvAcks { .. }
            | Op::BreakGlassNotified { .. }
            | Op::DkgRound1 { .. }
            | Op::DkgRound2 { .. }
            | Op::DkgDone { .. }
            | Op::Checkpoint { .. } => Ok(()),
            // A container: each of its commands is checked on its own.
            Op::Batch(_) => Ok(()),
            // Abandons only a generation under way (`key::validate_abort`).
            Op::KeyAbort { .. } => Ok(()),
            // Test builds only: the injected record goes in unchecked (`crate::byzantine`).
            #[cfg(feature = "byzantine-test")]
            Op::TestInjectBreakGlass(_) => Ok(()),
            // Carries its own root signature, checked where it applies (`state::genesis`);
            // only the first is ever applied.
            Op::Genesis(_) if m.genesis.is_none() => Ok(()),
            _ => Err(Refusal::unauthenticated(format!(
                "the command from {:?} carries no client signature; every node refuses a change it cannot verify",
                cmd.by
            ))),
        };
    };
    let method = SignedMethod::from_path(&call.method).ok_or_else(|| {
        Refusal::invalid(format!(
            "{:?} is not a method that changes the cluster",
            call.method
        ))
    })?;
    let signer = trust.signer(&call.cert)?;
    if signer.identity != cmd.by {
        return Err(Refusal::unauthenticated(format!(
            "the command names {:?} as its requester but is signed by {:?}",
            cmd.by, signer.identity
        )));
    }
    if let Some(why) = m
        .revocations
        .refusal(&signer.identity, None, &signer.serial)
    {
        return Err(Refusal::unauthenticated(why));
    }
    if call.id.len() != 16 {
        return Err(Refusal::invalid("a signed call's id is 16 bytes"));
    }
    if call.expires > signer.not_after {
        return Err(Refusal::unauthenticated(format!(
            "the call outlives the certificate of {:?} that signed it",
            signer.identity
        )));
    }
    // Judged against the entry's time, which every node shares (never a node's own clock).
    if call.expires <= now.unix_secs() {
        return Err(Refusal::rejected(
            "the signed call had expired when the leader appended it; sign the request again",
        ));
    }
    if call.expires <= m.calls.oldest_accepted() {
        return Err(Refusal::rejected(
            "the signed call expired long ago (stale); sign the request again",
        ));
    }
    if m.calls.seen.contains_key(&call.id) {
        return Err(Refusal::rejected(
            "this signed call was applied already (a replay)",
        ));
    }
    let statement = call_statement(cluster_id, method, &call.id, call.expires, &call.body);
    trust.verify(&signer, &statement, &call.signature)
}

/// Checks a signed call kept as evidence (a break-glass request, decision or use) now: made by
/// `method`, for this cluster, by a client certificate of the cluster CA that is not revoked at
/// this model, with a signature that verifies. Its expiry is not judged: the call was current
/// when it applied, and evidence stays evidence. Returns the signer's identity.
///
/// # Security
///
/// This is this node's own check of bytes it holds, never a replicated verdict: a record
/// written into the state without being applied (by a compromised node) fails here unless its
/// signatures are real.
pub fn verify_evidence(
    trust: &Trust,
    m: &Model,
    cluster_id: &str,
    call: &SignedCall,
    method: SignedMethod,
) -> Result<String, Refusal> {
    if SignedMethod::from_path(&call.method) != Some(method) {
        return Err(Refusal::unauthenticated(format!(
            "the evidence is a signed {:?}, not {:?}",
            call.method,
            method.path()
        )));
    }
    let signer = trust.signer(&call.cert)?;
    if let Some(why) = m
        .revocations
        .refusal(&signer.identity, None, &signer.serial)
    {
        return Err(Refusal::unauthenticated(why));
    }
    let statement = call_statement(cluster_id, method, &call.id, call.expires, &call.body);
    trust.verify(&signer, &statement, &call.signature)?;
    Ok(signer.identity.clone())
}

/// Whether the verified signer of `cmd` asked for exactly this op and may do it, by the
/// policies at this index (law 2). Nothing to decide for a node's own command.
pub fn permit(m: &Model, cmd: &Command, trust: &Trust) -> Result<(), Refusal> {
    let Some(call) = &cmd.signed else {
        return Ok(());
    };
    let method = SignedMethod::from_path(&call.method)
        .ok_or_else(|| Refusal::invalid("not a method that changes the cluster"))?;
    let asked = intent::op_of(method, &call.body, Filled::of(&cmd.op))?;
    if asked != cmd.op {
        return Err(Refusal::rejected(format!(
            "the command is not the request {:?} signed",
            cmd.by
        )));
    }
    // `verify` showed that `by` is the signer's identity.
    for (path, cap) in required(m, &cmd.op) {
        authorize(m, trust, &cmd.by, &path, cap)?;
    }
    if let Op::BreakGlassRequest {
        path, capability, ..
    } = &cmd.op
    {
        authorize_with(m, trust, &cmd.by, path, *capability, Gates::SetAside)?;
    }
    Ok(())
}

/// Whether `authorize` honours `break_glass` gates (always, but for the one question of
/// whether an identity may ask for a grant at all).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Gates {
    Enforced,
    SetAside,
}

/// After a verified signed command was applied or refused: its id is remembered for the
/// window, and ids that fell out of it are forgotten (both persisted through `fx`).
pub fn record(m: &mut Model, cmd: &Command, fx: &mut Effects) {
    let Some(call) = &cmd.signed else { return };
    m.calls.high_water = m.calls.high_water.max(call.expires);
    m.calls.insert(call.id.clone(), call.expires);
    fx.calls.push((call.id.clone(), Some(call.expires)));
    for id in m.calls.prune() {
        fx.calls.push((id, None));
    }
}

/// Law 2 on a model: the identity's policies (direct, through groups, the root policy, and the
/// configured root identities) against a path and a capability.
pub fn authorize(
    m: &Model,
    trust: &Trust,
    identity: &str,
    path: &str,
    cap: Capability,
) -> Result<(), Refusal> {
    authorize_with(m, trust, identity, path, cap, Gates::Enforced)
}

/// What a `break_glass` gate can cover: reading a secret (a KV path), and signing with a key
/// (`keys/NAME`). The cluster's own settings (`sys/`) and a key's public half are never gated.
pub fn gateable(path: &str, cap: Capability) -> bool {
    match cap {
        Capability::Read => !path.starts_with("sys/") && !path.starts_with("keys/"),
        Capability::Sign => path.starts_with("keys/"),
        _ => false,
    }
}

/// `authorize`, with the gates honoured or set aside.
///
/// # Security
///
/// A `break_glass` gate binds every identity, the configured roots and holders of the root
/// policy included: a root that could read a gated path without approval would be the single
/// insider the gate exists to stop. So the gate is looked for in every policy of the cluster
/// and judged before anything that would let the caller through. With the gates set aside,
/// this says whether the caller could ask for a grant at all (and, under a grant, whether its
/// policies still give it the capability).
pub fn authorize_with(
    m: &Model,
    trust: &Trust,
    identity: &str,
    path: &str,
    cap: Capability,
    gates: Gates,
) -> Result<(), Refusal> {
    if gates == Gates::Enforced && gateable(path, cap) && trust.policies.gated(&m.policies, path) {
        return Err(Refusal::break_glass_required(path, cap));
    }
    if m.roots.contains(identity) {
        return Ok(());
    }
    let names = m.policies_of(identity);
    if names.contains(ROOT_POLICY) {
        return Ok(());
    }
    let parsed: Vec<Arc<Policy>> = names
        .iter()
        .filter_map(|n| trust.policies.get(n, m.policies.get(n)?))
        .collect();
    let refs: Vec<&Policy> = parsed.iter().map(|p| p.as_ref()).collect();
    if allowed_setting_gates_aside(&refs, path, cap) {
        Ok(())
    } else {
        Err(Refusal::Denied {
            identity: identity.to_string(),
            path: path.to_string(),
            capability: cap.as_str().to_string(),
            policies: names.into_iter().collect(),
        })
    }
}

/// What the signer of `op` must be allowed, judged on the model it applies to.
fn required(m: &Model, op: &Op) -> Vec<(String, Capability)> {
    let create_or_update = |exists: bool| {
        if exists {
            Capability::Update
        } else {
            Capability::Create
        }
    };
    match op {
        Op::SetSettings { .. } => vec![("sys/config".into(), Capability::Admin)],
        Op::PutGroup { name, .. } => {
            let mut need = vec![(
                format!("sys/groups/{name}"),
                create_or_update(m.groups.contains_key(name)),
            )];
            // Setting a group's members hands them every policy the group carries.
            for p in m.group_policies.get(name).into_iter().flatten() {
                need.push((format!("sys/policies/{p}"), Capability::Admin));
            }
            need
        }
        Op::DeleteGroup { name, .. } => {
            vec![(format!("sys/groups/{name}"), Capability::Delete)]
        }
        Op::PutPolicy { name, .. } => vec![(
            format!("sys/policies/{name}"),
            create_or_update(m.policies.contains_key(name)),
        )],
        Op::DeletePolicy { name, .. } => {
            vec![(format!("sys/policies/{name}"), Capability::Delete)]
        }
        Op::Attach { policy, .. } => vec![(format!("sys/policies/{policy}"), Capability::Admin)],
        Op::Restore { .. } => vec![("sys/snapshot".into(), Capability::Admin)],
        Op::Revoke { .. } => vec![("sys/revocations".into(), Capability::Admin)],
        Op::SetRoots { .. } => vec![("sys/roots".into(), Capability::Admin)],
        Op::MemberAdd { .. } | Op::MemberRemove { .. } => {
            vec![("sys/members".into(), Capability::Admin)]
        }
        Op::KvPut(p) => vec![(
            p.path.clone(),
            create_or_update(m.secrets.contains_key(&p.path)),
        )],
        Op::KvDelete { path, .. } | Op::KvDestroy { path, .. } => {
            vec![(path.clone(), Capability::Delete)]
        }
        Op::KvUndelete { path, .. } => vec![(path.clone(), Capability::Update)],
        Op::KvMetadataPut { path, .. } => {
            vec![(path.clone(), create_or_update(m.secrets.contains_key(path)))]
        }
        Op::KvMetadataDelete { path } => vec![(path.clone(), Capability::Delete)],
        Op::KeyCreate { name, .. } => vec![(format!("keys/{name}"), Capability::Create)],
        // Asking needs what the grant gives, by the policies with their gates set aside
        // (`permit`); deciding, revoking and using follow the request's own rules
        // (`state::breakglass`).
        Op::BreakGlassRequest { .. }
        | Op::BreakGlassDecide { .. }
        | Op::BreakGlassRevoke { .. }
        | Op::BreakGlassUse { .. } => Vec::new(),
        Op::SshRoleWrite { key, .. } => vec![(format!("keys/{key}"), Capability::Update)],
        // Never signed by a client: refused by `intent` before this is asked.
        Op::KvAcks { .. }
        | Op::BreakGlassNotified { .. }
        | Op::DkgRound1 { .. }
        | Op::DkgRound2 { .. }
        | Op::DkgDone { .. }
        | Op::Checkpoint { .. }
        | Op::KeyAbort { .. }
        | Op::Genesis(_)
        | Op::Batch(_) => vec![("sys/never".into(), Capability::Admin)],
        #[cfg(feature = "byzantine-test")]
        Op::TestInjectBreakGlass(_) => vec![("sys/never".into(), Capability::Admin)],
    }
}

/// Signing commands as a client would, for the tests of this crate.
#[cfg(test)]
pub mod testing {
    use prost::Message;
    use ring::signature::Ed25519KeyPair;
    use tessera_proto as pb;

    use super::*;
    use crate::state::AttachTarget;
    use crate::tls::issue::{issue_client, new_ca, Issued};

    /// A cluster CA and client certificates issued by it.
    pub struct TestCa {
        pub ca: Issued,
        pub trust: Arc<Trust>,
    }

    /// A client that signs commands.
    pub struct TestClient {
        pub identity: String,
        cert_der: Vec<u8>,
        key: Ed25519KeyPair,
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        p.contents
    }

    /// A model whose root identity is `admin` (as a genesis document would make it).
    pub fn model() -> Model {
        Model {
            roots: ["admin".to_string()].into(),
            genesis: Some("test".into()),
            ..Model::default()
        }
    }

    impl Default for TestCa {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TestCa {
        /// A CA whose root identity is `admin`.
        pub fn new() -> TestCa {
            let ca = new_ca("c").expect("CA");
            let trust = Arc::new(Trust::new(ca.cert_pem.as_bytes()).expect("trust"));
            TestCa { ca, trust }
        }

        pub fn client(&self, identity: &str) -> TestClient {
            let issued =
                issue_client(&self.ca, identity, time::Duration::days(1)).expect("client cert");
            let key =
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(&issued.key_pem)).expect("key");
            TestClient {
                identity: identity.into(),
                cert_der: pem_der(&issued.cert_pem),
                key,
            }
        }
    }

    /// Applies `cmd` as every node would, at index 1 of cluster "c", in an entry of time `time`.
    pub fn apply_at(
        m: &mut Model,
        trust: &Trust,
        cmd: &Command,
        time: crate::state::Timestamp,
    ) -> (crate::state::CommandResult, crate::state::Effects) {
        let members = crate::state::Members::default();
        m.apply(
            cmd,
            &crate::state::model::ApplyCtx {
                members: &members,
                cluster_id: "c",
                index: 1,
                trust,
                time,
            },
        )
    }

    /// The request a client sends for `op` (the ops the tests use).
    pub fn request_of(op: &Op) -> (SignedMethod, Vec<u8>) {
        match op {
            Op::PutPolicy { name, text, grant } => (
                SignedMethod::PolicyWrite,
                pb::PolicyWriteRequest {
                    name: name.clone(),
                    text: text.clone(),
                    grant: grant.clone().unwrap_or_default(),
                }
                .encode_to_vec(),
            ),
            Op::PutGroup { name, members } => (
                SignedMethod::GroupWrite,
                pb::GroupWriteRequest {
                    name: name.clone(),
                    members: members.iter().cloned().collect(),
                }
                .encode_to_vec(),
            ),
            Op::DeleteGroup { name, grant } => (
                SignedMethod::GroupDelete,
                pb::GroupDeleteRequest {
                    name: name.clone(),
                    grant: grant.clone().unwrap_or_default(),
                }
                .encode_to_vec(),
            ),
            Op::DeletePolicy { name, grant } => (
                SignedMethod::PolicyDelete,
                pb::PolicyDeleteRequest {
                    name: name.clone(),
                    grant: grant.clone().unwrap_or_default(),
                }
                .encode_to_vec(),
            ),
            Op::Attach {
                policy,
                target,
                detach,
            } => {
                let (group, identity) = match target {
                    AttachTarget::Group(g) => (g.clone(), String::new()),
                    AttachTarget::Identity(i) => (String::new(), i.clone()),
                };
                (
                    SignedMethod::PolicyAttach,
                    pb::PolicyAttachRequest {
                        policy: policy.clone(),
                        group,
                        identity,
                        detach: *detach,
                    }
                    .encode_to_vec(),
                )
            }
            Op::BreakGlassRequest {
                path,
                capability,
                reason,
                ttl_secs,
                ..
            } => (
                SignedMethod::BreakGlassRequest,
                pb::BreakGlassOpen {
                    path: path.clone(),
                    capability: capability.as_str().into(),
                    reason: reason.clone(),
                    ttl_secs: *ttl_secs,
                }
                .encode_to_vec(),
            ),
            Op::BreakGlassDecide {
                id,
                approve,
                comment,
                digest,
                ..
            } => (
                SignedMethod::BreakGlassDecide,
                pb::BreakGlassDecision {
                    id: id.clone(),
                    approve: *approve,
                    comment: comment.clone(),
                    request_digest: digest.clone(),
                }
                .encode_to_vec(),
            ),
            Op::BreakGlassRevoke { id, .. } => (
                SignedMethod::BreakGlassRevoke,
                pb::BreakGlassId { id: id.clone() }.encode_to_vec(),
            ),
            Op::BreakGlassUse {
                id, use_id, target, ..
            } => {
                let (version, message_digest) = target.wire();
                (
                    SignedMethod::BreakGlassUse,
                    pb::BreakGlassUse {
                        id: id.clone(),
                        use_id: use_id.clone(),
                        version,
                        message_digest,
                    }
                    .encode_to_vec(),
                )
            }
            other => panic!("no test request for {other:?}"),
        }
    }

    impl TestClient {
        /// `op` as this client asks for it, signed for cluster `cluster`, valid until
        /// `expires` (Unix seconds).
        pub fn sign_until(&self, cluster: &str, op: Op, expires: u64) -> Command {
            let (method, body) = request_of(&op);
            let id: [u8; 16] = rand08::random();
            let statement = call_statement(cluster, method, &id, expires, &body);
            let signature = self.key.sign(&statement).as_ref().to_vec();
            Command {
                by: self.identity.clone(),
                op,
                signed: Some(Box::new(SignedCall {
                    method: method.path().into(),
                    body,
                    id: id.to_vec(),
                    expires,
                    signature,
                    cert: self.cert_der.clone(),
                })),
                at: crate::state::Timestamp::default(),
            }
        }

        /// `op` signed for cluster `c`, valid for a minute.
        pub fn sign(&self, op: Op) -> Command {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            self.sign_until("c", op, now + 60)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each rule of `check`, on the model as the state machine applies it.

    use super::testing::*;
    use super::*;
    use crate::state::{AttachTarget, CommandResult};

    fn policy(name: &str) -> Op {
        Op::PutPolicy {
            name: name.into(),
            text: r#"path "a/*" { capabilities = ["read"] }"#.into(),
            grant: None,
        }
    }

    fn apply(m: &mut Model, trust: &Trust, cmd: &Command) -> (CommandResult, Effects) {
        apply_at(m, trust, cmd, crate::state::Timestamp::now())
    }

    fn now_secs() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn refusal(r: &CommandResult) -> String {
        r.error.as_ref().expect("refused").to_string()
    }

    #[test]
    fn a_signed_command_applies_once_and_its_replay_is_refused() {
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let mut m = testing::model();
        let cmd = admin.sign(policy("p"));
        let (r, fx) = apply(&mut m, &ca.trust, &cmd);
        assert_eq!(r.error, None);
        assert!(m.policies.contains_key("p"));
        assert_eq!(fx.calls.len(), 1, "its id is persisted");
        m.policies.clear();
        let (r, _) = apply(&mut m, &ca.trust, &cmd);
        assert!(refusal(&r).contains("replay"), "{r:?}");
        assert!(m.policies.is_empty(), "a refusal changes nothing");
    }

    #[test]
    fn an_unsigned_or_relabelled_command_changes_nothing() {
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let mut m = testing::model();
        // What a compromised leader would append: a change nobody signed.
        let forged = Command::by_node("admin".into(), policy("p"));
        let (r, _) = apply(&mut m, &ca.trust, &forged);
        assert!(refusal(&r).contains("carries no client signature"), "{r:?}");
        // A real signature pinned to another op.
        let mut rebound = admin.sign(policy("p"));
        rebound.op = Op::Attach {
            policy: ROOT_POLICY.into(),
            target: AttachTarget::Identity("mallory".into()),
            detach: false,
        };
        let (r, _) = apply(&mut m, &ca.trust, &rebound);
        assert!(refusal(&r).contains("is not the request"), "{r:?}");
        // A signature whose requester is renamed.
        let mut renamed = ca.client("bob").sign(policy("p"));
        renamed.by = "admin".into();
        let (r, _) = apply(&mut m, &ca.trust, &renamed);
        assert!(refusal(&r).contains("signed by \"bob\""), "{r:?}");
        // The signed bytes changed.
        let mut tampered = admin.sign(policy("p"));
        if let Some(call) = tampered.signed.as_mut() {
            call.expires += 1;
        }
        let (r, _) = apply(&mut m, &ca.trust, &tampered);
        assert!(refusal(&r).contains("does not verify"), "{r:?}");
        // Signed for another cluster.
        let now = now_secs();
        let other = admin.sign_until("other-cluster", policy("p"), now + 60);
        let (r, _) = apply(&mut m, &ca.trust, &other);
        assert!(refusal(&r).contains("does not verify"), "{r:?}");
        assert!(m.policies.is_empty());
    }

    #[test]
    fn the_signer_must_be_allowed_and_not_revoked_and_from_this_ca() {
        let ca = TestCa::new();
        let mut m = testing::model();
        let bob = ca.client("bob");
        let (r, _) = apply(&mut m, &ca.trust, &bob.sign(policy("p")));
        assert!(
            matches!(r.error, Some(Refusal::Denied { .. })),
            "bob has no policy: {r:?}"
        );
        // A certificate from another CA, however well signed.
        let stranger = TestCa::new().client("admin");
        let (r, _) = apply(&mut m, &ca.trust, &stranger.sign(policy("p")));
        assert!(
            refusal(&r).contains("not signed by the cluster CA"),
            "{r:?}"
        );
        // A revoked identity.
        m.revocations.identities.insert("admin".to_string());
        let (r, _) = apply(&mut m, &ca.trust, &ca.client("admin").sign(policy("p")));
        assert!(refusal(&r).contains("revoked"), "{r:?}");
        assert!(m.policies.is_empty());
    }

    #[test]
    fn ids_are_forgotten_only_once_their_calls_are_stale() {
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let mut m = testing::model();
        let now = now_secs();
        let old = admin.sign_until("c", policy("a"), now + 5);
        assert_eq!(apply(&mut m, &ca.trust, &old).0.error, None);
        let later = admin.sign_until("c", policy("b"), now + 5 + CALL_WINDOW_SECS + 1);
        let (r, fx) = apply(&mut m, &ca.trust, &later);
        assert_eq!(r.error, None);
        let forgotten: Vec<_> = fx.calls.iter().filter(|(_, e)| e.is_none()).collect();
        assert_eq!(forgotten.len(), 1, "the old id leaves the window: {fx:?}");
        assert_eq!(m.calls.seen.len(), 1);
        // Forgotten, and still refused: it is stale.
        let (r, _) = apply(&mut m, &ca.trust, &old);
        assert!(refusal(&r).contains("stale"), "{r:?}");
    }

    #[test]
    fn a_call_that_expired_before_the_entry_was_appended_is_refused() {
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let mut m = testing::model();
        let now = now_secs();
        // Judged by the entry's time (the leader's stamp), which every node shares.
        let late = admin.sign_until("c", policy("a"), now - 1);
        let (r, _) = apply(&mut m, &ca.trust, &late);
        assert!(
            refusal(&r).contains("had expired when the leader appended it"),
            "{r:?}"
        );
        assert!(!m.policies.contains_key("a"));
    }
}
