//! The MQTT topic tree: the only place where tapfleet topic strings are built or parsed.
//!
//! ```text
//! tapfleet/v1/tenants/{tenant}/edges/{edge}/{channel}   per-edge namespace (see `Channel`)
//! tapfleet/v1/tenants/{tenant}/events                   manager -> integrations
//! tapfleet/v1/enroll/{session}/request                  enrolling edge -> manager
//! tapfleet/v1/enroll/{session}/response                 manager -> enrolling edge
//! ```
//!
//! Identifiers (tenant, edge, enrollment session) are validated by [`validate_id`] so that no
//! identifier can contain a topic separator or wildcard: a parsed topic always names exactly one
//! namespace.

use std::fmt;

/// First levels of every tapfleet topic. The version is part of the tree so that a future,
/// incompatible tree can live beside this one.
pub const ROOT: &str = "tapfleet/v1";

/// Longest identifier accepted for a tenant, an edge or an enrollment session.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier or topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("identifier is empty")]
    EmptyId,
    #[error("identifier is longer than {MAX_ID_LEN} bytes")]
    IdTooLong,
    #[error(
        "identifier {0:?} may only hold a-z, 0-9, '-' and '_', and must start with a letter or digit"
    )]
    BadIdChar(String),
    #[error("topic {0:?} is not in the tapfleet/v1 tree")]
    NotOurs(String),
    #[error("topic {0:?} has an unknown channel")]
    UnknownChannel(String),
}

/// Checks that `id` can be used as one topic level: lowercase ASCII letters, digits, `-`, `_`.
pub fn validate_id(id: &str) -> Result<(), TopicError> {
    if id.is_empty() {
        return Err(TopicError::EmptyId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(TopicError::IdTooLong);
    }
    let ok_first = id
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok_first && ok_rest {
        Ok(())
    } else {
        Err(TopicError::BadIdChar(id.to_owned()))
    }
}

/// One channel of an edge's namespace. Direction and retention are part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// manager -> edge, retained: [`crate::DesiredConfig`].
    Config,
    /// edge -> manager, retained, Will = offline: [`crate::ReportedState`].
    State,
    /// edge -> manager: [`crate::Telemetry`] every N seconds.
    Telemetry,
    /// edge -> manager, QoS1 + application ack: [`crate::Manifest`].
    Manifests,
    /// manager -> edge: [`crate::Job`].
    Jobs,
    /// edge -> manager: [`crate::JobReply`] (progress, results, transfer offers).
    Replies,
    /// manager -> edge: [`crate::Ack`] (manifest and transfer acks, flow control).
    Acks,
    /// edge -> manager, on the edge's bulk connection: [`crate::TransferChunk`].
    Upload,
    /// manager -> edge: [`crate::TransferChunk`] into the edge's local storage.
    Download,
}

impl Channel {
    /// Every channel, in documentation order.
    pub const ALL: [Channel; 9] = [
        Channel::Config,
        Channel::State,
        Channel::Telemetry,
        Channel::Manifests,
        Channel::Jobs,
        Channel::Replies,
        Channel::Acks,
        Channel::Upload,
        Channel::Download,
    ];

    /// The topic level that names this channel.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Config => "config",
            Channel::State => "state",
            Channel::Telemetry => "telemetry",
            Channel::Manifests => "manifests",
            Channel::Jobs => "jobs",
            Channel::Replies => "replies",
            Channel::Acks => "acks",
            Channel::Upload => "upload",
            Channel::Download => "download",
        }
    }

    fn from_level(level: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == level)
    }

    /// Whether messages on this channel are published retained.
    pub const fn retained(self) -> bool {
        matches!(self, Channel::Config | Channel::State)
    }
}

/// A parsed tapfleet topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `tapfleet/v1/tenants/{tenant}/edges/{edge}/{channel}`
    Edge {
        tenant: String,
        edge: String,
        channel: Channel,
    },
    /// `tapfleet/v1/tenants/{tenant}/events`
    Events { tenant: String },
    /// `tapfleet/v1/enroll/{session}/request`
    EnrollRequest { session: String },
    /// `tapfleet/v1/enroll/{session}/response`
    EnrollResponse { session: String },
}

impl Topic {
    /// The topic of one channel of one edge. Fails if an identifier is not valid.
    pub fn edge(tenant: &str, edge: &str, channel: Channel) -> Result<Topic, TopicError> {
        validate_id(tenant)?;
        validate_id(edge)?;
        Ok(Topic::Edge {
            tenant: tenant.to_owned(),
            edge: edge.to_owned(),
            channel,
        })
    }

