//! Threshold signing on real clusters: a DKG gives every node the same group key with no dealer;
//! signatures verify with independent verifiers (ed25519-dalek, ssh-keygen, a real sshd, PyJWT);
//! `t` signers suffice and `t - 1` do not; a cheating signer is named and replaced; a caller
//! without `sign` is refused by each signer itself.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use cluster_tests::{fails, ok, Cluster, Opts, Sshd};
use ed25519_dalek::{Signature, VerifyingKey};

fn group_key(c: &Cluster, via: u64, key: &str) -> [u8; 32] {
    let hexkey = ok(&c.cli(via, &["key", "public", key, "--format", "hex"]));
    hex::decode(hexkey.trim()).unwrap().try_into().unwrap()
}

fn create(c: &Cluster, key: &str, purpose: &str) {
    ok(&c.cli(1, &["key", "create", key, "--purpose", purpose]));
}

#[test]
fn dkg_on_five_nodes_gives_one_group_key_and_t_signers_suffice() {
    let mut c = Cluster::start(Opts {
        nodes: 5,
        regions: "eu,us,ap",
        ..Opts::default()
    });
    create(&c, "release", "raw");
    let gk = group_key(&c, 1, "release");
    for id in 2..=5 {
        assert_eq!(
            group_key(&c, id, "release"),
            gk,
            "node {id} records another group key"
        );
    }
    // Each node holds exactly one share of the key: its own.
    let held = c.json(1, &["operator", "shares"]);
    for n in held.as_array().unwrap() {
        let mine: Vec<_> = n["shares"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["path"] == "keys/release")
            .collect();
        assert_eq!(mine.len(), 1, "{n}");
        assert_eq!(mine[0]["index"], n["node"], "{n}");
    }
    let k = c.json(3, &["key", "read", "release"]);
    assert_eq!(k["status"], "active");
    assert_eq!(k["threshold"], 3);
    assert_eq!(k["participants"], serde_json::json!([1, 2, 3, 4, 5]));

    let msg = c.dir.join("artifact.bin");
    std::fs::write(&msg, b"release 1.2.3").unwrap();
    let verify = |c: &Cluster, via: u64| {
        let sig = ok(&c.cli(
            via,
            &[
                "sign",
                "release",
                "--input",
                msg.to_str().unwrap(),
                "--format",
                "hex",
            ],
        ));
        let sig: [u8; 64] = hex::decode(sig.trim()).unwrap().try_into().unwrap();
        VerifyingKey::from_bytes(&gk)
            .unwrap()
            .verify_strict(b"release 1.2.3", &Signature::from_bytes(&sig))
            .expect("ed25519-dalek accepts the threshold signature");
    };
    verify(&c, 2);
    // t = 3 of 5 alive: still signs.
    c.stop(4);
    c.stop(5);
    verify(&c, 1);
    // t - 1 alive: fails cleanly, saying how many signers were available.
    c.stop(3);
    let err = fails(&c.cli(
        1,
        &[
            "sign",
            "release",
            "--input",
            msg.to_str().unwrap(),
            "--timeout",
            "60",
        ],
    ));
    assert!(err.contains("2 of 3 required signers available"), "{err}");
}

