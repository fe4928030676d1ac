//! A B2BUA's two legs (two Call-IDs) are two recordings linked to each other (`linked`), on a
//! real capture: nDPI's T.38 fax call through a B2BUA (callee 061963177 on both legs, the
//! second INVITE 6 ms after the first). Calls with other numbers or started far apart are not
//! linked: jnetpcap's two calls to the same callee 24 s apart, sipp's five calls 10 s apart.

mod common;
use common::{capture, record_ok, tshark};

use std::collections::BTreeSet;

#[test]
fn b2bua_legs_are_linked_and_other_calls_are_not() {
    let rel = "nDPI/tests/cfgs/default/pcap/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap";
    let input = capture(rel);
    // tshark: the initial INVITEs (CSeq 1) are the two legs, to the same callee.
    let legs: BTreeSet<String> = tshark(&[
        "-r",
        &input.to_string_lossy(),
        "-Y",
        "sip.CSeq == \"1 INVITE\"",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
        "-e",
        "sip.to.user",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect();
    assert_eq!(legs.len(), 2, "{legs:?}");
    let out = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], out.path());
    assert_eq!(recs.len(), 2);
    let (a, b) = (&recs[0].1, &recs[1].1);
    assert_ne!(a.call_id, b.call_id);
    assert_eq!(a.callee.number, b.callee.number);
    assert_eq!(a.linked, std::slice::from_ref(&b.recording_id));
    assert_eq!(b.linked, std::slice::from_ref(&a.recording_id));

    for rel in [
        "jnetpcap-legacy/tests/test-sip-rtp-g711.pcap",
        "sipp/sipp_calls.pcap",
    ] {
        let out = tempfile::tempdir().expect("tempdir");
        let recs = record_ok(&[&capture(rel)], out.path());
        assert!(recs.len() >= 2, "{rel}");
        for (_, m) in &recs {
            assert!(
                m.linked.is_empty(),
                "{rel}: {} linked {:?}",
                m.call_id,
                m.linked
            );
        }
    }
}
