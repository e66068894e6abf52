//! Failures: `kill -9` of the leader, of every node, and a node that misses so much that it
//! must catch up by snapshot. No acknowledged write may be lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_tests::{Cluster, Opts};

fn policy_text(i: usize) -> String {
    format!("path \"w/{i}/*\" {{\n  capabilities = [\"read\"]\n}}\n")
}

/// Writes policies `prefix-0..n` through the SDK via `via`, retrying each (a failover may be in
/// progress) for up to 20 s. Returns the names acknowledged.
fn write_many(c: &Cluster, via: u64, prefix: &str, n: usize) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.sdk("admin", via).await;
        let mut acked = Vec::new();
        for i in 0..n {
            let name = format!("{prefix}-{i}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match client.write_policy(&name, &policy_text(i)).await {
                    Ok(_) => {
                        acked.push(name);
                        break;
                    }
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("retrying {name}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("write {name} never succeeded: {e}"),
                }
            }
        }
        acked
    })
}

fn policies_on(c: &Cluster, via: u64) -> BTreeSet<String> {
    c.json(via, &["policy", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn wait_applied_equal(c: &mut Cluster, ids: &[u64], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = c.status(ids[0]) {
            let nodes = s["nodes"].as_array().unwrap();
            let applied: Vec<u64> = ids
                .iter()
                .map(|id| {
                    nodes.iter().find(|n| n["id"] == *id).unwrap()["last_applied"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            if nodes
                .iter()
                .filter(|n| ids.contains(&n["id"].as_u64().unwrap()))
                .all(|n| n["reachable"] == true)
                && applied.iter().all(|a| *a == applied[0])
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nodes {ids:?} did not converge");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn leader_kill9_elects_a_new_leader_and_loses_nothing() {
    let mut c = Cluster::start(Opts::default());
    let old = c.wait_leader(Duration::from_secs(30));
    let survivor = (1..=3).find(|id| *id != old).unwrap();
    let mut acked = write_many(&c, survivor, "before", 10);

    c.kill9(old);
    let killed_at = Instant::now();
    let new = c.wait_leader(Duration::from_secs(15));
    let took = killed_at.elapsed();
    assert_ne!(new, old);
    assert!(took < Duration::from_secs(10), "new leader took {took:?}");

    acked.extend(write_many(&c, survivor, "during", 10));

    c.start_node(old);
    wait_applied_equal(&mut c, &[1, 2, 3], Duration::from_secs(30));
    let on_old = policies_on(&c, old);
    for name in &acked {
        assert!(
            on_old.contains(name),
            "acknowledged write {name} missing on restarted node {old}"
        );
    }
}

#[test]
fn kill9_of_every_node_keeps_every_acknowledged_write() {
    let mut c = Cluster::start(Opts::default());
    let acked = write_many(&c, 2, "durable", 15);
    for id in 1..=3 {
        c.kill9(id);
    }
    for id in 1..=3 {
        c.start_node(id);
    }
    c.wait_leader(Duration::from_secs(30));
    for id in 1..=3 {
        // A leader can be elected by two nodes while the third is still opening its store.
        c.wait_listening(id);
        let have = policies_on(&c, id);
        for name in &acked {
            assert!(
                have.contains(name),
                "{name} lost on node {id} after kill -9 of all nodes"
            );
        }
    }
}

#[test]
fn a_node_left_behind_catches_up_by_snapshot() {
    let mut c = Cluster::start(Opts {
        snapshot_every: Some(20),
        ..Opts::default()
    });
    let leader = c.wait_leader(Duration::from_secs(30));
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let via = (1..=3).find(|id| *id != behind).unwrap();
    c.stop(behind);
    let acked = write_many(&c, via, "while-down", 80);
    // The others took snapshots and compacted their logs (snapshots are built in the
    // background, so give them a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.metric(via, "tessera_raft_snapshot_index").unwrap_or(0.0) < 60.0 {
        assert!(
            Instant::now() < deadline,
            "no snapshot was taken on node {via}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    c.start_node(behind);
    wait_applied_equal(&mut c, &[1, 2, 3], Duration::from_secs(30));
    let installed = c
        .metric(behind, "tessera_raft_snapshots_installed")
        .unwrap_or(0.0);
    assert!(
        installed >= 1.0,
        "node {behind} caught up without a snapshot"
    );
    let have = policies_on(&c, behind);
    for name in &acked {
        assert!(have.contains(name), "{name} missing on node {behind}");
    }
}

/// A long-lived client reads in one round through the leader it last saw. When that leader
/// dies and another node takes a newer write, the same client must still read the newest
/// version: the dead leader's lease cannot vouch for anything, so the client finds out and
/// reads through the new leader.
#[test]
fn a_reader_that_knew_the_old_leader_still_reads_the_newest_version() {
    let mut c = Cluster::start(Opts::default());
    let old = c.wait_leader(Duration::from_secs(30));
    let home = (1..=3).find(|id| *id != old).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reader = rt.block_on(c.sdk("admin", home));
    let opts = tessera_client::PutOptions::default();
    rt.block_on(async {
        reader.kv_put("app/x", b"one", &opts).await.unwrap();
        let v = reader.kv_get("app/x", None).await.unwrap();
        assert_eq!((v.version, v.value.expose()), (1, &b"one"[..]));
    });

    c.kill9(old);
    let new = c.wait_leader(Duration::from_secs(15));
    assert_ne!(new, old);
    let writer = rt.block_on(c.sdk("admin", new));
    rt.block_on(async {
        let w = writer.kv_put("app/x", b"two", &opts).await.unwrap();
        for _ in 0..2 {
            let v = reader.kv_get("app/x", None).await.unwrap();
            assert_eq!(v.version, w.version);
            assert_eq!(v.value.expose(), &b"two"[..]);
            assert!(!v.stale);
        }
    });
}
