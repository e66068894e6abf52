//! The data model every node holds a full copy of. It carries only public data (names, group
//! members, policy text, settings, secret ciphertexts, commitments and envelopes sealed to one
//! node each); no node can learn a secret from it (law 1).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{Command, CommandResult};
use super::keys;
use super::kv::SecretEntry;
use super::{ops, Members};
use crate::error::Refusal;

/// Name of the built-in policy that grants everything; it cannot be written or deleted.
pub const ROOT_POLICY: &str = "root";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Shares needed to read a secret (`t`). `None` until the first leader sets it from the
    /// configuration `operator init` wrote.
    pub threshold: Option<u32>,
    /// Holders beyond `t` that must acknowledge a write before it succeeds (`f`).
    pub ack_fault_tolerance: Option<u32>,
    pub allow_unsafe_topology: bool,
    /// How long a break-glass request waits for approvals (`breakglass.request_ttl`), seconds;
    /// `None` for the default (24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass_request_ttl_secs: Option<u64>,
}

impl Settings {
    /// How long a break-glass request opened now waits for approvals, in seconds.
    pub fn request_ttl_secs(&self) -> u64 {
        self.breakglass_request_ttl_secs
            .unwrap_or(super::breakglass::DEFAULT_REQUEST_TTL_SECS)
    }

    /// `t + f` acknowledgements, capped at `n`. By default `f` is 1 when the cluster can still
    /// take writes with one holder down, else 0.
    pub fn acks_required(&self, holders: usize) -> usize {
        let t = self.threshold.unwrap_or(2) as usize;
        let f = match self.ack_fault_tolerance {
            Some(f) => f as usize,
            None => holders.saturating_sub(1 + t).min(1),
        };
        (t + f).min(holders)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Policy name → HCL source.
    pub policies: BTreeMap<String, String>,
    pub identity_policies: BTreeMap<String, BTreeSet<String>>,
    pub group_policies: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub settings: Settings,
    /// Threshold signing keys (public state of each DKG, group keys).
    #[serde(default)]
    pub keys: BTreeMap<String, keys::KeyEntry>,
    /// Certificates refused by every node.
    #[serde(default)]
    pub revocations: super::revocations::Revocations,
    /// Persisted one entry per key by the state machine, not with the rest of the model.
    #[serde(skip)]
    pub secrets: BTreeMap<String, SecretEntry>,
    /// The signed calls applied lately (replays are refused); their ids are persisted one
    /// entry each by the state machine.
    #[serde(default)]
    pub calls: super::authority::Calls,
    /// The members as signed commands made them (`state::members`).
    #[serde(default)]
    pub members: Members,
    /// Identities that hold every capability, from the genesis document.
    #[serde(default)]
    pub roots: BTreeSet<String>,
    /// The digest of the genesis document this cluster started from; `None` before it applied.
    #[serde(default)]
    pub genesis: Option<String>,
    /// The voters' vouches for the newest checkpoints (`state::checkpoint`).
    #[serde(default)]
    pub checkpoints: super::checkpoint::Checkpoints,
    /// Break-glass requests by id (`state::breakglass`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakglass: BTreeMap<String, super::breakglass::Request>,
}

/// What an applied command changed beyond the small part of the model, for the state machine
/// to persist and for the node's own share vault to act on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Secret entries that changed (persist, or delete if gone).
    pub secrets: Vec<String>,
    /// A version this command created (holders open their envelope).
    pub created: Option<(String, u64)>,
    /// Versions whose shares every holder must now erase.
    pub erased: Vec<(String, u64)>,
    /// A key whose DKG moved on (this node's DKG runner looks at it).
    pub dkg: Option<String>,
    /// The signed membership changed (genesis, a member added or removed).
    pub members: bool,
    /// Signed-call ids to remember (with their expiry) or to forget (`None`).
    pub calls: Vec<(Vec<u8>, Option<u64>)>,
}

/// Names are path segments in policies and audit lines: keep them boring.
pub fn validate_name(kind: &str, name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.len() > 128 {
        return Err(Refusal::invalid(format!(
            "{kind} name must be 1 to 128 characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(Refusal::invalid(format!(
            "{kind} name {name:?} may only contain letters, digits, '-', '_', '.', '@'"
        )));
    }
    Ok(())
}

/// What applying needs besides the model: the membership, the cluster id, the log index, and
/// what signed commands are checked against.
pub struct ApplyCtx<'a> {
    pub members: &'a Members,
    pub cluster_id: &'a str,
    pub index: u64,
    pub trust: &'a super::authority::Trust,
    /// The entry's time, as the leader stamped it (`Command::stamp`): the one clock every node
    /// applies against.
    pub time: super::Timestamp,
}

