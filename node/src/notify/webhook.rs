//! One webhook endpoint: the signed POST of one event, over HTTP or HTTPS.
//!
//! The body is the event's JSON. `X-Tessera-Signature: sha256=<hex>` is HMAC-SHA256 over
//! exactly those bytes with the configured key, so a receiver can tell Tessera's events from
//! anyone else's; `X-Tessera-Event-Id` repeats the event's stable id, by which a receiver drops
//! the duplicates at-least-once delivery can bring.
//!
//! # Security
//!
//! The HMAC key is a credential of the receiver, not cluster data: it lives in a file on each
//! node (`[webhook] secret_file`), is held in memory that is wiped when dropped, and is never
//! logged or shown. So is the URL's path and query, which for many receivers (chat incoming
//! webhooks) is itself the credential: logs and errors name only scheme, host and port.
//! Events carry no secret material (paths, identities, reasons, times).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::config::WebhookConfig;

/// The shortest HMAC key accepted.
pub const MIN_SECRET_BYTES: usize = 16;

/// The HMAC-SHA256 key, wiped when dropped and never shown.
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn new(bytes: Vec<u8>) -> Result<WebhookSecret, WebhookError> {
        let bytes = Zeroizing::new(bytes);
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(WebhookError::Config(format!(
                "the webhook secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(WebhookSecret(Zeroizing::new(trimmed.to_vec())))
    }

    /// `sha256=<hex of HMAC-SHA256(key, body)>`, the `X-Tessera-Signature` header.
    pub fn signature(&self, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        format!(
            "sha256={}",
            hex::encode(ring::hmac::sign(&key, body).as_ref())
        )
    }
}

/// Why a delivery or the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook configuration: {0}")]
    Config(String),
    #[error("webhook {url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("webhook {url}: no answer within {ms} ms")]
    Timeout { url: String, ms: u64 },
    #[error("webhook {url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("webhook {url}: {reason}")]
    Protocol { url: String, reason: String },
}

/// Where events go, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let bad = |why: &str| WebhookError::Config(format!("the webhook url: {why}"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("must start with http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; use the HMAC secret",
        ));
    }
    if path.contains('#') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad(
            "the path may not hold spaces, control characters or a fragment",
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// The endpoint as logs and errors show it: no path, no query.
fn shown(t: &Target) -> String {
    let scheme = if t.tls { "https" } else { "http" };
    if t.host.contains(':') {
        format!("{scheme}://[{}]:{}/…", t.host, t.port)
    } else {
        format!("{scheme}://{}:{}/…", t.host, t.port)
    }
}

/// A configured endpoint, ready to deliver.
pub struct Webhook {
    url: String,
    target: Target,
    secret: WebhookSecret,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
    pub max_age_secs: u64,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).finish()
    }
}

const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn trust_roots(file: &Path) -> Result<rustls::RootCertStore, WebhookError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| WebhookError::Config(format!("ca_file {}: {e}", file.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        let c = c.map_err(|e| WebhookError::Config(format!("ca_file {}: {e}", file.display())))?;
        // A bundle may hold a certificate rustls cannot use; the others still count.
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(WebhookError::Config(format!(
            "ca_file {} holds no usable certificate",
            file.display()
        )));
    }
    Ok(roots)
}

impl Webhook {
    /// The endpoint `[webhook]` names, with its secret read from `secret_file`.
    pub fn from_config(c: &WebhookConfig) -> Result<Webhook, WebhookError> {
        let target = parse_url(&c.url)?;
        let secret = std::fs::read(&c.secret_file).map_err(|e| {
            WebhookError::Config(format!("secret_file {}: {e}", c.secret_file.display()))
        })?;
        let tls = if target.tls {
            let file = c.ca_file.clone().unwrap_or_else(|| SYSTEM_ROOTS.into());
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Config(e.to_string()))?
            .with_root_certificates(trust_roots(&file)?)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Webhook {
            url: shown(&target),
            target,
            secret: WebhookSecret::new(secret)?,
            timeout: Duration::from_millis(c.timeout_ms.max(1)),
            tls,
            max_age_secs: c.max_age_secs,
        })
    }

    /// The endpoint without its path and query (which may be a credential).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` as event `id`; `Ok` once the receiver answers 2xx.
    pub async fn deliver(&self, id: &str, event: &str, body: &[u8]) -> Result<(), WebhookError> {
        let ms = self.timeout.as_millis() as u64;
        tokio::time::timeout(self.timeout, self.post(id, event, body))
            .await
            .map_err(|_| WebhookError::Timeout {
                url: self.url.clone(),
                ms,
            })?
    }

    async fn post(&self, id: &str, event: &str, body: &[u8]) -> Result<(), WebhookError> {
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| WebhookError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tessera/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Tessera-Event: {event}\r\nX-Tessera-Event-Id: {id}\r\nX-Tessera-Signature: {}\r\nConnection: close\r\n\r\n",
            t.path,
            if (t.tls && t.port == 443) || (!t.tls && t.port == 80) {
                t.host.clone()
            } else {
                format!("{}:{}", t.host, t.port)
            },
            env!("CARGO_PKG_VERSION"),
            body.len(),
            self.secret.signature(body),
        )
        .into_bytes();
        head.extend_from_slice(body);
        let status = match &self.tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                    .map_err(|e| WebhookError::Config(format!("url {:?}: host: {e}", self.url)))?;
                let stream =
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| WebhookError::Connect {
                            url: self.url.clone(),
                            reason: format!("TLS: {e}"),
                        })?;
                exchange(stream, &head).await
            }
            None => exchange(tcp, &head).await,
        }
        .map_err(|reason| WebhookError::Protocol {
            url: self.url.clone(),
            reason,
        })?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(WebhookError::Status {
                url: self.url.clone(),
                status,
            })
        }
    }
}

