//! The in-process link (`BrokerHandle::connect_local`) against real rumqttc clients through the
//! gate: both directions pass, a publish to a topic nobody subscribed to does not cost the link,
//! retained messages reach the link and network subscribers, and a burst far beyond the router's
//! 200-message queue arrives whole and in order when the link reads slowly (flow control).

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use tapfleet_broker::{BrokerConfig, CredentialStore, LocalReceiver, Role};

const UPLOAD: &str = "tapfleet/v1/tenants/acme/edges/edge-1/upload";
const JOBS: &str = "tapfleet/v1/tenants/acme/edges/edge-1/jobs";
const CONFIG: &str = "tapfleet/v1/tenants/acme/edges/edge-1/config";

fn start() -> tapfleet_broker::BrokerHandle {
    let creds = CredentialStore::new();
    creds
        .set_password(
            "edge-1",
            "pw",
            Role::Edge {
                tenant: "acme".into(),
            },
        )
        .expect("random");
    let cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..BrokerConfig::default()
    };
    tapfleet_broker::start(cfg, creds).expect("broker starts")
}

async fn edge(h: &tapfleet_broker::BrokerHandle) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new("edge-1", "127.0.0.1", h.local_addr().port());
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    o.set_credentials("edge-1", "pw");
    let (c, mut el) = AsyncClient::new(o, 1024);
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::ConnAck(a))) = el.poll().await {
                return a.code == ConnectReturnCode::Success;
            }
        }
    })
    .await;
    assert_eq!(ok.ok(), Some(true), "edge refused");
    (c, el)
}

async fn next(rx: &mut LocalReceiver) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(10), rx.next())
        .await
        .expect("a message within 10 s")
        .expect("link up")
}

/// Polls the edge's event loop until it receives a publish on `topic`; returns its payload.
async fn edge_receives(el: &mut EventLoop, topic: &str) -> Bytes {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await
                && p.topic == topic
            {
                return p.payload;
            }
        }
    })
    .await
    .expect("the edge gets it within 10 s")
}

#[tokio::test]
async fn the_in_process_link_talks_to_network_clients() {
    let h = start();
    let (mut tx, mut rx) = h.connect_local("tapfleet-manager").expect("link");
    // Nobody subscribes to this yet: the link must survive (dynamic filters).
    tx.publish(CONFIG.into(), Bytes::from_static(b"v1"), true)
        .await
        .expect("publish");
    tx.subscribe("tapfleet/v1/tenants/+/edges/+/upload".into())
        .await
        .expect("subscribe");
    let (c, mut el) = edge(&h).await;
    c.subscribe(CONFIG, QoS::AtLeastOnce).await.expect("sub");
    c.subscribe(JOBS, QoS::AtLeastOnce).await.expect("sub");
    // The retained config reaches the edge that subscribed after it was published.
    assert_eq!(&edge_receives(&mut el, CONFIG).await[..], b"v1");
    // Edge -> link: a 1 MiB payload arrives byte for byte.
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    c.publish(UPLOAD, QoS::AtLeastOnce, false, big.clone())
        .await
        .expect("publish");
    let poll = tokio::spawn(async move {
        // Keeps the edge's connection going (acks) until the test ends.
        while el.poll().await.is_ok() {}
    });
    let (topic, payload) = next(&mut rx).await;
    assert_eq!(topic, UPLOAD);
    assert_eq!(&payload[..], &big[..]);
    poll.abort();
    drop(c);

    // Link -> edge, after the edge reconnects.
    let (c, mut el) = edge(&h).await;
    c.subscribe(JOBS, QoS::AtLeastOnce).await.expect("sub");
    // Wait for the SUBACK so the job is not published before the subscription exists.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = el.poll().await {
                return;
            }
        }
    })
    .await
    .expect("suback");
    tx.publish(JOBS.into(), Bytes::from_static(b"job-1"), false)
        .await
        .expect("publish");
    assert_eq!(&edge_receives(&mut el, JOBS).await[..], b"job-1");
}

#[tokio::test]
async fn a_burst_beyond_the_routers_queue_arrives_whole_and_in_order() {
    let h = start();
    let (mut tx, mut rx) = h.connect_local("tapfleet-manager").expect("link");
    tx.subscribe(UPLOAD.into()).await.expect("subscribe");
    let (c, mut el) = edge(&h).await;
    const N: u32 = 2_000;
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            c.publish(UPLOAD, QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
                .await
                .expect("publish");
        }
        c
    });
    let poll = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    for i in 0..N {
        let (_, p) = next(&mut rx).await;
        assert_eq!(&p[..], &i.to_be_bytes(), "message {i}");
        if i % 100 == 0 {
            // A slow reader: the router pauses the link and resumes it when read.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _c = publisher.await.expect("publisher");
    poll.abort();
}

/// A raw MQTT client that publishes QoS 1 for twice its keep-alive without ever sending a
/// PINGREQ (its publishes count as traffic, as MQTT says): the gate delivers publishes through its
/// link, so rumqttd sees nothing of them on the internal connection and would drop it after 1.5x
/// the keep-alive, unless the gate pings it. The client's own PINGREQ still gets its PINGRESP.
#[test]
fn a_client_that_only_publishes_outlives_its_keep_alive() {
    use std::io::{Read, Write};
    let h = start();
    let mut s = std::net::TcpStream::connect(h.local_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let connect = tapfleet_broker::mqtt::Connect {
        clean_session: true,
        keep_alive: 1,
        client_id: "edge-1".into(),
        will: None,
        username: Some("edge-1".into()),
        password: Some(b"pw".to_vec()),
    };
    s.write_all(&tapfleet_broker::mqtt::encode_connect(&connect).expect("encode"))
        .expect("send");
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).expect("connack");
    assert_eq!(connack, [0x20, 2, 0, 0], "accepted");
    let topic = UPLOAD.as_bytes();
    let started = std::time::Instant::now();
    let mut id: u16 = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        id += 1;
        let payload = [7u8; 100];
        let remaining = 2 + topic.len() + 2 + payload.len();
        // Remaining length as an MQTT variable-length integer (here below 16,384: two bytes).
        assert!(remaining < 16_384);
        let mut p = vec![
            0x32,
            (remaining as u8 & 0x7f) | 0x80,
            (remaining >> 7) as u8,
        ];
        p.extend_from_slice(&[0, topic.len() as u8]);
        p.extend_from_slice(topic);
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&payload);
        s.write_all(&p).expect("publish");
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).unwrap_or_else(|e| {
            panic!(
                "no PUBACK for publish {id} after {:?}: {e}",
                started.elapsed()
            )
        });
        let [hi, lo] = id.to_be_bytes();
        assert_eq!(ack, [0x40, 2, hi, lo], "PUBACK {id}");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.write_all(&[0xc0, 0]).expect("pingreq");
    let mut resp = [0u8; 2];
    s.read_exact(&mut resp).expect("pingresp");
    assert_eq!(resp, [0xd0, 0]);
}