impl Model {
    /// Applies one command. On refusal the model is unchanged, except that a genuine signed
    /// call's id is used up either way (a refused request cannot be replayed later, when it
    /// might pass).
    pub fn apply(&mut self, cmd: &Command, ctx: &ApplyCtx) -> (CommandResult, Effects) {
        if let Err(e) = super::authority::verify(self, cmd, ctx.trust, ctx.cluster_id, ctx.time) {
            return (CommandResult::refused(e), Effects::default());
        }
        let cx = ops::Ctx {
            members: ctx.members,
            cluster_id: ctx.cluster_id,
            index: ctx.index,
            trust: ctx.trust,
            time: ctx.time,
        };
        let decided = super::authority::permit(self, cmd, ctx.trust)
            .and_then(|()| ops::validate(self, cmd, &cx));
        let mut fx = Effects::default();
        let result = match decided {
            Err(e) => CommandResult::refused(e),
            Ok(()) => {
                ops::apply(self, cmd, &cx, &mut fx);
                CommandResult::ok()
            }
        };
        super::authority::record(self, cmd, &mut fx);
        (result, fx)
    }

    /// Checks a command against the current model without changing it: the serving node uses
    /// this for a precise error before anything reaches the log, and apply decides the same way.
    pub fn validate(
        &self,
        cmd: &Command,
        members: &Members,
        cluster_id: &str,
        trust: &super::authority::Trust,
    ) -> Result<(), Refusal> {
        // Who asked first: a command nobody allowed to ask for it signed changes nothing.
        super::authority::verify(self, cmd, trust, cluster_id, super::Timestamp::now())?;
        super::authority::permit(self, cmd, trust)?;
        let cx = ops::Ctx {
            members,
            cluster_id,
            index: 0,
            trust,
            time: super::Timestamp::now(),
        };
        ops::validate(self, cmd, &cx)
    }

