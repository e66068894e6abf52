//! What a signed request asks for: the one `Op` each client request stands for.
//!
//! The serving node builds the command it submits with these functions, and every node, when
//! it applies the command, decodes the request the client signed and builds the op again with
//! the same functions: the op in the log must be exactly that one. So a node that relays a
//! request (even the leader) cannot change what it asks for, nor pin a valid signature to
//! another op.
//!
//! Only `Filled` comes from the serving node rather than the client: the time a command records,
//! the holders' receipts that ride in a write, and a joining node's certificate, each harmless
//! (a time is shown, never decides access; receipts are checked one by one against each
//! holder's key; the certificate is checked against the cluster CA and the node's id).

use prost::Message;
use tessera_proto as pb;
use tessera_proto::SignedMethod;

use super::command::{AttachTarget, Op};
use super::keys::{KeyPurpose, SshRole};
use super::kv::KvPut;
use super::members::NodeId;
use super::revocations::RevokeTarget;
use super::{Model, Timestamp};
use crate::error::Refusal;
use tessera_crypto::seal::ShareEnvelope;
use tessera_crypto::value::ValueCiphertext;
use tessera_crypto::vss::Commitments;

/// What the serving node adds to a request: the moment it took it, and for a write the
/// holders' receipts gathered before it was submitted.
#[derive(Clone, Debug, Default)]
pub struct Filled {
    pub time: Timestamp,
    pub receipts: Vec<(NodeId, Vec<u8>)>,
    /// A joining node's certificate (DER), as the serving node fetched it from the node.
    pub certificate: Vec<u8>,
}

impl Filled {
    /// The filled-in part of an op as it stands in the log.
    pub fn of(op: &Op) -> Filled {
        let time = match op {
            Op::KvPut(p) => p.time,
            Op::KvDelete { time, .. }
            | Op::KvMetadataPut { time, .. }
            | Op::KeyCreate { time, .. }
            | Op::BreakGlassRequest { time, .. }
            | Op::BreakGlassDecide { time, .. }
            | Op::BreakGlassRevoke { time, .. }
            | Op::BreakGlassUse { time, .. } => *time,
            _ => Timestamp::default(),
        };
        let receipts = match op {
            Op::KvPut(p) => p.receipts.clone(),
            _ => Vec::new(),
        };
        let certificate = match op {
            Op::MemberAdd { certificate, .. } => certificate.clone(),
            _ => Vec::new(),
        };
        Filled {
            time,
            receipts,
            certificate,
        }
    }
}

/// The file format `tessera operator snapshot save` writes and `restore` reads (JSON).
pub const SNAPSHOT_FORMAT: &str = "tessera-snapshot-v1";

/// What `tessera operator snapshot save` writes: the replicated data model (no membership, no
/// secrets: only public metadata lives in the model).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SnapshotFile {
    pub format: String,
    pub cluster_id: String,
    pub model: Model,
}

