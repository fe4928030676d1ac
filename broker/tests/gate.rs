//! The gate's refusal matrix with real rumqttc clients: logins without or with wrong credentials,
//! an edge reaching into another edge's or tenant's namespace, an enrolling client reaching into
//! another session, a Will outside the namespace — all refused and counted; legitimate traffic
//! (1 MiB QoS1 publishes, retained messages, mixed SUBSCRIBEs) passes; 100 idle sockets do not
//! delay a real client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use tapfleet_schemas::{Channel, Topic};

const OK1: SubscribeReasonCode = SubscribeReasonCode::Success(QoS::AtLeastOnce);
const NO: SubscribeReasonCode = SubscribeReasonCode::Failure;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_without_valid_credentials_are_refused_with_codes() {
    let (h, _creds) = start_broker();
    let refused = |r: Result<Client, ConnectReturnCode>| r.err();
    assert_eq!(
        refused(connect(&h, "anon", None).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        refused(connect(&h, "edge-a", Some((EDGE_A.0, "wrong"))).await),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        refused(connect(&h, "x", Some(("nobody", "pw"))).await),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    // Another edge's password does not open this edge.
    assert_eq!(
        refused(connect(&h, "edge-a", Some((EDGE_A.0, EDGE_B.1))).await),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        refused(connect(&h, "enroll-s1", Some(("enroll", "bad-token"))).await),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        refused(connect(&h, "s1", Some(("enroll", CLAIM))).await),
        Some(ConnectReturnCode::BadClientId)
    );
    assert_eq!(
        refused(connect(&h, "enroll-../x", Some(("enroll", CLAIM))).await),
        Some(ConnectReturnCode::BadClientId)
    );
    // A Will outside the namespace (B's state) is refused at CONNECT.
    let o = with_will(
        options(&h, "edge-a", Some(EDGE_A)),
        &edge_topic("acme", "edge-b", Channel::State),
    );
    assert_eq!(
        connect_opts(o).await.0.err(),
        Some(ConnectReturnCode::NotAuthorized)
    );
    // The same with its own state topic connects.
    let o = with_will(
        options(&h, "edge-a", Some(EDGE_A)),
        &edge_topic("acme", "edge-a", Channel::State),
    );
    assert!(connect_opts(o).await.0.is_ok(), "own Will refused");
    let n = h.gate_counts();
    assert_eq!(n.refused_connect, 8, "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_subscribes_only_to_its_own_exact_inbound_topics() {
    let (h, _creds) = start_broker();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    // Retained secrets of edge B: its config and an ack.
    let b_config = edge_topic("acme", "edge-b", Channel::Config);
    let b_acks = edge_topic("acme", "edge-b", Channel::Acks);
    m.publish(&b_config, true, b"config of b".to_vec()).await;
    m.publish(&b_acks, true, b"ack of b".to_vec()).await;
    assert!(m.puback_or_closed().await && m.puback_or_closed().await);

    let mut a = must_connect(&h, "edge-a", EDGE_A).await;
    let own_config = edge_topic("acme", "edge-a", Channel::Config);
    let refused = [
        b_config.as_str(),
        b_acks.as_str(),
        "#",
        "tapfleet/v1/enroll/+/response",
        "tapfleet/v1/tenants/acme/edges/+/config",
        "tapfleet/v1/tenants/acme/edges/edge-a/#",
        "$SYS/#",
    ];
    let other_tenant = edge_topic("other", "edge-c", Channel::Config);
    let own_state = edge_topic("acme", "edge-a", Channel::State);
    for f in refused
        .iter()
        .copied()
        .chain([other_tenant.as_str(), own_state.as_str()])
    {
        assert_eq!(a.subscribe(&[f]).await, vec![NO], "{f} allowed");
    }
    // Mixed: the allowed filters are forwarded, the refused ones get 0x80 in place.
    let own_acks = edge_topic("acme", "edge-a", Channel::Acks);
    let codes = a.subscribe(&[&own_config, "#", &own_acks, &b_config]).await;
    assert_eq!(codes, vec![OK1, NO, OK1, NO]);
    // Nothing of B's ever arrives; A's own retained config does once published.
    assert!(
        a.publish_on(&b_config, Duration::from_millis(500))
            .await
            .is_none()
    );
    m.publish(&own_config, true, b"config of a".to_vec()).await;
    let p = a.publish_on(&own_config, T).await.expect("own config");
    assert_eq!(&p.payload[..], b"config of a");
    assert!(
        a.publish_on(&b_acks, Duration::from_millis(300))
            .await
            .is_none()
    );
    // The connection survives refused subscriptions.
    a.publish(&own_state, true, b"online".to_vec()).await;
    assert!(a.puback_or_closed().await);
    assert!(h.gate_counts().refused_subscribe >= 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_outside_the_namespace_closes_the_connection() {
    let (h, _creds) = start_broker();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    assert_eq!(m.subscribe(&["#"]).await, vec![OK1]);
    let forged = [
        edge_topic("acme", "edge-b", Channel::Manifests),
        edge_topic("acme", "edge-b", Channel::State),
        edge_topic("other", "edge-a", Channel::Manifests),
        // Right edge, wrong direction: an edge cannot write its own config or acks.
        edge_topic("acme", "edge-a", Channel::Config),
        edge_topic("acme", "edge-a", Channel::Acks),
        Topic::enroll_response("s1").expect("topic").to_string(),
        "tapfleet/v1/tenants/acme/events".to_owned(),
        "elsewhere".to_owned(),
    ];
    for (i, t) in forged.iter().enumerate() {
        let mut a = must_connect(&h, "edge-a", EDGE_A).await;
        a.publish(t, false, b"forged manifest".to_vec()).await;
        assert!(!a.puback_or_closed().await, "{t}: publish accepted");
        assert_eq!(h.gate_counts().refused_publish, i as u64 + 1);
    }
    assert!(
        m.publish_on(&forged[0], Duration::from_millis(500))
            .await
            .is_none(),
        "forged manifest delivered"
    );
    // Its own manifests go through.
    let mut a = must_connect(&h, "edge-a", EDGE_A).await;
    let own = edge_topic("acme", "edge-a", Channel::Manifests);
    a.publish(&own, false, b"real".to_vec()).await;
    assert!(a.puback_or_closed().await);
    assert!(m.publish_on(&own, T).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolling_client_reaches_only_its_own_session() {
    let (h, _creds) = start_broker();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    assert_eq!(
        m.subscribe(&[&tapfleet_schemas::topic::filter::enroll_requests()])
            .await,
        vec![OK1]
    );
    let resp = |s: &str| Topic::enroll_response(s).expect("topic").to_string();
    let req = |s: &str| Topic::enroll_request(s).expect("topic").to_string();
    // s2's grant is waiting, retained (the worst case).
    m.publish(&resp("s2"), true, b"password of s2".to_vec())
        .await;
    assert!(m.puback_or_closed().await);

    let mut e = must_connect(&h, "enroll-s1", ("enroll", CLAIM)).await;
    for f in [
        resp("s2"),
        "tapfleet/v1/enroll/+/response".to_owned(),
        "#".to_owned(),
        req("s1"),
        edge_topic("acme", "edge-a", Channel::Config),
    ] {
        assert_eq!(e.subscribe(&[&f]).await, vec![NO], "{f} allowed");
    }
    assert_eq!(e.subscribe(&[&resp("s1")]).await, vec![OK1]);
    assert!(
        e.publish_on(&resp("s2"), Duration::from_millis(500))
            .await
            .is_none()
    );
    // Its own request reaches the manager, the answer comes back.
    e.publish(&req("s1"), false, b"request".to_vec()).await;
    assert!(e.puback_or_closed().await);
    assert!(m.publish_on(&req("s1"), T).await.is_some());
    m.publish(&resp("s1"), false, b"grant".to_vec()).await;
    let p = e.publish_on(&resp("s1"), T).await.expect("grant");
    assert_eq!(&p.payload[..], b"grant");
    // Another session's request topic: closed.
    e.publish(&req("s2"), false, b"x".to_vec()).await;
    assert!(!e.puback_or_closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_traffic_passes_big_retained_and_qos1() {
    let (h, _creds) = start_broker();
    let mut m = must_connect(&h, "tapfleet-manager", MANAGER).await;
    let upload_filter = tapfleet_schemas::topic::filter::all_edges(Channel::Upload);
    assert_eq!(m.subscribe(&[&upload_filter]).await, vec![OK1]);
    let mut a = must_connect(&h, "edge-a", EDGE_A).await;
    let bulk = must_connect(&h, "edge-a-bulk", EDGE_A).await;
    let upload = edge_topic("acme", "edge-a", Channel::Upload);
    let big: Vec<u8> = (0..(1024 * 1024 + 300)).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        bulk.publish(&upload, false, big.clone()).await;
    }
    for _ in 0..3 {
        let p = m
            .publish_on(&upload, Duration::from_secs(10))
            .await
            .expect("1 MiB chunk");
        assert_eq!(p.payload.len(), big.len());
        assert!(p.payload[..] == big[..], "payload changed");
    }
    // Retained state from the edge reaches a manager that subscribes later.
    let state = edge_topic("acme", "edge-a", Channel::State);
    a.publish(&state, true, b"online".to_vec()).await;
    assert!(a.puback_or_closed().await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = must_connect(&h, "tapfleet-manager-2", MANAGER).await;
    assert_eq!(late.subscribe(&[&state]).await, vec![OK1]);
    let p = late.publish_on(&state, T).await.expect("retained state");
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"online");
    // Two edges with the same client id do not share a session: B's id is its own.
    let mut b = must_connect(&h, "edge-a", EDGE_B).await;
    let b_jobs = edge_topic("acme", "edge-b", Channel::Jobs);
    assert_eq!(b.subscribe(&[&b_jobs]).await, vec![OK1]);
    a.publish(&state, true, b"still here".to_vec()).await;
    assert!(
        a.puback_or_closed().await,
        "edge A kicked by edge B's client id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_delay_a_real_client() {
    let (h, _creds) = start_broker();
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(
            tokio::net::TcpStream::connect(h.local_addr())
                .await
                .expect("tcp"),
        );
    }
    // Give the gate time to accept them all; they never send a byte.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let mut a = must_connect(&h, "edge-a", EDGE_A).await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "connect took {took:?}");
    let own_config = edge_topic("acme", "edge-a", Channel::Config);
    assert_eq!(a.subscribe(&[&own_config]).await, vec![OK1]);
    println!("connect with 100 idle sockets open: {took:?}");
    assert!(h.gate_counts().accepted >= 101);
    drop(idle);
}