#[test]
fn a_cheating_signer_is_named_and_replaced() {
    let c = Cluster::start_with_byzantine(2);
    create(&c, "k", "raw");
    let gk = group_key(&c, 1, "k");
    let msg = c.dir.join("m");
    std::fs::write(&msg, b"m").unwrap();
    // Through node 2: its region first, so node 2 signs in the first attempt.
    let out = c.cli(
        2,
        &[
            "sign",
            "k",
            "--input",
            msg.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["cheaters"], serde_json::json!([2]));
    let sig: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(v["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    VerifyingKey::from_bytes(&gk)
        .unwrap()
        .verify_strict(b"m", &Signature::from_bytes(&sig))
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("node 2 returned a signature share that does not verify"));
    assert_eq!(
        c.metric(2, "tessera_signing_cheaters_reported_total{node=\"2\"}"),
        Some(1.0)
    );
}

/// FROST round 1 asked straight of signer `id` as `identity`, under one fixed request id.
async fn commit_as(
    c: &Cluster,
    identity: &str,
    id: u64,
    key: &str,
) -> Result<tessera_client::proto::SignCommitReply, tonic::Status> {
    let client = c.sdk(identity, id).await;
    let req = tessera_client::proto::SignCommitRequest {
        key: key.into(),
        request_id: "0123456789abcdef0123".into(),
        ..Default::default()
    };
    client
        .signing_rpc()
        .commit(req)
        .await
        .map(|r| r.into_inner())
}

#[test]
fn an_identity_without_sign_is_refused_by_every_signer_itself() {
    let c = Cluster::start(Opts::default());
    create(&c, "k", "raw");
    c.client_cert("app");
    let p = c.dir.join("read-only.hcl");
    std::fs::write(&p, "path \"keys/*\" {\n  capabilities = [\"read\"]\n}\n").unwrap();
    ok(&c.cli(1, &["policy", "write", "keys-read", p.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "attach", "keys-read", "--identity", "app"]));
    let msg = c.dir.join("m");
    std::fs::write(&msg, b"m").unwrap();
    let err = fails(&c.cli_as("app", 1, &["sign", "k", "--input", msg.to_str().unwrap()]));
    assert!(err.contains("permission denied"), "{err}");
    // Straight to each signer's round 1, skipping any coordinator: each refuses on its own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for id in 1..=3 {
        let status = rt.block_on(commit_as(&c, "app", id, "k")).unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "node {id}: {status:?}"
        );
    }
    // One call to a signer asking for two shares, one of a key `app` may not sign and one of
    // a key it may: the signer refuses the first on its own, signs the second, and audits both.
    create(&c, "open", "raw");
    let p = c.dir.join("open.hcl");
    std::fs::write(&p, "path \"keys/open\" {\n  capabilities = [\"sign\"]\n}\n").unwrap();
    ok(&c.cli(1, &["policy", "write", "open-sign", p.to_str().unwrap()]));
    ok(&c.cli(1, &["policy", "attach", "open-sign", "--identity", "app"]));
    let request = serde_json::to_vec(&tessera_client::crypto::sign_request::SignRequest::Raw {
        message: b"m".to_vec(),
    })
    .unwrap();
    let reply = rt.block_on(async {
        let mut commitments = std::collections::BTreeMap::new();
        for id in [1u64, 2] {
            let r = commit_as(&c, "app", id, "open").await.unwrap();
            commitments.insert(id, r.commitments);
        }
        let item = |key: &str| tessera_client::proto::SignShareRequest {
            key: key.into(),
            request_id: "0123456789abcdef0123".into(),
            request: request.clone(),
            commitments: commitments.clone(),
            ..Default::default()
        };
        c.sdk("app", 1)
            .await
            .signing_rpc()
            .sign_shares(tessera_client::proto::SignSharesRequest {
                items: vec![item("k"), item("open")],
            })
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(reply.items.len(), 2);
    assert_eq!(
        reply.items[0].refusal.as_ref().map(|r| r.kind()),
        Some(tessera_client::proto::RefusalKind::Denied),
        "{:?}",
        reply.items[0]
    );
    assert!(reply.items[0].share.is_empty());
    assert!(reply.items[1].refusal.is_none(), "{:?}", reply.items[1]);
    assert_eq!(reply.items[1].share.len(), 32);
    let log = std::fs::read_to_string(c.node(1).data_dir.join("audit.log")).unwrap();
    let line = |path: &str, outcome: &str| {
        log.lines().any(|l| {
            l.contains("\"operation\":\"sign.share\"")
                && l.contains(&format!("\"path\":\"{path}\""))
                && l.contains(&format!("\"outcome\":\"{outcome}\""))
                && l.contains("\"identity\":\"app\"")
        })
    };
    assert!(line("keys/k", "denied"), "{log}");
    assert!(line("keys/open", "ok"), "{log}");

    // And a raw key does not sign SSH certificates.
    let err = fails(&c.cli(1, &["jwt", "issue", "k", "--sub", "s", "--aud", "a"]));
    assert!(err.contains("does not sign jwt requests"), "{err}");
}

#[test]
fn jwts_verify_with_pyjwt_through_the_jwks() {
    let c = Cluster::start(Opts::default());
    create(&c, "wid", "jwt");
    let token = ok(&c.cli(
        2,
        &[
            "jwt", "issue", "wid", "--sub", "svc-a", "--aud", "payments", "--ttl", "10m",
            "--claim", "team=ops",
        ],
    ));
    let jwks = ok(&c.cli(3, &["key", "public", "wid", "--format", "jwks"]));
    let script = r#"
import json, sys, jwt
jwks = json.loads(sys.argv[1]); token = sys.argv[2].strip()
key = jwt.PyJWK(jwks["keys"][0])
claims = jwt.decode(token, key=key.key, algorithms=["EdDSA"], audience="payments")
assert claims["sub"] == "svc-a" and claims["team"] == "ops", claims
try:
    jwt.decode(token, key=key.key, algorithms=["EdDSA"], audience="other")
    raise SystemExit("wrong audience accepted")
except jwt.InvalidAudienceError:
    pass
print("verified", claims["sub"])
"#;
    let out = Command::new("python3")
        .args(["-c", script, &jwks, &token])
        .output()
        .expect("python3 with PyJWT (installed by .ci/run)");
    assert!(
        out.status.success(),
        "PyJWT: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified svc-a"));
}

fn sign_cert(
    c: &Cluster,
    key: &str,
    pubkey: &std::path::Path,
    principal: &str,
    ttl: &str,
    out: &std::path::Path,
) {
    ok(&c.cli(
        1,
        &[
            "ssh",
            "sign",
            key,
            "--public-key",
            pubkey.to_str().unwrap(),
            "--principals",
            principal,
            "--ttl",
            ttl,
            "--out",
            out.to_str().unwrap(),
        ],
    ));
}

#[test]
fn sshd_accepts_a_threshold_signed_certificate_and_refuses_bad_ones() {
    let c = Cluster::start(Opts::default());
    create(&c, "ssh-ca", "ssh-user-ca");
    let d = c.dir.join("ssh");
    let keygen = |args: &[&str]| {
        ok(&Command::new("ssh-keygen")
            .args(args)
            .output()
            .expect("ssh-keygen"))
    };
    let sshd = Sshd::keys(&d);
    let user_pub = sshd.user_pub();
    sign_cert(
        &c,
        "ssh-ca",
        &user_pub,
        "root",
        "1h",
        &d.join("id-cert.pub"),
    );
    let listing = keygen(&["-L", "-f", d.join("id-cert.pub").to_str().unwrap()]);
    assert!(
        listing.contains("user certificate")
            && listing.contains("root")
            && listing.contains("Valid: from"),
        "{listing}"
    );

    // The key's SSH role, checked by every signer: principals, extensions, lifetime.
    ok(&c.cli(
        1,
        &[
            "ssh",
            "role",
            "write",
            "ssh-ca",
            "--allowed-principals",
            "root,deploy-*",
            "--allowed-extensions",
            "permit-pty",
            "--max-ttl",
            "8h",
        ],
    ));
    let refused = |args: &[&str]| {
        let mut a = vec![
            "ssh",
            "sign",
            "ssh-ca",
            "--public-key",
            user_pub.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        fails(&c.cli(2, &a))
    };
    let e = refused(&["--principals", "admin"]);
    assert!(e.contains("principal \"admin\" is not allowed"), "{e}");
    let e = refused(&[
        "--principals",
        "root",
        "--extension",
        "permit-X11-forwarding",
    ]);
    assert!(
        e.contains("extension \"permit-X11-forwarding\" is not allowed"),
        "{e}"
    );
    let e = refused(&["--principals", "root", "--ttl", "9h"]);
    assert!(e.contains("exceeds the key's SSH role maximum"), "{e}");
    sign_cert(
        &c,
        "ssh-ca",
        &user_pub,
        "deploy-web",
        "1h",
        &d.join("deploy-cert.pub"),
    );

    let mut sshd = sshd.start(&ok(
        &c.cli(2, &["key", "public", "ssh-ca", "--format", "openssh"])
    ));
    let login = |cert: &std::path::Path| sshd.login(cert);
    let good = login(&d.join("id-cert.pub"));
    // Allowed by the role, but not the user logged in as: sshd refuses it.
    let wrong = login(&d.join("deploy-cert.pub"));
    let expired = {
        sign_cert(
            &c,
            "ssh-ca",
            &user_pub,
            "root",
            "1s",
            &d.join("short-cert.pub"),
        );
        std::thread::sleep(Duration::from_secs(3));
        login(&d.join("short-cert.pub"))
    };
    sshd.stop();
    assert!(
        good.status.success(),
        "login with the threshold-signed certificate failed: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&good.stdout).trim(), "logged-in");
    assert!(
        !wrong.status.success(),
        "a certificate for another principal was accepted"
    );
    assert!(
        !expired.status.success(),
        "an expired certificate was accepted"
    );
}

#[test]
fn a_key_generation_that_cannot_finish_is_aborted_and_can_be_run_again() {
    let mut c = Cluster::start(Opts::default());
    c.stop(3);
    let err = fails(&c.cli(
        1,
        &[
            "key",
            "create",
            "k",
            "--purpose",
            "raw",
            "--dkg-timeout",
            "5",
        ],
    ));
    assert!(err.contains("did not finish in time"), "{err}");
    let k = c.json(2, &["key", "read", "k"]);
    assert!(k["status"].as_str().unwrap().starts_with("failed"), "{k}");
    c.start_node(3);
    c.wait_listening(3);
    // Node 3 first catches up, then takes its part in three rounds through Raft: on a loaded
    // machine that can take longer than the default 20 s, so this generation gets a minute.
    ok(&c.cli(
        1,
        &[
            "key",
            "create",
            "k",
            "--purpose",
            "raw",
            "--dkg-timeout",
            "60",
        ],
    ));
    let k = c.json(3, &["key", "read", "k"]);
    assert_eq!(k["status"], "active");
    assert_eq!(k["attempt"], 2);
}

/// Opens node `id`'s stopped database and unseals its share of key `name` with its own KEK.
fn unseal_key_package(c: &Cluster, id: u64, name: &str) -> Vec<u8> {
    let path = c.node(id).data_dir.join("raft.db");
    let cfs = ["log", "raft_meta", "state", "snapshot", "shares"];
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), &path, cfs, false)
        .unwrap();
    let raw = db
        .get_cf(db.cf_handle("shares").unwrap(), format!("frost/{name}"))
        .unwrap()
        .expect("the node holds a share of the key");
    let attempt = u64::from_be_bytes(raw[..8].try_into().unwrap());
    let kek_hex = std::fs::read_to_string(c.dir.join(format!("node{id}.kek"))).unwrap();
    let kek =
        tessera_crypto::at_rest::Kek::from_bytes(&hex::decode(kek_hex.trim()).unwrap()).unwrap();
    let label = format!("tessera/frost-key/v1/{id}/{attempt}/{name}");
    // Only this node's KEK opens it.
    let other = tessera_crypto::at_rest::Kek::generate();
    assert!(other.open(label.as_bytes(), &raw[8..]).is_err());
    kek.open(label.as_bytes(), &raw[8..])
        .unwrap()
        .expose()
        .to_vec()
}

#[test]
fn no_private_key_material_is_on_any_disk_or_in_any_log() {
    let mut c = Cluster::start(Opts::default());
    create(&c, "canary", "raw");
    let gk = group_key(&c, 1, "canary");
    let msg = c.dir.join("m");
    std::fs::write(&msg, b"m").unwrap();
    ok(&c.cli(2, &["sign", "canary", "--input", msg.to_str().unwrap()]));
    for id in 1..=3 {
        c.stop(id);
    }
    // Each node's signing share, and the group signing key reconstructed from t of them.
    let packages: Vec<frost_ed25519::keys::KeyPackage> = (1..=3)
        .map(|id| {
            frost_ed25519::keys::KeyPackage::deserialize(&unseal_key_package(&c, id, "canary"))
                .unwrap()
        })
        .collect();
    let secret = frost_ed25519::keys::reconstruct(&packages[..2])
        .unwrap()
        .serialize();
    // FROST's signing key is the scalar itself (not an RFC 8032 seed): check it through FROST.
    let vk = frost_ed25519::SigningKey::deserialize(&secret).unwrap();
    assert_eq!(
        frost_ed25519::VerifyingKey::from(&vk).serialize().unwrap(),
        gk.to_vec(),
        "the reconstruction is the real key"
    );
    let mut needles: Vec<Vec<u8>> = vec![
        secret.clone(),
        hex::encode(&secret).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(&secret)
            .into_bytes(),
    ];
    for p in &packages {
        let share = p.signing_share().serialize();
        needles.push(hex::encode(&share).into_bytes());
        needles.push(
            base64::engine::general_purpose::STANDARD
                .encode(&share)
                .into_bytes(),
        );
        needles.push(share);
    }
    let mut files = Vec::new();
    let mut stack = vec![c.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "private key material in {}",
                f.display()
            );
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("audit.log"))
            && files
                .iter()
                .any(|f| f.to_string_lossy().contains("raft.db"))
    );
}

