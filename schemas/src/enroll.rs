//! Enrollment: an edge with a claim token asks for its own identity and credentials.
//!
//! The edge connects with the claim token as its MQTT password, publishes an [`EnrollRequest`]
//! on `tapfleet/v1/enroll/{session}/request` and waits for the [`EnrollResponse`] on the matching
//! response topic. The session is a random identifier the edge chose.
//!
//! With a CSR (`csr_pem`, a key pair the edge made and keeps) the grant also carries a
//! certificate from the fleet CA naming the edge and its tenant, and the CA certificate: the edge
//! then connects over TLS with its own identity. Renewal: an edge connected with its certificate
//! sends the same request on its own session `renew-{edge id}` (no token needed: the broker lets
//! only that edge use that session).

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
    /// A PKCS#10 certificate signing request (PEM) for the edge's own key pair. Added in 0.1
    /// (absent: password credentials only).
    #[serde(default)]
    pub csr_pem: Option<String>,
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
            csr_pem: None,
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
    /// The edge's certificate (PEM) signed by the fleet CA, when the request had a CSR.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// The fleet CA certificate (PEM): what the edge trusts for the broker's TLS certificate.
    #[serde(default)]
    pub ca_pem: Option<String>,
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
