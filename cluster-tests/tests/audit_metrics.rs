//! The audit log (hash-chained, fsynced before every answer, and refusing when it cannot be
//! written) and the Prometheus metrics (valid for `promtool`).

use std::process::Command;

use cluster_tests::{fails, ok, tessera_bin, Cluster, Opts};

#[test]
fn audit_chain_verifies_and_a_changed_line_is_named() {
    let c = Cluster::start(Opts::default());
    for i in 0..3 {
        ok(&c.cli(1, &["group", "write", &format!("g{i}"), "--members", "a,b"]));
    }
    let fail = c.cli(1, &["policy", "read", "missing"]);
    fails(&fail);
    let audit = c.node(1).data_dir.join("audit.log");
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4);
    // Every line has the fields a reviewer needs.
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for k in [
            "time",
            "request_id",
            "identity",
            "operation",
            "path",
            "outcome",
            "remote_addr",
            "prev",
        ] {
            assert!(v.get(k).is_some(), "audit line lacks {k}: {l}");
        }
    }
    assert!(text.contains("\"operation\":\"group.write\""));
    assert!(text.contains("\"outcome\":\"error\""));
    let verify = Command::new(tessera_bin())
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    ok(&verify);

    // Change one character of a line in the middle and verification names the break (at the
    // next line, whose `prev` no longer matches).
    let copy = c.dir.join("audit-copy.log");
    let mut changed: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    let at = changed
        .iter()
        .position(|l| l.contains("group.write"))
        .unwrap();
    assert!(at + 1 < changed.len());
    changed[at] = changed[at].replacen("group.write", "group.wrote", 1);
    std::fs::write(&copy, changed.join("\n") + "\n").unwrap();
    let out = Command::new(tessera_bin())
        .args(["audit", "verify"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains(&format!("line {}", at + 2)), "{err}");
}

#[test]
fn a_node_that_cannot_write_its_audit_log_refuses_requests() {
    let mut c = Cluster::init(Opts::default());
    // Node 3's audit log is /dev/full: every write fails with ENOSPC.
    let cfg = std::fs::read_to_string(&c.node(3).config).unwrap();
    std::fs::write(
        &c.node(3).config,
        format!("audit_file = \"/dev/full\"\n{cfg}"),
    )
    .unwrap();
    for id in 1..=3 {
        c.start_node(id);
    }
    c.wait_leader(std::time::Duration::from_secs(30));
    let err = fails(&c.cli(3, &["status"]));
    assert!(err.contains("audit"), "{err}");
    let err = fails(&c.cli(3, &["group", "list"]));
    assert!(err.contains("audit"), "{err}");
    assert!(c.metric(3, "tessera_audit_failures_total").unwrap() >= 2.0);
    // The other nodes are unaffected.
    ok(&c.cli(1, &["status"]));

    // Law 4 on the release path: a share leaves a holder only after its audit line is durable.
    // Node 1 releases its share of a fresh secret; node 3, which cannot audit, sends nothing.
    ok(&c.cli(1, &["kv", "put", "a/x", "k=v"]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let release = |via: u64| {
        rt.block_on(async {
            let client = c.sdk("admin", via).await;
            let reader = tessera_crypto::seal::SealingKey::generate();
            client
                .kv_rpc()
                .release_shares(tessera_client::proto::ReleaseSharesRequest {
                    reader_key: reader.public().0.to_vec(),
                    items: vec![tessera_client::proto::ReleaseItem {
                        path: "a/x".into(),
                        version: 1,
                        ..Default::default()
                    }],
                })
                .await
        })
    };
    let released = release(1).unwrap().into_inner();
    assert!(
        released.items[0].refusal.is_none(),
        "{:?}",
        released.items[0]
    );
    assert!(!released.items[0].sealed_share.is_empty());
    let refused = release(3).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("audit"), "{refused:?}");
    assert!(
        c.metric(3, "tessera_share_releases_total{outcome=\"refused\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn every_node_serves_metrics_that_promtool_accepts() {
    let c = Cluster::start(Opts::default());
    ok(&c.cli(2, &["group", "write", "g", "--members", "x"]));
    for id in 1..=3 {
        ok(&c.cli(id, &["status"]));
    }
    for id in 1..=3 {
        let body = c.metrics(id);
        for m in [
            "tessera_raft_term",
            "tessera_raft_leader_id",
            "tessera_raft_commit_index",
            "tessera_raft_applied_index",
            "tessera_requests_total",
            "tessera_request_duration_seconds_bucket",
            "tessera_audit_failures_total",
        ] {
            assert!(body.contains(m), "node {id} lacks {m}");
        }
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus) must be installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool rejected node {id}'s metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The leader reports replication lag per peer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let leader = c.status(1).unwrap()["leader"].as_u64().unwrap();
        let body = c.metrics(leader);
        if body.contains("tessera_raft_replication_lag_entries{peer=") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the leader reports no replication lag:\n{body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
