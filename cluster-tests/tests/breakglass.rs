//! Break-glass on a real cluster: a gated path is refused to everyone (root included) until
//! a request is approved by every factor, each holder checks the grant itself, uses are exact,
//! a denial vetoes, a grant ends, and the signed proof verifies offline.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_tests::webhook::{Receiver, PATH_TOKEN};
use cluster_tests::{byzantine_leader, fails, forge_leading, ok, tessera_bin, Cluster, Opts, Sshd};
use serde_json::Value;
use tessera_client::proto::{ReleaseItem, ReleaseSharesRequest};
use tessera_client::Error;

const GATED: &str = r#"
path "prod/db/*" {
  capabilities = ["read", "create", "update", "list"]
  break_glass {
    max_ttl = "1h"
    uses    = 2
    factor "sre"      { approvers = ["group:sre-leads"] approvals = 2 }
    factor "security" { approvers = ["identity:ciso"] approvals = 1 }
  }
}
"#;

fn write_file(c: &Cluster, name: &str, text: &str) -> String {
    let p = c.dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// A cluster with the gate in place: alice may read prod/db/* (behind the gate), bob and
/// carol lead SRE (alice too, to show she still cannot approve herself), ciso is security.
fn gated_cluster() -> Cluster {
    let c = Cluster::start(Opts::default());
    set_gate(&c);
    c
}

fn set_gate(c: &Cluster) {
    for who in ["alice", "bob", "carol", "ciso", "dave"] {
        c.client_cert(who);
    }
    let policy = write_file(c, "gated.hcl", GATED);
    ok(&c.cli(1, &["policy", "write", "prod-db", &policy]));
    ok(&c.cli(1, &["policy", "attach", "prod-db", "--identity", "alice"]));
    ok(&c.cli(
        1,
        &[
            "group",
            "write",
            "sre-leads",
            "--members",
            "alice,bob,carol",
        ],
    ));
    ok(&c.cli(1, &["kv", "put", "prod/db/main", "password=hunter2"]));
}

fn request(c: &Cluster, ttl: &str) -> String {
    let v = c.json_as(
        "alice",
        2,
        &[
            "breakglass",
            "request",
            "prod/db/main",
            "--reason",
            "incident 42: primary down",
            "--ttl",
            ttl,
        ],
    );
    v["id"].as_str().expect("an id").to_string()
}

fn status(c: &Cluster, id: &str) -> Value {
    c.json_as("alice", 1, &["breakglass", "show", id])
}

/// Asks holder `via` directly for its share of prod/db/main v1 under `grant`/`use_id`.
fn ask_holder(
    c: &Cluster,
    via: u64,
    grant: &str,
    use_id: &str,
    min_index: u64,
) -> Result<(), Error> {
    release_under(c, via, 1, grant, use_id, min_index)
}

/// Asks holder `via` directly for its share of prod/db/main `version` under `grant`/`use_id`.
fn release_under(
    c: &Cluster,
    via: u64,
    version: u64,
    grant: &str,
    use_id: &str,
    min_index: u64,
) -> Result<(), Error> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.sdk("alice", via).await;
        let reader = tessera_client::crypto::seal::SealingKey::generate();
        let reply = client
            .kv_rpc()
            .release_shares(ReleaseSharesRequest {
                reader_key: reader.public().0.to_vec(),
                items: vec![ReleaseItem {
                    path: "prod/db/main".into(),
                    version,
                    min_index,
                    grant: grant.into(),
                    use_id: use_id.into(),
                    ..Default::default()
                }],
            })
            .await
            .map_err(|s| Error::from_status("node", s))?
            .into_inner();
        match reply.items[0].refusal.clone() {
            None => Ok(()),
            Some(r) => Err(Error::from_refusal(r)),
        }
    })
}

fn audit(c: &Cluster, id: u64) -> String {
    std::fs::read_to_string(c.node(id).data_dir.join("audit.log")).unwrap()
}

