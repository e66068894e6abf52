//! `tessera kv ...`: secrets. Values are split and recombined here, in the client; they never
//! reach a log.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use clap::Subcommand;
use serde_json::{json, Value};
use tessera_client::proto::KvMetadataPutRequest;
use tessera_client::{Client, PutOptions};

use super::output::{pairs, table, Out};
use super::Failure;

#[derive(Subcommand)]
pub enum KvCmd {
    /// Write a new version: `key=value` fields (stored as a JSON map), `@FILE`, or `-` (stdin).
    Put {
        path: String,
        #[arg(required = true)]
        data: Vec<String>,
        /// Check-and-set: write only if the current version is N (0: only if new).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Read a version (default: the latest).
    Get {
        path: String,
        #[arg(long)]
        version: Option<u64>,
        /// Print only this field of a `key=value` secret.
        #[arg(long)]
        field: Option<String>,
        /// Read under this break-glass grant (default, on a gated path: your active grant
        /// for it). Each read spends one use.
        #[arg(long)]
        grant: Option<String>,
    },
    /// List secret names under a prefix (names only).
    List {
        #[arg(default_value = "")]
        prefix: String,
        /// Only secrets whose current version was read under a break-glass grant and not
        /// replaced since, at any depth below PREFIX: what is left to rotate.
        #[arg(long)]
        rotate_required: bool,
    },
    /// Soft-delete versions (default: the latest); `undelete` restores them.
    Delete {
        path: String,
        #[arg(long, value_delimiter = ',')]
        versions: Vec<u64>,
    },
    Undelete {
        path: String,
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
    },
    /// Permanently erase versions: every holder erases its share; nobody can read them again.
    Destroy {
        path: String,
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
    },
    /// Secret metadata.
    Metadata {
        #[command(subcommand)]
        cmd: MetadataCmd,
    },
}

#[derive(Subcommand)]
pub enum MetadataCmd {
    Get {
        path: String,
    },
    Put {
        path: String,
        /// Versions to keep (0: the default, 10).
        #[arg(long)]
        max_versions: Option<u32>,
        /// Require --cas on every write.
        #[arg(long)]
        cas_required: Option<bool>,
        /// key=value pairs (replaces the custom metadata).
        #[arg(long = "custom-metadata", value_delimiter = ',')]
        custom_metadata: Vec<String>,
    },
    /// Delete the secret with every version and its metadata.
    Delete {
        path: String,
    },
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        message: msg.into(),
        code: 1,
    }
}

/// Turns the CLI's data arguments into the bytes to store.
fn value_from_args(data: &[String]) -> Result<Vec<u8>, Failure> {
    if data.len() == 1 && data[0] == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| fail(format!("cannot read the value from stdin: {e}")))?;
        return Ok(v);
    }
    if data.len() == 1 && data[0].starts_with('@') {
        let f = &data[0][1..];
        return std::fs::read(f).map_err(|e| fail(format!("cannot read the value from {f}: {e}")));
    }
    let mut map = serde_json::Map::new();
    for kv in data {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(fail(format!(
                "{kv:?} is not key=value (use key=value fields, @FILE, or - for stdin)"
            )));
        };
        if k.is_empty() {
            return Err(fail(format!("{kv:?} has an empty key")));
        }
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(serde_json::to_vec(&Value::Object(map)).expect("a JSON map serializes"))
}

