//! A harness that runs real Tessera clusters: `tessera operator init` into a temporary
//! directory, one `tessera server` process per node on its own 127.0.0.x address, and the
//! `tessera` CLI (or the SDK) to drive them. Nothing is mocked: Raft, RocksDB, TLS and the
//! network are the ones users run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod webhook;

/// The `tessera` binary under test: `TESSERA_BIN`, or the one cargo built next to this test.
pub fn tessera_bin() -> PathBuf {
    workspace_bin("tessera", "TESSERA_BIN")
}

/// The `tessera-bench` binary (the benchmark lab, kept out of `tessera`): `TESSERA_BENCH_BIN`,
/// or the one cargo built next to this test.
pub fn bench_bin() -> PathBuf {
    workspace_bin("tessera-bench", "TESSERA_BENCH_BIN")
}

fn workspace_bin(name: &str, env: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build --bin {name}) or set {env}",
        bin.display()
    );
    // `cargo nextest run --workspace` rebuilds the binaries (their packages have integration
    // tests); `-p cluster-tests` alone does not, so say so when one looks stale.
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(b), Some(t)) = (mtime(&bin), mtime(&exe)) {
        if b < t {
            eprintln!(
                "warning: {} is older than this test binary; run `cargo build --bin {name}` or test with --workspace",
                bin.display()
            );
        }
    }
    bin
}

pub struct NodeProc {
    pub id: u64,
    pub config: PathBuf,
    pub api_addr: String,
    pub metrics_addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub host: String,
    pub nodes: Vec<NodeProc>,
}

/// Options for `Cluster::init`.
pub struct Opts<'a> {
    pub nodes: u64,
    pub regions: &'a str,
    pub snapshot_every: Option<u64>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Self {
            nodes: 3,
            regions: "a,b,c",
            snapshot_every: None,
        }
    }
}

