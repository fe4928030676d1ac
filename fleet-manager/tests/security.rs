//! The manager's security end to end, on the real binary with its TLS listener
//! (`--mqtt-tls-listen`) and real clients (rumqttc over TLS, Debian's mosquitto_pub/_sub; the
//! test fails if they are missing): the fleet CA is created private; an edge enrolls over TLS
//! with a CSR and gets a certificate naming it and its tenant (again: same edge); it connects
//! with that certificate, is confined to its namespace, and renews it on its own session; claim
//! tokens made with the CLI expire, run out and are revoked; a revoked edge is refused at once;
//! no token, password or key reaches the log.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fake_edge::*;
use common::*;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tapfleet_broker::pki::{cert_identity, pem_der, validity};
use tapfleet_schemas::{
    Channel, EnrollGrant, EnrollRequest, EnrollResponse, EnrollResult, Topic, decode, encode,
};

/// One enrollment exchange over TLS (`localhost:port`): `Err` if the connection is refused.
async fn exchange(
    port: u16,
    ca: &str,
    client_auth: Option<(&str, &str)>,
    client_id: &str,
    user: (&str, &str),
    req: &EnrollRequest,
) -> Result<EnrollResult, String> {
    let mut o = MqttOptions::new(client_id, "localhost", port);
    o.set_credentials(user.0, user.1);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca.as_bytes().to_vec(),
        alpn: None,
        client_auth: client_auth.map(|(c, k)| (c.as_bytes().to_vec(), k.as_bytes().to_vec())),
    }));
    let (c, mut el) = AsyncClient::new(o, 16);
    let req_topic = Topic::enroll_request(&req.session)
        .expect("topic")
        .to_string();
    let resp_topic = Topic::enroll_response(&req.session)
        .expect("topic")
        .to_string();
    let payload = encode(req).expect("encode");
    let out = tokio::time::timeout(T, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    if a.code != ConnectReturnCode::Success {
                        return Err(format!("{:?}", a.code));
                    }
                    c.try_subscribe(&resp_topic, QoS::AtLeastOnce)
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    c.try_publish(&req_topic, QoS::AtLeastOnce, false, payload.clone())
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == resp_topic => {
                    let r: EnrollResponse = decode(&p.payload).map_err(|e| e.to_string())?;
                    return Ok(r.result);
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer".into()));
    let _ = c.try_disconnect();
    out
}

fn request(token: &str, session: &str, host: &str) -> (EnrollRequest, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let mut r = EnrollRequest::new(token.into(), session.into(), host.into(), "test".into());
    r.csr_pem = Some(csr);
    (r, key.serialize_pem())
}

fn granted(r: Result<EnrollResult, String>) -> EnrollGrant {
    match r {
        Ok(EnrollResult::Accepted(g)) => g,
        other => panic!("enrollment not granted: {other:?}"),
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

/// `mosquitto_pub` over TLS with a client certificate: (success, output).
fn mosq_pub(port: u16, ca: &Path, cert: Option<(&Path, &Path)>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "localhost",
        "-p",
        &port.to_string(),
        "-V",
        "mqttv311",
        "-q",
        "1",
    ]);
    cmd.arg("--cafile").arg(ca);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd
        .args(args)
        .output()
        .expect("mosquitto_pub (apt-get install mosquitto-clients): this test does not skip");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    println!(
        "mosquitto_pub {args:?} -> {:?} {}",
        out.status.code(),
        text.trim()
    );
    (out.status.success(), text)
}

fn cli(http: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tapfleet-manager"))
        .args(args)
        .args(["--manager", &format!("http://{http}")])
        .env("TAPFLEET_API_TOKEN", API_TOKEN)
        .output()
        .expect("cli runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_enrollment_certificates_tokens_and_revocation() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let tls = free_port();
    let log = data.with_extension("log");
    let _m = Manager::start(&data, http, free_port(), &log, |c| {
        c.args(["--mqtt-tls-listen", &format!("127.0.0.1:{tls}")]);
    });

    // The CA and the broker's key are private; the CA certificate is what edges trust.
    for k in ["ca/ca.key", "ca/server.key"] {
        assert_eq!(mode(&data.join(k)), 0o600, "{k}");
    }
    let ca_file = data.join("ca/ca.crt");
    let ca = std::fs::read_to_string(&ca_file).expect("ca.crt");
    let token = std::fs::read_to_string(data.join("enroll.token")).expect("token");
    let token = token.trim();

    // Enrollment over TLS without a client certificate: a certificate naming the edge.
    let (req, key) = request(token, "s1", "pbx-1");
    let g = granted(exchange(tls, &ca, None, "enroll-s1", ("enroll", token), &req).await);
    assert_eq!(g.ca_pem.as_deref(), Some(ca.as_str()));
    let cert = g.certificate_pem.clone().expect("certificate issued");
    let der = pem_der(&cert).expect("pem");
    assert_eq!(
        cert_identity(&der).expect("x509"),
        Some(("default".to_owned(), g.edge_id.clone()))
    );
    let (nb, na) = validity(&cert).expect("validity");
    assert!(na - nb >= 89 * 86_400, "lifetime {}", na - nb);
    // Again (same host, same token): the same edge.
    let (req2, _) = request(token, "s2", "pbx-1");
    let again = granted(exchange(tls, &ca, None, "enroll-s2", ("enroll", token), &req2).await);
    assert_eq!(again.edge_id, g.edge_id);

    // The certificate is the identity: its own state passes, another edge's topic does not.
    let cert_file = dir.path().join("edge.crt");
    let key_file = dir.path().join("edge.key");
    std::fs::write(&cert_file, &cert).expect("write");
    std::fs::write(&key_file, &key).expect("write");
    let own = Topic::edge("default", &g.edge_id, Channel::State)
        .expect("t")
        .to_string();
    let other = Topic::edge("default", "someone-else", Channel::State)
        .expect("t")
        .to_string();
    let pair = Some((cert_file.as_path(), key_file.as_path()));
    let (ok, out) = mosq_pub(tls, &ca_file, pair, &["-i", "e1", "-t", &own, "-m", "up"]);
    assert!(ok, "own state over TLS: {out}");
    let (ok, _) = mosq_pub(
        tls,
        &ca_file,
        pair,
        &["-i", "e1", "-t", &other, "-m", "forged"],
    );
    assert!(!ok, "another edge's topic accepted");

    // Renewal on its own session, authenticated by the certificate alone.
    let session = format!("renew-{}", g.edge_id);
    let (renew, _) = request("", &session, "pbx-1");
    let r = granted(
        exchange(
            tls,
            &ca,
            Some((&cert, &key)),
            "e1-renew",
            ("x", "y"),
            &renew,
        )
        .await,
    );
    assert_eq!(r.edge_id, g.edge_id);
    assert!(r.password.is_empty(), "a renewal keeps the password");
    assert_ne!(r.certificate_pem.as_deref(), Some(cert.as_str()));
    // Nobody else may take a renewal session: an enrolling client is refused at CONNECT.
    let stolen = exchange(
        tls,
        &ca,
        None,
        &format!("enroll-{session}"),
        ("enroll", token),
        &renew,
    )
    .await;
    assert!(
        stolen.is_err(),
        "renewal session taken with a claim token: {stolen:?}"
    );

    // Claim tokens from the CLI: expiry, use limit, revocation.
    let created = cli(
        http,
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--expires",
            "2s",
            "--uses",
            "1",
        ],
    );
    let short = created
        .lines()
        .last()
        .expect("token line")
        .trim()
        .to_owned();
    assert_eq!(short.len(), 64);
    let (req3, _) = request(&short, "s3", "pbx-acme");
    let g3 = granted(exchange(tls, &ca, None, "enroll-s3", ("enroll", &short), &req3).await);
    assert_eq!(g3.tenant, "acme");
    let (req4, _) = request(&short, "s4", "pbx-acme-2");
    match exchange(tls, &ca, None, "enroll-s4", ("enroll", &short), &req4).await {
        Ok(EnrollResult::Refused { reason }) => assert!(reason.contains("used up"), "{reason}"),
        other => panic!("second edge on a 1-use token: {other:?}"),
    }
    let created = cli(http, &["token", "create", "--tenant", "acme"]);
    let id = created.split_whitespace().next().expect("id").to_owned();
    let revoked_token = created.lines().last().expect("token").trim().to_owned();
    cli(http, &["token", "revoke", &id]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let list = cli(http, &["token", "list"]);
    assert!(
        list.contains("expired") && list.contains("revoked"),
        "{list}"
    );
    for (what, t) in [("expired", &short), ("revoked", &revoked_token)] {
        let (ok, out) = mosq_pub(
            tls,
            &ca_file,
            None,
            &[
                "-i",
                "enroll-s5",
                "-u",
                "enroll",
                "-P",
                t,
                "-t",
                "tapfleet/v1/enroll/s5/request",
                "-m",
                "x",
            ],
        );
        assert!(
            !ok && out.contains("bad user name or password"),
            "{what} token: {out}"
        );
    }

    // Revocation: refused at once with its certificate, and it cannot enroll again.
    let out = cli(http, &["edge", "revoke", &g.edge_id]);
    assert!(out.contains("revoked"), "{out}");
    let (ok, out) = mosq_pub(tls, &ca_file, pair, &["-i", "e1", "-t", &own, "-m", "up"]);
    assert!(
        !ok && out.contains("not authori"),
        "revoked certificate: {out}"
    );
    let (req6, _) = request(token, "s6", "pbx-1");
    match exchange(tls, &ca, None, "enroll-s6", ("enroll", token), &req6).await {
        Ok(EnrollResult::Refused { reason }) => assert_eq!(reason, "edge revoked"),
        other => panic!("revoked edge enrolled again: {other:?}"),
    }

    // Secrets never logged.
    let text = std::fs::read_to_string(&log).expect("log");
    for (what, secret) in [
        ("claim token", token),
        ("cli token", short.as_str()),
        ("password", g.password.as_str()),
        ("key", key.lines().nth(1).expect("key line")),
    ] {
        assert!(!text.contains(secret), "{what} in the log");
    }
    assert!(text.contains("edge revoked"), "revocation not logged");
    println!("security test took {:?}", t0.elapsed());
}