/// Audit lines of `operation` in node `id`'s log.
fn audited(c: &Cluster, id: u64, operation: &str) -> usize {
    let log = std::fs::read_to_string(c.node(id).data_dir.join("audit.log")).unwrap_or_default();
    let needle = format!("\"operation\":\"{operation}\"");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// FROST preprocessing: a client that asks each signer for a batch of nonce commitments signs
/// every later message in one round. A signer that restarts has forgotten its unused nonces;
/// the client notices, fetches fresh ones, and still signs. Every signature verifies.
#[test]
fn preprocessed_commitments_sign_in_one_round_and_survive_a_signer_restart() {
    let mut c = Cluster::start(Opts::default());
    create(&c, "pre", "raw");
    let gk = VerifyingKey::from_bytes(&group_key(&c, 1, "pre")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = rt.block_on(c.sdk("admin", 1));
    client.set_nonce_batch(8);
    let sign = |client: &tessera_client::Client, i: u32| {
        let message = format!("message {i}").into_bytes();
        let req = tessera_client::crypto::sign_request::SignRequest::Raw {
            message: message.clone(),
        };
        let signed = rt.block_on(client.sign("pre", &req)).unwrap();
        gk.verify_strict(&message, &Signature::from_bytes(&signed.signature))
            .expect("ed25519-dalek accepts the preprocessed signature");
        signed.signers
    };
    let mut signers = std::collections::BTreeSet::new();
    for i in 0..5 {
        signers.extend(sign(&client, i));
    }
    // t = 2 signers, each asked for commitments once (a batch of 8), then one share per message.
    assert_eq!(signers.len(), 2, "{signers:?}");
    let commits: usize = (1..=3).map(|id| audited(&c, id, "sign.commit")).sum();
    let shares: usize = (1..=3).map(|id| audited(&c, id, "sign.share")).sum();
    assert_eq!((commits, shares), (2, 10));

    // A signer restarts and forgets the nonces behind the client's remaining commitments.
    let restarted = *signers.iter().next().unwrap();
    c.stop(restarted);
    c.start_node(restarted);
    c.wait_leader(Duration::from_secs(30));
    c.wait_ready();
    for i in 5..8 {
        sign(&client, i);
    }
}

/// Signatures under way together share their round-2 calls: one `SignShares` call to a signer
/// carries several, and each still verifies. Through a cheating signer (node 2, asked first by
/// a client connected to it), every one of 32 concurrent signatures names node 2 alone and is
/// finished by the two honest signers. Each signer audits one line per share it was asked for.
#[test]
fn concurrent_signatures_share_calls_and_each_names_the_cheater() {
    let c = Cluster::start_with_byzantine(2);
    create(&c, "busy", "raw");
    let gk = VerifyingKey::from_bytes(&group_key(&c, 1, "busy")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let signed = rt.block_on(async {
        let mut client = c.sdk("admin", 2).await;
        client.set_nonce_batch(16);
        let all: Vec<_> = (0..32)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let message = format!("message {i}").into_bytes();
                    let req = tessera_client::crypto::sign_request::SignRequest::Raw {
                        message: message.clone(),
                    };
                    (message, client.sign("busy", &req).await)
                })
            })
            .collect();
        let mut done = Vec::new();
        for s in all {
            done.push(s.await.unwrap());
        }
        done
    });
    for (message, s) in signed {
        let s = s.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&message)));
        gk.verify_strict(&message, &Signature::from_bytes(&s.signature))
            .expect("ed25519-dalek accepts each signature");
        assert_eq!(s.cheaters, vec![2]);
        assert_eq!(s.signers, vec![1, 3]);
    }
    // Node 1 signed in both attempts of every signature, node 3 in the second: one line per
    // share. Some of node 1's calls carried several (their lines share one timestamp, taken
    // once per call).
    let lines = |id: u64| {
        let log = std::fs::read_to_string(c.node(id).data_dir.join("audit.log")).unwrap();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|j| j["operation"] == "sign.share" && j["path"] == "keys/busy")
            .collect::<Vec<_>>()
    };
    assert_eq!((lines(1).len(), lines(3).len()), (64, 32));
    let mut per_call = std::collections::BTreeMap::<String, usize>::new();
    for j in lines(1) {
        assert_eq!(j["outcome"], "ok");
        *per_call
            .entry(j["time"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        per_call.values().any(|n| *n > 1),
        "32 signatures at once were sent one call each: {per_call:?}"
    );
    assert_eq!(
        c.metric(
            1,
            "tessera_signature_shares_total{key=\"busy\",outcome=\"ok\",purpose=\"raw\"}"
        ),
        Some(64.0)
    );
}
