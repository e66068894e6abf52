//! `tessera breakglass …`: quorum-approved emergency access. Request a grant, approve or deny
//! one (your client signs the decision over what it shows you), revoke, list, show, export the
//! signed proof and verify it offline.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use tessera_client::proto::BreakGlassRecord;
use tessera_client::Client;

use super::output::{pairs, table, Out};
use super::Failure;
use crate::policy::break_glass::{format_duration, parse_duration};

#[derive(Subcommand)]
pub enum BreakGlassCmd {
    /// Ask for a grant to read a gated secret (or sign with a gated key).
    Request(RequestArgs),
    /// Approve a request (your client signs the request's digest as shown to you).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a request: one eligible approver's denial closes it (a veto).
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// End a request or its grant (the requester, or an admin of the path).
    Revoke { id: String },
    /// Requests you may see: your own, those you may decide, all of them for an admin.
    List {
        /// Only requests waiting for decisions.
        #[arg(long)]
        pending: bool,
        /// Only your own requests.
        #[arg(long)]
        mine: bool,
        /// Only pending requests you may approve or deny and have not decided.
        #[arg(long)]
        to_approve: bool,
    },
    /// One request and its decisions; `--proof` prints the signed proof bundle (JSON).
    Show {
        id: String,
        #[arg(long)]
        proof: bool,
    },
}

#[derive(Args)]
pub struct RequestArgs {
    /// A KV path; keys/NAME with --capability sign; sys/policies/NAME with --capability
    /// update or delete, to change or delete a policy that holds a gate.
    path: String,
    /// Why: approvers and the audit log read it.
    #[arg(long)]
    reason: String,
    /// How long the grant should last (`30m`, `1h`); at most the gate's max_ttl.
    #[arg(long, default_value = "30m")]
    ttl: String,
    #[arg(long, default_value = "read", value_parser = ["read", "sign", "update", "delete"])]
    capability: String,
}

/// `tessera breakglass verify`: checked with nothing but the CA certificate.
#[derive(Args)]
pub struct VerifyArgs {
    /// The bundle `breakglass show ID --proof` wrote.
    pub bundle: PathBuf,
    /// The cluster CA certificate (PEM).
    #[arg(long)]
    pub ca_cert: PathBuf,
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        message: msg.into(),
        code: 1,
    }
}

fn time(nanos: u64) -> String {
    if nanos == 0 {
        return "-".into();
    }
    crate::state::Timestamp::from_unix_nanos(nanos).to_string()
}

fn record_json(r: &BreakGlassRecord) -> serde_json::Value {
    json!({
        "id": r.id, "requester": r.requester, "path": r.path, "capability": r.capability,
        "reason": r.reason, "ttl": format_duration(r.ttl_secs), "status": r.status,
        "requested_at": time(r.requested_at), "pending_until": time(r.pending_until),
        "granted_at": (r.granted_at != 0).then(|| time(r.granted_at)),
        "granted_until": (r.granted_until != 0).then(|| time(r.granted_until)),
        "uses_allowed": r.uses_allowed, "uses_committed": r.uses_committed,
        "closed_by": (!r.closed_by.is_empty()).then_some(&r.closed_by),
        "waiting_for": (!r.waiting_for.is_empty()).then_some(&r.waiting_for),
        "uses": r.uses.iter().map(|u| json!({
            "use_id": u.use_id, "at": time(u.at), "target": u.target,
        })).collect::<Vec<_>>(),
        "decisions": r.decisions.iter().map(|d| json!({
            "approver": d.approver, "approve": d.approve, "comment": d.comment,
            "at": time(d.at), "groups": d.groups,
        })).collect::<Vec<_>>(),
    })
}