/// The op a signed request's bytes stand for.
pub fn op_of(method: SignedMethod, body: &[u8], filled: Filled) -> Result<Op, Refusal> {
    fn decode<T: Message + Default>(body: &[u8]) -> Result<T, Refusal> {
        T::decode(body).map_err(|e| Refusal::invalid(format!("unreadable signed request: {e}")))
    }
    match method {
        SignedMethod::KvPut => kv_put(decode(body)?, filled),
        SignedMethod::KvDelete => {
            let r: pb::KvVersionsRequest = decode(body)?;
            Ok(Op::KvDelete {
                path: r.path,
                versions: r.versions,
                time: filled.time,
            })
        }
        SignedMethod::KvUndelete => {
            let r: pb::KvVersionsRequest = decode(body)?;
            Ok(Op::KvUndelete {
                path: r.path,
                versions: r.versions,
            })
        }
        SignedMethod::KvDestroy => {
            let r: pb::KvVersionsRequest = decode(body)?;
            Ok(Op::KvDestroy {
                path: r.path,
                versions: r.versions,
            })
        }
        SignedMethod::KvMetadataPut => Ok(metadata_put(decode(body)?, filled.time)),
        SignedMethod::KvMetadataDelete => {
            let r: pb::PathRequest = decode(body)?;
            Ok(Op::KvMetadataDelete { path: r.path })
        }
        SignedMethod::KeyCreate => key_create(decode(body)?, filled.time),
        SignedMethod::SshRoleWrite => Ok(ssh_role(decode(body)?)),
        SignedMethod::ConfigSet => config_set(decode(body)?),
        SignedMethod::GroupWrite => {
            let r: pb::GroupWriteRequest = decode(body)?;
            Ok(Op::PutGroup {
                name: r.name,
                members: r.members.into_iter().collect(),
            })
        }
        SignedMethod::GroupDelete => {
            let r: pb::GroupDeleteRequest = decode(body)?;
            Ok(Op::DeleteGroup {
                name: r.name,
                grant: named_grant(r.grant),
            })
        }
        SignedMethod::PolicyWrite => {
            let r: pb::PolicyWriteRequest = decode(body)?;
            Ok(Op::PutPolicy {
                name: r.name,
                text: r.text,
                grant: named_grant(r.grant),
            })
        }
        SignedMethod::PolicyDelete => {
            let r: pb::PolicyDeleteRequest = decode(body)?;
            Ok(Op::DeletePolicy {
                name: r.name,
                grant: named_grant(r.grant),
            })
        }
        SignedMethod::PolicyAttach => attach(decode(body)?),
        SignedMethod::Revoke => revoke(decode(body)?),
        SignedMethod::SnapshotRestore => restore(decode(body)?),
        SignedMethod::MembersAdd => {
            let r: pb::AddMemberRequest = decode(body)?;
            Ok(Op::MemberAdd {
                id: r.id,
                addr: r.address,
                region: r.region,
                voter: r.voter,
                certificate: filled.certificate,
            })
        }
        SignedMethod::RootsSet => {
            let r: pb::RootsRequest = decode(body)?;
            Ok(Op::SetRoots {
                roots: r.identities.into_iter().collect(),
            })
        }
        SignedMethod::MembersRemove => {
            let r: pb::RemoveMemberRequest = decode(body)?;
            Ok(Op::MemberRemove { id: r.id })
        }
        SignedMethod::BreakGlassRequest => {
            let r: pb::BreakGlassOpen = decode(body)?;
            let capability = r
                .capability
                .parse()
                .map_err(|e| Refusal::invalid(format!("break-glass capability: {e}")))?;
            Ok(Op::BreakGlassRequest {
                path: r.path,
                capability,
                reason: r.reason,
                ttl_secs: r.ttl_secs,
                time: filled.time,
            })
        }
        SignedMethod::BreakGlassDecide => {
            let r: pb::BreakGlassDecision = decode(body)?;
            Ok(Op::BreakGlassDecide {
                id: r.id,
                approve: r.approve,
                comment: r.comment,
                digest: r.request_digest,
                time: filled.time,
            })
        }
        SignedMethod::BreakGlassRevoke => {
            let r: pb::BreakGlassId = decode(body)?;
            Ok(Op::BreakGlassRevoke {
                id: r.id,
                time: filled.time,
            })
        }
        SignedMethod::BreakGlassUse => {
            let r: pb::BreakGlassUse = decode(body)?;
            Ok(Op::BreakGlassUse {
                id: r.id,
                use_id: r.use_id,
                target: crate::state::breakglass::UseTarget::from_wire(
                    r.version,
                    &r.message_digest,
                )?,
                time: filled.time,
            })
        }
    }
}

fn bad(msg: impl Into<String>) -> Refusal {
    Refusal::invalid(msg)
}

pub fn kv_put(r: pb::KvPutRequest, filled: Filled) -> Result<Op, Refusal> {
    let nonce: [u8; 12] = r
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("nonce is {} bytes, expected 12", r.nonce.len())))?;
    let mut commitments = Vec::with_capacity(r.commitments.len());
    for (i, c) in r.commitments.iter().enumerate() {
        commitments.push(<[u8; 32]>::try_from(c.as_slice()).map_err(|_| {
            bad(format!(
                "commitments: point {i} is {} bytes, expected 32",
                c.len()
            ))
        })?);
    }
    let mut envelopes = Vec::with_capacity(r.envelopes.len());
    for (i, e) in r.envelopes.into_iter().enumerate() {
        let enc: [u8; 32] = e.enc.as_slice().try_into().map_err(|_| {
            bad(format!(
                "envelope {i}: encapsulated key is {} bytes, expected 32",
                e.enc.len()
            ))
        })?;
        envelopes.push(ShareEnvelope {
            enc,
            ciphertext: e.ciphertext,
        });
    }
    Ok(Op::KvPut(Box::new(KvPut {
        path: r.path,
        version: r.version,
        cas: r.cas,
        time: filled.time,
        ciphertext: ValueCiphertext {
            nonce,
            ciphertext: r.ciphertext,
        },
        commitments: Commitments(commitments),
        threshold: r.threshold,
        holders: r.holders,
        envelopes,
        receipts: filled.receipts,
    })))
}

