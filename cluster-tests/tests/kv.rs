//! Secrets by verifiable secret sharing, on real clusters: no node ever holds a whole secret,
//! reads need `t` holders, bad shares are caught and routed around, every holder authorizes on
//! its own, destroyed versions are gone from every node, and malformed writes store nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use cluster_tests::{fails, ok, Cluster, Opts};
use serde_json::Value;

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn put(c: &Cluster, via: u64, path: &str, kv: &str) -> u64 {
    let out = c.json(via, &["kv", "put", path, kv]);
    out["version"].as_u64().unwrap()
}

fn get(c: &Cluster, via: u64, path: &str) -> Value {
    c.json(via, &["kv", "get", path])
}

/// (node, path, version, share index) for every share every node holds.
fn shares(c: &Cluster) -> Vec<(u64, String, u64, u64)> {
    let v = c.json(1, &["operator", "shares"]);
    let mut out = Vec::new();
    for n in v.as_array().unwrap() {
        assert_eq!(n["reachable"], true, "{n}");
        for s in n["shares"].as_array().unwrap() {
            out.push((
                n["node"].as_u64().unwrap(),
                s["path"].as_str().unwrap().to_string(),
                s["version"].as_u64().unwrap(),
                s["index"].as_u64().unwrap(),
            ));
        }
    }
    out
}

/// Sets how many holders a write's acknowledgements must be able to spare (`f`).
async fn set_ack_fault_tolerance(client: &tessera_client::Client, f: u32) {
    let req = tessera_client::proto::ConfigSetRequest {
        ack_fault_tolerance: Some(f),
        ..Default::default()
    };
    client.config_set(req).await.unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn canary_value_is_nowhere_on_any_node_and_each_node_holds_one_share() {
    let mut c = Cluster::start(Opts {
        snapshot_every: Some(8),
        ..Opts::default()
    });
    let canary = format!(
        "CANARY-{:016x}-{:016x}",
        rand08::random::<u64>(),
        rand08::random::<u64>()
    );
    let file = c.dir.join("secret.bin");
    std::fs::write(&file, &canary).unwrap();
    let out = c.json(
        2,
        &["kv", "put", "prod/canary", &format!("@{}", file.display())],
    );
    assert_eq!(out["version"], 1);
    // More writes so that every node builds a snapshot that includes the secret.
    for i in 0..12 {
        put(&c, 1 + i % 3, &format!("other/{i}"), "k=v");
    }
    let back = get(&c, 3, "prod/canary");
    assert_eq!(back["data"], Value::String(canary.clone()));
    std::fs::remove_file(&file).unwrap();

    // One share per node for the version, with distinct indices 1..=3.
    let held: Vec<_> = shares(&c)
        .into_iter()
        .filter(|s| s.1 == "prod/canary")
        .collect();
    let nodes: BTreeSet<u64> = held.iter().map(|s| s.0).collect();
    let indices: BTreeSet<u64> = held.iter().map(|s| s.3).collect();
    assert_eq!(held.len(), 3, "{held:?}");
    assert_eq!(nodes, [1, 2, 3].into());
    assert_eq!(indices, [1, 2, 3].into());

    // Stop the nodes (RocksDB flushes its memtables) and search everything they wrote.
    for id in 1..=3 {
        c.stop(id);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut needles = vec![
        canary.clone().into_bytes(),
        hex::encode(&canary).into_bytes(),
    ];
    for pad in 0..3 {
        // base64 of the canary at each alignment, without the edges that depend on neighbours.
        let mut padded = vec![b'x'; pad];
        padded.extend_from_slice(canary.as_bytes());
        let enc = b64.encode(&padded);
        needles.push(enc.as_bytes()[4..enc.len() - 4].to_vec());
    }
    let mut files = Vec::new();
    files_under(&c.dir, &mut files);
    let mut searched = 0;
    for f in files.iter().filter(|f| !f.ends_with("secret.bin")) {
        let bytes = std::fs::read(f).unwrap();
        searched += bytes.len();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "the secret (or its encoding) is in {}",
                f.display()
            );
        }
    }
    assert!(searched > 100_000, "searched only {searched} bytes");
    assert!(files
        .iter()
        .any(|f| f.to_string_lossy().contains("raft.db")));
}