pub async fn run(cmd: KvCmd, c: &Client, out: Out) -> Result<(), Failure> {
    match cmd {
        KvCmd::Put { path, data, cas } => {
            let value = zeroize::Zeroizing::new(value_from_args(&data)?);
            let r = c.kv_put(&path, &value, &PutOptions { cas }).await?;
            out.emit(
                json!({ "path": path, "version": r.version, "acks": r.acks }),
                || {
                    println!(
                        "Success! Wrote version {} of {path} ({} holders acknowledged)",
                        r.version, r.acks
                    )
                },
            );
        }
        KvCmd::Get {
            path,
            version,
            field,
            grant,
        } => {
            let v = match grant {
                Some(g) => c.kv_get_with_grant(&path, version, Some(&g)).await?,
                // A gated path: with the caller's active grant for it, if it holds one.
                None => match c.kv_get(&path, version).await {
                    Err(tessera_client::Error::BreakGlassRequired { .. }) => {
                        c.kv_get_with_grant(&path, version, None).await?
                    }
                    other => other?,
                },
            };
            if v.stale {
                eprintln!("warning: the cluster has no quorum; the version was looked up in one node's last applied state");
            }
            for (node, why) in &v.bad_holders {
                eprintln!("warning: node {node} released a share that {why}; it was reported and another holder was used");
            }
            if let Some(why) = &v.rotate_required {
                eprintln!(
                    "warning: rotate required: version {} was {why}; write a new version",
                    v.version
                );
            }
            let parsed: Option<Value> = serde_json::from_slice(v.value.expose()).ok();
            if let Some(f) = field {
                let val = parsed.as_ref().and_then(|p| p.get(&f)).ok_or_else(|| {
                    fail(format!(
                        "version {} of {path} has no field {f:?}",
                        v.version
                    ))
                })?;
                match val {
                    Value::String(s) => println!("{s}"),
                    other => println!("{other}"),
                }
                return Ok(());
            }
            let data = match (&parsed, std::str::from_utf8(v.value.expose())) {
                (Some(p @ Value::Object(_)), _) => p.clone(),
                (_, Ok(s)) => Value::String(s.to_string()),
                (_, Err(_)) => {
                    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(v.value.expose()) })
                }
            };
            out.emit(
                json!({
                    "path": path, "version": v.version, "data": data,
                    "rotate_required": v.rotate_required,
                    "bad_holders": v.bad_holders.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                }),
                || match &data {
                    Value::Object(m) => {
                        println!("version {}\n", v.version);
                        let rows: Vec<Vec<String>> = m
                            .iter()
                            .map(|(k, val)| {
                                vec![
                                    k.clone(),
                                    val.as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| val.to_string()),
                                ]
                            })
                            .collect();
                        table(&["KEY", "VALUE"], &rows);
                    }
                    Value::String(s) => println!("{s}"),
                    other => println!("{other}"),
                },
            );
        }
        KvCmd::List {
            prefix,
            rotate_required,
        } => {
            let names = c.kv_list_where(&prefix, rotate_required).await?;
            out.emit(json!(names), || {
                for n in &names {
                    println!("{n}");
                }
            });
        }
        KvCmd::Delete { path, versions } => {
            let i = c.kv_delete(&path, versions).await?;
            out.emit(json!({ "index": i }), || {
                println!("Success! Deleted versions of {path}")
            });
        }
        KvCmd::Undelete { path, versions } => {
            let i = c.kv_undelete(&path, versions.clone()).await?;
            out.emit(json!({ "index": i }), || {
                println!("Success! Undeleted versions {versions:?} of {path}")
            });
        }
        KvCmd::Destroy { path, versions } => {
            let i = c.kv_destroy(&path, versions.clone()).await?;
            out.emit(json!({ "index": i }), || {
                println!("Success! Destroyed versions {versions:?} of {path}; every holder erased its share")
            });
        }
        KvCmd::Metadata { cmd } => match cmd {
            MetadataCmd::Get { path } => {
                let m = c.kv_metadata(&path).await?;
                let versions: Vec<Value> = m
                    .versions
                    .iter()
                    .map(|v| {
                        json!({
                            "version": v.version, "created_time": v.created_time,
                            "created_by": v.created_by,
                            "deletion_time": v.deletion_time, "destroyed": v.destroyed,
                            "acks": v.acks, "holders": v.holders, "threshold": v.threshold,
                            "valid": v.valid, "complaints": v.complaints,
                            "pending": v.pending,
                            "rotate_required": (!v.rotate_required.is_empty()).then_some(&v.rotate_required),
                        })
                    })
                    .collect();
                let custom: BTreeMap<_, _> = m.custom_metadata.clone().into_iter().collect();
                out.emit(
                    json!({
                        "path": m.path, "current_version": m.current_version,
                        "created_time": m.created_time, "updated_time": m.updated_time,
                        "max_versions": m.max_versions, "cas_required": m.cas_required,
                        "custom_metadata": custom, "versions": versions,
                    }),
                    || {
                        pairs(&[
                            ("path", m.path.clone()),
                            ("current_version", m.current_version.to_string()),
                            ("created_time", m.created_time.clone()),
                            ("updated_time", m.updated_time.clone()),
                            ("max_versions", m.max_versions.to_string()),
                            ("cas_required", m.cas_required.to_string()),
                            (
                                "custom_metadata",
                                custom
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(","),
                            ),
                        ]);
                        println!();
                        let rows: Vec<Vec<String>> = m
                            .versions
                            .iter()
                            .map(|v| {
                                let state = if v.destroyed {
                                    "destroyed".to_string()
                                } else if !v.deletion_time.is_empty() {
                                    format!("deleted {}", v.deletion_time)
                                } else if !v.valid {
                                    "invalid".to_string()
                                } else if !v.rotate_required.is_empty() {
                                    format!("rotate required: {}", v.rotate_required)
                                } else {
                                    "ok".to_string()
                                };
                                vec![
                                    v.version.to_string(),
                                    v.created_time.clone(),
                                    v.created_by.clone(),
                                    format!("{}/{}", v.acks.len(), v.holders.len()),
                                    state,
                                ]
                            })
                            .collect();
                        table(&["VERSION", "CREATED", "BY", "ACKS", "STATE"], &rows);
                    },
                );
            }
            MetadataCmd::Put {
                path,
                max_versions,
                cas_required,
                custom_metadata,
            } => {
                let mut custom = std::collections::BTreeMap::new();
                for kv in &custom_metadata {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        fail(format!("--custom-metadata {kv:?} is not key=value"))
                    })?;
                    custom.insert(k.to_string(), v.to_string());
                }
                let i = c
                    .kv_metadata_put(KvMetadataPutRequest {
                        path: path.clone(),
                        max_versions,
                        cas_required,
                        replace_custom_metadata: !custom_metadata.is_empty(),
                        custom_metadata: custom,
                    })
                    .await?;
                out.emit(json!({ "index": i }), || {
                    println!("Success! Updated the metadata of {path}")
                });
            }
            MetadataCmd::Delete { path } => {
                let i = c.kv_metadata_delete(&path).await?;
                out.emit(json!({ "index": i }), || {
                    println!("Success! Deleted {path} with every version")
                });
            }
        },
    }
    Ok(())
}