pub fn metadata_put(r: pb::KvMetadataPutRequest, time: Timestamp) -> Op {
    let custom = if r.replace_custom_metadata || !r.custom_metadata.is_empty() {
        Some(r.custom_metadata.into_iter().collect())
    } else {
        None
    };
    Op::KvMetadataPut {
        path: r.path,
        max_versions: r.max_versions,
        cas_required: r.cas_required,
        custom_metadata: custom,
        time,
    }
}

/// How long a key generation may take, as asked (5 s to 10 min).
pub fn key_timeout_secs(r: &pb::KeyCreateRequest) -> u64 {
    u64::from(r.timeout_seconds.clamp(5, 600))
}

pub fn key_create(r: pb::KeyCreateRequest, time: Timestamp) -> Result<Op, Refusal> {
    let purpose: KeyPurpose = r
        .purpose
        .parse()
        .map_err(|e: tessera_crypto::purpose::UnknownPurpose| Refusal::invalid(e.to_string()))?;
    let deadline = time.unix_secs().saturating_add(key_timeout_secs(&r));
    Ok(Op::KeyCreate {
        name: r.name,
        purpose,
        time,
        deadline,
    })
}

pub fn ssh_role(r: pb::SshRoleRequest) -> Op {
    Op::SshRoleWrite {
        key: r.key,
        role: SshRole {
            allowed_principals: r.allowed_principals,
            allowed_extensions: r.allowed_extensions,
            max_ttl: r.max_ttl_seconds,
        },
    }
}

/// The grant a request names: none when the field is empty.
pub fn named_grant(grant: String) -> Option<String> {
    (!grant.is_empty()).then_some(grant)
}

pub fn config_set(r: pb::ConfigSetRequest) -> Result<Op, Refusal> {
    if r.threshold.is_none()
        && r.ack_fault_tolerance.is_none()
        && r.allow_unsafe_topology.is_none()
        && r.breakglass_request_ttl_secs.is_none()
    {
        return Err(Refusal::invalid("nothing to set"));
    }
    Ok(Op::SetSettings {
        threshold: r.threshold,
        ack_fault_tolerance: r.ack_fault_tolerance,
        allow_unsafe_topology: r.allow_unsafe_topology,
        breakglass_request_ttl_secs: r.breakglass_request_ttl_secs,
    })
}

pub fn attach(r: pb::PolicyAttachRequest) -> Result<Op, Refusal> {
    let target = match (r.group.is_empty(), r.identity.is_empty()) {
        (false, true) => AttachTarget::Group(r.group),
        (true, false) => AttachTarget::Identity(r.identity),
        _ => {
            return Err(Refusal::invalid(
                "name exactly one of --group or --identity",
            ))
        }
    };
    Ok(Op::Attach {
        policy: r.policy,
        target,
        detach: r.detach,
    })
}

pub fn revoke(r: pb::RevokeRequest) -> Result<Op, Refusal> {
    use pb::revoke_request::Target;
    let target = match r.target {
        Some(Target::Identity(name)) => RevokeTarget::Identity(name),
        Some(Target::Serial(s)) => RevokeTarget::Serial(s),
        Some(Target::Node(n)) => RevokeTarget::Node(n),
        None => {
            return Err(Refusal::invalid(
                "name what to revoke: --identity, --serial or --node",
            ))
        }
    };
    Ok(Op::Revoke { target })
}

pub fn restore(r: pb::SnapshotData) -> Result<Op, Refusal> {
    let file: SnapshotFile = serde_json::from_slice(&r.data)
        .map_err(|e| Refusal::invalid(format!("not a Tessera snapshot file: {e}")))?;
    if file.format != SNAPSHOT_FORMAT {
        return Err(Refusal::invalid(format!(
            "snapshot format {:?} is not supported (expected {SNAPSHOT_FORMAT:?})",
            file.format
        )));
    }
    Ok(Op::Restore {
        model: Box::new(file.model),
    })
}
