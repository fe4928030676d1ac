//! The fleet's certificates: what a certificate identity means, and the pure operations of a
//! fleet CA (rcgen, ECDSA P-256) that the manager keeps and the tests use.
//!
//! - An edge's certificate names it twice: `CN = <edge id>`, `O = <tenant>`, and the SAN URI
//!   `tapfleet://tenant/<tenant>/edge/<edge id>`, which is what the gate reads ([`cert_identity`]).
//!   It carries the clientAuth extended key usage only, so it cannot serve TLS, and the
//!   broker's server certificate (serverAuth only) cannot log in as a client.
//! - The CA signs an edge's CSR ([`FleetCa::sign_edge_csr`]): only the CSR's public key is used;
//!   subject, SANs, usages and lifetime are the CA's choice, never the requester's.
//!
//! Everything here takes PEM text and `now` (Unix seconds) and returns PEM text: no files, no
//! clock. Key material is returned as [`Secret`] so it is never printed by accident.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tapfleet_schemas::topic::validate_id;

/// Scheme and prefix of the SAN URI that names an edge.
pub const URI_PREFIX: &str = "tapfleet://tenant/";

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("not a PEM certificate")]
    NotPem,
    #[error("certificate not parsable: {0}")]
    Parse(String),
    #[error("bad identity: {0}")]
    Identity(String),
    #[error("no randomness: {0}")]
    Random(String),
    #[error("time out of range")]
    Time,
}

/// Key material in PEM form; its `Debug` shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The SAN URI of an edge.
pub fn edge_uri(tenant: &str, edge: &str) -> String {
    format!("{URI_PREFIX}{tenant}/edge/{edge}")
}

/// Reads `tapfleet://tenant/<t>/edge/<e>` back; both must be valid topic ids.
pub fn parse_edge_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix(URI_PREFIX)?;
    let (tenant, edge) = rest.split_once("/edge/")?;
    (validate_id(tenant).is_ok() && validate_id(edge).is_ok())
        .then(|| (tenant.to_owned(), edge.to_owned()))
}

/// The identity a (verified) client certificate names: `(tenant, edge)` from its SAN URI, or
/// `None` when it names no edge. Exactly one tapfleet URI is accepted.
pub fn cert_identity(der: &[u8]) -> Result<Option<(String, String)>, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let mut found = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(u) = name
                && u.starts_with(URI_PREFIX)
            {
                found.push(
                    parse_edge_uri(u)
                        .ok_or_else(|| PkiError::Identity(format!("malformed URI {u:?}")))?,
                );
            }
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(PkiError::Identity("more than one tapfleet URI".into())),
    }
}

/// `notBefore` and `notAfter` of a PEM certificate, Unix seconds.
pub fn validity(cert_pem: &str) -> Result<(i64, i64), PkiError> {
    let der = pem_der(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The DER of the first certificate in a PEM text.
pub fn pem_der(cert_pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|_| PkiError::NotPem)
}

fn at(unix_s: i64) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(unix_s).map_err(|_| PkiError::Time)
}

fn serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| PkiError::Random(e.to_string()))?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte
    Ok(SerialNumber::from_slice(&b))
}

/// Backdating of every certificate, for clocks slightly behind.
const BACKDATE_S: i64 = 3600;

/// A fleet CA: its certificate and key.
pub struct FleetCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetCa(..)")
    }
}

/// A certificate with its new private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Secret,
}

