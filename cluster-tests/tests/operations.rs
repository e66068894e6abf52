//! Operator workflows: snapshot save and restore, JSON logs, and that no private key material
//! ever reaches a log, an audit line or a data directory.

use std::path::Path;
use std::process::Command;

use cluster_tests::{fails, ok, simple_policy, tessera_bin, Cluster, Opts};

#[test]
fn snapshot_save_and_restore_bring_back_groups_and_policies() {
    let c = Cluster::start(Opts::default());
    let policy = c.dir.join("p.hcl");
    std::fs::write(&policy, simple_policy("prod/*")).unwrap();
    ok(&c.cli(1, &["policy", "write", "keep", policy.to_str().unwrap()]));
    ok(&c.cli(1, &["group", "write", "team", "--members", "alice,bob"]));
    ok(&c.cli(1, &["policy", "attach", "keep", "--group", "team"]));

    let snap = c.dir.join("backup.json");
    ok(&c.cli(2, &["operator", "snapshot", "save", snap.to_str().unwrap()]));

    ok(&c.cli(1, &["group", "delete", "team"]));
    ok(&c.cli(1, &["policy", "delete", "keep"]));
    ok(&c.cli(1, &["policy", "write", "later", policy.to_str().unwrap()]));

    ok(&c.cli(
        3,
        &["operator", "snapshot", "restore", snap.to_str().unwrap()],
    ));
    for id in 1..=3 {
        let g = c.json(id, &["group", "read", "team"]);
        assert_eq!(g["members"], serde_json::json!(["alice", "bob"]));
        assert_eq!(g["policies"], serde_json::json!(["keep"]));
        let names = c.json(id, &["policy", "list"]);
        assert!(
            !names.as_array().unwrap().iter().any(|n| n == "later"),
            "{names}"
        );
    }

    // A file that is not a snapshot is refused and changes nothing.
    let junk = c.dir.join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    let err = fails(&c.cli(
        1,
        &["operator", "snapshot", "restore", junk.to_str().unwrap()],
    ));
    assert!(err.contains("not a Tessera snapshot"), "{err}");
    c.json(1, &["group", "read", "team"]);
}

fn pem_body(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn private_keys_never_reach_logs_audit_or_data_dirs() {
    let mut c = Cluster::start(Opts::default());
    ok(&c.cli(2, &["group", "write", "g", "--members", "a"]));
    ok(&c.cli(3, &["status"]));
    for id in 1..=3 {
        c.stop(id);
    }
    // Long fragments of every private key (client, CA and node keys).
    let mut canaries = vec![
        pem_body(&c.dir.join("admin.key")),
        pem_body(&c.dir.join("ca.key")),
    ];
    for id in 1..=3 {
        canaries.push(pem_body(&c.dir.join(format!("node{id}.key"))));
    }
    let mut files = Vec::new();
    for id in 1..=3 {
        files_under(&c.node(id).data_dir, &mut files);
        files.push(c.node(id).log.clone());
    }
    assert!(files.iter().any(|f| f.ends_with("audit.log")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for k in &canaries {
            // Any 40-character window of the key's base64 would betray it.
            for start in (0..k.len().saturating_sub(40)).step_by(40) {
                let frag = &k[start..start + 40];
                assert!(
                    !text.contains(frag),
                    "key material found in {}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn server_logs_json_when_asked() {
    let c = Cluster::init(Opts::default());
    let mut child = Command::new(tessera_bin())
        .args(["server", "--log-format", "json", "--config"])
        .arg(&c.node(1).config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let first = text.lines().next().expect("some log output");
    let v: serde_json::Value = serde_json::from_str(first).expect("a JSON log line");
    assert!(
        v.get("level").is_some() && v.get("fields").is_some(),
        "{first}"
    );
}
