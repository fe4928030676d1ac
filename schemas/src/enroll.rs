//! Enrollment: an edge with a claim token asks for its own identity and credentials.
//!
//! The edge connects with the claim token as its MQTT password, publishes an [`EnrollRequest`]
//! on `tapfleet/v1/enroll/{session}/request` and waits for the [`EnrollResponse`] on the matching
//! response topic. The session is a random identifier the edge chose.

use serde::{Deserialize, Serialize};

use crate::codec::{SCHEMA_VERSION, message};

/// edge -> manager: "let me join with this claim token".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub v: u16,
    /// The claim token (also the MQTT password of the enrolling connection).
    pub token: String,
    /// The session named in the topic; the response goes to the same session.
    pub session: String,
    /// The edge's wish for its id (e.g. derived from its host name); the manager may alter it.
    pub requested_edge_id: Option<String>,
    /// The host the edge runs on, for display.
    pub hostname: String,
    /// `tapfleet-edge` version.
    pub software_version: String,
}
message!(EnrollRequest, "EnrollRequest", 16 * 1024);

impl EnrollRequest {
    pub fn new(token: String, session: String, hostname: String, software_version: String) -> Self {
        EnrollRequest {
            v: SCHEMA_VERSION,
            token,
            session,
            requested_edge_id: None,
            hostname,
            software_version,
        }
    }
}

/// manager -> edge: the outcome of an enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub v: u16,
    pub session: String,
    pub result: EnrollResult,
}
message!(EnrollResponse, "EnrollResponse", 16 * 1024);

/// Accepted with an identity, or refused with a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnrollResult {
    Accepted(EnrollGrant),
    Refused { reason: String },
}

/// The identity and credentials the manager issued to an edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollGrant {
    pub tenant: String,
    pub edge_id: String,
    /// MQTT user name of the edge's own connections.
    pub username: String,
    /// MQTT password of the edge's own connections. A secret: never log it.
    pub password: String,
}

impl EnrollResponse {
    pub fn new(session: String, result: EnrollResult) -> Self {
        EnrollResponse {
            v: SCHEMA_VERSION,
            session,
            result,
        }
    }
}
