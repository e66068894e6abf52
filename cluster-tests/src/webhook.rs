//! A loopback webhook receiver for the tests: it accepts the cluster's POSTs, checks each
//! one's HMAC-SHA256 signature with the shared key the way a real receiver would, and keeps
//! what it accepted. It can be told to answer 500 (a receiver that is down) to make the
//! cluster retry.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The receiver's URL path, which no node may log.
pub const PATH_TOKEN: &str = "services/T0KEN-IN-THE-PATH";

/// One POST the receiver answered 2xx.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `X-Tessera-Event-Id`.
    pub id: String,
    /// The parsed JSON body.
    pub body: Value,
    /// Whether `X-Tessera-Signature` is HMAC-SHA256 of the body with the shared key.
    pub valid_hmac: bool,
}

pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
    /// Answer 500 to every POST while set.
    pub failing: Arc<AtomicBool>,
    /// POSTs answered 500.
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Listens on `host` (a free port) and checks signatures with `key`.
    pub fn start(host: &str, key: &[u8]) -> Receiver {
        let listener = TcpListener::bind((host, 0)).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        // The path stands for a credential (as chat webhooks carry one): nodes must not log it.
        let url = format!("http://{}/{PATH_TOKEN}", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            got: Arc::default(),
            failing: Arc::default(),
            refused: Arc::default(),
            stop: Arc::default(),
        };
        let (got, failing, refused, stop) = (
            r.got.clone(),
            r.failing.clone(),
            r.refused.clone(),
            r.stop.clone(),
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let fail = failing.load(Ordering::Relaxed);
                        if let Some(d) = serve(s, &key, fail) {
                            if fail {
                                refused.fetch_add(1, Ordering::Relaxed);
                            } else {
                                got.lock().unwrap().push(d);
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        r
    }

    /// Every delivery accepted so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) until a delivery with event id `id` was accepted.
    pub fn wait_for(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.deliveries().iter().any(|d| d.id == id) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request, answers it, and returns what it carried.
fn serve(mut s: TcpStream, key: &ring::hmac::Key, fail: bool) -> Option<Delivery> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let len: usize = header("content-length")?.parse().ok()?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..head_end + len];
    let valid_hmac = header("x-tessera-signature")
        .and_then(|v| v.strip_prefix("sha256=").map(str::to_string))
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|sig| ring::hmac::verify(key, body, &sig).is_ok());
    let answer: &[u8] = if fail {
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    } else {
        b"HTTP/1.1 204 No Content\r\n\r\n"
    };
    let _ = s.write_all(answer);
    Some(Delivery {
        id: header("x-tessera-event-id").unwrap_or_default(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        valid_hmac,
    })
}
