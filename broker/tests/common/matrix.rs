//! The refusal matrix every broker tapfleet supports must pass, driven with Debian's
//! `mosquitto_sub` / `mosquitto_pub` (package mosquitto-clients; missing tools fail the test):
//! no credentials, a wrong password, a revoked edge; edge A subscribing to every channel of edge
//! B, to `#` and to every enrollment response; A publishing on B's channels (a forged manifest
//! among them); the claim identity reading another session's enrollment response; over TLS, no
//! certificate, a certificate of another CA, an expired one, and A's certificate reading B.
//! Every attempt fails (nothing leaks, nothing forged is delivered) and the broker records it.
//!
//! Run against the embedded gate (`mosquitto_clients.rs`) and against Debian's mosquitto with
//! `deploy/mosquitto/` (`mosquitto_broker.rs`) through [`Target`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tapfleet_broker::FleetCa;
use tapfleet_schemas::{Channel, Topic};

use super::{CLAIM, EDGE_A, EDGE_C, MANAGER, Seen, connect_port, edge_topic};

/// The revoked edge of the matrix (it can connect until [`Target::revoke`]).
pub const REVOKED: (&str, &str) = EDGE_C;

/// One attempt the broker must refuse and record.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// A CONNECT (or TLS handshake) refused; the client id.
    Connect(String),
    /// A SUBSCRIBE by client id to a filter.
    Subscribe(String, String),
    /// A PUBLISH by client id on a topic.
    Publish(String, String),
    /// A TLS handshake refused.
    Handshake,
}

/// The TLS side of a target: port and the fleet PKI its clients use.
pub struct Tls<'a> {
    pub port: u16,
    pub pki: &'a Pki,
}

/// A broker under test.
pub trait Target {
    fn name(&self) -> &str;
    /// The user + password listener.
    fn port(&self) -> u16;
    /// The client-certificate listener, if the target has one.
    fn tls(&self) -> Option<Tls<'_>>;
    /// A position in the broker's record of refusals (a counter, a log offset).
    fn mark(&self) -> u64;
    /// Whether every attempt since `mark` is recorded; else what is missing.
    fn recorded_since(&self, mark: u64, attempts: &[Attempt]) -> Result<(), String>;
    /// Revokes an edge the way this broker's deployment does.
    fn revoke(&self, edge: &str);
    /// The broker refuses forbidden filters in the SUBACK (the gate). Debian's mosquitto 2.0
    /// grants them and checks the ACL at each delivery instead, so nothing arrives.
    fn denies_in_suback(&self) -> bool;
    /// The broker admits claim-token (user `enroll`) clients at all (mosquitto with
    /// `deploy/mosquitto/` does not: enrollment goes through the embedded broker or HTTP).
    fn admits_enrolling_clients(&self) -> bool;
}

/// PEM files of one client: (cert, key).
pub struct Pair(pub PathBuf, pub PathBuf);

/// A fleet CA with a server certificate for localhost, and client certificates: edge A, edge-r
/// (tenant acme, for a test that revokes it), one of another CA naming edge A, and an expired
/// one of edge A.
pub struct Pki {
    pub ca: PathBuf,
    pub server: Pair,
    pub a: Pair,
    pub r: Pair,
    pub foreign: Pair,
    pub expired: Pair,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pem");
    p
}

fn pair(dir: &Path, name: &str, issued: tapfleet_broker::Issued) -> Pair {
    Pair(
        write(dir, &format!("{name}.crt"), &issued.cert_pem),
        write(dir, &format!("{name}.key"), &issued.key_pem.0),
    )
}

