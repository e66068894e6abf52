//! Clusters form by themselves from their configs, with exactly one leader, and a write made
//! through a follower is visible on every node.

use std::time::Duration;

use cluster_tests::{fails, ok, simple_policy, Cluster, Opts};

fn leaders_reported(c: &Cluster) -> Vec<u64> {
    let s = c.status(1).expect("status");
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "Leader")
        .map(|n| n["id"].as_u64().unwrap())
        .collect()
}

fn forms_with_one_leader_and_follower_writes_reach_everyone(n: u64, regions: &str) {
    let mut c = Cluster::start(Opts {
        nodes: n,
        regions,
        ..Opts::default()
    });
    let leader = c.wait_leader(Duration::from_secs(30));
    // Every node reachable, every node a voter, exactly one of them in the Leader state.
    let s = c.status(leader).unwrap();
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len() as u64, n);
    assert!(
        nodes
            .iter()
            .all(|x| x["reachable"] == true && x["role"] == "voter"),
        "{s}"
    );
    assert_eq!(leaders_reported(&c), vec![leader]);

    let follower = (1..=n).find(|id| *id != leader).unwrap();
    let policy = c.dir.join("p.hcl");
    std::fs::write(&policy, simple_policy("prod/app/*")).unwrap();
    ok(&c.cli(
        follower,
        &["policy", "write", "from-follower", policy.to_str().unwrap()],
    ));

    for id in 1..=n {
        let p = c.json(id, &["policy", "read", "from-follower"]);
        assert_eq!(p["policy"], simple_policy("prod/app/*"), "node {id}");
    }
    // And every node's own applied index has reached the write.
    let s = c.status(follower).unwrap();
    let applied: Vec<u64> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["last_applied"].as_u64().unwrap())
        .collect();
    assert!(
        applied.iter().all(|a| *a == applied[0] && *a > 0),
        "{applied:?}"
    );
}

#[test]
fn three_nodes_form_one_leader() {
    forms_with_one_leader_and_follower_writes_reach_everyone(3, "a,b,c");
}

#[test]
fn five_nodes_in_three_regions_form_one_leader() {
    forms_with_one_leader_and_follower_writes_reach_everyone(5, "eu,us,ap");
}

#[test]
fn status_and_members_show_regions_and_roles() {
    let c = Cluster::start(Opts {
        nodes: 3,
        regions: "eu,us,ap",
        ..Opts::default()
    });
    let m = c.json(2, &["operator", "members"]);
    let regions: Vec<&str> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["eu", "us", "ap"]);
    let table = ok(&c.cli(2, &["status"]));
    assert!(
        table.contains("REACHABLE") && table.contains("(leader)"),
        "{table}"
    );
}

#[test]
fn a_new_node_joins_as_a_voter_catches_up_and_can_be_removed() {
    let mut c = Cluster::start(Opts::default());
    let policy = c.dir.join("p.hcl");
    std::fs::write(&policy, simple_policy("x/*")).unwrap();
    ok(&c.cli(
        1,
        &["policy", "write", "before-join", policy.to_str().unwrap()],
    ));

    c.start_joiner(4, "d");
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
            "--region",
            "d",
        ],
    ));

    let m = c.json(1, &["operator", "members"]);
    let n4 = m
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 4)
        .expect("node 4 listed")
        .clone();
    assert_eq!(n4["role"], "voter");
    assert_eq!(n4["region"], "d");
    // The new node has everything written before it joined.
    let p = c.json(4, &["policy", "read", "before-join"]);
    assert_eq!(p["policy"], simple_policy("x/*"));

    // Adding it twice is refused; removing it works.
    let err = cluster_tests::fails(&c.cli(
        1,
        &[
            "operator",
            "members",
            "add",
            "--id",
            "4",
            "--api-addr",
            &addr,
            "--region",
            "d",
        ],
    ));
    assert!(err.contains("already a member"), "{err}");
    ok(&c.cli(3, &["operator", "members", "remove", "--id", "4"]));
    let m = c.json(1, &["operator", "members"]);
    assert_eq!(m.as_array().unwrap().len(), 3, "{m}");
    c.wait_leader(Duration::from_secs(10));
}

/// A real cluster's enrolment: the CA and the admin key on one machine, each node's keys made
/// on the node, and only public files (requests, certificates, the genesis) moved between them.
/// The cluster forms, serves, and checks the keys the CA attested; no node's directory holds
/// the CA key, the admin key or another node's keys; a request changed on the way is refused.
#[test]
fn a_cluster_enrolled_without_a_shared_directory_serves() {
    let mut c = Cluster::enrolled(Opts {
        nodes: 3,
        regions: "eu,us,ap",
        ..Opts::default()
    });
    for id in 1..=3 {
        c.start_node(id);
    }
    c.wait_leader(Duration::from_secs(30));
    c.wait_ready();
    for id in 1..=3u64 {
        let home = c.dir.join(format!("host{id}"));
        for entry in std::fs::read_dir(&home).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let own = name.starts_with(&format!("node{id}"));
            let public = ["ca.crt", "genesis.json"].contains(&name.as_str());
            assert!(own || public, "host{id} holds {name}");
        }
        let log = std::fs::read_to_string(&c.node(id).log).unwrap();
        assert!(
            !log.contains("sits beside"),
            "node {id} warned about the CA key"
        );
    }
    let t = c.json(1, &["operator", "topology"]);
    assert_eq!(t["threshold"], 2, "{t}");
    // The SDK deals only to keys the CA attested, so a write through it shows the attestation.
    ok(&c.cli(2, &["kv", "put", "app/db", "password=s3cret"]));
    for via in 1..=3 {
        let got = c.json(via, &["kv", "get", "app/db"]);
        assert_eq!(got["data"]["password"], "s3cret", "via {via}: {got}");
    }
    // A request whose region was changed after `node init` signed it is refused.
    let request = c.dir.join("host3").join("node3.request.json");
    let text = std::fs::read_to_string(&request)
        .unwrap()
        .replace("\"ap\"", "\"eu\"");
    let forged = c.dir.join("forged.request.json");
    std::fs::write(&forged, text).unwrap();
    let out = std::process::Command::new(cluster_tests::tessera_bin())
        .args(["operator", "ca", "sign", forged.to_str().unwrap(), "--dir"])
        .arg(&c.dir)
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("signature does not verify"), "{err}");
}