    /// The events topic of a tenant.
    pub fn events(tenant: &str) -> Result<Topic, TopicError> {
        validate_id(tenant)?;
        Ok(Topic::Events {
            tenant: tenant.to_owned(),
        })
    }

    /// The request topic of an enrollment session.
    pub fn enroll_request(session: &str) -> Result<Topic, TopicError> {
        validate_id(session)?;
        Ok(Topic::EnrollRequest {
            session: session.to_owned(),
        })
    }

    /// The response topic of an enrollment session.
    pub fn enroll_response(session: &str) -> Result<Topic, TopicError> {
        validate_id(session)?;
        Ok(Topic::EnrollResponse {
            session: session.to_owned(),
        })
    }

    /// Parses a topic string received from the broker.
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let not_ours = || TopicError::NotOurs(topic.to_owned());
        let rest = topic
            .strip_prefix(ROOT)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(not_ours)?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["tenants", tenant, "edges", edge, channel] => {
                let channel = Channel::from_level(channel)
                    .ok_or_else(|| TopicError::UnknownChannel(topic.to_owned()))?;
                Topic::edge(tenant, edge, channel)
            }
            ["tenants", tenant, "events"] => Topic::events(tenant),
            ["enroll", session, "request"] => Topic::enroll_request(session),
            ["enroll", session, "response"] => Topic::enroll_response(session),
            _ => Err(not_ours()),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Edge {
                tenant,
                edge,
                channel,
            } => write!(
                f,
                "{ROOT}/tenants/{tenant}/edges/{edge}/{}",
                channel.as_str()
            ),
            Topic::Events { tenant } => write!(f, "{ROOT}/tenants/{tenant}/events"),
            Topic::EnrollRequest { session } => write!(f, "{ROOT}/enroll/{session}/request"),
            Topic::EnrollResponse { session } => write!(f, "{ROOT}/enroll/{session}/response"),
        }
    }
}

/// Subscription filters (with MQTT wildcards). Only the manager and integrations use wildcards;
/// an edge subscribes to its own exact topics.
pub mod filter {
    use super::{Channel, ROOT};

    /// One channel of every edge of every tenant: `tapfleet/v1/tenants/+/edges/+/{channel}`.
    pub fn all_edges(channel: Channel) -> String {
        format!("{ROOT}/tenants/+/edges/+/{}", channel.as_str())
    }

    /// Every enrollment request: `tapfleet/v1/enroll/+/request`.
    pub fn enroll_requests() -> String {
        format!("{ROOT}/enroll/+/request")
    }

    /// Events of every tenant: `tapfleet/v1/tenants/+/events`.
    pub fn all_events() -> String {
        format!("{ROOT}/tenants/+/events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_topic_round_trips() {
        for channel in Channel::ALL {
            let t = Topic::edge("acme", "site-1", channel).expect("valid ids");
            let s = t.to_string();
            assert_eq!(
                s,
                format!("tapfleet/v1/tenants/acme/edges/site-1/{}", channel.as_str())
            );
            assert_eq!(Topic::parse(&s), Ok(t));
        }
    }

    #[test]
    fn other_topics_round_trip() {
        for t in [
            Topic::events("acme").expect("valid"),
            Topic::enroll_request("s1").expect("valid"),
            Topic::enroll_response("s1").expect("valid"),
        ] {
            assert_eq!(Topic::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn ids_cannot_smuggle_levels_or_wildcards() {
        for bad in [
            "",
            "a/b",
            "+",
            "#",
            "$sys",
            "A",
            "-x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Topic::edge("acme", "a/b", Channel::Config).is_err());
    }

    #[test]
    fn foreign_topics_are_refused() {
        for bad in [
            "tapfleet/v1/tenants/acme/edges/e1/unknown",
            "tapfleet/v1/tenants/acme/edges/e1/config/extra",
            "tapfleet/v2/tenants/acme/edges/e1/config",
            "tapfleet/v1/tenants/+/edges/e1/config",
            "/tenants/acme/edges/e1/config",
            "",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn filters_match_the_tree() {
        assert_eq!(
            filter::all_edges(Channel::Manifests),
            "tapfleet/v1/tenants/+/edges/+/manifests"
        );
        assert_eq!(filter::enroll_requests(), "tapfleet/v1/enroll/+/request");
    }
}