impl Pki {
    /// Issues everything into `dir`.
    pub fn new(dir: &Path) -> Pki {
        const DAY: i64 = 86_400;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (ca, _) = FleetCa::generate("test fleet CA", t, 365 * DAY).expect("ca");
        let (other, _) = FleetCa::generate("another CA", t, 365 * DAY).expect("other ca");
        let server = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into()], t, DAY)
            .expect("server cert");
        Pki {
            ca: write(dir, "ca.crt", ca.cert_pem()),
            server: pair(dir, "server", server),
            a: pair(
                dir,
                "a",
                ca.issue_edge("acme", EDGE_A.0, t, DAY).expect("a"),
            ),
            r: pair(
                dir,
                "r",
                ca.issue_edge("acme", "edge-r", t, DAY).expect("r"),
            ),
            foreign: pair(
                dir,
                "foreign",
                other.issue_edge("acme", EDGE_A.0, t, DAY).expect("foreign"),
            ),
            expired: pair(
                dir,
                "expired",
                ca.issue_edge("acme", EDGE_A.0, t - 10 * DAY, DAY)
                    .expect("expired"),
            ),
        }
    }
}

/// Panics unless `tool` is on PATH.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is required (apt-get install mosquitto-clients): this test does not skip"
    );
}

/// How a mosquitto client reaches the broker.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// Plain TCP with an optional user + password.
    Password(u16, Option<(&'a str, &'a str)>),
    /// TLS to `localhost:port`, trusting the PKI's CA, with an optional client certificate.
    Tls(u16, &'a Path, Option<&'a Pair>),
}

/// A mosquitto client command (`tool` = mosquitto_sub | mosquitto_pub).
pub fn mosq(tool: &str, via: Via<'_>, id: &str, args: &[&str]) -> Command {
    require(tool);
    let mut cmd = Command::new(tool);
    cmd.args(["-i", id, "-V", "mqttv311"]);
    match via {
        Via::Password(port, user) => {
            cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
            if let Some((u, p)) = user {
                cmd.args(["-u", u, "-P", p]);
            }
        }
        Via::Tls(port, ca, cert) => {
            cmd.args(["-h", "localhost", "-p", &port.to_string(), "--cafile"])
                .arg(ca);
            if let Some(Pair(c, k)) = cert {
                cmd.arg("--cert").arg(c).arg("--key").arg(k);
            }
        }
    }
    cmd.args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// stdout + stderr, lower case.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .to_lowercase()
}

/// Runs a command to its end: output and its text.
pub fn run(mut cmd: Command) -> (Output, String) {
    let out = cmd.output().expect("mosquitto client runs");
    let t = text(&out);
    println!("{cmd:?} -> {:?}: {}", out.status.code(), t.trim());
    (out, t)
}

/// `mosquitto_sub` on `filter` for at most `secs`, ending at the first message.
pub fn sub(via: Via<'_>, id: &str, filter: &str, secs: u32) -> Command {
    mosq(
        "mosquitto_sub",
        via,
        id,
        &[
            "-t",
            filter,
            "-C",
            "1",
            "-W",
            &secs.to_string(),
            "-q",
            "1",
            "-v",
        ],
    )
}

/// Runs commands at once; their outputs in order.
fn run_all(cmds: Vec<Command>) -> Vec<(Output, String)> {
    let children: Vec<(String, Child)> = cmds
        .into_iter()
        .map(|mut c| {
            (
                format!("{c:?}"),
                c.spawn().expect("mosquitto client starts"),
            )
        })
        .collect();
    children
        .into_iter()
        .map(|(what, c)| {
            let out = c.wait_with_output().expect("mosquitto client ends");
            let t = text(&out);
            println!("{what} -> {:?}: {}", out.status.code(), t.trim());
            (out, t)
        })
        .collect()
}