#[test]
fn reads_need_t_holders_and_say_how_many_were_reachable() {
    let mut c = Cluster::start(Opts {
        nodes: 5,
        regions: "eu,us,ap",
        ..Opts::default()
    });
    put(&c, 1, "prod/t", "v=1");
    assert_eq!(c.json(1, &["operator", "topology"])["threshold"], 3);
    // Three of five alive (t = 3): reads work.
    c.stop(4);
    c.stop(5);
    assert_eq!(get(&c, 1, "prod/t")["data"]["v"], "1");
    // Two alive: no read, and the error says how many holders were reachable.
    c.stop(3);
    let err = fails(&c.cli(1, &["kv", "get", "prod/t", "--timeout", "30"]));
    assert!(
        err.contains("2 of 3 required share holders reachable") || err.contains("may be stale"),
        "{err}"
    );
    // Without a quorum for longer than the freshness bound (2 × 2 s), the two left release
    // nothing at all, and say why: a revocation could have passed them by.
    std::thread::sleep(Duration::from_secs(5));
    let err = fails(&c.cli(1, &["kv", "get", "prod/t", "--timeout", "30"]));
    assert!(
        err.contains("0 of 3 required share holders reachable"),
        "{err}"
    );
    assert!(err.contains("may be stale"), "{err}");
}

#[test]
fn a_node_down_during_writes_gets_its_shares_later_and_serves_reads() {
    let mut c = Cluster::start(Opts {
        snapshot_every: Some(10),
        ..Opts::default()
    });
    c.stop(3);
    // t = 2 of 3: writes succeed with node 3 down; enough of them to compact the log.
    for i in 0..25 {
        put(&c, 1, &format!("app/s{i}"), &format!("n={i}"));
    }
    c.start_node(3);
    c.wait_listening(3);
    wait_until("node 3 to hold its shares", Duration::from_secs(30), || {
        shares(&c).iter().filter(|s| s.0 == 3).count() == 25
    });
    let installed = c
        .metric(3, "tessera_raft_snapshots_installed")
        .unwrap_or(0.0);
    assert!(installed >= 1.0, "node 3 should have caught up by snapshot");
    // Node 1 down: the read must use node 3's share.
    c.stop(1);
    c.wait_leader(Duration::from_secs(15));
    for i in [0, 24] {
        let v = get(&c, 2, &format!("app/s{i}"));
        assert_eq!(v["data"]["n"], i.to_string());
    }
}

