//! The break-glass events a request's record tells, each with a stable id.
//!
//! Events are not stored on their own: they are read off the replicated record (the request,
//! its decisions, its grant, its uses, how it closed), so every node derives the same events
//! with the same ids, and a new leader knows exactly which ones the old one had not yet
//! delivered (`Request::notified`). Only "expired" depends on the time it is asked at: it
//! exists once the request's end has passed.

use serde::Serialize;

use crate::state::breakglass::{Closed, Request, Status};
use crate::state::Timestamp;

/// One event, as the webhook body carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `<request id>.<key>`: the same on every node and every delivery, so a receiver drops
    /// duplicates by it.
    pub id: String,
    /// requested, approved, denied, activated, used, revoked or expired.
    pub event: &'static str,
    pub cluster_id: String,
    pub request: String,
    pub path: String,
    pub capability: String,
    pub requester: String,
    pub reason: String,
    /// Who did it: the requester, the approver, the revoker; empty for "activated" and
    /// "expired", which nobody does.
    pub actor: String,
    /// When, by replicated time (RFC 3339).
    pub at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// For "activated": until when the grant lasts, and the uses it allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// For "used": the use id and what it is spent on (a version, or a sign request's digest).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub use_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The node that delivered it (filled in by the sender).
    pub sent_by: String,
    /// The record's key for this event (`Request::notified`), not sent.
    #[serde(skip)]
    pub key: String,
    /// `at`, as a time.
    #[serde(skip)]
    pub time: Timestamp,
}

/// How many events request `r` has had by `now` (`events_of(..).len()`, without building
/// them): the notifier skips a record whose every event is marked.
pub fn count_of(r: &Request, now: Timestamp) -> usize {
    1 + r.decisions.len()
        + usize::from(r.granted.is_some())
        + r.uses.len()
        + usize::from(matches!(r.closed, Some(Closed::Revoked { .. })))
        + usize::from(r.status(now) == Status::Expired)
}

/// Every event request `r` has had by `now`, oldest first.
pub fn events_of(cluster_id: &str, r: &Request, now: Timestamp) -> Vec<Event> {
    let base = |key: String, event: &'static str, actor: &str, at: Timestamp| Event {
        id: format!("{}.{key}", r.id),
        event,
        cluster_id: cluster_id.to_string(),
        request: r.id.clone(),
        path: r.path.clone(),
        capability: r.capability.as_str().to_string(),
        requester: r.requester.clone(),
        reason: r.reason.clone(),
        actor: actor.to_string(),
        at: at.to_string(),
        comment: String::new(),
        until: None,
        uses: None,
        use_id: String::new(),
        target: String::new(),
        sent_by: String::new(),
        key,
        time: at,
    };
    let mut out = vec![base(
        "requested".into(),
        "requested",
        &r.requester,
        r.requested_at,
    )];
    for (i, d) in r.decisions.iter().enumerate() {
        let kind = if d.approve { "approved" } else { "denied" };
        let mut e = base(format!("decision.{i}"), kind, &d.approver, d.at);
        e.comment = d.comment.clone();
        out.push(e);
    }
    if let Some(g) = &r.granted {
        let mut e = base("activated".into(), "activated", "", g.at);
        e.until = Some(g.until.to_string());
        e.uses = Some(g.uses);
        out.push(e);
    }
    for u in &r.uses {
        let mut e = base(format!("use.{}", u.id), "used", &r.requester, u.at);
        e.use_id = u.id.clone();
        e.target = u.target.to_string();
        out.push(e);
    }
    if let Some(Closed::Revoked { by, at }) = &r.closed {
        out.push(base("revoked".into(), "revoked", by, *at));
    }
    if r.status(now) == Status::Expired {
        let at = r.granted.map(|g| g.until).unwrap_or(r.pending_until);
        out.push(base("expired".into(), "expired", "", at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Capability;
    use crate::state::breakglass::is_event_key;
    use crate::state::breakglass::testing::at;
    use crate::state::breakglass::{Decision, Grant, Use, UseTarget};

    fn request() -> Request {
        Request {
            id: "r1".into(),
            requester: "alice".into(),
            path: "prod/db/main".into(),
            capability: Capability::Read,
            reason: "incident 42".into(),
            ttl_secs: 600,
            requested_at: at(0),
            pending_until: at(100),
            decisions: Vec::new(),
            granted: None,
            call: None,
            closed: None,
            uses: Vec::new(),
            notified: Default::default(),
        }
    }

    fn kinds(es: &[Event]) -> Vec<(&str, &str)> {
        es.iter().map(|e| (e.event, e.id.as_str())).collect()
    }

    #[test]
    fn a_record_tells_its_events_in_order_with_ids_that_do_not_change() {
        let mut r = request();
        assert_eq!(
            kinds(&events_of("c", &r, at(1))),
            [("requested", "r1.requested")]
        );
        r.decisions.push(Decision {
            approver: "bob".into(),
            approve: true,
            comment: "ok".into(),
            at: at(2),
            groups: Default::default(),
            call: None,
        });
        r.granted = Some(Grant {
            at: at(2),
            until: at(602),
            uses: 1,
        });
        r.uses.push(Use {
            id: "ab".repeat(16),
            at: at(3),
            target: UseTarget::Version(4),
            call: None,
        });
        let es = events_of("c", &r, at(4));
        assert_eq!(
            kinds(&es),
            [
                ("requested", "r1.requested"),
                ("approved", "r1.decision.0"),
                ("activated", "r1.activated"),
                ("used", format!("r1.use.{}", "ab".repeat(16)).as_str()),
            ]
        );
        assert_eq!(es[1].actor, "bob");
        assert_eq!(es[1].comment, "ok");
        assert_eq!(es[2].uses, Some(1));
        assert_eq!(es[3].target, "version 4");
        assert!(es.iter().all(|e| is_event_key(&e.key)));
        assert_eq!(count_of(&r, at(4)), es.len());
        // Past the grant's end the record has one more event; the others keep their ids.
        let later = events_of("c", &r, at(602));
        assert_eq!(later.len(), 5);
        assert_eq!(later[..4], es[..]);
        assert_eq!(later[4].event, "expired");
        assert_eq!(count_of(&r, at(602)), 5);
    }

    #[test]
    fn a_revoked_request_does_not_also_expire_and_a_pending_one_does() {
        let mut r = request();
        assert_eq!(events_of("c", &r, at(100)).last().unwrap().event, "expired");
        r.closed = Some(Closed::Revoked {
            by: "alice".into(),
            at: at(5),
        });
        let es = events_of("c", &r, at(1000));
        assert_eq!(
            kinds(&es),
            [("requested", "r1.requested"), ("revoked", "r1.revoked")]
        );
    }

    #[test]
    fn only_keys_a_record_can_have_are_accepted() {
        for good in [
            "requested",
            "decision.0",
            "decision.12",
            "activated",
            "expired",
        ] {
            assert!(is_event_key(good), "{good}");
        }
        assert!(is_event_key(&format!("use.{}", "0f".repeat(16))));
        for bad in [
            "",
            "decision.",
            "decision.x",
            "use.ab",
            "hello",
            "decision.99999",
        ] {
            assert!(!is_event_key(bad), "{bad}");
        }
    }
}