/// A fresh temporary directory for one cluster (removed when the cluster is dropped).
fn test_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("tessera-test-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

/// A loopback address and base port with every port the cluster needs free.
pub fn free_host_and_base(nodes: u64) -> (String, u16) {
    for _ in 0..200 {
        let host = format!(
            "127.0.{}.{}",
            rand08::random::<u8>() % 200 + 1,
            rand08::random::<u8>() % 250 + 2
        );
        let base: u16 = 20000 + (rand08::random::<u16>() % 300) * 100;
        let ports = (1..=nodes).flat_map(|i| [base + i as u16, base + 100 + i as u16]);
        let all_free = ports
            .into_iter()
            .all(|p| TcpListener::bind((host.as_str(), p)).is_ok());
        if all_free {
            return (host, base);
        }
    }
    panic!("no free loopback ports found");
}

impl Cluster {
    /// Initializes (does not start) a cluster in a fresh temporary directory.
    pub fn init(o: Opts) -> Cluster {
        let (tmp, dir) = test_dir();
        let (host, base) = free_host_and_base(o.nodes);
        let mut args = vec![
            "operator".to_string(),
            "init".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--nodes".into(),
            o.nodes.to_string(),
            "--regions".into(),
            o.regions.into(),
            "--host".into(),
            host.clone(),
            "--base-port".into(),
            base.to_string(),
        ];
        if let Some(n) = o.snapshot_every {
            args.push("--snapshot-every".into());
            args.push(n.to_string());
        }
        let out = Command::new(tessera_bin())
            .args(&args)
            .output()
            .expect("run tessera operator init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nodes = (1..=o.nodes)
            .map(|id| NodeProc {
                id,
                config: dir.join(format!("node{id}.toml")),
                api_addr: format!("{host}:{}", base as u64 + id),
                metrics_addr: format!("{host}:{}", base as u64 + 100 + id),
                data_dir: dir.join(format!("node{id}")),
                log: dir.join(format!("node{id}.log")),
                child: None,
            })
            .collect();
        Cluster {
            dir,
            _tmp: tmp,
            host,
            nodes,
        }
    }

    /// Enrols (does not start) a cluster the way a real one is: the CA and the admin key in
    /// `dir` (`operator ca init`, `ca sign`, `operator genesis`), and each node's keys made in
    /// its own directory `dir/hostN` (`node init`); only public files are copied between them.
    pub fn enrolled(o: Opts) -> Cluster {
        let (tmp, dir) = test_dir();
        let (host, base) = free_host_and_base(o.nodes);
        let run = |args: &[&str]| {
            let out = Command::new(tessera_bin())
                .args(args)
                .output()
                .expect("run tessera");
            ok(&out)
        };
        let d = dir.display().to_string();
        run(&["operator", "ca", "init", "--dir", &d]);
        let regions: Vec<&str> = o.regions.split(',').collect();
        let mut nodes = Vec::new();
        for id in 1..=o.nodes {
            let home = dir.join(format!("host{id}"));
            let api_addr = format!("{host}:{}", base as u64 + id);
            let metrics_addr = format!("{host}:{}", base as u64 + 100 + id);
            run(&[
                "node",
                "init",
                "--dir",
                home.to_str().unwrap(),
                "--id",
                &id.to_string(),
                "--region",
                regions[(id as usize - 1) % regions.len()],
                "--api-addr",
                &api_addr,
                "--metrics-addr",
                &metrics_addr,
                "--ca-cert",
                dir.join("ca.crt").to_str().unwrap(),
            ]);
            let request = home.join(format!("node{id}.request.json"));
            run(&[
                "operator",
                "ca",
                "sign",
                request.to_str().unwrap(),
                "--dir",
                &d,
            ]);
            std::fs::copy(
                dir.join("nodes").join(format!("node{id}.crt")),
                home.join(format!("node{id}.crt")),
            )
            .expect("copy the certificate");
            nodes.push(NodeProc {
                id,
                config: home.join(format!("node{id}.toml")),
                api_addr,
                metrics_addr,
                data_dir: home.join(format!("node{id}")),
                log: dir.join(format!("node{id}.log")),
                child: None,
            });
        }
        let ids: Vec<String> = (1..=o.nodes).map(|i| i.to_string()).collect();
        run(&[
            "operator",
            "genesis",
            "--dir",
            &d,
            "--nodes",
            &ids.join(","),
        ]);
        for id in 1..=o.nodes {
            std::fs::copy(
                dir.join("genesis.json"),
                dir.join(format!("host{id}")).join("genesis.json"),
            )
            .expect("copy the genesis");
        }
        Cluster {
            dir,
            _tmp: tmp,
            host,
            nodes,
        }
    }

    /// Initializes and starts every node, then waits for a leader.
    pub fn start(o: Opts) -> Cluster {
        let mut c = Cluster::init(o);
        for id in 1..=c.nodes.len() as u64 {
            c.start_node(id);
        }
        c.wait_leader(Duration::from_secs(30));
        c.wait_ready();
        c
    }

    /// Starts a 3-node cluster in which node `byzantine` (a `byzantine-test` build) corrupts
    /// every share and signature share it releases and every write receipt it signs for another
    /// node, and waits until it is ready.
    pub fn start_with_byzantine(byzantine: u64) -> Cluster {
        let mut c = Cluster::init(Opts::default());
        for id in 1..=3 {
            if id == byzantine {
                c.start_node_with_env(id, &[("TESSERA_TEST_CORRUPT_RELEASES", "1")]);
            } else {
                c.start_node(id);
            }
        }
        c.wait_leader(Duration::from_secs(30));
        c.wait_ready();
        assert!(
            c.wait_log(byzantine, "TEST BUILD", Duration::from_secs(5)),
            "node {byzantine} is not a byzantine-test build"
        );
        c
    }

    /// Waits (at most `timeout`) until node `id`'s log says `needle`; whether it did.
    pub fn wait_log(&self, id: u64, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.node(id).log).unwrap_or_default();
            if log.contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the first leader has written the threshold into the replicated settings.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.cli(1, &["operator", "topology", "--format", "json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if v["threshold"].as_u64().unwrap_or(0) > 0 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never set its threshold"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes node `id`'s certificate, keys and config for a node that will join
    /// (`tessera operator node-config`), without registering or starting it.
    pub fn node_config(&self, id: u64, region: &str) {
        let out = Command::new(tessera_bin())
            .args([
                "operator",
                "node-config",
                "--id",
                &id.to_string(),
                "--region",
                region,
            ])
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("run tessera operator node-config");
        ok(&out);
    }

    /// A node that will join: its config written, registered, started and listening (not yet
    /// a member: `operator members add` makes it one).
    pub fn start_joiner(&mut self, id: u64, region: &str) {
        self.node_config(id, region);
        self.add_node(id);
        self.start_node(id);
        self.wait_listening(id);
    }

    /// Registers a node whose config `tessera operator node-config` wrote (not started).
    pub fn add_node(&mut self, id: u64) {
        let config = self.dir.join(format!("node{id}.toml"));
        let text = std::fs::read_to_string(&config).expect("node config");
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{k} missing in {}", config.display()))
                .to_string()
        };
        self.nodes.push(NodeProc {
            id,
            api_addr: field("api_addr"),
            metrics_addr: field("metrics_addr"),
            data_dir: self.dir.join(format!("node{id}")),
            log: self.dir.join(format!("node{id}.log")),
            config,
            child: None,
        });
        assert_eq!(self.nodes.len() as u64, id, "nodes are numbered 1..=n");
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    pub fn start_node(&mut self, id: u64) {
        self.start_node_with_env(id, &[]);
    }

    /// Starts node `id` with extra environment variables.
    pub fn start_node_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let n = &mut self.nodes[(id - 1) as usize];
        assert!(n.child.is_none(), "node {id} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("node log");
        let child = Command::new(tessera_bin())
            .args(["server", "--config"])
            .arg(&n.config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tessera server");
        n.child = Some(child);
    }

    /// Makes node `id` the leader: stops whichever other node leads, until `id` wins an
    /// election (every node stays running afterwards).
    pub fn make_leader(&mut self, id: u64) {
        for _ in 0..20 {
            let leader = self.wait_leader(Duration::from_secs(30));
            if leader == id {
                return;
            }
            self.stop(leader);
            let deadline = Instant::now() + Duration::from_secs(20);
            while self
                .status(id)
                .and_then(|s| s["leader"].as_u64())
                .is_none_or(|l| l == leader)
            {
                assert!(
                    Instant::now() < deadline,
                    "no new leader after stopping {leader}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            self.start_node(leader);
        }
        assert_eq!(
            self.wait_leader(Duration::from_secs(30)),
            id,
            "node {id} never led"
        );
    }

    /// Waits until node `id` accepts connections on its API port.
    pub fn wait_listening(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.node(id).api_addr).is_err() {
            assert!(Instant::now() < deadline, "node {id} never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no shutdown, no flush beyond what was already synced.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the node keeps its connections open and answers nothing (a hung process).
    pub fn pause(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, id: u64, sig: nix::sys::signal::Signal) {
        let c = self.nodes[(id - 1) as usize]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig)
            .unwrap_or_else(|e| panic!("{sig} to node {id}: {e}"));
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        match &mut self.nodes[(id - 1) as usize].child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Environment for the CLI as `identity` (whose cert/key are in the cluster dir), talking
    /// to node `via`.
    pub fn cli_as(&self, identity: &str, via: u64, args: &[&str]) -> Output {
        self.run_as(tessera_bin(), identity, via, args)
    }

    /// `tessera-bench` as the admin, through node `via`.
    pub fn bench(&self, via: u64, args: &[&str]) -> Output {
        self.run_as(bench_bin(), "admin", via, args)
    }

    /// A client binary with the connection environment of `identity` through node `via`.
    fn run_as(&self, bin: PathBuf, identity: &str, via: u64, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env("TESSERA_ADDR", &self.node(via).api_addr)
            .env("TESSERA_CACERT", self.dir.join("ca.crt"))
            .env(
                "TESSERA_CLIENT_CERT",
                self.dir.join(format!("{identity}.crt")),
            )
            .env(
                "TESSERA_CLIENT_KEY",
                self.dir.join(format!("{identity}.key")),
            )
            .env_remove("TESSERA_TLS_SERVER_NAME")
            .output()
            .expect("run a client binary")
    }

    /// The CLI as the admin created by init, through node `via`.
    pub fn cli(&self, via: u64, args: &[&str]) -> Output {
        self.cli_as("admin", via, args)
    }

    /// Runs a CLI command with `--format json` that must succeed, and parses its output.
    pub fn json(&self, via: u64, args: &[&str]) -> Value {
        self.json_as("admin", via, args)
    }

    /// `json`, as `identity`.
    pub fn json_as(&self, identity: &str, via: u64, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.cli_as(identity, via, &a);
        assert!(
            out.status.success(),
            "tessera {args:?} via node {via} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    /// `tessera status --format json` through `via`, or None if it failed.
    pub fn status(&self, via: u64) -> Option<Value> {
        let out = self.cli(via, &["status", "--format", "json", "--timeout", "5"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until some running node reports a leader that every reachable node agrees on,
    /// and every running node listens on its API address (a node still opening its storage
    /// would otherwise refuse the test's next connection).
    pub fn wait_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<u64> = (1..=self.nodes.len() as u64)
                .filter(|id| self.is_running(*id))
                .collect();
            let listening = running.iter().all(|id| {
                let addr = &self.node(*id).api_addr;
                addr.parse()
                    .ok()
                    .and_then(|a| {
                        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok()
                    })
                    .is_some()
            });
            for id in running.iter().filter(|_| listening) {
                if let Some(s) = self.status(*id) {
                    if let Some(l) = s["leader"].as_u64() {
                        if running.contains(&l) {
                            return l;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {timeout:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Issues a client certificate for `name` (files in the cluster dir).
    pub fn client_cert(&self, name: &str) {
        let out = Command::new(tessera_bin())
            .args(["operator", "client-cert", name, "--dir"])
            .arg(&self.dir)
            .output()
            .expect("client-cert");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fetches `/metrics` from node `id` with a plain HTTP/1.1 GET.
    pub fn metrics(&self, id: u64) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(&self.node(id).metrics_addr).expect("metrics port");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).expect("read metrics");
        let (head, body) = buf.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    }

    /// One metric's value (first series whose line starts with `name`, labels included).
    pub fn metric(&self, id: u64, name: &str) -> Option<f64> {
        self.metrics(id)
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// An SDK client for node `via` as `identity`.
    pub async fn sdk(&self, identity: &str, via: u64) -> tessera_client::Client {
        let cfg = tessera_client::ClientConfig {
            address: self.node(via).api_addr.clone(),
            ca_cert: self.dir.join("ca.crt"),
            client_cert: Some(self.dir.join(format!("{identity}.crt"))),
            client_key: Some(self.dir.join(format!("{identity}.key"))),
            server_name: None,
            timeout: Duration::from_secs(15),
        };
        tessera_client::Client::connect(&cfg)
            .await
            .expect("connect")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            // Keep the evidence: print the tail of each node's log.
            for n in &self.nodes {
                if let Ok(log) = std::fs::read_to_string(&n.log) {
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    eprintln!("---- node{} log (last lines) ----", n.id);
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// Asks the forging node (see `byzantine::forge`) to append `spec`; its answer.
pub fn forge(dir: &Path, name: &str, spec: &str) -> String {
    let result = dir.join(format!("{name}.result"));
    std::fs::write(dir.join(format!("{name}.tmp")), spec).unwrap();
    std::fs::rename(
        dir.join(format!("{name}.tmp")),
        dir.join(format!("{name}.forge")),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(answer) = std::fs::read_to_string(&result) {
            return answer;
        }
        assert!(Instant::now() < deadline, "no answer to {spec:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `forge`, while node 1 leads: under load an election can move the lead away between
/// `make_leader` and the forgery (the forger then answers that it is not the leader and forges
/// nothing), so node 1 is made leader again and asked again.
pub fn forge_leading(c: &mut Cluster, dir: &Path, name: &str, spec: &str) -> String {
    for attempt in 0..3 {
        let answer = forge(dir, &format!("{name}{attempt}"), spec);
        if answer != "failed=this node is not the leader" {
            return answer;
        }
        c.make_leader(1);
    }
    panic!("node 1 never led long enough to forge {spec:?}");
}

/// A cluster whose node 1 (a `byzantine-test` build with a forger) leads; the forger's
/// directory.
pub fn byzantine_leader() -> (Cluster, std::path::PathBuf) {
    let mut c = Cluster::init(Opts::default());
    let forge_dir = c.dir.join("forge");
    std::fs::create_dir(&forge_dir).unwrap();
    let forge_env = forge_dir.display().to_string();
    c.start_node_with_env(1, &[("TESSERA_TEST_FORGE_DIR", &forge_env)]);
    c.start_node(2);
    c.start_node(3);
    c.wait_ready();
    c.make_leader(1);
    (c, forge_dir)
}

/// Asserts a CLI call succeeded, showing stderr if not.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a CLI call failed, returning its stderr.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "command unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A policy that grants read on one path prefix.
pub fn simple_policy(prefix: &str) -> String {
    format!("path \"{prefix}\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n")
}

/// A real OpenSSH server that trusts one SSH CA key, on a free loopback port, and a user key
/// to log in with (for tests that check threshold-signed certificates the way sshd does).
pub struct Sshd {
    dir: PathBuf,
    host: String,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Makes the host key and the user key (`id`, `id.pub`) in `dir`.
    pub fn keys(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        for name in ["host_key", "id"] {
            ok(&Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .output()
                .expect("ssh-keygen"));
        }
        Sshd {
            dir: dir.to_path_buf(),
            host: String::new(),
            port: 0,
            child: None,
        }
    }

    /// The user's public key, to be certified.
    pub fn user_pub(&self) -> PathBuf {
        self.dir.join("id.pub")
    }

    /// Starts sshd trusting `ca_pub` (an OpenSSH public key line) for user certificates.
    pub fn start(mut self, ca_pub: &str) -> Sshd {
        let d = &self.dir;
        std::fs::write(d.join("ca.pub"), ca_pub).unwrap();
        let (host, base) = free_host_and_base(1);
        let port = base + 50;
        assert!(TcpListener::bind((host.as_str(), port)).is_ok());
        std::fs::create_dir_all("/run/sshd").unwrap();
        let config = format!(
            "Port {port}\nListenAddress {host}\nHostKey {hk}\nTrustedUserCAKeys {ca}\nAuthorizedKeysFile none\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile {pid}\n",
            hk = d.join("host_key").display(),
            ca = d.join("ca.pub").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (Debian openssh-server, installed by .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host.as_str(), port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.host = host;
        self.port = port;
        self.child = Some(child);
        self
    }

    /// `ssh root@host echo logged-in` with the user key and certificate `cert`.
    pub fn login(&self, cert: &Path) -> Output {
        Command::new("ssh")
            .args(["-i", self.dir.join("id").to_str().unwrap(), "-o"])
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=5",
                "-p",
                &self.port.to_string(),
            ])
            .arg(format!("root@{}", self.host))
            .arg("echo logged-in")
            .output()
            .unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
