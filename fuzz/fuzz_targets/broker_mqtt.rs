//! Fuzz target: arbitrary bytes through the broker gate's MQTT 3.1.1 framer and parsers, as a
//! stream of packets. Nothing may panic or allocate beyond the frame bound; a CONNECT or SUBSCRIBE
//! that parses must re-encode to a packet that parses to the same value; the ACL checks accept
//! any parsed topic or filter without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_broker::acl::{Identity, may_publish, may_subscribe};
use tapfleet_broker::mqtt;

const MAX: usize = 64 * 1024;

fn ids() -> [Identity; 3] {
    [
        Identity::Manager {
            user: "tapfleet-manager".into(),
        },
        Identity::Edge {
            tenant: "acme".into(),
            edge: "edge-a".into(),
        },
        Identity::Enrolling {
            session: "s1".into(),
        },
    ]
}

fn reparse(pkt: &[u8]) -> (mqtt::FixedHeader, &[u8]) {
    let h = match mqtt::frame(pkt, mqtt::MAX_REMAINING_LEN) {
        Ok(Some(h)) => h,
        other => panic!("re-encoded packet does not frame: {other:?}"),
    };
    assert_eq!(h.frame_len(), pkt.len());
    (h, mqtt::body(pkt, &h))
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(h)) = mqtt::frame(rest, MAX) {
        let Some(pkt) = rest.get(..h.frame_len()) else {
            return;
        };
        rest = rest.get(h.frame_len()..).unwrap_or_default();
        let body = mqtt::body(pkt, &h);
        match h.packet_type() {
            mqtt::CONNECT => {
                if let Ok(c) = mqtt::parse_connect(h.flags(), body) {
                    let again = mqtt::encode_connect(&c).expect("a parsed CONNECT encodes");
                    let (h2, b2) = reparse(&again);
                    assert_eq!(mqtt::parse_connect(h2.flags(), b2).as_ref(), Ok(&c));
                    if let Some(w) = &c.will {
                        for id in ids() {
                            let _ = may_publish(&id, &w.topic);
                        }
                    }
                }
            }
            mqtt::PUBLISH => {
                if let Ok(p) = mqtt::parse_publish(h.flags(), body) {
                    for id in ids() {
                        let _ = may_publish(&id, &p.topic);
                    }
                }
            }
            mqtt::SUBSCRIBE => {
                if let Ok(s) = mqtt::parse_subscribe(h.flags(), body) {
                    let again = mqtt::encode_subscribe(&s).expect("a parsed SUBSCRIBE encodes");
                    let (h2, b2) = reparse(&again);
                    assert_eq!(mqtt::parse_subscribe(h2.flags(), b2).as_ref(), Ok(&s));
                    for (f, _) in &s.filters {
                        for id in ids() {
                            let _ = may_subscribe(&id, f);
                        }
                    }
                }
            }
            mqtt::SUBACK => {
                if let Ok((id, codes)) = mqtt::parse_suback(body) {
                    let again = mqtt::encode_suback(id, &codes).expect("a parsed SUBACK encodes");
                    let (_, b2) = reparse(&again);
                    assert_eq!(mqtt::parse_suback(b2), Ok((id, codes)));
                }
            }
            _ => {}
        }
    }
});
