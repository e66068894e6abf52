//! The `tessera` binary's local commands (`operator init`, `operator client-cert`), bad input,
//! and what it leaves out. (Having an integration test here also makes cargo build the binary that
//! `cluster-tests` runs.)

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

#[test]
fn init_writes_configs_certificates_and_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let out = tessera()
        .args([
            "operator",
            "init",
            "--nodes",
            "3",
            "--regions",
            "eu,us,ap",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.key", "admin.key", "node1.key", "node2.key", "node3.key"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    let cfg = std::fs::read_to_string(dir.path().join("node2.toml")).unwrap();
    assert!(cfg.contains("region = \"us\""), "{cfg}");
    assert!(cfg.contains("api_addr = \"127.0.0.1:7102\""), "{cfg}");
    let env = std::fs::read_to_string(dir.path().join("env.sh")).unwrap();
    for v in [
        "TESSERA_ADDR",
        "TESSERA_CACERT",
        "TESSERA_CLIENT_CERT",
        "TESSERA_CLIENT_KEY",
    ] {
        assert!(env.contains(&format!("export {v}=")), "{env}");
    }

    // A second init into the same directory is refused and changes nothing.
    let before = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let again = tessera()
        .args(["operator", "init", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a cluster"));
    assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), before);

    // client-cert issues NAME.crt/.key (0600)/.env.sh from the same CA.
    let cc = tessera()
        .args(["operator", "client-cert", "alice", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let mode = std::fs::metadata(dir.path().join("alice.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let env = std::fs::read_to_string(dir.path().join("alice.env.sh")).unwrap();
    assert!(env.contains("alice.crt"));

    // Node names are reserved for node certificates.
    let cc = tessera()
        .args(["operator", "client-cert", "node1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!cc.status.success());
}

#[test]
fn bad_init_arguments_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = tessera()
        .args(["operator", "init", "--nodes", "0", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes"));
    let out = tessera()
        .args(["operator", "init", "--host", "not-an-ip", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--host"));
}

#[test]
fn client_commands_without_an_address_say_what_to_set() {
    let out = tessera()
        .arg("status")
        .env_remove("TESSERA_ADDR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TESSERA_ADDR"));
}

#[test]
fn the_product_binary_has_no_benchmark_lab() {
    // Benchmarks live in `tessera-bench`; the `tessera` a user installs has no load generator,
    // echo server or fake Raft in it.
    let out = tessera()
        .args(["bench", "floor"])
        .env_remove("TESSERA_ADDR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'bench'"));
}
