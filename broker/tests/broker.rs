//! Drives a started broker with real rumqttc clients: issued credentials connect, wrong or
//! missing ones are refused, claim tokens work only for enrolling clients, a 1 MiB publish passes
//! and retained messages reach a late subscriber, credential file reloads apply.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use tapfleet_broker::{BrokerConfig, CredentialStore, Role};

fn edge() -> Role {
    Role::Edge {
        tenant: "acme".into(),
    }
}

const BIG: &str = "tapfleet/v1/tenants/acme/edges/edge-1/upload";
const RETAINED: &str = "tapfleet/v1/tenants/acme/edges/edge-1/state";

fn start_broker() -> (tapfleet_broker::BrokerHandle, CredentialStore) {
    let creds = CredentialStore::new();
    creds
        .set_password("edge-1", "right", edge())
        .expect("random");
    creds
        .set_password("mgr", "m", Role::Manager)
        .expect("random");
    creds.add_claim_token("claim-123");
    let cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..BrokerConfig::default()
    };
    let h = tapfleet_broker::start(cfg, creds.clone()).expect("broker starts");
    (h, creds)
}

fn client(
    h: &tapfleet_broker::BrokerHandle,
    id: &str,
    user: Option<(&str, &str)>,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", h.local_addr().port());
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    o.set_keep_alive(Duration::from_secs(10));
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    AsyncClient::new(o, 16)
}

/// Polls until CONNACK (true) or a connection error (false).
async fn connects(el: &mut EventLoop) -> bool {
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return a.code == ConnectReturnCode::Success;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    r.unwrap_or(false)
}

#[tokio::test]
async fn only_issued_credentials_connect() {
    let (h, creds) = start_broker();
    let (_c, mut el) = client(&h, "edge-1", Some(("edge-1", "right")));
    assert!(connects(&mut el).await, "issued credentials refused");
    let (_c, mut el) = client(&h, "edge-1b", Some(("edge-1", "wrong")));
    assert!(!connects(&mut el).await, "wrong password accepted");
    let (_c, mut el) = client(&h, "anon", None);
    assert!(!connects(&mut el).await, "no credentials accepted");
    let (_c, mut el) = client(&h, "enroll-s1", Some(("enroll", "claim-123")));
    assert!(connects(&mut el).await, "claim token refused");
    let (_c, mut el) = client(&h, "enroll-s2", Some(("enroll", "claim-999")));
    assert!(!connects(&mut el).await, "bad claim token accepted");
    // A user added later connects without restarting the broker.
    creds.set_password("edge-2", "pw2", edge()).expect("random");
    let (_c, mut el) = client(&h, "edge-2", Some(("edge-2", "pw2")));
    assert!(connects(&mut el).await, "new user refused");
    creds.remove("edge-2");
    let (_c, mut el) = client(&h, "edge-2", Some(("edge-2", "pw2")));
    assert!(!connects(&mut el).await, "removed user accepted");
}

#[tokio::test]
async fn one_mib_publish_and_retained_messages_pass() {
    let (h, _creds) = start_broker();
    let (sub, mut sub_el) = client(&h, "sub", Some(("mgr", "m")));
    assert!(connects(&mut sub_el).await);
    sub.subscribe(BIG, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (publ, mut pub_el) = client(&h, "pub", Some(("edge-1", "right")));
    assert!(connects(&mut pub_el).await);
    let pub_task = tokio::spawn(async move {
        loop {
            if pub_el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    // Wait for the SUBACK before publishing.
    let suback = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = sub_el.poll().await {
                return;
            }
        }
    })
    .await;
    assert!(suback.is_ok(), "no suback");
    let big: Vec<u8> = (0..(1024 * 1024 + 300)).map(|i| (i % 251) as u8).collect();
    publ.publish(BIG, QoS::AtLeastOnce, false, big.clone())
        .await
        .expect("publish");
    publ.publish(RETAINED, QoS::AtLeastOnce, true, b"keep".to_vec())
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = sub_el.poll().await {
                return p.payload.to_vec();
            }
        }
    })
    .await
    .expect("big publish delivered");
    assert_eq!(got, big);

    // A subscriber that comes later receives the retained message.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (late, mut late_el) = client(&h, "late", Some(("mgr", "m")));
    assert!(connects(&mut late_el).await);
    late.subscribe(RETAINED, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (retain, payload) = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = late_el.poll().await {
                return (p.retain, p.payload.to_vec());
            }
        }
    })
    .await
    .expect("retained delivered");
    assert!(retain);
    assert_eq!(payload, b"keep");
    pub_task.abort();
}

#[test]
fn a_taken_port_is_an_error_not_a_false_start() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let cfg = BrokerConfig {
        listen: blocker.local_addr().expect("addr"),
        ..BrokerConfig::default()
    };
    let err = tapfleet_broker::start(cfg, CredentialStore::new()).expect_err("port is taken");
    assert!(
        matches!(err, tapfleet_broker::BrokerError::Bind { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn credentials_file_changes_are_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker-credentials.toml");
    let writer = CredentialStore::new();
    writer
        .set_password("edge-1", "one", edge())
        .expect("random");
    writer.to_file().write_atomic(&path).expect("written");
    let creds = CredentialStore::load(&path).expect("loads");
    tapfleet_broker::watch_file(path.clone(), creds.clone(), Duration::from_millis(50))
        .expect("watch");
    let cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..BrokerConfig::default()
    };
    let h = tapfleet_broker::start(cfg, creds).expect("broker starts");
    let (_c, mut el) = client(&h, "e1", Some(("edge-1", "one")));
    assert!(connects(&mut el).await);
    let (_c, mut el) = client(&h, "e2", Some(("edge-2", "two")));
    assert!(!connects(&mut el).await);

    // The manager enrolls edge-2 and rewrites the file.
    writer
        .set_password("edge-2", "two", edge())
        .expect("random");
    writer.add_claim_token("claim");
    writer.to_file().write_atomic(&path).expect("rewritten");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_c, mut el) = client(&h, "e2", Some(("edge-2", "two")));
        if connects(&mut el).await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new credentials not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_c, mut el) = client(&h, "enroll-x", Some(("enroll", "claim")));
    assert!(connects(&mut el).await, "claim token from the file refused");
}
