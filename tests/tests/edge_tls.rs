//! End to end over TLS: the manager with its embedded broker's TLS listener, and a real edge given
//! `--broker mqtts://localhost:PORT --ca DATA/ca/ca.crt` and the claim token. The edge makes its
//! key pair, enrolls with a CSR, reconnects with its own certificate and delivers every call;
//! then `tapfleet-manager edge revoke` drops it at once and it cannot come back.

use std::process::Command;
use std::time::{Duration, Instant};

use tapfleet_callgen::{CodecChoice, GenOptions, generate_to_file};
use tapfleet_tests::{Proc, bin, free_port, get_json, wait_for};

#[test]
fn an_edge_enrolls_delivers_over_tls_with_its_certificate_and_is_revoked() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, tls_port) = (free_port(), free_port());
    let http = format!("http://127.0.0.1:{http_port}");
    let mut cmd = tapfleet_tests::manager_serve(&dir.path().join("manager"), http_port);
    cmd.args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--mqtt-tls-listen", &format!("127.0.0.1:{tls_port}")])
        .env("RUST_LOG", "info");
    let manager = Proc::start("manager", cmd, dir.path());
    wait_for("manager /healthz", Duration::from_secs(30), || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });

    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 2,
        concurrency: 2,
        duration_s: 1.5,
        codec: CodecChoice::Pcmu,
        seed: 7,
        ..GenOptions::default()
    };
    generate_to_file(&opts, &pcap, None).expect("generate capture");
    let data = dir.path().join("edge");
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.args(["run", "--data"])
        .arg(&data)
        .args(["--broker", &format!("mqtts://localhost:{tls_port}")])
        .arg("--ca")
        .arg(dir.path().join("manager/ca/ca.crt"))
        .arg("--token-file")
        .arg(dir.path().join("manager/enroll.token"))
        .arg("--replay")
        .arg(&pcap)
        .args(["--metrics-listen", "off", "--log", "info"]);
    let mut edge = Proc::start("edge", cmd, dir.path());

    let edge_id = wait_for("2 recordings stored", Duration::from_secs(60), || {
        let v = get_json(&format!("{http}/api/v1/recordings"))?;
        let recs = v.get("recordings")?.as_array()?.clone();
        let stored: Vec<_> = recs.iter().filter(|r| r["state"] == "stored").collect();
        (stored.len() >= 2).then(|| stored[0]["edge_id"].as_str().map(str::to_owned))?
    });
    // Its own key, private; its certificate in the identity file.
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(data.join("identity.key"))
        .expect("identity.key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let identity = std::fs::read_to_string(data.join("identity.json")).expect("identity");
    assert!(
        identity.contains("BEGIN CERTIFICATE"),
        "no certificate kept"
    );
    let log = manager.output();
    assert!(
        log.contains("certificate=true"),
        "enrollment without a certificate"
    );

    // Revoked: its connections close at once and every reconnect is refused.
    let out = Command::new(bin("tapfleet-manager"))
        .args(["edge", "revoke", &edge_id, "--manager", &http])
        .env("TAPFLEET_API_TOKEN", tapfleet_tests::API_TOKEN)
        .output()
        .expect("cli");
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "connections of the revoked edge closed",
        Duration::from_secs(5),
        || {
            let log = manager.output();
            (log.matches("connection closed: edge revoked").count() >= 2).then_some(())
        },
    );
    wait_for("reconnect refused", Duration::from_secs(15), || {
        manager
            .output()
            .contains("reason=edge revoked")
            .then_some(())
    });
    edge.kill();
    println!("TLS delivery and revocation took {:?}", t0.elapsed());
}
