//! Replicated time: the leader stamps each entry with its clock, every follower refuses an entry
//! stamped far from its own clock, and the voters' clocks decide whose is wrong. A node whose
//! clock runs 60 s fast (libfaketime) cannot put its time into the replicated state, as leader
//! or as the node that takes a request, and a leader with such a clock is replaced.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster_tests::{ok, Cluster, Opts};

/// libfaketime, as Debian's `libfaketime` package installs it.
fn libfaketime() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("libfaketime is missing: scripts/setup.sh installs it (Debian package faketime)")
}

/// Unix seconds of an RFC 3339 time in UTC (`2026-12-06T14:20:11.123Z`).
fn unix_of(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().expect(t) };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The creation time of `path`'s latest version, read through node `via`.
fn created(c: &Cluster, via: u64, path: &str) -> i64 {
    let m = c.json(via, &["kv", "metadata", "get", path]);
    unix_of(m["created_time"].as_str().expect("created_time"))
}

/// Puts through `via`, again while the cluster changes leader (up to 40 s).
fn put_eventually(c: &Cluster, via: u64, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = c.cli(via, &["kv", "put", path, "v=1"]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the write never went through: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn set_offset(file: &Path, offset: &str) {
    std::fs::write(file, offset).unwrap();
    // libfaketime reads the file again at most once a second.
    std::thread::sleep(Duration::from_millis(2500));
}

fn log_of(c: &Cluster, id: u64) -> String {
    std::fs::read_to_string(&c.node(id).log).unwrap()
}

#[test]
fn a_node_whose_clock_is_off_cannot_move_the_replicated_time() {
    let mut c = Cluster::init(Opts::default());
    let clock = c.dir.join("clock3");
    std::fs::write(&clock, "+0").unwrap();
    let lib = libfaketime();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
        ("FAKETIME_CACHE_DURATION", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    c.start_node(1);
    c.start_node(2);
    c.start_node_with_env(3, &env);
    c.wait_ready();
    c.make_leader(3);
    ok(&c.cli(1, &["kv", "put", "app/before", "v=1"]));
    assert!((created(&c, 1, "app/before") - now()).abs() <= 5);

    // Node 3 leads, and its clock jumps a minute ahead. Its next entry is refused by both
    // followers, whose clocks agree with each other: they stop following it and elect a
    // leader with a good clock, and the write goes through with the real time.
    set_offset(&clock, "+60s");
    put_eventually(&c, 1, "app/led");
    let leader = c.wait_leader(Duration::from_secs(30));
    assert_ne!(leader, 3, "the node with the wrong clock still leads");
    let t = created(&c, 2, "app/led");
    assert!((t - now()).abs() <= 10, "recorded {t}, now {}", now());
    let followers = log_of(&c, 1) + &log_of(&c, 2);
    assert!(
        followers.contains("the leader's clock is off by +")
            && followers.contains("no longer following it"),
        "no follower judged the leader's clock"
    );

    // A follower with a fast clock takes a write: the time recorded is still the leader's, and
    // node 3 says its own clock is off. (20 s this time: a node a minute fast refuses every
    // signed request as expired by its own clock, which it checks when it takes one.)
    let out = c.cli(3, &["kv", "put", "app/x", "v=1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expired by this node's clock"), "{err}");
    set_offset(&clock, "+20s");
    put_eventually(&c, 3, "app/followed");
    let t = created(&c, 3, "app/followed");
    assert!((t - now()).abs() <= 10, "recorded {t}, now {}", now());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log_of(&c, 3).contains("this node's clock is off by +") {
        assert!(
            Instant::now() < deadline,
            "node 3 never said its clock is off"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it keeps up, taking entries once they are committed.
    let got = c.json(3, &["kv", "get", "app/led"]);
    assert_eq!(got["data"]["v"], "1", "{got}");
}
