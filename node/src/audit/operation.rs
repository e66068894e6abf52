//! The names of audited operations, as they appear in the audit log and in the
//! `operation` label of the request metrics. One variant per client-facing operation, so a
//! misspelt name cannot reach the log.

/// An audited operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    BreakGlassDecide,
    BreakGlassList,
    BreakGlassRequest,
    BreakGlassRevoke,
    BreakGlassShow,
    BreakGlassUse,
    ConfigSet,
    GroupDelete,
    GroupList,
    GroupRead,
    GroupWrite,
    KeyCreate,
    KeyList,
    KeyRead,
    KvBadShareReport,
    KvDelete,
    KvDestroy,
    KvList,
    KvMetadata,
    KvMetadataDelete,
    KvMetadataPut,
    KvPut,
    KvReleaseShare,
    KvReleaseShares,
    KvUndelete,
    KvVersion,
    MembersAdd,
    MembersList,
    MembersRemove,
    PolicyAttach,
    PolicyDelete,
    PolicyList,
    PolicyRead,
    PolicyWrite,
    SharesList,
    SignCheaterReport,
    SignCommit,
    SignShare,
    SignShares,
    SnapshotRestore,
    SnapshotSave,
    SshRoleWrite,
    Status,
    Topology,
    Whoami,
    Revoke,
    RevocationsList,
    RootsSet,
    RootsList,
}

impl Operation {
    /// The signed request this operation is, if it changes the replicated state: such a
    /// request must carry its client's signature (`state::authority`).
    pub fn signed_method(self) -> Option<tessera_proto::SignedMethod> {
        use tessera_proto::SignedMethod as M;
        Some(match self {
            Operation::KvPut => M::KvPut,
            Operation::KvDelete => M::KvDelete,
            Operation::KvUndelete => M::KvUndelete,
            Operation::KvDestroy => M::KvDestroy,
            Operation::KvMetadataPut => M::KvMetadataPut,
            Operation::KvMetadataDelete => M::KvMetadataDelete,
            Operation::KeyCreate => M::KeyCreate,
            Operation::SshRoleWrite => M::SshRoleWrite,
            Operation::ConfigSet => M::ConfigSet,
            Operation::GroupWrite => M::GroupWrite,
            Operation::GroupDelete => M::GroupDelete,
            Operation::PolicyWrite => M::PolicyWrite,
            Operation::PolicyDelete => M::PolicyDelete,
            Operation::PolicyAttach => M::PolicyAttach,
            Operation::Revoke => M::Revoke,
            Operation::SnapshotRestore => M::SnapshotRestore,
            Operation::MembersAdd => M::MembersAdd,
            Operation::MembersRemove => M::MembersRemove,
            Operation::RootsSet => M::RootsSet,
            Operation::BreakGlassRequest => M::BreakGlassRequest,
            Operation::BreakGlassDecide => M::BreakGlassDecide,
            Operation::BreakGlassRevoke => M::BreakGlassRevoke,
            Operation::BreakGlassUse => M::BreakGlassUse,
            _ => return None,
        })
    }

    /// The name in the audit log (`operation`) and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::BreakGlassDecide => "breakglass.decide",
            Operation::BreakGlassList => "breakglass.list",
            Operation::BreakGlassRequest => "breakglass.request",
            Operation::BreakGlassRevoke => "breakglass.revoke",
            Operation::BreakGlassShow => "breakglass.show",
            Operation::BreakGlassUse => "breakglass.use",
            Operation::ConfigSet => "config.set",
            Operation::GroupDelete => "group.delete",
            Operation::GroupList => "group.list",
            Operation::GroupRead => "group.read",
            Operation::GroupWrite => "group.write",
            Operation::KeyCreate => "key.create",
            Operation::KeyList => "key.list",
            Operation::KeyRead => "key.read",
            Operation::KvBadShareReport => "kv.bad_share_report",
            Operation::KvDelete => "kv.delete",
            Operation::KvDestroy => "kv.destroy",
            Operation::KvList => "kv.list",
            Operation::KvMetadata => "kv.metadata",
            Operation::KvMetadataDelete => "kv.metadata_delete",
            Operation::KvMetadataPut => "kv.metadata_put",
            Operation::KvPut => "kv.put",
            Operation::KvReleaseShare => "kv.release_share",
            Operation::KvReleaseShares => "kv.release_shares",
            Operation::KvUndelete => "kv.undelete",
            Operation::KvVersion => "kv.version",
            Operation::MembersAdd => "members.add",
            Operation::MembersList => "members.list",
            Operation::MembersRemove => "members.remove",
            Operation::PolicyAttach => "policy.attach",
            Operation::PolicyDelete => "policy.delete",
            Operation::PolicyList => "policy.list",
            Operation::PolicyRead => "policy.read",
            Operation::PolicyWrite => "policy.write",
            Operation::SharesList => "shares.list",
            Operation::SignCheaterReport => "sign.cheater_report",
            Operation::SignCommit => "sign.commit",
            Operation::SignShare => "sign.share",
            Operation::SignShares => "sign.shares",
            Operation::SnapshotRestore => "snapshot.restore",
            Operation::SnapshotSave => "snapshot.save",
            Operation::SshRoleWrite => "ssh.role_write",
            Operation::Status => "status",
            Operation::Topology => "topology",
            Operation::Whoami => "whoami",
            Operation::Revoke => "revoke",
            Operation::RootsSet => "roots.set",
            Operation::RootsList => "roots.list",
            Operation::RevocationsList => "revocations.list",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
