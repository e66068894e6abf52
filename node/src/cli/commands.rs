//! Client commands: each one call (or a few) through the SDK, printed as a table or JSON.

use std::io::Read;
use std::path::Path;

use serde_json::json;
use tessera_client::proto::NodeEntry;
use tessera_client::Client;

use super::output::{pairs, table, Out};
use super::{Cmd, ConfigCmd, Failure, GroupCmd, MembersCmd, OperatorCmd, PolicyCmd, SnapshotCmd};
use crate::raft::node_dns_name;
use tessera_client::proto::ConfigSetRequest;

fn written(out: Out, index: u64, what: String) {
    out.emit(json!({ "index": index }), || {
        println!("Success! {what} (log index {index})")
    });
}

fn node_rows(nodes: &[NodeEntry], leader: Option<u64>, with_health: bool) -> Vec<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            let mut row = vec![
                node_dns_name(n.id),
                n.address.clone(),
                n.region.clone(),
                if leader == Some(n.id) {
                    format!("{} (leader)", n.role)
                } else {
                    n.role.clone()
                },
            ];
            if with_health {
                row.push(if n.reachable {
                    "yes".into()
                } else {
                    "no".into()
                });
                row.push(if n.reachable {
                    n.last_applied.to_string()
                } else {
                    "-".into()
                });
            }
            row
        })
        .collect()
}

fn node_json(n: &NodeEntry) -> serde_json::Value {
    json!({
        "id": n.id, "name": node_dns_name(n.id), "address": n.address, "region": n.region,
        "role": n.role, "reachable": n.reachable, "last_applied": n.last_applied, "state": n.state,
    })
}

