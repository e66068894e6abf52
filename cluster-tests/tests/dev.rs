//! `tessera dev`: one command brings up a 5-node, 3-region cluster of real processes, and
//! SIGTERM stops every one of them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_tests::{free_host_and_base, tessera_bin};

#[test]
fn dev_starts_five_nodes_in_three_regions_and_stops_them_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (host, base) = free_host_and_base(5);
    let mut dev = Command::new(tessera_bin())
        .args([
            "dev",
            "--host",
            &host,
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(dev.stdout.take().unwrap());
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.contains("Ctrl-C") {
        assert!(Instant::now() < deadline, "dev did not come up: {printed}");
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("dev exited early: {printed}");
        }
        printed.push_str(&line);
    }
    assert!(printed.contains("leader"), "{printed}");
    assert!(
        printed.contains(&format!(
            "source {}/env.sh",
            dir.path().canonicalize().unwrap().display()
        )),
        "{printed}"
    );

    let status = Command::new(tessera_bin())
        .args(["status", "--format", "json"])
        .env("TESSERA_ADDR", format!("{host}:{}", base + 3))
        .env("TESSERA_CACERT", dir.path().join("ca.crt"))
        .env("TESSERA_CLIENT_CERT", dir.path().join("admin.crt"))
        .env("TESSERA_CLIENT_KEY", dir.path().join("admin.key"))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    assert!(nodes.iter().all(|n| n["reachable"] == true));
    let regions: std::collections::BTreeSet<&str> = nodes
        .iter()
        .map(|n| n["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions.len(), 3, "{regions:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "dev did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dev.wait().unwrap().success());
    // Every node process is gone: their API ports are free again.
    for i in 1..=5u16 {
        let port = base + i;
        let mut free = false;
        for _ in 0..50 {
            if std::net::TcpListener::bind((host.as_str(), port)).is_ok() {
                free = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(free, "node {i} still listening after dev stopped");
    }
}
