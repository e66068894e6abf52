//! `tessera key ...`, `tessera sign`, `tessera ssh sign`, `tessera jwt issue`: threshold keys
//! and what they sign. The client coordinates each signature; no key ever exists whole.

use std::path::PathBuf;

use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tessera_client::crypto::jwt::{jwks, JwtRequest};
use tessera_client::crypto::sign_request::SignRequest;
use tessera_client::crypto::ssh::{parse_public_key_line, public_key_line, CertRequest};
use tessera_client::Client;

use super::output::{pairs, table, Out};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use tessera_client::crypto::purpose::KeyPurpose;

/// `--purpose`: one of the key purposes, by name (clap lists them on a bad value).
fn purpose_parser() -> impl TypedValueParser<Value = KeyPurpose> {
    PossibleValuesParser::new(KeyPurpose::ALL.map(KeyPurpose::as_str))
        .map(|name| name.parse().expect("one of KeyPurpose::ALL"))
}

use super::{Failure, Format};

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Generate a threshold key by distributed key generation among the voters.
    Create {
        name: String,
        #[arg(long, value_parser = purpose_parser())]
        purpose: KeyPurpose,
        /// Seconds the key generation may take before it is aborted.
        #[arg(long, default_value_t = 20)]
        dkg_timeout: u32,
    },
    /// Show a key: purpose, status, group public key, participants.
    Read {
        name: String,
    },
    List,
    /// Print the public key: `--format openssh` (for sshd's TrustedUserCAKeys or
    /// known_hosts' @cert-authority), `jwks`, `hex` or `base64`.
    Public {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum RoleCmd {
    /// Set the role of an SSH CA key.
    Write {
        key: String,
        /// Principal patterns (`*`, `+` globs), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        allowed_principals: Vec<String>,
        /// Extensions certificates may carry, comma-separated.
        #[arg(long, value_delimiter = ',')]
        allowed_extensions: Vec<String>,
        /// Longest certificate lifetime, e.g. 8h.
        #[arg(long, default_value = "8h")]
        max_ttl: String,
    },
    /// Show the role of an SSH CA key.
    Read { key: String },
}

pub async fn run_role(cmd: RoleCmd, c: &Client, out: Out) -> Result<(), Failure> {
    match cmd {
        RoleCmd::Write {
            key,
            allowed_principals,
            allowed_extensions,
            max_ttl,
        } => {
            let max_ttl_seconds = parse_ttl(&max_ttl)?;
            let index = c
                .ssh_role_write(tessera_client::proto::SshRoleRequest {
                    key: key.clone(),
                    allowed_principals,
                    allowed_extensions,
                    max_ttl_seconds,
                })
                .await?;
            out.emit(json!({ "index": index }), || {
                println!("Success! Set the SSH role of key {key}")
            });
        }
        RoleCmd::Read { key } => {
            let k = c.key_read(&key).await?;
            out.emit(
                json!({ "key": key, "allowed_principals": k.ssh_allowed_principals, "allowed_extensions": k.ssh_allowed_extensions, "max_ttl_seconds": k.ssh_max_ttl_seconds }),
                || {
                    if k.ssh_allowed_principals.is_empty() {
                        println!("key {key} has no SSH role: any principal and extension, lifetime up to 7 days");
                    } else {
                        pairs(&[
                            ("allowed principals", k.ssh_allowed_principals.join(", ")),
                            ("allowed extensions", k.ssh_allowed_extensions.join(", ")),
                            ("max ttl", format!("{} s", k.ssh_max_ttl_seconds)),
                        ]);
                    }
                },
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CertType {
    User,
    Host,
}

#[derive(Args)]
pub struct SshSign {
    key: String,
    /// Sign under this break-glass grant (default, for a gated key: your active grant for
    /// it). Each signature spends one use.
    #[arg(long)]
    grant: Option<String>,
    /// The subject's OpenSSH public key file (ssh-ed25519).
    #[arg(long)]
    public_key: PathBuf,
    #[arg(long, value_delimiter = ',', required = true)]
    principals: Vec<String>,
    /// Lifetime, e.g. 30m, 1h, 2d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    #[arg(long = "type", value_enum, default_value_t = CertType::User)]
    cert_type: CertType,
    /// Extensions, e.g. permit-pty (repeatable).
    #[arg(long = "extension")]
    extensions: Vec<String>,
    /// Key id recorded in the certificate (default: the first principal).
    #[arg(long)]
    key_id: Option<String>,
    /// Write the certificate here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct JwtIssue {
    key: String,
    /// Sign under this break-glass grant (default, for a gated key: your active grant for
    /// it). Each signature spends one use.
    #[arg(long)]
    grant: Option<String>,
    #[arg(long)]
    sub: String,
    #[arg(long)]
    aud: String,
    #[arg(long, default_value = "10m")]
    ttl: String,
    /// Extra string claims, key=value (repeatable).
    #[arg(long = "claim")]
    claims: Vec<String>,
    #[arg(long, default_value = "tessera")]
    iss: String,
}

#[derive(Args)]
pub struct RawSign {
    key: String,
    /// Sign under this break-glass grant (default, for a gated key: your active grant for
    /// it). Each signature spends one use.
    #[arg(long)]
    grant: Option<String>,
    /// File to sign (`-` for standard input).
    #[arg(long)]
    input: String,
}

/// Signs, under a break-glass grant when the key is gated: `--grant`, or the caller's active
/// grant for the key when the signers answer that one is needed.
async fn sign_gated(
    c: &Client,
    key: &str,
    request: &SignRequest,
    grant: Option<&str>,
) -> Result<tessera_client::Signed, tessera_client::Error> {
    match grant {
        Some(g) => c.sign_with_grant(key, request, Some(g)).await,
        None => match c.sign(key, request).await {
            Err(tessera_client::Error::BreakGlassRequired { .. }) => {
                c.sign_with_grant(key, request, None).await
            }
            other => other,
        },
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        message: msg.into(),
        code: 1,
    }
}

/// `30s`, `10m`, `1h`, `2d` (or plain seconds).
pub fn parse_ttl(s: &str) -> Result<u64, Failure> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| fail(format!("--ttl {s:?}: use e.g. 30s, 10m, 1h or 2d")))?;
    if n == 0 {
        return Err(fail("--ttl must be more than zero"));
    }
    Ok(n * mult)
}

fn now() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64
}

fn group_key(info: &tessera_client::proto::KeyInfo) -> Result<[u8; 32], Failure> {
    info.group_key.as_slice().try_into().map_err(|_| {
        fail(format!(
            "key {:?} is {} and has no public key yet",
            info.name, info.status
        ))
    })
}

pub async fn run_key(cmd: KeyCmd, c: &Client, out: Out) -> Result<(), Failure> {
    match cmd {
        KeyCmd::Create {
            name,
            purpose,
            dkg_timeout: timeout,
        } => {
            eprintln!(
                "Generating key {name:?} by distributed key generation (up to {timeout} s)..."
            );
            let k = c.key_create(&name, purpose, timeout).await?;
            let gk = hex::encode(&k.group_key);
            out.emit(json!({ "name": k.name, "purpose": k.purpose, "group_key": gk, "threshold": k.threshold, "participants": k.participants.iter().map(|p| p.id).collect::<Vec<_>>() }), || {
                println!("Success! Created key {name} ({}), {} of {} signers", k.purpose, k.threshold, k.participants.len());
                println!("group public key: {gk}");
            });
        }
        KeyCmd::Read { name } => {
            let k = c.key_read(&name).await?;
            out.emit(
                json!({ "name": k.name, "purpose": k.purpose, "status": k.status, "group_key": hex::encode(&k.group_key), "threshold": k.threshold, "attempt": k.attempt, "created_time": k.created_time, "created_by": k.created_by, "participants": k.participants.iter().map(|p| p.id).collect::<Vec<_>>() }),
                || {
                    pairs(&[
                        ("name", k.name.clone()),
                        ("purpose", k.purpose.clone()),
                        ("status", k.status.clone()),
                        ("group key", hex::encode(&k.group_key)),
                        ("threshold", format!("{} of {}", k.threshold, k.participants.len())),
                        ("created", format!("{} by {}", k.created_time, k.created_by)),
                    ])
                },
            );
        }
        KeyCmd::List => {
            let keys = c.key_list().await?;
            out.emit(
                json!(keys
                    .iter()
                    .map(|k| json!({"name": k.name, "purpose": k.purpose, "status": k.status}))
                    .collect::<Vec<_>>()),
                || {
                    table(
                        &["NAME", "PURPOSE", "STATUS"],
                        &keys
                            .iter()
                            .map(|k| vec![k.name.clone(), k.purpose.clone(), k.status.clone()])
                            .collect::<Vec<_>>(),
                    )
                },
            );
        }
        KeyCmd::Public { name } => {
            let k = c.key_read(&name).await?;
            let gk = group_key(&k)?;
            match out.format {
                Format::Openssh => println!("{}", public_key_line(&gk, &format!("tessera-{name}"))),
                Format::Jwks | Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&jwks(&name, &gk)).unwrap_or_default()
                ),
                Format::Base64 => {
                    println!("{}", base64::engine::general_purpose::STANDARD.encode(gk))
                }
                Format::Hex | Format::Table => println!("{}", hex::encode(gk)),
            }
        }
    }
    Ok(())
}