#[test]
fn a_byzantine_holder_is_detected_named_and_routed_around() {
    let c = Cluster::start_with_byzantine(2);
    put(&c, 1, "prod/b", "k=good");
    // Through node 2: its own region first, so node 2 is among the first holders asked.
    let out = c.cli(2, &["kv", "get", "prod/b", "--format", "json"]);
    let stdout = ok(&out);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["data"]["k"], "good");
    assert_eq!(v["bad_holders"], serde_json::json!([2]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node 2 released a share that"), "{stderr}");
    // The node the client reported to counts it and audits it, naming node 2.
    assert_eq!(
        c.metric(2, "tessera_bad_shares_reported_total{node=\"2\"}"),
        Some(1.0)
    );
    let audit = std::fs::read_to_string(c.node(2).data_dir.join("audit.log")).unwrap();
    assert!(
        audit.contains("node 2 released a share of version 1 that does not verify"),
        "{audit}"
    );
}

#[test]
fn a_holder_that_signs_bad_receipts_cannot_sink_a_write() {
    let c = Cluster::start_with_byzantine(2);
    // Node 1 gathers the write's receipts. Node 2's does not verify: node 1 leaves it out
    // (node 2 then acknowledges through Raft once its share is stored) instead of submitting
    // a write that every node would refuse on apply.
    put(&c, 1, "prod/r", "k=kept");
    let log = std::fs::read_to_string(&c.node(1).log).unwrap();
    assert!(
        log.contains("left out a receipt that does not verify"),
        "{log}"
    );
    let out = ok(&c.cli(3, &["kv", "get", "prod/r", "--field", "k"]));
    assert_eq!(out.trim(), "kept");
}

#[test]
fn policy_is_enforced_by_every_holder_itself() {
    let c = Cluster::start(Opts::default());
    put(&c, 1, "prod/app/x", "v=app");
    put(&c, 1, "prod/db/x", "v=db");
    c.client_cert("app");
    let p = c.dir.join("app.hcl");
    std::fs::write(
        &p,
        "path \"prod/app/*\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(&c.cli(1, &["policy", "write", "app", p.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "attach", "app", "--identity", "app"]));

    let out = ok(&c.cli_as("app", 2, &["kv", "get", "prod/app/x", "--field", "v"]));
    assert_eq!(out.trim(), "app");
    let err = fails(&c.cli_as("app", 2, &["kv", "get", "prod/db/x"]));
    assert!(err.contains("permission denied"), "{err}");

    // Straight to a follower's ReleaseShares, skipping every other check: that follower
    // refuses on its own, item by item (the allowed item beside it is released), and audits
    // the refusal.
    let leader = c.status(1).unwrap()["leader"].as_u64().unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reply = rt.block_on(async {
        let client = c.sdk("app", follower).await;
        let reader = tessera_crypto::seal::SealingKey::generate();
        let item = |path: &str| tessera_client::proto::ReleaseItem {
            path: path.into(),
            version: 1,
            ..Default::default()
        };
        client
            .kv_rpc()
            .release_shares(tessera_client::proto::ReleaseSharesRequest {
                reader_key: reader.public().0.to_vec(),
                items: vec![item("prod/db/x"), item("prod/app/x")],
            })
            .await
            .unwrap()
            .into_inner()
    });
    let (denied, allowed) = (&reply.items[0], &reply.items[1]);
    let refusal = denied.refusal.as_ref().expect("the item is refused");
    assert_eq!(
        refusal.kind(),
        tessera_client::proto::RefusalKind::Denied,
        "{denied:?}"
    );
    assert!(
        denied.sealed_share.is_empty(),
        "a refused item carries no share"
    );
    assert_eq!(refusal.path, "prod/db/x", "{refusal:?}");
    assert!(refusal.reason.contains("prod/db/x"), "{}", refusal.reason);
    assert!(allowed.refusal.is_none(), "{allowed:?}");
    assert!(!allowed.sealed_share.is_empty());
    let audit = std::fs::read_to_string(c.node(follower).data_dir.join("audit.log")).unwrap();
    let refused = audit.lines().any(|l| {
        l.contains("\"operation\":\"kv.release_share\"")
            && l.contains("\"identity\":\"app\"")
            && l.contains("\"outcome\":\"denied\"")
    });
    assert!(refused, "the follower did not audit its refusal");
    assert!(
        c.metric(follower, "tessera_share_releases_total{outcome=\"denied\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn versions_delete_undelete_destroy_and_metadata() {
    let c = Cluster::start(Opts::default());
    for i in 1..=3 {
        assert_eq!(put(&c, 1, "app/cfg", &format!("v={i}")), i);
    }
    assert_eq!(
        c.json(2, &["kv", "get", "app/cfg", "--version", "2"])["data"]["v"],
        "2"
    );
    // Check-and-set.
    let err = fails(&c.cli(1, &["kv", "put", "app/cfg", "v=x", "--cas", "1"]));
    assert!(err.contains("check-and-set failed"), "{err}");
    ok(&c.cli(1, &["kv", "put", "app/cfg", "v=4", "--cas", "3"]));

    // Soft delete and undelete.
    ok(&c.cli(1, &["kv", "delete", "app/cfg", "--versions", "2"]));
    let err = fails(&c.cli(3, &["kv", "get", "app/cfg", "--version", "2"]));
    assert!(err.contains("deleted"), "{err}");
    ok(&c.cli(1, &["kv", "undelete", "app/cfg", "--versions", "2"]));
    assert_eq!(
        c.json(3, &["kv", "get", "app/cfg", "--version", "2"])["data"]["v"],
        "2"
    );

    // Destroy: unreadable for everyone (root included) and no node keeps a share of it.
    assert!(shares(&c).iter().any(|s| s.1 == "app/cfg" && s.2 == 1));
    ok(&c.cli(1, &["kv", "destroy", "app/cfg", "--versions", "1"]));
    let err = fails(&c.cli(2, &["kv", "get", "app/cfg", "--version", "1"]));
    assert!(err.contains("destroyed"), "{err}");
    wait_until(
        "every node to erase its share",
        Duration::from_secs(10),
        || !shares(&c).iter().any(|s| s.1 == "app/cfg" && s.2 == 1),
    );
    assert_eq!(shares(&c).iter().filter(|s| s.1 == "app/cfg").count(), 9);

    // Metadata: max_versions prunes (and erases) the oldest versions, custom metadata sticks.
    ok(&c.cli(
        1,
        &[
            "kv",
            "metadata",
            "put",
            "app/cfg",
            "--max-versions",
            "2",
            "--custom-metadata",
            "owner=ops",
        ],
    ));
    let m = c.json(2, &["kv", "metadata", "get", "app/cfg"]);
    let versions: Vec<u64> = m["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 4]);
    assert_eq!(m["custom_metadata"], serde_json::json!({ "owner": "ops" }));
    assert_eq!(m["current_version"], 4);
    assert_eq!(m["versions"][0]["created_by"], "admin");
    let held: BTreeMap<u64, usize> =
        shares(&c)
            .iter()
            .filter(|s| s.1 == "app/cfg")
            .fold(BTreeMap::new(), |mut m, s| {
                *m.entry(s.2).or_default() += 1;
                m
            });
    assert_eq!(held, [(3, 3), (4, 3)].into());

    // List by prefix: names only.
    put(&c, 1, "app/db/pw", "v=1");
    let names = c.json(1, &["kv", "list", "app"]);
    assert_eq!(names, serde_json::json!(["cfg", "db/"]));
}

#[test]
fn malformed_writes_get_clear_errors_and_store_nothing() {
    use tessera_client::proto::ShareEnvelope;
    let mut c = Cluster::start(Opts::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.sdk("admin", 1).await;
        client
            .kv_put("warm/up", b"x", &Default::default())
            .await
            .unwrap();
        let topo = client.topology().await.unwrap();
        let good = || tessera_client::deal_version(&topo, "bad/x", 1, None, b"value").unwrap();
        let expect = |req: tessera_client::proto::KvPutRequest, needle: &'static str| {
            let mut raw = client.kv_rpc();
            let client = client.clone();
            async move {
                let req = client
                    .signed(tessera_client::proto::SignedMethod::KvPut, req)
                    .await
                    .unwrap();
                let s = raw.put(req).await.unwrap_err();
                assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
                assert!(
                    s.message().contains(needle),
                    "{needle:?} not in {:?}",
                    s.message()
                );
            }
        };
        // A corrupted envelope (for node 1, the node that serves the request).
        let mut r = good();
        let pos = r.holders.iter().position(|h| *h == 1).unwrap();
        r.envelopes[pos].ciphertext[3] ^= 0x55;
        expect(r, "envelope for node 1").await;
        // An envelope that is not even well-formed.
        let mut r = good();
        r.envelopes[0] = ShareEnvelope {
            enc: vec![1, 2, 3],
            ciphertext: vec![],
        };
        expect(r, "encapsulated key").await;
        // The wrong version.
        let mut r = good();
        r.version = 7;
        expect(r, "version conflict").await;
        // Commitments of the wrong size.
        let mut r = good();
        r.commitments.pop();
        expect(r, "commitments").await;
        let mut r = good();
        r.commitments[1] = vec![0u8; 31];
        expect(r, "commitments").await;
        // An oversized value.
        let mut r = good();
        r.ciphertext = vec![0u8; 1024 * 1024 + 64];
        expect(r, "larger than the limit").await;
        // An unknown node in the holder list.
        let mut r = good();
        r.holders[0] = 99;
        expect(r, "not a voting member").await;
        // Nothing was stored.
        assert!(matches!(
            client.kv_metadata("bad/x").await,
            Err(tessera_client::Error::NotFound { .. })
        ));

        // A bad share for another holder (one that opens, and fails the commitments): that
        // holder checks its share before the write is submitted, and refuses it. (Asking for every holder's acknowledgement makes the
        // write wait for that holder's verdict; see below for a write that does not.)
        set_ack_fault_tolerance(&client, 1).await;
        let mut r = tessera_client::deal_version(&topo, "bad/y", 1, None, b"value").unwrap();
        // Neither node 1 (it serves the request) nor the leader: the victim is stopped below,
        // and stopping the leader would leave that write waiting for an election.
        let leader = c.status(1).and_then(|s| s["leader"].as_u64()).unwrap_or(0);
        let other = r
            .holders
            .iter()
            .position(|h| *h != 1 && *h != leader)
            .unwrap();
        let victim = r.holders[other];
        let wrong = tessera_crypto::vss::deal(2, r.holders.len()).unwrap();
        let key =
            tessera_crypto::seal::SealingPublicKey::from_slice(&topo.holders[other].sealing_key)
                .unwrap();
        let ctx = tessera_crypto::seal::Context {
            cluster_id: &topo.cluster_id,
            path: "bad/y",
            version: 1,
            node_id: victim,
            purpose: tessera_crypto::seal::Purpose::Deal,
        };
        let sealed =
            tessera_crypto::seal::seal(&key, &ctx, &wrong.shares[other].to_bytes()).unwrap();
        r.envelopes[other].enc = sealed.enc.to_vec();
        r.envelopes[other].ciphertext = sealed.ciphertext;
        let signed = client
            .signed(tessera_client::proto::SignedMethod::KvPut, r.clone())
            .await
            .unwrap();
        let s = client.kv_rpc().put(signed).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        let needle = format!("node {victim} refused its share of this write");
        assert!(s.message().contains(&needle), "{:?}", s.message());
        assert!(s.message().contains("nothing was stored"), "{s:?}");
        assert!(matches!(
            client.kv_metadata("bad/y").await,
            Err(tessera_client::Error::NotFound { .. })
        ));

        // The same write while that holder is down, with the cluster content with `t`
        // acknowledgements: it is stored. The holder finds out when it applies the write and
        // files a complaint with its evidence, which every node checks (the envelope opens to
        // a share the commitments refuse); `t` holders verified their shares, so the version
        // stays readable from them.
        set_ack_fault_tolerance(&client, 0).await;
        c.stop(victim);
        let signed = client
            .signed(tessera_client::proto::SignedMethod::KvPut, r)
            .await
            .unwrap();
        client.kv_rpc().put(signed).await.unwrap();
        c.start_node(victim);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let m = loop {
            let m = client.kv_metadata("bad/y").await.unwrap();
            if !m.versions[0].complaints.is_empty() {
                break m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no complaint recorded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(m.versions[0].complaints, vec![victim]);
        assert!(m.versions[0].valid, "{m:?}");
        let got = client.kv_get("bad/y", None).await.unwrap();
        assert_eq!(got.value.expose(), b"value");
        // And a good one still works.
        set_ack_fault_tolerance(&client, 1).await;
        client
            .kv_put("bad/x", b"fine", &Default::default())
            .await
            .unwrap();
    });
    assert_eq!(shares(&c).iter().filter(|s| s.1 == "bad/x").count(), 3);
}

/// Writes under way together share their receipt calls to each holder, and a holder signs the
/// receipts of one call together (one signature over a Merkle root); a holder that finds one
/// write's share bad refuses that write alone, and the writes beside it in the same calls are
/// stored and read back, their receipts verified.
#[test]
fn concurrent_writes_each_get_their_own_holders_verdict() {
    let c = Cluster::start(Opts::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.sdk("admin", 1).await;
        // Every holder's verdict is waited for.
        set_ack_fault_tolerance(&client, 1).await;
        client
            .kv_put("warm/up", b"x", &Default::default())
            .await
            .unwrap();
        let topo = client.topology().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..30u32 {
            let client = client.clone();
            let topo = topo.clone();
            tasks.push(tokio::spawn(async move {
                let path = format!("many/{i}");
                let value = format!("value {i}");
                let mut r =
                    tessera_client::deal_version(&topo, &path, 1, None, value.as_bytes()).unwrap();
                // Every fifth write carries a corrupted envelope for a holder other than
                // node 1 (which serves the requests).
                let victim = (i % 5 == 0).then(|| {
                    let other = r.holders.iter().position(|h| *h != 1).unwrap();
                    r.envelopes[other].ciphertext[5] ^= 0x55;
                    r.holders[other]
                });
                let signed = client
                    .signed(tessera_client::proto::SignedMethod::KvPut, r)
                    .await
                    .unwrap();
                let res = client.kv_rpc().put(signed).await;
                (path, value, victim, res)
            }));
        }
        for t in tasks {
            let (path, value, victim, res) = t.await.unwrap();
            match victim {
                Some(victim) => {
                    let s = match res {
                        Err(s) => s,
                        Ok(_) => {
                            // A receipt that took longer than the write waits for one (a very
                            // busy machine): the write is stored with the other holders'
                            // acknowledgements, the holder complains through Raft instead, and
                            // the version is read from the holders that verified it.
                            let got = client.kv_get(&path, None).await.unwrap();
                            assert_eq!(got.value.expose(), value.as_bytes(), "{path}");
                            continue;
                        }
                    };
                    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{path}: {s:?}");
                    let needle = format!("node {victim} refused its share of this write");
                    assert!(s.message().contains(&needle), "{path}: {:?}", s.message());
                    assert!(matches!(
                        client.kv_metadata(&path).await,
                        Err(tessera_client::Error::NotFound { .. })
                    ));
                }
                None => {
                    assert_eq!(res.unwrap().into_inner().acks, 3, "{path}");
                    let got = client.kv_get(&path, None).await.unwrap();
                    assert_eq!(got.value.expose(), value.as_bytes(), "{path}");
                }
            }
        }
    });
    // Every receipt signed together with others, refused items beside them included, verified
    // where it was gathered.
    let log = std::fs::read_to_string(&c.node(1).log).unwrap();
    assert!(!log.contains("left out a receipt"), "{log}");
    // 3 shares of each of the 24 good writes (the refused ones left none, or two shares and a
    // complaint).
    wait_until(
        "every holder stores its share",
        Duration::from_secs(10),
        || {
            let stored = shares(&c);
            (0..30u32).filter(|i| i % 5 != 0).all(|i| {
                let path = format!("many/{i}");
                stored.iter().filter(|s| s.1 == path).count() == 3
            })
        },
    );
}

/// A holder that hangs (stopped, its connections still open) holds up a read for about a
/// second, not for the call's timeout: the reader asks another holder, names the silent one,
/// and then leaves it out of its first rounds for a while.
#[test]
fn a_hung_holder_is_routed_around_without_waiting_for_the_timeout() {
    let mut c = Cluster::start(Opts::default());
    let leader = c.wait_leader(Duration::from_secs(20));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Connected to the leader: the first round asks it and the first other holder in the
        // holder order (no other holder is in the leader's region).
        let client = c.sdk("admin", leader).await;
        client
            .kv_put("hang/x", b"still here", &Default::default())
            .await
            .unwrap();
        let topo = client.topology().await.unwrap();
        let hung = topo
            .holders
            .iter()
            .map(|h| h.id)
            .find(|id| *id != leader)
            .unwrap();
        // Its connection to the reader is open and warm.
        client.kv_get("hang/x", None).await.unwrap();
        c.pause(hung);
        let started = Instant::now();
        let got = client.kv_get("hang/x", None).await;
        let took = started.elapsed();
        c.resume(hung);
        let got = got.unwrap();
        assert_eq!(got.value.expose(), b"still here");
        // The SDK's call timeout here is 15 s.
        assert!(took < Duration::from_secs(8), "the read waited {took:?}");
        assert_eq!(got.unavailable.len(), 1, "{:?}", got.unavailable);
        assert_eq!(got.unavailable[0].0, hung);
        assert!(
            got.unavailable[0].1.contains("no answer within"),
            "{:?}",
            got.unavailable
        );
        // The next read does not ask it first.
        c.pause(hung);
        let again = client.kv_get("hang/x", None).await;
        c.resume(hung);
        let again = again.unwrap();
        assert_eq!(again.value.expose(), b"still here");
        assert!(again.unavailable.is_empty(), "{:?}", again.unavailable);
    });
}

/// The node that receives a write acknowledges its own share in the write itself (one Raft
/// round fewer), and the write returns once `t + f` holders acknowledged. Every holder still
/// confirms, once it has applied the write, that its share is sealed at rest, and its envelope
/// then leaves the replicated state: soon no envelope is pending anywhere.
#[test]
fn every_holder_confirms_its_share_at_rest_and_no_envelope_stays() {
    let c = Cluster::start(Opts::default());
    for via in 1..=3 {
        assert_eq!(put(&c, via, &format!("app/r{via}"), "k=v"), 1);
    }
    for via in 1..=3 {
        let path = format!("app/r{via}");
        wait_until("every holder confirmed", Duration::from_secs(15), || {
            let m = c.json(via, &["kv", "metadata", "get", &path]);
            let v = &m["versions"][0];
            v["pending"].as_array().is_some_and(|p| p.is_empty())
                && v["acks"].as_array().map(|a| a.len()) == Some(3)
        });
        assert_eq!(get(&c, 1 + via % 3, &path)["data"]["k"], "v");
    }
}

/// A holder that has not applied the latest version yet when a one-round read reaches it is
/// asked again for that version and waits until it has caught up. Written off instead, it would
/// fail the read here, where the only other holder is down.
#[test]
fn a_lagging_holder_is_asked_again_and_the_read_waits_for_it() {
    let mut c = Cluster::start(Opts::default());
    let leader = c.wait_leader(Duration::from_secs(20));
    // A reader asks the leader and the first other holder (every region differs here).
    let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let (lagging, down) = (others[0], others[1]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.sdk("admin", leader).await;
        client
            .kv_put("lag/x", b"one", &Default::default())
            .await
            .unwrap();
        // With one holder down, a write is content with `t` acknowledgements.
        set_ack_fault_tolerance(&client, 0).await;
    });
    c.stop(down);
    c.stop(lagging);
    c.start_node_with_env(lagging, &[("TESSERA_TEST_SLOW_PUTS_MS", "1500")]);
    c.wait_listening(lagging);
    wait_until(
        "the restarted holder to catch up",
        Duration::from_secs(30),
        || {
            c.status(leader).is_some_and(|s| {
                let committed = s["commit_index"].as_u64().unwrap_or(u64::MAX);
                s["nodes"].as_array().is_some_and(|nodes| {
                    nodes.iter().any(|n| {
                        n["id"] == lagging
                            && n["last_applied"].as_u64().is_some_and(|a| a >= committed)
                    })
                })
            })
        },
    );
    assert_eq!(c.wait_leader(Duration::from_secs(10)), leader);
    rt.block_on(async {
        let client = c.sdk("admin", leader).await;
        let w = client
            .kv_put("lag/x", b"two", &Default::default())
            .await
            .unwrap();
        assert_eq!(w.version, 2);
        // At once: the leader names version 2 while the other holder still applies it.
        let started = Instant::now();
        let v = client.kv_get("lag/x", None).await.unwrap();
        assert_eq!(v.version, 2);
        assert_eq!(v.value.expose(), b"two");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "the read did not meet a lagging holder ({:?}); the test proves nothing",
            started.elapsed()
        );
    });
}