/// Writes the request and reads the status code of the answer's first line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> Result<u16, String> {
    s.write_all(request).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !got.windows(2).any(|w| w == b"\r\n") {
        if got.len() > 8192 {
            return Err("the answer's first line is too long".into());
        }
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before an answer".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!(
            "not an HTTP answer: {:?}",
            line.lines().next().unwrap_or("")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls_are_parsed_or_refused_with_a_reason() {
        let t = parse_url("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (false, "127.0.0.1", 8080, "/hook?x=1")
        );
        let t = parse_url("https://hooks.example.com").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (true, 443, "/"));
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        for (bad, why) in [
            ("ftp://x/", "http:// or https://"),
            ("http://user:pw@x/", "credentials"),
            ("http://x:port/", "port"),
            ("http:///x", "no host"),
            ("http://x/a b", "spaces"),
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_and_the_key_stays_hidden() {
        // RFC 4231 test case 2 is for a 4-byte key; this checks against ring's verify instead,
        // and that a changed body or key gives another signature.
        let s = WebhookSecret::new(b"  0123456789abcdef-key \n".to_vec()).unwrap();
        let sig = s.signature(b"{\"a\":1}");
        let raw = hex::decode(sig.strip_prefix("sha256=").unwrap()).unwrap();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef-key");
        ring::hmac::verify(&key, b"{\"a\":1}", &raw).expect("valid HMAC");
        assert_ne!(sig, s.signature(b"{\"a\":2}"));
        assert_eq!(format!("{s:?}"), "WebhookSecret(..)");
        assert!(WebhookSecret::new(b"short".to_vec())
            .unwrap_err()
            .to_string()
            .contains("at least 16 bytes"));
    }

    async fn one_answer(answer: &'static str) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.ends_with(b"}") {
                    break;
                }
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            got
        });
        (url, h)
    }

    fn webhook(url: &str, dir: &Path) -> Webhook {
        let secret = dir.join("secret");
        std::fs::write(&secret, "0123456789abcdef0123").unwrap();
        Webhook::from_config(&WebhookConfig {
            url: url.into(),
            secret_file: secret,
            ca_file: None,
            timeout_ms: 2000,
            max_age_secs: 60,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_delivery_posts_the_body_with_its_id_and_signature_and_needs_a_2xx() {
        let dir = tempfile::tempdir().unwrap();
        let (url, h) = one_answer("HTTP/1.1 204 No Content\r\n\r\n").await;
        let w = webhook(&url, dir.path());
        w.deliver("r1.requested", "requested", b"{\"x\":1}")
            .await
            .unwrap();
        let got = String::from_utf8(h.await.unwrap()).unwrap();
        assert!(got.starts_with("POST /hook HTTP/1.1\r\n"), "{got}");
        assert!(got.contains("X-Tessera-Event-Id: r1.requested\r\n"));
        assert!(got.contains(&format!(
            "X-Tessera-Signature: {}\r\n",
            w.secret.signature(b"{\"x\":1}")
        )));
        assert!(got.ends_with("\r\n\r\n{\"x\":1}"));

        let (url, _h) = one_answer("HTTP/1.1 500 Oops\r\n\r\n").await;
        let e = webhook(&url, dir.path())
            .deliver("r1.requested", "requested", b"{}")
            .await
            .unwrap_err();
        assert!(matches!(e, WebhookError::Status { status: 500, .. }), "{e}");
        // The path (a credential for many receivers) is in no message.
        assert!(!e.to_string().contains("/hook"), "{e}");
        assert!(e.to_string().contains("http://127.0.0.1:"), "{e}");
    }
}