impl FleetCa {
    /// A new self-signed CA named `name`, valid `lifetime_s` from `now`. Returns the CA and its
    /// key PEM (to be kept private).
    pub fn generate(name: &str, now: i64, lifetime_s: i64) -> Result<(Self, Secret), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "tapfleet");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = at(now - BACKDATE_S)?;
        p.not_after = at(now.saturating_add(lifetime_s))?;
        p.serial_number = Some(serial()?);
        let cert = p.self_signed(&key)?;
        let key_pem = Secret(key.serialize_pem());
        Ok((
            FleetCa {
                cert_pem: cert.pem(),
                issuer: Issuer::new(p, key),
            },
            key_pem,
        ))
    }

    /// The CA from its certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(FleetCa {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate (what clients and the gate trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn edge_params(
        tenant: &str,
        edge: &str,
        now: i64,
        lifetime_s: i64,
    ) -> Result<CertificateParams, PkiError> {
        for id in [tenant, edge] {
            validate_id(id).map_err(|e| PkiError::Identity(e.to_string()))?;
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, edge);
        dn.push(DnType::OrganizationName, tenant);
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::URI(edge_uri(tenant, edge).try_into()?)];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = at(now - BACKDATE_S)?;
        p.not_after = at(now.saturating_add(lifetime_s))?;
        p.serial_number = Some(serial()?);
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }

    /// Signs an edge's CSR (PEM): the certificate carries the CSR's public key and nothing else
    /// of it. The CSR's own signature is checked (proof of possession of the key).
    pub fn sign_edge_csr(
        &self,
        csr_pem: &str,
        tenant: &str,
        edge: &str,
        now: i64,
        lifetime_s: i64,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let req = CertificateSigningRequestParams {
            params: Self::edge_params(tenant, edge, now, lifetime_s)?,
            public_key: csr.public_key,
        };
        Ok(req.signed_by(&self.issuer)?.pem())
    }

    /// An edge certificate with a new key (tests, and edges that cannot make a CSR).
    pub fn issue_edge(
        &self,
        tenant: &str,
        edge: &str,
        now: i64,
        lifetime_s: i64,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert =
            Self::edge_params(tenant, edge, now, lifetime_s)?.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Secret(key.serialize_pem()),
        })
    }

    /// The broker's server certificate for `hosts` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        hosts: &[String],
        now: i64,
        lifetime_s: i64,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hosts.first().map(String::as_str).unwrap_or("localhost"),
        );
        dn.push(DnType::OrganizationName, "tapfleet");
        p.distinguished_name = dn;
        let mut sans = Vec::new();
        for h in hosts {
            sans.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.as_str().try_into()?),
            });
        }
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = at(now - BACKDATE_S)?;
        p.not_after = at(now.saturating_add(lifetime_s))?;
        p.serial_number = Some(serial()?);
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Secret(key.serialize_pem()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    #[test]
    fn a_signed_csr_names_the_edge_the_ca_chose() {
        let (ca, key) = FleetCa::generate("test CA", NOW, 3650 * DAY).expect("ca");
        let ca = FleetCa::from_pem(ca.cert_pem(), &key.0).expect("reloaded");
        let edge_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut wish = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
        wish.distinguished_name
            .push(DnType::CommonName, "someone-else");
        let csr = wish
            .serialize_request(&edge_key)
            .expect("csr")
            .pem()
            .expect("pem");
        let cert = ca
            .sign_edge_csr(&csr, "acme", "pbx-1", NOW, 30 * DAY)
            .expect("signed");
        let der = pem_der(&cert).expect("der");
        assert_eq!(
            cert_identity(&der).expect("parses"),
            Some(("acme".into(), "pbx-1".into()))
        );
        let (nb, na) = validity(&cert).expect("validity");
        assert_eq!(na, NOW + 30 * DAY);
        assert!(nb < NOW);
        let (_, x) = x509_parser::parse_x509_certificate(&der).expect("x509");
        assert!(!x.subject().to_string().contains("someone-else"));
        assert_eq!(
            x.public_key().subject_public_key.data.as_ref(),
            edge_key.public_key_raw()
        );
        assert!(ca.sign_edge_csr("garbage", "acme", "e", NOW, DAY).is_err());
        assert!(ca.sign_edge_csr(&csr, "ac/me", "e", NOW, DAY).is_err());
    }

    #[test]
    fn edge_uris_round_trip_and_reject_bad_ids() {
        assert_eq!(
            parse_edge_uri(&edge_uri("t1", "e-1")),
            Some(("t1".into(), "e-1".into()))
        );
        assert_eq!(parse_edge_uri("tapfleet://tenant/a/b/edge/c"), None);
        assert_eq!(parse_edge_uri("tapfleet://tenant/+/edge/c"), None);
        assert_eq!(parse_edge_uri("https://x"), None);
        let (ca, _) = FleetCa::generate("ca", NOW, DAY).expect("ca");
        let server = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into()], NOW, DAY)
            .expect("server");
        let der = pem_der(&server.cert_pem).expect("der");
        assert_eq!(cert_identity(&der).expect("parses"), None);
        assert_eq!(format!("{:?}", server.key_pem), "Secret(..)");
    }
}