/// Waits (up to 3 s: logs are written asynchronously) until the target recorded `attempts`.
fn assert_recorded(t: &dyn Target, mark: u64, attempts: &[Attempt]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match t.recorded_since(mark, attempts) {
            Ok(()) => return,
            Err(missing) if Instant::now() >= deadline => {
                panic!("{}: not recorded: {missing}", t.name())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn refused_login(out: &Output, t: &str) -> bool {
    !out.status.success() && (t.contains("not authori") || t.contains("bad user name or password"))
}

/// Runs the whole matrix against `t`.
pub async fn refusal_matrix(t: &dyn Target) {
    let name = t.name().to_owned();
    let port = t.port();
    let b = |ch| edge_topic("acme", "edge-b", ch);
    let (b_config, b_jobs, b_acks, b_manifests, b_upload, b_state) = (
        b(Channel::Config),
        b(Channel::Jobs),
        b(Channel::Acks),
        b(Channel::Manifests),
        b(Channel::Upload),
        b(Channel::State),
    );
    let s2_resp = Topic::enroll_response("s2").expect("topic").to_string();

    // The manager leaves a secret, retained, on every channel of B and on session s2's
    // enrollment response: a subscription that reaches one receives it at once.
    let mut m = connect_port(port, "tapfleet-manager", Some(MANAGER))
        .await
        .unwrap_or_else(|c| panic!("{name}: manager refused: {c:?}"));
    for topic in [
        &b_config,
        &b_jobs,
        &b_acks,
        &b_manifests,
        &b_upload,
        &b_state,
        &s2_resp,
    ] {
        m.publish(topic, true, format!("secret of b on {topic}").into_bytes())
            .await;
        assert!(m.puback_or_closed().await, "{name}: manager publish");
    }

    // Logins: none, a wrong password, a revoked edge (which could log in before).
    let (o, txt) = run(sub(
        Via::Password(port, Some(REVOKED)),
        "edge-c",
        "x/never",
        1,
    ));
    assert!(
        !refused_login(&o, &txt),
        "{name}: edge-c before revocation: {txt}"
    );
    t.revoke(REVOKED.0);
    let mark = t.mark();
    let logins = run_all(vec![
        sub(Via::Password(port, None), "anon", "#", 1),
        sub(
            Via::Password(port, Some((EDGE_A.0, "wrong"))),
            "edge-a-wrong",
            "#",
            1,
        ),
        sub(Via::Password(port, Some(REVOKED)), "edge-c-revoked", "#", 1),
    ]);
    for (what, (o, txt)) in ["no credentials", "wrong password", "revoked"]
        .iter()
        .zip(&logins)
    {
        assert!(refused_login(o, txt), "{name}: {what} not refused: {txt}");
    }
    assert_recorded(
        t,
        mark,
        &["anon", "edge-a-wrong", "edge-c-revoked"].map(|c| Attempt::Connect(c.into())),
    );

    // Edge A subscribing into B, the whole tree, every enrollment response.
    let filters = [
        b_config.as_str(),
        b_jobs.as_str(),
        b_acks.as_str(),
        b_manifests.as_str(),
        b_upload.as_str(),
        "#",
        "tapfleet/#",
        "tapfleet/v1/tenants/+/edges/+/config",
        "tapfleet/v1/enroll/+/response",
    ];
    let mark = t.mark();
    let ids: Vec<String> = (0..filters.len()).map(|i| format!("edge-a-s{i}")).collect();
    let outs = run_all(
        filters
            .iter()
            .zip(&ids)
            .map(|(f, id)| sub(Via::Password(port, Some(EDGE_A)), id, f, 2))
            .collect(),
    );
    for (f, (_, txt)) in filters.iter().zip(&outs) {
        assert!(!txt.contains("secret"), "{name}: {f}: leaked: {txt}");
        if t.denies_in_suback() {
            assert!(txt.contains("denied"), "{name}: {f}: not denied: {txt}");
        }
    }
    let attempts: Vec<Attempt> = filters
        .iter()
        .zip(&ids)
        .map(|(f, id)| Attempt::Subscribe(id.clone(), (*f).to_owned()))
        .collect();
    assert_recorded(t, mark, &attempts);

    // Edge A publishing on B's channels: nothing reaches the manager.
    assert_eq!(m.subscribe(&["tapfleet/#"]).await.len(), 1);
    let forged = [
        &b_manifests,
        &b_state,
        &b_upload,
        &b_config,
        &Topic::enroll_request("s2").expect("topic").to_string(),
    ];
    let mark = t.mark();
    let ids: Vec<String> = (0..forged.len()).map(|i| format!("edge-a-p{i}")).collect();
    run_all(
        forged
            .iter()
            .zip(&ids)
            .map(|(topic, id)| {
                mosq(
                    "mosquitto_pub",
                    Via::Password(port, Some(EDGE_A)),
                    id,
                    &["-t", topic, "-m", "forged by a", "-q", "1"],
                )
            })
            .collect(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Some(seen) = m.next_until(deadline).await {
        if let Seen::Packet(rumqttc::Packet::Publish(p)) = seen {
            assert!(
                !p.payload.starts_with(b"forged"),
                "{name}: forged publish delivered on {}",
                p.topic
            );
        }
    }
    let attempts: Vec<Attempt> = forged
        .iter()
        .zip(&ids)
        .map(|(topic, id)| Attempt::Publish(id.clone(), (*topic).clone()))
        .collect();
    assert_recorded(t, mark, &attempts);

    // The claim identity reading another session's enrollment response.
    let mark = t.mark();
    let (o, txt) = run(sub(
        Via::Password(port, Some(("enroll", CLAIM))),
        "enroll-s1",
        &s2_resp,
        2,
    ));
    assert!(!txt.contains("secret"), "{name}: enrollment leaked: {txt}");
    if t.admits_enrolling_clients() {
        assert!(txt.contains("denied"), "{name}: {txt}");
        assert_recorded(
            t,
            mark,
            &[Attempt::Subscribe("enroll-s1".into(), s2_resp.clone())],
        );
    } else {
        assert!(
            refused_login(&o, &txt),
            "{name}: enroll user admitted: {txt}"
        );
        assert_recorded(t, mark, &[Attempt::Connect("enroll-s1".into())]);
    }

    // A's own traffic passes (the rules are not simply "deny all"): its retained config, and
    // its manifest reaching the manager.
    let a_config = edge_topic("acme", "edge-a", Channel::Config);
    let a_manifests = edge_topic("acme", "edge-a", Channel::Manifests);
    m.publish(&a_config, true, b"config of a".to_vec()).await;
    assert!(m.puback_or_closed().await, "{name}: manager publish");
    let (o, txt) = run(sub(
        Via::Password(port, Some(EDGE_A)),
        "edge-a",
        &a_config,
        5,
    ));
    assert!(
        o.status.success() && txt.contains("config of a"),
        "{name}: own config: {txt}"
    );
    let (o, txt) = run(mosq(
        "mosquitto_pub",
        Via::Password(port, Some(EDGE_A)),
        "edge-a",
        &["-t", &a_manifests, "-m", "manifest of a", "-q", "1"],
    ));
    assert!(o.status.success(), "{name}: own manifest: {txt}");
    let p = m
        .publish_on(&a_manifests, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{name}: own manifest not delivered"));
    assert_eq!(&p.payload[..], b"manifest of a");

    // Over TLS: strangers refused; A's own certificate reads its config, not B's.
    if let Some(tls) = t.tls() {
        let ca = tls.pki.ca.as_path();
        let mark = t.mark();
        let outs = run_all(vec![
            sub(Via::Tls(tls.port, ca, None), "tls-none", "#", 2),
            sub(
                Via::Tls(tls.port, ca, Some(&tls.pki.foreign)),
                "tls-foreign",
                "#",
                2,
            ),
            sub(
                Via::Tls(tls.port, ca, Some(&tls.pki.expired)),
                "tls-expired",
                "#",
                2,
            ),
        ]);
        for (what, (o, txt)) in ["no certificate", "another CA", "expired"]
            .iter()
            .zip(&outs)
        {
            assert!(
                !o.status.success() && !txt.contains("secret"),
                "{name}: TLS {what} not refused: {txt}"
            );
        }
        assert_recorded(
            t,
            mark,
            &[Attempt::Handshake, Attempt::Handshake, Attempt::Handshake],
        );
        let mark = t.mark();
        let (_, txt) = run(sub(
            Via::Tls(tls.port, ca, Some(&tls.pki.a)),
            "edge-a-tls",
            &b_config,
            2,
        ));
        assert!(!txt.contains("secret"), "{name}: TLS A read B: {txt}");
        let (o, txt) = run(sub(
            Via::Tls(tls.port, ca, Some(&tls.pki.a)),
            "edge-a",
            &a_config,
            5,
        ));
        assert!(
            o.status.success() && txt.contains("config of a"),
            "{name}: TLS own config: {txt}"
        );
        assert_recorded(
            t,
            mark,
            &[Attempt::Subscribe("edge-a-tls".into(), b_config.clone())],
        );
    }
}
