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

/// The private part of a PKCS#8 key file (P-256 or Ed25519): the 32 bytes of the private key
/// itself. The rest of a key file is public (the algorithm, and for P-256 the public key, which
/// every certificate carries), so it is no canary.
fn private_scalar(path: &Path) -> Vec<u8> {
    use base64::Engine;
    let body: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // The private key is the first OCTET STRING of 32 bytes (04 20) in both encodings.
    let at = der
        .windows(2)
        .position(|w| w == [0x04, 0x20])
        .expect("a PKCS#8 key");
    der[at + 2..at + 34].to_vec()
}

/// Whether `bytes` hold any needle, also once line breaks are taken out (PEM and wrapped base64
/// break lines every 64 characters).
fn holds(bytes: &[u8], needles: &[&[u8]]) -> bool {
    let unwrapped: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect();
    needles.iter().any(|n| {
        bytes.windows(n.len()).any(|w| w == *n) || unwrapped.windows(n.len()).any(|w| w == *n)
    })
}

/// Ways a 32-byte secret could be written down: as it is, in hex, and in base64 at each of the
/// three alignments (without the edge characters that depend on neighbouring bytes).
fn spellings(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![secret.to_vec(), hex::encode(secret).into_bytes()];
    for pad in 0..3 {
        let mut padded = vec![0u8; pad];
        padded.extend_from_slice(secret);
        let enc = b64.encode(&padded);
        out.push(enc.as_bytes()[4..enc.len() - 4].to_vec());
    }
    out
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
    // Every private key (client, CA and node TLS keys), in every spelling.
    let mut keys = vec![c.dir.join("admin.key"), c.dir.join("ca.key")];
    for id in 1..=3 {
        keys.push(c.dir.join(format!("node{id}.key")));
    }
    let canaries: Vec<(String, Vec<u8>)> = keys
        .iter()
        .flat_map(|k| {
            let name = k.display().to_string();
            spellings(&private_scalar(k))
                .into_iter()
                .map(move |s| (name.clone(), s))
        })
        .collect();
    // The search finds each key where it is: in its own file.
    for k in &keys {
        let spelled = spellings(&private_scalar(k));
        let needles: Vec<&[u8]> = spelled.iter().map(Vec::as_slice).collect();
        let found = holds(&std::fs::read(k).unwrap(), &needles);
        assert!(found, "the search does not find {} in itself", k.display());
    }
    let mut files = Vec::new();
    for id in 1..=3 {
        files_under(&c.node(id).data_dir, &mut files);
        files.push(c.node(id).log.clone());
    }
    assert!(files.iter().any(|f| f.ends_with("audit.log")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for (key, needle) in &canaries {
            assert!(
                !holds(&bytes, &[needle.as_slice()]),
                "the private key of {key} is in {}",
                f.display()
            );
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
