//! mTLS and authorization: who may talk to a node, and what each identity may do. Every
//! decision is made by the node that serves the request.

use std::process::Command;

use cluster_tests::{fails, ok, tessera_bin, Cluster, Opts};

#[test]
fn clients_without_a_certificate_or_from_another_ca_are_refused() {
    let c = Cluster::start(Opts::default());
    let addr = c.node(1).api_addr.clone();

    // No client certificate at all.
    let out = Command::new(tessera_bin())
        .args(["status", "--address", &addr, "--ca-cert"])
        .arg(c.dir.join("ca.crt"))
        .env_remove("TESSERA_CLIENT_CERT")
        .env_remove("TESSERA_CLIENT_KEY")
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("certificate"), "{err}");

    // A certificate from another cluster's CA.
    let other = tempfile::tempdir().unwrap();
    let init = Command::new(tessera_bin())
        .args([
            "operator",
            "init",
            "--nodes",
            "1",
            "--allow-unsafe-topology",
            "--dir",
        ])
        .arg(other.path())
        .output()
        .unwrap();
    ok(&init);
    let out = Command::new(tessera_bin())
        .args(["status", "--address", &addr, "--ca-cert"])
        .arg(c.dir.join("ca.crt"))
        .arg("--client-cert")
        .arg(other.path().join("admin.crt"))
        .arg("--client-key")
        .arg(other.path().join("admin.key"))
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("client certificates signed by this cluster's CA"),
        "{err}"
    );

    // The right CA still works.
    ok(&c.cli(1, &["status"]));
}

#[test]
fn a_node_certificate_for_the_wrong_node_id_is_refused() {
    let mut c = Cluster::init(Opts::default());
    // Node 2 is configured with node 3's certificate: it cannot pass as node 2.
    let cfg = std::fs::read_to_string(&c.node(2).config).unwrap();
    let forged = cfg
        .replace("node2.crt\"", "node3.crt\"")
        .replace("node2.key\"", "node3.key\"");
    std::fs::write(&c.node(2).config, forged).unwrap();
    for id in 1..=3 {
        c.start_node(id);
    }
    let leader = c.wait_leader(std::time::Duration::from_secs(30));
    assert_ne!(leader, 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let s = c.status(1).unwrap();
    let n2 = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 2)
        .unwrap()
        .clone();
    assert_eq!(
        n2["reachable"], false,
        "node 2 with node 3's certificate was trusted: {s}"
    );

    // A client that expects node2 at that address refuses the certificate, which names node3.
    let out = Command::new(tessera_bin())
        .args([
            "status",
            "--tls-server-name",
            "node2",
            "--address",
            &c.node(2).api_addr.clone(),
        ])
        .env("TESSERA_CACERT", c.dir.join("ca.crt"))
        .env("TESSERA_CLIENT_CERT", c.dir.join("admin.crt"))
        .env("TESSERA_CLIENT_KEY", c.dir.join("admin.key"))
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("name"), "{err}");
    // The others refuse the forged node's Raft messages (its election timer fires within a
    // few seconds of getting no heartbeats) and say so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&c.node(1).log).unwrap()
            + &std::fs::read_to_string(&c.node(3).log).unwrap();
        if log.contains("refused a Raft message") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no refusal logged");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn identities_without_policy_are_denied_and_deny_beats_allow() {
    let c = Cluster::start(Opts::default());
    c.client_cert("alice");
    c.client_cert("bob");

    // No policy: denied, even for status, on every node.
    for id in 1..=3 {
        let err = fails(&c.cli_as("alice", id, &["status"]));
        assert!(err.contains("permission denied"), "{err}");
    }

    let allow = c.dir.join("allow.hcl");
    std::fs::write(
        &allow,
        "path \"sys/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n",
    )
    .unwrap();
    let deny = c.dir.join("deny.hcl");
    std::fs::write(
        &deny,
        "path \"sys/policies/*\" {\n  capabilities = [\"deny\"]\n}\n",
    )
    .unwrap();
    ok(&c.cli(1, &["policy", "write", "readers", allow.to_str().unwrap()]));
    ok(&c.cli(
        1,
        &["policy", "write", "no-policies", deny.to_str().unwrap()],
    ));
    ok(&c.cli(1, &["group", "write", "ops", "--members", "alice,bob"]));
    ok(&c.cli(1, &["policy", "attach", "readers", "--group", "ops"]));
    ok(&c.cli(1, &["policy", "attach", "no-policies", "--identity", "bob"]));

    // alice: read allowed everywhere under sys/, but no write.
    for id in 1..=3 {
        ok(&c.cli_as("alice", id, &["status"]));
        ok(&c.cli_as("alice", id, &["policy", "read", "readers"]));
    }
    let err = fails(&c.cli_as(
        "alice",
        2,
        &["policy", "write", "mine", allow.to_str().unwrap()],
    ));
    assert!(err.contains("permission denied"), "{err}");

    // bob holds the same allow through the group, but his deny wins on sys/policies/*.
    ok(&c.cli_as("bob", 3, &["status"]));
    let err = fails(&c.cli_as("bob", 3, &["policy", "read", "readers"]));
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn malformed_policies_name_line_and_column_and_store_nothing() {
    let c = Cluster::start(Opts::default());
    let bad = c.dir.join("bad.hcl");
    std::fs::write(
        &bad,
        "path \"prod/*\" {\n  capabilities = [\"read\", \"raed\"]\n}\n",
    )
    .unwrap();
    let err = fails(&c.cli(2, &["policy", "write", "bad", bad.to_str().unwrap()]));
    assert!(err.contains("line 2, column"), "{err}");
    assert!(err.contains("raed"), "{err}");
    let list = c.json(1, &["policy", "list"]);
    assert!(
        !list.as_array().unwrap().iter().any(|n| n == "bad"),
        "{list}"
    );
}