    /// Groups the identity belongs to.
    pub fn groups_of(&self, identity: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, m)| m.contains(identity))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Names of every policy that applies to the identity, directly or through a group.
    pub fn policies_of(&self, identity: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .identity_policies
            .get(identity)
            .cloned()
            .unwrap_or_default();
        for g in self.groups_of(identity) {
            if let Some(p) = self.group_policies.get(&g) {
                out.extend(p.iter().cloned());
            }
        }
        out
    }

    /// Everything but the secrets: cheap to clone for a handler.
    pub fn directory_and_settings(&self) -> Model {
        Model {
            settings: self.settings.clone(),
            keys: self.keys.clone(),
            revocations: self.revocations.clone(),
            roots: self.roots.clone(),
            genesis: self.genesis.clone(),
            ..self.directory()
        }
    }

    /// The groups/policies part, for `operator snapshot save`.
    pub fn directory(&self) -> Model {
        Model {
            groups: self.groups.clone(),
            policies: self.policies.clone(),
            identity_policies: self.identity_policies.clone(),
            group_policies: self.group_policies.clone(),
            settings: Settings::default(),
            keys: BTreeMap::new(),
            revocations: Default::default(),
            secrets: BTreeMap::new(),
            calls: Default::default(),
            members: Members::default(),
            roots: BTreeSet::new(),
            genesis: None,
            checkpoints: Default::default(),
            breakglass: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::command::Op::*;
    use crate::state::{AttachTarget, Op};

    fn cmd(op: Op) -> Command {
        Command::by_node("node1".into(), op)
    }

    fn apply(m: &mut Model, op: Op) -> CommandResult {
        let members = Members::default();
        let ca = crate::state::authority::testing::TestCa::new();
        m.apply(
            &ca.client("admin").sign(op),
            &ApplyCtx {
                members: &members,
                cluster_id: "c",
                index: 1,
                trust: &ca.trust,
                time: crate::state::Timestamp::default(),
            },
        )
        .0
    }

    #[test]
    fn a_batch_of_acknowledgements_counts_only_with_its_signature_and_true_statements() {
        use crate::state::kv::{AckItem, SecretEntry, VersionEntry};
        use crate::state::NodeInfo;
        use tessera_crypto::ack::{ack_message, batch_message, AckKey};
        use tessera_crypto::seal::ShareEnvelope;
        use tessera_crypto::vss::Commitments;

        let key = AckKey::generate();
        let mut members = Members::default();
        members.all.insert(
            2,
            NodeInfo {
                addr: "127.0.0.1:1".into(),
                region: "a".into(),
                sealing_key: String::new(),
                ack_key: hex::encode(key.public()),
                ..NodeInfo::default()
            },
        );
        let commitments = Commitments(vec![[7; 32], [8; 32], [9; 32]]);
        let version = VersionEntry {
            commitments: commitments.clone(),
            holders: vec![1, 2],
            envelopes: [(
                2,
                ShareEnvelope {
                    enc: [1; 32],
                    ciphertext: vec![2; 48],
                },
            )]
            .into(),
            ..VersionEntry::default()
        };
        let mut m = crate::state::authority::testing::model();
        m.secrets.insert(
            "p".into(),
            SecretEntry {
                versions: [(1, version)].into(),
                ..SecretEntry::default()
            },
        );
        let ca = crate::state::authority::testing::TestCa::new();
        let ctx = ApplyCtx {
            members: &members,
            cluster_id: "c",
            index: 5,
            trust: &ca.trust,
            time: crate::state::Timestamp::default(),
        };
        let item = |statement: Vec<u8>| AckItem {
            path: "p".into(),
            version: 1,
            complaint: None,
            statement,
            evidence: Vec::new(),
        };
        let acks = |items: Vec<AckItem>, signature: Vec<u8>| {
            cmd(KvAcks {
                node: 2,
                acks: items,
                signature,
            })
        };
        let sign = |statements: &[&[u8]]| key.sign(&batch_message("c", 2, statements)).to_vec();
        let before = m.clone();

        // A statement about other commitments, even when signed, does not count.
        let wrong = ack_message("c", "p", 1, 2, &Commitments(vec![[6; 32]; 3]));
        let r = m
            .apply(&acks(vec![item(wrong.clone())], sign(&[&wrong])), &ctx)
            .0;
        assert!(r
            .error
            .unwrap()
            .to_string()
            .contains("does not state this version"));
        assert_eq!(m, before);

        // The true statement with a signature over something else does not count either.
        let right = ack_message("c", "p", 1, 2, &commitments);
        let r = m
            .apply(&acks(vec![item(right.clone())], sign(&[&wrong])), &ctx)
            .0;
        assert!(r.error.unwrap().to_string().contains("bad signature"));
        assert_eq!(m, before);

        // Signed as a batch, it counts, and the holder's envelope leaves the state.
        let r = m
            .apply(&acks(vec![item(right.clone())], sign(&[&right])), &ctx)
            .0;
        assert!(r.error.is_none(), "{r:?}");
        let v = &m.secrets["p"].versions[&1];
        assert!(v.acks.contains_key(&2));
        assert!(v.envelopes.is_empty());

        // Having vouched for its share, the holder cannot complain about it afterwards (one
        // holder could otherwise make any version unreadable).
        let reason = "does not verify".to_string();
        let complaint = tessera_crypto::ack::complaint_message("c", "p", 1, 2, &reason, &[]);
        let item = AckItem {
            path: "p".into(),
            version: 1,
            complaint: Some(reason),
            statement: complaint.clone(),
            evidence: Vec::new(),
        };
        let after_ack = m.clone();
        let r = m.apply(&acks(vec![item], sign(&[&complaint])), &ctx).0;
        let e = r
            .error
            .expect("a complaint after an acknowledgement is refused");
        assert!(e.to_string().contains("cannot complain"), "{e}");
        assert_eq!(m, after_ack);
        assert!(m.secrets["p"].versions[&1].is_valid());
    }

    #[test]
    fn malformed_policy_is_refused_and_nothing_changes() {
        let mut m = crate::state::authority::testing::model();
        let before = m.clone();
        let r = apply(
            &mut m,
            PutPolicy {
                name: "p".into(),
                text: "path \"a/*\" { capabilities = [\"raed\"] }".into(),
                grant: None,
            },
        );
        assert!(r.error.unwrap().to_string().contains("raed"));
        // Only the call's id is used up (it cannot be replayed).
        assert_eq!(m.directory_and_settings(), before.directory_and_settings());
        assert_eq!(m.calls.seen.len(), 1);
    }

    #[test]
    fn policies_reach_identities_through_groups_and_detach_works() {
        let mut m = crate::state::authority::testing::model();
        for op in [
            PutPolicy {
                name: "app".into(),
                text: "path \"prod/app/*\" { capabilities = [\"read\"] }".into(),
                grant: None,
            },
            PutGroup {
                name: "devs".into(),
                members: ["alice".to_string()].into(),
            },
            Attach {
                policy: "app".into(),
                target: AttachTarget::Group("devs".into()),
                detach: false,
            },
        ] {
            assert_eq!(apply(&mut m, op).error, None);
        }
        assert_eq!(m.policies_of("alice"), ["app".to_string()].into());
        assert!(m.policies_of("bob").is_empty());
        let r = apply(
            &mut m,
            Attach {
                policy: "app".into(),
                target: AttachTarget::Identity("bob".into()),
                detach: true,
            },
        );
        assert!(r.error.unwrap().to_string().contains("not attached"));
        assert_eq!(
            apply(
                &mut m,
                DeletePolicy {
                    name: "app".into(),
                    grant: None
                }
            )
            .error,
            None
        );
        assert!(m.policies_of("alice").is_empty());
    }

    #[test]
    fn root_policy_is_immutable() {
        let mut m = crate::state::authority::testing::model();
        assert!(apply(
            &mut m,
            PutPolicy {
                name: ROOT_POLICY.into(),
                text: String::new(),
                grant: None,
            }
        )
        .error
        .is_some());
        assert!(apply(
            &mut m,
            DeletePolicy {
                name: ROOT_POLICY.into(),
                grant: None,
            }
        )
        .error
        .is_some());
    }

    #[test]
    fn acks_required_defaults_to_t_plus_one_when_a_holder_can_be_spared() {
        let s = |t| Settings {
            threshold: Some(t),
            ..Settings::default()
        };
        assert_eq!(s(2).acks_required(3), 2);
        assert_eq!(s(3).acks_required(5), 4);
        let explicit = Settings {
            threshold: Some(3),
            ack_fault_tolerance: Some(2),
            ..Settings::default()
        };
        assert_eq!(explicit.acks_required(5), 5);
    }
}