pub async fn run_sign(a: RawSign, c: &Client, out: Out) -> Result<(), Failure> {
    let message = if a.input == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
            .map_err(|e| fail(format!("cannot read stdin: {e}")))?;
        v
    } else {
        std::fs::read(&a.input).map_err(|e| fail(format!("cannot read {}: {e}", a.input)))?
    };
    let s = sign_gated(c, &a.key, &SignRequest::Raw { message }, a.grant.as_deref()).await?;
    for n in &s.cheaters {
        eprintln!("warning: node {n} returned a signature share that does not verify; it was reported and replaced");
    }
    match out.format {
        Format::Hex => println!("{}", hex::encode(s.signature)),
        Format::Json => println!(
            "{}",
            json!({ "signature": base64::engine::general_purpose::STANDARD.encode(s.signature), "signers": s.signers, "cheaters": s.cheaters })
        ),
        _ => println!(
            "{}",
            base64::engine::general_purpose::STANDARD.encode(s.signature)
        ),
    }
    Ok(())
}

pub async fn run_ssh(a: SshSign, c: &Client, out: Out) -> Result<(), Failure> {
    let line = std::fs::read_to_string(&a.public_key)
        .map_err(|e| fail(format!("cannot read {}: {e}", a.public_key.display())))?;
    let public_key = parse_public_key_line(&line)
        .map_err(|e| fail(format!("{}: {e}", a.public_key.display())))?;
    let ttl = parse_ttl(&a.ttl)?;
    let start = now().saturating_sub(60);
    let mut nonce = [0u8; 32];
    tessera_client::crypto::RngFill::fill(&mut tessera_client::crypto::rng(), &mut nonce);
    let mut serial = [0u8; 8];
    tessera_client::crypto::RngFill::fill(&mut tessera_client::crypto::rng(), &mut serial);
    let req = CertRequest {
        public_key,
        cert_type: match a.cert_type {
            CertType::User => 1,
            CertType::Host => 2,
        },
        key_id: a.key_id.clone().unwrap_or_else(|| a.principals[0].clone()),
        principals: a.principals.clone(),
        valid_after: start,
        valid_before: start + 60 + ttl,
        extensions: a.extensions.clone(),
        serial: u64::from_be_bytes(serial),
        nonce,
    };
    let s = sign_gated(
        c,
        &a.key,
        &SignRequest::Ssh(req.clone()),
        a.grant.as_deref(),
    )
    .await?;
    for n in &s.cheaters {
        eprintln!("warning: node {n} returned a signature share that does not verify; it was reported and replaced");
    }
    let cert = req.certificate_line(&s.group_key, &s.signature);
    match a.out {
        Some(p) => {
            std::fs::write(&p, format!("{cert}\n"))
                .map_err(|e| fail(format!("cannot write {}: {e}", p.display())))?;
            out.emit(
                json!({ "certificate": p, "serial": req.serial, "valid_before": req.valid_before }),
                || {
                    println!(
                        "Wrote {} (serial {}, valid until {})",
                        p.display(),
                        req.serial,
                        req.valid_before
                    )
                },
            );
        }
        None => println!("{cert}"),
    }
    Ok(())
}

pub async fn run_jwt(a: JwtIssue, c: &Client, _out: Out) -> Result<(), Failure> {
    let ttl = parse_ttl(&a.ttl)?;
    let mut extra = Vec::new();
    for kv in &a.claims {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| fail(format!("--claim {kv:?} is not key=value")))?;
        extra.push((k.to_string(), v.to_string()));
    }
    let mut jti = [0u8; 16];
    tessera_client::crypto::RngFill::fill(&mut tessera_client::crypto::rng(), &mut jti);
    let iat = now();
    let req = JwtRequest {
        kid: a.key.clone(),
        iss: a.iss,
        sub: a.sub,
        aud: a.aud,
        iat,
        exp: iat + ttl,
        jti: hex::encode(jti),
        extra,
    };
    let s = sign_gated(
        c,
        &a.key,
        &SignRequest::Jwt(req.clone()),
        a.grant.as_deref(),
    )
    .await?;
    println!("{}", req.token(&s.signature));
    Ok(())
}