#[test]
fn concurrent_reads_share_calls_and_each_gets_its_own_value() {
    let c = Cluster::start_with_byzantine(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Connected to node 2, so node 2 (which corrupts what it releases) is asked first in every
    // read: each read must still get its own value, and name node 2 alone.
    let reads = rt.block_on(async {
        let client = c.sdk("admin", 2).await;
        for i in 0..12 {
            let value = format!("value-{i}");
            client
                .kv_put(&format!("many/{i}"), value.as_bytes(), &Default::default())
                .await
                .unwrap();
        }
        let reads: Vec<_> = (0..48)
            .map(|n| {
                let client = client.clone();
                tokio::spawn(async move {
                    let i = n % 12;
                    let v = client.kv_get(&format!("many/{i}"), None).await;
                    (i, v)
                })
            })
            .collect();
        let mut done = Vec::new();
        for r in reads {
            done.push(r.await.unwrap());
        }
        done
    });
    for (i, v) in reads {
        let v = v.unwrap_or_else(|e| panic!("read of many/{i} failed: {e}"));
        assert_eq!(v.value.expose(), format!("value-{i}").as_bytes());
        let named: Vec<u64> = v.bad_holders.iter().map(|(n, _)| *n).collect();
        assert_eq!(named, vec![2], "many/{i}: {:?}", v.bad_holders);
    }
    // The reads went to node 2 together: one audit line per item, and some calls carried
    // several (their lines share one timestamp, taken once per call).
    let audit = std::fs::read_to_string(c.node(2).data_dir.join("audit.log")).unwrap();
    let mut per_call: BTreeMap<String, usize> = BTreeMap::new();
    for l in audit.lines() {
        let j: Value = serde_json::from_str(l).unwrap();
        if j["operation"] == "kv.release_share" && j["path"].as_str().unwrap().starts_with("many/")
        {
            *per_call
                .entry(j["time"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(per_call.values().sum::<usize>(), 48, "one line per read");
    assert!(
        per_call.values().any(|n| *n > 1),
        "48 reads at once were sent one call each: {per_call:?}"
    );
}

/// `tessera-bench kv --ops` runs only the phases asked for (so that `bench/cpu.sh` can charge a
/// run's CPU to one kind of operation): a write-only run writes no secrets to read, every phase
/// stops at `--max-ops`, a read phase with nothing to read is refused before it starts, and a
/// ping phase stores nothing.
#[test]
fn bench_runs_only_the_phases_asked_for() {
    let c = Cluster::start(Opts::default());
    // Runs one phase and checks that it was the only one, with `ops` operations and no error.
    let one_phase = |op: &str, ops: u64, args: &[&str]| {
        let mut a = vec!["kv", "--ops", op, "--duration", "20", "--format", "json"];
        a.extend_from_slice(args);
        let rows: Value = serde_json::from_str(&ok(&c.bench(1, &a))).expect("bench prints JSON");
        let rows = rows.as_array().expect("one row per phase");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["op"], format!("kv_{op}"));
        let done = (rows[0]["ops"].as_u64(), rows[0]["errors"].as_u64());
        assert_eq!(done, (Some(ops), Some(0)), "{rows:?}");
    };
    one_phase("write", 5, &["--concurrency", "2", "--max-ops", "5"]);
    let runs = c.json(1, &["kv", "list", "bench/"]);
    let run = runs[0].as_str().expect("the run's folder").to_string();
    let inside = c.json(1, &["kv", "list", &format!("bench/{run}")]);
    assert_eq!(inside, serde_json::json!(["w/"]), "{inside}");

    let err = fails(&c.bench(1, &["kv", "--ops", "read", "--keys", "0"]));
    assert!(err.contains("--keys must be at least 1"), "{err}");

    one_phase(
        "read",
        4,
        &["--concurrency", "1", "--max-ops", "4", "--keys", "2"],
    );

    // `ping` is one call that does no work but is audited like every call: it writes no
    // secret, and each call leaves one line in the connected node's audit log.
    let whoami_lines = || {
        std::fs::read_to_string(c.node(1).data_dir.join("audit.log"))
            .unwrap()
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).unwrap()["operation"] == "whoami")
            .count()
    };
    let before = whoami_lines();
    one_phase("ping", 3, &["--concurrency", "1", "--max-ops", "3"]);
    assert_eq!(whoami_lines() - before, 3, "one audit line per ping");
    let runs = c.json(1, &["kv", "list", "bench/"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
}
