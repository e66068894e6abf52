//! Attacks by a holder of a cluster certificate that should give them nothing: a node's
//! certificate used as a client, a node that is not a member forwarding commands to the leader,
//! a member that makes itself leader and appends commands of its own making, and a group
//! editor adding themselves to a group that carries more power than they hold. Each test fails
//! if the attack works.

use std::time::{Duration, Instant};

use cluster_tests::{byzantine_leader, fails, forge_leading, ok, Cluster, Opts};
use tessera_node::raft::codec;
use tessera_node::raft::leader::LeaderOp;
use tessera_node::state::{AttachTarget, Command, Op};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A mutually authenticated channel to node `via`, presenting `name`'s certificate.
async fn channel_as(c: &Cluster, name: &str, via: u64) -> Channel {
    let read = |f: String| std::fs::read_to_string(c.dir.join(f)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt".into())))
        .identity(Identity::from_pem(
            read(format!("{name}.crt")),
            read(format!("{name}.key")),
        ))
        .domain_name(format!("node{via}"));
    Endpoint::from_shared(format!("https://{}", c.node(via).api_addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap()
}

#[test]
fn a_node_certificate_is_not_a_client_identity() {
    let c = Cluster::start(Opts::default());
    // node2's own certificate and key, as someone who took them from its disk would use them.
    for via in 1..=3 {
        let out = c.cli_as("node2", via, &["status"]);
        assert_eq!(out.status.code(), Some(3), "node {via}");
        let err = fails(&out);
        assert!(
            err.contains("client services take client certificates only"),
            "{err}"
        );
        let out = c.cli_as("node2", via, &["kv", "list", "a/"]);
        assert_eq!(out.status.code(), Some(3), "node {via}");
    }
    // The refusal is audited under the certificate's name.
    let audit = std::fs::read_to_string(c.node(1).data_dir.join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"identity\":\"node2\"") && l.contains("\"outcome\":\"denied\"")),
        "no denied line for node2"
    );
}

#[test]
fn a_node_that_is_not_a_member_cannot_forward_a_command_to_the_leader() {
    let mut c = Cluster::start(Opts::default());
    // A certificate for node 9, signed by the cluster CA, of a node that never joined.
    c.node_config(9, "a");
    c.client_cert("mallory");
    let leader = c.wait_leader(Duration::from_secs(20));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(async {
        let mut raft = tessera_client::proto::raft_client::RaftClient::new(
            channel_as(&c, "node9", leader).await,
        );
        let attach_root = LeaderOp::Command(Command::by_node(
            "admin".into(),
            Op::Attach {
                policy: "root".into(),
                target: AttachTarget::Identity("mallory".into()),
                detach: false,
            },
        ));
        let data = codec::encode(&attach_root).unwrap();
        raft.forward(tessera_client::proto::RaftPayload { data })
            .await
            .unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("not a member"), "{refused:?}");
    // Nothing was granted: mallory holds no policy on any node.
    for via in 1..=3 {
        let who = c.json_as("mallory", via, &["whoami"]);
        assert_eq!(who["policies"], serde_json::json!([]), "node {via}: {who}");
    }
}

#[test]
fn a_group_editor_cannot_join_a_group_that_carries_more_than_they_hold() {
    let c = Cluster::start(Opts::default());
    c.client_cert("alice");
    c.client_cert("bob");
    // alice may edit groups, and holds admin on the "dev" policy only.
    let editor = c.dir.join("editor.hcl");
    std::fs::write(
        &editor,
        "path \"sys/groups/*\" {\n  capabilities = [\"create\", \"update\", \"read\"]\n}\n\
         path \"sys/policies/dev\" {\n  capabilities = [\"admin\"]\n}\n",
    )
    .unwrap();
    let dev = c.dir.join("dev.hcl");
    std::fs::write(&dev, "path \"dev/*\" {\n  capabilities = [\"read\"]\n}\n").unwrap();
    ok(&c.cli(1, &["policy", "write", "editor", editor.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "write", "dev", dev.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "attach", "editor", "--identity", "alice"]));
    ok(&c.cli(1, &["group", "write", "admins", "--members", "bob"]));
    ok(&c.cli(1, &["policy", "attach", "root", "--group", "admins"]));
    ok(&c.cli(1, &["group", "write", "devs", "--members", "bob"]));
    ok(&c.cli(1, &["policy", "attach", "dev", "--group", "devs"]));

    // Joining the group that carries root would make alice root: refused on every node, and
    // the group is unchanged.
    for via in 1..=3 {
        let err = fails(&c.cli_as(
            "alice",
            via,
            &["group", "write", "admins", "--members", "bob,alice"],
        ));
        assert!(err.contains("permission denied"), "{err}");
        assert!(err.contains("sys/policies/root"), "{err}");
    }
    let group = c.json(1, &["group", "read", "admins"]);
    assert_eq!(group["members"], serde_json::json!(["bob"]), "{group}");
    let who = c.json_as("alice", 2, &["whoami"]);
    assert_eq!(who["policies"], serde_json::json!(["editor"]), "{who}");

    // A group whose every policy alice may grant is hers to edit.
    ok(&c.cli_as(
        "alice",
        2,
        &["group", "write", "devs", "--members", "bob,alice"],
    ));
    let who = c.json_as("alice", 3, &["whoami"]);
    let policies: Vec<String> = serde_json::from_value(who["policies"].clone()).unwrap();
    assert!(policies.contains(&"dev".to_string()), "{who}");
}

/// `status` as `identity` through `via`, until it is refused: `operator revoke` answers once
/// every reachable member has applied the revocation, but allows a busy machine a few seconds.
fn refused_soon(c: &Cluster, identity: &str, via: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = c.cli_as(identity, via, &["status"]);
        if !out.status.success() || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn revoked_identities_and_certificates_are_refused_by_every_node() {
    let c = Cluster::start(Opts::default());
    c.client_cert("eve");
    let policy = c.dir.join("status.hcl");
    std::fs::write(
        &policy,
        "path \"sys/status\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(&c.cli(1, &["policy", "write", "status", policy.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "attach", "status", "--identity", "eve"]));
    ok(&c.cli_as("eve", 2, &["status"]));

    // Revoking the identity refuses every certificate naming it, on every node, at once.
    let revoked = c.json(1, &["operator", "revoke", "--identity", "eve"]);
    assert!(revoked["index"].as_u64().is_some(), "{revoked}");
    for via in 1..=3 {
        let out = refused_soon(&c, "eve", via);
        assert_eq!(out.status.code(), Some(3), "node {via}");
        let err = fails(&out);
        assert!(err.contains("identity \"eve\" is revoked"), "{err}");
    }

    // One certificate, by its serial: the identity's other certificates still work.
    let issued = c.json(
        1,
        &[
            "operator",
            "client-cert",
            "frank",
            "--ttl",
            "30d",
            "--dir",
            c.dir.to_str().unwrap(),
        ],
    );
    let serial = issued["serial"]
        .as_str()
        .expect("the serial is printed")
        .to_string();
    ok(&c.cli(1, &["policy", "attach", "status", "--identity", "frank"]));
    ok(&c.cli_as("frank", 3, &["status"]));
    ok(&c.cli(1, &["operator", "revoke", "--serial", &serial]));
    for via in 1..=3 {
        let err = fails(&refused_soon(&c, "frank", via));
        assert!(
            err.contains(&format!("certificate {serial} is revoked")),
            "{err}"
        );
    }
    let list = c.json(2, &["operator", "revocations"]);
    assert_eq!(list["identities"], serde_json::json!(["eve"]), "{list}");
    assert_eq!(list["serials"], serde_json::json!([serial]), "{list}");

    // Bad input changes nothing.
    let err = fails(&c.cli(1, &["operator", "revoke", "--serial", "XYZ"]));
    assert!(err.contains("lowercase hex"), "{err}");
    let err = fails(&c.cli(1, &["operator", "revoke"]));
    assert!(err.contains("--identity"), "{err}");
    let err = fails(&c.cli(
        1,
        &[
            "operator",
            "client-cert",
            "gina",
            "--ttl",
            "3y",
            "--dir",
            c.dir.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("--ttl"), "{err}");
    assert!(!c.dir.join("gina.crt").exists());
    assert_eq!(c.json(3, &["operator", "revocations"]), list);
}

/// Raft tolerates crashes, not lies: a member can win an election and append any entry. Node 1
/// here (a `byzantine-test` build) does exactly that, past every check a serving node makes,
/// and every node (node 1's own state machine too) refuses each forgery on apply.
#[test]
fn a_byzantine_leader_cannot_append_changes_nobody_signed() {
    let (mut c, forge_dir) = byzantine_leader();
    c.client_cert("mallory");
    // A real signed request served by node 1, for the forger to reuse.
    ok(&c.cli(1, &["kv", "put", "prod/db", "value=s3cret"]));

    let mut answers = vec![
        (
            "unsigned",
            forge_leading(&mut c, &forge_dir, "a", "attach-root mallory"),
        ),
        (
            "destroy",
            forge_leading(&mut c, &forge_dir, "b", "destroy prod/db 1"),
        ),
        ("replay", forge_leading(&mut c, &forge_dir, "c", "replay")),
    ];
    // A signature never used: node 1 keeps a real request back and pins it to its own op.
    assert_eq!(forge_leading(&mut c, &forge_dir, "d", "hold"), "held=armed");
    fails(&c.cli(1, &["kv", "put", "prod/other", "value=x"]));
    answers.push((
        "rebound",
        forge_leading(&mut c, &forge_dir, "e", "rebind-attach-root mallory"),
    ));
    let expect = [
        ("unsigned", "carries no client signature"),
        ("destroy", "carries no client signature"),
        ("replay", "replay"),
        ("rebound", "is not the request"),
    ];
    for ((what, answer), (_, needle)) in answers.iter().zip(expect) {
        // Committed to the log (the forger led), and refused by the replicated state.
        assert!(answer.starts_with("index="), "{what}: {answer}");
        let error = answer.split("error=").nth(1).unwrap_or_default();
        assert!(error.contains(needle), "{what}: {answer}");
    }
    // Nothing changed on the honest nodes: mallory holds nothing, the secret reads back.
    for via in 2..=3 {
        let who = c.json_as("mallory", via, &["whoami"]);
        assert_eq!(who["policies"], serde_json::json!([]), "node {via}: {who}");
        let got = c.json(via, &["kv", "get", "prod/db"]);
        assert_eq!(got["data"]["value"], "s3cret", "node {via}: {got}");
        let out = c.cli_as("mallory", via, &["kv", "get", "prod/db"]);
        assert_eq!(out.status.code(), Some(3), "node {via}: {}", fails(&out));
    }
}

/// A compromised gateway answers `Topology` with its own sealing key for every holder (to open
/// every envelope of a write), or with a threshold of 1. The SDK deals to neither: every key
/// must be the one the cluster CA attested for that holder, and a second holder must confirm
/// the threshold.
#[test]
fn a_lying_gateway_cannot_make_a_client_deal_to_its_keys_or_a_lower_threshold() {
    let mut c = Cluster::start(Opts::default());
    for (lie, needle) in [
        (
            "keys",
            "node 1 answered a topology that is not to be trusted",
        ),
        ("threshold", "nodes disagree on the cluster's topology"),
    ] {
        c.stop(1);
        c.start_node_with_env(1, &[("TESSERA_TEST_LYING_TOPOLOGY", lie)]);
        c.wait_leader(Duration::from_secs(30));
        let out = c.cli(1, &["kv", "put", &format!("app/{lie}"), "v=1"]);
        let err = fails(&out);
        assert!(err.contains(needle), "{lie}: {err}");
        // Nothing was written, and through an honest node the same write works.
        let out = c.cli(2, &["kv", "get", &format!("app/{lie}")]);
        assert!(
            !out.status.success(),
            "{lie}: the refused write is not there"
        );
        ok(&c.cli(2, &["kv", "put", &format!("app/{lie}"), "v=1"]));
    }
}

/// The one-directory layout of `operator init` keeps `ca.key` beside every node's config: fine
/// for a local cluster, and every node says loudly that a real node must not run that way.
#[test]
fn a_node_started_beside_the_ca_key_says_so() {
    let c = Cluster::start(Opts::default());
    let log = std::fs::read_to_string(&c.node(1).log).unwrap();
    assert!(
        log.contains("ca.key sits beside this node's configuration"),
        "no warning in node 1's log"
    );
    // Without the key beside it, no warning.
    let mut c = Cluster::init(Opts::default());
    std::fs::remove_file(c.dir.join("ca.key")).unwrap();
    std::fs::remove_file(c.dir.join("admin.key")).unwrap();
    c.start_node(1);
    c.wait_listening(1);
    let log = std::fs::read_to_string(&c.node(1).log).unwrap();
    assert!(!log.contains("sits beside"), "{log}");
}

/// openraft takes a membership entry into effect when a follower appends it, outside the state
/// machine: a Byzantine leader could add a voter of its own or take an honest voter's vote at
/// that layer. Every follower refuses a membership entry that departs from the signed
/// membership, so neither change commits, and once the liar is gone the others carry on with
/// the signed membership.
#[test]
fn a_byzantine_leader_cannot_change_the_raft_membership_nobody_signed() {
    let (mut c, forge_dir) = byzantine_leader();
    ok(&c.cli(1, &["kv", "put", "app/a", "v=1"]));
    let rogue = forge_leading(&mut c, &forge_dir, "a", "raft-add-learner 9 127.0.0.1:9");
    assert!(
        rogue.starts_with("failed="),
        "a rogue node joined Raft: {rogue}"
    );
    // The honest followers say why (a follower slowed by load may log it a little later).
    for id in 2..=3 {
        assert!(
            c.wait_log(
                id,
                "adds node 9, which no signed command made a member",
                Duration::from_secs(10)
            ),
            "node {id} did not refuse the entry"
        );
        let log = std::fs::read_to_string(&c.node(id).log).unwrap();
        assert!(log.contains("refused a Raft membership entry"), "node {id}");
    }
    // The liar goes; the honest nodes elect a leader among themselves and nothing of the
    // forged entry is theirs: the members are the signed ones and writes go on.
    c.kill9(1);
    let leader = c.wait_leader(Duration::from_secs(30));
    assert_ne!(leader, 1);
    let members = c.json(2, &["operator", "members"]);
    let ids: Vec<u64> = members
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "{members}");
    ok(&c.cli(2, &["kv", "put", "app/b", "v=2"]));
    let got = c.json(3, &["kv", "get", "app/a"]);
    assert_eq!(got["data"]["v"], "1", "{got}");
}

#[test]
fn a_byzantine_leader_cannot_take_an_honest_voters_vote() {
    let (mut c, forge_dir) = byzantine_leader();
    let dropped = forge_leading(&mut c, &forge_dir, "a", "raft-remove-voter 3");
    assert!(
        dropped.starts_with("failed="),
        "node 3 lost its vote: {dropped}"
    );
    assert!(
        c.wait_log(
            2,
            "takes the vote of node 3, which no signed command removed",
            Duration::from_secs(10)
        ),
        "node 2 did not refuse the entry"
    );
}

/// A holder that gives no receipts and then complains about every share it was dealt (faulty,
/// or compromised and trying to brick secrets), with its real evidence: every node opens the
/// envelope with it, finds a good share, and refuses the complaint; every version stays
/// readable. One complaint used to make a version "invalid and never served".
#[test]
fn one_holder_complaining_about_every_share_makes_no_version_unreadable() {
    let mut c = Cluster::init(Opts::default());
    c.start_node(1);
    c.start_node(2);
    c.start_node_with_env(3, &[("TESSERA_TEST_FALSE_COMPLAINTS", "1")]);
    c.wait_ready();
    for i in 0..3 {
        ok(&c.cli(1, &["kv", "put", &format!("app/{i}"), &format!("v={i}")]));
    }
    // Node 3 complained, and every node refused it.
    assert!(
        c.wait_log(
            3,
            "verifies against the commitments: the complaint is false",
            Duration::from_secs(20)
        ),
        "node 3's complaint was not refused"
    );
    for i in 0..3 {
        let path = format!("app/{i}");
        let m = c.json(2, &["kv", "metadata", "get", &path]);
        assert_eq!(m["versions"][0]["complaints"], serde_json::json!([]), "{m}");
        assert_eq!(m["versions"][0]["valid"], true, "{m}");
        for via in 1..=3 {
            let got = c.json(via, &["kv", "get", &path]);
            assert_eq!(got["data"]["v"], i.to_string(), "via {via}: {got}");
        }
    }
}

/// The root identities are replicated state, set by the genesis and changed only by a signed
/// command of a root: a new administrator can be made root and the first one retired (and then
/// revoked), on every node at once; no config file names a root any more.
#[test]
fn root_is_replicated_and_only_a_root_changes_it() {
    let c = Cluster::start(Opts::default());
    c.client_cert("bob");
    let policy = c.dir.join("p.hcl");
    std::fs::write(&policy, cluster_tests::simple_policy("x/*")).unwrap();
    let p = policy.to_str().unwrap();
    let out = c.cli_as("bob", 2, &["policy", "write", "p", p]);
    assert_eq!(out.status.code(), Some(3), "{}", fails(&out));
    // A node's name, or nobody, is refused.
    let err = fails(&c.cli(1, &["operator", "roots", "set", "node2"]));
    assert!(err.contains("node's name"), "{err}");
    ok(&c.cli(1, &["operator", "roots", "set", "admin,bob"]));
    for via in 1..=3 {
        let r = c.json(via, &["operator", "roots"]);
        assert_eq!(r["roots"], serde_json::json!(["admin", "bob"]), "{r}");
    }
    ok(&c.cli_as("bob", 3, &["policy", "write", "p", p]));
    // Bob retires the first admin, who can no longer do what root does, nor take it back.
    ok(&c.cli_as("bob", 2, &["operator", "roots", "set", "bob"]));
    let out = c.cli(1, &["policy", "write", "q", p]);
    assert_eq!(out.status.code(), Some(3), "{}", fails(&out));
    let out = c.cli(3, &["operator", "roots", "set", "admin"]);
    assert_eq!(out.status.code(), Some(3), "{}", fails(&out));
}

/// A node that was a member and was removed keeps a certificate the CA signed; with it, it can
/// no longer call any node as a peer: the signed membership no longer has it.
#[test]
fn a_removed_node_is_refused_by_every_peer() {
    let mut c = Cluster::start(Opts::default());
    c.start_joiner(4, "a");
    let addr = c.node(4).api_addr.clone();
    ok(&c.cli(
        2,
        &[
            "operator",
            "members",
            "add",
            "--id",
            "4",
            "--api-addr",
            &addr,
            "--learner",
        ],
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let read_index = |via: u64| {
        rt.block_on(async {
            let mut raft = tessera_client::proto::raft_client::RaftClient::new(
                channel_as(&c, "node4", via).await,
            );
            raft.read_index(tessera_client::proto::Empty {}).await
        })
    };
    // A member may ask: the leader answers (whichever node leads now; under load an election
    // may move it, so ask each in turn).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut asked = Vec::new();
    while !(1..=3).any(|via| {
        let r = read_index(via);
        let answered = r.is_ok();
        asked.push(r);
        answered
    }) {
        assert!(Instant::now() < deadline, "{asked:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(&c.cli(3, &["operator", "members", "remove", "--id", "4"]));
    for via in 1..=3 {
        let refused = read_index(via).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("not a member"), "{refused:?}");
    }
}

/// A snapshot replaces a lagging follower's whole state, and Raft lets any leader send one. Node
/// 1 here (a `byzantine-test` build) leads and sends snapshots in which mallory holds the root
/// policy, with its own vouch for the forged bytes. The follower installs none of them: a
/// majority of the snapshot's voters must vouch for its exact bytes. Once an honest node leads,
/// its snapshot (vouched for by two voters) is installed and mallory still holds nothing.
#[test]
fn a_byzantine_leader_cannot_replace_a_followers_state_with_a_forged_snapshot() {
    let mut c = Cluster::init(Opts {
        snapshot_every: Some(8),
        ..Opts::default()
    });
    c.start_node_with_env(1, &[("TESSERA_TEST_FORGED_SNAPSHOT", "mallory")]);
    c.start_node(2);
    c.start_node(3);
    c.wait_ready();
    c.make_leader(1);
    c.client_cert("mallory");
    c.stop(3);
    // Enough writes that node 3 can catch up only by a snapshot (the log behind it is gone).
    for i in 0..20 {
        ok(&c.cli(1, &["kv", "put", &format!("app/s{i}"), &format!("n={i}")]));
    }
    c.start_node(3);
    c.wait_listening(3);
    assert!(
        c.wait_log(3, "refused a snapshot", Duration::from_secs(60)),
        "node 3 never refused the forged snapshot"
    );
    let installs = |c: &Cluster| {
        c.metric(3, "tessera_raft_snapshots_installed")
            .unwrap_or(0.0)
    };
    assert_eq!(
        installs(&c),
        0.0,
        "node 3 installed a snapshot from the forger"
    );

    // The forger goes; node 2 leads and its snapshot is installed.
    c.stop(1);
    c.wait_leader(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    while installs(&c) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "node 3 never installed the honest snapshot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let who = c.json_as("mallory", 3, &["whoami"]);
    assert_eq!(who["policies"], serde_json::json!([]), "{who}");
    let out = c.cli_as("mallory", 3, &["kv", "get", "app/s19"]);
    assert_eq!(out.status.code(), Some(3), "{}", fails(&out));
    assert_eq!(c.json(3, &["kv", "get", "app/s19"])["data"]["n"], "19");
}

/// A holder authorizes on the state it applied. Node 3 here is cut off from the other nodes
/// (not from clients) when alice is revoked, so it never learns of it; it must still stop
/// releasing her anything once its last word from a leader is older than the freshness bound
/// (twice the longest election timeout), and say why.
#[test]
fn a_holder_cut_off_from_the_leader_stops_releasing_on_stale_grants() {
    let mut c = Cluster::init(Opts::default());
    let cut = c.dir.join("node3-cut-off");
    // Nodes 1 and 2 elect a leader first, so that node 3 follows.
    c.start_node(1);
    c.start_node(2);
    c.wait_leader(Duration::from_secs(30));
    c.start_node_with_env(3, &[("TESSERA_TEST_CUT_OFF_FILE", cut.to_str().unwrap())]);
    c.wait_ready();
    c.client_cert("alice");
    let policy = c.dir.join("app.hcl");
    std::fs::write(&policy, cluster_tests::simple_policy("app/*")).unwrap();
    ok(&c.cli(1, &["policy", "write", "app", policy.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "attach", "app", "--identity", "alice"]));
    ok(&c.cli(1, &["kv", "put", "app/x", "k=v"]));
    assert_eq!(
        c.json_as("alice", 3, &["kv", "get", "app/x"])["data"]["k"],
        "v"
    );

    std::fs::write(&cut, "").unwrap();
    ok(&c.cli(1, &["operator", "revoke", "--identity", "alice"]));
    // Past the bound (2 × 2 s election timeout) since node 3 last heard from a leader.
    std::thread::sleep(Duration::from_secs(5));
    let audit = c.node(3).data_dir.join("audit.log");
    let before = std::fs::read_to_string(&audit).unwrap().lines().count();
    let err = fails(&c.cli_as("alice", 3, &["kv", "get", "app/x", "--timeout", "30"]));
    let text = std::fs::read_to_string(&audit).unwrap();
    let releases: Vec<serde_json::Value> = text
        .lines()
        .skip(before)
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| {
            v["identity"] == "alice" && v["path"] == "app/x" && v["operation"] == "kv.release_share"
        })
        .collect();
    assert!(
        !releases.is_empty(),
        "node 3 audited no release for alice ({err}):\n{text}"
    );
    for r in &releases {
        assert_eq!(
            r["outcome"], "error",
            "node 3 released on a stale grant: {r}"
        );
        assert!(r.to_string().contains("releases nothing"), "{r}");
    }
    // Back in touch, node 3 learns of the revocation and refuses her outright.
    std::fs::remove_file(&cut).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let err = fails(&c.cli_as("alice", 3, &["kv", "get", "app/x", "--timeout", "30"]));
        if err.contains("identity \"alice\" is revoked") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never learned of the revocation: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
