//! Debian's mosquitto as the fleet's broker, configured with `deploy/mosquitto/tapfleet.conf` and
//! `deploy/mosquitto/acl` as shipped (only ports, file paths and persistence are rewritten for a
//! temporary folder; a line that no longer matches fails the test), passes the same refusal
//! matrix as the embedded gate ([`common::matrix`]): with a password file for the manager and
//! three edges, and the TLS listener with certificates from a fleet CA. Needs the mosquitto
//! and mosquitto-clients packages (the test fails if they are missing).
//!
//! Where mosquitto differs, the matrix says so: it grants a forbidden SUBSCRIBE and delivers
//! nothing (its log records the subscription, not a denial), PUBACKs a forbidden PUBLISH and
//! drops it (logged as `Denied PUBLISH`), has no user for enrolling clients, and revokes an
//! edge by removing it from the password file and reloading (SIGHUP).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::matrix::{Attempt, Pki, Target, Tls, refusal_matrix, require};
use common::{EDGE_A, EDGE_B, EDGE_C, MANAGER};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/mosquitto");

struct Mosquitto {
    child: Child,
    port: u16,
    tls_port: u16,
    log: PathBuf,
    passwd: PathBuf,
    pki: Pki,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto log -----\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `text` with `from` replaced by `to`, which must occur.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "deploy/mosquitto/tapfleet.conf no longer has {from:?}: update this test"
    );
    text.replace(from, to)
}

