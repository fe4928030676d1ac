//! Who may publish and subscribe where: an authenticated [`Identity`] and the pure checks
//! [`may_publish`] and [`may_subscribe`] the gate applies to every PUBLISH (and Will) topic and
//! SUBSCRIBE filter before rumqttd sees it.
//!
//! - the manager: everything;
//! - an edge: PUBLISH only to its own `state`, `telemetry`, `manifests`, `replies`, `upload`;
//!   SUBSCRIBE only to its own exact `config`, `jobs`, `acks`, `download` (no wildcard);
//! - an enrolling client: PUBLISH only to `tapfleet/v1/enroll/<session>/request`, SUBSCRIBE only
//!   to `tapfleet/v1/enroll/<session>/response`, the session being taken from its client id;
//! - an edge may also use the renewal session `renew-<edge id>` (its certificate renewal request
//!   and response); no enrolling client may take a session starting with `renew-`.
//!
//! Topics are read with the schemas crate's [`Topic::parse`], whose identifiers can hold no `/`,
//! `+` or `#`: a filter with a wildcard never parses, so it is refused for edges and enrolling
//! clients.

use tapfleet_schemas::{Channel, Topic};

/// The identity a connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The fleet manager: reaches every namespace.
    Manager { user: String },
    /// One edge of one tenant (its MQTT user name is its edge id).
    Edge { tenant: String, edge: String },
    /// A client enrolling with a claim token, confined to its own session.
    Enrolling { session: String },
}

impl Identity {
    /// A short label for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Manager { .. } => "manager",
            Identity::Edge { .. } => "edge",
            Identity::Enrolling { .. } => "enrolling",
        }
    }
}

/// Prefix of an edge's own enrollment session (certificate renewal).
pub const RENEW_SESSION_PREFIX: &str = "renew-";

/// The renewal session of an edge.
pub fn renew_session(edge: &str) -> String {
    format!("{RENEW_SESSION_PREFIX}{edge}")
}

/// Channels an edge publishes on.
pub const EDGE_PUBLISHES: [Channel; 5] = [
    Channel::State,
    Channel::Telemetry,
    Channel::Manifests,
    Channel::Replies,
    Channel::Upload,
];

/// Channels an edge subscribes to.
pub const EDGE_SUBSCRIBES: [Channel; 4] = [
    Channel::Config,
    Channel::Jobs,
    Channel::Acks,
    Channel::Download,
];

fn own_edge_topic(id: &Identity, name: &str, allowed: &[Channel]) -> bool {
    let Identity::Edge { tenant, edge } = id else {
        return false;
    };
    match Topic::parse(name) {
        Ok(Topic::Edge {
            tenant: t,
            edge: e,
            channel,
        }) => t == *tenant && e == *edge && allowed.contains(&channel),
        _ => false,
    }
}

/// Whether `id` may publish on `topic` (a topic name, no wildcard).
pub fn may_publish(id: &Identity, topic: &str) -> bool {
    match id {
        Identity::Manager { .. } => true,
        Identity::Edge { edge, .. } => {
            own_edge_topic(id, topic, &EDGE_PUBLISHES)
                || matches!(Topic::parse(topic), Ok(Topic::EnrollRequest { session: s }) if s == renew_session(edge))
        }
        Identity::Enrolling { session } => {
            matches!(Topic::parse(topic), Ok(Topic::EnrollRequest { session: s }) if s == *session)
        }
    }
}

/// Whether `id` may subscribe to `filter`.
pub fn may_subscribe(id: &Identity, filter: &str) -> bool {
    match id {
        Identity::Manager { .. } => true,
        Identity::Edge { edge, .. } => {
            own_edge_topic(id, filter, &EDGE_SUBSCRIBES)
                || matches!(Topic::parse(filter), Ok(Topic::EnrollResponse { session: s }) if s == renew_session(edge))
        }
        Identity::Enrolling { session } => {
            matches!(Topic::parse(filter), Ok(Topic::EnrollResponse { session: s }) if s == *session)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(t: &str, e: &str) -> Identity {
        Identity::Edge {
            tenant: t.into(),
            edge: e.into(),
        }
    }

    fn topic(t: &str, e: &str, c: Channel) -> String {
        Topic::edge(t, e, c).expect("valid").to_string()
    }

    #[test]
    fn an_edge_reaches_only_its_own_channels_in_the_right_direction() {
        let a = edge("acme", "a");
        for c in Channel::ALL {
            let own = topic("acme", "a", c);
            assert_eq!(may_publish(&a, &own), EDGE_PUBLISHES.contains(&c), "{own}");
            assert_eq!(
                may_subscribe(&a, &own),
                EDGE_SUBSCRIBES.contains(&c),
                "{own}"
            );
            for other in [topic("acme", "b", c), topic("other", "a", c)] {
                assert!(!may_publish(&a, &other), "{other}");
                assert!(!may_subscribe(&a, &other), "{other}");
            }
        }
        for f in [
            "#",
            "+",
            "tapfleet/v1/tenants/acme/edges/a/#",
            "tapfleet/v1/tenants/acme/edges/+/config",
            "tapfleet/v1/tenants/+/edges/a/config",
            "tapfleet/v1/enroll/+/response",
            "tapfleet/v1/tenants/acme/events",
            "$SYS/#",
        ] {
            assert!(!may_subscribe(&a, f), "{f}");
        }
    }

    #[test]
    fn an_enrolling_client_reaches_only_its_session() {
        let s = Identity::Enrolling {
            session: "s1".into(),
        };
        let req = |x: &str| Topic::enroll_request(x).expect("valid").to_string();
        let resp = |x: &str| Topic::enroll_response(x).expect("valid").to_string();
        assert!(may_publish(&s, &req("s1")));
        assert!(may_subscribe(&s, &resp("s1")));
        assert!(!may_publish(&s, &resp("s1")));
        assert!(!may_subscribe(&s, &req("s1")));
        assert!(!may_publish(&s, &req("s2")));
        assert!(!may_subscribe(&s, &resp("s2")));
        assert!(!may_subscribe(&s, "tapfleet/v1/enroll/+/response"));
        assert!(!may_publish(&s, &topic("acme", "a", Channel::State)));
    }

    #[test]
    fn an_edge_reaches_only_its_own_renewal_session() {
        let a = edge("acme", "a");
        let req = |x: &str| Topic::enroll_request(x).expect("valid").to_string();
        let resp = |x: &str| Topic::enroll_response(x).expect("valid").to_string();
        assert!(may_publish(&a, &req("renew-a")));
        assert!(may_subscribe(&a, &resp("renew-a")));
        assert!(!may_publish(&a, &req("renew-b")));
        assert!(!may_subscribe(&a, &resp("renew-b")));
        assert!(!may_publish(&a, &resp("renew-a")));
        assert!(!may_publish(&a, &req("s1")));
    }

    #[test]
    fn the_manager_reaches_everything() {
        let m = Identity::Manager {
            user: "tapfleet-manager".into(),
        };
        assert!(may_subscribe(&m, "#"));
        assert!(may_publish(&m, &topic("acme", "a", Channel::Config)));
    }
}