#[test]
fn a_gated_secret_opens_only_under_an_approved_grant_checked_by_every_holder() {
    let mut c = gated_cluster();

    // Without a grant: refused to alice and to root alike, and the error says what to do.
    for who in ["alice", "admin"] {
        let out = c.cli_as(who, 1, &["kv", "get", "prod/db/main"]);
        let err = fails(&out);
        assert_eq!(out.status.code(), Some(3), "{who}: {err}");
        assert!(
            err.contains("break-glass") && err.contains("tessera breakglass request prod/db/main"),
            "{who}: {err}"
        );
    }
    // Metadata and writes are not gated.
    ok(&c.cli_as("alice", 1, &["kv", "metadata", "get", "prod/db/main"]));

    // Malformed requests: nothing stored.
    let refused = |who: &str, reason: &str, ttl: &str| {
        fails(&c.cli_as(
            who,
            1,
            &[
                "breakglass",
                "request",
                "prod/db/main",
                "--reason",
                reason,
                "--ttl",
                ttl,
            ],
        ))
    };
    for (who, reason, ttl, says) in [
        ("alice", " ", "10m", "reason"),
        ("alice", "x", "2h", "1h"),
        ("dave", "x", "10m", "permission denied"),
    ] {
        let err = refused(who, reason, ttl);
        assert!(err.contains(says), "{who} {reason:?} {ttl}: {err}");
    }
    let none = c.json(1, &["breakglass", "list"]);
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");

    let id = request(&c, "10m");
    assert_eq!(status(&c, &id)["status"], "pending");

    // The requester never approves her own request, though she is in sre-leads.
    let err = fails(&c.cli_as("alice", 1, &["breakglass", "approve", &id]));
    assert!(err.contains("own"), "{err}");
    // Someone outside every factor cannot decide (nor even see the request).
    let err = fails(&c.cli_as("dave", 1, &["breakglass", "approve", &id]));
    assert!(err.contains("may see"), "{err}");
    // Unknown id.
    let err = fails(&c.cli_as("bob", 1, &["breakglass", "approve", "00ff"]));
    assert!(err.contains("no break-glass request"), "{err}");

    // bob's approval alone: no read, and no use can be committed.
    let to_approve = c.json_as("bob", 3, &["breakglass", "list", "--to-approve"]);
    assert_eq!(to_approve[0]["id"], id.as_str(), "{to_approve}");
    ok(&c.cli_as(
        "bob",
        3,
        &["breakglass", "approve", &id, "--comment", "seen"],
    ));
    // An approver counts once.
    let err = fails(&c.cli_as("bob", 3, &["breakglass", "approve", &id]));
    assert!(err.contains("already decided"), "{err}");
    ok(&c.cli_as("carol", 2, &["breakglass", "approve", &id]));
    // Both SRE approvals are in; security's is not: every holder refuses, asked directly.
    let s = status(&c, &id);
    assert_eq!(s["status"], "pending", "{s}");
    assert!(
        s["waiting_for"].as_str().unwrap().contains("security"),
        "{s}"
    );
    let err = fails(&c.cli_as("alice", 1, &["kv", "get", "prod/db/main"]));
    assert!(err.contains("break-glass"), "{err}");
    for n in 1..=3 {
        let e = ask_holder(&c, n, &id, &"ab".repeat(16), 0).unwrap_err();
        assert!(e.to_string().contains("not approved"), "node {n}: {e}");
    }

    ok(&c.cli_as(
        "ciso",
        1,
        &["breakglass", "approve", &id, "--comment", "go"],
    ));
    assert_eq!(status(&c, &id)["status"], "active");

    // The read succeeds with the grant (found by itself), and spends one use of two.
    let v = c.json_as("alice", 2, &["kv", "get", "prod/db/main"]);
    assert_eq!(v["data"]["password"], "hunter2", "{v}");
    // The version was seen in an emergency: rotation is required, named with the grant.
    let rotate = v["rotate_required"].as_str().unwrap_or_default();
    assert!(rotate.contains(&id) && rotate.contains("alice"), "{v}");
    assert_eq!(status(&c, &id)["uses_committed"], 1);
    // Root still has no grant of its own.
    assert!(fails(&c.cli(1, &["kv", "get", "prod/db/main"])).contains("break-glass"));
    // The events, summed over the nodes that served them; rotation counted on every node.
    let events = |event: &str| -> f64 {
        (1..=3)
            .filter_map(|n| {
                c.metric(
                    n,
                    &format!("tessera_breakglass_events_total{{event=\"{event}\"}}"),
                )
            })
            .sum()
    };
    assert_eq!(events("requested"), 1.0);
    assert_eq!(events("approved"), 3.0);
    assert_eq!(events("activated"), 1.0);
    assert_eq!(events("released"), 2.0, "t = 2 holders released");
    for n in 1..=3 {
        assert_eq!(c.metric(n, "tessera_secrets_rotate_required"), Some(1.0));
    }

    // Holders check the use themselves: a use never committed, or one already served by them.
    for n in 1..=3 {
        let e = ask_holder(&c, n, &id, &"cd".repeat(16), 0).unwrap_err();
        assert!(e.to_string().contains("not committed"), "node {n}: {e}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let used = rt.block_on(async {
        c.sdk("alice", 1)
            .await
            .breakglass_use(&id, 1, Vec::new())
            .await
            .unwrap()
    });
    assert!(ask_holder(&c, 1, &id, &used.use_id, used.index).is_ok());
    let e = ask_holder(&c, 1, &id, &used.use_id, used.index).unwrap_err();
    assert!(e.to_string().contains("already served"), "{e}");
    // A holder restarted between uses does not forget the ones it served.
    c.stop(1);
    c.start_node(1);
    c.wait_listening(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match ask_holder(&c, 1, &id, &used.use_id, used.index) {
            Err(e) if e.to_string().contains("already served") => break,
            Err(Error::Unavailable { .. } | Error::Connect { .. }) => {}
            other => panic!("a restarted holder answered {other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 never came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another identity cannot use alice's grant.
    let stolen = rt.block_on(async {
        let client = c.sdk("bob", 2).await;
        client.kv_get_under("prod/db/main", None, Some(&used)).await
    });
    assert!(stolen.is_err(), "bob read under alice's grant");

    // Both uses are committed: a third is refused, and so is a read.
    let err = fails(&c.cli_as("alice", 1, &["kv", "get", "prod/db/main", "--grant", &id]));
    assert!(err.contains("use"), "{err}");
    assert_eq!(status(&c, &id)["status"], "spent");

    // Each holder that released wrote an audit line naming grant, use, reason, approvers.
    let released: Vec<String> = (1..=3)
        .flat_map(|n| audit(&c, n).lines().map(String::from).collect::<Vec<_>>())
        .filter(|l| l.contains("kv.release_share") && l.contains(&id) && l.contains("\"ok\""))
        .collect();
    assert!(released.len() >= 2, "{released:?}");
    for l in &released {
        for needle in ["incident 42", "alice", "bob", "carol", "ciso", "use "] {
            assert!(l.contains(needle), "{needle} missing: {l}");
        }
    }

    // The offline proof: verifies with the CA certificate only, and not with a byte changed.
    let proof = ok(&c.cli_as("alice", 1, &["breakglass", "show", &id, "--proof"]));
    let bundle = write_file(&c, "proof.json", &proof);
    let verify = |file: &str| {
        Command::new(tessera_bin())
            .args(["breakglass", "verify", file, "--ca-cert"])
            .arg(c.dir.join("ca.crt"))
            .output()
            .unwrap()
    };
    let good = ok(&verify(&bundle));
    assert!(good.contains("ciso"), "{good}");
    let changed = write_file(
        &c,
        "changed.json",
        &proof.replacen("incident 42", "incident 43", 1),
    );
    let err = fails(&verify(&changed));
    assert!(err.contains("does not verify"), "{err}");

    // Root cannot edit the gate away without a grant (below: with one).
    let open = write_file(
        &c,
        "open.hcl",
        "path \"prod/db/*\" { capabilities = [\"read\"] }\n",
    );
    let err = fails(&c.cli(1, &["policy", "write", "prod-db", &open]));
    assert!(err.contains("break_glass"), "{err}");
    let err = fails(&c.cli(1, &["policy", "delete", "prod-db"]));
    assert!(err.contains("break_glass"), "{err}");
    let err = fails(&c.cli(1, &["group", "delete", "sre-leads"]));
    assert!(err.contains("break-glass"), "{err}");

    // A new version clears the rotation mark; the old one keeps it. `kv list --rotate-required`
    // finds what is left to rotate at any depth, and nothing else.
    ok(&c.cli(1, &["kv", "put", "prod/web/key", "k=v"]));
    let m = c.json(1, &["kv", "metadata", "get", "prod/db/main"]);
    assert!(m["versions"][0]["rotate_required"].is_string(), "{m}");
    let left = |c: &Cluster| c.json(1, &["kv", "list", "prod/", "--rotate-required"]);
    assert_eq!(left(&c), serde_json::json!(["db/main"]));
    assert_eq!(
        c.json(1, &["kv", "list", "prod/"]),
        serde_json::json!(["db/", "web/"])
    );
    ok(&c.cli(1, &["kv", "put", "prod/db/main", "password=rotated"]));
    let m = c.json(1, &["kv", "metadata", "get", "prod/db/main"]);
    assert!(m["versions"][1]["rotate_required"].is_null(), "{m}");
    assert_eq!(left(&c), serde_json::json!([]));

    // How long a request waits is a setting (replicated), refused outside 1m to 168h.
    let err = fails(&c.cli(
        1,
        &["operator", "config", "set", "breakglass.request_ttl", "30s"],
    ));
    assert!(err.contains("between 1m and 168h"), "{err}");
    ok(&c.cli(
        1,
        &["operator", "config", "set", "breakglass.request_ttl", "2h"],
    ));
    let id = request(&c, "10m");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(async { c.sdk("alice", 1).await.breakglass_show(&id, false).await })
        .unwrap();
    assert_eq!(r.pending_until - r.requested_at, 7200 * 1_000_000_000);

    // Root changes the gate under a grant of the gate's own factors; the change spends it.
    let v = c.json(
        1,
        &[
            "breakglass",
            "request",
            "sys/policies/prod-db",
            "--capability",
            "update",
            "--reason",
            "retire the prod-db gate",
        ],
    );
    let edit = v["id"].as_str().unwrap().to_string();
    let err = fails(&c.cli(1, &["policy", "write", "prod-db", &open, "--grant", &edit]));
    assert!(err.contains("not approved"), "{err}");
    for (who, via) in [("bob", 1), ("carol", 2), ("ciso", 3)] {
        ok(&c.cli_as(who, via, &["breakglass", "approve", &edit]));
    }
    let err = fails(&c.cli_as(
        "alice",
        1,
        &["policy", "write", "prod-db", &open, "--grant", &edit],
    ));
    assert!(err.contains("permission denied"), "{err}");
    ok(&c.cli(2, &["policy", "write", "prod-db", &open, "--grant", &edit]));
    let shown = c.json(1, &["breakglass", "show", &edit]);
    assert_eq!(shown["uses"].as_array().unwrap().len(), 1, "{shown}");
    // The gate is gone: alice reads with her policy alone.
    let out = c.cli_as("alice", 3, &["kv", "get", "prod/db/main"]);
    assert!(ok(&out).contains("rotated"));
}

#[test]
fn a_denial_vetoes_a_revocation_ends_and_a_grant_expires_by_each_holders_clock() {
    let c = gated_cluster();

    // One eligible denial closes the request for good.
    let denied = request(&c, "10m");
    ok(&c.cli_as("bob", 1, &["breakglass", "approve", &denied]));
    ok(&c.cli_as(
        "ciso",
        1,
        &["breakglass", "deny", &denied, "--reason", "not an incident"],
    ));
    let s = status(&c, &denied);
    assert_eq!(
        (s["status"].as_str(), s["closed_by"].as_str()),
        (Some("denied"), Some("ciso"))
    );
    let err = fails(&c.cli_as("carol", 1, &["breakglass", "approve", &denied]));
    assert!(err.contains("denied"), "{err}");
    assert!(fails(&c.cli_as("alice", 1, &["kv", "get", "prod/db/main"])).contains("break-glass"));

    // A grant revoked by its requester is refused by every holder.
    let revoked = request(&c, "10m");
    for who in ["bob", "carol", "ciso"] {
        ok(&c.cli_as(who, 1, &["breakglass", "approve", &revoked]));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let used = rt.block_on(async {
        c.sdk("alice", 1)
            .await
            .breakglass_use(&revoked, 1, Vec::new())
            .await
            .unwrap()
    });
    ok(&c.cli_as("alice", 1, &["breakglass", "revoke", &revoked]));
    let revoked_at = c.json(1, &["status"])["commit_index"].as_u64().unwrap();
    for n in 1..=3 {
        let e = ask_holder(&c, n, &revoked, &used.use_id, revoked_at).unwrap_err();
        assert!(e.to_string().contains("revoked"), "node {n}: {e}");
    }

    // A short grant ends: after it, every holder refuses by its own clock.
    let short = request(&c, "3s");
    for who in ["bob", "carol", "ciso"] {
        ok(&c.cli_as(who, 1, &["breakglass", "approve", &short]));
    }
    let used = rt.block_on(async {
        c.sdk("alice", 1)
            .await
            .breakglass_use(&short, 1, Vec::new())
            .await
            .unwrap()
    });
    std::thread::sleep(Duration::from_secs(4));
    for n in 1..=3 {
        let e = ask_holder(&c, n, &short, &used.use_id, used.index).unwrap_err();
        assert!(e.to_string().contains("ended"), "node {n}: {e}");
    }
    assert_eq!(status(&c, &short)["status"], "expired");
    // With no webhook, the leader that saw the expiry still writes its audit line.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let expired = |c: &Cluster| {
        (1..=3)
            .map(|n| audit(c, n).matches(&format!("{short}.expired")).count())
            .sum::<usize>()
    };
    while expired(&c) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no audit line for the expiry"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The forged-approval attack: node 1 (a `byzantine-test` build that leads) writes a grant
/// into every node's state with an approval the approver never signed (it carries another
/// identity's real signature), past every check on apply. The state then says "active", a use
/// commits, and still every honest holder refuses, naming the forged approval.
#[test]
fn a_forged_approval_written_into_every_nodes_state_releases_nothing() {
    let (mut c, forge_dir) = byzantine_leader();
    set_gate(&c);
    let id = request(&c, "10m");
    // Real approvals from bob (served by node 1, whose signature the forger will reuse) and
    // carol; the security factor is still missing.
    ok(&c.cli_as("bob", 1, &["breakglass", "approve", &id]));
    ok(&c.cli_as("carol", 2, &["breakglass", "approve", &id]));
    let answer = forge_leading(
        &mut c,
        &forge_dir,
        "bg",
        &format!("forge-approval {id} ciso"),
    );
    assert!(
        answer.starts_with("index=") && answer.ends_with("error="),
        "{answer}"
    );
    let index: u64 = answer["index=".len()..]
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Every node's state now claims the grant is active (the injection applied everywhere).
    for n in 1..=3 {
        let s = c.json_as("alice", n, &["breakglass", "show", &id]);
        assert_eq!(s["status"], "active", "node {n}: {s}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let used = rt.block_on(async {
        c.sdk("alice", 2)
            .await
            .breakglass_use(&id, 1, Vec::new())
            .await
            .unwrap()
    });
    assert!(used.index > index);
    // Every honest holder checks the signatures itself and refuses, naming the forgery.
    for n in [2, 3] {
        let e = ask_holder(&c, n, &id, &used.use_id, used.index).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("evidence does not hold") && e.contains("approval by ciso"),
            "node {n}: {e}"
        );
        assert!(
            audit(&c, n).lines().any(|l| l.contains("kv.release_share")
                && l.contains(&id)
                && l.contains("approval by ciso")),
            "node {n}'s audit does not name the forged approval"
        );
    }
    // So the read fails: one share (the forger's own) is below the threshold.
    let err = fails(&c.cli_as("alice", 2, &["kv", "get", "prod/db/main", "--grant", &id]));
    assert!(!err.contains("hunter2"), "{err}");
}

const GATED_CA: &str = r#"
path "keys/prod-ca" {
  capabilities = ["sign", "read"]
  break_glass {
    max_ttl = "1h"
    factor "sre" { approvers = ["group:sre-leads"] approvals = 1 }
  }
}
"#;

/// The production SSH CA behind break-glass: no certificate without a grant, root included;
/// with one, a certificate a real sshd accepts; one signature per use.
#[test]
fn a_gated_ssh_ca_signs_only_under_a_grant_and_sshd_accepts_the_certificate() {
    let c = Cluster::start(Opts::default());
    for who in ["alice", "bob"] {
        c.client_cert(who);
    }
    ok(&c.cli(1, &["key", "create", "prod-ca", "--purpose", "ssh-user-ca"]));
    let policy = write_file(&c, "ca.hcl", GATED_CA);
    ok(&c.cli(1, &["policy", "write", "prod-ca", &policy]));
    ok(&c.cli(1, &["policy", "attach", "prod-ca", "--identity", "alice"]));
    ok(&c.cli(1, &["group", "write", "sre-leads", "--members", "bob"]));
    let sshd = Sshd::keys(&c.dir.join("ssh"));
    let user_pub = sshd.user_pub();
    let cert = c.dir.join("ssh").join("id-cert.pub");
    let sign = |who: &str| {
        c.cli_as(
            who,
            1,
            &[
                "ssh",
                "sign",
                "prod-ca",
                "--public-key",
                user_pub.to_str().unwrap(),
                "--principals",
                "root",
                "--ttl",
                "10m",
                "--out",
                cert.to_str().unwrap(),
            ],
        )
    };
    for who in ["admin", "alice"] {
        let out = sign(who);
        let err = fails(&out);
        assert_eq!(out.status.code(), Some(3), "{who}: {err}");
        assert!(
            err.contains("break-glass") && err.contains("--capability sign"),
            "{who}: {err}"
        );
    }
    assert!(!cert.exists());

    let id = c.json_as(
        "alice",
        2,
        &[
            "breakglass",
            "request",
            "keys/prod-ca",
            "--capability",
            "sign",
            "--reason",
            "INC-7: root login to the database hosts",
            "--ttl",
            "10m",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&c.cli_as("bob", 3, &["breakglass", "approve", &id]));
    ok(&sign("alice"));
    // `uses` defaults to 1: the grant is spent.
    let err = fails(&sign("alice"));
    assert!(err.contains("no active grant"), "{err}");
    // The grant's record lists what it signed (the sign request's digest).
    let record = c.json_as("alice", 1, &["breakglass", "show", &id]);
    let spent = record["uses"][0]["target"].as_str().unwrap_or_default();
    assert!(spent.starts_with("sign request "), "{record}");

    let ca_pub = ok(&c.cli(2, &["key", "public", "prod-ca", "--format", "openssh"]));
    let sshd = sshd.start(&ca_pub);
    let login = sshd.login(&cert);
    assert!(
        login.status.success(),
        "sshd refused the certificate signed under the grant: {}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), "logged-in");
}

/// The flow is Raft commands and holder checks, so it survives the leader's loss between any
/// two steps: the request, the approvals, and the read each meet a different leader.
#[test]
fn the_flow_survives_a_leader_kill_between_request_and_approval_and_before_the_read() {
    let mut c = gated_cluster();
    let id = request(&c, "10m");
    let first = c.wait_leader(Duration::from_secs(30));
    c.kill9(first);
    let second = c.wait_leader(Duration::from_secs(30));
    assert_ne!(first, second);
    let live = (1..=3).find(|n| *n != first).unwrap();
    for who in ["bob", "carol", "ciso"] {
        ok(&c.cli_as(who, live, &["breakglass", "approve", &id]));
    }
    c.start_node(first);
    c.wait_listening(first);
    c.kill9(second);
    let third = c.wait_leader(Duration::from_secs(30));
    assert_ne!(third, second);
    let live = (1..=3).find(|n| *n != second).unwrap();
    // The holders still up confirm with the new leader, check the grant and release.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.cli_as(
            "alice",
            live,
            &[
                "kv",
                "get",
                "prod/db/main",
                "--format",
                "json",
                "--grant",
                &id,
            ],
        );
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["data"]["password"], "hunter2", "{v}");
            break;
        }
        // A read that failed after its use was committed has spent it (uses = 2 here).
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            std::time::Instant::now() < deadline && !err.contains("no use is left"),
            "{err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The gated cluster with every node's `[webhook]` naming `hook`, signed with `key`.
fn webhook_cluster(key: &[u8]) -> (Cluster, Receiver) {
    let mut c = Cluster::init(Opts::default());
    let hook = Receiver::start(&c.host, key);
    let secret = c.dir.join("webhook.secret");
    std::fs::write(&secret, key).unwrap();
    for id in 1..=3 {
        let config = c.node(id).config.clone();
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[webhook]\nurl = {:?}\nsecret_file = {:?}\ntimeout_ms = 2000\n",
            hook.url,
            secret.display().to_string()
        ));
        std::fs::write(&config, text).unwrap();
        c.start_node(id);
    }
    c.wait_leader(Duration::from_secs(30));
    c.wait_ready();
    set_gate(&c);
    (c, hook)
}

fn approve_all(c: &Cluster, id: &str) {
    for (who, via) in [("bob", 1), ("carol", 2), ("ciso", 3)] {
        ok(&c.cli_as(who, via, &["breakglass", "approve", id]));
    }
}

#[test]
fn every_event_reaches_the_webhook_once_signed_and_none_is_lost_when_the_leader_dies() {
    let key = b"webhook-key-for-the-test-0123456789";
    let (mut c, hook) = webhook_cluster(key);
    let term = |c: &mut Cluster| {
        let leader = c.wait_leader(Duration::from_secs(10));
        (leader, c.metric(leader, "tessera_raft_term"))
    };
    let before = term(&mut c);

    // One grant through its whole life, and one that expires.
    let id = request(&c, "30m");
    approve_all(&c, &id);
    let out = c.cli_as("alice", 2, &["kv", "get", "prod/db/main", "--grant", &id]);
    assert!(ok(&out).contains("hunter2"));
    ok(&c.cli_as("alice", 3, &["breakglass", "revoke", &id]));
    let use_id = status(&c, &id)["uses"][0]["use_id"]
        .as_str()
        .unwrap()
        .to_string();
    let short = request(&c, "3s");
    approve_all(&c, &short);

    let mut expected: Vec<(String, &str)> = vec![(format!("{id}.requested"), "requested")];
    for i in 0..3 {
        expected.push((format!("{id}.decision.{i}"), "approved"));
    }
    expected.push((format!("{id}.activated"), "activated"));
    expected.push((format!("{id}.use.{use_id}"), "used"));
    expected.push((format!("{id}.revoked"), "revoked"));
    expected.push((format!("{short}.requested"), "requested"));
    for i in 0..3 {
        expected.push((format!("{short}.decision.{i}"), "approved"));
    }
    expected.push((format!("{short}.activated"), "activated"));
    expected.push((format!("{short}.expired"), "expired"));
    for (eid, _) in &expected {
        assert!(
            hook.wait_for(eid, Duration::from_secs(30)),
            "{eid} never arrived; got {:?}",
            hook.deliveries().iter().map(|d| &d.id).collect::<Vec<_>>()
        );
    }
    // Time for a duplicate to show up, if the cluster were to send one.
    std::thread::sleep(Duration::from_secs(2));
    let got = hook.deliveries();
    let ids = got.iter().map(|d| &d.id).collect::<Vec<_>>();
    // With one leader throughout, every event exactly once. (A leader change in between, which
    // a loaded machine can bring, may resend what the old leader had not marked: same ids.)
    let stable = term(&mut c) == before;
    if stable {
        assert_eq!(
            got.len(),
            expected.len(),
            "every event exactly once: {ids:?}"
        );
    } else {
        eprintln!("the leader changed during the flow; duplicates allowed: {ids:?}");
    }
    assert!(
        got.iter().all(|d| expected.iter().any(|(e, _)| e == &d.id)),
        "an event nobody made: {ids:?}"
    );
    for (eid, event) in &expected {
        let d = got.iter().find(|d| &d.id == eid).unwrap();
        assert!(d.valid_hmac, "{eid}: bad HMAC");
        assert_eq!(d.body["id"], eid.as_str());
        assert_eq!(d.body["event"], *event, "{eid}");
        assert_eq!(d.body["path"], "prod/db/main");
        assert_eq!(d.body["requester"], "alice");
        assert_eq!(d.body["reason"], "incident 42: primary down");
    }
    let by = |eid: String| got.iter().find(|d| d.id == eid).unwrap().body.clone();
    assert_eq!(by(format!("{id}.decision.0"))["actor"], "bob");
    assert_eq!(by(format!("{id}.revoked"))["actor"], "alice");
    assert_eq!(by(format!("{id}.use.{use_id}"))["target"], "version 1");
    // The leader that saw the expiry wrote its audit line and counted it.
    assert!((1..=3).any(|n| audit(&c, n).contains("\"breakglass.expired\"")));
    if stable {
        assert_eq!(
            c.metric(before.0, "tessera_breakglass_webhook_deliveries_total"),
            Some(expected.len() as f64)
        );
    }

    // The receiver is down: the leader retries with backoff and counts each failure. The
    // leader dies before any attempt succeeds; the next leader delivers, same id.
    hook.failing.store(true, Ordering::Relaxed);
    let third = request(&c, "30m");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hook.refused.load(Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "no retry");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leader = c.wait_leader(Duration::from_secs(10));
    assert!(
        c.metric(leader, "tessera_breakglass_webhook_failures_total")
            .unwrap_or(0.0)
            >= 2.0
    );
    c.kill9(leader);
    hook.failing.store(false, Ordering::Relaxed);
    let eid = format!("{third}.requested");
    assert!(
        hook.wait_for(&eid, Duration::from_secs(40)),
        "lost across the leader change"
    );
    let copies: Vec<_> = hook
        .deliveries()
        .into_iter()
        .filter(|d| d.id == eid)
        .collect();
    assert!(copies
        .iter()
        .all(|d| d.valid_hmac && d.body["request"] == third.as_str()));

    // Canary: no node logged the HMAC key or the URL's path (a credential for many receivers),
    // though each failed attempt was logged.
    let key = std::str::from_utf8(key).unwrap();
    let logs: Vec<String> = (1..=3)
        .map(|n| std::fs::read_to_string(&c.node(n).log).unwrap())
        .collect();
    for (n, log) in logs.iter().enumerate() {
        assert!(!log.contains(key), "node {} logged the webhook key", n + 1);
        assert!(
            !log.contains(PATH_TOKEN),
            "node {} logged the webhook path",
            n + 1
        );
    }
    assert!(logs.iter().any(|l| l.contains("webhook delivery failed")));
}

#[test]
fn one_use_is_one_read_even_when_disjoint_holder_sets_of_six_are_asked() {
    // Six holders in three regions, t = 3: two disjoint sets of three could each release.
    let c = Cluster::start(Opts {
        nodes: 6,
        regions: "a,b,c",
        ..Default::default()
    });
    for who in ["alice", "bob"] {
        c.client_cert(who);
    }
    let policy = write_file(
        &c,
        "one-use.hcl",
        r#"
path "prod/db/*" {
  capabilities = ["read", "create", "update"]
  break_glass {
    max_ttl = "1h"
    uses    = 1
    factor "sre" { approvers = ["identity:bob"] approvals = 1 }
  }
}
"#,
    );
    ok(&c.cli(1, &["policy", "write", "one-use", &policy]));
    ok(&c.cli(1, &["policy", "attach", "one-use", "--identity", "alice"]));
    ok(&c.cli(1, &["kv", "put", "prod/db/main", "password=old"]));
    ok(&c.cli(1, &["kv", "put", "prod/db/main", "password=new"]));
    let id = request(&c, "30m");
    ok(&c.cli_as("bob", 3, &["breakglass", "approve", &id]));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let alice = rt.block_on(c.sdk("alice", 1));
    let used = rt
        .block_on(alice.breakglass_use(&id, 2, Vec::new()))
        .unwrap();
    // The first set releases version 2 under the use.
    for n in 1..=3 {
        release_under(&c, n, 2, &id, &used.use_id, used.index)
            .unwrap_or_else(|e| panic!("node {n}: {e}"));
    }
    // The second set will not release another version under it: the use is bound to v2.
    for n in 4..=6 {
        let e = release_under(&c, n, 1, &id, &used.use_id, used.index).unwrap_err();
        assert!(
            e.to_string()
                .contains("committed for version 2, not version 1"),
            "node {n}: {e}"
        );
    }
    // Nor a second use: none can be committed, and one never committed is refused by each.
    let e = rt
        .block_on(alice.breakglass_use(&id, 1, Vec::new()))
        .unwrap_err();
    assert!(e.to_string().contains("is spent: no use is left"), "{e}");
    assert_eq!(status(&c, &id)["uses_committed"], 1);
    for n in 4..=6 {
        let e = release_under(&c, n, 1, &id, &"ef".repeat(16), used.index).unwrap_err();
        assert!(e.to_string().contains("not committed"), "node {n}: {e}");
    }
    // And each of the first set serves the use once.
    for n in 1..=3 {
        let e = release_under(&c, n, 2, &id, &used.use_id, used.index).unwrap_err();
        assert!(e.to_string().contains("already served"), "node {n}: {e}");
    }
}
