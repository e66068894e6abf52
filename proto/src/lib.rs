//! Tessera's wire protocol: the generated tonic/prost types. Services by noun:
//!
//! - `Raft` (node to node: consensus, forwarding to the leader, read index, node status);
//! - `Holders` (node to node: receipts for a write's shares before it is submitted);
//! - `Kv` (secrets), `Signing` (threshold keys and signatures), `Sys` (the cluster itself),
//!   for clients.
//!
//! Every error a node sends carries a [`Refusal`] (see `refusal.proto`): the contract between
//! node and client is that typed value, not the status message.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("tessera.v1");
}

pub use v1::*;

/// The binary metadata key that carries a [`Refusal`] (protobuf) beside an error status.
pub const REFUSAL_METADATA_KEY: &str = "tessera-refusal-bin";

/// The binary metadata key that carries a client's [`CallSignature`] on a request that changes
/// the replicated state.
pub const CALL_SIGNATURE_METADATA_KEY: &str = "tessera-call-signature-bin";

/// Separates a signed call from anything else the same key might sign.
pub const CALL_DOMAIN: &str = "tessera/v1 signed call";

/// The longest a signed call may be valid, in seconds: its id must be remembered (to refuse a
/// replay) for that long.
pub const CALL_MAX_LIFETIME_SECS: u64 = 120;

/// Every request that changes the replicated state, and so must carry its client's signature.
/// The name is the gRPC method path, which the signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignedMethod {
    KvPut,
    KvDelete,
    KvUndelete,
    KvDestroy,
    KvMetadataPut,
    KvMetadataDelete,
    KeyCreate,
    SshRoleWrite,
    ConfigSet,
    GroupWrite,
    GroupDelete,
    PolicyWrite,
    PolicyDelete,
    PolicyAttach,
    Revoke,
    SnapshotRestore,
    MembersAdd,
    MembersRemove,
    RootsSet,
    BreakGlassRequest,
    BreakGlassDecide,
    BreakGlassRevoke,
    BreakGlassUse,
}

impl SignedMethod {
    pub const ALL: [SignedMethod; 23] = [
        Self::KvPut,
        Self::KvDelete,
        Self::KvUndelete,
        Self::KvDestroy,
        Self::KvMetadataPut,
        Self::KvMetadataDelete,
        Self::KeyCreate,
        Self::SshRoleWrite,
        Self::ConfigSet,
        Self::GroupWrite,
        Self::GroupDelete,
        Self::PolicyWrite,
        Self::PolicyDelete,
        Self::PolicyAttach,
        Self::Revoke,
        Self::SnapshotRestore,
        Self::MembersAdd,
        Self::MembersRemove,
        Self::RootsSet,
        Self::BreakGlassRequest,
        Self::BreakGlassDecide,
        Self::BreakGlassRevoke,
        Self::BreakGlassUse,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Self::KvPut => "/tessera.v1.Kv/Put",
            Self::KvDelete => "/tessera.v1.Kv/Delete",
            Self::KvUndelete => "/tessera.v1.Kv/Undelete",
            Self::KvDestroy => "/tessera.v1.Kv/Destroy",
            Self::KvMetadataPut => "/tessera.v1.Kv/MetadataPut",
            Self::KvMetadataDelete => "/tessera.v1.Kv/MetadataDelete",
            Self::KeyCreate => "/tessera.v1.Signing/CreateKey",
            Self::SshRoleWrite => "/tessera.v1.Signing/WriteSshRole",
            Self::ConfigSet => "/tessera.v1.Sys/ConfigSet",
            Self::GroupWrite => "/tessera.v1.Sys/WriteGroup",
            Self::GroupDelete => "/tessera.v1.Sys/DeleteGroup",
            Self::PolicyWrite => "/tessera.v1.Sys/WritePolicy",
            Self::PolicyDelete => "/tessera.v1.Sys/DeletePolicy",
            Self::PolicyAttach => "/tessera.v1.Sys/AttachPolicy",
            Self::Revoke => "/tessera.v1.Sys/Revoke",
            Self::SnapshotRestore => "/tessera.v1.Sys/SnapshotRestore",
            Self::MembersAdd => "/tessera.v1.Sys/AddMember",
            Self::MembersRemove => "/tessera.v1.Sys/RemoveMember",
            Self::RootsSet => "/tessera.v1.Sys/SetRoots",
            Self::BreakGlassRequest => "/tessera.v1.BreakGlass/Request",
            Self::BreakGlassDecide => "/tessera.v1.BreakGlass/Decide",
            Self::BreakGlassRevoke => "/tessera.v1.BreakGlass/Revoke",
            Self::BreakGlassUse => "/tessera.v1.BreakGlass/Use",
        }
    }

    pub fn from_path(path: &str) -> Option<SignedMethod> {
        Self::ALL.into_iter().find(|m| m.path() == path)
    }
}

/// The bytes a client signs for one call: [`CallStatement`] with the request's encoding.
pub fn call_statement(
    cluster_id: &str,
    method: SignedMethod,
    id: &[u8],
    expires: u64,
    body: &[u8],
) -> Vec<u8> {
    use prost::Message;
    CallStatement {
        domain: CALL_DOMAIN.to_string(),
        cluster_id: cluster_id.to_string(),
        method: method.path().to_string(),
        id: id.to_vec(),
        expires,
        body: body.to_vec(),
    }
    .encode_to_vec()
}