impl Mosquitto {
    fn start() -> Mosquitto {
        require("mosquitto");
        require("mosquitto_passwd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // mosquitto started as root switches to its own user: let it read the folder.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let pki = Pki::new(d);
        let passwd = d.join("tapfleet.passwd");
        for (i, (user, pass)) in [MANAGER, EDGE_A, EDGE_B, EDGE_C].iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            if i == 0 {
                cmd.arg("-c");
            }
            let st = cmd
                .arg("-b")
                .arg(&passwd)
                .args([user, pass])
                .status()
                .expect("mosquitto_passwd runs");
            assert!(st.success(), "mosquitto_passwd {user}");
        }
        let (port, tls_port) = (free_port(), free_port());
        let conf = std::fs::read_to_string(format!("{DEPLOY}/tapfleet.conf")).expect("conf");
        let conf = rewrite(
            &conf,
            "listener 1883 127.0.0.1",
            &format!("listener {port} 127.0.0.1"),
        );
        let conf = rewrite(
            &conf,
            "listener 8883 0.0.0.0",
            &format!("listener {tls_port} 127.0.0.1"),
        );
        let conf = rewrite(
            &conf,
            "/etc/mosquitto/tapfleet.passwd",
            &passwd.to_string_lossy(),
        );
        let conf = rewrite(
            &conf,
            "/etc/mosquitto/tapfleet.acl",
            &format!("{DEPLOY}/acl"),
        );
        let conf = rewrite(
            &conf,
            "/etc/mosquitto/tapfleet/ca.crt",
            &pki.ca.to_string_lossy(),
        );
        let conf = rewrite(
            &conf,
            "/etc/mosquitto/tapfleet/server.crt",
            &pki.server.0.to_string_lossy(),
        );
        let conf = rewrite(
            &conf,
            "/etc/mosquitto/tapfleet/server.key",
            &pki.server.1.to_string_lossy(),
        );
        let conf = rewrite(&conf, "persistence true", "persistence false");
        let conf = format!("{conf}\nlog_dest stderr\nlog_type all\nconnection_messages true\n");
        let conf_path = d.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write conf");
        let log = d.join("mosquitto.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_path)
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("mosquitto starts");
        let mut m = Mosquitto {
            child,
            port,
            tls_port,
            log,
            passwd,
            pki,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while [port, tls_port]
            .iter()
            .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            assert!(
                matches!(m.child.try_wait(), Ok(None)),
                "mosquitto exited:\n{}",
                m.log_text()
            );
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

fn count(text: &str, pats: &[&str]) -> usize {
    text.lines()
        .filter(|l| {
            let l = l.to_lowercase();
            pats.iter().any(|p| l.contains(p))
        })
        .count()
}

impl Target for Mosquitto {
    fn name(&self) -> &str {
        "mosquitto"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn tls(&self) -> Option<Tls<'_>> {
        Some(Tls {
            port: self.tls_port,
            pki: &self.pki,
        })
    }
    fn mark(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }
    fn recorded_since(&self, mark: u64, attempts: &[Attempt]) -> Result<(), String> {
        let all = std::fs::read(&self.log).unwrap_or_default();
        let since =
            String::from_utf8_lossy(all.get(mark as usize..).unwrap_or_default()).into_owned();
        let refused_logins = count(&since, &["disconnected, not authorised"]);
        let failed_handshakes = count(&since, &["openssl error", "protocol error"]);
        let (mut logins, mut handshakes) = (0, 0);
        for a in attempts {
            match a {
                Attempt::Connect(_) => logins += 1,
                Attempt::Handshake => handshakes += 1,
                // mosquitto logs the subscription (`<client> <qos> <filter>`); the ACL then
                // withholds every message.
                Attempt::Subscribe(id, f) => {
                    if !since.contains(&format!("{id} 1 {f}")) {
                        return Err(format!("SUBSCRIBE of {id} to {f}"));
                    }
                }
                Attempt::Publish(id, topic) => {
                    let found = since.lines().any(|l| {
                        l.contains(&format!("Denied PUBLISH from {id} "))
                            && l.contains(&format!("'{topic}'"))
                    });
                    if !found {
                        return Err(format!("Denied PUBLISH from {id} on {topic}"));
                    }
                }
            }
        }
        if refused_logins < logins {
            return Err(format!("{logins} refused logins, {refused_logins} logged"));
        }
        if failed_handshakes < handshakes {
            return Err(format!(
                "{handshakes} refused handshakes, {failed_handshakes} logged"
            ));
        }
        Ok(())
    }
    fn revoke(&self, edge: &str) {
        // The deployment's revocation: out of the password file, then reload.
        let text = std::fs::read_to_string(&self.passwd).expect("passwd");
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{edge}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(kept, text, "{edge} not in the password file");
        std::fs::write(&self.passwd, kept).expect("passwd");
        let mark = self.mark();
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let all = std::fs::read(&self.log).unwrap_or_default();
            let since = String::from_utf8_lossy(all.get(mark as usize..).unwrap_or_default())
                .to_lowercase();
            if since.contains("reloading config") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not reload on SIGHUP"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn denies_in_suback(&self) -> bool {
        false
    }
    fn admits_enrolling_clients(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_the_deploy_config_passes_the_refusal_matrix() {
    let t0 = Instant::now();
    let m = Mosquitto::start();
    refusal_matrix(&m).await;
    println!("matrix against mosquitto in {:?}", t0.elapsed());
}

/// The ACL file names every channel the gate's ACL (`acl.rs`) allows an edge, in the same
/// direction, and nothing in both directions.
#[test]
fn the_acl_file_covers_every_edge_channel() {
    let acl = std::fs::read_to_string(Path::new(DEPLOY).join("acl")).expect("acl");
    use tapfleet_broker::acl::{EDGE_PUBLISHES, EDGE_SUBSCRIBES};
    for (dir, chans) in [
        ("write", &EDGE_PUBLISHES[..]),
        ("read", &EDGE_SUBSCRIBES[..]),
    ] {
        for ch in chans {
            let line = format!(
                "pattern {dir} tapfleet/v1/tenants/+/edges/%u/{}",
                ch.as_str()
            );
            assert!(acl.lines().any(|l| l.trim() == line), "missing: {line}");
        }
    }
    assert!(
        !acl.lines()
            .any(|l| l.trim_start().starts_with("pattern readwrite")),
        "an edge pattern in both directions"
    );
}