pub async fn run(cmd: Cmd, c: &Client, out: Out) -> Result<(), Failure> {
    match cmd {
        Cmd::Status => {
            let s = c.status().await?;
            out.emit(
                json!({
                    "cluster_id": s.cluster_id, "leader": s.leader, "term": s.term,
                    "commit_index": s.commit_index, "served_by": s.served_by,
                    "nodes": s.nodes.iter().map(node_json).collect::<Vec<_>>(),
                }),
                || {
                    pairs(&[
                        ("cluster", s.cluster_id.clone()),
                        (
                            "leader",
                            s.leader.map(node_dns_name).unwrap_or_else(|| "none".into()),
                        ),
                        ("term", s.term.to_string()),
                        ("commit index", s.commit_index.to_string()),
                    ]);
                    println!();
                    table(
                        &["ID", "ADDRESS", "REGION", "ROLE", "REACHABLE", "APPLIED"],
                        &node_rows(&s.nodes, s.leader, true),
                    );
                },
            );
        }
        Cmd::Whoami => {
            let w = c.who_am_i().await?;
            out.emit(
                json!({ "identity": w.identity, "policies": w.policies, "groups": w.groups }),
                || {
                    pairs(&[
                        ("identity", w.identity.clone()),
                        ("policies", w.policies.join(", ")),
                        ("groups", w.groups.join(", ")),
                    ])
                },
            );
        }
        Cmd::Operator { cmd } => {
            match cmd {
                OperatorCmd::Members { cmd } => match cmd.unwrap_or(MembersCmd::List) {
                    MembersCmd::List => {
                        let m = c.list_members().await?;
                        out.emit(json!(m.iter().map(node_json).collect::<Vec<_>>()), || {
                            table(
                                &["ID", "ADDRESS", "REGION", "ROLE"],
                                &node_rows(&m, None, false),
                            )
                        });
                    }
                    MembersCmd::Add {
                        id,
                        api_addr,
                        region,
                        learner,
                    } => {
                        let i = c.add_member(id, &api_addr, &region, !learner).await?;
                        let role = if learner { "learner" } else { "voter" };
                        written(out, i, format!("Added {} as a {role}", node_dns_name(id)));
                    }
                    MembersCmd::Remove { id } => {
                        let i = c.remove_member(id).await?;
                        written(out, i, format!("Removed {}", node_dns_name(id)));
                    }
                },
                OperatorCmd::Config {
                    cmd: ConfigCmd::Set { key, value },
                } => {
                    let mut req = ConfigSetRequest::default();
                    let num = |v: &str| {
                        v.parse::<u32>().map_err(|_| Failure {
                            message: format!("{key} takes a whole number, not {v:?}"),
                            code: 2,
                        })
                    };
                    match key.as_str() {
                    "threshold" => req.threshold = Some(num(&value)?),
                    "ack-fault-tolerance" | "ack_fault_tolerance" => {
                        req.ack_fault_tolerance = Some(num(&value)?)
                    }
                    "allow-unsafe-topology" | "allow_unsafe_topology" => {
                        req.allow_unsafe_topology = Some(value.parse::<bool>().map_err(|_| Failure {
                            message: format!("allow-unsafe-topology takes true or false, not {value:?}"),
                            code: 2,
                        })?)
                    }
                    "breakglass.request_ttl" | "breakglass.request-ttl" => {
                        req.breakglass_request_ttl_secs = Some(
                            crate::policy::break_glass::parse_duration(&value).map_err(|e| Failure {
                                message: format!("breakglass.request_ttl: {e}"),
                                code: 2,
                            })?,
                        )
                    }
                    other => {
                        return Err(Failure {
                            message: format!(
                                "unknown setting {other:?}: use threshold, ack-fault-tolerance, allow-unsafe-topology or breakglass.request_ttl"
                            ),
                            code: 2,
                        })
                    }
                }
                    let i = c.config_set(req).await?;
                    written(out, i, format!("Set {key} = {value}"));
                }
                OperatorCmd::Topology => {
                    let t = c.topology().await?;
                    let mut regions: Vec<(String, u32)> =
                        t.holders_per_region.clone().into_iter().collect();
                    regions.sort();
                    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
                    out.emit(
                    json!({
                        "threshold": t.threshold, "acks_required": t.acks_required,
                        "holders": t.holders.len(),
                        "holders_per_region": regions.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                        "survives_loss_of_any_one_region": t.survives_region_loss,
                        "no_region_can_reconstruct_alone": t.no_region_alone,
                        "allow_unsafe_topology": t.allow_unsafe_topology,
                    }),
                    || {
                        table(
                            &["REGION", "HOLDERS"],
                            &regions.iter().map(|(r, n)| vec![r.clone(), n.to_string()]).collect::<Vec<_>>(),
                        );
                        println!();
                        pairs(&[
                            ("threshold (t)", t.threshold.to_string()),
                            ("holders (n)", t.holders.len().to_string()),
                            ("write waits for (t + f)", t.acks_required.to_string()),
                            ("survives loss of any one region", yes(t.survives_region_loss)),
                            ("no region can reconstruct alone", yes(t.no_region_alone)),
                        ]);
                        if t.allow_unsafe_topology {
                            println!("warning: this cluster runs with --allow-unsafe-topology");
                        }
                    },
                );
                }
                OperatorCmd::Shares => {
                    let t = c.topology().await?;
                    let mut rows = Vec::new();
                    let mut all = Vec::new();
                    for h in &t.holders {
                        match c.shares_of(h.id, &h.address).await {
                            Ok(r) => {
                                for s in &r.shares {
                                    rows.push(vec![
                                        node_dns_name(h.id),
                                        s.path.clone(),
                                        s.version.to_string(),
                                        s.share_index.to_string(),
                                    ]);
                                }
                                all.push(json!({
                                "node": h.id, "reachable": true,
                                "shares": r.shares.iter().map(|s| json!({"path": s.path, "version": s.version, "index": s.share_index})).collect::<Vec<_>>(),
                            }));
                            }
                            Err(e) => all.push(
                                json!({ "node": h.id, "reachable": false, "error": e.to_string() }),
                            ),
                        }
                    }
                    out.emit(json!(all), || {
                        table(&["NODE", "PATH", "VERSION", "SHARE INDEX"], &rows)
                    });
                }
                OperatorCmd::Snapshot { cmd } => match cmd {
                    SnapshotCmd::Save { file } => {
                        let data = c.snapshot_save().await?;
                        std::fs::write(&file, &data).map_err(|e| Failure {
                            message: format!("cannot write {}: {e}", file.display()),
                            code: 1,
                        })?;
                        out.emit(json!({ "file": file, "bytes": data.len() }), || {
                            println!(
                                "Saved snapshot to {} ({} bytes)",
                                file.display(),
                                data.len()
                            )
                        });
                    }
                    SnapshotCmd::Restore { file } => {
                        let data = std::fs::read(&file).map_err(|e| Failure {
                            message: format!("cannot read {}: {e}", file.display()),
                            code: 1,
                        })?;
                        let i = c.snapshot_restore(data).await?;
                        written(out, i, format!("Restored snapshot {}", file.display()));
                    }
                },
                OperatorCmd::Revoke {
                    identity,
                    serial,
                    node,
                } => {
                    use tessera_client::proto::revoke_request::Target;
                    let (target, what) = match (identity, serial, node) {
                        (Some(i), _, _) => (Target::Identity(i.clone()), format!("identity {i:?}")),
                        (_, Some(s), _) => (Target::Serial(s.clone()), format!("certificate {s}")),
                        (_, _, Some(n)) => (Target::Node(n), format!("node {n}'s certificates")),
                        _ => unreachable!("clap requires one target"),
                    };
                    let i = c.revoke(target).await?;
                    written(out, i, format!("Revoked {what}"));
                }
                OperatorCmd::Revocations => {
                    let r = c.revocations().await?;
                    out.emit(
                    json!({ "identities": r.identities, "serials": r.serials, "nodes": r.nodes }),
                    || {
                        let mut rows: Vec<Vec<String>> = Vec::new();
                        rows.extend(r.identities.iter().map(|i| vec!["identity".into(), i.clone()]));
                        rows.extend(r.serials.iter().map(|s| vec!["serial".into(), s.clone()]));
                        rows.extend(r.nodes.iter().map(|n| vec!["node".into(), node_dns_name(*n)]));
                        table(&["KIND", "REVOKED"], &rows);
                    },
                );
                }
                OperatorCmd::Roots { cmd } => match cmd.unwrap_or(super::RootsCmd::List) {
                    super::RootsCmd::List => {
                        let roots = c.roots().await?;
                        out.emit(json!({ "roots": roots }), || {
                            let rows: Vec<Vec<String>> =
                                roots.iter().map(|r| vec![r.clone()]).collect();
                            table(&["ROOT IDENTITY"], &rows);
                        });
                    }
                    super::RootsCmd::Set { identities } => {
                        let i = c.set_roots(identities.clone()).await?;
                        written(
                            out,
                            i,
                            format!("Root identities: {}", identities.join(", ")),
                        );
                    }
                },
                OperatorCmd::Init(_)
                | OperatorCmd::ClientCert { .. }
                | OperatorCmd::NodeConfig { .. }
                | OperatorCmd::Ca { .. }
                | OperatorCmd::Genesis(_) => unreachable!("local"),
            }
        }
        Cmd::Kv { cmd } => return super::kv::run(cmd, c, out).await,
        Cmd::Breakglass {
            cmd: super::BreakglassTop::Cluster(cmd),
        } => return super::breakglass::run(cmd, c, out).await,
        Cmd::Key { cmd } => return super::keys::run_key(cmd, c, out).await,
        Cmd::Sign(a) => return super::keys::run_sign(a, c, out).await,
        Cmd::Ssh {
            cmd: super::SshCmd::Sign(a),
        } => return super::keys::run_ssh(a, c, out).await,
        Cmd::Ssh {
            cmd: super::SshCmd::Role { cmd },
        } => return super::keys::run_role(cmd, c, out).await,
        Cmd::Jwt {
            cmd: super::JwtCmd::Issue(a),
        } => return super::keys::run_jwt(a, c, out).await,
        Cmd::Group { cmd } => match cmd {
            GroupCmd::Write { name, members } => {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
                let i = c.write_group(&name, members).await?;
                written(out, i, format!("Wrote group {name}"));
            }
            GroupCmd::Read { name } => {
                let g = c.read_group(&name).await?;
                out.emit(
                    json!({ "name": g.name, "members": g.members, "policies": g.policies }),
                    || {
                        pairs(&[
                            ("name", g.name.clone()),
                            ("members", g.members.join(", ")),
                            ("policies", g.policies.join(", ")),
                        ])
                    },
                );
            }
            GroupCmd::List => list(out, c.list_groups().await?),
            GroupCmd::Delete { name, grant } => {
                let i = c.delete_group_under(&name, grant.as_deref()).await?;
                written(out, i, format!("Deleted group {name}"));
            }
        },
        Cmd::Policy { cmd } => match cmd {
            PolicyCmd::Write { name, file, grant } => {
                let text = read_source(&file)?;
                let i = c.write_policy_under(&name, &text, grant.as_deref()).await?;
                written(out, i, format!("Uploaded policy {name}"));
            }
            PolicyCmd::Read { name } => {
                let p = c.read_policy(&name).await?;
                out.emit(json!({ "name": p.name, "policy": p.text }), || {
                    print!("{}", p.text);
                    if !p.text.ends_with('\n') {
                        println!();
                    }
                });
            }
            PolicyCmd::List => list(out, c.list_policies().await?),
            PolicyCmd::Delete { name, grant } => {
                let i = c.delete_policy_under(&name, grant.as_deref()).await?;
                written(out, i, format!("Deleted policy {name}"));
            }
            PolicyCmd::Attach {
                name,
                group,
                identity,
                detach,
            } => {
                let i = c
                    .attach_policy(&name, group.as_deref(), identity.as_deref(), detach)
                    .await?;
                let who = group
                    .map(|g| format!("group {g}"))
                    .or(identity.map(|i| format!("identity {i}")))
                    .unwrap_or_default();
                let verb = if detach { "Detached" } else { "Attached" };
                written(out, i, format!("{verb} policy {name} to {who}"));
            }
        },
        Cmd::Server(_)
        | Cmd::Dev(_)
        | Cmd::Audit { .. }
        | Cmd::Node { .. }
        | Cmd::Breakglass {
            cmd: super::BreakglassTop::Verify(_),
        } => {
            unreachable!("not a client command")
        }
    }
    Ok(())
}

fn list(out: Out, names: Vec<String>) {
    out.emit(json!(names), || {
        for n in &names {
            println!("{n}");
        }
    });
}

fn read_source(file: &str) -> Result<String, Failure> {
    let mut text = String::new();
    let res = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    res.map_err(|e| Failure {
        message: format!("cannot read policy from {file}: {e}"),
        code: 1,
    })?;
    Ok(text)
}

pub fn audit_verify(file: &Path, out: Out) -> Result<(), Failure> {
    match crate::audit::verify_file(file) {
        Ok(lines) => {
            out.emit(json!({ "file": file, "lines": lines, "ok": true }), || {
                println!("{}: {lines} lines, hash chain intact", file.display())
            });
            Ok(())
        }
        Err(e) => {
            if out.json() {
                println!(
                    "{}",
                    json!({ "file": file, "ok": false, "line": e.line, "reason": e.reason })
                );
            }
            Err(Failure {
                message: format!("{}: chain broken at {e}", file.display()),
                code: 2,
            })
        }
    }
}