fn show_record(r: &BreakGlassRecord) {
    let mut rows = vec![
        ("id", r.id.clone()),
        ("status", r.status.clone()),
        ("requester", r.requester.clone()),
        ("path", format!("{} ({})", r.path, r.capability)),
        ("reason", r.reason.clone()),
        ("ttl", format_duration(r.ttl_secs)),
        ("requested", time(r.requested_at)),
    ];
    if r.granted_at != 0 {
        rows.push(("granted", time(r.granted_at)));
        rows.push(("until", time(r.granted_until)));
        rows.push((
            "uses",
            format!("{} of {} committed", r.uses_committed, r.uses_allowed),
        ));
    } else {
        rows.push(("pending until", time(r.pending_until)));
    }
    if !r.waiting_for.is_empty() {
        rows.push(("waiting for", r.waiting_for.clone()));
    }
    if !r.closed_by.is_empty() {
        rows.push(("closed by", r.closed_by.clone()));
    }
    pairs(&rows);
    if !r.uses.is_empty() {
        println!();
        table(
            &["USE", "AT", "SPENT ON"],
            &r.uses
                .iter()
                .map(|u| vec![u.use_id.clone(), time(u.at), u.target.clone()])
                .collect::<Vec<_>>(),
        );
    }
    if !r.decisions.is_empty() {
        println!();
        table(
            &["APPROVER", "DECISION", "AT", "COMMENT"],
            &r.decisions
                .iter()
                .map(|d| {
                    vec![
                        d.approver.clone(),
                        if d.approve { "approve" } else { "deny" }.into(),
                        time(d.at),
                        d.comment.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
    }
}

pub async fn run(cmd: BreakGlassCmd, c: &Client, out: Out) -> Result<(), Failure> {
    match cmd {
        BreakGlassCmd::Request(a) => {
            let ttl = parse_duration(&a.ttl).map_err(|e| Failure {
                message: format!("--ttl: {e}"),
                code: 2,
            })?;
            let opened = c
                .breakglass_request(&a.path, &a.capability, &a.reason, ttl)
                .await?;
            out.emit(json!({ "id": opened.id, "index": opened.index }), || {
                println!(
                    "Requested break-glass {} on {}: id {}",
                    a.capability, a.path, opened.id
                );
                println!("Approvers: `tessera breakglass approve {}`", opened.id);
            });
        }
        BreakGlassCmd::Approve { id, comment } => decide(c, out, &id, true, &comment).await?,
        BreakGlassCmd::Deny { id, reason } => {
            if reason.trim().is_empty() {
                return Err(Failure {
                    message: "a denial needs a reason (--reason)".into(),
                    code: 2,
                });
            }
            decide(c, out, &id, false, &reason).await?
        }
        BreakGlassCmd::Revoke { id } => {
            let index = c.breakglass_revoke(&id).await?;
            out.emit(json!({ "id": id, "index": index }), || {
                println!("Revoked break-glass request {id} (log index {index})")
            });
        }
        BreakGlassCmd::List {
            pending,
            mine,
            to_approve,
        } => {
            let list = c.breakglass_list(pending, mine, to_approve).await?;
            out.emit(
                json!(list.iter().map(record_json).collect::<Vec<_>>()),
                || {
                    table(
                        &[
                            "ID",
                            "STATUS",
                            "REQUESTER",
                            "PATH",
                            "CAPABILITY",
                            "REQUESTED",
                        ],
                        &list
                            .iter()
                            .map(|r| {
                                vec![
                                    r.id.clone(),
                                    r.status.clone(),
                                    r.requester.clone(),
                                    r.path.clone(),
                                    r.capability.clone(),
                                    time(r.requested_at),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    )
                },
            );
        }
        BreakGlassCmd::Show { id, proof } => {
            let r = c.breakglass_show(&id, proof).await?;
            if proof {
                // The bundle itself, whatever the format: it is what `verify` reads.
                println!("{}", r.proof_json);
            } else {
                out.emit(record_json(&r), || show_record(&r));
            }
        }
    }
    Ok(())
}

async fn decide(
    c: &Client,
    out: Out,
    id: &str,
    approve: bool,
    comment: &str,
) -> Result<(), Failure> {
    // What this client signs over is what it shows.
    let record = c.breakglass_show(id, false).await?;
    let index = c.breakglass_decide(&record, approve, comment).await?;
    let after = c.breakglass_show(id, false).await?;
    let word = if approve { "Approved" } else { "Denied" };
    out.emit(
        json!({ "id": id, "index": index, "status": after.status, "waiting_for": after.waiting_for }),
        || {
            println!(
                "{word} break-glass request {id} by {} for {} on {} (log index {index}); it is now {}",
                record.requester, record.capability, record.path, after.status
            );
            if !after.waiting_for.is_empty() {
                println!("Still {}", after.waiting_for);
            }
        },
    );
    Ok(())
}

/// `tessera breakglass verify BUNDLE --ca-cert CA`: no cluster needed.
pub fn verify(a: &VerifyArgs, out: Out) -> Result<(), Failure> {
    let ca = std::fs::read(&a.ca_cert)
        .map_err(|e| fail(format!("cannot read {}: {e}", a.ca_cert.display())))?;
    let trust = crate::state::authority::Trust::new(&ca)
        .map_err(|e| fail(format!("{}: {e:#}", a.ca_cert.display())))?;
    let text = std::fs::read_to_string(&a.bundle)
        .map_err(|e| fail(format!("cannot read {}: {e}", a.bundle.display())))?;
    let bundle: crate::state::breakglass::proof::Bundle =
        serde_json::from_str(&text).map_err(|e| {
            fail(format!(
                "{} is not a break-glass proof: {e}",
                a.bundle.display()
            ))
        })?;
    let v = bundle
        .verify(&trust)
        .map_err(|e| fail(format!("the proof does not verify: {e}")))?;
    let r = &bundle.request;
    out.emit(
        json!({
            "valid": true, "id": r.id, "cluster_id": bundle.cluster_id, "requester": v.requester,
            "path": r.path, "capability": r.capability.as_str(), "reason": r.reason,
            "decisions": v.decisions.iter().map(|(who, approve)| json!({"approver": who, "approve": approve})).collect::<Vec<_>>(),
            "uses": v.uses,
        }),
        || {
            println!(
                "Valid: request {} by {} for {} on {} ({:?}), signed under the CA in {}",
                r.id,
                v.requester,
                r.capability,
                r.path,
                r.reason,
                a.ca_cert.display()
            );
            for (who, approve) in &v.decisions {
                println!(
                    "  {} by {who}",
                    if *approve { "approved" } else { "denied" }
                );
            }
            println!("  {} uses committed, each signed by the requester", v.uses);
            println!("(revocation is not checked offline: compare the signers with `tessera operator revocations`)");
        },
    );
    Ok(())
}
