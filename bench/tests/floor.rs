//! `tessera-bench floor`: the pieces of one read, measured without a cluster.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
}

#[test]
fn bench_floor_measures_a_reads_pieces_without_a_cluster_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench()
        .args(["floor", "--iterations", "30", "--format", "json"])
        .arg("--dir")
        .arg(dir.path())
        .env_remove("TESSERA_ADDR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["threshold"], 2);
    let pieces = v["pieces"].as_array().unwrap();
    assert_eq!(pieces.len(), 8, "{v}");
    // The floor holds one call over the transport the nodes speak, not a bare TCP trip.
    let counted = |prefix: &str| {
        pieces
            .iter()
            .find(|p| p["piece"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no piece {prefix:?}: {v}"))["in_floor"]
            .as_bool()
            .unwrap()
    };
    assert!(counted("one gRPC call over mutual TLS"), "{v}");
    assert!(!counted("loopback TCP round trip"), "{v}");
    assert!(counted("audit line synced, t holders at once"), "{v}");
    let mut in_floor = 0.0;
    for p in pieces {
        let (p50, p99) = (p["p50_us"].as_f64().unwrap(), p["p99_us"].as_f64().unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "{p}");
        if p["in_floor"].as_bool().unwrap() {
            in_floor += p50;
        }
    }
    // The floor is the sum of the medians it counts, and the rate its inverse.
    let floor = v["floor_us"].as_f64().unwrap();
    assert!((floor - in_floor).abs() < 1e-6, "{v}");
    let rate = v["max_reads_per_sec_at_1"].as_f64().unwrap();
    assert!((rate * floor - 1e6).abs() < 1.0, "{v}");
    // The audit logs it synced are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Arguments out of range are refused before anything is made.
    let out = bench()
        .args(["floor", "--threshold", "1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threshold 1"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
